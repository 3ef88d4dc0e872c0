"""The async credentials: azure-core's ``AsyncTokenCredential`` (``get_token``,
``get_token_info``, ``close``, ``async with``) for ``azure.storage.blob.aio``, adlfs
and other async clients. Each wraps its synchronous twin in
:mod:`entraflow.identity`, so both share one Rust credential and cache; the native
call runs in a worker thread (``asyncio.to_thread``) and never blocks the event loop.

    from azure.storage.blob.aio import BlobServiceClient
    from entraflow.identity.aio import DefaultCredential

    async with DefaultCredential() as credential:
        async with BlobServiceClient(endpoint, credential=credential) as service:
            ...
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Mapping, Optional

from entraflow import identity as _sync
from entraflow.identity._credentials import AccessToken, AccessTokenInfo
from entraflow.identity._errors import CredentialError, CredentialUnavailableError

__all__ = [
    "CertificateCredential",
    "ClientSecretCredential",
    "CredentialError",
    "CredentialUnavailableError",
    "DefaultAzureCredential",
    "DefaultCredential",
    "DeviceCodeCredential",
    "ManagedIdentityCredential",
    "WorkloadIdentityCredential",
]


def _rebuild(cls: type, config: Dict[str, Any]) -> "_AsyncCredential":
    return cls(**config)


class _AsyncCredential:
    """azure-core's async protocol over a synchronous entraflow credential."""

    _sync_class: type

    def __init__(self, *args: Any, **kwargs: Any):
        self._sync = self._sync_class(*args, **kwargs)

    async def get_token(self, *scopes: str, claims: Optional[str] = None, tenant_id: Optional[str] = None,
                        enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        """An ``AccessToken`` for ``scopes``, from the shared Rust cache while fresh."""
        return await asyncio.to_thread(self._sync.get_token, *scopes, claims=claims, tenant_id=tenant_id,
                                       enable_cae=enable_cae)

    async def get_token_info(self, *scopes: str, options: Optional[Mapping[str, Any]] = None) -> AccessTokenInfo:
        """An ``AccessTokenInfo`` for ``scopes``; ``options``: ``claims``, ``tenant_id``, ``enable_cae``."""
        return await asyncio.to_thread(self._sync.get_token_info, *scopes, options=options)

    async def close(self) -> None:
        """Nothing to release: connections are pooled per process."""
        self._sync.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.close()

    def __reduce__(self):
        _, (_, config) = self._sync.__reduce__()  # refuses a secret the caller did not release
        return _rebuild, (type(self), config)

    def __repr__(self) -> str:
        return f"aio.{self._sync!r}"


class ClientSecretCredential(_AsyncCredential):
    """Async :class:`entraflow.identity.ClientSecretCredential` (same arguments)."""

    _sync_class = _sync.ClientSecretCredential


class CertificateCredential(_AsyncCredential):
    """Async :class:`entraflow.identity.CertificateCredential` (same arguments)."""

    _sync_class = _sync.CertificateCredential


class WorkloadIdentityCredential(_AsyncCredential):
    """Async :class:`entraflow.identity.WorkloadIdentityCredential` (same arguments)."""

    _sync_class = _sync.WorkloadIdentityCredential


class ManagedIdentityCredential(_AsyncCredential):
    """Async :class:`entraflow.identity.ManagedIdentityCredential` (same arguments)."""

    _sync_class = _sync.ManagedIdentityCredential


class DeviceCodeCredential(_AsyncCredential):
    """Async :class:`entraflow.identity.DeviceCodeCredential` (same arguments)."""

    _sync_class = _sync.DeviceCodeCredential


class DefaultCredential(_AsyncCredential):
    """Async :class:`entraflow.identity.DefaultCredential` (same arguments)."""

    _sync_class = _sync.DefaultCredential


DefaultAzureCredential = DefaultCredential
"""azure-identity's name for :class:`DefaultCredential`."""
