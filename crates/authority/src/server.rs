//! The HTTP faces of the authority: the HTTPS listener (token, device code,
//! authorize and its sign-in page, logout, UserInfo, discovery, JWKS,
//! device-login page) and the plain-HTTP managed-identity listener, plus the env
//! files that tell clients where they are.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use entraflow_core::Aadsts;
use entraflow_core::env as vars;
use entraflow_core::fsutil;

use entraflow_audit::{AuditLog, AuditOptions, CheckpointSigner, StoreUrl};

use crate::authority::{Authority, AuthorityOptions, ClientInfo, MAX_BODY, TokenRequest};
use crate::error::{AuthorityError, OAuthError};
use crate::imds::{self, ImdsState};
use crate::issue::EndpointVersion;
use crate::store::Store;

/// Name of the env file written when the authority is ready.
pub const ENV_FILE: &str = "env";
/// Name of the env file that points pod-identity-aware clients at the IMDS listener.
pub const IMDS_ENV_FILE: &str = "imds.env";
/// The audit chain token decisions are appended to.
pub const AUDIT_LOG_ID: &str = "entraflow/authority";

/// How to run the authority.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory (database, CA, env files).
    pub data_dir: PathBuf,
    /// HTTPS port on 127.0.0.1 (0 = ephemeral).
    pub port: u16,
    /// Plain-HTTP managed-identity port on 127.0.0.1 (0 = ephemeral).
    pub imds_port: u16,
    /// The host whose managed identities the IMDS listener serves.
    pub host_name: String,
    /// Device-code polling interval told to clients, seconds.
    pub device_code_interval: u64,
    /// When wrong passwords and client secrets lock an account, app or source.
    pub lockout: crate::LockoutPolicy,
    /// Where token decisions are audited (chain [`AUDIT_LOG_ID`]); `None`:
    /// `<data_dir>/audit.db`, the file the gate writes too.
    pub audit_store: Option<StoreUrl>,
}

impl ServerConfig {
    /// Defaults: ports 8443 and 8089, host `local-vm`, interval 5 s.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            port: 8443,
            imds_port: 8089,
            host_name: "local-vm".into(),
            device_code_interval: 5,
            lockout: crate::LockoutPolicy::default(),
            audit_store: None,
        }
    }
}

/// A running authority.
#[derive(Debug)]
pub struct ServerHandle {
    /// Where the HTTPS listener is bound.
    pub https_addr: SocketAddr,
    /// Where the managed-identity listener is bound.
    pub imds_addr: SocketAddr,
    /// `https://127.0.0.1:PORT`: `AZURE_AUTHORITY_HOST`.
    pub authority_host: String,
    /// `http://127.0.0.1:PORT`.
    pub imds_endpoint: String,
    /// The default tenant's id.
    pub tenant_id: String,
    /// The CA certificate clients must trust.
    pub ca_pem_path: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The token service (for in-process callers and tests).
    pub authority: Arc<Authority>,
    audit_log: AuditLog,
    tasks: tokio::task::JoinSet<std::io::Result<()>>,
}

impl ServerHandle {
    /// The audit log every token decision is appended to (chain [`AUDIT_LOG_ID`]).
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit_log
    }

    /// Waits until both listeners have shut down (in-flight requests finish and
    /// are audited), then closes the audit log with a final signed checkpoint.
    pub async fn wait(mut self) -> Result<(), AuthorityError> {
        let mut failed = None;
        while let Some(res) = self.tasks.join_next().await {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failed.get_or_insert(AuthorityError::Tls(format!("listener failed: {e}")));
                }
                Err(e) => {
                    failed.get_or_insert(AuthorityError::Tls(format!("listener task failed: {e}")));
                }
            }
        }
        let closed = match self.audit_log.close().await {
            // Closed earlier through `audit_log()`: nothing left to finish.
            Ok(_) | Err(entraflow_audit::AuditError::Closed) => Ok(()),
            Err(e) => Err(AuthorityError::Audit(format!("closing the audit log: {e}"))),
        };
        match failed {
            Some(e) => Err(e),
            None => closed,
        }
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AuthorityError {
    let path = path.to_owned();
    move |source| AuthorityError::Io { what, path, source }
}

