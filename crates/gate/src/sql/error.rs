//! What can go wrong starting the SQL gate or managing its principals (not what
//! it tells a refused client: that is [`super::refusal`]).

use std::path::PathBuf;

/// An error of the SQL gate's set-up or its principal mapping.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlGateError {
    /// A setting is missing or wrong.
    #[error("SQL gate configuration: {0}")]
    Config(String),
    /// The port could not be bound.
    #[error(transparent)]
    Bind(#[from] entraflow_tls::BindError),
    /// A file in the data directory.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The principal mapping database (`sql.db`).
    #[error("{path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The failure.
        source: rusqlite::Error,
    },
    /// The PostgreSQL backend refused or failed an admin operation.
    #[error("PostgreSQL backend {backend}: {message}")]
    Backend {
        /// Host and port of the backend.
        backend: String,
        /// What failed.
        message: String,
    },
    /// A principal cannot be mapped as asked.
    #[error("{0}")]
    Principal(String),
    /// The local CA or TLS set-up.
    #[error(transparent)]
    Tls(#[from] entraflow_tls::TlsError),
    /// The audit log.
    #[error("audit log: {0}")]
    Audit(String),
    /// The role store.
    #[error("role store: {0}")]
    Rbac(String),
}
