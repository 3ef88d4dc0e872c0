//! `entraflow._native`: the Rust credentials behind the Python package.
//!
//! Not for: the azure-core protocol itself. The Python layer (`python/entraflow`)
//! builds `AccessToken`/`AccessTokenInfo` and maps errors to azure-core's exception
//! types, so this module stays a thin, typed bridge: construct a credential, get a
//! token with the GIL released, raise `NativeCredentialError(kind, code, message)`.
//!
//! Fork safety comes from `entraflow_credential::BlockingCredential`: one runtime per
//! process id, nothing shared across `fork()`.
//!
//! It also carries the `az://` filesystem for fsspec (`fs`: `BlobFileSystem`,
//! `BlobReader`, `BlobWriter`, used by `entraflow.fsspec`), the TensorFlow plugin's
//! own client, so every framework reads through the same code and identity.
#![forbid(unsafe_code)]

// Keeps the plugin linked (its TF_InitPlugin is exported from this library).
use entraflow_tfplugin as _;

mod fs;

use std::path::PathBuf;
use std::sync::Arc;

use entraflow_core::Secret;
use entraflow_credential::{
    AuthorityHost, BlockingCredential, CertificateOptions, ClientCertificateCredential,
    ClientSecretCredential, CredentialError, CredentialOptions, DefaultCredential,
    DeviceCodeCredential, Environment, LoginCache, ManagedIdentityCredential, ManagedIdentityId,
    ManagedIdentityOptions, SharedTokenStore, TokenRequest, WorkloadIdentityCredential,
};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

pyo3::create_exception!(
    _native,
    NativeCredentialError,
    PyException,
    "A credential produced no token; args are (kind, aadsts_code or None, message)."
);

/// Stable names for the error kinds, for the Python layer's mapping.
fn kind(err: &CredentialError) -> &'static str {
    match err {
        CredentialError::AuthenticationRejected { .. } => "authentication_rejected",
        CredentialError::IdentityNotAssigned { .. } => "identity_not_assigned",
        CredentialError::AuthorityUnreachable { .. } => "authority_unreachable",
        CredentialError::Throttled { .. } => "throttled",
        CredentialError::Misconfigured { .. } => "misconfigured",
        CredentialError::CredentialUnavailable { .. } => "unavailable",
        CredentialError::ChainFailed(links) if links.iter().all(|(_, e)| e.is_unavailable()) => {
            "unavailable"
        }
        CredentialError::ChainFailed(_) => "chain_failed",
        _ => "unexpected_response",
    }
}

fn to_py(err: CredentialError) -> PyErr {
    let code = match &err {
        CredentialError::AuthenticationRejected { codes, .. } => codes.first().copied(),
        _ => None,
    };
    NativeCredentialError::new_err((kind(&err), code, err.to_string()))
}

/// Options every authority-backed credential takes from Python keywords and the environment.
fn options(authority: Option<String>) -> PyResult<CredentialOptions> {
    let mut options =
        CredentialOptions::from_environment(&Environment::process()).map_err(to_py)?;
    if let Some(host) = authority {
        // An explicit keyword wins over AZURE_AUTHORITY_HOST, as in azure-identity.
        options.authority = AuthorityHost::parse(&host, false).map_err(to_py)?;
    }
    Ok(options)
}

/// A credential usable from any Python thread; `get_token` releases the GIL.
#[pyclass(module = "entraflow._native", frozen)]
struct Credential {
    inner: BlockingCredential,
    /// The same credential for async callers (`entraflow.fsspec` hands it to the
    /// filesystem).
    shared: Arc<dyn entraflow_credential::TokenCredential>,
}

#[pymethods]
impl Credential {
    /// `(token, expires_on, token_type, refresh_on)` for `scopes`.
    #[pyo3(signature = (scopes, claims=None, tenant_id=None))]
    fn get_token(
        &self,
        py: Python<'_>,
        scopes: Vec<String>,
        claims: Option<String>,
        tenant_id: Option<String>,
    ) -> PyResult<(String, i64, String, i64)> {
        let request = TokenRequest {
            scopes,
            claims,
            tenant_id,
        };
        let token = py
            .detach(|| self.inner.get_token(&request).map_err(Box::new))
            .map_err(|e| to_py(*e))?;
        Ok((
            token.token.expose().to_owned(),
            token.expires_on,
            token.token_type,
            token.refresh_on,
        ))
    }

    /// The Rust credential's name, e.g. `WorkloadIdentityCredential`.
    #[getter]
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn __repr__(&self) -> String {
        format!("<entraflow {}>", self.inner.name())
    }
}

fn wrap(
    credential: Result<impl entraflow_credential::TokenCredential + 'static, CredentialError>,
) -> PyResult<Credential> {
    let shared: Arc<dyn entraflow_credential::TokenCredential> =
        Arc::new(credential.map_err(to_py)?);
    Ok(Credential {
        inner: BlockingCredential::from_arc(shared.clone()),
        shared,
    })
}

