"""The SQL gate against PostgreSQL directly and PgBouncer (transaction mode), in one
run with interleaved rounds and the same clients: psql reading a whole table (rows/s)
and pgbench -S at 16 connections (statements/s). Run it through benches/sql_gate.sh,
which installs PgBouncer, starts PostgreSQL and builds the release binary.

Every side speaks TLS to its client (the gate always does; PostgreSQL and PgBouncer
get a self-signed certificate here); the gate and PgBouncer reach PostgreSQL without
TLS on loopback. Before timing, each side must return the same rows, and afterwards
the gate's audit chain must hold a record for every statement pgbench ran through it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ["ENTRAFLOW_BIN"]
PG_URL = os.environ["ENTRAFLOW_TEST_POSTGRES_URL"]
PG_DIR = Path(os.environ["PG_DIR"])
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
OSSRDBMS = "https://ossrdbms-aad.database.windows.net/.default"
CONNECT = "Microsoft.DBforPostgreSQL/flexibleServers/databases/connect/action"
DB_SCOPE = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/entraflow-local/providers/"
            "Microsoft.DBforPostgreSQL/flexibleServers/entraflowlocal/databases/postgres")
CLIENTS = 16
SECTION_BEGIN = "<!-- sql-gate:begin (written by benches/sql_gate.sh; do not edit by hand) -->"
SECTION_END = "<!-- sql-gate:end -->"


def run(*cmd, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          check=True, **kw)


def as_postgres(*cmd) -> list[str]:
    """PgBouncer refuses to run as root, and PostgreSQL's files belong to postgres."""
    return ["runuser", "-u", "postgres", "--", *map(str, cmd)] if os.getuid() == 0 else list(map(str, cmd))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def certificate(directory: Path) -> tuple[Path, Path]:
    key, crt = directory / "bench.key", directory / "bench.crt"
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
        "-keyout", key, "-out", crt)
    os.chmod(key, 0o600)
    if os.getuid() == 0:
        shutil.chown(key, "postgres")
        shutil.chown(crt, "postgres")
    return key, crt


def enable_tls(key: Path, crt: Path) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET ssl = on")
        conn.execute(f"ALTER SYSTEM SET ssl_cert_file = '{crt}'")
        conn.execute(f"ALTER SYSTEM SET ssl_key_file = '{key}'")
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)


