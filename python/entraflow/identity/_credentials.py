"""The synchronous credentials: azure-core's ``TokenCredential`` and
``SupportsTokenInfo`` protocols over the Rust credentials in ``entraflow._native``.

Each credential keeps the keywords it was built with (``_config``) and pickles to
them, never to a token: the process that unpickles it builds its own Rust
credential, with its own runtime and cache (or the node's shared cache).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from entraflow import _native
from entraflow.identity import _keywords
from entraflow.identity._errors import CredentialError, CredentialUnavailableError, raise_native
from entraflow.identity._prompt import show_prompt

try:  # azure-core is optional: the credentials work without it.
    from azure.core.credentials import AccessToken, AccessTokenInfo
except ImportError:  # pragma: no cover - exercised only without azure-core
    from typing import NamedTuple

    class AccessToken(NamedTuple):  # type: ignore[no-redef]
        token: str
        expires_on: int

    class AccessTokenInfo:  # type: ignore[no-redef]
        def __init__(self, token: str, expires_on: int, *, token_type: str = "Bearer",
                     refresh_on: Optional[int] = None):
            self.token, self.expires_on, self.token_type, self.refresh_on = token, expires_on, token_type, refresh_on

__all__ = [
    "AZURE_CLI_CLIENT_ID",
    "CertificateCredential",
    "ClientSecretCredential",
    "DefaultAzureCredential",
    "DefaultCredential",
    "DeviceCodeCredential",
    "ManagedIdentityCredential",
    "WorkloadIdentityCredential",
]

AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
"""The Azure CLI's public client id: azure-identity's default for ``DeviceCodeCredential``."""

# MSAL's client capability for Continuous Access Evaluation, sent as a claims request.
_CAE_CAPABILITY = {"xms_cc": {"values": ["CP1"]}}


def _claims_with_cae(claims: Optional[str], enable_cae: bool) -> Optional[str]:
    """The ``claims`` form value: the challenge's claims, plus the CP1 capability when
    CAE is enabled (as MSAL merges them). Distinct claims are distinct cache keys, so
    CAE and non-CAE tokens never mix, as in azure-identity's two caches."""
    if not enable_cae:
        return claims or None
    merged = json.loads(claims) if claims else {}
    merged.setdefault("access_token", {}).update(_CAE_CAPABILITY)
    return json.dumps(merged, separators=(",", ":"), sort_keys=True)


def resolve_tenant(default_tenant: Optional[str], tenant_id: Optional[str],
                   additionally_allowed_tenants: Iterable[str]) -> Optional[str]:
    """azure-identity's rule for a ``tenant_id`` other than the credential's: allowed
    when listed in ``additionally_allowed_tenants`` (``"*"`` for any), when the
    credential's tenant is ``organizations`` with no list, or ignored when
    ``AZURE_IDENTITY_DISABLE_MULTITENANTAUTH`` is set; refused otherwise."""
    if tenant_id is None or tenant_id == default_tenant:
        return default_tenant
    if default_tenant == "adfs" or os.environ.get("AZURE_IDENTITY_DISABLE_MULTITENANTAUTH"):
        return default_tenant
    if not default_tenant:
        return tenant_id
    allowed = list(additionally_allowed_tenants)
    if "*" in allowed or tenant_id in allowed:
        return tenant_id
    if not allowed and default_tenant == "organizations":
        return tenant_id
    raise CredentialError(
        f"The current credential is not configured to acquire tokens for tenant {tenant_id}. To enable acquiring "
        "tokens for this tenant add it to the additionally_allowed_tenants when creating the credential, or add "
        '"*" to additionally_allowed_tenants to allow acquiring tokens for any tenant.',
        kind="misconfigured",
    )


def _allowed_tenants_from_env() -> List[str]:
    value = os.environ.get("AZURE_ADDITIONALLY_ALLOWED_TENANTS", "")
    return [t.strip() for t in value.split(";") if t.strip()]