#[pyfunction]
#[pyo3(signature = (tenant_id, client_id, client_secret, authority=None))]
fn client_secret(
    tenant_id: &str,
    client_id: &str,
    client_secret: String,
    authority: Option<String>,
) -> PyResult<Credential> {
    wrap(ClientSecretCredential::new(
        tenant_id,
        client_id,
        Secret::new(client_secret),
        options(authority)?,
    ))
}

#[pyfunction]
#[pyo3(signature = (tenant_id, client_id, certificate_path, authority=None, send_certificate_chain=false))]
fn client_certificate(
    tenant_id: &str,
    client_id: &str,
    certificate_path: PathBuf,
    authority: Option<String>,
    send_certificate_chain: bool,
) -> PyResult<Credential> {
    let certificate = CertificateOptions {
        send_certificate_chain,
        ..CertificateOptions::default()
    };
    wrap(ClientCertificateCredential::from_file(
        tenant_id,
        client_id,
        &certificate_path,
        certificate,
        options(authority)?,
    ))
}

#[pyfunction]
#[pyo3(signature = (tenant_id, client_id, token_file_path, authority=None))]
fn workload_identity(
    tenant_id: &str,
    client_id: &str,
    token_file_path: PathBuf,
    authority: Option<String>,
) -> PyResult<Credential> {
    wrap(WorkloadIdentityCredential::new(
        tenant_id,
        client_id,
        &token_file_path,
        options(authority)?,
    ))
}

#[pyfunction]
#[pyo3(signature = (client_id=None, object_id=None, resource_id=None))]
fn managed_identity(
    client_id: Option<String>,
    object_id: Option<String>,
    resource_id: Option<String>,
) -> PyResult<Credential> {
    let id = match (client_id, object_id, resource_id) {
        (Some(id), None, None) => ManagedIdentityId::ClientId(id),
        (None, Some(id), None) => ManagedIdentityId::ObjectId(id),
        (None, None, Some(id)) => ManagedIdentityId::ResourceId(id),
        (None, None, None) => ManagedIdentityId::SystemAssigned,
        _ => {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "pass at most one of client_id, object_id and resource_id",
            ));
        }
    };
    wrap(ManagedIdentityCredential::new(ManagedIdentityOptions {
        id,
        ..ManagedIdentityOptions::default()
    }))
}

/// A person's device-code sign-in; `prompt(verification_uri, user_code, message, expires_in)` tells them what to do.
#[pyfunction]
#[pyo3(signature = (tenant_id, client_id, prompt, authority=None, cache_dir=None))]
fn device_code(
    tenant_id: &str,
    client_id: &str,
    prompt: Py<PyAny>,
    authority: Option<String>,
    cache_dir: Option<PathBuf>,
) -> PyResult<Credential> {
    let store = cache_dir.map(|dir| LoginCache::in_dir(&dir));
    let credential = DeviceCodeCredential::new(
        tenant_id,
        client_id,
        options(authority)?,
        store,
        move |info| {
            Python::attach(|py| {
                if let Err(err) = prompt.call1(
                    py,
                    (
                        info.verification_uri.clone(),
                        info.user_code.clone(),
                        info.message.clone(),
                        info.expires_in,
                    ),
                ) {
                    err.print(py);
                }
            })
        },
    );
    wrap(Ok(credential))
}

/// The chain, in azure-identity's order, reading the environment now, without the
/// links named in `exclude` (e.g. `ManagedIdentityCredential`).
#[pyfunction]
#[pyo3(signature = (data_dir=None, exclude=Vec::new()))]
fn default_credential(data_dir: Option<PathBuf>, exclude: Vec<String>) -> PyResult<Credential> {
    let dir = data_dir.unwrap_or_else(entraflow_core::fsutil::default_data_dir);
    wrap(Ok(DefaultCredential::from_env(&dir).without(&exclude)))
}

/// The directory of the node's shared token cache this process uses, or None
/// (`ENTRAFLOW_SHARED_TOKEN_CACHE` unset or the directory unusable).
#[pyfunction]
fn shared_token_cache_dir() -> Option<String> {
    SharedTokenStore::from_process_env().map(|store| store.dir().to_string_lossy().into_owned())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "NativeCredentialError",
        m.py().get_type::<NativeCredentialError>(),
    )?;
    m.add_class::<Credential>()?;
    fs::register(m)?;
    m.add_function(wrap_pyfunction!(client_secret, m)?)?;
    m.add_function(wrap_pyfunction!(client_certificate, m)?)?;
    m.add_function(wrap_pyfunction!(workload_identity, m)?)?;
    m.add_function(wrap_pyfunction!(managed_identity, m)?)?;
    m.add_function(wrap_pyfunction!(device_code, m)?)?;
    m.add_function(wrap_pyfunction!(default_credential, m)?)?;
    m.add_function(wrap_pyfunction!(shared_token_cache_dir, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
