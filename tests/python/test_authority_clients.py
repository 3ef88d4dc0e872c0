"""The local authority against clients it did not write: azure-identity, msal, PyJWT.

Each credential type gets a token that PyJWT validates against the published JWKS.
"""

from __future__ import annotations

import json
import time
import uuid

import msal
from cryptography.hazmat.primitives import hashes
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    CertificateCredential,
    ClientSecretCredential,
    DeviceCodeCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)

from helpers import (
    STORAGE,
    STORAGE_SCOPE,
    assertion,
    cert_pem,
    jwk_of,
    key_pem,
    rsa_key,
    self_signed_cert,
    v1_issuer,
    verify_token,
)


def test_discovery_documents_point_at_the_authority(authority):
    v2 = requests.get(f"{authority.host}/{authority.tenant}/v2.0/.well-known/openid-configuration", verify=authority.ca).json()
    assert v2["issuer"] == f"{authority.host}/{authority.tenant}/v2.0"
    assert v2["token_endpoint"] == authority.token_endpoint()
    assert v2["jwks_uri"] == f"{authority.host}/{authority.tenant}/discovery/v2.0/keys"
    v1 = requests.get(f"{authority.host}/{authority.tenant}/.well-known/openid-configuration", verify=authority.ca).json()
    assert v1["issuer"] == v1_issuer(authority.tenant)
    keys = requests.get(v2["jwks_uri"], verify=authority.ca).json()["keys"]
    assert keys, "JWKS is empty"
    for key in keys:
        assert {"kty", "use", "kid", "x5t", "n", "e", "x5c", "issuer"} <= key.keys()
        assert key["kty"] == "RSA" and key["use"] == "sig"


def test_client_secret_credential_gets_a_v1_storage_token(authority):
    app = authority.new_app("secret-trainer")
    secret = authority.new_secret(app["appId"])
    cred = ClientSecretCredential(authority.tenant, app["appId"], secret, authority=authority.host,
                                  disable_instance_discovery=True)
    token = cred.get_token(STORAGE_SCOPE)
    assert token.expires_on > time.time()
    claims = verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))
    assert claims["ver"] == "1.0"
    assert claims["appid"] == app["appId"]
    assert claims["appidacr"] == "1"
    assert claims["oid"] == app["spObjectId"] == claims["sub"]
    assert claims["tid"] == authority.tenant
    assert claims["idtyp"] == "app"
    assert claims["uti"]


def test_client_secret_over_http_basic(authority):
    app = authority.new_app("basic-trainer")
    secret = authority.new_secret(app["appId"])
    r = requests.post(authority.token_endpoint(), data={"grant_type": "client_credentials", "scope": STORAGE_SCOPE},
                      auth=(app["appId"], secret), verify=authority.ca)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and isinstance(body["ext_expires_in"], int)
    verify_token(authority, body["access_token"], STORAGE, v1_issuer(authority.tenant))


def test_v1_endpoint_takes_resource_and_answers_with_strings(authority):
    app = authority.new_app("v1-trainer")
    secret = authority.new_secret(app["appId"])
    r = requests.post(authority.token_endpoint("v1"), verify=authority.ca, data={
        "grant_type": "client_credentials", "client_id": app["appId"], "client_secret": secret, "resource": STORAGE})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resource"] == STORAGE
    for field in ("expires_in", "expires_on", "not_before"):
        assert isinstance(body[field], str) and body[field].isdigit(), (field, body)


def test_msal_confidential_client_with_secret_and_certificate(authority):
    app = authority.new_app("msal-trainer")
    secret = authority.new_secret(app["appId"])
    cca = msal.ConfidentialClientApplication(app["appId"], client_credential=secret,
                                             authority=f"{authority.host}/{authority.tenant}",
                                             instance_discovery=False, verify=authority.ca)
    result = cca.acquire_token_for_client(scopes=[STORAGE_SCOPE])
    assert "access_token" in result, result
    claims = verify_token(authority, result["access_token"], STORAGE, v1_issuer(authority.tenant))
    assert claims["appid"] == app["appId"]

    key = rsa_key()
    cert = self_signed_cert(key)
    cert_file = authority.data_dir / f"{app['appId']}.crt"
    cert_file.write_bytes(cert_pem(cert))
    uploaded = authority.json("ad", "app", "credential", "upload-cert", "--id", app["appId"], "--cert", str(cert_file))
    assert uploaded["thumbprint"].lower() == cert.fingerprint(hashes.SHA1()).hex()
    cca_cert = msal.ConfidentialClientApplication(
        app["appId"],
        client_credential={"private_key": key_pem(key).decode(), "thumbprint": uploaded["thumbprint"],
                           "public_certificate": cert_pem(cert).decode()},
        authority=f"{authority.host}/{authority.tenant}", instance_discovery=False, verify=authority.ca)
    result = cca_cert.acquire_token_for_client(scopes=[STORAGE_SCOPE])
    assert "access_token" in result, result
    claims = verify_token(authority, result["access_token"], STORAGE, v1_issuer(authority.tenant))
    assert claims["appidacr"] == "2"


