//! A real authority on ephemeral loopback ports, started in-process, that tests can
//! stop and start again on the same port and data directory.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use entraflow_authority::{Lifetime, NewApplication, SecretExpiry, ServerConfig, ServerHandle};
use entraflow_core::Secret;
use entraflow_credential::{
    AuthorityHost, ClientSecretCredential, CredentialOptions, RefreshPolicy,
};

pub struct Authority {
    pub dir: tempfile::TempDir,
    pub handle: Option<ServerHandle>,
    pub port: u16,
    pub imds_port: u16,
    pub tenant: String,
    pub ca_pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A service principal with a secret.
pub struct App {
    pub app_id: String,
    pub secret: String,
}

impl Authority {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut this = Self {
            dir,
            handle: None,
            port: 0,
            imds_port: 0,
            tenant: String::new(),
            ca_pem: String::new(),
            stop: None,
        };
        this.restart().await;
        this
    }

    /// Starts the server on the same ports and data directory as before.
    pub async fn restart(&mut self) {
        let mut config = ServerConfig::new(self.dir.path());
        config.port = self.port;
        config.imds_port = self.imds_port;
        config.device_code_interval = 1;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = entraflow_authority::serve(config, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        self.port = handle.https_addr.port();
        self.imds_port = handle.imds_addr.port();
        self.tenant = handle.tenant_id.clone();
        self.ca_pem = handle.ca_pem.clone();
        self.handle = Some(handle);
        self.stop = Some(tx);
    }

    /// Stops the server and waits until its listeners are closed.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.wait().await.unwrap();
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn host(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn imds_host(&self) -> String {
        format!("http://127.0.0.1:{}", self.imds_port)
    }

    pub fn store(&self) -> &entraflow_authority::Store {
        self.handle.as_ref().expect("running").authority.store()
    }

    /// Token lifetime of the tenant, seconds.
    pub fn set_token_lifetime(&self, seconds: i64) {
        self.store()
            .set_token_lifetime(Lifetime {
                min: seconds,
                max: seconds,
            })
            .unwrap();
    }

    pub fn app(&self, name: &str) -> App {
        let app = self
            .store()
            .create_application(&NewApplication {
                display_name: name.into(),
                ..Default::default()
            })
            .unwrap();
        self.store().create_service_principal(&app.app_id).unwrap();
        let secret = self
            .store()
            .reset_secret(&app.app_id, SecretExpiry::Years(1), false)
            .unwrap();
        App {
            app_id: app.app_id,
            secret: secret.password,
        }
    }

    pub fn options(&self, refresh: RefreshPolicy) -> CredentialOptions {
        self.options_at(&self.host(), refresh)
    }

    /// Options pointing at `host` (e.g. a proxy in front of the authority).
    pub fn options_at(&self, host: &str, refresh: RefreshPolicy) -> CredentialOptions {
        CredentialOptions {
            authority: AuthorityHost::parse(host, false).unwrap(),
            refresh,
            extra_ca_pem: Some(self.ca_pem.clone()),
        }
    }

    pub fn secret_credential(
        &self,
        app: &App,
        options: CredentialOptions,
    ) -> ClientSecretCredential {
        ClientSecretCredential::new(
            &self.tenant,
            &app.app_id,
            Secret::new(app.secret.clone()),
            options,
        )
        .unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A policy for second-long tokens: short backoff so retries happen within the test.
pub fn fast_policy() -> RefreshPolicy {
    RefreshPolicy {
        retry_backoff: Duration::from_millis(300),
        ..RefreshPolicy::default()
    }
}

pub const STORAGE: &str = "https://storage.azure.com/.default";

pub fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Sleeps until the Unix time `t` (seconds).
pub async fn sleep_until_unix(t: f64) {
    let now = unix_now_f64();
    if t > now {
        tokio::time::sleep(Duration::from_secs_f64(t - now)).await;
    }
}

/// A TLS-terminating reverse proxy in front of the authority that counts token requests.
pub struct CountingProxy {
    pub url: String,
    pub token_requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl CountingProxy {
    pub fn count(&self) -> usize {
        self.token_requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

pub fn counting_proxy(authority: &Authority) -> CountingProxy {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let ca = entraflow_tls::LocalCa::load_or_create(authority.data_dir()).unwrap();
    let config = ca.server_config(&[]).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let upstream = authority.host();
    let client = entraflow_tls::https_client(Some(&authority.ca_pem)).unwrap();
    let token_requests = Arc::new(AtomicUsize::new(0));
    let counter = token_requests.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let client = client.clone();
            let upstream = upstream.clone();
            let counter = counter.clone();
            async move {
                if method == Method::POST && uri.path().ends_with("/oauth2/v2.0/token") {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let target = format!(
                    "{upstream}{}",
                    uri.path_and_query().map_or("/", |p| p.as_str())
                );
                let mut request = client.request(method, target).body(body);
                if let Some(ct) = headers.get(header::CONTENT_TYPE) {
                    request = request.header(header::CONTENT_TYPE, ct);
                }
                match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        let ct = response.headers().get(header::CONTENT_TYPE).cloned();
                        let body = response.bytes().await.unwrap_or_default();
                        let mut out = axum::response::Response::new(axum::body::Body::from(body));
                        *out.status_mut() = status;
                        if let Some(ct) = ct {
                            out.headers_mut().insert(header::CONTENT_TYPE, ct);
                        }
                        out
                    }
                    Err(e) => {
                        let mut out =
                            axum::response::Response::new(axum::body::Body::from(e.to_string()));
                        *out.status_mut() = StatusCode::BAD_GATEWAY;
                        out
                    }
                }
            }
        },
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(entraflow_tls::serve_https(listener, config, app, async {
        let _ = rx.await;
    }));
    CountingProxy {
        url,
        token_requests,
        stop: Some(tx),
    }
}
