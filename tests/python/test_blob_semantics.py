"""Blob semantics as Azure defines them, seen through azure-storage-blob (sync and
aio): content integrity, conditional requests, copy status, Set Blob Properties,
Get Account Information and block lists. Each case asserts the SDK's own exception
types and values, so a gate that silently differs from Azure fails here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
)
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from azure.storage.blob import BlobBlock, BlobServiceClient, BlockState, ContentSettings
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient

from helpers import allowed_soon


@pytest.fixture(scope="module")
def writer(authority, gate):
    app = authority.new_app(f"semantics-{uuid.uuid4().hex[:6]}")
    secret = authority.new_secret(app["appId"])
    gate.assign(app["spObjectId"], "Storage Blob Data Contributor", gate.scope)
    kwargs = dict(authority=authority.host, disable_instance_discovery=True)
    service = BlobServiceClient(gate.endpoint, credential=ClientSecretCredential(authority.tenant, app["appId"], secret, **kwargs),
                                max_single_put_size=1 << 20, max_block_size=1 << 20,
                                max_single_get_size=1 << 20, max_chunk_get_size=1 << 20)
    name = f"sem{uuid.uuid4().hex[:8]}"
    container = allowed_soon(lambda: service.create_container(name), "create container")
    return {"service": service, "container": container, "app": app, "secret": secret, "kwargs": kwargs}


def md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def test_content_md5_is_computed_checked_and_validated(writer):
    container = writer["container"]
    data = os.urandom(300_000)
    blob = container.get_blob_client("integrity/whole.bin")
    blob.upload_blob(data, validate_content=True)
    props = blob.get_blob_properties()
    assert bytes(props.content_settings.content_md5) == md5(data), "the service computes the MD5"
    assert blob.download_blob(validate_content=True).readall() == data

    # A ranged download with validate_content asks for each range's MD5.
    ranged = blob.download_blob(offset=1000, length=50_000, validate_content=True).readall()
    assert ranged == data[1000:51_000]

    # A body that does not match its Content-MD5 is refused and nothing is stored.
    wrong = base64.b64encode(md5(b"something else")).decode()
    bad = container.get_blob_client("integrity/refused.bin")
    with pytest.raises(HttpResponseError) as refused:
        bad.upload_blob(data, headers={"Content-MD5": wrong})
    assert refused.value.error_code == "Md5Mismatch"
    assert not bad.exists()

    # Large uploads go as blocks, each with its transport MD5; the blob keeps the
    # MD5 the client sets for the whole.
    big = os.urandom(3 * (1 << 20) + 123)
    chunked = container.get_blob_client("integrity/chunked.bin")
    chunked.upload_blob(big, validate_content=True,
                        content_settings=ContentSettings(content_md5=bytearray(md5(big))))
    assert bytes(chunked.get_blob_properties().content_settings.content_md5) == md5(big)
    assert chunked.download_blob(validate_content=True).readall() == big


def test_conditional_requests_answer_as_azure(writer):
    container = writer["container"]
    blob = container.get_blob_client("cond/a.txt")
    first = blob.upload_blob(b"v1")
    with pytest.raises(ResourceExistsError):
        blob.upload_blob(b"v2")  # overwrite=False sends If-None-Match: *
    past = datetime.now(timezone.utc) - timedelta(days=1)
    future = datetime.now(timezone.utc) + timedelta(days=1)
    with pytest.raises(ResourceModifiedError) as unmodified:
        blob.upload_blob(b"v2", overwrite=True, if_unmodified_since=past)
    assert unmodified.value.error_code == "ConditionNotMet"
    assert blob.download_blob().readall() == b"v1", "a failed condition writes nothing"
    # A 304 carries x-ms-error-code ConditionNotMet, which the SDK raises as
    # ResourceModifiedError with the 304 status (as against Azure).
    with pytest.raises(ResourceModifiedError) as not_modified:
        blob.download_blob(if_modified_since=future).readall()
    assert (not_modified.value.status_code, not_modified.value.error_code) == (304, "ConditionNotMet")
    with pytest.raises(ResourceModifiedError) as not_modified:
        blob.get_blob_properties(etag=first["etag"], match_condition=MatchConditions.IfModified)
    assert not_modified.value.status_code == 304
    assert blob.download_blob(if_modified_since=past).readall() == b"v1"
    second = blob.upload_blob(b"v2", overwrite=True, etag=first["etag"], match_condition=MatchConditions.IfNotModified)
    with pytest.raises(ResourceModifiedError):
        blob.upload_blob(b"v3", overwrite=True, etag=first["etag"], match_condition=MatchConditions.IfNotModified)
    with pytest.raises(ResourceModifiedError):
        blob.delete_blob(etag=first["etag"], match_condition=MatchConditions.IfNotModified)
    with pytest.raises(ResourceModifiedError):
        blob.set_blob_metadata({"k": "v"}, if_unmodified_since=past)
    blob.delete_blob(etag=second["etag"], match_condition=MatchConditions.IfNotModified)
    assert not blob.exists()


def test_copy_reports_its_status_and_abort_says_there_is_nothing_pending(writer):
    container = writer["container"]
    src = container.get_blob_client("copy/src.bin")
    src.upload_blob(b"x" * 5000, metadata={"origin": "staging"})
    dst = container.get_blob_client("copy/dst.bin")
    started = dst.start_copy_from_url(src.url)
    assert started["copy_status"] == "success"
    copy = dst.get_blob_properties().copy
    assert copy.status == "success"
    assert copy.id == started["copy_id"]
    assert copy.source == src.url
    assert copy.progress == "5000/5000"
    assert copy.completion_time is not None
    assert dst.get_blob_properties().metadata == {"origin": "staging"}
    with pytest.raises(HttpResponseError) as nothing:
        dst.abort_copy(copy.id)
    assert nothing.value.error_code == "NoPendingCopyOperation"
    # A destination condition that fails is the target's, not the source's.
    with pytest.raises(HttpResponseError) as target:
        dst.start_copy_from_url(src.url, etag='"0xstale"', match_condition=MatchConditions.IfNotModified)
    assert (target.value.status_code, target.value.error_code) == (412, "TargetConditionNotMet")
    with pytest.raises(HttpResponseError) as source:
        dst.start_copy_from_url(src.url, source_etag='"0xstale"', source_match_condition=MatchConditions.IfNotModified)
    assert (source.value.status_code, source.value.error_code) == (412, "SourceConditionNotMet")


def test_set_http_headers_replaces_them_and_changes_the_etag(writer):
    container = writer["container"]
    blob = container.get_blob_client("props/table.csv")
    blob.upload_blob(b"a,b\n1,2\n", metadata={"epoch": "3"},
                     content_settings=ContentSettings(content_type="application/octet-stream", cache_control="no-cache"))
    before = blob.get_blob_properties()
    blob.set_http_headers(ContentSettings(content_type="text/csv", content_language="en"))
    after = blob.get_blob_properties()
    assert after.content_settings.content_type == "text/csv"
    assert after.content_settings.content_language == "en"
    assert after.content_settings.cache_control is None, "a header left out is cleared, as Azure does"
    assert after.metadata == {"epoch": "3"}
    assert after.etag != before.etag
    blob.set_blob_metadata({"epoch": "4"})
    assert blob.get_blob_properties().etag != after.etag


def test_account_information(writer):
    info = writer["service"].get_account_information()
    assert info["sku_name"] == "Standard_LRS"
    assert info["account_kind"] == "StorageV2"


def test_block_lists_are_kept_and_committed_blocks_reused(writer):
    container = writer["container"]
    blob = container.get_blob_client("blocks/b.bin")
    ids = [base64.b64encode(f"block-{i:03d}".encode()).decode() for i in range(3)]
    for i, block_id in enumerate(ids[:2]):
        blob.stage_block(block_id, bytes([i]) * (1000 + i))
    committed, uncommitted = blob.get_block_list("all")
    assert committed == [] and sorted(b.id for b in uncommitted) == sorted(ids[:2])
    blob.commit_block_list([BlobBlock(block_id=b) for b in ids[:2]])
    committed, uncommitted = blob.get_block_list("all")
    assert [(b.id, b.size) for b in committed] == [(ids[0], 1000), (ids[1], 1001)]
    assert uncommitted == []
    # Keep the second committed block, add a new one, drop the first.
    blob.stage_block(ids[2], b"\x02" * 10)
    blob.commit_block_list([BlobBlock(block_id=ids[1], state=BlockState.Committed),
                            BlobBlock(block_id=ids[2], state=BlockState.Uncommitted)])
    assert blob.download_blob().readall() == b"\x01" * 1001 + b"\x02" * 10
    committed, _ = blob.get_block_list("committed")
    assert [b.id for b in committed] == [ids[1], ids[2]]
    with pytest.raises(HttpResponseError) as missing:
        blob.commit_block_list([BlobBlock(block_id=ids[0], state=BlockState.Committed)])
    assert missing.value.error_code == "InvalidBlockList"


def test_the_async_client_gets_the_same_semantics(writer, authority, gate):
    async def run():
        # aiohttp builds its TLS context when imported, so the local CA is named here.
        cred = AsyncClientSecretCredential(authority.tenant, writer["app"]["appId"], writer["secret"],
                                           connection_verify=authority.ca, **writer["kwargs"])
        async with cred, AsyncBlobServiceClient(gate.endpoint, credential=cred,
                                                connection_verify=authority.ca) as service:
            blob = service.get_blob_client(writer["container"].container_name, "aio/x.bin")
            data = os.urandom(100_000)
            await blob.upload_blob(data, validate_content=True)
            props = await blob.get_blob_properties()
            assert bytes(props.content_settings.content_md5) == md5(data)
            stream = await blob.download_blob(validate_content=True)
            assert await stream.readall() == data
            with pytest.raises(ResourceExistsError):
                await blob.upload_blob(b"again")
            with pytest.raises(ResourceModifiedError):
                await blob.upload_blob(b"again", overwrite=True, etag='"0xstale"',
                                       match_condition=MatchConditions.IfNotModified)
            with pytest.raises(HttpResponseError) as refused:
                await blob.upload_blob(data, overwrite=True,
                                       headers={"Content-MD5": base64.b64encode(md5(b"no")).decode()})
            assert refused.value.error_code == "Md5Mismatch"
            dst = service.get_blob_client(writer["container"].container_name, "aio/y.bin")
            started = await dst.start_copy_from_url(blob.url)
            assert started["copy_status"] == "success"
            assert (await dst.get_blob_properties()).copy.status == "success"
            # Leases through the async lease client.
            lease = await dst.acquire_lease(lease_duration=-1)
            with pytest.raises(HttpResponseError) as missing:
                await dst.delete_blob()
            assert missing.value.error_code == "LeaseIdMissing"
            await lease.release()
            # Block lists and account information.
            block_id = base64.b64encode(b"aio-0").decode()
            await dst.stage_block(block_id, b"z" * 10)
            await dst.commit_block_list([BlobBlock(block_id=block_id)])
            committed, _ = await dst.get_block_list("committed")
            assert [(b.id, b.size) for b in committed] == [(block_id, 10)]
            info = await service.get_account_information()
            assert info["account_kind"] == "StorageV2"

    asyncio.run(run())


def test_the_async_client_reads_and_writes_tags(owner, authority, gate):
    """Tags need the Owner role; the async SDK with an owner's credential."""
    _, container = owner

    async def run():
        app = authority.new_app(f"aio-tags-{uuid.uuid4().hex[:6]}")
        secret = authority.new_secret(app["appId"])
        gate.assign(app["spObjectId"], "Storage Blob Data Owner", gate.container_scope(container.container_name))
        cred = AsyncClientSecretCredential(authority.tenant, app["appId"], secret, authority=authority.host,
                                           disable_instance_discovery=True, connection_verify=authority.ca)
        async with cred, AsyncBlobServiceClient(gate.endpoint, credential=cred,
                                                connection_verify=authority.ca) as service:
            blob = service.get_blob_client(container.container_name, "aio-tags/x.rec")
            deadline = time.monotonic() + 10
            while True:
                try:
                    await blob.upload_blob(b"x", tags={"Project": "gamma"}, overwrite=True)
                    break
                except HttpResponseError as e:
                    if e.error_code != "AuthorizationPermissionMismatch" or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
            assert await blob.get_blob_tags() == {"Project": "gamma"}
            await blob.set_blob_tags({"Project": "delta"})
            scoped = [b.name async for b in service.get_container_client(container.container_name)
                      .find_blobs_by_tags("\"Project\" = 'delta'")]
            assert scoped == ["aio-tags/x.rec"]

    asyncio.run(run())


