//! The authority and the gate together on one data directory, the gate trusting
//! that authority, with one `<data-dir>/env` holding everything a client needs;
//! with a PostgreSQL backend, the SQL gate too (`<data-dir>/sql-gate.env`); and,
//! when asked, the security team's console signing people in with that
//! authority (`<data-dir>/console.env`, its URL also in `env`).

use std::path::{Path, PathBuf};

use entraflow_authority::{ServerConfig, ServerHandle};
use entraflow_console::{Console, ConsoleConfig, ConsoleError};
use entraflow_gate::sql::{SqlGate, SqlGateConfig, SqlGateError};
use entraflow_gate::{AUTHORITY_ENV_FILE, Gate, GateConfig, GateError};
use tokio::sync::watch;

use crate::error::LocalError;

/// Ports and names of a local stack. Port 0 picks a free port.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The data directory both servers share.
    pub data_dir: PathBuf,
    /// The authority's HTTPS port.
    pub authority_port: u16,
    /// The managed-identity (IMDS) port.
    pub imds_port: u16,
    /// The gate's HTTPS port.
    pub gate_port: u16,
    /// The storage account the gate stands for.
    pub account: String,
    /// The PostgreSQL the SQL gate fronts; no SQL gate without one.
    pub sql_backend: Option<String>,
    /// The SQL gate's port.
    pub sql_port: u16,
    /// Where all three servers record: `<data-dir>/audit.db` when `None`.
    pub audit_store: Option<entraflow_audit::StoreUrl>,
    /// The gate's plain-HTTP health and metrics listener; `None`: none.
    pub health_bind: Option<std::net::SocketAddr>,
    /// The console's HTTPS port (0: a free one); `None`: no console.
    pub console_port: Option<u16>,
}

impl StackOptions {
    /// Fixed default ports (authority 8443, IMDS 8089, gate 10443) in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            authority_port: 8443,
            imds_port: 8089,
            gate_port: 10443,
            account: entraflow_gate::DEFAULT_ACCOUNT.to_owned(),
            sql_backend: None,
            sql_port: 15432,
            audit_store: None,
            health_bind: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            console_port: None,
        }
    }
}

/// A running authority and gate. Stop it with [`LocalStack::stop`].
pub struct LocalStack {
    /// `AZURE_AUTHORITY_HOST`.
    pub authority_host: String,
    /// The tenant.
    pub tenant_id: String,
    /// The IMDS endpoint.
    pub imds_endpoint: String,
    /// The gate's account URL (`ENTRAFLOW_BLOB_ENDPOINT`).
    pub blob_endpoint: String,
    /// The storage account's Azure scope.
    pub storage_scope: String,
    /// The CA bundle clients trust.
    pub ca_pem_path: PathBuf,
    /// The env file clients source.
    pub env_file: PathBuf,
    /// Where the SQL gate listens, when it runs.
    pub sql_addr: Option<std::net::SocketAddr>,
    /// The gate's health and metrics URL (`ENTRAFLOW_GATE_HEALTH_URL`), when it has one.
    pub health_url: Option<String>,
    /// The console's URL (`ENTRAFLOW_CONSOLE_URL`), when it runs.
    pub console_url: Option<String>,
    stop: watch::Sender<bool>,
    console: Option<tokio::task::JoinHandle<Result<(), ConsoleError>>>,
    authority: ServerHandle,
    gate: tokio::task::JoinHandle<Result<(), GateError>>,
    sql_gate: Option<tokio::task::JoinHandle<Result<(), SqlGateError>>>,
}

