//! What the gate stands for and whom it trusts: the Azure account it impersonates
//! (subscription, resource group, account name → every blob has an Azure scope),
//! where blobs live, and which authority and tenants issue acceptable tokens.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default account name (Azurite's, so existing connection strings and tools work).
pub const DEFAULT_ACCOUNT: &str = "devstoreaccount1";
/// Default subscription id of the local account.
pub const DEFAULT_SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
/// Default resource group of the local account.
pub const DEFAULT_RESOURCE_GROUP: &str = "entraflow-local";
/// File the gate writes its client settings to, in the data directory.
pub const GATE_ENV_FILE: &str = "gate.env";
/// File the authority writes its client settings to, in the data directory.
pub const AUTHORITY_ENV_FILE: &str = "env";

/// Where blobs are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A local directory (`LocalFileSystem`).
    Local(PathBuf),
    /// An `object_store` URL (`az://`, `abfss://`, `file://` ...), configured from
    /// the environment as `object_store` reads it.
    Url(String),
}

/// The gate's configuration. Build it with [`GateConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Data directory: `gate.db`, `rbac.db`, `audit.db`, the local CA, `gate.env`.
    pub data_dir: PathBuf,
    /// Address to bind (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// Where the plain-HTTP health and metrics listener binds (`/livez`,
    /// `/readyz`, `/metrics`); `None`: no such listener.
    pub health_bind: Option<SocketAddr>,
    /// DNS names the serving certificate carries besides `localhost`,
    /// `127.0.0.1` and `::1` (a Kubernetes Service's name, say).
    pub tls_names: Vec<String>,
    /// Storage account name in URLs and scopes.
    pub account: String,
    /// Subscription id of the account's scope.
    pub subscription: String,
    /// Resource group of the account's scope.
    pub resource_group: String,
    /// Where blobs live.
    pub backend: Backend,
    /// Authority host whose tokens are trusted (`AZURE_AUTHORITY_HOST`).
    pub authority_host: String,
    /// Tenants whose tokens are accepted (`AZURE_TENANT_ID`).
    pub tenants: Vec<String>,
    /// Clock skew tolerated on `exp`/`nbf`.
    pub leeway: Duration,
    /// An unknown `kid` refetches the issuer's JWKS at most this often (10 s).
    pub jwks_refresh_interval: Duration,
    /// How stale a principal's group membership may be (looked up in the local
    /// directory; Storage tokens carry no `groups` claim).
    pub group_staleness: Duration,
    /// Audit chain id of this gate; gates sharing one store need distinct ids.
    pub audit_log_id: String,
    /// Where audit events go: `<data_dir>/audit.db` by default, or a PostgreSQL
    /// store that several gates share (each on its own chain).
    pub audit_store: entraflow_audit::StoreUrl,
}

impl GateConfig {
    /// Local defaults in `data_dir`: account `devstoreaccount1`, blobs in
    /// `data_dir/blobs`, any free port; authority and tenant from `data_dir/env`
    /// when the authority wrote it.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let env = read_env_file(&data_dir.join(AUTHORITY_ENV_FILE));
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            health_bind: None,
            tls_names: Vec::new(),
            account: DEFAULT_ACCOUNT.to_owned(),
            subscription: DEFAULT_SUBSCRIPTION.to_owned(),
            resource_group: DEFAULT_RESOURCE_GROUP.to_owned(),
            backend: Backend::Local(data_dir.join("blobs")),
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
            jwks_refresh_interval: crate::verify::UNKNOWN_KID_REFETCH,
            group_staleness: crate::groups::DEFAULT_STALENESS,
            audit_log_id: "entraflow/gate".to_owned(),
            audit_store: entraflow_audit::StoreUrl::default_for(&data_dir),
            data_dir,
        }
    }

    /// The account's Azure scope.
    pub fn storage_scope(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
            self.subscription, self.resource_group, self.account
        )
    }
}

/// Reads `export KEY=VALUE` / `KEY=VALUE` lines (values optionally quoted) of an env
/// file; a missing file reads as empty.
pub fn read_env_file(path: &Path) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (k, v) = line.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_parse_with_or_without_export_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("env"),
            "# written by the authority\nexport AZURE_AUTHORITY_HOST=https://127.0.0.1:1234\nAZURE_TENANT_ID='t1'\nexport X=\"a b\"\n",
        )
        .unwrap();
        let config = GateConfig::new(dir.path());
        assert_eq!(config.authority_host, "https://127.0.0.1:1234");
        assert_eq!(config.tenants, vec!["t1".to_owned()]);
        assert_eq!(read_env_file(&dir.path().join("env"))["X"], "a b");
        assert_eq!(
            config.storage_scope(),
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/entraflow-local/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
        );
    }
}
