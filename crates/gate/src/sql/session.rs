//! One client connection, from its first byte to its end: TLS (`SSLRequest`), the
//! startup message, the token as a cleartext password inside TLS (as Azure
//! Database for PostgreSQL asks for it), the guard (token → principal mapping →
//! RBAC at the database's scope), the backend sign-in as the mapped role, then the
//! relay. Nothing reaches the backend before the guard has allowed the session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use entraflow_audit::{Decision as AuditDecision, EventType, Timestamp};
use entraflow_rbac::Request as RbacRequest;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::backend::{self, BackendRefusal};
use super::codec::{self, PROTOCOL_3_0, Startup};
use super::principals::{MappedPrincipal, PrincipalType};
use super::refusal::{
    CANNOT_CONNECT_NOW, CONNECTION_FAILURE, INVALID_AUTHORIZATION, PROTOCOL_VIOLATION, PgError,
};
use super::relay::{self, End, SessionRecord};
use super::state::{CancelTarget, SqlState, backend_password};
use crate::guard::{Guard, Guarded, Wire};

/// The data action a session needs at the database's scope (an entraflow action:
/// Azure's flexible servers check only the role mapping).
pub const CONNECT_ACTION: &str = entraflow_rbac::action::postgres::CONNECT;
/// Event type of an allowed session's start (durable before the client is told).
pub const SESSION_START: &str = "sql.session.start";
/// Event type of a session's end.
pub const SESSION_END: &str = "sql.session.end";
/// Event type of a session the backend refused after the gate allowed it.
pub const SESSION_REFUSED: &str = "sql.session.refused";

/// Longest password message: a token is a few KiB.
const MAX_PASSWORD_MESSAGE: usize = 64 << 10;
/// How long a client may take from connecting to sending its password.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves one accepted connection.
pub(crate) async fn serve(
    state: Arc<SqlState>,
    tls: tokio_rustls::TlsAcceptor,
    mut tcp: TcpStream,
    peer: SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let first = loop {
        match tokio::time::timeout(SIGN_IN_TIMEOUT, codec::read_startup(&mut tcp)).await {
            Ok(Ok(Startup::GssEnc)) => {
                // No GSSAPI here; libpq then tries TLS.
                if tcp.write_all(b"N").await.is_err() {
                    return;
                }
            }
            Ok(Ok(startup)) => break startup,
            Ok(Err(e)) => {
                refuse_early(
                    &state,
                    &mut tcp,
                    peer,
                    PgError::new(PROTOCOL_VIOLATION, e.to_string()),
                )
                .await;
                return;
            }
            Err(_) => return,
        }
    };
    match first {
        Startup::Ssl => {
            if tcp.write_all(b"S").await.is_err() {
                return;
            }
            let mut stream = match tls.accept(tcp).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                    return;
                }
            };
            match tokio::time::timeout(SIGN_IN_TIMEOUT, codec::read_startup(&mut stream)).await {
                Ok(Ok(Startup::Start { version, params })) => {
                    session(state, stream, peer, version, params).await;
                }
                Ok(Ok(Startup::Cancel { pid, key })) => cancel(&state, pid, key).await,
                Ok(Ok(_)) => {
                    let e =
                        PgError::new(PROTOCOL_VIOLATION, "unexpected second encryption request");
                    refuse_early(&state, &mut stream, peer, e).await;
                }
                Ok(Err(e)) => {
                    refuse_early(
                        &state,
                        &mut stream,
                        peer,
                        PgError::new(PROTOCOL_VIOLATION, e.to_string()),
                    )
                    .await;
                }
                Err(_) => {}
            }
        }
        Startup::Cancel { pid, key } => cancel(&state, pid, key).await,
        Startup::Start { .. } => {
            // The token is a password: it travels only inside TLS.
            let e = PgError::new(
                INVALID_AUTHORIZATION,
                "the SQL gate accepts only TLS connections: connect with sslmode=require, or sslmode=verify-full with sslrootcert=<data-dir>/ca.pem",
            );
            refuse_early(&state, &mut tcp, peer, e).await;
        }
        Startup::GssEnc => unreachable!("handled in the loop"),
    }
}