impl std::fmt::Debug for LocalStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStack")
            .field("authority_host", &self.authority_host)
            .field("blob_endpoint", &self.blob_endpoint)
            .finish_non_exhaustive()
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl LocalStack {
    /// Starts the authority, then the gate trusting it (and the console, when
    /// [`StackOptions::console_port`] is set), and writes `<data-dir>/env`
    /// (authority, gate and console settings), `console.env` and `gate.env`.
    pub async fn start(options: StackOptions) -> Result<Self, LocalError> {
        let (stop, rx) = watch::channel(false);
        let mut authority_config = ServerConfig::new(&options.data_dir);
        authority_config.port = options.authority_port;
        authority_config.imds_port = options.imds_port;
        authority_config.audit_store = options.audit_store.clone();
        let authority = entraflow_authority::serve(authority_config, stopped(rx.clone())).await?;

        let mut config = GateConfig::new(&options.data_dir);
        config.bind = std::net::SocketAddr::from(([127, 0, 0, 1], options.gate_port));
        config.account = options.account;
        config.health_bind = options.health_bind;
        config.authority_host = authority.authority_host.clone();
        config.tenants = vec![authority.tenant_id.clone()];
        if let Some(store) = &options.audit_store {
            config.audit_store = store.clone();
        }
        let gate = Gate::bind(config).await?;
        let console = match options.console_port {
            Some(port) => {
                let mut config = ConsoleConfig::new(
                    &options.data_dir,
                    &authority.authority_host,
                    &authority.tenant_id,
                );
                config.bind = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                if let Some(store) = &options.audit_store {
                    config.audit_store = store.clone();
                }
                Some(Console::bind(config).await?)
            }
            None => None,
        };
        // env first: gate.env (and console.env) appearing means env is complete too.
        let env_file = options.data_dir.join(AUTHORITY_ENV_FILE);
        gate.append_to_env_file(&env_file)?;
        if let Some(console) = &console {
            console.append_to_env_file(&env_file)?;
            console.write_env_file()?;
        }
        gate.write_env_file()?;
        let blob_endpoint = gate.endpoint().to_owned();
        let storage_scope = gate.storage_scope();
        let health_url = gate.health_url().map(str::to_owned);
        let sql = match options.sql_backend {
            Some(backend) => {
                let mut sql_config = SqlGateConfig::new(&options.data_dir);
                sql_config.bind = std::net::SocketAddr::from(([127, 0, 0, 1], options.sql_port));
                sql_config.backend = backend;
                sql_config.authority_host = authority.authority_host.clone();
                sql_config.tenants = vec![authority.tenant_id.clone()];
                if let Some(store) = &options.audit_store {
                    sql_config.audit_store = store.clone();
                }
                let sql_gate = SqlGate::bind(sql_config).await?;
                sql_gate.write_env_file()?;
                Some(sql_gate)
            }
            None => None,
        };
        let sql_addr = sql.as_ref().map(SqlGate::local_addr);
        let sql_gate = sql.map(|g| tokio::spawn(g.run(stopped(rx.clone()))));
        let console_url = console.as_ref().map(|c| c.url().to_owned());
        let console = console.map(|c| tokio::spawn(c.run(stopped(rx.clone()))));
        Ok(Self {
            authority_host: authority.authority_host.clone(),
            tenant_id: authority.tenant_id.clone(),
            imds_endpoint: authority.imds_endpoint.clone(),
            ca_pem_path: authority.ca_pem_path.clone(),
            blob_endpoint,
            storage_scope,
            env_file,
            sql_addr,
            health_url,
            console_url,
            console,
            sql_gate,
            stop,
            gate: tokio::spawn(gate.run(stopped(rx))),
            authority,
        })
    }

    /// The data directory's env file.
    pub fn env_file(&self) -> &Path {
        &self.env_file
    }

    /// Stops every server gracefully (each writes its final audit checkpoint).
    pub async fn stop(self) -> Result<(), LocalError> {
        let _ = self.stop.send(true);
        let gate = self
            .gate
            .await
            .map_err(|e| LocalError::Check(format!("the gate task failed: {e}")))?;
        if let Some(console) = self.console {
            console
                .await
                .map_err(|e| LocalError::Check(format!("the console task failed: {e}")))??;
        }
        if let Some(sql_gate) = self.sql_gate {
            sql_gate
                .await
                .map_err(|e| LocalError::Check(format!("the SQL gate task failed: {e}")))??;
        }
        self.authority.wait().await?;
        gate?;
        Ok(())
    }
}
