"""TLS to PostgreSQL for the shared stores: a real server that accepts only TLS
(`hostssl` in pg_hba.conf, plain TCP rejected), its certificate from a CA of the
test's own, and the entraflow CLI writing and verifying its audit log there.

What the URL's sslmode asks is what happens, and whenever TLS is used the
server's certificate is verified against the system's roots and `sslrootcert`,
including its name, as libpq's verify-full does."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import BIN

PASSWORD = "hunter2-not-for-logs"


def bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def certificate(subject: str, issuer_key, issuer_name, key, *, ca: bool, ip: str | None = None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def tls_postgres():
    """A PostgreSQL on 127.0.0.1 that takes TLS connections only; its certificate
    names the address 127.0.0.1 (not "localhost") and chains to ca.pem."""
    bin_dir = bindir()
    if bin_dir is None:
        if os.environ.get("ENTRAFLOW_REQUIRE_POSTGRES") == "1":
            raise RuntimeError("ENTRAFLOW_REQUIRE_POSTGRES=1 but Debian's PostgreSQL server is not installed")
        pytest.skip("PostgreSQL's server binaries are not installed (scripts/test.sh installs them)")
    # Not under pytest's tmp dir: the server runs as the postgres user, which
    # cannot enter root's private directories.
    root = Path(tempfile.mkdtemp(prefix="entraflow-pgtls."))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("entraflow test CA", ca_key, None, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    server = certificate("127.0.0.1", ca_key, ca.subject, key, ca=False, ip="127.0.0.1")
    (root / "ca.pem").write_bytes(pem(ca))
    other_key = ec.generate_private_key(ec.SECP256R1())
    (root / "other-ca.pem").write_bytes(pem(certificate("someone else", other_key, None, other_key, ca=True)))

    data = root / "data"
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run(["id", "postgres"], check=True, capture_output=True)
        os.chmod(root, 0o755)
        shutil.chown(root, "postgres")
    subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    (data / "server.crt").write_bytes(pem(server))
    (data / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    os.chmod(data / "server.key", 0o600)
    (data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 trust\n"
                                      "hostnossl all all 127.0.0.1/32 reject\n"
                                      "local all all trust\n")
    if as_postgres:
        for name in ("server.crt", "server.key", "pg_hba.conf"):
            shutil.chown(data / name, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c ssl=on -c log_connections=on",
                    "start"], check=True, capture_output=True)
    try:
        yield {"port": port, "ca": root / "ca.pem", "other_ca": root / "other-ca.pem", "log": root / "log"}
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def cli(data_dir: Path, store: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ENTRAFLOW_AUDIT_STORE": store}
    return subprocess.run([BIN, "--data-dir", str(data_dir), *args], capture_output=True, text=True, env=env,
                          timeout=120)


def url(port: int, host: str = "127.0.0.1", query: str = "") -> str:
    return f"postgres://postgres:{PASSWORD}@{host}:{port}/postgres" + (f"?{query}" if query else "")


def test_the_audit_log_is_written_and_verified_over_verified_tls(tls_postgres, tmp_path):
    store = url(tls_postgres["port"], query=f"sslmode=verify-full&sslrootcert={tls_postgres['ca']}")
    data = tmp_path / "data"
    assert cli(data, store, "init").returncode == 0
    made = cli(data, store, "ad", "group", "create", "--display-name", "tls-readers", "-o", "json")
    assert made.returncode == 0, made.stderr
    verified = cli(data, store, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "entraflow/admin" in verified.stdout, verified.stdout
    # The server took it over TLS (it rejects anything else) and says so.
    deadline = time.monotonic() + 10
    while "SSL enabled" not in tls_postgres["log"].read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "SSL enabled" in tls_postgres["log"].read_text()
    # sslmode=require verifies too; the CA is all it needs.
    store = url(tls_postgres["port"], query=f"sslmode=require&sslrootcert={tls_postgres['ca']}")
    assert cli(data, store, "audit", "verify").returncode == 0


@pytest.mark.parametrize("case,host,query,expected", [
    ("a certificate from an untrusted CA, sslmode=require", "127.0.0.1", "sslmode=require",
     "sslrootcert=<PEM file>"),
    ("the wrong CA named", "127.0.0.1", "sslmode=verify-full&sslrootcert={other_ca}", "UnknownIssuer"),
    ("a host name the certificate does not name", "localhost", "sslmode=verify-full&sslrootcert={ca}",
     "certificate not valid for name \"localhost\""),
    ("plain TCP, the default on this machine, to a server that takes TLS only", "127.0.0.1", "",
     "no encryption"),
])
def test_what_tls_cannot_verify_is_refused_and_says_why(tls_postgres, tmp_path, case, host, query, expected):
    query = query.format(ca=tls_postgres["ca"], other_ca=tls_postgres["other_ca"])
    data = tmp_path / "data"
    store = url(tls_postgres["port"], host=host, query=query)
    assert cli(data, url(tls_postgres["port"], query=f"sslmode=verify-full&sslrootcert={tls_postgres['ca']}"),
               "init").returncode == 0
    refused = cli(data, store, "ad", "group", "create", "--display-name", "never", "-o", "json")
    assert refused.returncode != 0, case
    assert expected in refused.stderr, (case, refused.stderr)
    assert PASSWORD not in refused.stderr + refused.stdout, "no password in any error"
    group = subprocess.run([BIN, "--data-dir", str(data), "ad", "group", "list", "-o", "json"], text=True,
                           capture_output=True, env={**os.environ, "ENTRAFLOW_AUDIT_STORE": store})
    assert "never" not in group.stdout, "a change whose audit record cannot be written is not made"


def test_tls_required_of_a_server_without_it_is_refused_with_what_to_do(tmp_path):
    plain = os.environ.get("ENTRAFLOW_TEST_POSTGRES_URL")
    if not plain:
        if os.environ.get("ENTRAFLOW_REQUIRE_POSTGRES") == "1":
            raise RuntimeError("ENTRAFLOW_REQUIRE_POSTGRES=1 but ENTRAFLOW_TEST_POSTGRES_URL is not set")
        pytest.skip("ENTRAFLOW_TEST_POSTGRES_URL is not set (scripts/test.sh sets it)")
    data = tmp_path / "data"
    assert cli(data, plain, "init").returncode == 0
    refused = cli(data, plain + "?sslmode=require", "ad", "group", "create", "--display-name", "never")
    assert refused.returncode != 0
    assert "does not support TLS" in refused.stderr and "sslmode=disable" in refused.stderr, refused.stderr


OSSRDBMS = "https://ossrdbms-aad.database.windows.net"
CONNECT_ACTION = "Microsoft.DBforPostgreSQL/flexibleServers/databases/connect/action"
SERVER_SCOPE = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/entraflow-local"
                "/providers/Microsoft.DBforPostgreSQL/flexibleServers/entraflowlocal")


def test_the_sql_gate_reaches_its_backend_over_verified_tls(authority, tls_postgres):
    """The SQL gate's own connection to PostgreSQL, and `sql principal create`'s admin
    login, follow the backend URL's sslmode: here TLS, verified against sslrootcert."""
    import psycopg
    from azure.identity import ClientSecretCredential

    from conftest import Server

    port, ca = tls_postgres["port"], tls_postgres["ca"]
    backend = url(port, query=f"sslmode=verify-full&sslrootcert={ca}")
    role = authority.json("role", "definition", "create", "--role-definition", json.dumps(
        {"Name": f"SQL over TLS {uuid.uuid4().hex[:6]}", "DataActions": [CONNECT_ACTION], "AssignableScopes": ["/"]}))
    name = f"tls-job-{uuid.uuid4().hex[:6]}"
    app = authority.new_app(name)
    secret = authority.new_secret(app["appId"])
    authority.cli("sql", "principal", "create", "--name", name, "--oid", app["spObjectId"], "--type", "service",
                  "--backend", backend)
    authority.cli("role", "assignment", "create", "--assignee", app["spObjectId"], "--role", role["roleName"],
                  "--scope", f"{SERVER_SCOPE}/databases/postgres")
    token = ClientSecretCredential(authority.tenant, app["appId"], secret, authority=authority.host,
                                   disable_instance_discovery=True).get_token(f"{OSSRDBMS}/.default").token

    def session(gate) -> dict:
        return {"host": gate.env["PGHOST"], "port": gate.env["PGPORT"], "user": name, "password": token,
                "dbname": "postgres", "sslmode": "verify-full", "sslrootcert": gate.env["PGSSLROOTCERT"]}

    gate = Server(authority.data_dir, ["sql-gate", "serve", "--backend", backend, "--port", "0"], "sql-gate.env")
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(**session(gate)) as conn:
                    ssl, = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:  # the gate picks up the new assignment within a second
                    raise
                time.sleep(0.2)
        assert ssl is True, "the backend session is TLS"
    finally:
        gate.stop()

    # Without the CA the backend's certificate cannot be verified: the client is
    # refused as for an unreachable backend, and the gate's log says why.
    unverified = url(port, query="sslmode=require")
    gate = Server(authority.data_dir, ["sql-gate", "serve", "--backend", unverified, "--port", "0"], "sql-gate.env")
    try:
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect(**session(gate))
        assert "cannot reach its PostgreSQL backend" in str(refused.value)
    finally:
        gate.stop()
    log = (authority.data_dir / "sql-gate.log").read_text()
    assert "UnknownIssuer" in log and "sslrootcert" in log, log[-2000:]
    assert PASSWORD not in log