/// Starts the authority: opens the store, binds both listeners on 127.0.0.1,
/// writes `<data-dir>/env` (its appearance means "ready"), `imds.env` and
/// `hosts/<host>/identity.env`, and serves until `shutdown` resolves.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ServerHandle, AuthorityError> {
    entraflow_tls::install_crypto_provider();
    let data_dir = config.data_dir.clone();
    let store = Arc::new(Store::open(&data_dir)?);
    let env_path = data_dir.join(ENV_FILE);
    match std::fs::remove_file(&env_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_err("removing stale env file", &env_path)(e));
        }
        _ => {}
    }
    let ca = entraflow_tls::LocalCa::load_or_create(&data_dir)
        .map_err(|e| AuthorityError::Tls(e.to_string()))?;
    let tls_config = ca
        .server_config(&[])
        .map_err(|e| AuthorityError::Tls(e.to_string()))?;

    let bind = |port: u16, what: &'static str| {
        entraflow_tls::bind(what, (Ipv4Addr::LOCALHOST, port).into())
    };
    let https_listener = bind(config.port, "the authority's HTTPS port")?;
    let imds_listener = bind(config.imds_port, "the managed-identity (IMDS) port")?;
    imds_listener
        .set_nonblocking(true)
        .map_err(io_err("configuring listener", &data_dir))?;
    let https_addr = https_listener
        .local_addr()
        .map_err(io_err("reading listener address", &data_dir))?;
    let imds_addr = imds_listener
        .local_addr()
        .map_err(io_err("reading listener address", &data_dir))?;
    let authority_host = format!("https://127.0.0.1:{}", https_addr.port());
    let imds_endpoint = format!("http://127.0.0.1:{}", imds_addr.port());

    let http = entraflow_tls::https_client(Some(ca.ca_pem()))
        .map_err(|e| AuthorityError::Tls(e.to_string()))?;
    let audit_log = open_audit_log(&data_dir, config.audit_store.clone()).await?;
    let authority = Arc::new(
        Authority::new(
            store.clone(),
            &authority_host,
            http,
            AuthorityOptions {
                device_code_interval: config.device_code_interval,
                lockout: config.lockout,
            },
        )?
        .with_audit_log(audit_log.clone()),
    );
    let tenant = store.default_tenant()?;

    // The App Service identity header is a fresh per-run secret for this host.
    let mut header_bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut header_bytes)
        .map_err(|_| AuthorityError::Crypto("random identity header".into()))?;
    let identity_header = hex::encode(header_bytes);
    let host_dir = data_dir.join("hosts").join(&config.host_name);
    fsutil::create_private_dir(&host_dir).map_err(io_err("creating host directory", &host_dir))?;
    let identity_env = host_dir.join("identity.env");
    fsutil::write_private_file(
        &identity_env,
        format!(
            "export {}={imds_endpoint}/msi/token\nexport {}={identity_header}\n",
            vars::IDENTITY_ENDPOINT,
            vars::IDENTITY_HEADER
        )
        .as_bytes(),
    )
    .map_err(io_err("writing identity.env", &identity_env))?;
    let imds_state = ImdsState {
        authority: authority.clone(),
        host_name: config.host_name.clone(),
        identity_header_sha256: aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            identity_header.as_bytes(),
        )
        .as_ref()
        .to_vec(),
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let env_on_stop = env_path.clone();
    tokio::spawn(async move {
        shutdown.await;
        // The env file means "ready": withdraw it before the listeners close.
        let _ = std::fs::remove_file(&env_on_stop);
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    let app = router(authority.clone());
    tasks.spawn(entraflow_tls::serve_https(
        https_listener,
        tls_config,
        app,
        stopped(),
    ));
    let imds_app = imds::router(imds_state);
    let imds_listener =
        imds_listener_of(imds_listener).map_err(io_err("registering listener", &data_dir))?;
    let imds_stop = stopped();
    tasks.spawn(async move {
        axum::serve(
            imds_listener,
            imds_app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(imds_stop)
        .await
    });

    let ca_pem_path = ca.ca_pem_path();
    let bundle_path = data_dir.join(CA_BUNDLE_FILE);
    fsutil::write_public_file(&bundle_path, ca_bundle(ca.ca_pem()).as_bytes())
        .map_err(io_err("writing the CA bundle", &bundle_path))?;
    let imds_env = data_dir.join(IMDS_ENV_FILE);
    fsutil::write_public_file(
        &imds_env,
        format!(
            "export {}={imds_endpoint}\n",
            vars::AZURE_POD_IDENTITY_AUTHORITY_HOST
        )
        .as_bytes(),
    )
    .map_err(io_err("writing imds.env", &imds_env))?;
    // ManagedIdentityCredential finds this host's IMDS through the variable, as
    // on an AKS node with pod identity; without an identity it would only slow
    // DefaultAzureCredential's chain down.
    let managed_identity = !store
        .managed_identities_on_host(&config.host_name)?
        .is_empty();
    let env = env_file(
        &authority_host,
        &tenant.id,
        &bundle_path,
        &data_dir,
        &imds_endpoint,
        managed_identity,
    );
    fsutil::write_public_file(&env_path, env.as_bytes())
        .map_err(io_err("writing env file", &env_path))?;
    tracing::info!(host = %authority_host, imds = %imds_endpoint, tenant = %tenant.id, "authority ready");
    Ok(ServerHandle {
        https_addr,
        imds_addr,
        authority_host,
        imds_endpoint,
        tenant_id: tenant.id,
        ca_pem: ca.ca_pem().to_owned(),
        ca_pem_path,
        authority,
        audit_log,
        tasks,
    })
}

/// Opens chain [`AUDIT_LOG_ID`] in `store` (default `<data_dir>/audit.db`), signing
/// checkpoints with the data directory's audit key (shared with the gate).
async fn open_audit_log(
    data_dir: &Path,
    store: Option<StoreUrl>,
) -> Result<AuditLog, AuthorityError> {
    let url = store.unwrap_or_else(|| StoreUrl::default_for(data_dir));
    let signer =
        CheckpointSigner::load_or_create(data_dir, entraflow_audit::checkpoint::DEFAULT_KEY_NAME)
            .map_err(|e| AuthorityError::Audit(format!("audit signing key: {e}")))?;
    AuditLog::open(&url, signer, AuditOptions::new(AUDIT_LOG_ID))
        .await
        .map_err(|e| AuthorityError::Audit(format!("opening {url}: {e}")))
}

/// The CA bundle `env` points `SSL_CERT_FILE` and `REQUESTS_CA_BUNDLE` at.
pub const CA_BUNDLE_FILE: &str = "ca-bundle.pem";

/// Where distributions keep their trusted roots (the list OpenSSL's probing uses).
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The local CA followed by the system's roots: `SSL_CERT_FILE` replaces a
/// client's trust store, so the local CA alone would break every other TLS
/// connection (pip, curl) of a shell that sourced `env`.
fn ca_bundle(local_ca: &str) -> String {
    let mut bundle = local_ca.trim_end().to_owned();
    bundle.push('\n');
    match SYSTEM_ROOTS
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().map(|text| (p, text)))
    {
        Some((path, roots)) => {
            bundle.push_str(&format!("# system roots from {path}\n"));
            bundle.push_str(&roots);
        }
        None => tracing::warn!(
            "no system CA bundle found; {CA_BUNDLE_FILE} holds only the local CA, so clients that source env trust nothing else"
        ),
    }
    bundle
}

fn shell_quote(v: &str) -> String {
    if v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/:._-@+,=".contains(&b))
    {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

fn env_file(
    host: &str,
    tenant: &str,
    ca: &Path,
    data_dir: &Path,
    imds: &str,
    managed_identity: bool,
) -> String {
    let ca = ca.to_string_lossy();
    let data = data_dir.to_string_lossy();
    let imds_host = managed_identity.then_some((vars::AZURE_POD_IDENTITY_AUTHORITY_HOST, imds));
    [
        (vars::AZURE_AUTHORITY_HOST, host),
        (vars::AZURE_TENANT_ID, tenant),
        (vars::SSL_CERT_FILE, &ca),
        (vars::REQUESTS_CA_BUNDLE, &ca),
        (vars::ENTRAFLOW_DATA_DIR, &data),
        ("ENTRAFLOW_AUTHORITY_URL", host),
        ("ENTRAFLOW_IMDS_ENDPOINT", imds),
        // Every process that sources this file shares one token refresh per identity
        // on this host (the node's shared token cache), instead of one per process.
        (vars::ENTRAFLOW_SHARED_TOKEN_CACHE, "1"),
    ]
    .iter()
    .chain(imds_host.iter())
    .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
    .collect()
}

/// The HTTPS router.
pub(crate) fn router(authority: Arc<Authority>) -> Router {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(config_v2),
        )
        .route("/{tenant}/.well-known/openid-configuration", get(config_v1))
        .route("/{tenant}/discovery/v2.0/keys", get(keys_v2))
        .route("/{tenant}/discovery/keys", get(keys_v1))
        .route("/{tenant}/oauth2/v2.0/token", post(token_v2))
        .route("/{tenant}/oauth2/token", post(token_v1))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(devicecode_v2))
        .route("/{tenant}/oauth2/devicecode", post(devicecode_v1))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(crate::signin::authorize_v2).post(crate::signin::sign_in_v2),
        )
        .route(
            "/{tenant}/oauth2/authorize",
            get(crate::signin::authorize_v1).post(crate::signin::sign_in_v1),
        )
        .route(
            "/{tenant}/oauth2/v2.0/logout",
            get(crate::signin::logout_get).post(crate::signin::logout_post),
        )
        .route(
            "/{tenant}/oauth2/logout",
            get(crate::signin::logout_get).post(crate::signin::logout_post),
        )
        .route(
            "/oidc/userinfo",
            get(crate::userinfo::userinfo).post(crate::userinfo::userinfo),
        )
        .route(
            "/devicelogin",
            get(crate::devicelogin::page).post(crate::devicelogin::submit),
        )
        .fallback(not_found)
        // The body limit is enforced while reading (so the answer is Entra's 400, not a bare 413).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(authority)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": "not_found", "error_description": "No such endpoint on this authority."}))).into_response()
}