def _build(factory: Callable[..., "_native.Credential"], *args: Any) -> "_native.Credential":
    try:
        return factory(*args)
    except _native.NativeCredentialError as err:
        raise_native(err)


def _rebuild(cls: type, config: Dict[str, Any]) -> "_Credential":
    """Unpickling: the credential rebuilt from its configuration in this process."""
    return cls(**config)


class _Credential:
    """The azure-core protocol over a native credential."""

    _native: "_native.Credential"
    _config: Dict[str, Any]
    # Configuration that must not leave the process unless the caller opts in.
    _secret_keywords: Tuple[str, ...] = ()
    _tenant: Optional[str] = None
    _allowed_tenants: Tuple[str, ...] = ()
    # Failure kinds azure-identity reports as CredentialUnavailableError for this credential.
    _unavailable_kinds: Tuple[str, ...] = ("unavailable",)

    def get_token(self, *scopes: str, claims: Optional[str] = None, tenant_id: Optional[str] = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        """An ``AccessToken`` for ``scopes``, from the cache while it is fresh."""
        info = self._get(scopes, claims, tenant_id, enable_cae)
        return AccessToken(info.token, info.expires_on)

    def get_token_info(self, *scopes: str, options: Optional[Mapping[str, Any]] = None) -> AccessTokenInfo:
        """An ``AccessTokenInfo`` (with ``refresh_on``) for ``scopes``; ``options`` is
        azure-core's ``TokenRequestOptions`` (``claims``, ``tenant_id``, ``enable_cae``)."""
        options = options or {}
        return self._get(scopes, options.get("claims"), options.get("tenant_id"), bool(options.get("enable_cae")))

    def _get(self, scopes: Tuple[str, ...], claims: Optional[str], tenant_id: Optional[str],
             enable_cae: bool) -> AccessTokenInfo:
        if not scopes:
            raise ValueError("get_token needs at least one scope, e.g. 'https://storage.azure.com/.default'")
        tenant = self._tenant_for(tenant_id)
        try:
            token, expires_on, token_type, refresh_on = self._native.get_token(
                list(scopes), _claims_with_cae(claims, enable_cae), tenant)
        except _native.NativeCredentialError as err:
            raise_native(err, self._unavailable_kinds)
        return AccessTokenInfo(token, expires_on, token_type=token_type, refresh_on=refresh_on)

    def _tenant_for(self, tenant_id: Optional[str]) -> Optional[str]:
        """The tenant to ask for: None means the credential's own."""
        resolved = resolve_tenant(self._tenant, tenant_id, self._allowed_tenants)
        return None if resolved == self._tenant else resolved

    def close(self) -> None:
        """Nothing to release: connections are pooled per process."""

    def __enter__(self):
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def __reduce__(self):
        secrets = [k for k in self._secret_keywords if self._config.get(k) is not None]
        if secrets and not self._config.get("allow_secret_in_pickle"):
            raise TypeError(
                f"{type(self).__name__} holds a {secrets[0].replace('_', ' ')} and does not pickle it: a pickle "
                "is written to disk and sent to other processes. To pickle it anyway, create the credential with "
                "allow_secret_in_pickle=True; or give workers a credential without a secret "
                "(WorkloadIdentityCredential, ManagedIdentityCredential, CertificateCredential with a file path)."
            )
        return _rebuild, (type(self), dict(self._config))

    def __repr__(self) -> str:
        # Distinct configurations must repr differently: fsspec caches filesystem
        # instances by the repr of their arguments.
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(self._config.items())
                          if k not in self._secret_keywords and v not in (None, False) and not callable(v))
        return f"{type(self).__name__}({shown})"