def start_pgbouncer(directory: Path, key: Path, crt: Path) -> tuple[subprocess.Popen, int]:
    pg = urlparse(PG_URL)
    port = free_port()
    ini = directory / "pgbouncer.ini"
    ini.write_text(f"""[databases]
postgres = host=127.0.0.1 port={pg.port} dbname=postgres user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 200
default_pool_size = {CLIENTS}
client_tls_sslmode = require
client_tls_key_file = {key}
client_tls_cert_file = {crt}
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
logfile = {directory}/pgbouncer.log
""")
    if os.getuid() == 0:
        shutil.chown(directory, "postgres")
        shutil.chown(ini, "postgres")
    proc = subprocess.Popen(as_postgres(shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", ini),
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", sslmode="require",
                                 connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return proc, port
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"PgBouncer did not start: {(directory / 'pgbouncer.log').read_text()[-2000:]}")
            time.sleep(0.2)


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.removeprefix("export ").strip()
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v.strip("'\"")
    return out


class Stack:
    """`entraflow up` with the SQL gate, and one service principal mapped and allowed."""

    def __init__(self, data: Path):
        self.data = data
        self.log = open(data.parent / "up.log", "w")
        self.proc = subprocess.Popen([BIN, "--data-dir", data, "up", "--authority-port", "0", "--imds-port", "0",
                                      "--gate-port", "0", "--sql-backend", PG_URL, "--sql-port", "0"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (data / "sql-gate.env").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"entraflow up did not start: {(data.parent / 'up.log').read_text()[-2000:]}")
            time.sleep(0.1)
        self.env = env_file(data / "env")
        self.sql = env_file(data / "sql-gate.env")

    def cli(self, *args) -> dict:
        out = run(BIN, "--data-dir", self.data, *args, "-o", "json")
        return json.loads(out.stdout) if out.stdout.strip() else {}

    def principal(self) -> tuple[str, str]:
        name = f"bench-{uuid.uuid4().hex[:6]}"
        app = self.cli("ad", "app", "create", "--display-name", name)
        sp = self.cli("ad", "sp", "create", "--id", app["appId"])
        secret = self.cli("ad", "app", "credential", "reset", "--id", app["appId"])["password"]
        role = self.cli("role", "definition", "create", "--role-definition", json.dumps(
            {"Name": f"SQL bench {name}", "DataActions": [CONNECT], "AssignableScopes": ["/"]}))["roleName"]
        self.cli("role", "assignment", "create", "--assignee", sp["id"], "--role", role, "--scope", DB_SCOPE)
        run(BIN, "--data-dir", self.data, "sql", "principal", "create", "--name", name, "--oid", sp["id"],
            "--type", "service", "--backend", PG_URL)
        r = requests.post(f"{self.env['AZURE_AUTHORITY_HOST']}/{self.env['AZURE_TENANT_ID']}/oauth2/v2.0/token",
                          data={"grant_type": "client_credentials", "client_id": app["appId"],
                                "client_secret": secret, "scope": OSSRDBMS},
                          verify=self.env["SSL_CERT_FILE"], timeout=30)
        r.raise_for_status()
        return name, r.json()["access_token"]

    def statements_recorded(self) -> int:
        out = run(BIN, "--data-dir", self.data, "audit", "verify", "--log", "entraflow/sql-gate", "-o", "json")
        report = json.loads(out.stdout)
        return sum(c["size"] for c in report["chains"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def pg_env(target: dict) -> dict:
    env = {"PGHOST": target["host"], "PGPORT": str(target["port"]), "PGUSER": target["user"],
           "PGDATABASE": "postgres", "PGSSLMODE": target["sslmode"], "PGPASSWORD": target.get("password", "")}
    if "root" in target:
        env["PGSSLROOTCERT"] = target["root"]
    return env


def check(target: dict, rows: int) -> None:
    out = run("psql", "-X", "-At", "-c", "SELECT count(*), sum(id) FROM bench_rows", env=pg_env(target))
    want = f"{rows}|{rows * (rows + 1) // 2}"
    if out.stdout.strip() != want:
        raise RuntimeError(f"{target['name']} returned {out.stdout.strip()!r}, not {want!r}")


def bulk_rows_per_s(target: dict, rows: int) -> float:
    started = time.perf_counter()
    run("psql", "-X", "-At", "-o", "/dev/null", "-c", "SELECT * FROM bench_rows", env=pg_env(target))
    return rows / (time.perf_counter() - started)


def point_selects(target: dict, seconds: int) -> tuple[float, float, int]:
    """(statements/s, mean latency ms, statements) of pgbench -S."""
    out = run(PG_BIN / "pgbench", "-n", "-S", "-M", "extended", "-c", CLIENTS, "-j", "2", "-T", seconds,
              env=pg_env(target))
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))
    done = int(re.search(r"number of transactions actually processed: (\d+)", out.stdout).group(1))
    return tps, latency, done


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round, no BENCHMARKS.md")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.rows, args.seconds = 1, 100_000, 3

    tmp = Path(tempfile.mkdtemp(prefix="entraflow-sql-bench-"))
    os.chmod(tmp, 0o755)
    key, crt = certificate(PG_DIR)
    enable_tls(key, crt)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_rows")
        conn.execute(f"CREATE TABLE bench_rows AS SELECT g::int8 AS id, (g % 10)::int4 AS label, "
                     f"g / 7.0::float8 AS weight, md5(g::text) AS note FROM generate_series(1, {args.rows}) g")
    pg = urlparse(PG_URL)
    run(PG_BIN / "pgbench", "-i", "-q", "-s", "1", env={"PGHOST": "127.0.0.1", "PGPORT": str(pg.port),
                                                       "PGUSER": "postgres", "PGDATABASE": "postgres"})
    bouncer_dir = tmp / "pgbouncer"
    bouncer_dir.mkdir()
    bouncer, bouncer_port = start_pgbouncer(bouncer_dir, key, crt)
    stack = Stack(tmp / "data")
    try:
        name, token = stack.principal()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for table in ("bench_rows", "pgbench_accounts", "pgbench_branches", "pgbench_tellers"):
                conn.execute(f'GRANT SELECT ON {table} TO "{name}"')
        time.sleep(1)  # the gate notices the CLI's role changes within 500 ms
        targets = [
            {"name": "gate", "host": stack.sql["PGHOST"], "port": int(stack.sql["PGPORT"]), "user": name,
             "password": token, "sslmode": "verify-full", "root": stack.sql["PGSSLROOTCERT"]},
            {"name": "direct", "host": "127.0.0.1", "port": pg.port, "user": "postgres", "sslmode": "require"},
            {"name": "pgbouncer", "host": "127.0.0.1", "port": bouncer_port, "user": "postgres", "sslmode": "require"},
        ]
        for t in targets:
            check(t, args.rows)
        before = stack.statements_recorded()
        rounds = []
        gate_statements = 0
        for i in range(args.rounds):
            order = targets if i % 2 == 0 else targets[::-1]
            result = {"round": i + 1, "load": os.getloadavg()[0]}
            for t in order:
                result[f"{t['name']} rows/s"] = bulk_rows_per_s(t, args.rows)
            for t in order:
                cpu = cpu_seconds(stack.proc.pid)
                tps, latency, done = point_selects(t, args.seconds)
                result[f"{t['name']} stmts/s"] = tps
                result[f"{t['name']} ms"] = latency
                if t["name"] == "gate":
                    gate_statements += done
                    result["gate CPU µs/stmt"] = (cpu_seconds(stack.proc.pid) - cpu) / done * 1e6
            rounds.append(result)
            print(json.dumps(result), flush=True)
        recorded = stack.statements_recorded() - before
        if recorded < gate_statements:
            raise RuntimeError(f"the gate's audit chain grew by {recorded} records for {gate_statements} statements")
        print(f"audit: {recorded} records for {gate_statements} pgbench statements through the gate", flush=True)
    finally:
        stack.stop()
        bouncer.terminate()
        bouncer.wait(timeout=10)
    table = render(rounds, args, recorded, gate_statements)
    print(table)
    if not args.quick:
        write_section(table)


def render(rounds: list[dict], args, recorded: int, statements: int) -> str:
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0] if k != "round"}
    bulk_ratio = med["gate rows/s"] / med["direct rows/s"]
    point_ratio = med["gate stmts/s"] / med["pgbouncer stmts/s"]
    commit = run("git", "-C", ROOT, "rev-parse", "--short", "HEAD").stdout.strip()
    lines = [
        SECTION_BEGIN,
        "## SQL gate: PostgreSQL wire, token as password",
        "",
        f"`bash benches/sql_gate.sh{' --quick' if args.quick else ''}` at commit `{commit}`, "
        f"{time.strftime('%Y-%m-%d')}, {'debug build (quick mode: figures not meaningful)' if args.quick else 'release build'}; "
        f"{args.rounds} interleaved rounds on this machine's 2 cores, clients on the same cores. "
        f"Bulk: `psql -c 'SELECT * FROM bench_rows'` ({args.rows:,} rows of int8, int4, float8, 32-char text). "
        f"Point: `pgbench -n -S -M extended -c {CLIENTS} -j 2 -T {args.seconds}`. TLS to every client "
        "(PostgreSQL 15 and PgBouncer with a self-signed certificate, the gate with its CA); the gate and "
        "PgBouncer (transaction mode) reach PostgreSQL in plain TCP on loopback. Through the gate every "
        "session is authorized at sign-in and every statement recorded durably before its result leaves "
        f"({recorded:,} audit records for {statements:,} statements).",
        "",
        "| round | load (1 min) | gate rows/s | direct rows/s | PgBouncer rows/s | gate stmts/s | direct stmts/s "
        "| PgBouncer stmts/s | gate latency ms | gate CPU µs/stmt |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds + [dict(med, round="median")]:
        lines.append(
            f"| {r['round']} | {r['load']:.2f} | {r['gate rows/s']:,.0f} | {r['direct rows/s']:,.0f} "
            f"| {r['pgbouncer rows/s']:,.0f} | {r['gate stmts/s']:,.0f} | {r['direct stmts/s']:,.0f} "
            f"| {r['pgbouncer stmts/s']:,.0f} | {r['gate ms']:.2f} | {r['gate CPU µs/stmt']:.0f} |")
    lines += [
        "",
        f"- Bulk rows, gate / direct: **{bulk_ratio:.2f}x** (goal ≥ 0.8x: {'met' if bulk_ratio >= 0.8 else 'missed'}).",
        f"- Point SELECTs, gate / PgBouncer: **{point_ratio:.2f}x** (goal ≥ 1.0x: "
        f"{'met' if point_ratio >= 1.0 else 'missed'}); gate / direct: "
        f"{med['gate stmts/s'] / med['direct stmts/s']:.2f}x.",
        SECTION_END,
    ]
    return "\n".join(lines)


def write_section(section: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION_BEGIN in text:
        head, rest = text.split(SECTION_BEGIN, 1)
        tail = rest.split(SECTION_END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
