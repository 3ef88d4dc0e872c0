"""Faults injected into a real stack (`entraflow up`): SIGKILL while 16 clients
upload, and the data directory running out of room. What the clients were told
succeeded must be there, intact, and audit verify must pass; while there is no
room, clients get an error that names the cause, and the stack recovers on its own
when room returns. Results go to RELIABILITY.md.

"No room" is made with RLIMIT_FSIZE on the server process (writes past the limit
fail with EFBIG, SIGXFSZ ignored), then lifted with prlimit on the running process:
the same failing-write path as a full disk, without needing a mount."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import requests

from conftest import BIN
from conftest import parse_env_file as read_env
from helpers import STORAGE_SCOPE, Report

VERSION = "2025-01-05"


class Up:
    def __init__(self, data: Path, fsize: int | None = None, env: dict | None = None):
        self.data = data
        for f in ("env", "gate.env"):
            (data / f).unlink(missing_ok=True)

        def limits():
            if fsize is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))

        self.log = open(data.parent / f"up-{uuid.uuid4().hex[:6]}.log", "w")
        self.proc = subprocess.Popen([BIN, "--data-dir", str(data), "up", "--authority-port", "0", "--imds-port", "0",
                                      "--gate-port", "0"], stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=limits, env={**os.environ, **(env or {})})
        self.extra_env = env or {}
        deadline = time.monotonic() + 60
        while not (data / "gate.env").exists():
            assert self.proc.poll() is None, Path(self.log.name).read_text()[-3000:]
            assert time.monotonic() < deadline, "entraflow up did not become ready"
            time.sleep(0.05)
        self.env = read_env(data / "env")
        self.ca = self.env["SSL_CERT_FILE"]
        self.blob = self.env["ENTRAFLOW_BLOB_ENDPOINT"]

    def cli(self, *args: str) -> dict:
        out = subprocess.run([BIN, "--data-dir", str(self.data), *args, "-o", "json"], capture_output=True, text=True,
                             env={**os.environ, **self.extra_env})
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    def token(self, app: dict, secret: str, scope: str = STORAGE_SCOPE) -> str:
        r = requests.post(f"{self.env['AZURE_AUTHORITY_HOST']}/{self.env['AZURE_TENANT_ID']}/oauth2/v2.0/token",
                          data={"grant_type": "client_credentials", "client_id": app["appId"],
                                "client_secret": secret, "scope": scope}, verify=self.ca, timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]

    def request(self, method: str, path: str, token: str, body: bytes = b"", **headers) -> requests.Response:
        h = {"Authorization": f"Bearer {token}", "x-ms-version": VERSION, **headers}
        return requests.request(method, self.blob + path, headers=h, data=body, verify=self.ca, timeout=60)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)
        self.log.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


def writer(up: Up, *extra_roles: str) -> tuple[dict, str]:
    app = up.cli("ad", "app", "create", "--display-name", f"faults-{uuid.uuid4().hex[:6]}")
    sp = up.cli("ad", "sp", "create", "--id", app["appId"])
    secret = up.cli("ad", "app", "credential", "reset", "--id", app["appId"])["password"]
    for role in ("Storage Blob Data Contributor", *extra_roles):
        up.cli("role", "assignment", "create", "--assignee", sp["id"], "--role", role,
               "--scope", up.env["ENTRAFLOW_STORAGE_SCOPE"])
    app["spObjectId"] = sp["id"]
    return app, secret


def wait_allowed(up: Up, token: str, container: str) -> None:
    deadline = time.monotonic() + 10
    while (r := up.request("PUT", f"/{container}?restype=container", token)).status_code == 403:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.05)
    assert r.status_code in (201, 409), r.text


def verify_audit(data: Path, env: dict | None = None) -> tuple[bool, str]:
    out = subprocess.run([BIN, "--data-dir", str(data), "audit", "verify"], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    verdict = [l for l in out.stdout.splitlines() if l.startswith(("OK", "FAIL", "PROBLEM"))] or [out.stderr.strip()]
    return out.returncode == 0, verdict[0][:60]


def test_sigkill_under_concurrent_writes_loses_no_acknowledged_write(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    up = Up(data)
    app, secret = writer(up)
    token = up.token(app, secret)
    wait_allowed(up, token, "crash")
    acked: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def upload(worker: int) -> None:
        i = 0
        while not stop.is_set():
            name = f"w{worker}/blob-{i}"
            body = os.urandom(4096 + 97 * i)
            try:
                r = up.request("PUT", f"/crash/{name}", token, body, **{"x-ms-blob-type": "BlockBlob"})
            except requests.RequestException:
                return  # the server died mid-request: not acknowledged
            if r.status_code == 201:
                with lock:
                    acked[name] = hashlib.sha256(body).hexdigest()
            i += 1

    threads = [threading.Thread(target=upload, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    time.sleep(2.5)
    up.kill()
    stop.set()
    for t in threads:
        t.join(timeout=60)

    up = Up(data)
    try:
        token = up.token(app, secret)
        missing = damaged = 0
        for name, digest in acked.items():
            r = up.request("GET", f"/crash/{name}", token)
            if r.status_code != 200:
                missing += 1
            elif hashlib.sha256(r.content).hexdigest() != digest:
                damaged += 1
    finally:
        up.stop()
    ok, summary = verify_audit(data)
    report = Report("reliability", "Gate SIGKILL under 16 concurrent uploaders")
    report.check("uploads acknowledged before the kill", "more than 50", str(len(acked)), len(acked) > 50)
    report.check("acknowledged blobs present after restart", "all", f"{len(acked) - missing} of {len(acked)}",
                 missing == 0)
    report.check("acknowledged blobs intact (SHA-256)", "all", f"{len(acked) - missing - damaged} of {len(acked) - missing}",
                 damaged == 0)
    report.check("audit verify after the crash", "passes", summary, ok)
    report.finish()


def test_no_room_is_a_clear_error_nothing_is_corrupted_and_room_returning_recovers(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # A first start creates the data directory; the limit applies from the second.
    up = Up(data)
    app, secret = writer(up)
    up.stop()
    limit = 24 << 20
    up = Up(data, fsize=limit)
    report = Report("reliability", "No room on the data directory")
    try:
        token = up.token(app, secret)
        wait_allowed(up, token, "room")
        small = os.urandom(64 << 10)
        r = up.request("PUT", "/room/before.bin", token, small, **{"x-ms-blob-type": "BlockBlob"})
        assert r.status_code == 201, r.text
        # A blob larger than the room left: the write fails on the file system.
        big = r = up.request("PUT", "/room/too-big.bin", token, os.urandom(limit + (1 << 20)),
                             **{"x-ms-blob-type": "BlockBlob"})
        code = big.headers.get("x-ms-error-code", "")
        report.check("an upload larger than the room left", "5xx with an error naming the cause",
                     f"{big.status_code} {code}: {big.text[:120]!r}",
                     big.status_code >= 500 and ("space" in big.text.lower() or "room" in big.text.lower()
                                                 or "large" in big.text.lower()))
        r = up.request("GET", "/room/too-big.bin", token)
        report.check("the failed upload left no blob", "404", str(r.status_code), r.status_code == 404)
        r = up.request("GET", "/room/before.bin", token)
        report.check("a blob written before is intact", "200, same bytes", f"{r.status_code}",
                     r.status_code == 200 and r.content == small)
        # Room returns: lift the limit on the running process.
        resource.prlimit(up.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        body = os.urandom(limit + (1 << 20))
        r = up.request("PUT", "/room/after.bin", token, body, **{"x-ms-blob-type": "BlockBlob"})
        report.check("room returns: the same upload, no restart", "201", str(r.status_code), r.status_code == 201)
        r = up.request("GET", "/room/after.bin", token)
        report.check("the blob written after is intact", "200, same bytes", str(r.status_code),
                     r.status_code == 200 and r.content == body)
    finally:
        up.stop()
    ok, summary = verify_audit(data)
    report.check("audit verify afterwards", "passes", summary, ok)
    report.finish()


def test_an_audit_log_without_room_refuses_changes_untouched_then_recovers_on_its_own(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    up = Up(data)
    app, secret = writer(up, "Owner")
    up.stop()
    # Every file the server writes may grow to 2 MiB: the audit log's write-ahead
    # file reaches it after some hundreds of requests.
    up = Up(data, fsize=2 << 20)
    report = Report("reliability", "No room for the audit log")
    acked = {}
    try:
        token = up.token(app, secret)
        arm_token = up.token(app, secret, "https://management.azure.com/.default")
        wait_allowed(up, token, "audited")
        refused = refused_name = None
        for i in range(5000):
            body = os.urandom(512)
            r = up.request("PUT", f"/audited/b{i}", token, body, **{"x-ms-blob-type": "BlockBlob"})
            if r.status_code == 201:
                acked[f"b{i}"] = body
                continue
            refused, refused_name = r, f"b{i}"
            break
        report.check("writes until the audit log has no room", "then 503 naming the audit log",
                     "never refused" if refused is None else
                     f"{refused.status_code} after {len(acked)} writes: {refused.headers.get('x-ms-error-code')}",
                     refused is not None and refused.status_code == 503 and "audit" in refused.text)
        # Changes of every kind are refused, and refused before anything changes: no
        # change is ever made that the audit log does not hold a decision for.
        victim = next(iter(acked), None)
        deleted = up.request("DELETE", f"/audited/{victim}", token)
        assignment = str(uuid.uuid4())
        scope = up.env["ENTRAFLOW_STORAGE_SCOPE"]
        arm = (f"{up.env['ENTRAFLOW_ADMIN_ENDPOINT']}{scope}/providers/Microsoft.Authorization/"
               f"roleAssignments/{assignment}?api-version=2022-04-01")
        granted = requests.put(arm, headers={"Authorization": f"Bearer {arm_token}"}, verify=up.ca, timeout=30, json={
            "properties": {"roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/"
                                               "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
                           "principalId": app["spObjectId"], "principalType": "ServicePrincipal"}})
        report.check("a delete and a role assignment while there is no room", "both 503",
                     f"{deleted.status_code}, {granted.status_code}",
                     deleted.status_code == 503 and granted.status_code == 503)
        resource.prlimit(up.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        deadline = time.monotonic() + 10
        while (r := up.request("PUT", "/audited/after", token, b"after", **{"x-ms-blob-type": "BlockBlob"})).status_code != 201:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        report.check("room returns: writes succeed again, no restart", "201 within 10 s", str(r.status_code),
                     r.status_code == 201)
        intact = sum(1 for name, body in acked.items()
                     if (g := up.request("GET", f"/audited/{name}", token)).status_code == 200 and g.content == body)
        report.check("every acknowledged write is intact (the refused delete too)", f"{len(acked)} of {len(acked)}",
                     f"{intact} of {len(acked)}", intact == len(acked) and victim is not None)
        left = up.request("GET", f"/audited/{refused_name}", token).status_code if refused_name else None
        report.check("the refused write left nothing behind", "404", str(left), left == 404)
        found = requests.get(arm, headers={"Authorization": f"Bearer {arm_token}"}, verify=up.ca, timeout=30)
        report.check("the refused role assignment does not exist", "404", str(found.status_code),
                     found.status_code == 404)
    finally:
        up.stop()
    ok, summary = verify_audit(data)
    report.check("audit verify afterwards", "passes", summary, ok)
    report.finish()


def postgres_audit_store() -> dict:
    """The environment for an audit store on a new database of the test PostgreSQL
    (no other test shares it), so the audit log is not the file that fills."""
    url = os.environ.get("ENTRAFLOW_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("ENTRAFLOW_REQUIRE_POSTGRES") == "1":
            raise RuntimeError("ENTRAFLOW_REQUIRE_POSTGRES=1 but ENTRAFLOW_TEST_POSTGRES_URL is not set")
        import pytest

        pytest.skip("ENTRAFLOW_TEST_POSTGRES_URL is not set (scripts/test.sh sets it)")
    import psycopg

    name = f"faults_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return {"ENTRAFLOW_AUDIT_STORE": url.rsplit("/", 1)[0] + "/" + name}


def test_no_room_for_the_blob_metadata_database_is_a_clear_error_and_recovers(tmp_path):
    # The audit log lives in PostgreSQL here, so the first file to run out of room is
    # the gate's own gate.db (blob properties and metadata), not audit.db.
    env = postgres_audit_store()
    data = tmp_path / "data"
    data.mkdir()
    up = Up(data, env=env)
    app, secret = writer(up)
    up.stop()
    up = Up(data, fsize=2 << 20, env=env)
    report = Report("reliability", "No room for the gate's metadata (gate.db)")
    acked = {}
    # Azure allows 8 KiB of metadata per blob: each write grows gate.db by about that.
    meta = {f"x-ms-meta-k{i}": "v" * 700 for i in range(10)}
    try:
        token = up.token(app, secret)
        wait_allowed(up, token, "meta")
        refused = refused_name = None
        for i in range(2000):
            body = os.urandom(256)
            r = up.request("PUT", f"/meta/b{i}", token, body, **{"x-ms-blob-type": "BlockBlob"}, **meta)
            if r.status_code == 201:
                acked[f"b{i}"] = body
                continue
            refused, refused_name = r, f"b{i}"
            break
        report.check("writes until gate.db has no room", "then 5xx naming the cause",
                     "never refused" if refused is None else
                     f"{refused.status_code} after {len(acked)} writes: {refused.text[:160]!r}",
                     refused is not None and refused.status_code >= 500
                     and ("room" in refused.text.lower() or "space" in refused.text.lower()))
        left = up.request("GET", f"/meta/{refused_name}", token).status_code if refused_name else None
        report.check("the refused write left no blob", "404", str(left), left == 404)
        over = up.request("PUT", "/meta/b0", token, b"new bytes", **{"x-ms-blob-type": "BlockBlob"},
                          **{**meta, "x-ms-meta-k9": "changed"})
        report.check("an overwrite while there is no room", "503, the old blob kept (checked below)",
                     str(over.status_code), over.status_code == 503)
        resource.prlimit(up.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        r = up.request("PUT", "/meta/after", token, b"after", **{"x-ms-blob-type": "BlockBlob"}, **meta)
        report.check("room returns: the same write succeeds, no restart", "201", str(r.status_code),
                     r.status_code == 201)
        intact = 0
        for name, body in acked.items():
            g = up.request("GET", f"/meta/{name}", token)
            intact += g.status_code == 200 and g.content == body and g.headers.get("x-ms-meta-k9") == "v" * 700
        report.check("every acknowledged blob and its metadata intact (the overwritten one too)",
                     f"{len(acked)} of {len(acked)}",
                     f"{intact} of {len(acked)}", intact == len(acked) and len(acked) > 0)
    finally:
        up.stop()
    ok, summary = verify_audit(data, env)
    report.check("audit verify afterwards (PostgreSQL store)", "passes", summary, ok)
    report.finish()


def test_no_room_for_the_authority_database_is_a_clear_error_and_recovers(tmp_path):
    # Audit on PostgreSQL again: the file that fills is authority.db, where device
    # codes (and refresh tokens) live.
    env = postgres_audit_store()
    data = tmp_path / "data"
    data.mkdir()
    up = Up(data, env=env)
    app, secret = writer(up)
    public = up.cli("ad", "app", "create", "--display-name", "faults-notebook", "--public-client")
    up.stop()
    up = Up(data, fsize=1 << 20, env=env)
    report = Report("reliability", "No room for the authority's database (authority.db)")
    host, tenant = up.env["AZURE_AUTHORITY_HOST"], up.env["AZURE_TENANT_ID"]

    def device_code() -> requests.Response:
        return requests.post(f"{host}/{tenant}/oauth2/v2.0/devicecode", verify=up.ca, timeout=30,
                             data={"client_id": public["appId"], "scope": f"{STORAGE_SCOPE} offline_access"})

    try:
        issued = 0
        refused = None
        for _ in range(5000):
            r = device_code()
            if r.status_code == 200:
                issued += 1
                continue
            refused = r
            break
        body = {} if refused is None else (refused.json() if refused.headers.get("content-type", "").startswith(
            "application/json") else {"error": refused.text[:80]})
        described = f"{body.get('error')}: {str(body.get('error_description', ''))[:100]}"
        report.check("device codes until authority.db has no room", "then 503 temporarily_unavailable naming the cause",
                     "never refused" if refused is None else f"{refused.status_code} after {issued}: {described}",
                     refused is not None and refused.status_code == 503
                     and body.get("error") == "temporarily_unavailable"
                     and "room" in str(body.get("error_description", "")).lower())
        # A token that needs nothing stored still comes: the authority is degraded, not down.
        try:
            up.token(app, secret)
            still = "issued"
        except requests.HTTPError as e:
            still = f"{e.response.status_code}"
        report.check("client_credentials while there is no room", "issued (nothing to store but the audit record)",
                     still, still == "issued")
        resource.prlimit(up.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        r = device_code()
        report.check("room returns: device codes again, no restart", "200", str(r.status_code), r.status_code == 200)
    finally:
        up.stop()
    ok, summary = verify_audit(data, env)
    report.check("audit verify afterwards (PostgreSQL store)", "passes", summary, ok)
    report.finish()


def test_no_room_for_the_role_store_is_a_clear_error_and_recovers(tmp_path):
    # Audit on PostgreSQL: the file that fills is rbac.db, written by the admin API.
    env = postgres_audit_store()
    data = tmp_path / "data"
    data.mkdir()
    up = Up(data, env=env)
    app, secret = writer(up, "Owner")
    up.stop()
    up = Up(data, fsize=1 << 20, env=env)
    report = Report("reliability", "No room for the role store (rbac.db)")
    scope = up.env["ENTRAFLOW_STORAGE_SCOPE"]
    reader = "/providers/Microsoft.Authorization/roleDefinitions/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"

    def assignment_url(name: str) -> str:
        return (f"{up.env['ENTRAFLOW_ADMIN_ENDPOINT']}{scope}/providers/Microsoft.Authorization/"
                f"roleAssignments/{name}?api-version=2022-04-01")

    try:
        arm = {"Authorization": f"Bearer {up.token(app, secret, 'https://management.azure.com/.default')}"}

        def grant(name: str) -> requests.Response:
            # A long description makes each assignment a few KiB of rbac.db.
            return requests.put(assignment_url(name), headers=arm, verify=up.ca, timeout=30, json={
                "properties": {"roleDefinitionId": reader, "principalId": str(uuid.uuid4()),
                               "principalType": "ServicePrincipal", "description": "d" * 2000}})

        made, refused, refused_name = [], None, None
        for _ in range(3000):
            name = str(uuid.uuid4())
            r = grant(name)
            if r.status_code == 201:
                made.append(name)
                continue
            refused, refused_name = r, name
            break
        code = (refused.json().get("error", {}).get("code") if refused is not None else None)
        report.check("role assignments until rbac.db has no room", "then 503 ServiceUnavailable naming the cause",
                     "never refused" if refused is None else f"{refused.status_code} {code} after {len(made)}",
                     refused is not None and refused.status_code == 503 and "room" in refused.text)
        # Blob reads only read rbac.db: they keep working.
        token = up.token(app, secret)
        r = up.request("GET", "/?comp=list", token)
        report.check("Blob requests while rbac.db has no room", "200", str(r.status_code), r.status_code == 200)
        resource.prlimit(up.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        left = requests.get(assignment_url(refused_name), headers=arm, verify=up.ca, timeout=30).status_code \
            if refused_name else None
        report.check("the refused assignment does not exist", "404", str(left), left == 404)
        kept = sum(requests.get(assignment_url(n), headers=arm, verify=up.ca, timeout=30).status_code == 200
                   for n in made)
        report.check("every acknowledged assignment is there", f"{len(made)} of {len(made)}", f"{kept} of {len(made)}",
                     kept == len(made) and len(made) > 0)
        r = grant(str(uuid.uuid4()))
        report.check("room returns: assignments again, no restart", "201", str(r.status_code), r.status_code == 201)
    finally:
        up.stop()
    ok, summary = verify_audit(data, env)
    report.check("audit verify afterwards (PostgreSQL store)", "passes", summary, ok)
    report.finish()