@pytest.mark.parametrize("send_chain", [False, True])
def test_certificate_credential(authority, tmp_path, send_chain):
    app = authority.new_app(f"cert-trainer-{send_chain}")
    key = rsa_key()
    cert = self_signed_cert(key)
    pem = tmp_path / "client.pem"
    pem.write_bytes(key_pem(key) + cert_pem(cert))
    cert_only = tmp_path / "client.crt"
    cert_only.write_bytes(cert_pem(cert))
    authority.json("ad", "app", "credential", "upload-cert", "--id", app["appId"], "--cert", str(cert_only))
    cred = CertificateCredential(authority.tenant, app["appId"], certificate_path=str(pem), authority=authority.host,
                                 disable_instance_discovery=True, send_certificate_chain=send_chain)
    token = cred.get_token(STORAGE_SCOPE)
    claims = verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))
    assert claims["appid"] == app["appId"] and claims["appidacr"] == "2"


class ClusterIssuer:
    """A stand-in Kubernetes service-account issuer: a key, a JWKS file, and tokens."""

    def __init__(self, authority, tmp_path, issuer: str):
        self.key = rsa_key()
        self.kid = uuid.uuid4().hex
        self.issuer = issuer
        jwks = tmp_path / "cluster-jwks.json"
        jwks.write_text(json.dumps({"keys": [jwk_of(self.key, self.kid)]}))
        authority.cli("authority", "issuer", "add", "--issuer", issuer, "--jwks-file", str(jwks))

    def token(self, subject: str, audience: str = "api://AzureADTokenExchange", **kwargs) -> str:
        return assertion(self.key, iss=self.issuer, sub=subject, aud=audience, kid=self.kid, lifetime=3600, **kwargs)


def test_workload_identity_credential(authority, tmp_path):
    cluster = ClusterIssuer(authority, tmp_path, f"https://oidc.cluster.local/{uuid.uuid4().hex}")
    app = authority.new_app("federated-trainer")
    subject = "system:serviceaccount:ml:trainer"
    authority.json("ad", "app", "federated-credential", "create", "--id", app["appId"], "--name", "k8s",
                   "--issuer", cluster.issuer, "--subject", subject, "--audience", "api://AzureADTokenExchange")
    token_file = tmp_path / "sa-token"
    token_file.write_text(cluster.token(subject))
    cred = WorkloadIdentityCredential(tenant_id=authority.tenant, client_id=app["appId"],
                                      token_file_path=str(token_file), authority=authority.host,
                                      disable_instance_discovery=True)
    token = cred.get_token(STORAGE_SCOPE)
    claims = verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))
    assert claims["appid"] == app["appId"] and claims["oid"] == app["spObjectId"]


def test_managed_identity_credential_against_imds(authority, monkeypatch):
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", authority.imds)
    user_assigned = authority.json("ad", "identity", "create", "--name", "trainer-mi", "--host", "local-vm")
    token = ManagedIdentityCredential(client_id=user_assigned["clientId"]).get_token(STORAGE_SCOPE)
    claims = verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))
    assert claims["oid"] == user_assigned["principalId"]
    assert claims["appid"] == user_assigned["clientId"]
    assert claims["xms_mirid"] == user_assigned["id"]

    system = authority.json("ad", "identity", "create", "--system-assigned", "--host", "local-vm")
    token = ManagedIdentityCredential().get_token(STORAGE_SCOPE)
    claims = verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))
    assert claims["oid"] == system["principalId"]


