//! What every SQL session shares: the verifier for PostgreSQL tokens, the
//! authorizer and audit sink the guard uses, the principal mappings, and the
//! backend. The backend's credentials are reached only through an [`Access`],
//! which only an allowed decision hands out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entraflow_rbac::Scope;

use super::backend::BackendTarget;
use super::principals::PrincipalStore;
use crate::audit::AuditSink;
use crate::groups::GroupDirectory;
use crate::guard::{Access, Guarded};
use crate::verify::TokenVerifier;

/// Where a client's cancel request goes: the backend session behind the key the
/// gate gave the client.
#[derive(Clone, Copy)]
pub(crate) struct CancelTarget {
    /// The gate's secret for this session (compared in constant time).
    pub(crate) key: u32,
    pub(crate) backend_pid: u32,
    pub(crate) backend_key: u32,
}

pub(crate) struct SqlState {
    /// Verifies tokens for `https://ossrdbms-aad.database.windows.net`.
    pub(crate) verifier: TokenVerifier,
    authorizer: Arc<entraflow_rbac::Authorizer>,
    audit: Arc<dyn AuditSink>,
    /// User name → role mappings (passwords only through [`backend_password`]).
    pub(crate) principals: PrincipalStore,
    /// Where the backend is, and the TLS to reach it with.
    backend: BackendTarget,
    subscription: String,
    resource_group: String,
    server: String,
    pub(crate) full_statements: bool,
    pub(crate) expiry_grace: Duration,
    /// Live sessions by the process id the gate gave their client.
    pub(crate) cancels: Mutex<HashMap<u32, CancelTarget>>,
    /// Backend connections opened, for operators and tests ("a refused client
    /// never reached the backend").
    pub(crate) backend_connections: AtomicU64,
    /// Where group membership is looked up (PostgreSQL tokens carry no `groups`
    /// past an overage, and group logins must still work).
    groups: Option<GroupDirectory>,
}

/// The parts of [`SqlState`] fixed at start-up.
pub(crate) struct SqlSettings {
    pub(crate) backend: BackendTarget,
    pub(crate) subscription: String,
    pub(crate) resource_group: String,
    pub(crate) server: String,
    pub(crate) full_statements: bool,
    pub(crate) expiry_grace: Duration,
    pub(crate) groups: Option<GroupDirectory>,
}

impl SqlState {
    pub(crate) fn new(
        verifier: TokenVerifier,
        authorizer: Arc<entraflow_rbac::Authorizer>,
        audit: Arc<dyn AuditSink>,
        principals: PrincipalStore,
        settings: SqlSettings,
    ) -> Self {
        Self {
            verifier,
            authorizer,
            audit,
            principals,
            backend: settings.backend,
            subscription: settings.subscription,
            resource_group: settings.resource_group,
            server: settings.server,
            full_statements: settings.full_statements,
            expiry_grace: settings.expiry_grace,
            cancels: Mutex::new(HashMap::new()),
            backend_connections: AtomicU64::new(0),
            groups: settings.groups,
        }
    }

    /// The scope a connection to `database` is authorized at.
    pub(crate) fn database_scope(&self, database: &str) -> Scope {
        Scope::postgres_database(
            &self.subscription,
            &self.resource_group,
            &self.server,
            database,
        )
    }

    /// The backend, for sessions and cancel requests (which carry their own
    /// proof: the backend's secret key).
    pub(crate) fn backend(&self) -> &BackendTarget {
        &self.backend
    }

    pub(crate) fn authorizer_arc(&self) -> &Arc<entraflow_rbac::Authorizer> {
        &self.authorizer
    }

    pub(crate) fn note_backend_connection(&self) {
        self.backend_connections.fetch_add(1, Ordering::Relaxed);
    }
}

impl Guarded for SqlState {
    fn authorizer(&self) -> &entraflow_rbac::Authorizer {
        &self.authorizer
    }

    fn audit(&self) -> &Arc<dyn AuditSink> {
        &self.audit
    }

    fn groups(&self) -> Option<&GroupDirectory> {
        self.groups.as_ref()
    }
}

/// The login password of `role` on the backend: only for an allowed session.
pub(crate) fn backend_password(
    access: &Access<'_, SqlState>,
    role: &str,
) -> Result<Option<String>, super::error::SqlGateError> {
    access.state().principals.password(role)
}
