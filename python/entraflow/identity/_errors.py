"""The exceptions entraflow's credentials raise: azure-identity's and azure-core's own
classes underneath, so azure-identity's chains, ``DefaultAzureCredential`` and every
Azure SDK client treat them as their own.

- ``CredentialUnavailableError`` subclasses ``azure.identity.CredentialUnavailableError``:
  the credential does not apply here, and a chain moves on to the next one.
- ``CredentialError`` subclasses ``azure.core.exceptions.ClientAuthenticationError``:
  authentication was attempted and failed, and a chain stops.

Without azure-identity (or azure-core) installed, the nearest installed base is used;
the classes keep the same names and attributes.
"""

from __future__ import annotations

from typing import Any, NoReturn, Optional, Tuple

from entraflow import _native

try:
    from azure.core.exceptions import ClientAuthenticationError as _AuthErrorBase
except ImportError:  # pragma: no cover - exercised only without azure-core

    class _AuthErrorBase(Exception):  # type: ignore[no-redef]
        def __init__(self, message: Optional[str] = None, **_: Any):
            super().__init__(message)
            self.message = message

try:
    from azure.identity import CredentialUnavailableError as _AzureUnavailable

    _UNAVAILABLE_BASES: tuple = (_AzureUnavailable,)
except ImportError:  # pragma: no cover - exercised only without azure-identity
    _UNAVAILABLE_BASES = ()

__all__ = ["CredentialError", "CredentialUnavailableError"]


class CredentialError(_AuthErrorBase):
    """A credential produced no token (an ``azure.core.exceptions.ClientAuthenticationError``).

    ``kind`` says which of entraflow's failure kinds it is (``authentication_rejected``,
    ``authority_unreachable``, ``identity_not_assigned``, ``throttled``,
    ``misconfigured``, ``chain_failed``, ``unavailable``); ``aadsts`` is Entra's error
    code when the authority refused::

        try:
            credential.get_token("https://storage.azure.com/.default")
        except CredentialError as err:
            print(err.kind, err.aadsts)
    """

    def __init__(self, message: str, *, kind: str, aadsts: Optional[int] = None):
        super().__init__(message=message)
        self.kind = kind
        self.aadsts = aadsts


class CredentialUnavailableError(*_UNAVAILABLE_BASES, CredentialError):  # type: ignore[misc]
    """The credential does not apply here (its environment is absent); an
    ``azure.identity.CredentialUnavailableError``, so chains fall through to the next
    credential."""

    def __init__(self, message: str, *, kind: str = "unavailable", aadsts: Optional[int] = None):
        super().__init__(message, kind=kind, aadsts=aadsts)


def raise_native(err: "_native.NativeCredentialError", unavailable_kinds: Tuple[str, ...] = ("unavailable",)) -> NoReturn:
    """Re-raises a native failure as the matching Python class, without the Rust frame:
    ``CredentialUnavailableError`` for the kinds that mean "does not apply here" for
    this credential (azure-identity's rules differ per credential), else ``CredentialError``."""
    kind, code, message = err.args
    cls = CredentialUnavailableError if kind in unavailable_kinds else CredentialError
    raise cls(message, kind=kind, aadsts=code) from None
