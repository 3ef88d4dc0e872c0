"""The SQL gate with real PostgreSQL clients: `psql` with the token from
`entraflow token --resource https://ossrdbms-aad.database.windows.net` in
PGPASSWORD, and psycopg (sync and async) with a token from azure-identity, against
the PostgreSQL that scripts/test.sh starts. Refusals carry PostgreSQL's error
text; statements reach `audit verify`d records with their literals redacted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from azure.identity import ClientSecretCredential

from conftest import BIN, Server

OSSRDBMS = "https://ossrdbms-aad.database.windows.net"
CONNECT_ACTION = "Microsoft.DBforPostgreSQL/flexibleServers/databases/connect/action"
BACKEND = os.environ.get("ENTRAFLOW_TEST_POSTGRES_URL")

if not BACKEND:
    if os.environ.get("ENTRAFLOW_REQUIRE_POSTGRES") == "1":
        raise RuntimeError("ENTRAFLOW_REQUIRE_POSTGRES=1 but ENTRAFLOW_TEST_POSTGRES_URL is not set")
    pytest.skip("ENTRAFLOW_TEST_POSTGRES_URL is not set (scripts/test.sh sets it)", allow_module_level=True)


class SqlGate:
    def __init__(self, authority):
        self.authority = authority
        self.server = Server(authority.data_dir, ["sql-gate", "serve", "--backend", BACKEND, "--port", "0"],
                             "sql-gate.env")
        self.env = self.server.env
        self.scope = (f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/entraflow-local"
                      f"/providers/Microsoft.DBforPostgreSQL/flexibleServers/entraflowlocal")
        role = {"Name": f"SQL connector {uuid.uuid4().hex[:6]}", "DataActions": [CONNECT_ACTION],
                "AssignableScopes": ["/"]}
        self.role = authority.json("role", "definition", "create", "--role-definition", json.dumps(role))["roleName"]

    def principal(self, prefix: str, *, mapped: bool = True, allowed: bool = True) -> dict:
        """A service principal, mapped to a role of its display name and allowed to connect."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        app = self.authority.new_app(name)
        secret = self.authority.new_secret(app["appId"])
        if mapped:
            self.authority.cli("sql", "principal", "create", "--name", name, "--oid", app["spObjectId"],
                               "--type", "service", "--backend", BACKEND)
        if allowed:
            self.authority.cli("role", "assignment", "create", "--assignee", app["spObjectId"], "--role",
                               self.role, "--scope", f"{self.scope}/databases/postgres")
        cred = ClientSecretCredential(self.authority.tenant, app["appId"], secret, authority=self.authority.host,
                                      disable_instance_discovery=True)
        return {"name": name, "oid": app["spObjectId"], "app_id": app["appId"], "secret": secret,
                "credential": cred}

    def conninfo(self, user: str, token: str) -> dict:
        return {"host": self.env["PGHOST"], "port": self.env["PGPORT"], "user": user, "password": token,
                "dbname": "postgres", "sslmode": "verify-full", "sslrootcert": self.env["PGSSLROOTCERT"],
                "application_name": "run-py-sql"}

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def sql_gate(authority):
    g = SqlGate(authority)
    time.sleep(1)  # the gate notices CLI role changes within 500 ms
    yield g
    g.stop()


def wait_for_policy():
    time.sleep(1)


