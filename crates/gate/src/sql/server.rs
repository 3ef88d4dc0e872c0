//! The SQL gate's listener: binds, opens what every session shares, accepts
//! connections until shutdown, then lets sessions finish and closes the audit log.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;

use super::config::{SQL_GATE_ENV_FILE, SqlGateConfig};
use super::error::SqlGateError;
use super::principals::PrincipalStore;
use super::session;
use super::state::{SqlSettings, SqlState};
use crate::verify::{TokenVerifier, VerifierConfig};

/// How long sessions may run on after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// A SQL gate bound to its port, not yet serving.
pub struct SqlGate {
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    state: Arc<SqlState>,
    audit_log: entraflow_audit::AuditLog,
    config: SqlGateConfig,
    addr: SocketAddr,
    ca_pem_path: std::path::PathBuf,
}

impl std::fmt::Debug for SqlGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlGate")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SqlGate {
    /// Opens the principal mappings, the role store and the audit log in the data
    /// directory, loads (or creates) the local CA, and binds the port.
    pub async fn bind(config: SqlGateConfig) -> Result<SqlGate, SqlGateError> {
        entraflow_tls::install_crypto_provider();
        if config.authority_host.is_empty() || config.tenants.is_empty() {
            return Err(SqlGateError::Config(format!(
                "no trusted authority or tenant; start the authority with this data directory (it writes {}) or pass --trusted-authority and --tenant",
                config.data_dir.join(crate::AUTHORITY_ENV_FILE).display()
            )));
        }
        let backend = config.backend_target()?;
        let principals = PrincipalStore::open(&config.data_dir)?;
        let ca = entraflow_tls::LocalCa::load_or_create(&config.data_dir)?;
        let http = entraflow_tls::https_client(Some(ca.ca_pem()))?;
        // The same rustls configuration as the Blob gate's, with PostgreSQL's ALPN
        // (libpq 17 offers "postgresql" and refuses a server that picks another).
        let mut tls = (*ca.server_config(&[])?).clone();
        tls.alpn_protocols = vec![b"postgresql".to_vec()];
        let tls = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let mut verifier_config =
            VerifierConfig::new(&config.authority_host, config.tenants.clone(), None);
        // v1 tokens name the resource URI, v2 tokens its application id.
        verifier_config.audiences = vec![
            entraflow_core::OSSRDBMS_RESOURCE.to_owned(),
            entraflow_core::OSSRDBMS_APP_ID.to_owned(),
        ];
        verifier_config.leeway = config.leeway;
        verifier_config.min_refresh_interval = config.jwks_refresh_interval;
        let verifier = TokenVerifier::new(verifier_config, http);

        let authorizer = Arc::new(
            entraflow_rbac::Authorizer::open(&config.data_dir)
                .map_err(|e| SqlGateError::Rbac(e.to_string()))?,
        );
        let audit_log = crate::audit::open_log(
            &config.data_dir,
            config.audit_store.clone(),
            &config.audit_log_id,
        )
        .await
        .map_err(SqlGateError::Audit)?;
        let bound = entraflow_tls::bind("the SQL gate's port", config.bind)?;
        let listener = bound
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(bound))
            .map_err(|source| SqlGateError::Io {
                path: config.data_dir.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SqlGateError::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        let state = Arc::new(SqlState::new(
            verifier,
            authorizer,
            Arc::new(audit_log.clone()),
            principals,
            SqlSettings {
                backend,
                subscription: config.subscription.clone(),
                resource_group: config.resource_group.clone(),
                server: config.server.clone(),
                full_statements: config.full_statements,
                expiry_grace: config.expiry_grace,
                groups: crate::groups::GroupDirectory::open(
                    &config.data_dir,
                    crate::groups::DEFAULT_STALENESS,
                ),
            },
        ));
        Ok(SqlGate {
            listener,
            tls,
            state,
            audit_log,
            ca_pem_path: ca.ca_pem_path(),
            config,
            addr,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's Azure scope; a database's scope is `<this>/databases/<name>`.
    pub fn server_scope(&self) -> String {
        self.config.server_scope()
    }

    /// The CA certificate clients verify the gate with (`sslrootcert`).
    pub fn ca_pem_path(&self) -> &std::path::Path {
        &self.ca_pem_path
    }

    /// The role authorizer sessions are decided with (see `Gate::authorizer`).
    pub fn authorizer(&self) -> Arc<entraflow_rbac::Authorizer> {
        Arc::clone(self.state.authorizer_arc())
    }

    /// A counter of the backend connections the gate has opened: a session it
    /// refuses never adds to it.
    pub fn backend_connections(&self) -> BackendConnections {
        BackendConnections(Arc::clone(&self.state))
    }

    /// The client settings, as `export NAME=value` lines libpq reads: `PGHOST`,
    /// `PGPORT`, `PGSSLMODE=verify-full`, `PGSSLROOTCERT`.
    pub fn env_lines(&self) -> String {
        format!(
            "export PGHOST={}\nexport PGPORT={}\nexport PGSSLMODE=verify-full\nexport PGSSLROOTCERT={}\n",
            self.addr.ip(),
            self.addr.port(),
            self.ca_pem_path.display()
        )
    }

    /// Writes [`SqlGate::env_lines`] to `<data-dir>/sql-gate.env`.
    pub fn write_env_file(&self) -> Result<(), SqlGateError> {
        let path = self.config.data_dir.join(SQL_GATE_ENV_FILE);
        entraflow_core::fsutil::write_public_file(&path, self.env_lines().as_bytes())
            .map_err(|source| SqlGateError::Io { path, source })
    }

    /// Serves until `shutdown` resolves, lets sessions finish (up to 10 s), then
    /// closes the audit log (writing a final signed checkpoint).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), SqlGateError> {
        let mut sessions = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            while sessions.try_join_next().is_some() {}
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        sessions.spawn(session::serve(Arc::clone(&self.state), self.tls.clone(), tcp, peer));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(self.listener);
        if tokio::time::timeout(DRAIN, async {
            while sessions.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                left = sessions.len(),
                "SQL sessions still open at shutdown; closing them"
            );
            sessions.shutdown().await;
        }
        let _ = std::fs::remove_file(self.config.data_dir.join(SQL_GATE_ENV_FILE));
        if let Err(e) = self.audit_log.close().await {
            tracing::warn!(error = %e, "closing the audit log failed");
        }
        Ok(())
    }
}

/// See [`SqlGate::backend_connections`].
#[derive(Clone)]
pub struct BackendConnections(Arc<SqlState>);

impl BackendConnections {
    /// Backend connections opened so far.
    pub fn get(&self) -> u64 {
        self.0.backend_connections.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for BackendConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackendConnections({})", self.get())
    }
}

/// Binds, writes `sql-gate.env`, and serves until `shutdown` resolves.
pub async fn serve(
    config: SqlGateConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SqlGateError> {
    let gate = SqlGate::bind(config).await?;
    gate.write_env_file()?;
    tracing::info!(addr = %gate.local_addr(), "SQL gate ready");
    gate.run(shutdown).await
}
