"""entraflow.fsspec: fsspec (pandas, PyTorch, JAX) over the same Rust client as the
TensorFlow plugin, through the real gate.

Data is written with azure-storage-blob (a client entraflow did not write) and read
back with fsspec, and the other way round. The filesystem takes its identity from the
environment, as a training job would (a service principal's variables, set for this
module only), or from an `entraflow.identity` credential object.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import multiprocessing
import os
import pickle
import time
import uuid

import fsspec
import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient

from entraflow.fsspec import EntraflowFileSystem
from entraflow.identity import ClientSecretCredential
from helpers import allowed_soon

RUN_ID = "pytest-fsspec-" + uuid.uuid4().hex[:8]


class Principal:
    def __init__(self, authority, name: str):
        app = authority.new_app(name)
        self.app_id, self.oid = app["appId"], app["spObjectId"]
        self.secret = authority.new_secret(self.app_id)
        self.authority = authority

    def env(self) -> dict[str, str]:
        return {
            "AZURE_TENANT_ID": self.authority.tenant,
            "AZURE_CLIENT_ID": self.app_id,
            "AZURE_CLIENT_SECRET": self.secret,
            "AZURE_AUTHORITY_HOST": self.authority.host,
        }

    def credential(self) -> ClientSecretCredential:
        return ClientSecretCredential(self.authority.tenant, self.app_id, self.secret, authority=self.authority.host)


class Storage:
    def __init__(self, authority, gate):
        self.account = gate.endpoint.rstrip("/").rsplit("/", 1)[1]
        self.container = "fsspec-" + uuid.uuid4().hex[:10]
        self.trainer = Principal(authority, "fsspec-trainer")
        gate.assign(self.trainer.oid, "Storage Blob Data Contributor", gate.scope)
        self.stranger = Principal(authority, "fsspec-no-role")
        service = BlobServiceClient(gate.endpoint, credential=self.trainer.credential(),
                                    connection_verify=authority.ca)
        self.blobs = allowed_soon(lambda: service.create_container(self.container), "create the container")

    def path(self, name: str = "") -> str:
        """fsspec's form: account/container/name."""
        return f"{self.account}/{self.container}" + (f"/{name}" if name else "")

    def url(self, name: str = "", scheme: str = "entraflow") -> str:
        return f"{scheme}://{self.path(name)}"

    def upload(self, name: str, data: bytes) -> None:
        self.blobs.upload_blob(name, data, overwrite=True)

    def download(self, name: str) -> bytes:
        return self.blobs.download_blob(name).readall()


@pytest.fixture(scope="module")
def storage(authority, gate):
    s = Storage(authority, gate)
    mp = pytest.MonkeyPatch()  # the job's environment, for this module only
    for name, value in {**s.trainer.env(), "ENTRAFLOW_BLOB_ENDPOINT": gate.endpoint,
                        "ENTRAFLOW_RUN_ID": RUN_ID}.items():
        mp.setenv(name, value)
    yield s
    mp.undo()


@pytest.fixture(scope="module")
def fs(storage) -> EntraflowFileSystem:
    return fsspec.filesystem("entraflow", skip_instance_cache=True)


def blob(size: int, seed: int = 1) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


def test_the_protocols_are_registered_by_entry_point():
    assert fsspec.get_filesystem_class("entraflow") is EntraflowFileSystem
    assert fsspec.get_filesystem_class("azent") is EntraflowFileSystem


def test_fsspec_open_reads_what_the_azure_sdk_wrote(storage, fs):
    data = os.urandom(11 << 20)  # several read-ahead chunks (the first is 1 MiB, then 2, 4, 8)
    storage.upload("data/big.bin", data)
    with fsspec.open(storage.url("data/big.bin"), "rb") as f:
        assert f.size == len(data)
        assert f.read(1000) == data[:1000]
        assert f.tell() == 1000
        rest = b"".join(iter(lambda: f.read(256 << 10), b""))
        assert rest == data[1000:]
        f.seek(-100, io.SEEK_END)
        assert f.read() == data[-100:]
        f.seek(5_000_000)
        assert f.read(10) == data[5_000_000:5_000_010]
    storage.upload("data/hello.txt", "héllo\nwörld\n".encode())
    with fsspec.open(storage.url("data/hello.txt"), "rt", encoding="utf-8") as f:
        assert f.readlines() == ["héllo\n", "wörld\n"]
    with pytest.raises(FileNotFoundError):
        fsspec.open(storage.url("data/missing.bin"), "rb").open()


