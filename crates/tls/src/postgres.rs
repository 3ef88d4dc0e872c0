//! Connections to PostgreSQL (the shared audit and policy stores, the SQL gate's
//! admin login) with TLS as the URL asks, in libpq's terms, and TLS by default
//! off this machine.
//!
//! The URL's `sslmode` decides (libpq's values):
//!
//! - absent: no TLS when every host is on this machine (loopback or a Unix
//!   socket), TLS required otherwise — a store reached over a network is never
//!   read or written in the clear unless the URL says `sslmode=disable`;
//! - `disable`: no TLS;
//! - `allow`, `prefer`: TLS when the server offers it, else none;
//! - `require`, `verify-ca`, `verify-full`: TLS or no connection.
//!
//! Whenever TLS is used, the server's certificate is verified as libpq's
//! `verify-full` does (chain to a trusted root, host name): against the
//! system's roots and the CA file `sslrootcert` names. libpq's `require` alone
//! would accept any certificate; a store that holds the evidence does not.
//! Azure Database for PostgreSQL's certificates chain to public roots, so
//! `sslmode=require` (or `verify-full`) is all it needs.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connection half of [`connect`]: drive it (spawn it) for the client to work.
pub type PgConnection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// Why a connection to PostgreSQL was not made. The text never holds the URL
/// or its password; callers name the server.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL or its TLS settings cannot be used.
    #[error("{0}")]
    Config(String),
    /// PostgreSQL (or the network, or the TLS handshake) refused.
    #[error("{message}")]
    Postgres {
        /// What happened, with what to do about TLS where that was the cause.
        message: String,
        /// The driver's error, for its SQLSTATE.
        source: tokio_postgres::Error,
    },
}

impl PgError {
    /// The server's own error, when it sent one.
    pub fn as_db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        match self {
            PgError::Postgres { source, .. } => source.as_db_error(),
            PgError::Config(_) => None,
        }
    }
}

/// Connects to `url` (`postgres://user[:password]@host[:port]/db[?sslmode=…&sslrootcert=…]`,
/// or libpq's `key=value` form without the TLS extensions).
pub async fn connect(url: &str) -> Result<(Client, PgConnection), PgError> {
    let target = Target::parse(url)?;
    if target.tls == TlsMode::Off && !on_this_machine(&target.config) {
        tracing::warn!(
            hosts = ?target.config.get_hosts(),
            "PostgreSQL over the network without TLS, as the URL's sslmode=disable asks"
        );
    }
    let tls = MakeRustlsConnect::new(target.client_config()?);
    target
        .config
        .connect(tls)
        .await
        .map_err(|source| PgError::Postgres {
            message: target.explain(&source),
            source,
        })
}

/// What TLS a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP (`disable`, or no `sslmode` on this machine).
    Off,
    /// TLS when the server offers it (`allow`, `prefer`).
    IfOffered,
    /// TLS or no connection (`require`, `verify-ca`, `verify-full`, or no
    /// `sslmode` off this machine).
    Required,
}

/// How to reach a URL's server over TLS, for code that speaks the wire protocol
/// itself (the SQL gate's backend connections): the mode, and the verifying
/// client configuration to use when TLS is on.
#[derive(Debug, Clone)]
pub struct TlsPolicy {
    /// What the URL asks.
    pub mode: TlsMode,
    /// `sslmode` as written (or the default and why), for messages.
    pub sslmode: String,
    /// The system's roots plus `sslrootcert`'s certificates.
    pub client_config: Arc<rustls::ClientConfig>,
}

/// The TLS policy of `url` (see the module docs).
pub fn tls_policy(url: &str) -> Result<TlsPolicy, PgError> {
    let target = Target::parse(url)?;
    Ok(TlsPolicy {
        mode: target.tls,
        client_config: Arc::new(target.client_config()?),
        sslmode: target.mode,
    })
}

/// A parsed URL: the driver's configuration and what entraflow adds to it.
#[derive(Debug)]
struct Target {
    config: tokio_postgres::Config,
    tls: TlsMode,
    /// `sslmode` as written, for messages.
    mode: String,
    root_cert: Option<PathBuf>,
}