fn json_or_error(res: Result<serde_json::Value, OAuthError>, headers: &HeaderMap) -> Response {
    match res {
        Ok(v) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            Json(v),
        )
            .into_response(),
        Err(e) => {
            let corr = headers
                .get("client-request-id")
                .and_then(|v| v.to_str().ok());
            (e.http_status(), Json(e.body(corr))).into_response()
        }
    }
}

async fn config_v2(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    h: HeaderMap,
) -> Response {
    json_or_error(a.openid_configuration_v2(&t), &h)
}
async fn config_v1(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    h: HeaderMap,
) -> Response {
    json_or_error(a.openid_configuration_v1(&t), &h)
}
async fn keys_v2(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    h: HeaderMap,
) -> Response {
    json_or_error(a.jwks(&t, true), &h)
}
async fn keys_v1(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    h: HeaderMap,
) -> Response {
    json_or_error(a.jwks(&t, false), &h)
}

/// Reads and parses a form body: at most [`MAX_BODY`] bytes, form-encoded, each
/// parameter once. Every failure is Entra's 400 `invalid_request`.
pub(crate) async fn read_form(headers: &HeaderMap, body: Body) -> Result<TokenRequest, OAuthError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(OAuthError::new(
            Aadsts::MalformedRequest,
            "The request body must be application/x-www-form-urlencoded.",
        ));
    }
    let bytes = read_limited(body).await.map_err(|_| {
        OAuthError::new(
            Aadsts::MalformedRequest,
            format!("The request body is larger than {MAX_BODY} bytes or could not be read."),
        )
    })?;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    TokenRequest::parse(&bytes, auth)
}

