//! Everything on one machine: the authority and the gate started together on one
//! data directory ([`LocalStack`], behind `entraflow up`), and the end-to-end demo
//! ([`demo::run`], behind `entraflow demo`) that provisions two projects the way a
//! platform team would, stages a dataset, trains with workload identity, shows a
//! denied cross-project read and prints the security team's audit view.
//!
//! Not for: production. In production the authority is Entra ID, the cluster issuer
//! is Kubernetes, and the gate runs alone (`entraflow gate serve`).
//!
//! ```
//! use entraflow_local::ClusterIssuer;
//! let dir = tempfile::tempdir().unwrap();
//! let issuer = ClusterIssuer::load_or_create(dir.path()).unwrap();
//! let token = issuer.service_account_token("ml", "trainer", 3600).unwrap();
//! assert_eq!(token.split('.').count(), 3);
//! ```
#![forbid(unsafe_code)]

mod cluster;
pub mod demo;
mod error;
mod jobs;
mod provision;
mod report;
mod sql;
mod stack;

pub use cluster::{CLUSTER_ISSUER_DIR, ClusterIssuer};
pub use error::LocalError;
pub use provision::{Project, Tenant, provision};
pub use stack::{LocalStack, StackOptions};
