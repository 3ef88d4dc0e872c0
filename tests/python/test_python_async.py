"""entraflow.identity.aio with the real async clients — azure.storage.blob.aio and
adlfs — and pyarrow datasets over fsspec, through the real gate."""

from __future__ import annotations

import asyncio
import io
import uuid

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from adlfs import AzureBlobFileSystem
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.storage.blob.aio import BlobServiceClient

from entraflow.fsspec import EntraflowFileSystem
from entraflow.identity import ClientSecretCredential, aio
from helpers import STORAGE, STORAGE_SCOPE, v1_issuer, verify_token


class Reader:
    def __init__(self, authority, gate):
        app = authority.new_app("aio-" + uuid.uuid4().hex[:6])
        self.app_id, self.secret = app["appId"], authority.new_secret(app["appId"])
        self.tenant, self.host = authority.tenant, authority.host
        gate.assign(app["spObjectId"], "Storage Blob Data Contributor", gate.scope)
        self.endpoint = gate.endpoint
        self.account = gate.endpoint.rstrip("/").rsplit("/", 1)[1]
        self.container = "aio-" + uuid.uuid4().hex[:8]

    def credential(self, **kwargs) -> aio.ClientSecretCredential:
        return aio.ClientSecretCredential(self.tenant, self.app_id, self.secret, authority=self.host,
                                          allow_secret_in_pickle=True, **kwargs)


@pytest.fixture(scope="module")
def reader(authority, gate):
    # aiohttp builds its default SSL context when imported, here at collection, before
    # the session fixture exported SSL_CERT_FILE; a job that sources the env file
    # before starting Python needs none of this. adlfs offers no connection_verify.
    import aiohttp.connector

    aiohttp.connector._SSL_CONTEXT_VERIFIED.load_verify_locations(authority.ca)
    return Reader(authority, gate)


def test_the_async_credential_is_an_async_token_credential(authority, reader):
    async def main():
        async with reader.credential() as credential:
            assert isinstance(credential, AsyncTokenCredential)
            token = await credential.get_token(STORAGE_SCOPE)
            info = await credential.get_token_info(STORAGE_SCOPE, options={"enable_cae": False})
            assert info.token == token.token and info.refresh_on < info.expires_on
            cae = await credential.get_token_info(STORAGE_SCOPE, options={"enable_cae": True})
            assert cae.token != token.token
            with pytest.raises(ClientAuthenticationError, match="additionally_allowed_tenants"):
                await credential.get_token_info(STORAGE_SCOPE, options={"tenant_id": str(uuid.uuid4())})
            return token

    token = asyncio.run(main())
    assert verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))["appid"] == reader.app_id


def test_the_async_credential_shares_the_sync_credentials_rust_cache(reader):
    credential = reader.credential()
    sync_token = credential._sync.get_token(STORAGE_SCOPE).token
    assert asyncio.run(credential.get_token(STORAGE_SCOPE)).token == sync_token


def test_a_token_fetch_does_not_block_the_event_loop(reader):
    async def main():
        ticks = 0
        fetching = True

        async def ticker():
            nonlocal ticks
            while fetching:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        ticks_before = ticks
        # A fresh credential: this call goes to the authority over HTTPS.
        await reader.credential().get_token(STORAGE_SCOPE)
        fetching = False
        await task
        return ticks - ticks_before

    assert asyncio.run(main()) > 1, "the loop ran other tasks while the token was fetched"


def test_blob_service_client_aio_writes_and_reads(reader):
    async def main():
        async with reader.credential() as credential:
            async with BlobServiceClient(reader.endpoint, credential=credential) as service:
                container = await service.create_container(reader.container + "-sdk")
                await container.upload_blob("a.bin", b"async bytes" * 1000)
                blob = await (await container.download_blob("a.bin")).readall()
                names = [b.name async for b in container.list_blobs()]
                await container.delete_container()
                return blob, names

    blob, names = asyncio.run(main())
    assert blob == b"async bytes" * 1000 and names == ["a.bin"]


def adlfs_for(reader) -> AzureBlobFileSystem:
    host = reader.endpoint.removeprefix("https://").rstrip("/")
    return AzureBlobFileSystem(account_name=reader.account, account_host=host, credential=reader.credential(),
                               skip_instance_cache=True)


def test_adlfs_with_the_async_credential_reads_what_it_wrote(reader):
    fs = adlfs_for(reader)
    container = reader.container + "-adlfs"
    fs.mkdir(container)
    fs.pipe_file(f"{container}/dir/x.txt", b"through adlfs")
    assert fs.cat_file(f"{container}/dir/x.txt") == b"through adlfs"
    assert fs.ls(f"{container}/dir", detail=False) == [f"{container}/dir/x.txt"]
    # adlfs instances pickle with their storage options: the credential goes as configuration.
    import pickle

    assert pickle.loads(pickle.dumps(fs)).cat_file(f"{container}/dir/x.txt") == b"through adlfs"


def test_pyarrow_datasets_over_fsspec_with_entraflow_and_adlfs(reader, gate, monkeypatch):
    monkeypatch.setenv("ENTRAFLOW_BLOB_ENDPOINT", gate.endpoint)
    table = pa.table({"step": list(range(100)), "loss": [1.0 / (i + 1) for i in range(100)]})
    adlfs = adlfs_for(reader)
    container = reader.container + "-arrow"
    adlfs.mkdir(container)
    for part in range(3):  # written by adlfs (the async credential underneath)
        buffer = io.BytesIO()
        pq.write_table(table.slice(part * 34, 34), buffer)
        adlfs.pipe_file(f"{container}/metrics/part-{part}.parquet", buffer.getvalue())
    ours = EntraflowFileSystem(credential=ClientSecretCredential(reader.tenant, reader.app_id, reader.secret,
                                                                 authority=reader.host), skip_instance_cache=True)
    for fs, root in ((ours, f"{reader.account}/{container}/metrics"), (adlfs, f"{container}/metrics")):
        dataset = ds.dataset(root, filesystem=fs, format="parquet")
        assert sorted(dataset.files) == sorted(f"{root}/part-{i}.parquet" for i in range(3))
        assert dataset.to_table().sort_by("step").equals(table)
