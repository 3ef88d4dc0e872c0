"""azure-storage-blob (with an azure-identity credential from the local authority)
against the gate: the real Azure SDK must not notice it is not talking to Azure.

Self-contained: starts `entraflow up` (authority and gate together) on a temporary
data directory, so it also covers `up` writing one env file for every client.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.identity import ClientSecretCredential
from azure.storage.blob import BlobServiceClient

from conftest import BIN
from conftest import parse_env_file as read_env
from helpers import allowed_soon


class Local:
    def __init__(self, data_dir: Path):
        self.dir = data_dir
        self.log = open(data_dir / "up.log", "w")
        self.proc = subprocess.Popen(
            [BIN, "--data-dir", str(data_dir), "up", "--authority-port", "0", "--imds-port", "0", "--gate-port", "0"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        # gate.env appears once env holds everything (authority and gate).
        while not (data_dir / "gate.env").exists():
            assert self.proc.poll() is None, (data_dir / "up.log").read_text()
            assert time.monotonic() < deadline, "entraflow up did not become ready"
            time.sleep(0.05)
        self.env = read_env(data_dir / "env")

    def cli(self, *args: str) -> dict:
        out = subprocess.run([BIN, "--data-dir", str(self.dir), *args, "-o", "json"],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def principal(self, name: str, role: str | None) -> ClientSecretCredential:
        app = self.cli("ad", "app", "create", "--display-name", name)
        sp = self.cli("ad", "sp", "create", "--id", app["appId"])
        secret = self.cli("ad", "app", "credential", "reset", "--id", app["appId"])["password"]
        if role:
            self.cli("role", "assignment", "create", "--assignee", sp["id"], "--role", role,
                     "--scope", self.env["ENTRAFLOW_STORAGE_SCOPE"])
        return ClientSecretCredential(self.env["AZURE_TENANT_ID"], app["appId"], secret,
                                      authority=self.env["AZURE_AUTHORITY_HOST"],
                                      disable_instance_discovery=True)

    def service(self, credential) -> BlobServiceClient:
        # Small single-put and chunk sizes so that a few MiB exercise Put Block /
        # Put Block List and chunked ranged downloads.
        return BlobServiceClient(self.env["ENTRAFLOW_BLOB_ENDPOINT"], credential=credential,
                                 max_single_put_size=4 << 20, max_block_size=4 << 20,
                                 max_single_get_size=4 << 20, max_chunk_get_size=4 << 20)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)
        self.log.close()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("gate")
    up = Local(data_dir)
    mp = pytest.MonkeyPatch()
    mp.setenv("SSL_CERT_FILE", up.env["SSL_CERT_FILE"])
    mp.setenv("REQUESTS_CA_BUNDLE", up.env["REQUESTS_CA_BUNDLE"])
    yield up
    mp.undo()
    up.stop()


def test_upload_list_ranged_download_copy_delete(local):
    svc = local.service(local.principal("trainer", "Storage Blob Data Contributor"))
    container = allowed_soon(lambda: svc.create_container("t" + uuid.uuid4().hex[:8], metadata={"team": "ml"}),
                             "create a container once the role applies")
    assert container.get_container_properties().metadata == {"team": "ml"}
    with pytest.raises(ResourceExistsError):
        svc.create_container(container.container_name)

    container.upload_blob("train/small.txt", b"hello tensorflow", metadata={"epoch": "1"})
    big = os.urandom((9 << 20) + 17)
    container.upload_blob("train/big.bin", big)  # 3 staged blocks + commit
    container.upload_blob("val/v.txt", b"v")
    with pytest.raises(ResourceExistsError):
        container.upload_blob("train/small.txt", b"no overwrite")

    assert [b.name for b in container.list_blobs()] == ["train/big.bin", "train/small.txt", "val/v.txt"]
    assert [b.name for b in container.walk_blobs(delimiter="/")] == ["train/", "val/"]
    assert [b.name for b in container.list_blobs(name_starts_with="train/b")] == ["train/big.bin"]

    blob = container.get_blob_client("train/big.bin")
    props = blob.get_blob_properties()
    assert props.size == len(big) and props.etag.count('"') == 2
    assert blob.download_blob(max_concurrency=2).readall() == big
    assert blob.download_blob(offset=1000, length=5000).readall() == big[1000:6000]
    small = container.get_blob_client("train/small.txt")
    assert small.get_blob_properties().metadata == {"epoch": "1"}
    container.upload_blob("empty", b"")
    assert container.download_blob("empty").readall() == b""

    copy = container.get_blob_client("copy.txt")
    copy.start_copy_from_url(small.url)
    assert copy.download_blob().readall() == b"hello tensorflow"
    copy.delete_blob()
    assert not copy.exists()
    container.delete_blobs("train/small.txt", "val/v.txt")  # Blob Batch
    assert [b.name for b in container.list_blobs()] == ["empty", "train/big.bin"]
    container.delete_container()
    assert not container.exists()


def test_a_principal_without_a_role_gets_authorization_permission_mismatch(local):
    owner = local.service(local.principal("owner", "Storage Blob Data Owner"))
    container = allowed_soon(lambda: owner.create_container("d" + uuid.uuid4().hex[:8]), "create a container")
    container.upload_blob("x.rec", b"secret")
    stranger = local.service(local.principal("stranger", None))
    with pytest.raises(HttpResponseError) as denied:
        stranger.get_blob_client(container.container_name, "x.rec").download_blob().readall()
    assert denied.value.status_code == 403
    assert denied.value.error_code == "AuthorizationPermissionMismatch"
    # The SDK's message carries the gate's explanation: who, what, where, which role.
    assert "Storage Blob Data Reader" in str(denied.value)
    assert "blobs/read" in str(denied.value)
