//! The gate's side of a backend connection: signing in to PostgreSQL as the mapped
//! role (trust, cleartext, MD5 or SCRAM-SHA-256, whatever the backend asks), and
//! cancel requests. Messages are built with `postgres-protocol`, the framing
//! `tokio-postgres` itself uses.

use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::codec::{self, Message};
use super::refusal::{PgError, UNABLE_TO_CONNECT};

/// Longest message the gate accepts from the backend while signing in.
const MAX_STARTUP_MESSAGE: usize = 1 << 20;
/// How long the backend may take to accept a connection and a sign-in.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A signed-in backend session, ready for queries.
pub(crate) struct BackendSession {
    pub(crate) stream: BufReader<TcpStream>,
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

/// Connects to `addr` and signs in as `role` with `params` (the client's startup
/// parameters other than `user`).
pub(crate) async fn connect(
    addr: &str,
    role: &str,
    password: Option<&str>,
    params: &[(String, String)],
) -> Result<BackendSession, BackendRefusal> {
    tokio::time::timeout(CONNECT_TIMEOUT, sign_in(addr, role, password, params))
        .await
        .unwrap_or_else(|_| Err(unreachable("timed out signing in to the backend")))
}

async fn sign_in(
    addr: &str,
    role: &str,
    password: Option<&str>,
    params: &[(String, String)],
) -> Result<BackendSession, BackendRefusal> {
    let tcp = TcpStream::connect(addr).await.map_err(unreachable)?;
    tcp.set_nodelay(true).map_err(unreachable)?;
    let mut stream = BufReader::new(tcp);
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

async fn send(stream: &mut BufReader<TcpStream>, buf: &mut BytesMut) -> Result<(), BackendRefusal> {
    let bytes = buf.split();
    stream
        .get_mut()
        .write_all(&bytes)
        .await
        .map_err(unreachable)
}

/// Asks the backend to cancel the statement of session `pid`.
pub(crate) async fn cancel(addr: &str, pid: u32, key: u32) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    frontend::cancel_request(pid as i32, key as i32, &mut buf);
    let mut tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other("timed out connecting to the backend"))??;
    tcp.write_all(&buf).await?;
    tcp.shutdown().await
}
