//! Test set-up written once: a real authority ([`Authority`]) and, with it, a real
//! gate ([`Stack`]) on ephemeral loopback ports sharing one temporary data
//! directory, with the helpers integration tests need — applications with secrets,
//! tokens from the token endpoint, role assignments, requests with the headers
//! Azure SDKs send, audit records, and a wait for a role change to reach the gate.
//!
//! Not for: anything but tests (it panics on every failure), or running the
//! servers for people (`entraflow_local::LocalStack` does that, on fixed ports).
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use entraflow_testkit::{STORAGE_SCOPE, Stack};
//! let stack = Stack::start().await;
//! let app = stack.app("trainer");
//! stack.assign(&app.oid, "Storage Blob Data Contributor", &stack.account_scope);
//! stack.wait_for_policy().await;
//! let token = stack.token(&app, STORAGE_SCOPE).await;
//! stack.create_container(&token, "data").await;
//! assert_eq!(stack.put_blob("/data/x", &token, "x").await.status(), 201);
//! # }
//! ```
#![forbid(unsafe_code)]

mod authority;
pub mod forge;
pub mod report;
mod sql;
mod stack;

pub use authority::{App, Authority};
pub use sql::{GateTls, OSSRDBMS_SCOPE, SQL_CONNECT_ROLE, SqlStack, test_postgres_url};
pub use stack::{Stack, X_MS_VERSION};

/// The scope a Storage token is requested for.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// The records of one audit chain (`log_id`) in the store of data directory `dir`,
/// in order.
pub async fn audit_chain(dir: &std::path::Path, log_id: &str) -> Vec<entraflow_audit::Record> {
    use entraflow_audit::StoreBackend as _;
    let url = entraflow_audit::StoreUrl::default_for(dir);
    let store = entraflow_audit::AnyStore::open(&url).await.unwrap();
    let filter = entraflow_audit::Filter {
        log_id: Some(log_id.to_owned()),
        ..entraflow_audit::Filter::default()
    };
    let mut rows = store.query(&filter, None, 10_000).await.unwrap();
    rows.sort_by_key(|r| r.seq);
    rows.iter()
        .map(|r| entraflow_audit::Record::parse(r.record.as_bytes()).unwrap())
        .collect()
}