class ClientSecretCredential(_Credential):
    """A service principal with a client secret. Prefer certificates or workload identity.

    ::

        credential = ClientSecretCredential(tenant_id, client_id, secret)
        credential.get_token("https://storage.azure.com/.default")

    It does not pickle unless created with ``allow_secret_in_pickle=True``.
    """

    _secret_keywords = ("client_secret",)

    def __init__(self, tenant_id: str, client_id: str, client_secret: str, *, authority: Optional[str] = None,
                 additionally_allowed_tenants: Optional[List[str]] = None, allow_secret_in_pickle: bool = False,
                 **kwargs: Any):
        _keywords.check("ClientSecretCredential", kwargs,
                        ["authority", "additionally_allowed_tenants", "allow_secret_in_pickle"])
        self._config = dict(tenant_id=tenant_id, client_id=client_id, client_secret=client_secret,
                            authority=authority, additionally_allowed_tenants=additionally_allowed_tenants,
                            allow_secret_in_pickle=allow_secret_in_pickle)
        self._tenant, self._allowed_tenants = tenant_id, tuple(additionally_allowed_tenants or ())
        self._native = _build(_native.client_secret, tenant_id, client_id, client_secret, authority)


class CertificateCredential(_Credential):
    """A service principal with a certificate: a PEM file with the certificate and its
    unencrypted key. Pickles to the path; each process reads the file itself.

    ::

        credential = CertificateCredential(tenant_id, client_id, "/secrets/sp.pem")
    """

    def __init__(self, tenant_id: str, client_id: str, certificate_path: str, *, authority: Optional[str] = None,
                 send_certificate_chain: bool = False, additionally_allowed_tenants: Optional[List[str]] = None,
                 **kwargs: Any):
        _keywords.check("CertificateCredential", kwargs,
                        ["authority", "send_certificate_chain", "additionally_allowed_tenants"])
        self._config = dict(tenant_id=tenant_id, client_id=client_id, certificate_path=certificate_path,
                            authority=authority, send_certificate_chain=send_certificate_chain,
                            additionally_allowed_tenants=additionally_allowed_tenants)
        self._tenant, self._allowed_tenants = tenant_id, tuple(additionally_allowed_tenants or ())
        self._native = _build(_native.client_certificate, tenant_id, client_id, certificate_path, authority,
                              send_certificate_chain)


class WorkloadIdentityCredential(_Credential):
    """Workload identity federation: the token file is re-read for every exchange,
    because the kubelet rotates it. Defaults come from AKS's injected variables.

    ::

        credential = WorkloadIdentityCredential()  # AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE
    """

    def __init__(self, *, tenant_id: Optional[str] = None, client_id: Optional[str] = None,
                 token_file_path: Optional[str] = None, authority: Optional[str] = None,
                 additionally_allowed_tenants: Optional[List[str]] = None, **kwargs: Any):
        _keywords.check("WorkloadIdentityCredential", kwargs,
                        ["tenant_id", "client_id", "token_file_path", "authority", "additionally_allowed_tenants"])
        tenant_id = tenant_id or os.environ.get("AZURE_TENANT_ID")
        client_id = client_id or os.environ.get("AZURE_CLIENT_ID")
        token_file_path = token_file_path or os.environ.get("AZURE_FEDERATED_TOKEN_FILE")
        self._config = dict(tenant_id=tenant_id, client_id=client_id, token_file_path=token_file_path,
                            authority=authority, additionally_allowed_tenants=additionally_allowed_tenants)
        missing = [name for name, value in (("tenant_id/AZURE_TENANT_ID", tenant_id),
                                            ("client_id/AZURE_CLIENT_ID", client_id),
                                            ("token_file_path/AZURE_FEDERATED_TOKEN_FILE", token_file_path)) if not value]
        if missing:
            raise CredentialUnavailableError(f"WorkloadIdentityCredential needs {', '.join(missing)}")
        allowed = additionally_allowed_tenants if additionally_allowed_tenants is not None else _allowed_tenants_from_env()
        self._tenant, self._allowed_tenants = tenant_id, tuple(allowed)
        self._native = _build(_native.workload_identity, tenant_id, client_id, token_file_path, authority)