def test_blob_and_container_leases(writer):
    container = writer["container"]
    blob = container.get_blob_client("lease/held.bin")
    blob.upload_blob(b"v1")
    lease = blob.acquire_lease(lease_duration=15)
    props = blob.get_blob_properties()
    assert (props.lease.status, props.lease.state, props.lease.duration) == ("locked", "leased", "fixed")
    with pytest.raises(HttpResponseError) as missing:
        blob.upload_blob(b"v2", overwrite=True)
    assert (missing.value.status_code, missing.value.error_code) == (412, "LeaseIdMissing")
    with pytest.raises(HttpResponseError) as wrong:
        blob.delete_blob(lease=str(uuid.uuid4()))
    assert wrong.value.error_code == "LeaseIdMismatchWithBlobOperation"
    blob.upload_blob(b"v2", overwrite=True, lease=lease)
    assert blob.download_blob().readall() == b"v2", "reads need no lease id"
    with pytest.raises(HttpResponseError) as taken:
        blob.acquire_lease(lease_duration=-1)
    assert taken.value.error_code == "LeaseAlreadyPresent"
    lease.renew()
    new_id = str(uuid.uuid4())
    lease.change(new_id)
    assert lease.id == new_id
    assert lease.break_lease(lease_break_period=0) == 0
    assert blob.get_blob_properties().lease.state == "broken"
    blob.upload_blob(b"v3", overwrite=True)  # a broken lease no longer guards writes
    lease.release()
    assert blob.get_blob_properties().lease.state == "available"
    listed = {b.name: b for b in container.list_blobs(name_starts_with="lease/")}
    assert listed["lease/held.bin"].lease.status == "unlocked"

    leased = writer["service"].create_container(f"lease{uuid.uuid4().hex[:8]}")
    container_lease = leased.acquire_lease(lease_duration=-1)
    assert leased.get_container_properties().lease.duration == "infinite"
    with pytest.raises(HttpResponseError) as guarded:
        leased.delete_container()
    assert guarded.value.error_code == "LeaseIdMissing"
    leased.delete_container(lease=container_lease)