def test_psql_signs_in_with_the_token_from_entraflow_token(authority, sql_gate):
    psql = shutil.which("psql")
    assert psql, "psql (Debian's postgresql-client) is installed by scripts/test.sh"
    p = sql_gate.principal("psql-job")
    table = f"labels_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(BACKEND, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int, label text)")
        conn.execute(f"INSERT INTO {table} SELECT g, 'cat' FROM generate_series(1, 7) g")
        conn.execute(f'GRANT SELECT ON {table} TO "{p["name"]}"')
    wait_for_policy()
    job_env = {**os.environ, "AZURE_TENANT_ID": authority.tenant, "AZURE_CLIENT_ID": p["app_id"],
               "AZURE_CLIENT_SECRET": p["secret"], "AZURE_AUTHORITY_HOST": authority.host,
               "SSL_CERT_FILE": authority.ca}
    token = subprocess.run([BIN, "--data-dir", str(authority.data_dir), "token", "--resource", OSSRDBMS, "--show"],
                           env=job_env, capture_output=True, text=True, check=True).stdout.strip()
    pg_env = {**os.environ, **sql_gate.env, "PGPASSWORD": token, "PGUSER": p["name"], "PGDATABASE": "postgres"}
    out = subprocess.run([psql, "-tA", "-c", f"SELECT count(*) FROM {table}"], env=pg_env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "7"
    # psql as someone else: refused with a message naming both.
    wrong = subprocess.run([psql, "-tA", "-U", "someone-else", "-c", "SELECT 1"], env=pg_env,
                           capture_output=True, text=True)
    assert wrong.returncode == 2
    assert "no PostgreSQL role is mapped to the Entra principal name 'someone-else'" in wrong.stderr
    assert "entraflow sql principal create" in wrong.stderr
    # A Storage token is not a PostgreSQL password.
    storage = p["credential"].get_token("https://storage.azure.com/.default").token
    bad = subprocess.run([psql, "-tA", "-c", "SELECT 1"], env={**pg_env, "PGPASSWORD": storage},
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert f'password authentication failed for user "{p["name"]}"' in bad.stderr
    assert "audience" in bad.stderr


def test_psycopg_sync_reads_with_parameters_and_postgres_grants_still_apply(sql_gate):
    p = sql_gate.principal("psycopg-sync")
    granted = f"granted_{uuid.uuid4().hex[:8]}"
    denied = f"denied_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(BACKEND, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {granted} AS SELECT g AS id FROM generate_series(1, 1000) g")
        conn.execute(f"CREATE TABLE {denied} (x int)")
        conn.execute(f'GRANT SELECT ON {granted} TO "{p["name"]}"')
    wait_for_policy()
    token = p["credential"].get_token(f"{OSSRDBMS}/.default").token
    with psycopg.connect(**sql_gate.conninfo(p["name"], token)) as conn:
        rows = conn.execute(f"SELECT id FROM {granted} WHERE id > %s ORDER BY id", (990,)).fetchall()
        assert [r[0] for r in rows] == list(range(991, 1001))
        # A server-side cursor streams through the gate.
        with conn.cursor(name="stream") as cur:
            cur.execute(f"SELECT id FROM {granted}")
            assert sum(1 for _ in cur) == 1000
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute(f"SELECT * FROM {denied}")
        assert f"permission denied for table {denied}" in str(refused.value)


def test_psycopg_refusals_name_what_is_missing(sql_gate):
    unmapped = sql_gate.principal("psycopg-unmapped", mapped=False)
    token = unmapped["credential"].get_token(f"{OSSRDBMS}/.default").token
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(**sql_gate.conninfo(unmapped["name"], token))
    assert "no PostgreSQL role is mapped" in str(e.value)
    not_allowed = sql_gate.principal("psycopg-no-rbac", allowed=False)
    wait_for_policy()
    token = not_allowed["credential"].get_token(f"{OSSRDBMS}/.default").token
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(**sql_gate.conninfo(not_allowed["name"], token))
    assert "permission denied to connect" in str(e.value)
    assert CONNECT_ACTION in str(e.value)


def test_psycopg_async_reads_through_the_gate(sql_gate):
    p = sql_gate.principal("psycopg-async")
    wait_for_policy()

    async def main() -> list:
        token = p["credential"].get_token(f"{OSSRDBMS}/.default").token
        async with await psycopg.AsyncConnection.connect(**sql_gate.conninfo(p["name"], token)) as conn:
            cur = await conn.execute("SELECT g, %s::text FROM generate_series(1, 5) g", ("x",))
            return await cur.fetchall()

    rows = asyncio.run(main())
    assert rows == [(i, "x") for i in range(1, 6)]


def test_statements_are_audited_redacted_and_verified_and_no_literal_is_logged(authority, sql_gate):
    p = sql_gate.principal("audited")
    wait_for_policy()
    secret = f"s3cr3t-{uuid.uuid4().hex[:8]}"
    token = p["credential"].get_token(f"{OSSRDBMS}/.default").token
    with psycopg.connect(**sql_gate.conninfo(p["name"], token)) as conn:
        conn.execute(f"SELECT '{secret}' AS s").fetchall()
        conn.execute("SELECT %s::text", (secret,)).fetchall()
    time.sleep(0.5)  # the session's end record follows the client's goodbye
    verify = authority.cli("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    export = authority.data_dir / "sql-audit.jsonl"
    authority.cli("audit", "export", "--out", str(export))
    text = export.read_text()
    assert "SELECT ? AS s" in text
    assert secret not in text, "a redacted literal reached the audit log"
    assert "sql.session.start" in text and "sql.session.end" in text
    for log in authority.data_dir.glob("*.log"):
        assert secret not in log.read_text(errors="replace"), f"{log.name} logged a literal"
        assert token not in log.read_text(errors="replace"), f"{log.name} logged a token"


def test_entraflow_sql_connect_signs_in_with_the_credential_and_tags_the_run(authority, sql_gate, monkeypatch):
    from entraflow.sql import connect

    p = sql_gate.principal("py-connect")
    wait_for_policy()
    settings = {k: v for k, v in sql_gate.conninfo(p["name"], "unused").items() if k != "password"}
    settings.pop("application_name")
    run = f"run-sql-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("ENTRAFLOW_RUN_ID", run)
    with connect(credential=p["credential"], **settings) as conn:
        assert conn.execute("SELECT current_user, current_setting('application_name')").fetchone() == (p["name"], run)
    with pytest.raises(TypeError, match="the password is the credential's token"):
        connect(credential=p["credential"], password="x", **settings)
    with pytest.raises(TypeError, match="needs user="):
        monkeypatch.delenv("PGUSER", raising=False)
        connect(credential=p["credential"], **{k: v for k, v in settings.items() if k != "user"})
    time.sleep(0.5)
    out = authority.cli("audit", "query", "--run-id", run, "-o", "json").stdout
    types = [json.loads(line)["event"]["event_type"] if "event" in json.loads(line) else json.loads(line)["event_type"]
             for line in out.splitlines() if line.strip()]
    assert "sql.session.start" in types, f"the session is in the audit log under the run id: {types}"


DATASET_JOB = r"""
import json, resource, sys
import entraflow.tensorflow as etf

table = sys.argv[1]
ds = etf.sql_dataset(f"SELECT id, label, weight, note FROM {table} WHERE id > %s", (0,), batch_size=10000)
rows = ids = labels = 0
base = None
for i, batch in enumerate(ds):
    rows += int(batch["id"].shape[0])
    ids += int(batch["id"].numpy().sum())
    labels += int(batch["label"].numpy().sum())
    assert batch["note"].dtype.name == "string" and batch["weight"].dtype.name == "float64"
    if i == 3:  # TensorFlow and the first batches are in memory: measure growth from here
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": rows, "ids": ids, "labels": labels, "growth_kib": peak - base}))
"""


def test_sql_dataset_streams_a_million_rows_through_the_gate_in_flat_memory(authority, sql_gate, tmp_path):
    p = sql_gate.principal("tf-sql")
    table = f"features_{uuid.uuid4().hex[:8]}"
    n = 1_000_000
    with psycopg.connect(BACKEND, autocommit=True) as conn:
        # ~120 MB of values: held whole, the job's memory would grow far past the bound below.
        conn.execute(f"CREATE TABLE {table} AS SELECT g AS id, g % 10 AS label, g / 7.0::float8 AS weight,"
                     f" repeat(md5(g::text), 3) AS note FROM generate_series(1, {n}) g")
        conn.execute(f'GRANT SELECT ON {table} TO "{p["name"]}"')
    wait_for_policy()
    script = tmp_path / "job.py"
    script.write_text(DATASET_JOB)
    env = {**os.environ, **sql_gate.env, "PGUSER": p["name"], "PGDATABASE": "postgres",
           "AZURE_TENANT_ID": authority.tenant, "AZURE_CLIENT_ID": p["app_id"], "AZURE_CLIENT_SECRET": p["secret"],
           "AZURE_AUTHORITY_HOST": authority.host, "SSL_CERT_FILE": authority.ca, "TF_CPP_MIN_LOG_LEVEL": "2",
           "ENTRAFLOW_RUN_ID": f"run-tf-sql-{uuid.uuid4().hex[:6]}"}
    out = subprocess.run([sys.executable, str(script), table], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == n
    assert result["ids"] == n * (n + 1) // 2
    assert result["labels"] == sum(g % 10 for g in range(1, n + 1))
    assert result["growth_kib"] < 64 * 1024, f"memory grew {result['growth_kib']} KiB while streaming"


def test_entraflow_sql_after_tensorflow_is_refused_with_the_fix_not_a_crash():
    # libpq loaded after TensorFlow aborts the process on its first TLS connection.
    code = "import tensorflow, sys\ntry:\n    import entraflow.sql\nexcept ImportError as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "before tensorflow" in out.stdout