def test_ls_and_info(storage, fs):
    storage.upload("tree/a.bin", b"a" * 10)
    storage.upload("tree/b.bin", b"b" * 20)
    storage.upload("tree/sub/c.bin", b"c" * 30)
    listing = fs.ls(storage.url("tree"), detail=True)
    assert [(e["name"], e["size"], e["type"]) for e in listing] == [
        (storage.path("tree/a.bin"), 10, "file"),
        (storage.path("tree/b.bin"), 20, "file"),
        (storage.path("tree/sub"), 0, "directory"),
    ]
    assert fs.ls(storage.url("tree"), detail=False) == [e["name"] for e in listing]
    info = fs.info(storage.url("tree/sub/c.bin"))
    assert info["size"] == 30 and info["type"] == "file"
    assert abs(info["mtime"] - time.time()) < 300
    assert fs.info(storage.url("tree/sub"))["type"] == "directory"
    assert fs.isdir(storage.url("tree")) and fs.isfile(storage.url("tree/a.bin"))
    assert not fs.exists(storage.url("tree/nope"))
    with pytest.raises(FileNotFoundError):
        fs.info(storage.url("tree/nope"))
    # A file lists as itself; walking and globbing find everything below.
    assert fs.ls(storage.url("tree/a.bin"), detail=False) == [storage.path("tree/a.bin")]
    assert sorted(fs.find(storage.url("tree"))) == [storage.path(n) for n in ("tree/a.bin", "tree/b.bin", "tree/sub/c.bin")]
    assert fs.glob(storage.url("tree/*.bin")) == [storage.path("tree/a.bin"), storage.path("tree/b.bin")]
    assert fs.glob(storage.url("tree/**/*.bin")) == [storage.path(n) for n in ("tree/a.bin", "tree/b.bin", "tree/sub/c.bin")]


def test_ranged_cat_file(storage, fs):
    data = blob(100_000, seed=2)
    storage.upload("ranges/r.bin", data)
    url = storage.url("ranges/r.bin")
    assert fs.cat_file(url) == data
    assert fs.cat_file(url, 10, 20) == data[10:20]
    assert fs.cat_file(url, 99_990) == data[99_990:]
    assert fs.cat_file(url, -5) == data[-5:]
    assert fs.cat_file(url, 10, -10) == data[10:-10]
    assert fs.cat_file(url, 90_000, 200_000) == data[90_000:]
    assert fs.cat_file(url, 200_000, 300_000) == b""
    assert fs.cat_file(url, 20, 20) == b""
    with pytest.raises(FileNotFoundError):
        fs.cat_file(storage.url("ranges/none.bin"), 0, 10)


def test_writes_become_visible_on_close_only(storage, fs):
    data = os.urandom(20 << 20)  # three Put Block calls and a Put Block List
    url = storage.url("written/big.bin")
    f = fs.open(url, "wb")
    for i in range(0, len(data), 3 << 20):
        f.write(data[i:i + (3 << 20)])
    f.flush()
    assert not storage.blobs.get_blob_client("written/big.bin").exists()
    f.close()
    assert storage.download("written/big.bin") == data

    # An exception inside `with` discards the new content; the old blob stays.
    with pytest.raises(RuntimeError):
        with fs.open(url, "wb") as f:
            f.write(b"half a checkpoint")
            raise RuntimeError("training crashed")
    assert storage.blobs.get_blob_client("written/big.bin").get_blob_properties().size == len(data)

    fs.pipe_file(storage.url("written/small.txt"), b"small")
    assert storage.download("written/small.txt") == b"small"
    with fs.open(storage.url("written/small.txt"), "ab") as f:
        f.write(b" and more")
    assert fs.cat_file(storage.url("written/small.txt")) == b"small and more"
    with pytest.raises(FileExistsError):
        fs.open(storage.url("written/small.txt"), "xb")


def test_copy_move_remove_and_directories(storage, fs):
    fs.pipe_file(storage.url("ops/a.txt"), b"alpha")
    fs.cp_file(storage.url("ops/a.txt"), storage.url("ops/b.txt"))
    assert storage.download("ops/b.txt") == b"alpha"
    fs.mv(storage.url("ops/b.txt"), storage.url("ops/c.txt"))
    assert not fs.exists(storage.url("ops/b.txt")) and fs.cat_file(storage.url("ops/c.txt")) == b"alpha"

    fs.pipe_file(storage.url("ops/dir/x.txt"), b"x")
    fs.pipe_file(storage.url("ops/dir/deep/y.txt"), b"y")
    fs.mv(storage.url("ops/dir"), storage.url("ops/moved"), recursive=True)
    assert not fs.exists(storage.url("ops/dir"))
    assert fs.cat_file(storage.url("ops/moved/deep/y.txt")) == b"y"

    fs.makedirs(storage.url("ops/empty/inner"))
    assert fs.isdir(storage.url("ops/empty/inner")) and fs.ls(storage.url("ops/empty/inner")) == []
    with pytest.raises(FileExistsError):
        fs.makedirs(storage.url("ops/empty/inner"))
    fs.makedirs(storage.url("ops/empty/inner"), exist_ok=True)
    fs.rmdir(storage.url("ops/empty/inner"))
    assert not fs.exists(storage.url("ops/empty/inner"))

    with pytest.raises(OSError):
        fs.rm(storage.url("ops/moved"))  # not empty, not recursive
    fs.rm(storage.url("ops/moved"), recursive=True)
    assert not fs.exists(storage.url("ops/moved"))
    assert not storage.blobs.get_blob_client("ops/moved/deep/y.txt").exists()
    fs.rm_file(storage.url("ops/a.txt"))
    with pytest.raises(FileNotFoundError):
        fs.rm_file(storage.url("ops/a.txt"))
    fs.rm(storage.url("ops"), recursive=True)
    assert not fs.exists(storage.url("ops"))