/// Refuses a connection before it has a user name: an `authn.failed` record, then
/// the error.
async fn refuse_early<S: AsyncWrite + Unpin>(
    state: &Arc<SqlState>,
    client: &mut S,
    peer: SocketAddr,
    err: PgError,
) {
    let mut guard = Guard::new(state, EventType::AuthnFailed);
    guard.event().client_addr = Some(peer.to_string());
    guard.event().decision = Some(AuditDecision::Deny);
    refuse(&mut guard, client, err).await;
}

/// Records the refusal (its detail, unless the guard already wrote one), then
/// sends the error and closes.
async fn refuse<S: AsyncWrite + Unpin>(guard: &mut Guard<SqlState>, client: &mut S, err: PgError) {
    let event = guard.event();
    if event.detail.is_none() {
        event.detail = Some(err.summary());
    }
    event.sqlstate = Some(err.code.to_owned());
    let _ = guard.append().await;
    let _ = client.write_all(&err.to_bytes()).await;
    let _ = client.flush().await;
    let _ = client.shutdown().await;
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn session<S>(
    state: Arc<SqlState>,
    mut client: S,
    peer: SocketAddr,
    version: u32,
    params: Vec<(String, String)>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut guard = Guard::new(&state, EventType::Other(SESSION_START.to_owned()));
    let application = param(&params, "application_name").filter(|a| !a.is_empty());
    {
        let event = guard.event();
        event.client_addr = Some(peer.to_string());
        event.user_agent = application.map(str::to_owned);
        // The application name carries the run id, as the Blob path's run header does.
        event.run_id = application.map(str::to_owned);
    }
    let Some(user) = param(&params, "user")
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
    else {
        let e = PgError::new(
            INVALID_AUTHORIZATION,
            "no user name was sent; sign in with the Entra principal's name (UPN, app display name or group name)",
        );
        guard.event().event_type = EventType::AuthnFailed;
        return refuse(&mut guard, &mut client, e).await;
    };
    // PostgreSQL's default database is the user's name.
    let database = param(&params, "database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();
    let scope = state.database_scope(&database);
    guard.event().resource = Some(scope.to_string());
    if param(&params, "replication").is_some_and(|r| !matches!(r, "false" | "off" | "no" | "0")) {
        let e = PgError::new(
            INVALID_AUTHORIZATION,
            "replication connections are not served by the SQL gate",
        );
        guard.event().event_type = EventType::AuthnFailed;
        return refuse(&mut guard, &mut client, e).await;
    }
    // Newer minor versions and protocol options: say what the gate speaks.
    let options: Vec<&str> = params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    let mut hello = Vec::new();
    if version != PROTOCOL_3_0 || !options.is_empty() {
        hello.extend(codec::negotiate_protocol_version(&options));
    }
    hello.extend(codec::auth_cleartext());
    if client.write_all(&hello).await.is_err() || client.flush().await.is_err() {
        return;
    }
    let token = match tokio::time::timeout(
        SIGN_IN_TIMEOUT,
        codec::read_message(&mut client, MAX_PASSWORD_MESSAGE),
    )
    .await
    {
        Ok(Ok(Some(m))) if m.tag == b'p' => match codec::cstr(&m.body, "password") {
            Ok((token, _)) => token.trim().to_owned(),
            Err(e) => {
                let e = PgError::new(PROTOCOL_VIOLATION, e.to_string());
                guard.event().event_type = EventType::AuthnFailed;
                return refuse(&mut guard, &mut client, e).await;
            }
        },
        // The client hung up at the password prompt (libpq does, when it has none).
        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return,
        Ok(Ok(Some(m))) => {
            let e = PgError::new(
                PROTOCOL_VIOLATION,
                format!("expected a password message, got '{}'", m.tag as char),
            );
            guard.event().event_type = EventType::AuthnFailed;
            return refuse(&mut guard, &mut client, e).await;
        }
    };
    if let Err(e) = guard.authenticate_token::<PgError>(&token).await {
        return refuse(&mut guard, &mut client, e.for_user(&user)).await;
    }
    drop(token);
    let mapping = match mapped_principal(&state, &guard, &user) {
        Ok(m) => m,
        Err(e) => {
            let event = guard.event();
            event.event_type = EventType::AuthnFailed;
            event.decision = Some(AuditDecision::Deny);
            return refuse(&mut guard, &mut client, e).await;
        }
    };
    let token_exp = guard.token().map(|t| t.claims.exp).unwrap_or_default();
    let password = {
        let access = match guard.authorize::<PgError>(RbacRequest::data(CONNECT_ACTION, scope)) {
            Ok(access) => access,
            Err(e) => return refuse(&mut guard, &mut client, e).await,
        };
        backend_password(&access, &mapping.name)
    };
    let password = match password {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the principal mappings");
            return refuse(&mut guard, &mut client, mappings_unavailable()).await;
        }
    };
    // The backend gets every startup parameter except the user, which is the role.
    let forwarded: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "user" && !k.starts_with("_pq_."))
        .cloned()
        .collect();
    state.note_backend_connection();
    let backend = match backend::connect(
        state.backend(),
        &mapping.name,
        password.as_deref(),
        &forwarded,
    )
    .await
    {
        Ok(b) => b,
        Err(refusal) => {
            let event = guard.event();
            event.event_type = EventType::Other(SESSION_REFUSED.to_owned());
            let frame = match refusal {
                BackendRefusal::Backend { frame, sqlstate } => {
                    event.sqlstate = sqlstate;
                    event.detail = Some(format!("the backend refused role \"{}\"", mapping.name));
                    frame
                }
                BackendRefusal::Gate(e) => {
                    event.sqlstate = Some(e.code.to_owned());
                    event.detail = Some(e.summary());
                    e.to_bytes()
                }
            };
            let _ = guard.append().await;
            let _ = client.write_all(&frame).await;
            let _ = client.shutdown().await;
            return;
        }
    };
    let (gate_pid, gate_key) = cancel_key(&state, backend.pid, backend.key);
    guard.event().detail = Some(format!("backend role \"{}\"", mapping.name));
    let mut template = guard.event().clone();
    if guard.append().await.is_err() {
        state
            .cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&gate_pid);
        let _ = client
            .write_all(&PgError::audit_unavailable().to_bytes())
            .await;
        let _ = client.shutdown().await;
        return;
    }
    let mut greeting = codec::auth_ok();
    greeting.extend_from_slice(&backend.relay);
    greeting.extend(codec::backend_key_data(gate_pid, gate_key));
    greeting.extend(codec::message(b'Z', b"I"));
    let started = std::time::Instant::now();
    let mut end = End::ClientGone;
    let mut statements = 0;
    if client.write_all(&greeting).await.is_ok() && client.flush().await.is_ok() {
        let record = SessionRecord {
            template: template.clone(),
            full_statements: state.full_statements,
            audit: Arc::clone(state.audit()),
            deadline: session_deadline(&state, token_exp),
        };
        let (e, n, c) = relay::run(client, backend.stream, &record).await;
        (end, statements, client) = (e, n, c);
        if end == End::TokenExpired {
            let e = PgError::new(
                CONNECTION_FAILURE,
                "terminating the session: the Entra token it signed in with has expired",
            )
            .hint("Reconnect with a fresh token (entraflow.sql.connect does this for you).");
            let _ = client.write_all(&e.to_bytes()).await;
        } else if end == End::AuditUnavailable {
            let _ = client
                .write_all(&PgError::audit_unavailable().to_bytes())
                .await;
        } else if let End::Protocol(why) = &end {
            let _ = client
                .write_all(&PgError::new(PROTOCOL_VIOLATION, why.clone()).to_bytes())
                .await;
        }
        let _ = client.flush().await;
        let _ = client.shutdown().await;
    }
    state
        .cancels
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&gate_pid);
    template.event_type = EventType::Other(SESSION_END.to_owned());
    template.time = Timestamp::now();
    template.request_id = Some(uuid::Uuid::new_v4().to_string());
    template.rows = Some(statements);
    template.duration_ms = Some(started.elapsed().as_millis() as u64);
    template.detail = Some(format!("{}; {statements} statements", end.describe()));
    if let Err(e) = state.audit().append(template).await {
        tracing::error!(error = %e, "could not audit the end of a SQL session");
    }
}