/// How much of an oversized body is read and discarded so the client, still
/// sending, receives the 400 instead of a reset connection.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads at most [`MAX_BODY`] bytes; an oversized body is drained (up to
/// [`DRAIN_LIMIT`]) and refused.
pub(crate) async fn read_limited(body: Body) -> Result<Vec<u8>, ()> {
    use futures::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ())?;
        total += chunk.len();
        if total <= MAX_BODY {
            buf.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > MAX_BODY { Err(()) } else { Ok(buf) }
}

async fn token(
    a: Arc<Authority>,
    t: String,
    version: EndpointVersion,
    peer: SocketAddr,
    h: HeaderMap,
    body: Body,
) -> Response {
    let user_agent = h.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let res = match read_form(&h, body).await {
        Ok(req) => {
            a.token(&t, version, &req.with_client(Some(peer), user_agent))
                .await
        }
        // Unreadable requests are refusals too, and audited as such.
        Err(e) => Err(a
            .refuse_unparsed("-", &ClientInfo::new(Some(peer), user_agent), e)
            .await),
    };
    json_or_error(res, &h)
}
async fn token_v2(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    h: HeaderMap,
    body: Body,
) -> Response {
    token(a, t, EndpointVersion::V2, peer, h, body).await
}
async fn token_v1(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    h: HeaderMap,
    body: Body,
) -> Response {
    token(a, t, EndpointVersion::V1, peer, h, body).await
}

async fn devicecode(
    a: Arc<Authority>,
    t: String,
    version: EndpointVersion,
    h: HeaderMap,
    body: Body,
) -> Response {
    let res = match read_form(&h, body).await {
        Ok(req) => a.device_authorization(&t, version, &req),
        Err(e) => Err(e),
    };
    json_or_error(res, &h)
}
async fn devicecode_v2(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    h: HeaderMap,
    body: Body,
) -> Response {
    devicecode(a, t, EndpointVersion::V2, h, body).await
}
async fn devicecode_v1(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    h: HeaderMap,
    body: Body,
) -> Response {
    devicecode(a, t, EndpointVersion::V1, h, body).await
}

/// A loopback listener whose accepted connections get `TCP_NODELAY`.
type ImdsListener = axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)>;

/// The managed-identity endpoint's listener: plain HTTP on loopback, with
/// `TCP_NODELAY` on each accepted connection (a token answer is one small write
/// that must not wait for the client's delayed ACK), as the HTTPS listeners have.
fn imds_listener_of(listener: std::net::TcpListener) -> std::io::Result<ImdsListener> {
    use axum::serve::ListenerExt as _;
    fn nodelay(tcp: &mut tokio::net::TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set on a managed-identity connection");
        }
    }
    Ok(tokio::net::TcpListener::from_std(listener)?.tap_io(nodelay as fn(&mut _)))
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener as _;

    #[tokio::test]
    async fn managed_identity_connections_have_nagle_off() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let mut listener = super::imds_listener_of(std_listener).unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await;
        assert!(stream.nodelay().unwrap());
    }
}
