//! What can stop the local stack or the demo, each saying what to do.

use std::path::PathBuf;

use thiserror::Error;

/// Why the local stack or the demo stopped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LocalError {
    /// The authority failed to start or to administer its tenant.
    #[error(transparent)]
    Authority(#[from] entraflow_authority::AuthorityError),
    /// The gate failed to start.
    #[error(transparent)]
    Gate(#[from] entraflow_gate::GateError),
    /// The SQL gate failed to start.
    #[error(transparent)]
    SqlGate(#[from] entraflow_gate::sql::SqlGateError),
    /// The console failed to start.
    #[error(transparent)]
    Console(#[from] entraflow_console::ConsoleError),
    /// The audit log could not be read for the report.
    #[error("audit log: {0}")]
    Audit(#[from] entraflow_audit::StoreError),
    /// A role assignment could not be made.
    #[error("role assignment: {0}")]
    Rbac(#[from] entraflow_rbac::Error),
    /// A scope string is malformed.
    #[error("scope: {0}")]
    Scope(#[from] entraflow_rbac::ScopeError),
    /// A file in the data directory could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key or token for the cluster issuer could not be made.
    #[error("cluster issuer: {0}")]
    Issuer(String),
    /// A request to the gate failed.
    #[error("{what}: {detail}")]
    Request {
        /// What was being done.
        what: String,
        /// What went wrong.
        detail: String,
    },
    /// A job (a Python process) could not start or ended unexpectedly.
    #[error(
        "{job} {problem}; its output is above (Python: {python}; run `bash scripts/demo.sh` to install the environment)"
    )]
    Job {
        /// The job's name.
        job: String,
        /// What happened.
        problem: String,
        /// The interpreter used.
        python: String,
    },
    /// The demo ran but an outcome was not what it must be.
    #[error("the demo's check failed: {0}")]
    Check(String),
}

/// Maps an I/O error on `path`.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_owned(),
        source,
    }
}
