//! The authority alone, on ephemeral loopback ports in a fresh data directory.

use std::path::Path;

use entraflow_authority::{
    Application, Lifetime, NewApplication, SecretExpiry, ServerConfig, ServerHandle,
};
use entraflow_core::Secret;
use entraflow_credential::{
    AuthorityHost, ClientSecretCredential, CredentialOptions, RefreshPolicy,
};
use serde_json::Value;
use tokio::sync::oneshot;

/// An application with a service principal and a client secret (no `Debug`: it
/// would print the secret).
#[derive(Clone)]
pub struct App {
    /// The application (client) id.
    pub app_id: String,
    /// The service principal's object id: what role assignments name.
    pub oid: String,
    /// The client secret.
    pub secret: String,
}

struct Running {
    handle: ServerHandle,
    // Dropping it stops the server too.
    stop: oneshot::Sender<()>,
}

/// A real authority (`entraflow_authority::serve`) that a test can stop and start
/// again on the same ports and data directory. Dropping it stops the server.
pub struct Authority {
    dir: tempfile::TempDir,
    config: ServerConfig,
    running: Option<Running>,
    authority_host: String,
    imds_endpoint: String,
    tenant: String,
    ca_pem: String,
    /// An HTTPS client that trusts the data directory's CA.
    pub http: reqwest::Client,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("authority_host", &self.authority_host)
            .field("running", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

async fn serve(config: ServerConfig) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = entraflow_authority::serve(config, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    Running { handle, stop }
}

impl Authority {
    /// Starts an authority on ephemeral ports in a new temporary data directory.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts an authority whose configuration `configure` has changed (the data
    /// directory and ports are the test kit's).
    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        entraflow_tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path());
        // Device-code tests poll at this interval; the default would make them slow.
        config.device_code_interval = 1;
        configure(&mut config);
        (config.data_dir, config.port, config.imds_port) = (dir.path().to_owned(), 0, 0);
        let running = serve(config.clone()).await;
        let handle = &running.handle;
        Self {
            authority_host: handle.authority_host.clone(),
            imds_endpoint: handle.imds_endpoint.clone(),
            tenant: handle.tenant_id.clone(),
            ca_pem: handle.ca_pem.clone(),
            http: entraflow_tls::https_client(Some(&handle.ca_pem)).unwrap(),
            running: Some(running),
            config,
            dir,
        }
    }

    /// Stops the server and waits until its listeners are closed and its audit log
    /// has written its final checkpoint.
    pub async fn stop(&mut self) {
        if let Some(Running { handle, stop }) = self.running.take() {
            let _ = stop.send(());
            handle.wait().await.unwrap();
        }
    }

    /// Starts the server again on the same ports and data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        let port = |url: &str| url.rsplit(':').next().unwrap().parse().unwrap();
        let mut config = self.config.clone();
        config.port = port(&self.authority_host);
        config.imds_port = port(&self.imds_endpoint);
        self.running = Some(serve(config).await);
    }

    /// The running server.
    pub fn handle(&self) -> &ServerHandle {
        &self
            .running
            .as_ref()
            .expect("the authority is stopped")
            .handle
    }

    /// The directory store, for admin changes (`entraflow ad …`).
    pub fn store(&self) -> &entraflow_authority::Store {
        self.handle().authority.store()
    }

    /// The data directory (shared with the gate of a [`crate::Stack`]).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `AZURE_AUTHORITY_HOST`: `https://127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.authority_host
    }

    /// The managed-identity (IMDS) endpoint: `http://127.0.0.1:PORT`.
    pub fn imds_endpoint(&self) -> &str {
        &self.imds_endpoint
    }

    /// The default tenant's id.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// `path` on the authority's HTTPS listener.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.authority_host)
    }

    /// An HTTPS client that, like a test acting as the browser, does not follow
    /// redirects, so the `Location` of a sign-in can be read.
    pub fn browser(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(self.ca_pem.as_bytes()).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// The records of one audit chain (`log_id`) in the data directory, in order.
    pub async fn audit_chain(&self, log_id: &str) -> Vec<entraflow_audit::Record> {
        crate::audit_chain(self.data_dir(), log_id).await
    }

    /// Sets the tenant's token lifetime, in seconds.
    pub fn set_token_lifetime(&self, seconds: i64) {
        self.store()
            .set_token_lifetime(Lifetime {
                min: seconds,
                max: seconds,
            })
            .unwrap();
    }

    /// Creates an application named `name` with a service principal and a secret.
    pub fn app(&self, name: &str) -> App {
        let store = self.store();
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

    /// Creates a public client application named `name` (no secret), as people
    /// sign in to with device-code login.
    pub fn public_app(&self, name: &str) -> Application {
        self.store()
            .create_application(&NewApplication {
                display_name: name.into(),
                public_client: true,
                ..Default::default()
            })
            .unwrap()
    }

    /// Posts `form` to `path`: the status and the JSON body.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Posts `form` to the tenant's v2 token endpoint.
    pub async fn token_v2(&self, form: &[(&str, &str)]) -> (u16, Value) {
        self.post_form(&format!("/{}/oauth2/v2.0/token", self.tenant), form)
            .await
    }

    /// An access token for `app` (client credentials with its secret) for `scope`.
    pub async fn token(&self, app: &App, scope: &str) -> String {
        let (status, body) = self
            .token_v2(&[
                ("grant_type", "client_credentials"),
                ("client_id", &app.app_id),
                ("client_secret", &app.secret),
                ("scope", scope),
            ])
            .await;
        assert_eq!(status, 200, "token request failed: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// GETs `path`: the status and the JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Verifies `token` against the published JWKS and returns its claims.
    pub async fn verify(&self, token: &str) -> Value {
        let (_, jwks) = self
            .get_json(&format!("/{}/discovery/v2.0/keys", self.tenant))
            .await;
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        let jwk = set
            .find(header.kid.as_deref().unwrap())
            .expect("token kid is in JWKS");
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &key, &v)
            .unwrap()
            .claims
    }

    /// Credential options for this authority, trusting its CA.
    pub fn credential_options(&self, refresh: RefreshPolicy) -> CredentialOptions {
        self.credential_options_at(&self.authority_host, refresh)
    }

    /// Credential options pointing at `host` (e.g. a proxy in front of the
    /// authority), trusting the authority's CA.
    pub fn credential_options_at(&self, host: &str, refresh: RefreshPolicy) -> CredentialOptions {
        CredentialOptions {
            authority: AuthorityHost::parse(host, false).unwrap(),
            refresh,
            extra_ca_pem: Some(self.ca_pem.clone()),
        }
    }

    /// A client-secret credential for `app` in the default tenant.
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
}