class ManagedIdentityCredential(_Credential):
    """The managed identity of this host (IMDS, or App Service's ``IDENTITY_ENDPOINT``).
    A user-assigned identity is named by ``client_id`` or by ``identity_config``
    (``{"object_id": ...}`` or ``{"resource_id": ...}``), as in azure-identity.

    As in azure-identity, no answer from the endpoint, or no identity assigned to this
    host, is ``CredentialUnavailableError``: a chain moves on.

    ::

        credential = ManagedIdentityCredential(client_id="<user-assigned identity's client id>")
    """

    _unavailable_kinds = ("unavailable", "authority_unreachable", "identity_not_assigned")

    def __init__(self, *, client_id: Optional[str] = None, identity_config: Optional[Mapping[str, str]] = None,
                 **kwargs: Any):
        _keywords.check("ManagedIdentityCredential", kwargs, ["client_id", "identity_config"])
        config = dict(identity_config or {})
        object_id = config.pop("object_id", None)
        resource_id = config.pop("resource_id", None) or config.pop("mi_res_id", None) or config.pop("msi_res_id", None)
        if config:
            raise TypeError(f"identity_config takes object_id or resource_id, not {', '.join(sorted(config))}")
        self._config = dict(client_id=client_id, identity_config=dict(identity_config) if identity_config else None)
        self._native = _build(_native.managed_identity, client_id, object_id, resource_id)

    def _tenant_for(self, tenant_id: Optional[str]) -> Optional[str]:
        return None  # a managed identity has one tenant; azure-identity ignores tenant_id too


class DeviceCodeCredential(_Credential):
    """A person signing in with a device code. ``client_id`` defaults to the Azure
    CLI's public client, as in azure-identity. ``prompt_callback(verification_uri,
    user_code, expires_on)`` tells them what to do (``expires_on`` a UTC
    ``datetime``, azure-identity's signature); by default the prompt is shown as rich
    output in Jupyter and printed elsewhere. ``cache_dir`` keeps the sign-in (as
    ``entraflow login`` does) so it is asked for once.

    ::

        credential = DeviceCodeCredential(tenant_id=tenant)
        credential.get_token("https://storage.azure.com/.default")  # shows the code, waits for sign-in
    """

    def __init__(self, client_id: str = AZURE_CLI_CLIENT_ID, *, tenant_id: Optional[str] = None,
                 authority: Optional[str] = None,
                 prompt_callback: Optional[Callable[[str, str, _dt.datetime], None]] = None,
                 cache_dir: Optional[str] = None, additionally_allowed_tenants: Optional[List[str]] = None,
                 **kwargs: Any):
        _keywords.check("DeviceCodeCredential", kwargs,
                        ["client_id", "tenant_id", "authority", "prompt_callback", "cache_dir",
                         "additionally_allowed_tenants"])
        self._config = dict(client_id=client_id, tenant_id=tenant_id, authority=authority,
                            prompt_callback=prompt_callback, cache_dir=cache_dir,
                            additionally_allowed_tenants=additionally_allowed_tenants)
        tenant = tenant_id or os.environ.get("AZURE_TENANT_ID") or "organizations"
        self._tenant, self._allowed_tenants = tenant, tuple(additionally_allowed_tenants or ())
        self._native = _build(_native.device_code, tenant, client_id, _prompt_adapter(prompt_callback), authority,
                              cache_dir)


def _prompt_adapter(callback: Optional[Callable[[str, str, _dt.datetime], None]]):
    """The native prompt's ``(uri, code, message, expires_in)`` as azure-identity's callback."""
    if callback is None:
        return lambda uri, code, message, expires_in: show_prompt(uri, code, message)

    def prompt(uri: str, code: str, message: str, expires_in: int) -> None:
        callback(uri, code, _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=expires_in))

    return prompt


