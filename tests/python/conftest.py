"""Fixtures that run the real `entraflow` binary and hand tests its environment.

Every test talks to servers started here over HTTPS on ephemeral loopback ports,
with real client libraries (azure-identity, msal, PyJWT, azure-storage-blob).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ENTRAFLOW_BIN", str(REPO / "target" / "debug" / "entraflow"))


def parse_env_file(path: Path) -> dict[str, str]:
    """Reads `export NAME=value` lines as a shell would."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        name, _, value = line[len("export "):].partition("=")
        parts = shlex.split(value) if value else [""]
        env[name] = parts[0] if parts else ""
    return env


class Server:
    """A running `entraflow` server process and the environment it wrote."""

    def __init__(self, data_dir: Path, args: list[str], ready_file: str):
        self.data_dir = data_dir
        ready = data_dir / ready_file
        ready.unlink(missing_ok=True)
        self.log = open(data_dir / f"{args[0]}.log", "w")
        self.proc = subprocess.Popen(
            [BIN, "--data-dir", str(data_dir), *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ENTRAFLOW_LOG": "info"},
        )
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{args} exited early:\n{(data_dir / f'{args[0]}.log').read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{args} did not become ready in 60 s")
            time.sleep(0.05)
        self.env = parse_env_file(ready)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class Authority:
    """The local authority plus helpers to administer its tenant through the CLI."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.server = Server(data_dir, ["authority", "serve", "--port", "0", "--imds-port", "0", "--device-code-interval", "1"], "env")
        self.env = self.server.env
        self.host = self.env["AZURE_AUTHORITY_HOST"]
        self.tenant = self.env["AZURE_TENANT_ID"]
        self.ca = self.env["SSL_CERT_FILE"]
        self.imds = parse_env_file(data_dir / "imds.env")["AZURE_POD_IDENTITY_AUTHORITY_HOST"]

    def cli(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [BIN, "--data-dir", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            input=input,
            check=check,
        )

    def json(self, *args: str, input: str | None = None):
        out = self.cli(*args, "-o", "json", input=input)
        return json.loads(out.stdout)

    def token_endpoint(self, version: str = "v2.0") -> str:
        if version == "v1":
            return f"{self.host}/{self.tenant}/oauth2/token"
        return f"{self.host}/{self.tenant}/oauth2/v2.0/token"

    def new_app(self, name: str, *extra: str) -> dict:
        """An application with a service principal, as `az ad app create` + `az ad sp create`."""
        app = self.json("ad", "app", "create", "--display-name", name, *extra)
        sp = self.json("ad", "sp", "create", "--id", app["appId"])
        return {**app, "spObjectId": sp["id"]}

    def new_secret(self, app_id: str, *extra: str) -> str:
        return self.json("ad", "app", "credential", "reset", "--id", app_id, *extra)["password"]

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="session")
def authority(tmp_path_factory, monkeypatch_session):
    data_dir = tmp_path_factory.mktemp("authority")
    auth = Authority(data_dir)
    # Clients in this process trust the local CA exactly as a job that sourced `env` would.
    monkeypatch_session.setenv("SSL_CERT_FILE", auth.ca)
    monkeypatch_session.setenv("REQUESTS_CA_BUNDLE", auth.ca)
    yield auth
    auth.stop()


@pytest.fixture(scope="session")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


class Gate:
    """The gate on the authority's data directory, trusting that authority."""

    def __init__(self, authority: Authority):
        self.authority = authority
        self.server = Server(authority.data_dir, ["gate", "serve", "--port", "0"], "gate.env")
        self.endpoint = self.server.env["ENTRAFLOW_BLOB_ENDPOINT"]
        self.scope = self.server.env["ENTRAFLOW_STORAGE_SCOPE"]

    def container_scope(self, container: str) -> str:
        return f"{self.scope}/blobServices/default/containers/{container}"

    def assign(self, principal_id: str, role: str, scope: str, *extra: str) -> dict:
        return self.authority.json("role", "assignment", "create", "--assignee", principal_id, "--role", role,
                                   "--scope", scope, *extra)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="session")
def gate(authority):
    g = Gate(authority)
    yield g
    g.stop()
