//! HTTP clients that are rebuilt in a forked child.
//!
//! A `reqwest::Client` owns pooled sockets and tasks on the runtime that created
//! them; after `fork()` the child shares those sockets with its parent and the tasks
//! do not exist. So each credential keeps its client tagged with the process id and
//! builds a new one when the id changes.

use std::sync::Mutex;
use std::time::Duration;

use crate::error::{CredentialError, cause_chain};

/// Which kind of client to build.
#[derive(Debug, Clone)]
pub(crate) enum ClientKind {
    /// HTTPS to the authority: system roots + `SSL_CERT_FILE` (via `entraflow-tls`),
    /// plus an extra CA when one is configured.
    Authority { extra_ca_pem: Option<String> },
    /// Plain HTTP to a link-local or loopback identity endpoint, with this connect timeout.
    IdentityEndpoint { connect_timeout: Duration },
}

pub(crate) struct HttpClient {
    kind: ClientKind,
    current: Mutex<Option<(u32, reqwest::Client)>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("kind", &self.kind)
            .finish()
    }
}

impl HttpClient {
    pub(crate) fn new(kind: ClientKind) -> Self {
        Self {
            kind,
            current: Mutex::new(None),
        }
    }

    /// This process's client.
    pub(crate) fn get(&self) -> Result<reqwest::Client, CredentialError> {
        let pid = std::process::id();
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((owner, client)) = current.as_ref()
            && *owner == pid
        {
            return Ok(client.clone());
        }
        if let Some(inherited) = current.take() {
            // Dropping would close sockets the parent still uses.
            std::mem::forget(inherited);
        }
        let client = self.build()?;
        *current = Some((pid, client.clone()));
        Ok(client)
    }

    fn build(&self) -> Result<reqwest::Client, CredentialError> {
        match &self.kind {
            ClientKind::Authority { extra_ca_pem } => {
                entraflow_tls::https_client(extra_ca_pem.as_deref()).map_err(|e| {
                    CredentialError::Misconfigured {
                        variable: entraflow_core::env::SSL_CERT_FILE.into(),
                        hint: format!("the HTTPS client could not be built: {}", cause_chain(&e)),
                    }
                })
            }
            ClientKind::IdentityEndpoint { connect_timeout } => {
                entraflow_tls::install_crypto_provider();
                reqwest::Client::builder()
                    .user_agent(concat!("entraflow/", env!("CARGO_PKG_VERSION")))
                    .connect_timeout(*connect_timeout)
                    // IMDS must never be reached through a proxy.
                    .no_proxy()
                    .build()
                    .map_err(|e| CredentialError::Misconfigured {
                        variable: "HTTP client".into(),
                        hint: cause_chain(&e),
                    })
            }
        }
    }
}
