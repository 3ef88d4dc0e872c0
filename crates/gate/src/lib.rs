//! The gate: an HTTPS server that speaks the Azure Blob Storage REST API, accepts
//! only Microsoft Entra ID bearer tokens, authorizes every request with Azure RBAC
//! and writes every decision to the audit log.
//!
//! Any Azure SDK, `object_store`'s Azure backend or the entraflow TensorFlow
//! filesystem talks to it unchanged at `https://127.0.0.1:PORT/<account>` (path-style
//! addressing, like Azurite). Behind it, blobs live in any `object_store` backend:
//! a local directory by default.
//!
//! A request goes: path → operation ([`Operation`]) → token ([`TokenVerifier`]: RS256
//! against the trusted issuer's JWKS, `iss`/`tid`/`aud`/`exp` checked, results cached
//! by token hash) → role check (`entraflow-rbac`: the operation's Azure action at the
//! blob's scope) → storage ([`BlobStore`], streamed both ways) → one audit event
//! (`entraflow-audit`) appended before the response completes. Failures look exactly
//! like Azure's: 401 `InvalidAuthenticationInfo` with `WWW-Authenticate`, 403
//! `AuthorizationPermissionMismatch` with an explanation of which role is missing.
//!
//! Operations: List/Create/Delete Container, Get/Set Container properties and
//! metadata, Lease Container, List Blobs (prefix, any delimiter, marker,
//! maxresults, metadata, tags), Get Blob (whole or `Range`/`x-ms-range`, 206/416,
//! range MD5), Get Blob Properties, Put Blob, Put Block + Put Block List (committed
//! atomically, reusing committed blocks), Get Block List, Set Blob Properties and
//! Metadata, Lease Blob, Copy Blob (within the gate; needs read on the source) and
//! Abort Copy, Delete Blob, Blob Batch deletes, Set/Get Blob Tags, Find Blobs by
//! Tags and Get Account Information; `Content-MD5`/`x-ms-content-crc64` and every
//! conditional header are honoured as Azure honours them. Container metadata and
//! blob properties, block lists, leases and tags live in the gate's SQLite
//! `gate.db` (a versioned schema); blob bytes only in the backend.
//!
//! Auditing: a non-streamed request's event (with final status and bytes) is
//! durable before its response is sent; if the audit log cannot take it the
//! client gets 503 `ServerBusy`. A change (write, delete, container, lease, tags,
//! admin) is made only once its decision record (`<type>.authorized`, see
//! [`AUTHORIZED_SUFFIX`]) is durable; its answer then tells the outcome even if the
//! outcome's record cannot be written. A Get Blob of at most 64 KiB has one event,
//! durable before the response, as any non-streamed request. A larger one streams:
//! its event (decision + requested range) is durable before the first body byte;
//! when the body ends, or the client goes away, a `blob.read.completed` record with
//! the same request id carries the bytes actually sent. The run id comes from `x-ms-entraflow-run-id`, else from the part
//! of `x-ms-client-request-id` before its first `:`.
//!
//! Admin API: role assignments and custom roles are also managed over the same
//! HTTPS listener in the shape of Azure Resource Manager
//! (`PUT {scope}/providers/Microsoft.Authorization/roleAssignments/{guid}?api-version=2022-04-01`,
//! list, get, delete; `roleDefinitions` list, get, put). Paths whose first segment
//! is `subscriptions` or `providers` go there (Blob paths start with the account
//! name, and the gate refuses accounts with those two names). It takes only
//! tokens for Azure Resource Manager (`https://management.azure.com/.default`),
//! verified with the same keys and tenants as Blob tokens (a Storage token is
//! refused there, an ARM token on Blob paths), and needs
//! `Microsoft.Authorization/roleAssignments/write` (`/delete`, `/read`) at the
//! scope, as Azure does: Owner or User Access Administrator. A change is visible
//! to the next Blob request, and every admin request is audited (`admin.change`,
//! `admin.read`, `authz.denied`, `authn.failed`), with the assignment's ARM id as
//! the resource. The extension `properties.expiresOn` (RFC 3339, or a duration such
//! as `30d`) gives an assignment an expiry.
//!
//! Bootstrap: someone must hold the first Owner, as a subscription owner does in
//! Azure. That is `entraflow role assignment create --role Owner --assignee <oid>
//! --scope <account scope>` on the gate's data directory: the CLI writes the role
//! store directly, guarded by the data directory's owner-only file permissions.
//!
//! It is not a token issuer (that is the authority) and does not accept Shared
//! Key or SAS.
//!
//! ```
//! use entraflow_gate::GateConfig;
//! let dir = tempfile::tempdir().unwrap();
//! let mut config = GateConfig::new(dir.path());
//! config.account = "entraflowlocal".into();
//! assert!(config.storage_scope().ends_with("/storageAccounts/entraflowlocal"));
//! // `entraflow_gate::serve(config, shutdown).await` runs it; `Gate::bind` lets a
//! // caller learn the port first.
//! ```
#![forbid(unsafe_code)]