/// The mapping the user name names, checked against the token's principal.
fn mapped_principal(
    state: &SqlState,
    guard: &Guard<SqlState>,
    user: &str,
) -> Result<MappedPrincipal, PgError> {
    let claims = &guard.token().expect("authenticated").claims;
    let who = claims
        .upn
        .as_deref()
        .or(claims.name.as_deref())
        .or(claims.preferred_username.as_deref())
        .map(|n| format!("'{n}' (object id {})", claims.oid))
        .unwrap_or_else(|| format!("object id {}", claims.oid));
    let mapping = state.principals.lookup(user).map_err(|e| {
        tracing::error!(error = %e, "cannot read the principal mappings");
        mappings_unavailable()
    })?;
    let Some(mapping) = mapping else {
        return Err(PgError::new(
            INVALID_AUTHORIZATION,
            format!("no PostgreSQL role is mapped to the Entra principal name '{user}'"),
        )
        .hint(format!(
            "An administrator maps it with: entraflow sql principal create --name '{user}' --oid {} --type user|service|group",
            claims.oid
        )));
    };
    let matches = match mapping.principal_type {
        PrincipalType::User | PrincipalType::Service => {
            mapping.oid.eq_ignore_ascii_case(&claims.oid)
        }
        PrincipalType::Group => {
            let in_token = claims
                .groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|g| g.eq_ignore_ascii_case(&mapping.oid)));
            in_token
                || state.groups().is_some_and(|d| {
                    d.groups_of(&claims.oid)
                        .iter()
                        .any(|g| g.eq_ignore_ascii_case(&mapping.oid))
                })
        }
    };
    if !matches {
        let relation = match mapping.principal_type {
            PrincipalType::Group => "is not a member of the group",
            _ => "is not the principal",
        };
        return Err(PgError::new(
            INVALID_AUTHORIZATION,
            format!("the token's principal {who} {relation} '{user}' it tried to sign in as"),
        )
        .hint("Sign in with the user name of the token's own principal (its UPN, or an app's display name), or a group it belongs to."));
    }
    Ok(mapping)
}

