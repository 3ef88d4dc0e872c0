//! The authority and a gate trusting it, sharing one data directory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use entraflow_gate::{Gate, GateConfig};
use entraflow_rbac::{Authorizer, NewAssignment, RbacStore};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::{App, Authority};

/// The `x-ms-version` Azure SDKs send.
pub const X_MS_VERSION: &str = "2025-01-05";

/// How long [`Stack::wait_for_policy`] waits before it fails the test.
const POLICY_DEADLINE: Duration = Duration::from_secs(10);

/// A real authority and a real gate (`Gate::bind` + `run`) on ephemeral loopback
/// ports. The gate finds the authority through the data directory's env file and
/// CA, as `entraflow gate serve` does. Dropping it stops both servers.
pub struct Stack {
    /// The authority (apps, tokens, its HTTPS client).
    pub authority: Authority,
    /// The account URL (`https://127.0.0.1:PORT/<account>`).
    pub endpoint: String,
    /// The storage account's name.
    pub account: String,
    /// The storage account's Azure scope.
    pub account_scope: String,
    /// The gate's health and metrics listener (`http://127.0.0.1:PORT`), on an
    /// ephemeral port unless the configuration turned it off.
    pub health_url: Option<String>,
    authorizer: Arc<Authorizer>,
    // Dropping it stops the gate.
    _stop_gate: oneshot::Sender<()>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("authority", &self.authority)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Starts the authority, then a gate with the default configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts the authority, then a gate whose configuration `configure` adjusts.
    pub async fn start_with(configure: impl FnOnce(&mut GateConfig)) -> Self {
        let authority = Authority::start().await;
        let mut config = GateConfig::new(authority.data_dir());
        config.health_bind = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        configure(&mut config);
        let account = config.account.clone();
        let gate = Gate::bind(config).await.unwrap();
        let endpoint = gate.endpoint().to_owned();
        let account_scope = gate.storage_scope();
        let authorizer = gate.authorizer();
        let health_url = gate.health_url().map(str::to_owned);
        gate.write_env_file().unwrap();
        let (stop_gate, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            gate.run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            authority,
            endpoint,
            account,
            account_scope,
            health_url,
            authorizer,
            _stop_gate: stop_gate,
        }
    }

    /// The data directory both servers share.
    pub fn data_dir(&self) -> &std::path::Path {
        self.authority.data_dir()
    }

    /// See [`Authority::app`].
    pub fn app(&self, name: &str) -> App {
        self.authority.app(name)
    }

    /// See [`Authority::token`].
    pub async fn token(&self, app: &App, scope: &str) -> String {
        self.authority.token(app, scope).await
    }

    /// `scope`, made absolute under the account when it starts with `/blobServices`.
    pub fn scope(&self, scope: &str) -> String {
        if scope.starts_with("/blobServices") {
            format!("{}{scope}", self.account_scope)
        } else {
            scope.to_owned()
        }
    }

    /// Assigns `role` to `oid` at `scope` (see [`Stack::scope`]) in the role store,
    /// as `entraflow role assignment create` does. The gate sees it after
    /// [`Stack::wait_for_policy`].
    pub fn assign(&self, oid: &str, role: &str, scope: &str) {
        self.assign_with(NewAssignment::new(oid, role, self.scope(scope)));
    }

    /// Stores `new` in the role store (see [`Stack::assign`]).
    pub fn assign_with(&self, new: NewAssignment) {
        RbacStore::open(self.data_dir())
            .unwrap()
            .create_assignment(new, time::OffsetDateTime::now_utc())
            .unwrap();
    }

    /// Returns once the gate decides with every role change stored so far: its
    /// authorizer's generation has reached the store's. The gate re-reads the store
    /// on its own only on a request, at most every 500 ms; this makes it re-read now,
    /// and retries, up to a deadline, while the store is busy.
    pub async fn wait_for_policy(&self) {
        let target = RbacStore::open(self.data_dir())
            .unwrap()
            .generation()
            .unwrap();
        let deadline = Instant::now() + POLICY_DEADLINE;
        loop {
            let refreshed = self.authorizer.refresh();
            let loaded = self.authorizer.generation();
            if loaded >= target {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the gate's authorizer is at generation {loaded}, the role store at {target}: {refreshed:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A request to `path` under the account URL, with the headers every Azure SDK
    /// sends (`x-ms-version`, and the bearer `token` if any).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .authority
            .http
            .request(method, format!("{}{path}", self.endpoint))
            .header("x-ms-version", X_MS_VERSION);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req
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

    /// Create Container `name` with `token`; fails the test unless it is created.
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

    /// Every audit row in the data directory's store, as parsed JSON records.
    pub async fn audit_records(&self) -> Vec<Value> {
        use entraflow_audit::StoreBackend as _;
        let store = entraflow_audit::AnyStore::open(&entraflow_audit::StoreUrl::default_for(
            self.data_dir(),
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
