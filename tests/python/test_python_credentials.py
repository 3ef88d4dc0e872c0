"""entraflow's own Python credentials (Rust underneath) with the real Azure SDK clients."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.storage.blob import BlobServiceClient

import entraflow
from entraflow.identity import (
    ClientSecretCredential,
    CredentialError,
    DefaultCredential,
    WorkloadIdentityCredential,
)
from helpers import STORAGE, STORAGE_SCOPE, assertion, jwk_of, rsa_key, v1_issuer, verify_token


def test_get_token_and_get_token_info_follow_azure_core(authority):
    app = authority.new_app("py-secret")
    cred = ClientSecretCredential(authority.tenant, app["appId"], authority.new_secret(app["appId"]),
                                  authority=authority.host)
    token = cred.get_token(STORAGE_SCOPE)
    assert token.expires_on > time.time()
    claims = verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))
    assert claims["appid"] == app["appId"]
    info = cred.get_token_info(STORAGE_SCOPE)
    assert info.token == token.token, "the second call must come from the cache"
    assert info.token_type == "Bearer"
    assert token.expires_on - 3600 <= info.refresh_on < info.expires_on


def test_rejected_secret_is_a_client_authentication_error_with_the_code(authority):
    app = authority.new_app("py-wrong-secret")
    authority.new_secret(app["appId"])
    cred = ClientSecretCredential(authority.tenant, app["appId"], "wrong-secret-value", authority=authority.host)
    with pytest.raises(ClientAuthenticationError) as err:
        cred.get_token(STORAGE_SCOPE)
    assert isinstance(err.value, CredentialError)
    assert err.value.kind == "authentication_rejected" and err.value.aadsts == 7000215
    assert "AADSTS7000215" in str(err.value) and "wrong-secret-value" not in str(err.value)


def test_workload_identity_rereads_a_rotated_token_file(authority, tmp_path):
    key, kid = rsa_key(), uuid.uuid4().hex
    issuer = f"https://oidc.py.local/{uuid.uuid4().hex}"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk_of(key, kid)]}))
    authority.cli("authority", "issuer", "add", "--issuer", issuer, "--jwks-file", str(jwks))
    app = authority.new_app("py-federated")
    authority.json("ad", "app", "federated-credential", "create", "--id", app["appId"], "--name", "k8s",
                   "--issuer", issuer, "--subject", "system:serviceaccount:ml:py")
    token_file = tmp_path / "token"
    # First a token the authority must refuse, then the kubelet "rotates" the file.
    token_file.write_text(assertion(key, iss=issuer, sub="system:serviceaccount:ml:py",
                                    aud="api://AzureADTokenExchange", kid=kid, now=int(time.time()) - 7200, lifetime=3600))
    cred = WorkloadIdentityCredential(tenant_id=authority.tenant, client_id=app["appId"],
                                      token_file_path=str(token_file), authority=authority.host)
    with pytest.raises(CredentialError) as err:
        cred.get_token(STORAGE_SCOPE)
    assert err.value.aadsts == 700024
    token_file.write_text(assertion(key, iss=issuer, sub="system:serviceaccount:ml:py",
                                    aud="api://AzureADTokenExchange", kid=kid, lifetime=3600))
    token = cred.get_token(STORAGE_SCOPE)
    assert verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))["appid"] == app["appId"]


def test_default_credential_failure_names_every_link(monkeypatch, tmp_path):
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
                 "AZURE_CLIENT_CERTIFICATE_PATH", "IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.delenv(name, raising=False)
    # Nothing listens here: the managed identity probe must give up fast, not hang.
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
    cred = DefaultCredential(data_dir=str(tmp_path))
    started = time.monotonic()
    with pytest.raises(CredentialError) as err:
        cred.get_token(STORAGE_SCOPE)
    message = str(err.value)
    for link in ("EnvironmentCredential", "WorkloadIdentityCredential", "ManagedIdentityCredential",
                 "DeveloperLoginCredential"):
        assert link in message, message
    assert time.monotonic() - started < 30


def test_token_survives_fork(authority):
    app = authority.new_app("py-fork")
    cred = ClientSecretCredential(authority.tenant, app["appId"], authority.new_secret(app["appId"]),
                                  authority=authority.host)
    parent = cred.get_token(STORAGE_SCOPE).token
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: a DataLoader-style worker asks for a token for another resource
        try:
            child = cred.get_token("https://management.azure.com/.default").token
            ok = bool(child) and cred.get_token(STORAGE_SCOPE).token == parent
            os.write(write, b"ok" if ok else b"mismatch")
        except BaseException as err:  # noqa: BLE001 - report anything to the parent
            os.write(write, repr(err).encode()[:200])
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 256) == b"ok"


def test_blob_service_client_with_entraflow_credential(authority, gate):
    app = authority.new_app("py-blob-writer")
    container = f"py-{uuid.uuid4().hex[:8]}"
    gate.assign(app["spObjectId"], "Storage Blob Data Contributor", gate.scope)
    cred = ClientSecretCredential(authority.tenant, app["appId"], authority.new_secret(app["appId"]),
                                  authority=authority.host)
    service = BlobServiceClient(gate.endpoint, credential=cred, connection_verify=authority.ca)
    service.create_container(container)
    blob = service.get_blob_client(container, "train/shard-0.tfrecord")
    payload = os.urandom(300_000)
    blob.upload_blob(payload)
    assert blob.download_blob(offset=1000, length=5000).readall() == payload[1000:6000]
    names = [b.name for b in service.get_container_client(container).list_blobs(name_starts_with="train/")]
    assert names == ["train/shard-0.tfrecord"]
    blob.delete_blob()
    assert entraflow.__version__
