"""No secret ends up where people read: the whole stack runs at trace level while a
session exercises every credential (client secrets right and wrong, a user's
password right and wrong, access and refresh tokens, device codes, Blob requests
allowed and denied, admin changes), then every log line, every audit record and
every error body is searched for each secret. Results go to SECURITY.md."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import requests

from conftest import BIN
from conftest import parse_env_file as read_env
from helpers import STORAGE_SCOPE, Report


def test_no_secret_reaches_a_log_an_audit_record_or_an_error_body(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    log = open(tmp_path / "up-trace.log", "w")
    env = {**os.environ, "ENTRAFLOW_LOG": "trace"}
    proc = subprocess.Popen([BIN, "--data-dir", str(data), "up", "--authority-port", "0", "--imds-port", "0",
                             "--gate-port", "0"], stdout=log, stderr=subprocess.STDOUT, env=env)
    cli_output: list[str] = []
    bodies: list[str] = []
    secrets: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 60
        while not (data / "gate.env").exists():
            assert proc.poll() is None, (tmp_path / "up-trace.log").read_text()[-4000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        e = read_env(data / "env")
        ca, host, tenant = e["SSL_CERT_FILE"], e["AZURE_AUTHORITY_HOST"], e["AZURE_TENANT_ID"]
        blob = e["ENTRAFLOW_BLOB_ENDPOINT"]

        def cli(*args: str, input: str | None = None) -> dict:
            out = subprocess.run([BIN, "--data-dir", str(data), *args, "-o", "json"], capture_output=True,
                                 text=True, input=input, env=env)
            cli_output.append(out.stderr)
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout) if out.stdout.strip() else {}

        def keep(r: requests.Response) -> None:
            """Error bodies are what a client logs; a success body is the secret itself."""
            if r.status_code >= 400:
                bodies.append(r.text)

        def post(url: str, form: dict) -> dict:
            r = requests.post(url, data=form, verify=ca, timeout=30)
            keep(r)
            return r.json() if r.headers.get("content-type", "").startswith("application/json") else {}

        token_url = f"{host}/{tenant}/oauth2/v2.0/token"
        app = cli("ad", "app", "create", "--display-name", "trace-job")
        sp = cli("ad", "sp", "create", "--id", app["appId"])
        secrets["client secret"] = cli("ad", "app", "credential", "reset", "--id", app["appId"])["password"]
        cli("role", "assignment", "create", "--assignee", sp["id"], "--role", "Storage Blob Data Contributor",
            "--scope", e["ENTRAFLOW_STORAGE_SCOPE"])
        secrets["user password"] = "trace horse battery " + uuid.uuid4().hex[:6]
        cli("ad", "user", "create", "--upn", "tracy@entraflow.local", "--display-name", "Tracy",
            "--password-stdin", input=secrets["user password"] + "\n")

        # Client credentials: wrong, then right.
        wrong_secret = "wrong-" + uuid.uuid4().hex * 2
        secrets["wrong client secret"] = wrong_secret
        post(token_url, {"grant_type": "client_credentials", "client_id": app["appId"],
                         "client_secret": wrong_secret, "scope": STORAGE_SCOPE})
        tok = post(token_url, {"grant_type": "client_credentials", "client_id": app["appId"],
                               "client_secret": secrets["client secret"], "scope": STORAGE_SCOPE})
        secrets["access token"] = tok["access_token"]
        secrets["access token signature"] = tok["access_token"].rsplit(".", 1)[1]

        # Blob requests, allowed and denied (a forged token too).
        auth = {"Authorization": f"Bearer {tok['access_token']}", "x-ms-version": "2025-01-05"}
        for method, path, extra in [("PUT", "/trace?restype=container", {}),
                                    ("PUT", "/trace/a.bin", {"x-ms-blob-type": "BlockBlob"}),
                                    ("GET", "/trace/a.bin", {}), ("GET", "/trace/missing.bin", {}),
                                    ("DELETE", "/trace?restype=container&comp=lease", {})]:
            r = requests.request(method, blob + path, headers={**auth, **extra}, data=b"x", verify=ca, timeout=30)
            keep(r)
        forged = tok["access_token"][:-8] + "AAAAAAAA"
        r = requests.get(blob + "/trace/a.bin", headers={**auth, "Authorization": f"Bearer {forged}"},
                         verify=ca, timeout=30)
        keep(r)

        # A person: device code, a wrong password, the right one, then a refresh.
        public = cli("ad", "app", "create", "--display-name", "trace-notebook", "--public-client")
        dc = post(f"{host}/{tenant}/oauth2/v2.0/devicecode",
                  {"client_id": public["appId"], "scope": f"{STORAGE_SCOPE} offline_access"})
        secrets["device code"] = dc["device_code"]
        for password in ("not the password", secrets["user password"]):
            r = requests.post(f"{host}/devicelogin", data={"code": dc["user_code"], "upn": "tracy@entraflow.local",
                                                           "password": password, "action": "approve"},
                              verify=ca, timeout=30)
            keep(r)
        secrets["wrong user password"] = "not the password"
        user = post(token_url, {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                "client_id": public["appId"], "device_code": dc["device_code"]})
        secrets["user access token"] = user["access_token"]
        secrets["refresh token"] = user["refresh_token"]
        refreshed = post(token_url, {"grant_type": "refresh_token", "client_id": public["appId"],
                                     "refresh_token": user["refresh_token"]})
        secrets["rotated refresh token"] = refreshed["refresh_token"]
        post(token_url, {"grant_type": "refresh_token", "client_id": public["appId"],
                         "refresh_token": user["refresh_token"]})  # spent: refused
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()

    export = tmp_path / "audit.jsonl"
    out = subprocess.run([BIN, "--data-dir", str(data), "audit", "export", "--out", str(export)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    key_pem = (data / "ca-key.pem").read_text()
    secrets["CA private key"] = "".join(l for l in key_pem.splitlines() if "-----" not in l)[:64]

    logs = (tmp_path / "up-trace.log").read_text() + "".join(p.read_text(errors="replace") for p in data.glob("*.log"))
    assert "TRACE" in logs or "trace" in logs, "the stack did not log at trace level"
    assert len(bodies) >= 5, f"only {len(bodies)} error bodies were collected"
    sources = {
        "logs at trace level": logs,
        "audit records": export.read_text(),
        "error bodies": "\n".join(bodies),
        "CLI stderr": "\n".join(cli_output),
    }
    report = Report("security", "Secrets in logs")
    for source, text in sources.items():
        assert text, f"nothing was collected from {source}"
        for kind, secret in secrets.items():
            found = secret in text
            report.check(f"{kind} in {source}", "absent", "FOUND" if found else "absent", not found)
    report.finish()
