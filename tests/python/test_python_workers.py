"""Credentials and filesystems in worker processes: they pickle to their configuration,
never to a token, are rebuilt in the child, and a secret crosses only on request.
Tested with multiprocessing spawn and forkserver, ProcessPoolExecutor, and the
DataLoader pattern (a dataset object holding a filesystem, sent to each worker)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import uuid
from concurrent.futures import ProcessPoolExecutor

import pytest
from azure.storage.blob import BlobServiceClient

from entraflow.fsspec import EntraflowFileSystem
from entraflow.identity import (
    CertificateCredential,
    ClientSecretCredential,
    DefaultCredential,
    DeviceCodeCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
    aio,
)
from helpers import STORAGE_SCOPE, allowed_soon, cert_pem, key_pem, rsa_key, self_signed_cert


class Shards:
    """A container of shards the workers read, and the identities they read as."""

    def __init__(self, authority, gate, tmp_path):
        self.account = gate.endpoint.rstrip("/").rsplit("/", 1)[1]
        self.container = "workers-" + uuid.uuid4().hex[:8]
        app = authority.new_app("workers-secret")
        self.tenant, self.host, self.app_id = authority.tenant, authority.host, app["appId"]
        self.secret = authority.new_secret(app["appId"])
        gate.assign(app["spObjectId"], "Storage Blob Data Contributor", gate.scope)
        # A certificate identity: what a worker should get instead of a secret.
        cert_app = authority.new_app("workers-cert")
        key = rsa_key()
        cert = self_signed_cert(key, "workers")
        pem = tmp_path / "workers.pem"
        pem.write_bytes(key_pem(key) + cert_pem(cert))
        pem.chmod(0o600)
        public = tmp_path / "workers.crt"
        public.write_bytes(cert_pem(cert))
        authority.json("ad", "app", "credential", "upload-cert", "--id", cert_app["appId"], "--cert", str(public))
        self.cert_app_id, self.pem = cert_app["appId"], str(pem)
        gate.assign(cert_app["spObjectId"], "Storage Blob Data Reader", gate.scope)
        service = BlobServiceClient(gate.endpoint, credential=self.secret_credential(), connection_verify=authority.ca)
        blobs = allowed_soon(lambda: service.create_container(self.container), "create the container")
        self.data = {f"shard-{i}": os.urandom(10_000 + i) for i in range(6)}
        for name, data in self.data.items():
            blobs.upload_blob(name, data)

    def secret_credential(self, **kwargs) -> ClientSecretCredential:
        return ClientSecretCredential(self.tenant, self.app_id, self.secret, authority=self.host, **kwargs)

    def certificate_credential(self) -> CertificateCredential:
        return CertificateCredential(self.tenant, self.cert_app_id, self.pem, authority=self.host)

    def url(self, name: str) -> str:
        return f"entraflow://{self.account}/{self.container}/{name}"


@pytest.fixture(scope="module")
def shards(authority, gate, tmp_path_factory):
    s = Shards(authority, gate, tmp_path_factory.mktemp("workers"))
    mp = pytest.MonkeyPatch()  # spawned children inherit the endpoint, as a job's workers would
    mp.setenv("ENTRAFLOW_BLOB_ENDPOINT", gate.endpoint)
    yield s
    mp.undo()


def read_shard(fs: EntraflowFileSystem, url: str) -> bytes:
    return fs.cat_file(url)


def token_in_child(credential) -> str:
    return credential.get_token(STORAGE_SCOPE).token


class ShardDataset:
    """A torch.utils.data.Dataset in all but name: DataLoader pickles it to each worker."""

    def __init__(self, fs: EntraflowFileSystem, urls: list[str]):
        self.fs, self.urls = fs, urls

    def __len__(self) -> int:
        return len(self.urls)

    def __getitem__(self, index: int) -> bytes:
        return self.fs.cat_file(self.urls[index])


_worker_dataset: ShardDataset | None = None


def _init_worker(dataset: ShardDataset) -> None:
    """DataLoader's worker start: the dataset arrives pickled, once per worker."""
    global _worker_dataset
    _worker_dataset = dataset