@pytest.fixture(scope="module")
def owner(authority, gate):
    """Storage Blob Data Owner: tags need it (Contributor has no tags actions)."""
    app = authority.new_app(f"tags-owner-{uuid.uuid4().hex[:6]}")
    secret = authority.new_secret(app["appId"])
    gate.assign(app["spObjectId"], "Storage Blob Data Owner", gate.scope)
    cred = ClientSecretCredential(authority.tenant, app["appId"], secret,
                                  authority=authority.host, disable_instance_discovery=True)
    service = BlobServiceClient(gate.endpoint, credential=cred)
    name = f"tags{uuid.uuid4().hex[:8]}"
    container = allowed_soon(lambda: service.create_container(name), "create container")
    return service, container


def test_blob_index_tags_set_get_and_find(owner, writer):
    service, container = owner
    blob = container.get_blob_client("shards/a.rec")
    blob.upload_blob(b"a", tags={"Project": "alpha", "split": "train"})
    assert blob.get_blob_tags() == {"Project": "alpha", "split": "train"}
    props = blob.get_blob_properties()
    assert props.tag_count == 2
    before = props.etag
    blob.set_blob_tags({"Project": "beta"})
    assert blob.get_blob_tags() == {"Project": "beta"}
    assert blob.get_blob_properties().etag == before, "tags do not change the ETag"
    container.get_blob_client("shards/b.rec").upload_blob(b"b", tags={"Project": "alpha", "date": "2026-06-01"})
    container.get_blob_client("shards/c.rec").upload_blob(b"c", tags={"Project": "alpha", "date": "2025-01-01"})
    found = list(service.find_blobs_by_tags("\"Project\" = 'alpha' AND \"date\" >= '2026-01-01'"))
    assert [(b.name, b.container_name) for b in found] == [("shards/b.rec", container.container_name)]
    assert found[0].tags == {"Project": "alpha", "date": "2026-06-01"}
    scoped = list(container.find_blobs_by_tags("\"Project\" = 'alpha'"))
    assert sorted(b.name for b in scoped) == ["shards/b.rec", "shards/c.rec"]
    listed = {b.name: b for b in container.list_blobs(name_starts_with="shards/", include=["tags"])}
    assert listed["shards/b.rec"].tags == {"Project": "alpha", "date": "2026-06-01"}
    with pytest.raises(HttpResponseError) as bad:
        blob.set_blob_tags({"bad!": "x"})
    assert bad.value.error_code == "InvalidTag"
    with pytest.raises(HttpResponseError) as bad_filter:
        list(service.find_blobs_by_tags("\"Project\" <> 'alpha'"))
    assert bad_filter.value.error_code == "InvalidQueryParameterValue"
    # Contributor holds no tags action: a missing role, not a network failure.
    other = writer["service"].get_blob_client(container.container_name, "shards/a.rec")
    with pytest.raises(HttpResponseError) as denied:
        other.get_blob_tags()
    assert denied.value.error_code == "AuthorizationPermissionMismatch"


