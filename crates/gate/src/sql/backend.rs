//! The gate's side of a backend connection: TLS as the backend URL's `sslmode`
//! asks (verified as `verify-full` does, see `entraflow_tls::postgres`), signing
//! in to PostgreSQL as the mapped role (trust, cleartext, MD5 or SCRAM-SHA-256,
//! whatever the backend asks), and cancel requests. Messages are built with
//! `postgres-protocol`, the framing `tokio-postgres` itself uses.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use entraflow_tls::postgres::{TlsMode, TlsPolicy};
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::either::Either;

use super::codec::{self, Message};
use super::refusal::{PgError, UNABLE_TO_CONNECT};

/// Longest message the gate accepts from the backend while signing in.
const MAX_STARTUP_MESSAGE: usize = 1 << 20;
/// How long the backend may take to accept a connection and a sign-in.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the backend: plain TCP, or TLS over it.
pub(crate) type BackendStream = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

/// How the gate reaches its backend: the address and the TLS the URL asks for.
#[derive(Debug, Clone)]
pub(crate) struct BackendTarget {
    /// `host:port`.
    pub(crate) addr: String,
    tls: TlsPolicy,
    server_name: ServerName<'static>,
}

impl BackendTarget {
    /// The backend of a `postgres://` URL, with its `sslmode` and `sslrootcert`.
    pub(crate) fn new(addr: String, host: &str, url: &str) -> Result<Self, String> {
        let tls = entraflow_tls::postgres::tls_policy(url).map_err(|e| e.to_string())?;
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| format!("the backend host '{host}' is no TLS server name: {e}"))?;
        Ok(BackendTarget {
            addr,
            tls,
            server_name,
        })
    }

    /// A connection, in TLS when the URL asks for it (after PostgreSQL's
    /// `SSLRequest`: the backend answers `S` to go on in TLS, `N` to refuse).
    async fn open(&self) -> std::io::Result<BackendStream> {
        let mut tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        if self.tls.mode == TlsMode::Off {
            return Ok(Either::Left(tcp));
        }
        let mut buf = BytesMut::new();
        frontend::ssl_request(&mut buf);
        tcp.write_all(&buf).await?;
        match tcp.read_u8().await? {
            b'S' => {
                let connector =
                    tokio_rustls::TlsConnector::from(Arc::clone(&self.tls.client_config));
                let tls = connector
                    .connect(self.server_name.clone(), tcp)
                    .await
                    .map_err(|e| {
                        std::io::Error::other(format!(
                            "TLS to the backend (sslmode={}): {e}; its certificate must chain to the system's roots or to the CA file sslrootcert names in --backend, and name the host",
                            self.tls.sslmode
                        ))
                    })?;
                Ok(Either::Right(tls))
            }
            b'N' if self.tls.mode == TlsMode::IfOffered => Ok(Either::Left(tcp)),
            b'N' => Err(std::io::Error::other(format!(
                "the backend does not support TLS and --backend asks for it (sslmode={}); enable ssl on the backend, or say sslmode=disable where plain TCP is acceptable",
                self.tls.sslmode
            ))),
            other => Err(std::io::Error::other(format!(
                "the backend answered {other:#04x} to SSLRequest; is it PostgreSQL?"
            ))),
        }
    }
}

/// A signed-in backend session, ready for queries.
pub(crate) struct BackendSession {
    pub(crate) stream: BufReader<BackendStream>,
    pub(crate) pid: u32,
    pub(crate) key: u32,
    /// `ParameterStatus` and `NoticeResponse` messages, relayed to the client as
    /// they came.
    pub(crate) relay: Vec<u8>,
}

/// Why the backend session could not start.
pub(crate) enum BackendRefusal {
    /// The backend's own `ErrorResponse` (a missing database, a role that may not
    /// log in), relayed unchanged.
    Backend {
        frame: Vec<u8>,
        sqlstate: Option<String>,
    },
    /// The gate's own error (unreachable backend, unsupported authentication).
    Gate(PgError),
}

fn unreachable(why: impl std::fmt::Display) -> BackendRefusal {
    tracing::warn!(error = %why, "PostgreSQL backend connection failed");
    BackendRefusal::Gate(PgError::new(
        UNABLE_TO_CONNECT,
        "the SQL gate cannot reach its PostgreSQL backend; retry, or ask the operator to check the backend",
    ))
}

/// Connects to the backend and signs in as `role` with `params` (the client's
/// startup parameters other than `user`).
pub(crate) async fn connect(
    backend: &BackendTarget,
    role: &str,
    password: Option<&str>,
    params: &[(String, String)],
) -> Result<BackendSession, BackendRefusal> {
    tokio::time::timeout(CONNECT_TIMEOUT, sign_in(backend, role, password, params))
        .await
        .unwrap_or_else(|_| Err(unreachable("timed out signing in to the backend")))
}

