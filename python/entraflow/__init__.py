"""entraflow: Microsoft Entra ID identity for TensorFlow data pipelines.

Credentials here implement azure-core's ``TokenCredential`` protocol, so they plug
into any Azure SDK client as they are, and keep tokens fresh through long runs
without ever handing out a stale one. The Rust core does the work; calls release the
GIL and are safe in forked workers.

    from entraflow.identity import DefaultCredential
    credential = DefaultCredential()
    token = credential.get_token("https://storage.azure.com/.default")
"""

from entraflow._native import __version__
from entraflow.identity import (
    CertificateCredential,
    ClientSecretCredential,
    CredentialError,
    CredentialUnavailableError,
    DefaultAzureCredential,
    DefaultCredential,
    DeviceCodeCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
    login,
)

__all__ = [
    "__version__",
    "CertificateCredential",
    "ClientSecretCredential",
    "CredentialError",
    "CredentialUnavailableError",
    "DefaultAzureCredential",
    "DefaultCredential",
    "DeviceCodeCredential",
    "ManagedIdentityCredential",
    "WorkloadIdentityCredential",
    "login",
]