def test_a_condition_on_a_blob_index_tag_limits_reads(authority, gate, owner):
    _, container = owner
    container.get_blob_client("abac/alpha.rec").upload_blob(b"alpha", tags={"Project": "alpha"})
    container.get_blob_client("abac/beta.rec").upload_blob(b"beta", tags={"Project": "beta"})
    container.get_blob_client("abac/none.rec").upload_blob(b"none")
    app = authority.new_app(f"tag-reader-{uuid.uuid4().hex[:6]}")
    secret = authority.new_secret(app["appId"])
    condition = (
        "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'} "
        "AND NOT SubOperationMatches{'Blob.List'})) OR "
        "(@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags:Project<$key_case_sensitive$>] "
        "StringEquals 'alpha'))"
    )
    gate.assign(app["spObjectId"], "Storage Blob Data Reader", gate.container_scope(container.container_name),
                "--condition", condition, "--condition-version", "2.0")
    cred = ClientSecretCredential(authority.tenant, app["appId"], secret,
                                  authority=authority.host, disable_instance_discovery=True)
    reader = BlobServiceClient(gate.endpoint, credential=cred).get_container_client(container.container_name)
    assert allowed_soon(lambda: reader.download_blob("abac/alpha.rec").readall(), "tagged read") == b"alpha"
    for name in ["abac/beta.rec", "abac/none.rec"]:
        with pytest.raises(HttpResponseError) as denied:
            reader.download_blob(name).readall()
        assert denied.value.error_code == "AuthorizationPermissionMismatch", name
    assert sorted(b.name for b in reader.list_blobs(name_starts_with="abac/")) == [
        "abac/alpha.rec", "abac/beta.rec", "abac/none.rec"]


