//! What the SQL gate stands for and whom it trusts: the PostgreSQL server it
//! impersonates (an Azure flexible server's scope), the backend it relays to, and
//! which authority and tenants issue acceptable tokens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{
    AUTHORITY_ENV_FILE, DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, read_env_file,
};

use super::backend::BackendTarget;
use super::error::SqlGateError;

/// Default name of the flexible server the gate stands for (in scopes).
pub const DEFAULT_SERVER: &str = "entraflowlocal";
/// File the SQL gate writes its client settings to (`PGHOST`, `PGPORT`,
/// `PGSSLMODE`, `PGSSLROOTCERT`), in the data directory.
pub const SQL_GATE_ENV_FILE: &str = "sql-gate.env";

/// The SQL gate's configuration. Build it with [`SqlGateConfig::new`] and adjust
/// fields.
#[derive(Debug, Clone)]
pub struct SqlGateConfig {
    /// Data directory: `sql.db`, `rbac.db`, the audit store, the local CA.
    pub data_dir: PathBuf,
    /// Address to bind (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// The backend, `postgres://[user[:password]@]host[:port][/db]`. The gate
    /// relays to its host and port, signing in as each mapped role; the user in the
    /// URL is only for `sql principal create`.
    pub backend: String,
    /// Flexible server name in scopes.
    pub server: String,
    /// Subscription id of the server's scope.
    pub subscription: String,
    /// Resource group of the server's scope.
    pub resource_group: String,
    /// Authority host whose tokens are trusted (`AZURE_AUTHORITY_HOST`).
    pub authority_host: String,
    /// Tenants whose tokens are accepted (`AZURE_TENANT_ID`).
    pub tenants: Vec<String>,
    /// Clock skew tolerated on `exp`/`nbf` at sign-in.
    pub leeway: Duration,
    /// An unknown `kid` refetches the issuer's JWKS at most this often.
    pub jwks_refresh_interval: Duration,
    /// Audit chain id of this gate.
    pub audit_log_id: String,
    /// Where audit events go.
    pub audit_store: entraflow_audit::StoreUrl,
    /// Record statements as sent instead of with literals redacted.
    pub full_statements: bool,
    /// How long a session may outlive its token (zero: it ends at expiry, after
    /// the statement in flight).
    pub expiry_grace: Duration,
}

impl SqlGateConfig {
    /// Local defaults in `data_dir`; authority and tenant from `data_dir/env` when
    /// the authority wrote it. `backend` must still be set.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let env = read_env_file(&data_dir.join(AUTHORITY_ENV_FILE));
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            backend: String::new(),
            server: DEFAULT_SERVER.to_owned(),
            subscription: DEFAULT_SUBSCRIPTION.to_owned(),
            resource_group: DEFAULT_RESOURCE_GROUP.to_owned(),
            authority_host: env
                .get(entraflow_core::env::AZURE_AUTHORITY_HOST)
                .cloned()
                .unwrap_or_default(),
            tenants: env
                .get(entraflow_core::env::AZURE_TENANT_ID)
                .cloned()
                .into_iter()
                .collect(),
            leeway: Duration::from_secs(300),
            jwks_refresh_interval: Duration::from_secs(300),
            audit_log_id: "entraflow/sql-gate".to_owned(),
            audit_store: entraflow_audit::StoreUrl::default_for(&data_dir),
            full_statements: false,
            expiry_grace: Duration::ZERO,
            data_dir,
        }
    }

    /// The server's Azure scope (a database's is below it).
    pub fn server_scope(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{}",
            self.subscription, self.resource_group, self.server
        )
    }

    /// `host:port` of the backend.
    pub(crate) fn backend_addr(&self) -> Result<String, SqlGateError> {
        backend_addr(&self.backend)
    }

    /// The backend: its address and the TLS its URL asks for.
    pub(crate) fn backend_target(&self) -> Result<BackendTarget, SqlGateError> {
        let addr = self.backend_addr()?;
        let host = url::Url::parse(&self.backend)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        BackendTarget::new(addr, &host, &self.backend).map_err(|e| {
            SqlGateError::Config(format!("backend '{}': {e}", redact_password(&self.backend)))
        })
    }
}

/// `host:port` of a `postgres://` URL (port 5432 when absent).
pub(crate) fn backend_addr(url: &str) -> Result<String, SqlGateError> {
    let parsed = url::Url::parse(url).map_err(|e| {
        SqlGateError::Config(format!(
            "backend '{}' is not a postgres:// URL: {e}",
            redact_password(url)
        ))
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(SqlGateError::Config(format!(
            "backend '{}' must be a postgres:// URL",
            redact_password(url)
        )));
    }
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
        SqlGateError::Config(format!("backend '{}' names no host", redact_password(url)))
    })?;
    Ok(format!("{host}:{}", parsed.port().unwrap_or(5432)))
}

/// The URL with any password replaced, for messages.
pub(crate) fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_urls_give_host_and_port_and_never_print_a_password() {
        assert_eq!(
            backend_addr("postgres://postgres@127.0.0.1:5433/postgres").unwrap(),
            "127.0.0.1:5433"
        );
        assert_eq!(
            backend_addr("postgresql://db.internal").unwrap(),
            "db.internal:5432"
        );
        let err = backend_addr("mysql://u:hunter2@h").unwrap_err().to_string();
        assert!(
            err.contains("REDACTED") && !err.contains("hunter2"),
            "{err}"
        );
        let config = SqlGateConfig::new("/nonexistent");
        assert!(
            config
                .server_scope()
                .ends_with("/flexibleServers/entraflowlocal")
        );
    }
}
