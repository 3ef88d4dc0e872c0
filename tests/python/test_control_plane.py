"""The admin surface does what it was asked or refuses and says why: principals
are resolved as az resolves them, every delete verb removes what it names (and the
next request is refused), data directories are explicit, a second `up` is refused,
and the CA bundle `env` names keeps the system's roots.

Self-contained: starts `entraflow up` on temporary data directories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jwt
import msal
import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.storage.blob import BlobServiceClient
from cryptography.hazmat.primitives import hashes

from conftest import BIN, parse_env_file
from helpers import STORAGE_SCOPE, assertion, cert_pem, jwk_of, rsa_key, self_signed_cert, x5t_sha1

SUB = "00000000-0000-0000-0000-000000000001"
# The gate reads role changes every 500 ms.
PROPAGATION = 1.2


class Up:
    """`entraflow up` on a data directory, with the CLI pointed at it."""

    def __init__(self, data_dir: Path):
        self.dir = data_dir
        self.log = open(data_dir.parent / f"{data_dir.name}-up.log", "w")
        self.proc = subprocess.Popen(
            [BIN, "--data-dir", str(data_dir), "up", "--authority-port", "0", "--imds-port", "0",
             "--gate-port", "0"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not (data_dir / "gate.env").exists():
            assert self.proc.poll() is None, Path(self.log.name).read_text()
            assert time.monotonic() < deadline, "entraflow up did not become ready"
            time.sleep(0.05)
        self.env = parse_env_file(data_dir / "env")
        self.tenant = self.env["AZURE_TENANT_ID"]
        self.host = self.env["AZURE_AUTHORITY_HOST"]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([BIN, "--data-dir", str(self.dir), *args], capture_output=True, text=True)
        if check:
            assert out.returncode == 0, (args, out.stdout, out.stderr)
        return out

    def json(self, *args: str):
        return json.loads(self.run(*args, "-o", "json").stdout)

    def app(self, name: str, *extra: str) -> tuple[dict, str]:
        app = self.json("ad", "app", "create", "--display-name", f"{name}-{uuid.uuid4().hex[:6]}", *extra)
        secret = self.json("ad", "app", "credential", "reset", "--id", app["appId"])["password"]
        return app, secret

    def credential(self, app_id: str, secret: str) -> ClientSecretCredential:
        return ClientSecretCredential(self.tenant, app_id, secret, authority=self.host,
                                      disable_instance_discovery=True)

    def token_response(self, form: dict) -> requests.Response:
        return requests.post(f"{self.host}/{self.tenant}/oauth2/v2.0/token", data=form,
                             verify=self.env["REQUESTS_CA_BUNDLE"], timeout=30)

    def container_scope(self, container: str) -> str:
        return f"{self.env['ENTRAFLOW_STORAGE_SCOPE']}/blobServices/default/containers/{container}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.log.close()


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    stack = Up(tmp_path_factory.mktemp("control") / "data")
    mp = pytest.MonkeyPatch()
    mp.setenv("SSL_CERT_FILE", stack.env["SSL_CERT_FILE"])
    mp.setenv("REQUESTS_CA_BUNDLE", stack.env["REQUESTS_CA_BUNDLE"])
    yield stack
    mp.undo()
    stack.stop()


def can_create_container(up: Up, credential, name: str) -> bool:
    service = BlobServiceClient(up.env["ENTRAFLOW_BLOB_ENDPOINT"], credential=credential)
    try:
        service.create_container(name)
        return True
    except HttpResponseError as err:
        assert err.status_code == 403, err
        return False


def test_an_app_id_assignee_becomes_the_service_principal_and_grants_access_through_the_gate(up):
    app, secret = up.app("by-app-id")
    # Without a service principal the appId names nobody: refused, saying what to do.
    out = up.run("role", "assignment", "create", "--assignee", app["appId"], "--role",
                 "Storage Blob Data Contributor", "--scope", up.env["ENTRAFLOW_STORAGE_SCOPE"], check=False)
    assert out.returncode == 1 and f"ad sp create --id {app['appId']}" in out.stderr, out.stderr
    sp = up.json("ad", "sp", "create", "--id", app["appId"])
    credential = up.credential(app["appId"], secret)
    assert not can_create_container(up, credential, f"c{uuid.uuid4().hex[:10]}")

    created = up.json("role", "assignment", "create", "--assignee", app["appId"], "--role",
                      "Storage Blob Data Contributor", "--scope", up.env["ENTRAFLOW_STORAGE_SCOPE"])
    assert (created["principalId"], created["principalType"]) == (sp["id"], "ServicePrincipal")
    time.sleep(PROPAGATION)
    assert can_create_container(up, up.credential(app["appId"], secret), f"c{uuid.uuid4().hex[:10]}")

    # Deleting the assignment by --assignee/--role/--scope takes the access away.
    up.run("role", "assignment", "delete", "--assignee", app["appId"], "--role",
           "Storage Blob Data Contributor", "--scope", up.env["ENTRAFLOW_STORAGE_SCOPE"])
    time.sleep(PROPAGATION)
    assert not can_create_container(up, up.credential(app["appId"], secret), f"c{uuid.uuid4().hex[:10]}")


def test_unknown_assignees_are_refused_and_nothing_is_written(up):
    before = up.json("role", "assignment", "list")
    made_up = str(uuid.uuid4())
    for args in (["--assignee", made_up], ["--assignee", "nobody@entraflow.local"],
                 ["--assignee-object-id", made_up]):
        out = up.run("role", "assignment", "create", *args, "--role", "Storage Blob Data Reader",
                     "--scope", up.env["ENTRAFLOW_STORAGE_SCOPE"], check=False)
        assert out.returncode == 1, (args, out.stdout)
        assert args[1] in out.stderr and str(up.dir) in out.stderr, out.stderr
    assert up.json("role", "assignment", "list") == before


def test_principal_types_are_what_the_principal_is_and_duplicates_are_not_created(up):
    upn = f"ann-{uuid.uuid4().hex[:6]}@entraflow.local"
    user = up.json("ad", "user", "create", "--user-principal-name", upn, "--display-name", "Ann")
    group = up.json("ad", "group", "create", "--display-name", f"readers-{uuid.uuid4().hex[:6]}")
    scope = up.container_scope("shared")
    by_upn = up.json("role", "assignment", "create", "--assignee", upn, "--role", "Storage Blob Data Reader",
                     "--scope", scope)
    assert (by_upn["principalId"], by_upn["principalType"]) == (user["id"], "User")
    by_id = up.json("role", "assignment", "create", "--assignee", group["id"], "--role",
                    "Storage Blob Data Reader", "--scope", scope)
    assert by_id["principalType"] == "Group"
    # A type that contradicts the directory is refused.
    out = up.run("role", "assignment", "create", "--assignee-object-id", user["id"],
                 "--assignee-principal-type", "ServicePrincipal", "--role", "Storage Blob Data Reader",
                 "--scope", up.container_scope("other"), check=False)
    assert out.returncode == 1 and "is a User" in out.stderr, out.stderr

    # The same request again: az's answer, the existing assignment, and no copy.
    again = up.run("role", "assignment", "create", "--assignee", upn, "--role", "Storage Blob Data Reader",
                   "--scope", scope, "-o", "json")
    assert json.loads(again.stdout)["id"] == by_upn["id"]
    assert "RoleAssignmentExists" in again.stderr
    quiet = up.run("role", "assignment", "create", "--assignee", upn, "--role", "Storage Blob Data Reader",
                   "--scope", scope, "-o", "none", "--only-show-errors")
    assert (quiet.stdout, quiet.stderr) == ("", "")
    # The same grant with something else changed is a conflict, refused.
    changed = up.run("role", "assignment", "create", "--assignee", upn, "--role", "Storage Blob Data Reader",
                     "--scope", scope, "--description", "other", check=False)
    assert changed.returncode == 1 and "RoleAssignmentExists" in changed.stderr, changed.stderr
    mine = up.json("role", "assignment", "list", "--assignee", upn)
    assert [a["id"] for a in mine] == [by_upn["id"]]


def test_delete_by_ids_reports_each_id_and_fails_when_any_failed(up):
    group = up.json("ad", "group", "create", "--display-name", f"g-{uuid.uuid4().hex[:6]}")
    a = up.json("role", "assignment", "create", "--assignee", group["id"], "--role", "Storage Blob Data Reader",
                "--scope", up.container_scope("ids"))
    bogus = str(uuid.uuid4())
    out = up.run("role", "assignment", "delete", "--ids", a["id"], bogus, "-o", "json", check=False)
    assert out.returncode == 1, out.stdout
    report = json.loads(out.stdout)
    assert [(r["id"], r["deleted"]) for r in report] == [(a["id"], True), (bogus, False)]
    assert bogus in report[1]["error"]
    assert up.json("role", "assignment", "list", "--assignee", group["id"]) == []


def test_invalid_input_is_refused_before_anything_is_written(up):
    app, _ = up.app("validate")
    for issuer in ("not a url", "http://issuer.example"):
        out = up.run("ad", "app", "federated-credential", "create", "--id", app["appId"], "--name", "x",
                     "--issuer", issuer, "--subject", "s", check=False)
        assert out.returncode == 1 and "https" in out.stderr, out.stderr
    assert up.json("ad", "app", "federated-credential", "list", "--id", app["appId"]) == []
    typo = json.dumps({"Name": f"typo-{uuid.uuid4().hex[:6]}", "AssignableScopes": ["/"],
                       "DataActions": ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/raed"]})
    out = up.run("role", "definition", "create", "--role-definition", typo, check=False)
    assert out.returncode == 1 and "did you mean" in out.stderr and "blobs/read" in out.stderr, out.stderr
    for scope in ("/subscriptions/abc", up.container_scope("Bad_Name!")):
        out = up.run("role", "assignment", "create", "--assignee-object-id", str(uuid.uuid4()),
                     "--assignee-principal-type", "User", "--role", "Storage Blob Data Reader",
                     "--scope", scope, check=False)
        assert out.returncode == 1 and "is not valid" in out.stderr, (scope, out.stderr)


def test_a_deleted_federated_credential_no_longer_exchanges(up, tmp_path):
    app, _ = up.app("wi")
    up.json("ad", "sp", "create", "--id", app["appId"])
    key, kid = rsa_key(), "k1"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk_of(key, kid)]}))
    issuer = f"https://oidc.control.local/{uuid.uuid4().hex}"
    up.run("authority", "issuer", "add", "--issuer", issuer, "--jwks-file", str(jwks))
    cred = up.json("ad", "app", "federated-credential", "create", "--id", app["id"], "--name", "k8s",
                   "--issuer", issuer, "--subject", "system:serviceaccount:ml:job")
    assert up.json("ad", "app", "federated-credential", "show", "--id", app["appId"],
                   "--federated-credential-id", "k8s")["id"] == cred["id"]

    def exchange():
        return up.token_response({
            "grant_type": "client_credentials", "client_id": app["appId"], "scope": STORAGE_SCOPE,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion(key, iss=issuer, sub="system:serviceaccount:ml:job",
                                          aud="api://AzureADTokenExchange", kid=kid),
        })

    assert exchange().status_code == 200
    up.run("ad", "app", "federated-credential", "delete", "--id", app["appId"],
           "--federated-credential-id", cred["id"])
    refused = exchange()
    assert refused.status_code == 401 and 70021 in refused.json()["error_codes"], refused.text
    assert up.json("ad", "app", "federated-credential", "list", "--id", app["appId"]) == []


def test_app_credentials_are_listed_without_secrets_and_deleted_by_key_id(up, tmp_path):
    app, first = up.app("creds")
    up.run("ad", "sp", "create", "--id", app["appId"])
    [first_listed] = up.json("ad", "app", "credential", "list", "--id", app["appId"])
    second = up.json("ad", "app", "credential", "reset", "--id", app["appId"], "--append")["password"]
    listed = up.json("ad", "app", "credential", "list", "--id", app["appId"])
    assert len(listed) == 2 and first_listed in listed
    assert first_listed["hint"] == first[:3] and first_listed["endDateTime"]
    assert first not in json.dumps(listed) and second not in json.dumps(listed), "no secret is ever shown"
    up.run("ad", "app", "credential", "delete", "--id", app["appId"], "--key-id", first_listed["keyId"])
    [kept] = up.json("ad", "app", "credential", "list", "--id", app["appId"])
    assert kept["keyId"] != first_listed["keyId"] and kept["hint"] == second[:3]
    form = {"grant_type": "client_credentials", "client_id": app["appId"], "scope": STORAGE_SCOPE}
    refused = up.token_response({**form, "client_secret": first})
    assert refused.status_code == 401 and 7000215 in refused.json()["error_codes"], refused.text
    accepted = up.token_response({**form, "client_secret": second})
    assert accepted.status_code == 200, accepted.text
    # An unknown key id changes nothing and says where to look.
    missing = up.run("ad", "app", "credential", "delete", "--id", app["appId"], "--key-id", str(uuid.uuid4()),
                     check=False)
    assert missing.returncode != 0 and "credential list" in missing.stderr, missing.stderr
    assert len(up.json("ad", "app", "credential", "list", "--id", app["appId"])) == 1

    # Certificates have their own key ids (--cert).
    key = rsa_key()
    cert = self_signed_cert(key)
    path = tmp_path / "c.crt"
    path.write_bytes(cert_pem(cert))
    up.run("ad", "app", "credential", "upload-cert", "--id", app["appId"], "--cert", str(path))
    [c] = up.json("ad", "app", "credential", "list", "--id", app["appId"], "--cert")
    assert c["type"] == "AsymmetricX509Cert" and c["usage"] == "Verify"
    assert c["customKeyIdentifier"] == cert.fingerprint(hashes.SHA1()).hex().upper()
    token_url = f"{up.host}/{up.tenant}/oauth2/v2.0/token"
    cert_form = {**form, "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}

    def signed() -> str:
        return assertion(key, iss=app["appId"], sub=app["appId"], aud=token_url, headers={"x5t": x5t_sha1(cert)})

    assert up.token_response({**cert_form, "client_assertion": signed()}).status_code == 200
    up.run("ad", "app", "credential", "delete", "--id", app["appId"], "--key-id", c["keyId"], "--cert")
    assert up.json("ad", "app", "credential", "list", "--id", app["appId"], "--cert") == []
    after = up.token_response({**cert_form, "client_assertion": signed()})
    assert after.status_code in (400, 401) and "AADSTS700027" in after.text, after.text
    records = up.run("audit", "query", "--log", "entraflow/admin", "-o", "json").stdout
    assert "application.secret.delete" in records and "application.certificate.delete" in records


def test_an_updated_condition_takes_effect_and_who_what_where_cannot_change(up, tmp_path):
    app, secret = up.app("updated")
    up.run("ad", "sp", "create", "--id", app["appId"])
    container = f"u{uuid.uuid4().hex[:10]}"
    created = up.json("role", "assignment", "create", "--assignee", app["appId"], "--role",
                      "Storage Blob Data Contributor", "--scope", up.env["ENTRAFLOW_STORAGE_SCOPE"])
    time.sleep(PROPAGATION)
    client = BlobServiceClient(up.env["ENTRAFLOW_BLOB_ENDPOINT"], credential=up.credential(app["appId"], secret))
    client.create_container(container)

    def can_write(path: str) -> bool:
        try:
            client.get_blob_client(container, path).upload_blob(b"x", overwrite=True)
            return True
        except HttpResponseError as err:
            assert err.status_code == 403, err
            return False

    assert can_write("models/a") and can_write("data/a")
    # Limit writes to models/ by updating the assignment's JSON, as az does.
    [listed] = [a for a in up.json("role", "assignment", "list", "--assignee", app["appId"]) if a["id"] == created["id"]]
    condition = ("((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'})) OR "
                 "(@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] "
                 "StringStartsWith 'models/'))")
    changed = {**listed, "condition": condition, "conditionVersion": "2.0", "description": "models only"}
    path = tmp_path / "assignment.json"
    path.write_text(json.dumps(changed))
    updated = up.json("role", "assignment", "update", "--role-assignment", f"@{path}")
    assert (updated["condition"], updated["description"], updated["id"]) == (condition, "models only", created["id"])
    time.sleep(PROPAGATION)
    assert can_write("models/b") and not can_write("data/b")
    # The principal, role and scope are the assignment: changing one is refused, nothing changes.
    moved = {**changed, "scope": up.container_scope(container)}
    refused = up.run("role", "assignment", "update", "--role-assignment", json.dumps(moved), check=False)
    assert refused.returncode != 0 and "RoleAssignmentUpdateNotPermitted" in refused.stderr, refused.stderr
    # Leaving the condition out clears it, as ARM's PUT does.
    cleared = {k: v for k, v in changed.items() if k not in ("condition", "conditionVersion")}
    assert up.json("role", "assignment", "update", "--role-assignment", json.dumps(cleared))["condition"] is None
    time.sleep(PROPAGATION)
    assert can_write("data/c")
    records = up.run("audit", "query", "--log", "entraflow/admin", "-o", "json").stdout
    assert "role_assignment.update" in records


def test_a_custom_role_definition_is_updated_by_name(up):
    name = f"updatable-{uuid.uuid4().hex[:6]}"
    role = {"Name": name, "Description": "reads", "Actions": [],
            "DataActions": ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
            "AssignableScopes": [up.env["ENTRAFLOW_STORAGE_SCOPE"]]}
    created = up.json("role", "definition", "create", "--role-definition", json.dumps(role))
    wider = {**role, "DataActions": role["DataActions"] + [
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"]}
    updated = up.json("role", "definition", "update", "--role-definition", json.dumps(wider))
    assert updated["name"] == created["name"], "the same role (its GUID), not a new one"
    [shown] = up.json("role", "definition", "list", "--name", name)
    assert len(shown["permissions"][0]["dataActions"]) == 2
    typo = {**role, "DataActions": ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/raed"]}
    out = up.run("role", "definition", "update", "--role-definition", json.dumps(typo), check=False)
    assert out.returncode != 0 and "blobs/read" in out.stderr, out.stderr
    builtin = up.run("role", "definition", "update", "--role-definition", json.dumps(
        {**role, "Name": "Storage Blob Data Reader"}), check=False)
    assert builtin.returncode != 0 and "built-in" in builtin.stderr, builtin.stderr


def test_deleting_apps_and_service_principals_stops_their_tokens(up):
    def client_credentials(app_id, secret):
        return up.token_response({"grant_type": "client_credentials", "client_id": app_id,
                                  "client_secret": secret, "scope": STORAGE_SCOPE})

    app, secret = up.app("sp-delete")
    sp = up.json("ad", "sp", "create", "--id", app["appId"])
    assert client_credentials(app["appId"], secret).status_code == 200
    up.run("ad", "sp", "delete", "--id", sp["id"])
    assert 7000229 in client_credentials(app["appId"], secret).json()["error_codes"]
    assert sp["id"] not in [s["id"] for s in up.json("ad", "sp", "list")]

    up.json("ad", "sp", "create", "--id", app["appId"])
    up.run("ad", "app", "delete", "--id", app["id"])
    assert 700016 in client_credentials(app["appId"], secret).json()["error_codes"]
    out = up.run("ad", "app", "show", "--id", app["appId"], check=False)
    assert out.returncode == 1 and "entraflow ad app list" in out.stderr


def test_group_membership_and_group_deletion_take_effect_on_the_next_token(up):
    api_uri = f"api://groups-{uuid.uuid4().hex[:6]}"
    up.json("ad", "app", "create", "--display-name", "api", "--identifier-uris", api_uri,
            "--group-membership-claims", "SecurityGroup")
    app, secret = up.app("member")
    sp = up.json("ad", "sp", "create", "--id", app["appId"])
    name = f"writers-{uuid.uuid4().hex[:6]}"
    group = up.json("ad", "group", "create", "--display-name", name)
    assert name in [g["displayName"] for g in up.json("ad", "group", "list")]

    def groups_in_next_token() -> list[str]:
        token = up.credential(app["appId"], secret).get_token(f"{api_uri}/.default").token
        return jwt.decode(token, options={"verify_signature": False}).get("groups", [])

    up.json("ad", "group", "member", "add", "--group", name, "--member-id", sp["id"])
    assert [m["id"] for m in up.json("ad", "group", "member", "list", "--group", name)] == [sp["id"]]
    assert up.json("ad", "group", "member", "check", "--group", group["id"], "--member-id", sp["id"])["value"]
    assert group["id"] in groups_in_next_token()

    up.run("ad", "group", "member", "remove", "--group", name, "--member-id", sp["id"])
    assert up.json("ad", "group", "member", "list", "--group", name) == []
    assert group["id"] not in groups_in_next_token()
    out = up.run("ad", "group", "member", "remove", "--group", name, "--member-id", sp["id"], check=False)
    assert out.returncode == 1 and "is not a member" in out.stderr

    up.json("ad", "group", "member", "add", "--group", name, "--member-id", sp["id"])
    assert group["id"] in groups_in_next_token()
    up.run("ad", "group", "delete", "--group", name)
    assert group["id"] not in groups_in_next_token()
    out = up.run("ad", "group", "show", "--group", name, check=False)
    assert out.returncode == 1 and "entraflow ad group list" in out.stderr


def test_a_deleted_user_cannot_redeem_their_refresh_token(up):
    app = up.json("ad", "app", "create", "--display-name", "notebook", "--public-client")
    up.json("ad", "sp", "create", "--id", app["appId"])
    upn = f"del-{uuid.uuid4().hex[:6]}@entraflow.local"
    up.json("ad", "user", "create", "--upn", upn, "--display-name", "Del")
    pca = msal.PublicClientApplication(app["appId"], authority=f"{up.host}/{up.tenant}",
                                       instance_discovery=False, verify=up.env["REQUESTS_CA_BUNDLE"])
    flow = pca.initiate_device_flow(scopes=[STORAGE_SCOPE])
    up.run("authority", "approve", flow["user_code"], "--user", upn)
    result = pca.acquire_token_by_device_flow(flow)
    assert "refresh_token" in result, result
    up.run("ad", "user", "delete", "--id", upn)
    again = pca.acquire_token_by_refresh_token(result["refresh_token"], scopes=[STORAGE_SCOPE])
    assert "error" in again, again
    assert upn not in [u["userPrincipalName"] for u in up.json("ad", "user", "list")]


def test_a_custom_role_is_deleted_only_once_unused(up):
    name = f"lister-{uuid.uuid4().hex[:6]}"
    up.json("role", "definition", "create", "--role-definition", json.dumps({
        "Name": name, "AssignableScopes": ["/"],
        "DataActions": ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"]}))
    group = up.json("ad", "group", "create", "--display-name", name)
    a = up.json("role", "assignment", "create", "--assignee", group["id"], "--role", name,
                "--scope", up.container_scope("lists"))
    out = up.run("role", "definition", "delete", "--name", name, check=False)
    assert out.returncode == 1 and a["name"] in out.stderr, out.stderr
    up.run("role", "assignment", "delete", "--ids", a["id"])
    up.run("role", "definition", "delete", "--name", name)
    assert up.json("role", "definition", "list", "--name", name) == []
    out = up.run("role", "assignment", "create", "--assignee", group["id"], "--role", name,
                 "--scope", up.container_scope("lists"), check=False)
    assert out.returncode == 1 and "no role named" in out.stderr


def test_logout_forgets_the_sign_in(up):
    cache = up.dir / "token-cache.json"
    out = up.run("logout", check=False)
    assert out.returncode == 1 and "nobody is signed in" in out.stderr
    login = subprocess.Popen([BIN, "--data-dir", str(up.dir), "login"], stderr=subprocess.PIPE, text=True,
                             stdout=subprocess.DEVNULL)
    upn = f"who-{uuid.uuid4().hex[:6]}@entraflow.local"
    up.json("ad", "user", "create", "--upn", upn, "--display-name", "Who")
    line = login.stderr.readline()
    code = next(w for w in line.replace(".", " ").split() if w.isupper() and len(w) >= 8)
    up.run("authority", "approve", code, "--user", upn)
    assert login.wait(timeout=60) == 0
    assert cache.exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    whoami = subprocess.run([BIN, "--data-dir", str(up.dir), "whoami", "-o", "json"], capture_output=True,
                            text=True, env=env)
    assert whoami.returncode == 0 and upn in whoami.stdout, whoami.stderr
    up.run("logout")
    assert not cache.exists()
    whoami = subprocess.run([BIN, "--data-dir", str(up.dir), "whoami"], capture_output=True, text=True, env=env)
    assert whoami.returncode != 0 and upn not in whoami.stdout


def test_a_typo_data_dir_is_refused_and_nothing_is_created(tmp_path):
    typo = tmp_path / "typo-dir"
    for args in (["role", "assignment", "create", "--assignee-object-id", str(uuid.uuid4()),
                  "--assignee-principal-type", "User", "--role", "Storage Blob Data Reader",
                  "--scope", f"/subscriptions/{SUB}"],
                 ["role", "assignment", "list"], ["ad", "app", "list"], ["authority", "tenant", "show"],
                 ["audit", "verify"], ["gate", "serve", "--port", "0"]):
        out = subprocess.run([BIN, "--data-dir", str(typo), *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert str(typo) in out.stderr and "init" in out.stderr, (args, out.stderr)
        assert not typo.exists(), args
    out = subprocess.run([BIN, "--data-dir", str(typo), "init"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert subprocess.run([BIN, "--data-dir", str(typo), "ad", "app", "list", "-o", "json"],
                          capture_output=True, text=True, check=True).stdout.strip().startswith("[")


def test_a_second_up_is_refused_and_leaves_the_first_ones_env_intact(up):
    env_before = (up.dir / "env").read_text()
    gate_before = (up.dir / "gate.env").read_text()
    second = subprocess.run([BIN, "--data-dir", str(up.dir), "up", "--authority-port", "0", "--imds-port", "0",
                             "--gate-port", "0"], capture_output=True, text=True, timeout=60)
    assert second.returncode == 1, second.stdout
    assert f"pid {up.proc.pid}" in second.stderr and up.host in second.stderr, second.stderr
    assert (up.dir / "env").read_text() == env_before
    assert (up.dir / "gate.env").read_text() == gate_before
    assert up.proc.poll() is None


def test_the_ca_bundle_env_names_holds_the_local_ca_and_the_system_roots(up):
    bundle = Path(up.env["SSL_CERT_FILE"]).read_text()
    assert up.env["REQUESTS_CA_BUNDLE"] == up.env["SSL_CERT_FILE"]
    assert (up.dir / "ca.pem").read_text().strip() in bundle
    system = next(p for p in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                              "/etc/ssl/cert.pem") if Path(p).exists())
    system_certs = Path(system).read_text().count("BEGIN CERTIFICATE")
    assert system_certs > 10
    assert bundle.count("BEGIN CERTIFICATE") == system_certs + 1


def test_query_and_tsv_output_as_az_prints_them(up):
    name = f"q-{uuid.uuid4().hex[:6]}"
    app_id = up.run("ad", "app", "create", "--display-name", name, "--query", "appId", "-o", "tsv").stdout
    assert app_id.endswith("\n") and str(uuid.UUID(app_id.strip())) == app_id.strip()
    assert up.json("ad", "app", "show", "--id", app_id.strip())["displayName"] == name
    listed = up.run("ad", "app", "list", "--query", f"[?displayName=='{name}'].[displayName, appId]",
                    "-o", "tsv").stdout
    assert listed == f"{name}\t{app_id.strip()}\n"
    assert up.run("ad", "app", "create", "--display-name", name, "-o", "none").stdout == ""

    # A bad query is refused before anything is changed.
    group = f"never-{uuid.uuid4().hex[:6]}"
    out = up.run("ad", "group", "create", "--display-name", group, "--query", "[?", check=False)
    assert out.returncode == 1 and "JMESPath" in out.stderr, out.stderr
    assert group not in up.run("ad", "group", "list", "--query", "[].displayName", "-o", "tsv").stdout

    secret = up.json("ad", "app", "credential", "reset", "--id", app_id.strip())["password"]
    up.json("ad", "sp", "create", "--id", app_id.strip())
    env = {**os.environ, "AZURE_CLIENT_ID": app_id.strip(), "AZURE_CLIENT_SECRET": secret,
           "AZURE_TENANT_ID": up.tenant, "AZURE_AUTHORITY_HOST": up.host}
    token = subprocess.run([BIN, "--data-dir", str(up.dir), "token", "--query", "accessToken", "-o", "tsv"],
                           capture_output=True, text=True, env=env, check=True).stdout
    claims = jwt.decode(token.strip(), options={"verify_signature": False})
    assert claims["appid"] == app_id.strip()


def test_lint_flags_app_id_assignees_orphans_and_empty_groups(up):
    app, _ = up.app("lint")
    sp = up.json("ad", "sp", "create", "--id", app["appId"])
    # The classic mistake, as az allows it: the appId given as an object id.
    up.json("role", "assignment", "create", "--assignee-object-id", app["appId"], "--assignee-principal-type",
            "ServicePrincipal", "--role", "Storage Blob Data Reader", "--scope", up.container_scope("lint"))
    upn = f"gone-{uuid.uuid4().hex[:6]}@entraflow.local"
    user = up.json("ad", "user", "create", "--upn", upn, "--display-name", "Gone")
    up.json("role", "assignment", "create", "--assignee", upn, "--role", "Storage Blob Data Reader",
            "--scope", up.container_scope("lint"))
    up.run("ad", "user", "delete", "--id", user["id"])
    group = up.json("ad", "group", "create", "--display-name", f"empty-{uuid.uuid4().hex[:6]}")
    up.json("role", "assignment", "create", "--assignee", group["id"], "--role", "Storage Blob Data Reader",
            "--scope", up.container_scope("lint"))
    out = up.run("role", "lint", "-o", "json", check=False)
    assert out.returncode == 1, out.stderr
    found = {(f["rule"], f["principalId"]): f for f in json.loads(out.stdout)}
    assert sp["id"] in found[("app-id-assignee", app["appId"])]["message"]
    assert ("orphaned-principal", user["id"]) in found
    assert ("empty-group", group["id"]) in found


def test_yaml_output_and_az_flag_names(up, tmp_path):
    name = f"Bob: builder {uuid.uuid4().hex[:4]}"
    upn = f"bob-{uuid.uuid4().hex[:6]}@entraflow.local"
    # az's flag name for the UPN, and YAML as az prints it (a value with ': ' quoted).
    out = up.run("ad", "user", "create", "--user-principal-name", upn, "--display-name", name, "-o", "yaml").stdout
    lines = out.splitlines()
    assert f"displayName: '{name}'" in lines and f"userPrincipalName: {upn}" in lines, out
    assert up.run("ad", "user", "list", "--query", f"[?userPrincipalName=='{upn}'].userPrincipalName",
                  "-o", "yaml").stdout == f"- {upn}\n"

    # --is-fallback-public-client takes az's true/false; --public-client is the same setting.
    # (A bare boolean in TSV is lower-case, as knack writes it.)
    for flag, expected in [(["--is-fallback-public-client", "true"], "true"),
                           (["--is-fallback-public-client", "false"], "false"), (["--public-client"], "true"),
                           ([], "false")]:
        got = up.run("ad", "app", "create", "--display-name", f"pc-{uuid.uuid4().hex[:6]}", *flag,
                     "--query", "isFallbackPublicClient", "-o", "tsv").stdout.strip()
        assert got == expected, (flag, got)

    # federated-credential create --parameters @file.json, in Microsoft Graph's shape.
    app, _ = up.app("fic-params")
    params = tmp_path / "fic.json"
    params.write_text(json.dumps({"name": "github-main", "issuer": "https://token.actions.githubusercontent.com",
                                  "subject": "repo:org/repo:ref:refs/heads/main",
                                  "audiences": ["api://AzureADTokenExchange"]}))
    made = up.json("ad", "app", "federated-credential", "create", "--id", app["appId"], "--parameters", f"@{params}")
    assert (made["name"], made["subject"]) == ("github-main", "repo:org/repo:ref:refs/heads/main")
    listed = up.json("ad", "app", "federated-credential", "list", "--id", app["appId"])
    assert [f["issuer"] for f in listed] == ["https://token.actions.githubusercontent.com"]
    bad = up.run("ad", "app", "federated-credential", "create", "--id", app["appId"], "--parameters",
                 '{"name": "x", "issuer": "https://a.example", "subject": "s", "audience": ["typo"]}', check=False)
    assert bad.returncode != 0 and "unknown field `audience`" in bad.stderr, bad.stderr
    # A description entraflow would not keep is refused, not dropped.
    described = up.run("ad", "app", "federated-credential", "create", "--id", app["appId"], "--parameters",
                       '{"name": "d", "issuer": "https://a.example", "subject": "s", "description": "CI on main"}',
                       check=False)
    assert described.returncode != 0 and "does not store" in described.stderr, described.stderr
    both = up.run("ad", "app", "federated-credential", "create", "--id", app["appId"], "--parameters", f"@{params}",
                  "--name", "x", check=False)
    assert both.returncode != 0 and "cannot be used with" in both.stderr, both.stderr
    assert len(up.json("ad", "app", "federated-credential", "list", "--id", app["appId"])) == 1

    # az login --use-device-code: accepted (entraflow signs in with a device code anyway).
    assert "--use-device-code" in up.run("login", "--help").stdout


def test_a_port_in_use_is_reported_as_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args in (["up", "--authority-port", "0", "--imds-port", "0", "--gate-port", str(port)],
                     ["up", "--authority-port", str(port), "--imds-port", "0", "--gate-port", "0"]):
            data = tmp_path / f"d-{uuid.uuid4().hex[:6]}"
            out = subprocess.run([BIN, "--data-dir", str(data), *args], capture_output=True, text=True, timeout=60)
            assert out.returncode == 1
            last = out.stderr.strip().splitlines()[-1]
            assert f"127.0.0.1:{port} is already in use" in last, last
            assert "directory" not in last and "TLS" not in last, last
            assert last.count("already in use") == 1, f"said twice: {last}"


def test_a_federated_issuer_that_its_discovery_document_contradicts_is_warned_about(up):
    app, _ = up.app("fic-issuer")
    issuer = f"{up.host}/{up.tenant}/v2.0"  # a reachable OIDC issuer: the local authority's own
    slash = up.run("ad", "app", "federated-credential", "create", "--id", app["appId"], "--name", "slash",
                   "--issuer", issuer + "/", "--subject", "s1")
    assert f"says its tokens carry iss '{issuer}', not '{issuer}/'" in slash.stderr, slash.stderr
    exact = up.run("ad", "app", "federated-credential", "create", "--id", app["appId"], "--name", "exact",
                   "--issuer", issuer, "--subject", "s2")
    assert "warning" not in exact.stderr, exact.stderr
    # An issuer that cannot be reached is taken as given, without a warning (offline clusters).
    offline = up.run("ad", "app", "federated-credential", "create", "--id", app["appId"], "--name", "offline",
                     "--issuer", "https://127.0.0.1:9/issuer", "--subject", "s3")
    assert "warning" not in offline.stderr, offline.stderr
    # The credential is stored byte for byte either way: the warning changes nothing.
    issuers = {f["name"]: f["issuer"] for f in up.json("ad", "app", "federated-credential", "list", "--id", app["appId"])}
    assert issuers == {"slash": issuer + "/", "exact": issuer, "offline": "https://127.0.0.1:9/issuer"}


def test_show_list_and_update_of_service_principals_users_and_identities(up):
    app = up.json("ad", "app", "create", "--display-name", f"shown-{uuid.uuid4().hex[:6]}")
    sp = up.json("ad", "sp", "create", "--id", app["appId"])
    for key in (app["appId"], sp["id"]):
        assert up.json("ad", "sp", "show", "--id", key)["id"] == sp["id"]
    missing = up.run("ad", "sp", "show", "--id", str(uuid.uuid4()), check=False)
    assert missing.returncode != 0 and "ad sp list" in missing.stderr, missing.stderr

    upn = f"upd-{uuid.uuid4().hex[:6]}@entraflow.local"
    user = up.json("ad", "user", "create", "--upn", upn, "--display-name", "Before")
    assert up.json("ad", "user", "show", "--id", upn)["id"] == user["id"]
    assert up.json("ad", "user", "show", "--id", user["id"])["userPrincipalName"] == upn
    renamed = up.json("ad", "user", "update", "--id", upn, "--display-name", "After")
    assert renamed["displayName"] == "After"
    assert up.json("ad", "user", "show", "--id", upn)["displayName"] == "After"
    secret = f"pw-{uuid.uuid4().hex}"
    changed = subprocess.run([BIN, "--data-dir", str(up.dir), "ad", "user", "update", "--id", upn,
                              "--password-stdin", "-o", "json"], input=secret + "\n",
                             capture_output=True, text=True)
    assert changed.returncode == 0, changed.stderr
    nothing = up.run("ad", "user", "update", "--id", upn, check=False)
    assert nothing.returncode != 0 and "nothing to change" in nothing.stderr
    records = up.run("audit", "query", "--log", "entraflow/admin", "-o", "json").stdout
    assert "user.update" in records and secret not in records

    name = f"mi-{uuid.uuid4().hex[:6]}"
    mi = up.json("ad", "identity", "create", "--name", name, "--host", "vm-shown")
    shown = up.json("ad", "identity", "show", "--name", name)
    assert (shown["clientId"], shown["principalId"], shown["host"]) == (mi["clientId"], mi["principalId"], "vm-shown")
    assert shown["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities"
    host_mi = up.json("ad", "identity", "create", "--system-assigned", "--host", "vm-shown")
    system = up.json("ad", "identity", "show", "--system-assigned", "--host", "vm-shown")
    assert system["principalId"] == host_mi["principalId"] and system["type"] == "SystemAssigned"
    on_host = up.json("ad", "identity", "list", "--host", "vm-shown")
    assert sorted(i["principalId"] for i in on_host) == sorted([mi["principalId"], host_mi["principalId"]])
    # --host with --name is a condition, not ignored.
    for verb in ("show", "delete"):
        elsewhere = up.run("ad", "identity", verb, "--name", name, "--host", "vm-other", check=False)
        assert elsewhere.returncode != 0, (verb, elsewhere.stdout)
    assert up.json("ad", "identity", "show", "--name", name, "--host", "vm-shown")["principalId"] == mi["principalId"]
    up.run("ad", "identity", "delete", "--name", name)
    gone = up.run("ad", "identity", "show", "--name", name, check=False)
    assert gone.returncode != 0 and "ad identity list" in gone.stderr, gone.stderr


def test_env_names_imds_once_the_host_has_a_managed_identity(tmp_path):
    stack = Up(tmp_path / "data")
    try:
        var = "AZURE_POD_IDENTITY_AUTHORITY_HOST"
        assert var not in parse_env_file(stack.dir / "env"), "no identity yet: no IMDS in the chain"
        mi = stack.json("ad", "identity", "create", "--name", "etl", "--host", "local-vm")
        env = parse_env_file(stack.dir / "env")
        assert env[var] == parse_env_file(stack.dir / "imds.env")[var]
        # A shell that sources env gets the identity's token from azure-identity.
        script = ("from azure.identity import ManagedIdentityCredential\n"
                  "import jwt, sys\n"
                  f"t = ManagedIdentityCredential(client_id={mi['clientId']!r}).get_token('{STORAGE_SCOPE}')\n"
                  "print(jwt.decode(t.token, options={'verify_signature': False})['oid'])\n")
        shell = subprocess.run(["bash", "-c", f'set -a; source "{stack.dir}/env"; exec "$0" -c "$1"',
                                sys.executable, script],
                               capture_output=True, text=True, timeout=60,
                               env={k: v for k, v in os.environ.items() if k != var})
        assert shell.stdout.strip() == mi["principalId"], shell.stderr
    finally:
        stack.stop()
    # A restart on a host with an identity writes the variable from the start.
    again = Up(tmp_path / "data")
    try:
        assert var in parse_env_file(again.dir / "env")
        # Once the identity is deleted, IMDS no longer issues its tokens.
        again.run("ad", "identity", "delete", "--name", "etl", "--host", "local-vm")
        refused = subprocess.run(["bash", "-c", f'set -a; source "{again.dir}/env"; exec "$0" -c "$1"',
                                  sys.executable, script],
                                 capture_output=True, text=True, timeout=60,
                                 env={k: v for k, v in os.environ.items() if k != var})
        assert refused.returncode != 0 and mi["principalId"] not in refused.stdout, refused.stdout
        assert "Identity not found" in refused.stderr, refused.stderr[-2000:]
    finally:
        again.stop()
