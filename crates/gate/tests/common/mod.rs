//! A real authority and a real gate on ephemeral loopback ports, sharing one data
//! directory (so the gate trusts the authority through its env file and CA).
#![allow(dead_code, unreachable_pub)]

use entraflow_authority::{NewApplication, SecretExpiry, ServerConfig, ServerHandle};
use entraflow_gate::{Gate, GateConfig};
use entraflow_rbac::{NewAssignment, RbacStore};

pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

pub struct Env {
    pub authority: ServerHandle,
    pub endpoint: String,
    pub account_scope: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    gate_task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
    }
}

/// An application with a service principal and a secret.
pub struct App {
    pub app_id: String,
    pub oid: String,
    pub secret: String,
}

pub async fn start() -> Env {
    start_with(|_| {}).await
}

pub async fn start_with(configure: impl FnOnce(&mut GateConfig)) -> Env {
    entraflow_tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.port = 0;
    config.imds_port = 0;
    let (stop_authority, rx) = tokio::sync::oneshot::channel::<()>();
    let authority = entraflow_authority::serve(config, async {
        let _ = rx.await;
    })
    .await
    .unwrap();

    let mut gate_config = GateConfig::new(dir.path());
    configure(&mut gate_config);
    let gate = Gate::bind(gate_config).await.unwrap();
    let endpoint = gate.endpoint().to_owned();
    let account_scope = gate.storage_scope();
    gate.write_env_file().unwrap();
    let (stop_gate, rx) = tokio::sync::oneshot::channel::<()>();
    let gate_task = tokio::spawn(async move {
        gate.run(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    let http = entraflow_tls::https_client(Some(&authority.ca_pem)).unwrap();
    Env {
        authority,
        endpoint,
        account_scope,
        http,
        dir,
        stops: vec![stop_authority, stop_gate],
        gate_task: Some(gate_task),
    }
}

impl Env {
    pub fn app(&self, name: &str) -> App {
        let store = self.authority.authority.store();
        let app = store
            .create_application(&NewApplication {
                display_name: name.into(),
                ..Default::default()
            })
            .unwrap();
        let sp = store.create_service_principal(&app.app_id).unwrap();
        let secret = store
            .reset_secret(&app.app_id, SecretExpiry::Years(1), false)
            .unwrap();
        App {
            app_id: app.app_id,
            oid: sp.id,
            secret: secret.password,
        }
    }

    /// A token from the authority's v2 token endpoint.
    pub async fn token(&self, app: &App, scope: &str) -> String {
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority.authority_host, self.authority.tenant_id
        );
        let resp = self
            .http
            .post(url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", app.app_id.as_str()),
                ("client_secret", app.secret.as_str()),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(status.is_success(), "token request failed: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Assigns `role` to `oid` at `scope` (relative to the account when it starts with `/blobServices`).
    pub fn assign(&self, oid: &str, role: &str, scope: &str) {
        self.assign_with(NewAssignment::new(oid, role, self.scope(scope)));
    }

    pub fn assign_with(&self, new: NewAssignment) {
        let store = RbacStore::open(self.dir.path()).unwrap();
        store
            .create_assignment(new, time::OffsetDateTime::now_utc())
            .unwrap();
    }

    pub fn scope(&self, scope: &str) -> String {
        if scope.starts_with("/blobServices") {
            format!("{}{scope}", self.account_scope)
        } else {
            scope.to_owned()
        }
    }

    /// Waits until the gate's authorizer has picked up assignment changes (it polls
    /// the store's generation every 500 ms).
    pub async fn settle(&self) {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }

    /// Put Blob (a block blob) at `path` with `token`.
    pub async fn put_blob(
        &self,
        path: &str,
        token: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.request(reqwest::Method::PUT, path, Some(token))
            .header("x-ms-blob-type", "BlockBlob")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// A raw request with the headers every Azure SDK sends.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.endpoint))
            .header("x-ms-version", "2025-01-05");
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req
    }

    pub async fn create_container(&self, token: &str, name: &str) {
        let resp = self
            .request(
                reqwest::Method::PUT,
                &format!("/{name}?restype=container"),
                Some(token),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    }

    /// Every audit row of the gate's chain, as parsed JSON records.
    pub async fn audit_records(&self) -> Vec<serde_json::Value> {
        use entraflow_audit::StoreBackend;
        let store = entraflow_audit::AnyStore::open(&entraflow_audit::StoreUrl::default_for(
            self.dir.path(),
        ))
        .await
        .unwrap();
        let rows = store
            .query(&entraflow_audit::Filter::default(), None, 10_000)
            .await
            .unwrap();
        rows.into_iter()
            .map(|r| serde_json::from_str(&r.record).unwrap())
            .collect()
    }
}