def test_a_blob_and_blobs_below_its_name_coexist(writer):
    """Azure's namespace is flat: 'a' and 'a/b' are two blobs, on any backend."""
    container = writer["container"]
    container.get_blob_client("flat/a").upload_blob(b"parent")
    container.get_blob_client("flat/a/b").upload_blob(b"child")
    assert container.download_blob("flat/a").readall() == b"parent"
    assert container.download_blob("flat/a/b").readall() == b"child"
    assert [b.name for b in container.list_blobs(name_starts_with="flat/")] == ["flat/a", "flat/a/b"]
    walked = [b.name for b in container.walk_blobs(name_starts_with="flat/a/", delimiter="/")]
    assert walked == ["flat/a/b"]


def test_batch_deletes_honour_leases_and_tag_conditions_are_refused_not_ignored(writer, owner):
    """A batch part used to delete a leased blob without its lease id; x-ms-if-tags
    was accepted and ignored. Both must do what Azure does, or refuse."""
    container = writer["container"]
    leased = container.get_blob_client("batch/leased.bin")
    leased.upload_blob(b"keep")
    lease = leased.acquire_lease(lease_duration=-1)
    free = container.get_blob_client("batch/free.bin")
    free.upload_blob(b"go")
    results = list(container.delete_blobs("batch/leased.bin", "batch/free.bin", raise_on_any_failure=False))
    assert [r.status_code for r in results] == [412, 202]
    assert leased.exists() and not free.exists()
    lease.release()

    _, tagged = owner
    blob = tagged.get_blob_client("iftags/x.rec")
    blob.upload_blob(b"x", tags={"Project": "alpha"})
    with pytest.raises(HttpResponseError) as refused:
        blob.upload_blob(b"y", overwrite=True, if_tags_match_condition="\"Project\" = 'beta'")
    assert (refused.value.status_code, refused.value.error_code) == (400, "UnsupportedHeader")
    assert blob.download_blob().readall() == b"x", "nothing was written"


def test_a_range_crc64_is_returned_when_asked(writer):
    container = writer["container"]
    blob = container.get_blob_client("crc/r.bin")
    data = bytes(range(256)) * 64
    blob.upload_blob(data)
    headers = {}
    blob.download_blob(offset=0, length=1000,
                       headers={"x-ms-range-get-content-crc64": "true"},
                       raw_response_hook=lambda r: headers.update(r.http_response.headers)).readall()
    assert "x-ms-content-crc64" in {k.lower() for k in headers}