# azure-identity's DefaultAzureCredential links → the link entraflow's chain has for it.
# Links entraflow does not have (Azure CLI, PowerShell, VS Code, broker, ...) exclude nothing.
_CHAIN_LINKS = {
    "exclude_environment_credential": ("EnvironmentCredential", "environmentcredential"),
    "exclude_workload_identity_credential": ("WorkloadIdentityCredential", "workloadidentitycredential"),
    "exclude_managed_identity_credential": ("ManagedIdentityCredential", "managedidentitycredential"),
    "exclude_developer_login_credential": ("DeveloperLoginCredential", "developerlogincredential"),
}
_ABSENT_LINKS = {
    "exclude_shared_token_cache_credential": "sharedtokencachecredential",
    "exclude_visual_studio_code_credential": "visualstudiocodecredential",
    "exclude_cli_credential": "azureclicredential",
    "exclude_developer_cli_credential": "azuredeveloperclicredential",
    "exclude_powershell_credential": "azurepowershellcredential",
    "exclude_interactive_browser_credential": "interactivebrowsercredential",
    "exclude_broker_credential": "brokercredential",
}
_PRODUCTION_LINKS = {"EnvironmentCredential", "WorkloadIdentityCredential", "ManagedIdentityCredential"}


def _excluded_links(flags: Mapping[str, Optional[bool]]) -> List[str]:
    """The chain links to drop: ``AZURE_TOKEN_CREDENTIALS`` first (``prod``, ``dev``
    or one credential's name), then the keywords, which win, as in azure-identity."""
    selected = os.environ.get("AZURE_TOKEN_CREDENTIALS", "").strip().lower()
    links = [link for link, _ in _CHAIN_LINKS.values()]
    excluded = {link: False for link in links}
    if selected == "prod":
        excluded = {link: link not in _PRODUCTION_LINKS for link in links}
    elif selected == "dev":
        excluded = {link: link in _PRODUCTION_LINKS for link in links}
    elif selected:
        names = {env_name: link for link, env_name in _CHAIN_LINKS.values()}
        valid = sorted({*names, *_ABSENT_LINKS.values(), "dev", "prod"})
        if selected not in valid:
            raise ValueError(f"Invalid value for AZURE_TOKEN_CREDENTIALS: {selected}. "
                             f"Valid values are: {', '.join(valid)}.")
        excluded = {link: link != names.get(selected) for link in links}
    for keyword, (link, _) in _CHAIN_LINKS.items():
        if flags.get(keyword) is not None:
            excluded[link] = bool(flags[keyword])
    return [link for link, out in excluded.items() if out]


class DefaultCredential(_Credential):
    """The chain, in azure-identity's order: environment (secret, certificate),
    workload identity, managed identity, then an earlier ``entraflow login``
    (``DeveloperLoginCredential``). When every link fails, the error lists each one
    and why. Takes azure-identity's ``exclude_*_credential`` keywords and
    ``AZURE_TOKEN_CREDENTIALS``; excluding a credential entraflow's chain does not
    have (Azure CLI, PowerShell, ...) changes nothing. As azure-identity's, its failure
    is a ``ClientAuthenticationError`` even when no link applied, so it ends an outer
    chain.

    ::

        credential = DefaultCredential(exclude_managed_identity_credential=True)
    """

    _unavailable_kinds = ()

    def __init__(self, *, data_dir: Optional[str] = None, additionally_allowed_tenants: Optional[List[str]] = None,
                 **kwargs: Any):
        flags = {k: kwargs.pop(k) for k in [*_CHAIN_LINKS, *_ABSENT_LINKS] if k in kwargs}
        _keywords.check("DefaultCredential", kwargs,
                        ["data_dir", "additionally_allowed_tenants", *_CHAIN_LINKS, *_ABSENT_LINKS])
        self._config = dict(data_dir=data_dir, additionally_allowed_tenants=additionally_allowed_tenants, **flags)
        excluded = _excluded_links(flags)
        if len(excluded) == len(_CHAIN_LINKS):
            raise ValueError("at least one credential is required: every link of DefaultCredential is excluded")
        allowed = additionally_allowed_tenants if additionally_allowed_tenants is not None else _allowed_tenants_from_env()
        self._tenant, self._allowed_tenants = os.environ.get("AZURE_TENANT_ID"), tuple(allowed)
        self._native = _build(_native.default_credential, data_dir, excluded)


DefaultAzureCredential = DefaultCredential
"""azure-identity's name for :class:`DefaultCredential`."""
