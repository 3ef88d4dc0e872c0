//! The audit log: append-only evidence of who touched what, that nobody can edit,
//! delete, reorder or truncate unnoticed, and that never loses an acknowledged event.
//!
//! Design in brief:
//! - **Writers** (the gate, the authority) call [`AuditLog::append`]; it returns only
//!   once the event is durable. One writer task per chain drains a channel and commits
//!   everything queued as one transaction (group commit), so many concurrent requests
//!   share one fsync.
//! - **Chains**: each writer instance appends to its own chain (`log_id`, e.g.
//!   `entraflow/gate/host-1`), so gates sharing PostgreSQL never contend on one head.
//! - **Tamper evidence**: every stored record (canonical JSON, see [`event`]) is a
//!   leaf of an RFC 6962/9162 Merkle tree. The writer keeps only the right frontier
//!   ([`merkle::Frontier`]) and stores it with each batch. Checkpoints (origin, size,
//!   root) are signed with Ed25519 in the C2SP signed-note format ([`checkpoint`]),
//!   periodically and on close, and can be exported so heads live outside the system.
//! - **Verification** ([`verify_store`], [`verify_jsonl`]) recomputes every chain and
//!   reports the first damaged record precisely.
//! - **Lineage** ([`lineage`]): from a blob version back to the run, identity,
//!   inputs (blob versions read) and grants that produced it; exported as a proof
//!   bundle ([`bundle`]) that verifies offline.
//! - **Stores** ([`store`]): SQLite (default; WAL, `synchronous=FULL`, on its own
//!   thread) or PostgreSQL, behind one [`StoreBackend`] trait.
//!
//! Not here: deciding *what* to audit (the gate and authority do), or shipping events
//! elsewhere (export to JSON lines and read it anywhere).
//!
//! ```
//! use entraflow_audit::{AuditLog, AuditOptions, CheckpointSigner, Event, EventType};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let url = format!("sqlite://{}", dir.path().join("audit.db").display());
//! let log = AuditLog::open(url.as_str(), CheckpointSigner::generate("doc")?, AuditOptions::new("entraflow/doc")).await?;
//! let id = log.append(Event::new(EventType::BlobRead)).await?; // durable now
//! assert_eq!(id.seq, 0);
//! let checkpoint = log.close().await?.expect("a final checkpoint");
//! assert_eq!(checkpoint.checkpoint.size, 1);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bundle;
pub mod checkpoint;
pub mod event;
pub mod lineage;
mod log;
pub mod merkle;
pub mod store;
mod summary;
mod verify;

pub use bundle::{BUNDLE_FORMAT, BundleReport, BundleWritten, verify_bundle, write_bundle};
pub use checkpoint::{Checkpoint, CheckpointError, CheckpointSigner, NoteVerifier};
pub use event::{Decision, Event, EventType, Principal, Record, Timestamp};
pub use lineage::{BlobTarget, Found, Lineage, lineage};
pub use log::{AuditLog, AuditOptions, EventId, SignedCheckpoint};
pub use store::{AnyStore, Filter, StoreBackend, StoreError, StoreUrl};
pub use summary::{Access, PrincipalSummary, Summarizer, prefix_of};
pub use verify::{
    ChainReport, ConsistencyProof, ExternalCheckpoint, InclusionProof, Problem, ProblemKind,
    VerifyOptions, VerifyReport, checkpoint_now, export_jsonl, pick_chain, prove_consistency,
    prove_inclusion, verify_jsonl, verify_store,
};

use std::sync::Arc;

/// Why an audit operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The store failed; the event (if any) was not recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key or checkpoint problem.
    #[error(transparent)]
    Checkpoint(Arc<CheckpointError>),
    /// A proof could not be made or did not verify.
    #[error("proof: {0}")]
    Proof(#[from] merkle::ProofError),
    /// The log was closed.
    #[error("the audit log is closed")]
    Closed,
    /// The log id cannot be a checkpoint origin.
    #[error("'{0}' cannot be an audit log id: it must be one non-empty line")]
    InvalidLogId(String),
    /// No such chain in the store.
    #[error("the audit log has no chain '{0}'")]
    NoSuchChain(String),
    /// Several chains and none chosen.
    #[error("the audit log has several chains ({}); choose one with --log", .0.join(", "))]
    AmbiguousChain(Vec<String>),
    /// No checkpoint to prove against.
    #[error("{0}")]
    NoCheckpoint(String),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
    /// A lineage cannot be found or given (what, and what to do, is in the text).
    #[error("{0}")]
    Lineage(String),
    /// A file is not a lineage bundle this version reads.
    #[error("{0}")]
    Bundle(String),
}

impl From<CheckpointError> for AuditError {
    fn from(e: CheckpointError) -> AuditError {
        AuditError::Checkpoint(Arc::new(e))
    }
}

/// Anything [`AuditLog::open`] accepts as a store: a [`StoreUrl`] or its text.
pub trait IntoStoreUrl {
    /// The store URL.
    fn into_store_url(self) -> Result<StoreUrl, StoreError>;
}

impl IntoStoreUrl for StoreUrl {
    fn into_store_url(self) -> Result<StoreUrl, StoreError> {
        Ok(self)
    }
}

impl IntoStoreUrl for &StoreUrl {
    fn into_store_url(self) -> Result<StoreUrl, StoreError> {
        Ok(self.clone())
    }
}

impl IntoStoreUrl for &str {
    fn into_store_url(self) -> Result<StoreUrl, StoreError> {
        StoreUrl::parse(self)
    }
}

impl IntoStoreUrl for String {
    fn into_store_url(self) -> Result<StoreUrl, StoreError> {
        StoreUrl::parse(&self)
    }
}
