//! Why the console could not start, or could not answer a page.

use std::path::PathBuf;

/// A failure to start (or to provision) the console.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// The configuration cannot work; the text says what to change.
    #[error("{0}")]
    Config(String),
    /// A file in the data directory could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The port could not be bound.
    #[error(transparent)]
    Bind(#[from] entraflow_tls::BindError),
    /// The local CA or the HTTPS client failed.
    #[error(transparent)]
    Tls(#[from] entraflow_tls::TlsError),
    /// Registering the console in the local tenant failed.
    #[error("registering the console in the local tenant: {0}")]
    Provision(String),
    /// The role store failed.
    #[error("the role store: {0}")]
    Rbac(#[from] entraflow_rbac::Error),
    /// The audit log could not be opened.
    #[error("the audit log: {0}")]
    Audit(#[from] entraflow_audit::AuditError),
}

/// Why a page could not be made; shown as a 500/503 page that says so.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    /// Reading the audit store failed.
    #[error("the audit store could not be read: {0}")]
    Store(#[from] entraflow_audit::StoreError),
    /// Verification itself failed (not: found a problem).
    #[error("the audit log could not be verified: {0}")]
    Verify(#[from] entraflow_audit::AuditError),
    /// The role store could not be read.
    #[error("the role store could not be read: {0}")]
    Rbac(#[from] entraflow_rbac::Error),
}
