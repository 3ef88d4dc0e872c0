//! The authority and a SQL gate in front of the test PostgreSQL
//! (`ENTRAFLOW_TEST_POSTGRES_URL`, started by `scripts/test.sh`), with helpers
//! to map principals, grant the connect action and connect through the gate with
//! `tokio-postgres` over TLS.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use entraflow_gate::sql::{
    BackendConnections, CONNECT_ACTION, MappedPrincipal, PrincipalStore, PrincipalType, SqlGate,
    SqlGateConfig,
};
use entraflow_rbac::{Authorizer, NewAssignment, RbacStore, RoleDefinition};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use crate::{App, Authority};

/// The scope a PostgreSQL token is requested for.
pub const OSSRDBMS_SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
/// The custom role the tests grant the connect action with.
pub const SQL_CONNECT_ROLE: &str = "PostgreSQL Data Connector (entraflow)";

/// A real authority and a real SQL gate relaying to the test PostgreSQL.
pub struct SqlStack {
    /// The authority.
    pub authority: Authority,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The backend's admin URL (a superuser with trust authentication).
    pub backend_url: String,
    /// The server's Azure scope.
    pub server_scope: String,
    /// The CA certificate clients verify the gate with.
    pub ca_pem_path: std::path::PathBuf,
    connections: BackendConnections,
    authorizer: Arc<Authorizer>,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for SqlStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStack")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The test PostgreSQL's URL; `None` (the test is skipped) when it is not set,
/// unless `ENTRAFLOW_REQUIRE_POSTGRES=1` says it must be.
pub fn test_postgres_url() -> Option<String> {
    match std::env::var("ENTRAFLOW_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("ENTRAFLOW_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "ENTRAFLOW_REQUIRE_POSTGRES=1 but ENTRAFLOW_TEST_POSTGRES_URL is not set"
            );
            eprintln!("skipped: ENTRAFLOW_TEST_POSTGRES_URL is not set (scripts/test.sh sets it)");
            None
        }
    }
}

impl SqlStack {
    /// Starts the authority and a SQL gate with defaults; `None` without a test
    /// PostgreSQL.
    pub async fn start() -> Option<Self> {
        Self::start_with(|_| {}).await
    }

    /// Like [`SqlStack::start`], with the gate's configuration adjusted.
    pub async fn start_with(configure: impl FnOnce(&mut SqlGateConfig)) -> Option<Self> {
        let backend_url = test_postgres_url()?;
        let authority = Authority::start().await;
        let mut config = SqlGateConfig::new(authority.data_dir());
        config.backend = backend_url.clone();
        configure(&mut config);
        let gate = SqlGate::bind(config).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let stack = SqlStack {
            addr: gate.local_addr(),
            server_scope: gate.server_scope(),
            ca_pem_path: gate.ca_pem_path().to_owned(),
            connections: gate.backend_connections(),
            authorizer: gate.authorizer(),
            authority,
            backend_url,
            _stop: stop,
        };
        tokio::spawn(async move {
            gate.run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Some(stack)
    }

    /// See [`Authority::app`].
    pub fn app(&self, name: &str) -> App {
        self.authority.app(name)
    }

    /// A token for `app` with the PostgreSQL audience.
    pub async fn token(&self, app: &App) -> String {
        self.authority.token(app, OSSRDBMS_SCOPE).await
    }

    /// A role name unique to this test run (roles are cluster-wide).
    pub fn unique(&self, base: &str) -> String {
        format!("{base}-{}", &uuid_like()[..8])
    }

    /// Maps `name` to `oid` (`entraflow sql principal create`).
    pub async fn map(&self, name: &str, oid: &str, kind: PrincipalType) {
        PrincipalStore::open(self.authority.data_dir())
            .unwrap()
            .create(
                &self.backend_url,
                &MappedPrincipal {
                    name: name.into(),
                    oid: oid.into(),
                    principal_type: kind,
                },
            )
            .await
            .unwrap();
    }

    /// Grants `oid` the connect action on `database` (a custom role holding it is
    /// created on first use), and waits until the gate decides with it.
    pub async fn allow_connect(&self, oid: &str, database: &str) {
        let store = RbacStore::open(self.authority.data_dir()).unwrap();
        if store.find_definition(SQL_CONNECT_ROLE).is_err() {
            let def = RoleDefinition::from_json(&format!(
                r#"{{"Name": "{SQL_CONNECT_ROLE}", "Description": "Connect through the SQL gate", "DataActions": ["{CONNECT_ACTION}"], "AssignableScopes": ["/"]}}"#
            ))
            .unwrap();
            store.create_definition(def).unwrap();
        }
        store
            .create_assignment(
                NewAssignment::new(
                    oid,
                    SQL_CONNECT_ROLE,
                    format!("{}/databases/{database}", self.server_scope),
                ),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
        let target = store.generation().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.authorizer.generation() < target {
            let _ = self.authorizer.refresh();
            assert!(
                std::time::Instant::now() < deadline,
                "the SQL gate never saw the role change"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Backend connections the gate has opened.
    pub fn backend_connections(&self) -> u64 {
        self.connections.get()
    }

    /// A superuser session straight to the backend (for set-up and checks).
    pub async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.backend_url, tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        client
    }

    /// Connects through the gate with TLS verifying the local CA.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(self.addr.ip().to_string())
            .port(self.addr.port())
            .user(user)
            .password(password)
            .dbname(database)
            .application_name("run-sqltest")
            .ssl_mode(tokio_postgres::config::SslMode::Require);
        let (client, connection) = config.connect(self.tls()).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// A `tokio-postgres` TLS connector trusting the gate's CA.
    pub fn tls(&self) -> GateTls {
        let pem = std::fs::read(&self.ca_pem_path).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        GateTls(Arc::new(config))
    }

    /// Every audit row in the data directory's store, as parsed JSON records.
    pub async fn audit_records(&self) -> Vec<Value> {
        use entraflow_audit::StoreBackend as _;
        let store = entraflow_audit::AnyStore::open(&entraflow_audit::StoreUrl::default_for(
            self.authority.data_dir(),
        ))
        .await
        .unwrap();
        let rows = store
            .query(&entraflow_audit::Filter::default(), None, 100_000)
            .await
            .unwrap();
        rows.into_iter()
            .map(|r| serde_json::from_str(&r.record).unwrap())
            .collect()
    }
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `tokio-postgres` TLS connector over rustls.
#[derive(Clone)]
pub struct GateTls(Arc<rustls::ClientConfig>);

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for GateTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = GateTlsConnect;
    type Error = std::io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> std::io::Result<GateTlsConnect> {
        let name = rustls_pki_types::ServerName::try_from(domain.to_owned())
            .map_err(std::io::Error::other)?;
        Ok(GateTlsConnect {
            config: Arc::clone(&self.0),
            name,
        })
    }
}

/// One connection's TLS set-up (see [`GateTls`]).
pub struct GateTlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: rustls_pki_types::ServerName<'static>,
}

impl<S> tokio_postgres::tls::TlsConnect<S> for GateTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(TlsStream(tls))
        })
    }
}

/// A TLS stream for `tokio-postgres`.
pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        tokio_postgres::tls::ChannelBinding::none()
    }
}