fn mappings_unavailable() -> PgError {
    PgError::new(
        CANNOT_CONNECT_NOW,
        "the SQL gate cannot read its principal mappings (sql.db) right now; retry later",
    )
}

/// When a session must end: its token's expiry, plus the skew tolerated at sign-in
/// and the configured grace.
fn session_deadline(state: &SqlState, exp: i64) -> Option<tokio::time::Instant> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let slack = state.verifier.config().leeway + state.expiry_grace;
    let remaining = Duration::from_secs(exp.saturating_sub(now).max(0) as u64) + slack;
    Some(tokio::time::Instant::now() + remaining)
}

/// A process id and secret for the client's `BackendKeyData`, registered so that
/// its cancel requests reach the backend session.
fn cancel_key(state: &SqlState, backend_pid: u32, backend_key: u32) -> (u32, u32) {
    let mut cancels = state.cancels.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let mut bytes = [0u8; 8];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
        let pid = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) & 0x7fff_ffff;
        let key = u32::from_be_bytes(bytes[4..].try_into().expect("4 bytes"));
        if pid != 0 && !cancels.contains_key(&pid) {
            cancels.insert(
                pid,
                CancelTarget {
                    key,
                    backend_pid,
                    backend_key,
                },
            );
            return (pid, key);
        }
    }
}

/// A client's cancel request: forwarded when its key matches a live session's.
async fn cancel(state: &SqlState, pid: u32, key: u32) {
    let target = state
        .cancels
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&pid)
        .copied();
    let Some(target) = target else { return };
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        &target.key.to_be_bytes(),
        &key.to_be_bytes(),
    )
    .is_err()
    {
        tracing::warn!(pid, "cancel request with a wrong key ignored");
        return;
    }
    if let Err(e) = backend::cancel(state.backend(), target.backend_pid, target.backend_key).await {
        tracing::warn!(error = %e, "could not forward a cancel request to the backend");
    }
}