mod admin;
mod audit;
mod blob;
mod conditions;
mod config;
mod error;
mod files;
mod groups;
mod guard;
mod health;
mod integrity;
mod lease;
mod metrics;
mod names;
mod operation;
pub mod sql;
mod store;
mod tags;
mod verify;
mod xml;

#[cfg(test)]
mod fuzz;

use std::future::Future;
use std::sync::Arc;

pub use audit::{AUTHORIZED_SUFFIX, AppendFuture, AuditSink, READ_COMPLETED};
pub use blob::{DENIAL_HEADER, SERVICE_VERSION};
pub use config::{
    AUTHORITY_ENV_FILE, Backend, DEFAULT_ACCOUNT, DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION,
    GATE_ENV_FILE, GateConfig, read_env_file,
};
pub use error::{GateError, StorageError};
pub use groups::{DEFAULT_STALENESS as GROUP_STALENESS, GroupDirectory, principal_with_groups};
pub use guard::RUN_ID_HEADER;
pub use health::AUDIT_FAILURE_HOLD;
pub use metrics::METRICS_PREFIX;
pub use operation::Operation;

pub use verify::{
    ARM_AUDIENCES, AuthError, KeyStatus, TokenVerifier, VerifiedToken, VerifierConfig,
};

impl AuditSink for entraflow_audit::AuditLog {
    fn append(&self, event: entraflow_audit::Event) -> audit::AppendFuture<'_> {
        Box::pin(async move {
            entraflow_audit::AuditLog::append(self, event)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn ready(&self) -> Result<(), String> {
        if self.is_open() {
            Ok(())
        } else {
            Err(entraflow_audit::AuditError::Closed.to_string())
        }
    }

    fn last_append_error(&self) -> Option<(String, std::time::Duration)> {
        entraflow_audit::AuditLog::last_append_error(self)
    }
}

/// Every path goes to the admin API or to Blob REST, and both through the guard.
fn router(state: Arc<guard::GateState>) -> axum::Router {
    use axum::extract::{Request, State};
    axum::Router::new()
        .fallback(
            |State(state): State<Arc<guard::GateState>>, req: Request| async move {
                if admin::is_admin_path(req.uri().path(), &state.account) {
                    admin::handle(state, req).await
                } else {
                    blob::handle(state, req).await
                }
            },
        )
        .with_state(state)
}

/// A gate bound to its port, not yet serving.
pub struct Gate {
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<guard::GateState>,
    audit_log: entraflow_audit::AuditLog,
    config: GateConfig,
    endpoint: String,
    ca_pem_path: std::path::PathBuf,
    /// Set once `gate.env` is written, so that `run` withdraws it on shutdown.
    wrote_env: std::sync::atomic::AtomicBool,
    /// The guard's authorizer, shared for [`Gate::authorizer`].
    authorizer: Arc<entraflow_rbac::Authorizer>,
    /// The plain-HTTP health and metrics listener and its URL, when configured.
    health: Option<(std::net::TcpListener, String)>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// Opens storage, the RBAC store and the audit log in the data directory, loads
    /// (or creates) the local CA, and binds the port.
    pub async fn bind(config: GateConfig) -> Result<Gate, GateError> {
        entraflow_tls::install_crypto_provider();
        if admin::ADMIN_ROOTS.contains(&config.account.as_str()) {
            return Err(GateError::Config(format!(
                "the account name '{}' is reserved: paths starting with it belong to the admin API; choose another --account",
                config.account
            )));
        }
        if config.authority_host.is_empty() || config.tenants.is_empty() {
            return Err(GateError::Config(format!(
                "no trusted authority or tenant; start the authority with this data directory (it writes {}) or pass --trusted-authority and --tenant",
                config.data_dir.join(AUTHORITY_ENV_FILE).display()
            )));
        }
        let io = |path: &std::path::Path| {
            let path = path.to_owned();
            move |source| GateError::Io { path, source }
        };
        entraflow_core::fsutil::create_private_dir(&config.data_dir)
            .map_err(io(&config.data_dir))?;
        let mut local_files = None;
        let (backend, layout): (Arc<dyn object_store::ObjectStore>, names::Layout) =
            match &config.backend {
                Backend::Local(dir) => {
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                    let local = object_store::local::LocalFileSystem::new_with_prefix(dir)
                        .map_err(|source| GateError::Backend {
                            backend: dir.display().to_string(),
                            source,
                        })?
                        .with_automatic_cleanup(true);
                    let local = Arc::new(local);
                    local_files = Some(Arc::clone(&local));
                    (local, names::Layout::Files)
                }
                Backend::Url(url) => {
                    let parsed = url::Url::parse(url)
                        .map_err(|e| GateError::Config(format!("backend URL '{url}': {e}")))?;
                    let (store, prefix) = object_store::parse_url_opts(&parsed, std::env::vars())
                        .map_err(|source| GateError::Backend {
                        backend: url.clone(),
                        source,
                    })?;
                    // A file system is not a flat namespace; object stores are.
                    let layout = if parsed.scheme() == "file" {
                        names::Layout::Files
                    } else {
                        names::Layout::Objects
                    };
                    // The URL's path (az://container/prefix, file:///srv/blobs) is
                    // where the gate's tree starts inside that store.
                    let store: Arc<dyn object_store::ObjectStore> = if prefix.as_ref().is_empty() {
                        Arc::from(store)
                    } else {
                        Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
                    };
                    (store, layout)
                }
            };
        let mut store = store::BlobStore::open(backend, layout, &config.data_dir.join("gate.db"))?;
        if let Some(local) = local_files {
            store = store.reading_files_of(local);
        }
        store.adopt_layout().await?;

        let ca = entraflow_tls::LocalCa::load_or_create(&config.data_dir)?;
        let http = entraflow_tls::https_client(Some(ca.ca_pem()))?;
        let tls = ca.server_config(&config.tls_names)?;
        let listener = entraflow_tls::bind("the gate's HTTPS port", config.bind)?;
        let bound = listener.local_addr().map_err(io(&config.data_dir))?;
        let endpoint = format!("https://{}/{}", reachable(bound), config.account);
        let health = match config.health_bind {
            Some(addr) => {
                let listener = entraflow_tls::bind("the gate's health and metrics port", addr)?;
                let bound = listener.local_addr().map_err(io(&config.data_dir))?;
                Some((listener, format!("http://{}", reachable(bound))))
            }
            None => None,
        };

        let mut verifier_config = VerifierConfig::new(
            &config.authority_host,
            config.tenants.clone(),
            Some(&endpoint),
        );
        verifier_config.leeway = config.leeway;
        verifier_config.min_refresh_interval = config.jwks_refresh_interval;
        let verifier = TokenVerifier::new(verifier_config, http);
        let admin_verifier =
            verifier.for_audiences(ARM_AUDIENCES.iter().map(|a| (*a).to_owned()).collect());

        let authorizer = Arc::new(
            entraflow_rbac::Authorizer::open(&config.data_dir)
                .map_err(|e| GateError::Rbac(e.to_string()))?,
        );
        let audit_log = audit::open_log(
            &config.data_dir,
            config.audit_store.clone(),
            &config.audit_log_id,
        )
        .await
        .map_err(GateError::Audit)?;

        let tenant = &config.tenants[0];
        let challenge = format!(
            "Bearer authorization_uri={}/{tenant}/oauth2/authorize resource_id={}",
            config.authority_host.trim_end_matches('/'),
            entraflow_core::STORAGE_RESOURCE
        );
        let admin_challenge = format!(
            "Bearer authorization_uri=\"{}/{tenant}/oauth2/authorize\", resource_id=\"{}\"",
            config.authority_host.trim_end_matches('/'),
            ARM_AUDIENCES[0]
        );
        let account_scope = entraflow_rbac::Scope::storage_account(
            &config.subscription,
            &config.resource_group,
            &config.account,
        );
        let metrics = Arc::new(metrics::Metrics::new());
        let audit: Arc<dyn AuditSink> = Arc::new(metrics::MeteredSink::new(
            Arc::new(audit_log.clone()),
            Arc::clone(&metrics),
        ));
        let state = Arc::new(guard::GateState::new(
            config.account.clone(),
            endpoint.clone(),
            account_scope,
            verifier,
            admin_verifier,
            guard::Protected {
                store,
                authorizer: Arc::clone(&authorizer),
                audit,
                groups: groups::GroupDirectory::open(&config.data_dir, config.group_staleness),
            },
            challenge,
            admin_challenge,
            metrics,
        ));
        Ok(Gate {
            listener,
            tls,
            state,
            audit_log,
            ca_pem_path: ca.ca_pem_path(),
            config,
            endpoint,
            wrote_env: Default::default(),
            authorizer,
            health,
        })
    }

    /// The account URL clients use (`https://127.0.0.1:PORT/<account>`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The account's Azure scope.
    pub fn storage_scope(&self) -> String {
        self.config.storage_scope()
    }

    /// The admin API's base URL (`https://127.0.0.1:PORT`): role assignments are at
    /// `<this><scope>/providers/Microsoft.Authorization/roleAssignments`, as under
    /// `https://management.azure.com` in Azure.
    pub fn admin_endpoint(&self) -> &str {
        self.endpoint
            .rsplit_once('/')
            .map_or(self.endpoint.as_str(), |(base, _)| base)
    }

    /// The health and metrics listener's URL (`http://127.0.0.1:PORT`; it serves
    /// `/livez`, `/readyz` and `/metrics`), when [`GateConfig::health_bind`] is set.
    pub fn health_url(&self) -> Option<&str> {
        self.health.as_ref().map(|(_, url)| url.as_str())
    }

    /// The CA certificate clients must trust.
    pub fn ca_pem_path(&self) -> &std::path::Path {
        &self.ca_pem_path
    }

    /// The role authorizer this gate decides with. It re-reads the role store on a
    /// request at most every 500 ms; a process that changes the store itself (a
    /// test, an embedding host) can `refresh` it now and compare its `generation`
    /// with the store's.
    pub fn authorizer(&self) -> Arc<entraflow_rbac::Authorizer> {
        Arc::clone(&self.authorizer)
    }

    /// The client settings the gate publishes, as `export NAME=value` lines:
    /// `ENTRAFLOW_BLOB_ENDPOINT` (azure-storage-blob's `account_url`) and
    /// `ENTRAFLOW_STORAGE_SCOPE` (the account's Azure scope, for role assignments)
    /// and `ENTRAFLOW_ADMIN_ENDPOINT` (the admin API's base URL); with a health
    /// listener, `ENTRAFLOW_GATE_HEALTH_URL` too.
    pub fn env_lines(&self) -> String {
        let mut lines = format!(
            "export {}={}\nexport {}={}\nexport {}={}\n",
            entraflow_core::env::ENTRAFLOW_BLOB_ENDPOINT,
            self.endpoint,
            entraflow_core::env::ENTRAFLOW_STORAGE_SCOPE,
            self.storage_scope(),
            entraflow_core::env::ENTRAFLOW_ADMIN_ENDPOINT,
            self.admin_endpoint(),
        );
        if let Some(url) = self.health_url() {
            lines.push_str(&format!(
                "export {}={url}\n",
                entraflow_core::env::ENTRAFLOW_GATE_HEALTH_URL
            ));
        }
        lines
    }

    /// Writes `gate.env` (see [`Gate::env_lines`]) into the data directory and
    /// returns its path. Its presence means the gate is serving: [`Gate::run`]
    /// removes it on shutdown, as the authority does with `env`.
    pub fn write_env_file(&self) -> Result<std::path::PathBuf, GateError> {
        let path = self.config.data_dir.join(GATE_ENV_FILE);
        entraflow_core::fsutil::write_public_file(&path, self.env_lines().as_bytes()).map_err(
            |source| GateError::Io {
                path: path.clone(),
                source,
            },
        )?;
        self.wrote_env
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(path)
    }

    /// Adds the gate's settings to another env file (the authority's `env`, for
    /// `entraflow up`), replacing any earlier gate lines in it.
    pub fn append_to_env_file(&self, path: &std::path::Path) -> Result<(), GateError> {
        let io = |source| GateError::Io {
            path: path.to_owned(),
            source,
        };
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let ours = [
            entraflow_core::env::ENTRAFLOW_BLOB_ENDPOINT,
            entraflow_core::env::ENTRAFLOW_STORAGE_SCOPE,
            entraflow_core::env::ENTRAFLOW_ADMIN_ENDPOINT,
            entraflow_core::env::ENTRAFLOW_GATE_HEALTH_URL,
        ];
        let mut text: String = existing
            .lines()
            .filter(|l| {
                !ours.iter().any(|name| {
                    l.trim_start()
                        .strip_prefix("export ")
                        .unwrap_or(l)
                        .starts_with(&format!("{name}="))
                })
            })
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(&self.env_lines());
        entraflow_core::fsutil::write_public_file(path, text.as_bytes()).map_err(io)
    }

    /// Serves until `shutdown` resolves, lets in-flight requests finish, then closes
    /// the audit log (writing a final signed checkpoint).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GateError> {
        let app = router(self.state.clone());
        let data_dir = self.config.data_dir.clone();
        let io = |source| GateError::Io {
            path: data_dir.clone(),
            source,
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let health = match self.health {
            Some((listener, _)) => {
                listener.set_nonblocking(true).map_err(io)?;
                let listener = tokio::net::TcpListener::from_std(listener).map_err(io)?;
                let app = health::router(self.state.clone());
                Some(tokio::spawn(
                    axum::serve(listener, app)
                        .with_graceful_shutdown(until_stopped())
                        .into_future(),
                ))
            }
            None => None,
        };
        let served =
            entraflow_tls::serve_https(self.listener, self.tls, app, until_stopped()).await;
        if let Some(health) = health {
            if served.is_err() {
                health.abort();
            }
            match health.await {
                Err(e) if e.is_cancelled() => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the health listener failed"),
                Err(e) => tracing::warn!(error = %e, "the health listener's task failed"),
                Ok(Ok(())) => {}
            }
        }
        served.map_err(io)?;
        if self.wrote_env.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = std::fs::remove_file(self.config.data_dir.join(GATE_ENV_FILE));
        }
        if let Err(e) = self.audit_log.close().await {
            tracing::warn!(error = %e, "closing the audit log failed");
        }
        Ok(())
    }
}

/// Binds, writes `gate.env`, and serves until `shutdown` resolves.
pub async fn serve(
    config: GateConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GateError> {
    let gate = Gate::bind(config).await?;
    gate.write_env_file()?;
    tracing::info!(endpoint = gate.endpoint(), "gate ready");
    gate.run(shutdown).await
}

/// The address this machine's clients use for a bound listener: a wildcard
/// address is reached on loopback.
fn reachable(bound: std::net::SocketAddr) -> std::net::SocketAddr {
    if bound.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::IpAddr::from([127, 0, 0, 1]), bound.port())
    } else {
        bound
    }
}