def test_imds_speaks_imds(authority):
    url = f"{authority.imds}/metadata/identity/oauth2/token"
    params = {"api-version": "2018-02-01", "resource": STORAGE}
    no_header = requests.get(url, params=params)
    assert no_header.status_code == 400, no_header.text
    assert no_header.json()["error"] == "invalid_request"
    unknown = requests.get(url, params={**params, "client_id": str(uuid.uuid4())}, headers={"Metadata": "true"})
    assert unknown.status_code == 400, unknown.text
    assert "identity not found" in unknown.json()["error_description"].lower()
    mi = authority.json("ad", "identity", "create", "--name", "raw-mi", "--host", "local-vm")
    ok = requests.get(url, params={**params, "client_id": mi["clientId"]}, headers={"Metadata": "true"})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    for field in ("expires_in", "expires_on", "not_before", "ext_expires_in"):
        assert isinstance(body[field], str) and body[field].isdigit(), (field, body)
    assert body["resource"] == STORAGE and body["token_type"] == "Bearer"
    assert body["client_id"] == mi["clientId"]


def test_device_code_credential_with_cli_approval(authority):
    app = authority.new_app("notebook", "--public-client")
    user = authority.json("ad", "user", "create", "--upn", f"alice-{uuid.uuid4().hex[:6]}@entraflow.local",
                          "--display-name", "Alice")
    prompts = []

    def approve(verification_uri, user_code, expires_on):
        prompts.append(verification_uri)
        authority.cli("authority", "approve", user_code, "--user", user["userPrincipalName"])

    cred = DeviceCodeCredential(client_id=app["appId"], tenant_id=authority.tenant, authority=authority.host,
                                prompt_callback=approve, disable_instance_discovery=True)
    token = cred.get_token(STORAGE_SCOPE)
    assert prompts and prompts[0].startswith(authority.host)
    claims = verify_token(authority, token.token, STORAGE, v1_issuer(authority.tenant))
    assert claims["oid"] == user["id"]
    assert claims["idtyp"] == "user"
    assert claims.get("upn") == user["userPrincipalName"]


def test_device_code_refresh_token_rotates(authority):
    app = authority.new_app("notebook-rt", "--public-client")
    user = authority.json("ad", "user", "create", "--upn", f"bob-{uuid.uuid4().hex[:6]}@entraflow.local",
                          "--display-name", "Bob")
    pca = msal.PublicClientApplication(app["appId"], authority=f"{authority.host}/{authority.tenant}",
                                       instance_discovery=False, verify=authority.ca)
    flow = pca.initiate_device_flow(scopes=[STORAGE_SCOPE])
    assert "user_code" in flow, flow
    authority.cli("authority", "approve", flow["user_code"], "--user", user["userPrincipalName"])
    result = pca.acquire_token_by_device_flow(flow)
    assert "access_token" in result and "refresh_token" in result, result
    refreshed = pca.acquire_token_by_refresh_token(result["refresh_token"], scopes=[STORAGE_SCOPE])
    assert "access_token" in refreshed, refreshed
    assert refreshed["refresh_token"] != result["refresh_token"]
    again = pca.acquire_token_by_refresh_token(result["refresh_token"], scopes=[STORAGE_SCOPE])
    assert "error" in again and 700082 in again.get("error_codes", []), again


def test_device_code_declined(authority):
    app = authority.new_app("notebook-declined", "--public-client")
    user = authority.json("ad", "user", "create", "--upn", f"eve-{uuid.uuid4().hex[:6]}@entraflow.local",
                          "--display-name", "Eve")
    pca = msal.PublicClientApplication(app["appId"], authority=f"{authority.host}/{authority.tenant}",
                                       instance_discovery=False, verify=authority.ca)
    flow = pca.initiate_device_flow(scopes=[STORAGE_SCOPE])
    authority.cli("authority", "approve", flow["user_code"], "--user", user["userPrincipalName"], "--deny")
    result = pca.acquire_token_by_device_flow(flow)
    assert result.get("error") == "authorization_declined", result


def test_azure_identity_reports_the_aadsts_code(authority):
    app = authority.new_app("wrong-secret")
    authority.new_secret(app["appId"])
    cred = ClientSecretCredential(authority.tenant, app["appId"], "not-the-secret", authority=authority.host,
                                  disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError) as err:
        cred.get_token(STORAGE_SCOPE)
    assert "AADSTS7000215" in str(err.value)
    assert "not-the-secret" not in (authority.data_dir / "authority.log").read_text()