impl Target {
    fn parse(url: &str) -> Result<Target, PgError> {
        let bad = |why: String| PgError::Config(format!("the PostgreSQL URL {why}"));
        let (rest, mode, root_cert) =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                let mut parsed =
                    url::Url::parse(url).map_err(|e| bad(format!("cannot be parsed: {e}")))?;
                let (mut mode, mut root_cert, mut kept) = (None, None, Vec::new());
                for (k, v) in parsed.query_pairs() {
                    match &*k {
                        "sslmode" => mode = Some(v.into_owned()),
                        "sslrootcert" => root_cert = Some(PathBuf::from(&*v)),
                        _ => kept.push((k.into_owned(), v.into_owned())),
                    }
                }
                if kept.is_empty() {
                    parsed.set_query(None);
                } else {
                    parsed.query_pairs_mut().clear().extend_pairs(kept);
                }
                (parsed.to_string(), mode, root_cert)
            } else {
                (url.to_owned(), None, None)
            };
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| bad(format!("is not one PostgreSQL accepts: {e}")))?;
        let tls = match mode.as_deref() {
            None if on_this_machine(&config) => TlsMode::Off,
            None => TlsMode::Required,
            Some("disable") => TlsMode::Off,
            Some("allow" | "prefer") => TlsMode::IfOffered,
            Some("require" | "verify-ca" | "verify-full") => TlsMode::Required,
            Some(other) => {
                return Err(bad(format!(
                    "has sslmode={other}; use disable, allow, prefer, require, verify-ca or verify-full"
                )));
            }
        };
        config.ssl_mode(match tls {
            TlsMode::Off => SslMode::Disable,
            TlsMode::IfOffered => SslMode::Prefer,
            TlsMode::Required => SslMode::Require,
        });
        let mode = mode.unwrap_or_else(|| match tls {
            TlsMode::Off => "disable (the default on this machine)".to_owned(),
            _ => "require (the default off this machine)".to_owned(),
        });
        Ok(Target {
            config,
            tls,
            mode,
            root_cert,
        })
    }

    /// Verified TLS: the system's roots and `sslrootcert`'s certificates.
    fn client_config(&self) -> Result<rustls::ClientConfig, PgError> {
        crate::install_crypto_provider();
        let mut extra = Vec::new();
        if let Some(path) = &self.root_cert {
            let pem = std::fs::read(path).map_err(|e| {
                PgError::Config(format!(
                    "sslrootcert {} cannot be read: {e}",
                    path.display()
                ))
            })?;
            extra = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    PgError::Config(format!(
                        "sslrootcert {} holds no PEM certificates: {e}",
                        path.display()
                    ))
                })?;
            if extra.is_empty() {
                return Err(PgError::Config(format!(
                    "sslrootcert {} holds no PEM certificates",
                    path.display()
                )));
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
                .map_err(|e| PgError::Config(format!("the system's roots: {e}")))?;
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PgError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth())
    }

    /// The driver's error, with what to do when TLS was the cause.
    fn explain(&self, e: &tokio_postgres::Error) -> String {
        // The driver's summary ("error performing TLS handshake") and its causes.
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            text = format!("{text}: {c}");
            cause = c.source();
        }
        if !text.contains("TLS") && !text.contains("certificate") {
            return text;
        }
        let root = self.root_cert.as_ref().map_or_else(
            || "; name the server's CA with sslrootcert=<PEM file> in the URL".to_owned(),
            |p| format!(" and {}", p.display()),
        );
        if text.contains("does not support TLS") {
            format!(
                "{text}: the URL asks for TLS (sslmode={}); enable ssl on the server, or say sslmode=disable where plain TCP is acceptable",
                self.mode
            )
        } else {
            format!(
                "{text} (sslmode={}: the server's certificate must chain to the system's roots{root}, and name the host connected to)",
                self.mode
            )
        }
    }
}

/// Every host is loopback or a Unix socket.
fn on_this_machine(config: &tokio_postgres::Config) -> bool {
    let local = |h: &Host| match h {
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        Host::Unix(_) => true,
    };
    !config.get_hosts().is_empty()
        && config.get_hosts().iter().all(local)
        && config.get_hostaddrs().iter().all(IpAddr::is_loopback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str) -> TlsMode {
        Target::parse(url).unwrap().tls
    }

    #[test]
    fn tls_is_the_default_off_this_machine_and_the_url_decides_otherwise() {
        assert_eq!(tls("postgres://u@127.0.0.1:5432/db"), TlsMode::Off);
        assert_eq!(tls("postgres://u@localhost/db"), TlsMode::Off);
        assert_eq!(tls("postgres://u@[::1]:5432/db"), TlsMode::Off);
        assert_eq!(tls("postgres://u@db.example.com/db"), TlsMode::Required);
        assert_eq!(tls("postgres://u@10.0.0.7/db"), TlsMode::Required);
        assert_eq!(
            tls("postgres://u@server.postgres.database.azure.com/db"),
            TlsMode::Required
        );
        assert_eq!(
            tls("postgres://u@db.example.com/db?sslmode=disable"),
            TlsMode::Off
        );
        assert_eq!(
            tls("postgres://u@127.0.0.1/db?sslmode=prefer"),
            TlsMode::IfOffered
        );
        for mode in ["require", "verify-ca", "verify-full"] {
            assert_eq!(
                tls(&format!("postgres://u@127.0.0.1/db?sslmode={mode}")),
                TlsMode::Required
            );
        }
        assert_eq!(tls("host=db.example.com user=u"), TlsMode::Required);
        assert_eq!(tls("host=/run/postgresql user=u"), TlsMode::Off);
    }

    #[test]
    fn the_tls_options_are_taken_out_and_the_rest_kept() {
        let t = Target::parse(
            "postgres://u:secret@127.0.0.1:5433/db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            t.root_cert.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert_eq!(t.config.get_application_name(), Some("x"));
        assert_eq!(t.config.get_ports(), [5433]);
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
    }

    #[test]
    fn a_bad_sslmode_or_root_file_is_refused_without_the_password() {
        let e = Target::parse("postgres://u:secret@127.0.0.1/db?sslmode=always").unwrap_err();
        assert!(e.to_string().contains("sslmode=always"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let t = Target::parse(
            "postgres://u:secret@127.0.0.1/db?sslmode=require&sslrootcert=/nonexistent.pem",
        )
        .unwrap();
        let e = t.client_config().unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent.pem cannot be read"),
            "{e}"
        );
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
