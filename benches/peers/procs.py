"""The servers a benchmark run starts: started in their own process group, waited
for until ready, measured in CPU seconds, and all stopped at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

_running: list["Proc"] = []
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A server process; ready once `ready` (a file) exists or `port` accepts."""

    def __init__(self, name: str, argv: list[str], log: Path, ready: Path | None = None, port: int | None = None):
        self.name, self.log = name, log
        if ready:
            ready.unlink(missing_ok=True)
        self.proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "ENTRAFLOW_LOG": "warn"})
        _running.append(self)
        deadline = time.monotonic() + 90
        while not (ready.exists() if ready else _accepts(port)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become ready in 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        """The process and its descendants (nginx's workers, Node's helpers)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int(_stat(int(entry.name))[1])
                except (OSError, IndexError, ValueError):
                    pass
        found, frontier = [self.proc.pid], [self.proc.pid]
        while frontier:
            frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
            found += frontier
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the live process tree (utime, stime)."""
        total = 0
        for pid in self.pids():
            try:
                fields = _stat(pid)
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
        return total / _TICK

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        if self in _running:
            _running.remove(self)


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _accepts(port: int | None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_all() -> None:
    """Stops every server this run started, newest first."""
    for proc in reversed(list(_running)):
        proc.stop()