async fn sign_in(
    backend: &BackendTarget,
    role: &str,
    password: Option<&str>,
    params: &[(String, String)],
) -> Result<BackendSession, BackendRefusal> {
    let mut stream = BufReader::new(backend.open().await.map_err(unreachable)?);
    let mut buf = BytesMut::new();
    let startup =
        std::iter::once(("user", role)).chain(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    frontend::startup_message(startup, &mut buf).map_err(unreachable)?;
    send(&mut stream, &mut buf).await?;

    let mut scram: Option<ScramSha256> = None;
    let mut relay = Vec::new();
    let mut key_data = None;
    let need_password = || {
        password.ok_or_else(|| {
            BackendRefusal::Gate(PgError::new(
                UNABLE_TO_CONNECT,
                format!("the backend asks for a password for role \"{role}\" and the gate holds none; map the principal again with `entraflow sql principal create`"),
            ))
        })
    };
    loop {
        let Some(Message { tag, body }) = codec::read_message(&mut stream, MAX_STARTUP_MESSAGE)
            .await
            .map_err(unreachable)?
        else {
            return Err(unreachable(
                "the backend closed the connection while signing in",
            ));
        };
        match tag {
            b'R' => {
                let code = body
                    .get(..4)
                    .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
                    .ok_or_else(|| unreachable("short authentication message"))?;
                let data = &body[4..];
                match code {
                    0 => {}
                    3 => {
                        frontend::password_message(need_password()?.as_bytes(), &mut buf)
                            .map_err(unreachable)?;
                        send(&mut stream, &mut buf).await?;
                    }
                    5 => {
                        let salt: [u8; 4] = data
                            .get(..4)
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| unreachable("short MD5 salt"))?;
                        let hash = postgres_protocol::authentication::md5_hash(
                            role.as_bytes(),
                            need_password()?.as_bytes(),
                            salt,
                        );
                        frontend::password_message(hash.as_bytes(), &mut buf)
                            .map_err(unreachable)?;
                        send(&mut stream, &mut buf).await?;
                    }
                    10 => {
                        let offers_scram = data
                            .split(|&b| b == 0)
                            .any(|m| m == SCRAM_SHA_256.as_bytes());
                        if !offers_scram {
                            return Err(unreachable(
                                "the backend offers no SASL mechanism the gate supports",
                            ));
                        }
                        let s = ScramSha256::new(
                            need_password()?.as_bytes(),
                            ChannelBinding::unsupported(),
                        );
                        frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut buf)
                            .map_err(unreachable)?;
                        send(&mut stream, &mut buf).await?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram
                            .as_mut()
                            .ok_or_else(|| unreachable("SASL continue without a SASL start"))?;
                        s.update(data).map_err(unreachable)?;
                        frontend::sasl_response(s.message(), &mut buf).map_err(unreachable)?;
                        send(&mut stream, &mut buf).await?;
                    }
                    12 => {
                        scram
                            .as_mut()
                            .ok_or_else(|| unreachable("SASL final without a SASL start"))?
                            .finish(data)
                            .map_err(unreachable)?;
                    }
                    other => {
                        return Err(unreachable(format!(
                            "the backend asks for authentication method {other}, which the gate does not support"
                        )));
                    }
                }
            }
            b'S' | b'N' => relay.extend_from_slice(&codec::message(tag, &body)),
            b'K' if body.len() == 8 => {
                let pid = u32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
                let key = u32::from_be_bytes(body[4..].try_into().expect("4 bytes"));
                key_data = Some((pid, key));
            }
            b'E' => {
                return Err(BackendRefusal::Backend {
                    sqlstate: codec::sqlstate(&body),
                    frame: codec::message(b'E', &body),
                });
            }
            b'Z' => {
                let (pid, key) = key_data.unwrap_or_default();
                return Ok(BackendSession {
                    stream,
                    pid,
                    key,
                    relay,
                });
            }
            // NegotiateProtocolVersion and anything else: nothing to act on.
            _ => {}
        }
    }
}

async fn send(
    stream: &mut BufReader<BackendStream>,
    buf: &mut BytesMut,
) -> Result<(), BackendRefusal> {
    let bytes = buf.split();
    stream
        .get_mut()
        .write_all(&bytes)
        .await
        .map_err(unreachable)
}

/// Asks the backend to cancel the statement of session `pid` (over TLS too
/// when the URL asks for it: the key is a secret).
pub(crate) async fn cancel(backend: &BackendTarget, pid: u32, key: u32) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    frontend::cancel_request(pid as i32, key as i32, &mut buf);
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, backend.open())
        .await
        .map_err(|_| std::io::Error::other("timed out connecting to the backend"))??;
    stream.write_all(&buf).await?;
    stream.shutdown().await
}
