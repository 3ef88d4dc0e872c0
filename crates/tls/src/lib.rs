//! The local certificate authority and HTTPS plumbing that every entraflow server
//! shares: the authority, the gate and the SQL gate serve TLS by default, even on
//! loopback, with certificates from one CA kept in the data directory.
//!
//! Not for: anything protocol-specific. This crate only makes certificates, rustls
//! configurations, HTTPS listeners and HTTPS clients.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! entraflow_tls::install_crypto_provider();
//! let ca = entraflow_tls::LocalCa::load_or_create(dir.path()).unwrap();
//! assert!(ca.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
//! let config = ca.server_config(&[]).unwrap();
//! assert!(config.alpn_protocols.contains(&b"h2".to_vec()));
//! ```
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use thiserror::Error;

use entraflow_core::fsutil;

mod bind;
mod idle;
mod min_rate;
pub mod postgres;
pub use bind::{BindError, bind};
pub use idle::IdleTimeout;
pub use min_rate::{BODY_GRACE, BodyTooSlow, MIN_BODY_RATE};

/// File name of the CA certificate (public) in the data directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key (owner-only) in the data directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Why a certificate, configuration or client could not be made.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Reading or writing a file in the data directory failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The CA files exist but cannot be used (corrupt, mismatched, wrong format).
    #[error(
        "the local CA in {dir} is unusable ({reason}); remove {CA_CERT_FILE} and {CA_KEY_FILE} there to create a new one (clients must then trust the new CA)"
    )]
    BadCa {
        /// The data directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    /// The HTTPS client could not be built.
    #[error("HTTPS client could not be built: {0}")]
    Client(#[from] reqwest::Error),
}

/// A certificate authority kept in a data directory; it signs short-lived leaf
/// certificates for the servers that run from that directory.
pub struct LocalCa {
    dir: PathBuf,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA from `data_dir`, or creates it (ECDSA P-256, ten years) on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, TlsError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TlsError::Io { path, source }
        };
        fsutil::create_private_dir(data_dir).map_err(io(data_dir))?;
        let cert_path = data_dir.join(CA_CERT_FILE);
        let key_path = data_dir.join(CA_KEY_FILE);
        if cert_path.exists() && key_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let bad = |reason: String| TlsError::BadCa {
                dir: data_dir.to_owned(),
                reason,
            };
            let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(e.to_string()))?;
            let issuer =
                Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| bad(e.to_string()))?;
            return Ok(Self {
                dir: data_dir.to_owned(),
                cert_pem,
                issuer,
            });
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, "entraflow local CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "entraflow");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        fsutil::write_private_file(&key_path, key.serialize_pem().as_bytes())
            .map_err(io(&key_path))?;
        fsutil::write_public_file(&cert_path, cert_pem.as_bytes()).map_err(io(&cert_path))?;
        tracing::info!(path = %cert_path.display(), "created local CA");
        Ok(Self {
            dir: data_dir.to_owned(),
            cert_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Path of the CA certificate: what `SSL_CERT_FILE` and `REQUESTS_CA_BUNDLE` point at.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// The CA certificate in PEM.
    pub fn ca_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A rustls server configuration with a fresh leaf certificate (not a CA, server
    /// auth only, valid 90 days) for `127.0.0.1`, `::1`, `localhost` and `extra_names`,
    /// offering HTTP/2 and HTTP/1.1.
    pub fn server_config(
        &self,
        extra_names: &[String],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut names = vec!["localhost".to_owned()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        for ip in ["127.0.0.1", "::1"] {
            params
                .subject_alt_names
                .push(SanType::IpAddress(ip.parse().expect("literal IP")));
        }
        params
            .distinguished_name
            .push(DnType::CommonName, "entraflow local server");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(90);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key_der)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Installs aws-lc-rs as the process's rustls crypto provider. Idempotent; call it
/// early in `main` and in tests.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Serves `app` over TLS on an already-bound listener until `shutdown` resolves,
/// then lets in-flight requests finish. Handlers can extract
/// `axum::extract::ConnectInfo<SocketAddr>`.
pub async fn serve_https(
    listener: std::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    install_crypto_provider();
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let on_shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(config);
    let acceptor =
        axum_server::tls_rustls::RustlsAcceptor::new(rustls_config).acceptor(ConnectionLimits);
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .handle(handle);
    server
        .http_builder()
        .http1()
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let app = app.layer(axum::middleware::from_fn(min_rate::enforce));
    server
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
}

/// Longest a client may take to send a request's headers: a client trickling
/// bytes (slowloris) is cut off here. hyper's default, which axum-server turns off.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest a connection may sit with nothing sent or received (the TLS handshake
/// has its own 10 s limit in axum-server).
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Applied to every accepted TCP connection before TLS: `TCP_NODELAY` (small
/// responses leave at once instead of waiting on Nagle's algorithm) and the idle limit.
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits;

impl<S> axum_server::accept::Accept<tokio::net::TcpStream, S> for ConnectionLimits {
    type Stream = IdleTimeout<tokio::net::TcpStream>;
    type Service = S;
    type Future = std::future::Ready<std::io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        std::future::ready(
            stream
                .set_nodelay(true)
                .map(|()| (IdleTimeout::new(stream, IDLE_TIMEOUT), service)),
        )
    }
}

/// An HTTPS client that trusts the system roots (and `SSL_CERT_FILE`) plus `extra_ca_pem`.
pub fn https_client(extra_ca_pem: Option<&str>) -> Result<reqwest::Client, TlsError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("entraflow/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10));
    if let Some(pem) = extra_ca_pem {
        builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem.as_bytes())?);
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_trusting_the_ca_reaches_the_server() {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(dir.path()).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_https(
            listener,
            ca.server_config(&[]).unwrap(),
            app,
            async {
                let _ = stopped.await;
            },
        ));

        let client = https_client(Some(ca.ca_pem())).unwrap();
        let body = client
            .get(format!("https://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "hello");

        // A client that does not trust the CA is refused.
        let stranger = https_client(None).unwrap();
        assert!(
            stranger
                .get(format!("https://127.0.0.1:{port}/"))
                .send()
                .await
                .is_err()
        );

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        use axum_server::accept::Accept as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        assert!(
            !stream.nodelay().unwrap(),
            "the OS default, or the test proves nothing"
        );
        let (stream, ()) = ConnectionLimits.accept(stream, ()).await.unwrap();
        assert!(stream.get_ref().nodelay().unwrap());
    }

    #[test]
    fn the_ca_survives_a_restart_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalCa::load_or_create(dir.path())
            .unwrap()
            .ca_pem()
            .to_owned();
        let again = LocalCa::load_or_create(dir.path()).unwrap();
        assert_eq!(first, again.ca_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
