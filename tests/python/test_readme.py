"""README's "Using it" runs as written, on a fresh home directory.

The block is run by bash line by line (continuation lines joined), each line's
exit status recorded; only `doctor`, which is there to show a missing role, may
fail, and with its documented exit code 6. It binds the default ports, so it runs
in a network namespace of its own where they are free.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, REPO


def readme_block() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Using it", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    lines, pending = [], ""
    for line in block.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip() and not line.strip().startswith("#"):
            lines.append(line)
    return lines


def test_the_readme_using_it_section_runs_as_written(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("needs a network namespace (unshare -n) for the README's fixed ports")
    lines = readme_block()
    assert lines[0].startswith("entraflow up"), lines
    statuses = tmp_path / "statuses"
    script = ["ip link set lo up"]
    for n, line in enumerate(lines):
        script.append(line)
        script.append(f'echo "{n} $?" >> {statuses}')
    (tmp_path / "readme.sh").write_text("\n".join(script) + "\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AZURE_", "ENTRAFLOW_", "IDENTITY_", "MSI_"))
           and k not in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")}
    env.update(HOME=str(home), PATH=f"{Path(BIN).parent}:{env['PATH']}")
    log = tmp_path / "readme.log"
    with open(log, "w") as output:
        # A file, not a pipe: `entraflow up &` keeps its output open after the script ends.
        proc = subprocess.Popen(["unshare", "-n", "bash", str(tmp_path / "readme.sh")], env=env, cwd=tmp_path,
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=240)
        finally:
            # `entraflow up &` is still serving: stop it with everything else the script left.
            os.killpg(proc.pid, signal.SIGTERM)
    out = log.read_text()
    recorded = dict(line.split() for line in statuses.read_text().splitlines())
    expected = {str(n): ("6" if line.startswith("entraflow doctor") else "0") for n, line in enumerate(lines)}
    assert recorded == expected, (recorded, out)
    assert "alice@entraflow.local" in out and "lacks" in out, out
    assert (home / ".entraflow" / "token-cache.json").exists()
