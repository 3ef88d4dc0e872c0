"""Credentials with azure-core's ``TokenCredential`` protocol, backed by Rust.

``get_token(*scopes, claims=None, tenant_id=None, enable_cae=False, **kwargs)``
returns an ``AccessToken``; ``get_token_info(*scopes, options=None)`` returns an
``AccessTokenInfo`` with ``token``, ``expires_on``, ``token_type`` and
``refresh_on``. With azure-core installed these are azure-core's own types and
failures are ``ClientAuthenticationError`` subclasses, exactly what Azure SDK
clients expect from azure-identity.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple, Optional

from entraflow import _native

try:  # azure-core is optional: the credentials work without it.
    from azure.core.credentials import AccessToken, AccessTokenInfo
    from azure.core.exceptions import ClientAuthenticationError as _AuthErrorBase
except ImportError:  # pragma: no cover - exercised only without azure-core

    class AccessToken(NamedTuple):  # type: ignore[no-redef]
        token: str
        expires_on: int

    class AccessTokenInfo:  # type: ignore[no-redef]
        def __init__(self, token: str, expires_on: int, *, token_type: str = "Bearer", refresh_on: Optional[int] = None):
            self.token, self.expires_on, self.token_type, self.refresh_on = token, expires_on, token_type, refresh_on

    class _AuthErrorBase(Exception):  # type: ignore[no-redef]
        def __init__(self, message: str = "", **_: Any):
            super().__init__(message)
            self.message = message


class CredentialError(_AuthErrorBase):
    """A credential produced no token. ``kind`` says which of entraflow's failure kinds
    it is (``authentication_rejected``, ``authority_unreachable``, ``identity_not_assigned``,
    ``throttled``, ``misconfigured``, ``chain_failed``); ``aadsts`` is Entra's error code
    when the authority refused."""

    def __init__(self, message: str, *, kind: str, aadsts: Optional[int] = None):
        super().__init__(message=message)
        self.kind = kind
        self.aadsts = aadsts


class CredentialUnavailableError(CredentialError):
    """The credential does not apply here (its environment is absent)."""


def _raise(err: _native.NativeCredentialError) -> None:
    kind, code, message = err.args
    cls = CredentialUnavailableError if kind == "unavailable" else CredentialError
    raise cls(message, kind=kind, aadsts=code) from None


class _Credential:
    """The azure-core protocol over a native credential."""

    _native: _native.Credential

    def get_token(self, *scopes: str, claims: Optional[str] = None, tenant_id: Optional[str] = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        info = self._get(scopes, claims, tenant_id)
        return AccessToken(info.token, info.expires_on)

    def get_token_info(self, *scopes: str, options: Optional[dict] = None) -> AccessTokenInfo:
        options = options or {}
        return self._get(scopes, options.get("claims"), options.get("tenant_id"))

    def _get(self, scopes, claims, tenant_id) -> AccessTokenInfo:
        if not scopes:
            raise ValueError("get_token needs at least one scope, e.g. 'https://storage.azure.com/.default'")
        try:
            token, expires_on, token_type, refresh_on = self._native.get_token(list(scopes), claims, tenant_id)
        except _native.NativeCredentialError as err:
            _raise(err)
        return AccessTokenInfo(token, expires_on, token_type=token_type, refresh_on=refresh_on)

    def close(self) -> None:
        """Nothing to release: connections are pooled per process."""

    def __enter__(self):
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _build(factory: Callable[..., _native.Credential], *args: Any, **kwargs: Any) -> _native.Credential:
    try:
        return factory(*args, **kwargs)
    except _native.NativeCredentialError as err:
        _raise(err)


class ClientSecretCredential(_Credential):
    """A service principal with a client secret. Prefer certificates or workload identity."""

    def __init__(self, tenant_id: str, client_id: str, client_secret: str, *, authority: Optional[str] = None, **_: Any):
        self._native = _build(_native.client_secret, tenant_id, client_id, client_secret, authority)


class CertificateCredential(_Credential):
    """A service principal with a certificate (PEM with the certificate and its key)."""

    def __init__(self, tenant_id: str, client_id: str, certificate_path: str, *, authority: Optional[str] = None,
                 send_certificate_chain: bool = False, **_: Any):
        self._native = _build(_native.client_certificate, tenant_id, client_id, certificate_path, authority,
                              send_certificate_chain)


class WorkloadIdentityCredential(_Credential):
    """Workload identity federation: the token file is re-read for every exchange,
    because the kubelet rotates it. Defaults come from AKS's injected variables."""

    def __init__(self, *, tenant_id: Optional[str] = None, client_id: Optional[str] = None,
                 token_file_path: Optional[str] = None, authority: Optional[str] = None, **_: Any):
        tenant_id = tenant_id or os.environ.get("AZURE_TENANT_ID")
        client_id = client_id or os.environ.get("AZURE_CLIENT_ID")
        token_file_path = token_file_path or os.environ.get("AZURE_FEDERATED_TOKEN_FILE")
        missing = [name for name, value in (("tenant_id/AZURE_TENANT_ID", tenant_id),
                                            ("client_id/AZURE_CLIENT_ID", client_id),
                                            ("token_file_path/AZURE_FEDERATED_TOKEN_FILE", token_file_path)) if not value]
        if missing:
            raise CredentialUnavailableError(f"WorkloadIdentityCredential needs {', '.join(missing)}",
                                             kind="unavailable")
        self._native = _build(_native.workload_identity, tenant_id, client_id, token_file_path, authority)


class ManagedIdentityCredential(_Credential):
    """The managed identity of this host (IMDS, or App Service's IDENTITY_ENDPOINT)."""

    def __init__(self, *, client_id: Optional[str] = None, object_id: Optional[str] = None,
                 resource_id: Optional[str] = None, **_: Any):
        self._native = _build(_native.managed_identity, client_id, object_id, resource_id)


class DeviceCodeCredential(_Credential):
    """A person signing in with a device code. ``prompt_callback(verification_uri,
    user_code, message)`` tells them what to do (default: print the message)."""

    def __init__(self, client_id: str, *, tenant_id: Optional[str] = None, authority: Optional[str] = None,
                 prompt_callback: Optional[Callable[[str, str, str], None]] = None,
                 cache_dir: Optional[str] = None, **_: Any):
        tenant_id = tenant_id or os.environ.get("AZURE_TENANT_ID") or "organizations"
        prompt = prompt_callback or (lambda uri, code, message: print(message or f"Open {uri} and enter {code}"))
        self._native = _build(_native.device_code, tenant_id, client_id, prompt, authority, cache_dir)


class DefaultCredential(_Credential):
    """The chain, in azure-identity's order: environment (secret, certificate), workload
    identity, managed identity, then an earlier ``entraflow login``. When every link
    fails, the error lists each one and why."""

    def __init__(self, *, data_dir: Optional[str] = None, **_: Any):
        self._native = _build(_native.default_credential, data_dir)


DefaultAzureCredential = DefaultCredential