def test_pandas_csv_round_trip(storage, fs):
    df = pd.DataFrame({"step": range(1000), "loss": [1.0 / (i + 1) for i in range(1000)], "tag": ["a", "b"] * 500})
    url = storage.url("tables/losses.csv")
    df.to_csv(url, index=False)
    assert storage.download("tables/losses.csv").startswith(b"step,loss,tag\n0,1.0,a\n")
    back = pd.read_csv(url)
    pd.testing.assert_frame_equal(back, df)
    storage.upload("tables/sdk.csv", b"x,y\n1,2\n3,4\n")
    assert pd.read_csv(storage.url("tables/sdk.csv"))["y"].sum() == 6


def test_a_principal_without_the_role_gets_permission_error_naming_it(storage, fs):
    storage.upload("secret/data.bin", b"not for strangers")
    stranger = EntraflowFileSystem(credential=storage.stranger.credential(), skip_instance_cache=True)
    for attempt in (lambda: stranger.cat_file(storage.url("secret/data.bin")),
                    lambda: stranger.open(storage.url("secret/data.bin"), "rb"),
                    lambda: stranger.ls(storage.url("secret"))):
        t = time.monotonic()
        with pytest.raises(PermissionError) as err:
            attempt()
        assert "Storage Blob Data Reader" in str(err.value), err.value
        assert storage.stranger.oid in str(err.value)
        assert time.monotonic() - t < 5  # a 403 is final: no retries
    with pytest.raises(PermissionError):
        stranger.exists(storage.url("secret/data.bin"))  # not a quiet False
    with pytest.raises(PermissionError):
        stranger.pipe_file(storage.url("secret/new.bin"), b"x")
    assert not storage.blobs.get_blob_client("secret/new.bin").exists()


def test_a_credential_object_gives_the_identity(storage):
    storage.upload("cred/x.bin", b"via credential")
    own = EntraflowFileSystem(credential=storage.trainer.credential(), skip_instance_cache=True)
    assert own.cat_file(storage.url("cred/x.bin")) == b"via credential"
    from azure.identity import ClientSecretCredential as AzureCredential

    with pytest.raises(TypeError, match="entraflow.identity"):
        EntraflowFileSystem(credential=AzureCredential("t", "c", "s"))


def _digest_in_worker(url: str) -> str:
    with fsspec.open(url, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_reading_in_forked_workers(storage, fs):
    data = os.urandom(3 << 20)
    storage.upload("fork/shard.bin", data)
    url = storage.url("fork/shard.bin")
    assert fs.cat_file(url) == data  # the parent's client and runtime exist before the fork

    # The inherited filesystem object itself, in a raw fork.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with fs.open(url, "rb") as f:
                os.write(write, hashlib.sha256(f.read()).hexdigest().encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    digest = os.read(read, 64).decode()
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert digest == hashlib.sha256(data).hexdigest()

    # Spawned workers get the filesystem pickled; it is rebuilt from its arguments.
    assert pickle.loads(pickle.dumps(fs)).cat_file(url, 0, 100) == data[:100]

    # DataLoader-style workers: a fork pool opening URLs through fsspec.
    with multiprocessing.get_context("fork").Pool(2) as pool:
        digests = pool.map(_digest_in_worker, [url] * 4, chunksize=1)
    assert digests == [hashlib.sha256(data).hexdigest()] * 4


def test_az_can_be_claimed_explicitly(storage, fs):
    storage.upload("az/x.txt", b"through az://")
    fsspec.register_implementation("az", EntraflowFileSystem, clobber=True)
    try:
        with fsspec.open(storage.url("az/x.txt", scheme="az"), "rb") as f:
            assert f.read() == b"through az://"
        assert isinstance(fsspec.filesystem("az"), EntraflowFileSystem)
    finally:
        importlib.import_module("fsspec.registry")._registry.pop("az", None)


def test_every_request_carries_the_run_id(storage, fs, authority):
    fs.pipe_file(storage.url("audited/x.bin"), b"audited")
    assert fs.cat_file(storage.url("audited/x.bin")) == b"audited"
    export = authority.data_dir / f"fsspec-audit-{uuid.uuid4().hex[:6]}.jsonl"
    authority.cli("audit", "export", "--out", str(export))
    resource = f"/containers/{storage.container}/blobs/audited/x.bin"
    mine = [e for e in map(json.loads, export.read_text().splitlines()) if e.get("resource", "").endswith(resource)]
    assert {e["action"].rsplit("/", 1)[1] for e in mine} >= {"read", "write"}, mine
    assert all(e["run_id"] == RUN_ID for e in mine), mine
