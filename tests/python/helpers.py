"""Small helpers the tests share: keys, certificates, JWTs and raw token requests."""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
import time
import uuid

import jwt
import requests
from azure.core.exceptions import HttpResponseError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

STORAGE = "https://storage.azure.com"
STORAGE_SCOPE = "https://storage.azure.com/.default"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed_cert(key: rsa.RSAPrivateKey, cn: str = "trainer") -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def x5t_sha1(cert: x509.Certificate) -> str:
    return b64url(cert.fingerprint(hashes.SHA1()))


def jwk_of(key: rsa.RSAPrivateKey, kid: str) -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return jwk


def assertion(key, *, iss: str, sub: str, aud: str, lifetime: int = 600, kid: str | None = None,
              headers: dict | None = None, jti: str | None = None, now: int | None = None) -> str:
    """A signed client or federated assertion."""
    now = int(time.time()) if now is None else now
    claims = {"iss": iss, "sub": sub, "aud": aud, "iat": now, "nbf": now, "exp": now + lifetime,
              "jti": jti or str(uuid.uuid4())}
    hdr = dict(headers or {})
    if kid:
        hdr["kid"] = kid
    return jwt.encode(claims, key_pem(key), algorithm="RS256", headers=hdr)


def token_request(authority, form: dict, version: str = "v2.0", tenant: str | None = None, **kwargs) -> requests.Response:
    """A raw POST to the token endpoint, for asserting Entra's error bodies exactly."""
    tenant = tenant or authority.tenant
    path = "oauth2/token" if version == "v1" else "oauth2/v2.0/token"
    return requests.post(f"{authority.host}/{tenant}/{path}", data=form, verify=authority.ca, timeout=30, **kwargs)


def assert_aadsts(response: requests.Response, code: int, status: int | None = None) -> dict:
    """The response is an Entra error carrying AADSTS `code`, in Entra's JSON shape."""
    assert response.status_code in ((status,) if status else (400, 401)), (response.status_code, response.text)
    body = response.json()
    assert code in body["error_codes"], body
    assert body["error_description"].startswith(f"AADSTS{code}:"), body
    for field in ("error", "timestamp", "trace_id", "correlation_id"):
        assert body.get(field), (field, body)
    return body


def verify_token(authority, token: str, audience: str, issuer: str) -> dict:
    """Validates a token with PyJWT against the authority's published JWKS."""
    ctx = ssl.create_default_context(cafile=authority.ca)
    jwks = jwt.PyJWKClient(f"{authority.host}/{authority.tenant}/discovery/v2.0/keys", ssl_context=ctx, cache_keys=False)
    signing_key = jwks.get_signing_key_from_jwt(token)
    return jwt.decode(token, signing_key.key, algorithms=["RS256"], audience=audience, issuer=issuer,
                      options={"require": ["exp", "iat", "nbf", "iss", "aud"]})


def v1_issuer(tenant: str) -> str:
    return f"https://sts.windows.net/{tenant}/"


def allowed_soon(check, what: str, timeout: float = 10.0):
    """Retries `check` while the gate answers 403, until it has picked up a role
    change (it re-reads the role store within 500 ms); never a fixed sleep. Works for
    azure-storage-blob calls and for `requests` calls that `raise_for_status()`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (HttpResponseError, requests.HTTPError) as e:
            status = e.status_code if isinstance(e, HttpResponseError) else e.response.status_code
            if status != 403 or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {e}") from e
            time.sleep(0.05)


class Report:
    """Named cases of an attack or fault suite, written where `scripts/reports.py`
    gathers them into SECURITY.md (doc="security") or RELIABILITY.md
    (doc="reliability"). `finish()` writes every case, then fails on any that did
    not hold, so the table shows all of them."""

    def __init__(self, doc: str, suite: str):
        self.doc, self.suite, self.cases = doc, suite, []

    def check(self, case: str, expected: str, observed: str, held: bool) -> None:
        self.cases.append({"case": case, "expected": expected, "observed": observed, "held": bool(held)})

    def finish(self) -> None:
        import os
        import re
        from pathlib import Path

        root = Path(os.environ.get("ENTRAFLOW_REPORT_DIR", Path(__file__).resolve().parents[2] / "target" / "reports"))
        out = root / self.doc
        out.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9]", "-", self.suite)
        (out / f"{name}.json").write_text(json.dumps({"suite": self.suite, "cases": self.cases}, indent=2))
        failed = [f"{c['case']}: expected {c['expected']}, got {c['observed']}" for c in self.cases if not c["held"]]
        assert not failed, f"{len(failed)} of {len(self.cases)} cases did not hold:\n" + "\n".join(failed)
