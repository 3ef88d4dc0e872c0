"""Credentials with azure-core's ``TokenCredential`` protocol, backed by Rust.

``get_token(*scopes, claims=None, tenant_id=None, enable_cae=False, **kwargs)``
returns an ``AccessToken``; ``get_token_info(*scopes, options=None)`` returns an
``AccessTokenInfo`` with ``token``, ``expires_on``, ``token_type`` and
``refresh_on``. With azure-core installed these are azure-core's own types; failures
are azure-identity's ``CredentialUnavailableError`` (the credential does not apply:
chains move on) and azure-core's ``ClientAuthenticationError`` (it failed: chains
stop), so entraflow's credentials sit inside azure-identity's
``ChainedTokenCredential`` and behind every Azure SDK client as azure-identity's own.

The async twins are in :mod:`entraflow.identity.aio`. Credentials pickle to their
configuration (never a token), so they cross into ``multiprocessing`` workers; one
with a secret does so only when created with ``allow_secret_in_pickle=True``.

    from entraflow.identity import DefaultCredential
    credential = DefaultCredential()
    token = credential.get_token("https://storage.azure.com/.default")
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

from entraflow.identity._credentials import (
    AZURE_CLI_CLIENT_ID,
    CertificateCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    DefaultCredential,
    DeviceCodeCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from entraflow.identity._errors import CredentialError, CredentialUnavailableError
from entraflow.identity._prompt import DeviceCodePrompt

__all__ = [
    "AZURE_CLI_CLIENT_ID",
    "CertificateCredential",
    "ClientSecretCredential",
    "CredentialError",
    "CredentialUnavailableError",
    "DefaultAzureCredential",
    "DefaultCredential",
    "DeviceCodeCredential",
    "DeviceCodePrompt",
    "ManagedIdentityCredential",
    "WorkloadIdentityCredential",
    "login",
]

_STORAGE_SCOPE = "https://storage.azure.com/.default"


def login(*, tenant_id: Optional[str] = None, client_id: Optional[str] = None, authority: Optional[str] = None,
          data_dir: Optional[str] = None, scopes: Sequence[str] = (_STORAGE_SCOPE,),
          prompt_callback: Optional[Callable] = None) -> DeviceCodeCredential:
    """Signs a person in with a device code, as ``entraflow login`` does, and keeps the
    sign-in in the data directory, where ``DefaultCredential``'s last link finds it.
    In Jupyter the prompt is rich output (a link and the code); elsewhere it is
    printed. Returns the signed-in credential.

    ::

        from entraflow.identity import login
        credential = login(tenant_id="contoso.onmicrosoft.com")
    """
    data_dir = data_dir or os.environ.get("ENTRAFLOW_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".entraflow")
    client_id = client_id or os.environ.get("AZURE_CLIENT_ID") or AZURE_CLI_CLIENT_ID
    credential = DeviceCodeCredential(client_id, tenant_id=tenant_id, authority=authority, cache_dir=data_dir,
                                      prompt_callback=prompt_callback)
    credential.get_token(*scopes)
    return credential