def _fetch(index: int) -> tuple[int, bytes]:
    assert _worker_dataset is not None
    return os.getpid(), _worker_dataset[index]


def test_a_credential_pickles_to_its_configuration_never_a_token(shards):
    credential = shards.certificate_credential()
    token = credential.get_token(STORAGE_SCOPE).token
    blob = pickle.dumps(credential)
    assert token.encode() not in blob and b"PRIVATE KEY" not in blob
    rebuilt = pickle.loads(blob)
    assert type(rebuilt) is CertificateCredential and rebuilt._config == credential._config
    assert rebuilt.get_token(STORAGE_SCOPE).token


def test_a_secret_is_pickled_only_when_the_caller_opts_in(shards):
    with pytest.raises(TypeError, match="allow_secret_in_pickle=True"):
        pickle.dumps(shards.secret_credential())
    with pytest.raises(TypeError, match="allow_secret_in_pickle=True"):
        pickle.dumps(EntraflowFileSystem(credential=shards.secret_credential(), skip_instance_cache=True))
    with pytest.raises(TypeError, match="allow_secret_in_pickle=True"):
        pickle.dumps(aio.ClientSecretCredential(shards.tenant, shards.app_id, shards.secret, authority=shards.host))
    released = shards.secret_credential(allow_secret_in_pickle=True)
    token = released.get_token(STORAGE_SCOPE).token
    blob = pickle.dumps(released)
    assert token.encode() not in blob
    assert pickle.loads(blob).get_token(STORAGE_SCOPE).token


def test_every_credential_type_round_trips_through_pickle(tmp_path):
    token_file = tmp_path / "federated-token"
    token_file.write_text("not-read-until-get_token")
    credentials = [
        WorkloadIdentityCredential(tenant_id="t", client_id="c", token_file_path=str(token_file)),
        ManagedIdentityCredential(client_id="mi-client"),
        ManagedIdentityCredential(identity_config={"resource_id": "/subscriptions/s/rg/id"}),
        DefaultCredential(data_dir=str(tmp_path), exclude_managed_identity_credential=True),
        DeviceCodeCredential(tenant_id="t", cache_dir=str(tmp_path)),
        aio.WorkloadIdentityCredential(tenant_id="t", client_id="c", token_file_path=str(token_file)),
        aio.DefaultCredential(data_dir=str(tmp_path)),
    ]
    for credential in credentials:
        rebuilt = pickle.loads(pickle.dumps(credential))
        assert type(rebuilt) is type(credential) and repr(rebuilt) == repr(credential)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_and_forkserver_workers_rebuild_credential_and_filesystem(shards, method):
    fs = EntraflowFileSystem(credential=shards.certificate_credential(), skip_instance_cache=True)
    names = sorted(shards.data)
    with multiprocessing.get_context(method).Pool(2) as pool:
        got = pool.starmap(read_shard, [(fs, shards.url(name)) for name in names])
        tokens = pool.map(token_in_child, [shards.certificate_credential()] * 2)
    assert got == [shards.data[name] for name in names]
    assert all(tokens)


def test_process_pool_executor_workers_read_with_an_opted_in_secret(shards):
    fs = EntraflowFileSystem(credential=shards.secret_credential(allow_secret_in_pickle=True),
                             skip_instance_cache=True)
    names = sorted(shards.data)
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        got = list(pool.map(read_shard, [fs] * len(names), [shards.url(n) for n in names]))
    assert got == [shards.data[name] for name in names]


def test_dataloader_style_workers_each_get_the_dataset_once(shards):
    names = sorted(shards.data)
    dataset = ShardDataset(EntraflowFileSystem(credential=shards.certificate_credential(), skip_instance_cache=True),
                           [shards.url(n) for n in names])
    context = multiprocessing.get_context("spawn")  # PyTorch's default off Linux, and the strict case
    with context.Pool(3, initializer=_init_worker, initargs=(dataset,)) as pool:
        results = pool.map(_fetch, range(len(dataset)), chunksize=1)
    assert [data for _, data in results] == [shards.data[name] for name in names]
    assert os.getpid() not in {pid for pid, _ in results}
