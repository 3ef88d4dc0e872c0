"""The gate's ARM-shaped admin API with `requests` and an azure-identity token for
Azure Resource Manager, as `az rest` or a management script would call Azure: an
Owner grants a job a data role over HTTPS, azure-storage-blob sees the grant at
once, and the refusals come back in ARM's error shape.
"""

from __future__ import annotations

import uuid

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.storage.blob import BlobServiceClient

from helpers import allowed_soon

ARM = "https://management.azure.com/.default"
STORAGE = "https://storage.azure.com/.default"
API = "api-version=2022-04-01"
READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"


def credential(authority, name: str):
    app = authority.new_app(name)
    secret = authority.new_secret(app["appId"])
    cred = ClientSecretCredential(authority.tenant, app["appId"], secret, authority=authority.host,
                                  disable_instance_discovery=True)
    return app["spObjectId"], cred


def arm_url(gate, scope: str, rest: str) -> str:
    base = gate.server.env["ENTRAFLOW_ADMIN_ENDPOINT"]
    return f"{base}{scope}/providers/Microsoft.Authorization/{rest}?{API}"


@pytest.fixture(scope="module")
def owner(authority, gate):
    oid, cred = credential(authority, f"admin-owner-{uuid.uuid4().hex[:6]}")
    # Bootstrap: the first Owner is made with the CLI on the data directory.
    gate.assign(oid, "Owner", gate.scope)
    gate.assign(oid, "Storage Blob Data Contributor", gate.scope)
    # The gate notices CLI changes within 500 ms: wait until both roles apply.
    def arm_read():
        headers = {"Authorization": f"Bearer {cred.get_token(ARM).token}"}
        requests.get(arm_url(gate, gate.scope, "roleAssignments"), headers=headers, timeout=30).raise_for_status()
    allowed_soon(arm_read, "the owner reads role assignments")
    allowed_soon(lambda: list(BlobServiceClient(gate.endpoint, credential=cred).list_containers()),
                 "the owner lists containers")
    return oid, cred


def test_an_owner_grants_a_data_role_through_the_admin_api(authority, gate, owner):
    owner_oid, owner_cred = owner
    job_oid, job_cred = credential(authority, f"admin-job-{uuid.uuid4().hex[:6]}")
    container = f"admin{uuid.uuid4().hex[:8]}"
    BlobServiceClient(gate.endpoint, credential=owner_cred).create_container(container).upload_blob("x.txt", b"hello")
    job_blob = BlobServiceClient(gate.endpoint, credential=job_cred).get_blob_client(container, "x.txt")
    with pytest.raises(HttpResponseError) as refused:
        job_blob.download_blob().readall()
    assert refused.value.error_code == "AuthorizationPermissionMismatch"

    token = owner_cred.get_token(ARM).token
    headers = {"Authorization": f"Bearer {token}"}
    name = str(uuid.uuid4())
    url = arm_url(gate, gate.container_scope(container), f"roleAssignments/{name}")
    body = {"properties": {"roleDefinitionId": f"/providers/Microsoft.Authorization/roleDefinitions/{READER}",
                           "principalId": job_oid, "principalType": "ServicePrincipal"}}
    created = requests.put(url, json=body, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    doc = created.json()
    assert doc["name"] == name
    assert doc["type"] == "Microsoft.Authorization/roleAssignments"
    assert doc["properties"]["scope"] == gate.container_scope(container)
    assert doc["properties"]["principalId"] == job_oid

    # No waiting: the gate that stored the grant applies it to the next request.
    assert job_blob.download_blob().readall() == b"hello"

    listed = requests.get(arm_url(gate, gate.scope, "roleAssignments") + f"&$filter=principalId eq '{job_oid}'",
                          headers=headers, timeout=30)
    assert listed.status_code == 200, listed.text
    assert [a["name"] for a in listed.json()["value"]] == [name]

    deleted = requests.delete(url, headers=headers, timeout=30)
    assert deleted.status_code == 200, deleted.text
    with pytest.raises(HttpResponseError) as refused:
        job_blob.download_blob().readall()
    assert refused.value.error_code == "AuthorizationPermissionMismatch"


def test_the_admin_api_refuses_as_arm_does(authority, gate, owner):
    _, owner_cred = owner
    outsider_oid, outsider_cred = credential(authority, f"admin-outsider-{uuid.uuid4().hex[:6]}")
    url = arm_url(gate, gate.scope, f"roleAssignments/{uuid.uuid4()}")
    body = {"properties": {"roleDefinitionId": READER, "principalId": outsider_oid}}

    denied = requests.put(url, json=body, timeout=30,
                          headers={"Authorization": f"Bearer {outsider_cred.get_token(ARM).token}"})
    assert denied.status_code == 403, denied.text
    error = denied.json()["error"]
    assert error["code"] == "AuthorizationFailed"
    assert f"The client '{outsider_oid}' with object id '{outsider_oid}' does not have authorization" in error["message"]
    assert "Microsoft.Authorization/roleAssignments/write" in error["message"]

    # A Storage token is for Blob paths only.
    wrong = requests.get(arm_url(gate, gate.scope, "roleAssignments"), timeout=30,
                         headers={"Authorization": f"Bearer {owner_cred.get_token(STORAGE).token}"})
    assert wrong.status_code == 401, wrong.text
    assert wrong.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    assert "management.azure.com" in wrong.headers["WWW-Authenticate"]

    bad = {"properties": {"roleDefinitionId": READER, "principalId": outsider_oid,
                          "condition": "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike",
                          "conditionVersion": "2.0"}}
    invalid = requests.put(url, json=bad, timeout=30,
                           headers={"Authorization": f"Bearer {owner_cred.get_token(ARM).token}"})
    assert invalid.status_code == 400, invalid.text
    assert invalid.json()["error"]["code"] == "InvalidCondition"
    assert "column" in invalid.json()["error"]["message"]


@pytest.mark.parametrize("depth", [40, 4_000, 60_000])
def test_regression_cli_refuses_a_deeply_nested_condition_without_crashing(authority, gate, depth):
    """Hardening finding: the CLI aborted (stack overflow) on a deeply nested
    condition, and stored ones the gate could not parse. Now it exits 1 with the
    limit named, and stores nothing."""
    sp, _ = credential(authority, f"deep-condition-{depth}")
    leaf = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike 'x/*'"
    condition = "(" * depth + leaf + ")" * depth
    out = authority.cli("role", "assignment", "create", "--assignee", sp, "--role", "Storage Blob Data Reader",
                        "--scope", gate.scope, "--condition", condition, check=False)
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    assert "more than 32 levels" in out.stderr or "at most 8192" in out.stderr, out.stderr[-2000:]
    listed = authority.json("role", "assignment", "list", "--assignee", sp)
    assert listed == []
