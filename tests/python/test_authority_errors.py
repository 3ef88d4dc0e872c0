"""Every error the authority can give, asserted by its AADSTS code as Entra ID sends it."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest
import requests

from helpers import (
    STORAGE,
    STORAGE_SCOPE,
    assert_aadsts,
    assertion,
    cert_pem,
    jwk_of,
    rsa_key,
    self_signed_cert,
    token_request,
    x5t_sha1,
)

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def secret_app(authority):
    app = authority.new_app("errors-secret")
    return app, authority.new_secret(app["appId"])


def secret_form(app_id: str, secret: str, scope: str = STORAGE_SCOPE) -> dict:
    return {"grant_type": "client_credentials", "client_id": app_id, "client_secret": secret, "scope": scope}


def test_wrong_secret_is_7000215(authority, secret_app):
    app, _ = secret_app
    assert_aadsts(token_request(authority, secret_form(app["appId"], "wrong")), 7000215, 401)


def test_expired_secret_is_7000222(authority):
    app = authority.new_app("errors-expired")
    end = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)).isoformat()
    secret = authority.new_secret(app["appId"], "--end-date", end)
    time.sleep(3)
    assert_aadsts(token_request(authority, secret_form(app["appId"], secret)), 7000222, 401)


def test_unknown_app_is_700016(authority):
    assert_aadsts(token_request(authority, secret_form(str(uuid.uuid4()), "x")), 700016)


def test_no_credential_is_7000218(authority, secret_app):
    app, _ = secret_app
    form = {"grant_type": "client_credentials", "client_id": app["appId"], "scope": STORAGE_SCOPE}
    assert_aadsts(token_request(authority, form), 7000218)


def test_unknown_tenant_is_90002(authority, secret_app):
    app, secret = secret_app
    assert_aadsts(token_request(authority, secret_form(app["appId"], secret), tenant=str(uuid.uuid4())), 90002, 400)


def test_two_resources_is_700022(authority, secret_app):
    app, secret = secret_app
    scope = f"{STORAGE_SCOPE} https://graph.microsoft.com/.default"
    assert_aadsts(token_request(authority, secret_form(app["appId"], secret, scope)), 700022, 400)


def test_unknown_resource_is_500011(authority, secret_app):
    app, secret = secret_app
    assert_aadsts(token_request(authority, secret_form(app["appId"], secret, "api://no-such-api/.default")), 500011, 400)


def test_invalid_scope_is_70011(authority, secret_app):
    app, secret = secret_app
    assert_aadsts(token_request(authority, secret_form(app["appId"], secret, "https://storage.azure.com/user_impersonation")), 70011, 400)


def test_unknown_grant_and_malformed_bodies_are_400(authority):
    r = token_request(authority, {"grant_type": "password", "client_id": "x"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type", r.text
    r = requests.post(authority.token_endpoint(), data=b"%%%\xff\xfe=&&=", verify=authority.ca,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400, r.text
    r = requests.post(authority.token_endpoint(), data=b"x" * (2 * 1024 * 1024), verify=authority.ca,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code in (400, 413), r.status_code
    r = requests.post(authority.token_endpoint(), json={"grant_type": "client_credentials"}, verify=authority.ca)
    assert r.status_code == 400, r.text


@pytest.fixture(scope="module")
def cert_app(authority, tmp_path_factory):
    app = authority.new_app("errors-cert")
    key = rsa_key()
    cert = self_signed_cert(key)
    path = tmp_path_factory.mktemp("cert") / "c.crt"
    path.write_bytes(cert_pem(cert))
    authority.json("ad", "app", "credential", "upload-cert", "--id", app["appId"], "--cert", str(path))
    return app, key, cert


def cert_form(authority, app_id: str, client_assertion: str) -> dict:
    return {"grant_type": "client_credentials", "client_id": app_id, "scope": STORAGE_SCOPE,
            "client_assertion_type": JWT_BEARER, "client_assertion": client_assertion}


def test_certificate_assertion_round_trip_and_replay(authority, cert_app):
    app, key, cert = cert_app
    a = assertion(key, iss=app["appId"], sub=app["appId"], aud=authority.token_endpoint(),
                  headers={"x5t": x5t_sha1(cert)})
    assert token_request(authority, cert_form(authority, app["appId"], a)).status_code == 200
    replay = token_request(authority, cert_form(authority, app["appId"], a))
    assert replay.status_code in (400, 401), replay.text
    assert 9002313 in replay.json()["error_codes"], replay.text


def test_assertion_signed_by_another_key_is_700027(authority, cert_app):
    app, _, cert = cert_app
    forged = assertion(rsa_key(), iss=app["appId"], sub=app["appId"], aud=authority.token_endpoint(),
                       headers={"x5t": x5t_sha1(cert)})
    assert_aadsts(token_request(authority, cert_form(authority, app["appId"], forged)), 700027, 401)


def test_assertion_living_too_long_or_expired_is_700024(authority, cert_app):
    app, key, cert = cert_app
    long_lived = assertion(key, iss=app["appId"], sub=app["appId"], aud=authority.token_endpoint(),
                           headers={"x5t": x5t_sha1(cert)}, lifetime=3600)
    assert_aadsts(token_request(authority, cert_form(authority, app["appId"], long_lived)), 700024, 401)
    expired = assertion(key, iss=app["appId"], sub=app["appId"], aud=authority.token_endpoint(),
                        headers={"x5t": x5t_sha1(cert)}, now=int(time.time()) - 1200)
    assert_aadsts(token_request(authority, cert_form(authority, app["appId"], expired)), 700024, 401)


@pytest.fixture(scope="module")
def federated(authority, tmp_path_factory):
    key = rsa_key()
    kid = uuid.uuid4().hex
    issuer = f"https://oidc.errors.local/{uuid.uuid4().hex}"
    jwks = tmp_path_factory.mktemp("jwks") / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk_of(key, kid)]}))
    authority.cli("authority", "issuer", "add", "--issuer", issuer, "--jwks-file", str(jwks))
    app = authority.new_app("errors-federated")
    authority.json("ad", "app", "federated-credential", "create", "--id", app["appId"], "--name", "k8s",
                   "--issuer", issuer, "--subject", "system:serviceaccount:ml:trainer")
    return app, key, kid, issuer


def federated_form(app_id: str, token: str) -> dict:
    return {"grant_type": "client_credentials", "client_id": app_id, "scope": STORAGE_SCOPE,
            "client_assertion_type": JWT_BEARER, "client_assertion": token}


def test_federated_subject_or_issuer_mismatch_is_70021(authority, federated):
    app, key, kid, issuer = federated
    ok = assertion(key, iss=issuer, sub="system:serviceaccount:ml:trainer", aud="api://AzureADTokenExchange", kid=kid)
    assert token_request(authority, federated_form(app["appId"], ok)).status_code == 200
    wrong_subject = assertion(key, iss=issuer, sub="system:serviceaccount:ml:other", aud="api://AzureADTokenExchange", kid=kid)
    assert_aadsts(token_request(authority, federated_form(app["appId"], wrong_subject)), 70021, 401)
    trailing_slash = assertion(key, iss=issuer + "/", sub="system:serviceaccount:ml:trainer", aud="api://AzureADTokenExchange", kid=kid)
    body = token_request(authority, federated_form(app["appId"], trailing_slash))
    assert body.status_code in (400, 401) and body.json()["error_codes"][0] in (70021, 90061), body.text
    wrong_audience = assertion(key, iss=issuer, sub="system:serviceaccount:ml:trainer", aud="api://other", kid=kid)
    assert_aadsts(token_request(authority, federated_form(app["appId"], wrong_audience)), 70021, 401)


def test_expired_federated_token_is_700024(authority, federated):
    app, key, kid, issuer = federated
    stale = assertion(key, iss=issuer, sub="system:serviceaccount:ml:trainer", aud="api://AzureADTokenExchange",
                      kid=kid, now=int(time.time()) - 7200, lifetime=3600)
    assert_aadsts(token_request(authority, federated_form(app["appId"], stale)), 700024, 401)


def test_entra_token_as_federated_assertion_is_700222(authority, secret_app, federated):
    app, secret = secret_app
    fed_app = federated[0]
    entra_token = token_request(authority, secret_form(app["appId"], secret, f"api://AzureADTokenExchange/.default"))
    # Whatever the audience, an Entra-issued token must never be accepted as an external assertion.
    if entra_token.status_code != 200:
        entra_token = token_request(authority, secret_form(app["appId"], secret))
    token = entra_token.json()["access_token"]
    assert_aadsts(token_request(authority, federated_form(fed_app["appId"], token)), 700222, 401)


def test_secrets_are_not_in_the_log_or_database_in_clear(authority, secret_app):
    _, secret = secret_app
    assert secret not in (authority.data_dir / "authority.log").read_text()
    assert secret.encode() not in (authority.data_dir / "authority.db").read_bytes()
