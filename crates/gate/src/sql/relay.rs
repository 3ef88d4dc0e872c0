//! An authorized session's traffic, relayed between client and backend. Messages
//! pass through unchanged; the gate reads only what the audit needs:
//!
//! - client → backend: every statement (a simple `Query`, or an `Execute` of the
//!   text its `Parse` named) gets a `sql.statement` record. A statement that may
//!   write has it durable before the statement is forwarded, so no change runs
//!   unrecorded. A statement that only reads (`redact::inspect`) is forwarded at
//!   once, and its result is held back until its record is durable;
//! - backend → client: `CommandComplete`, `ErrorResponse` and `ReadyForQuery`
//!   close a statement. A read whose whole result fit in [`HOLD`] has one record
//!   with its outcome (rows, SQLSTATE), durable before the result leaves. Other
//!   statements' outcomes follow in a `sql.statement.completed` record, written off
//!   the response path, as a Blob read's completion is.
//!
//! The session ends at a message boundary when the client terminates, either side
//! goes away, the audit log cannot take a statement, or the token expires (after
//! the statements in flight have finished).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use entraflow_audit::{Event, EventType, Timestamp};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::codec::{self, CodecError};
use super::redact;
use crate::audit::AuditSink;

/// Event type of a statement's record (durable before it runs).
pub const STATEMENT: &str = "sql.statement";
/// Event type of a statement's completion (rows, SQLSTATE).
pub const STATEMENT_COMPLETED: &str = "sql.statement.completed";

/// Longest client message relayed (a statement, a COPY chunk, bind parameters).
const MAX_CLIENT_MESSAGE: usize = 64 << 20;
/// Buffer between the gate and each side.
const BUFFER: usize = 64 << 10;
/// Most result bytes of a read held back for its record. A larger result has its
/// record written (and made durable) first, then streams.
const HOLD: usize = 64 << 10;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The client sent `Terminate`.
    ClientTerminated,
    /// The client's connection closed or failed.
    ClientGone,
    /// The backend's connection closed (it may have said why, relayed).
    BackendClosed,
    /// The token expired; the statements in flight finished first.
    TokenExpired,
    /// A statement could not be recorded, so it was not run.
    AuditUnavailable,
    /// The client broke the protocol.
    Protocol(String),
}

impl End {
    pub(crate) fn describe(&self) -> String {
        match self {
            End::ClientTerminated => "client terminated the session".into(),
            End::ClientGone => "client connection closed".into(),
            End::BackendClosed => "backend connection closed".into(),
            End::TokenExpired => "the token expired".into(),
            End::AuditUnavailable => "the audit log could not take a statement".into(),
            End::Protocol(why) => format!("protocol violation: {why}"),
        }
    }
}

/// Who is in the session, copied into every statement record.
pub(crate) struct SessionRecord {
    /// The session's record: principal, token, resource, client, run id.
    pub(crate) template: Event,
    pub(crate) full_statements: bool,
    pub(crate) audit: Arc<dyn AuditSink>,
    /// When the session must end (its token's expiry plus grace).
    pub(crate) deadline: Option<tokio::time::Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A `Query`: may hold several statements; ends at `ReadyForQuery`.
    Simple,
    /// An `Execute`: ends at its `CommandComplete`, `EmptyQueryResponse`,
    /// `PortalSuspended` or `ErrorResponse`.
    Execute,
}

struct Pending {
    event: Event,
    kind: Kind,
    started: Instant,
    rows: Option<u64>,
    sqlstate: Option<String>,
    /// Its `sql.statement` record is durable (always for a statement that may
    /// write); otherwise its result is held until its record is.
    recorded: bool,
    /// The `ReadyForQuery` that ends it at the latest, counted from the session's
    /// start: a `Query`'s own, an `Execute`'s next `Sync`'s. One arrives per
    /// `Query`, `Sync` and function call, in order.
    until_ready: u64,
}

/// A statement's recorded text and whether it only reads.
#[derive(Clone)]
struct Text {
    recorded: Arc<str>,
    reads: bool,
}

impl Text {
    fn unseen(what: String) -> Text {
        Text {
            recorded: what.into(),
            reads: false,
        }
    }
}

struct Shared {
    pending: Mutex<VecDeque<Pending>>,
    stop: Mutex<Option<End>>,
    wake: Notify,
    statements: AtomicU64,
}

impl Shared {
    fn stop(&self, end: End) {
        let mut stop = self.stop.lock().unwrap_or_else(|p| p.into_inner());
        if stop.is_none() {
            *stop = Some(end);
        }
        drop(stop);
        self.wake.notify_one();
    }

    fn stopping(&self) -> bool {
        self.stop
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Whether the oldest statement in flight is a read whose record is not yet
    /// written: its result must wait.
    fn front_unrecorded(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .front()
            .is_some_and(|p| !p.recorded)
    }

    /// Appends the `sql.statement` record of the oldest statement in flight, if
    /// it is a read not yet recorded (its outcome then follows in a completion
    /// record).
    fn record_front(&self, record: &SessionRecord) -> Option<JoinHandle<Result<(), String>>> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let front = pending.front_mut().filter(|p| !p.recorded)?;
        front.recorded = true;
        Some(append(record, front.event.clone()))
    }

    /// The reason to end now: a stop was asked and nothing is in flight.
    fn should_end(&self) -> Option<End> {
        let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner());
        let idle = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if idle { stop.clone() } else { None }
    }
}

/// Relays until the session ends; the client half is handed back so that the
/// caller can say why (at a message boundary), with the number of statements run.
pub(crate) async fn run<C, B>(
    client: C,
    backend: BufReader<B>,
    record: &SessionRecord,
) -> (End, u64, C)
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
    B: AsyncRead + AsyncWrite + Unpin + Send,
{
    // Bytes the backend sent after ReadyForQuery (none, normally) go first.
    let leftover = backend.buffer().to_vec();
    let (backend_read, backend_write) = tokio::io::split(backend.into_inner());
    let (client_read, client_write) = tokio::io::split(client);
    let mut client_read = BufReader::with_capacity(BUFFER, client_read);
    let mut client_write = BufWriter::with_capacity(BUFFER, client_write);
    let mut backend_read = BufReader::with_capacity(BUFFER, backend_read);
    let mut backend_write = BufWriter::with_capacity(BUFFER, backend_write);
    let shared = Shared {
        pending: Mutex::new(VecDeque::new()),
        stop: Mutex::new(None),
        wake: Notify::new(),
        statements: AtomicU64::new(0),
    };
    let end = if client_write.write_all(&leftover).await.is_err() {
        End::ClientGone
    } else {
        tokio::select! {
            end = to_backend(&mut client_read, &mut backend_write, record, &shared) => end,
            end = to_client(&mut backend_read, &mut client_write, record, &shared) => end,
        }
    };
    let _ = backend_write.write_all(&codec::message(b'X', &[])).await;
    let _ = backend_write.flush().await;
    // Statements that never got an answer still get their record.
    for p in shared
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain(..)
    {
        drop(complete(
            record,
            p,
            Some("the session ended before the statement completed"),
        ));
    }
    let _ = client_write.flush().await;
    let client = client_read.into_inner().unsplit(client_write.into_inner());
    (end, shared.statements.load(Ordering::Relaxed), client)
}

/// Client → backend: forwards every message; records each statement first.
async fn to_backend<R, W>(
    client: &mut BufReader<R>,
    backend: &mut BufWriter<W>,
    record: &SessionRecord,
    shared: &Shared,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Prepared statements' and portals' recorded texts, by name.
    let mut statements: HashMap<String, Text> = HashMap::new();
    let mut portals: HashMap<String, Text> = HashMap::new();
    // `ReadyForQuery` messages asked for so far.
    let mut readies: u64 = 0;
    loop {
        if client.buffer().is_empty() && backend.flush().await.is_err() {
            return End::BackendClosed;
        }
        if shared.stopping() {
            // Nothing more is forwarded; the other half ends the session once the
            // statements in flight have finished.
            return std::future::pending().await;
        }
        let msg = match codec::read_message(client, MAX_CLIENT_MESSAGE).await {
            Ok(Some(msg)) => msg,
            Ok(None) | Err(CodecError::Io(_)) => return End::ClientGone,
            Err(e) => return End::Protocol(e.to_string()),
        };
        let text = |body: &[u8]| -> Result<Text, End> {
            let (sql, _) = codec::cstr(body, "query").map_err(|e| End::Protocol(e.to_string()))?;
            let (recorded, reads) = redact::inspect(sql, record.full_statements);
            Ok(Text {
                recorded: recorded.into(),
                reads,
            })
        };
        let statement = match msg.tag {
            b'Q' => match text(&msg.body) {
                Ok(sql) => Some((sql, Kind::Simple)),
                Err(end) => return end,
            },
            b'P' => {
                let Ok((name, rest)) = codec::cstr(&msg.body, "statement name") else {
                    return End::Protocol("Parse without a statement name".into());
                };
                match text(rest) {
                    Ok(sql) => {
                        statements.insert(name.to_owned(), sql);
                    }
                    Err(end) => return end,
                }
                None
            }
            b'B' => {
                let parsed = codec::cstr(&msg.body, "portal name").and_then(|(portal, rest)| {
                    Ok((portal, codec::cstr(rest, "statement name")?.0))
                });
                let Ok((portal, name)) = parsed else {
                    return End::Protocol("Bind without portal and statement names".into());
                };
                let sql = statements.get(name).cloned().unwrap_or_else(|| {
                    Text::unseen(format!(
                        "<prepared statement \"{name}\" not seen by the gate>"
                    ))
                });
                portals.insert(portal.to_owned(), sql);
                None
            }
            b'E' => {
                let Ok((portal, _)) = codec::cstr(&msg.body, "portal name") else {
                    return End::Protocol("Execute without a portal name".into());
                };
                let sql = portals.get(portal).cloned().unwrap_or_else(|| {
                    Text::unseen(format!("<portal \"{portal}\" not seen by the gate>"))
                });
                Some((sql, Kind::Execute))
            }
            b'C' => {
                if let Some((&kind, rest)) = msg.body.split_first()
                    && let Ok((name, _)) = codec::cstr(rest, "name")
                {
                    match kind {
                        b'S' => statements.remove(name),
                        _ => portals.remove(name),
                    };
                }
                None
            }
            b'F' => Some((
                Text::unseen("<fast-path function call>".into()),
                Kind::Simple,
            )),
            _ => None,
        };
        if matches!(msg.tag, b'Q' | b'S' | b'F') {
            readies += 1;
        }
        if let Some((sql, kind)) = statement {
            let mut event = record.template.clone();
            event.event_type = EventType::Other(STATEMENT.to_owned());
            event.time = Timestamp::now();
            event.request_id = Some(uuid::Uuid::new_v4().to_string());
            event.statement = Some(sql.recorded.to_string());
            // A read runs at once; its result waits for its record (`to_client`).
            if !sql.reads
                && let Err(e) = record.audit.append(event.clone()).await
            {
                tracing::error!(error = %e, "audit log append failed; the statement is not run");
                shared.stop(End::AuditUnavailable);
                continue;
            }
            shared.statements.fetch_add(1, Ordering::Relaxed);
            shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(Pending {
                    event,
                    kind,
                    started: Instant::now(),
                    rows: None,
                    sqlstate: None,
                    recorded: !sql.reads,
                    until_ready: match kind {
                        Kind::Simple => readies,
                        Kind::Execute => readies + 1,
                    },
                });
        }
        let header = header(msg.tag, msg.body.len());
        if backend.write_all(&header).await.is_err() || backend.write_all(&msg.body).await.is_err()
        {
            return End::BackendClosed;
        }
        if msg.tag == b'X' {
            let _ = backend.flush().await;
            return End::ClientTerminated;
        }
    }
}

/// Result bytes held back from the client until the records of the statements
/// they answer are durable.
#[derive(Default)]
struct Held {
    bytes: Vec<u8>,
    /// `bytes[..releasable]` answer statements whose records are on their way.
    releasable: usize,
    /// Those records' appends.
    records: Vec<JoinHandle<Result<(), String>>>,
}

impl Held {
    /// Waits for the records, then sends the bytes they cover. A record that could
    /// not be written keeps its result from leaving and ends the session.
    async fn release<W: AsyncWrite + Unpin>(&mut self, client: &mut W) -> Result<(), End> {
        for append in self.records.drain(..) {
            match append.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "audit log append failed; the statement's result is withheld");
                    return Err(End::AuditUnavailable);
                }
                Err(_) => return Err(End::AuditUnavailable),
            }
        }
        if self.releasable > 0 {
            client
                .write_all(&self.bytes[..self.releasable])
                .await
                .map_err(|_| End::ClientGone)?;
            self.bytes.drain(..self.releasable);
            self.releasable = 0;
        }
        Ok(())
    }

    /// Ends the session for `end`, after what can leave has left.
    async fn end<W: AsyncWrite + Unpin>(&mut self, client: &mut W, end: End) -> End {
        self.release(client).await.err().unwrap_or(end)
    }

    /// Sends `bytes` to the client, or keeps them when `hold`.
    async fn pass<W: AsyncWrite + Unpin>(
        &mut self,
        hold: bool,
        client: &mut W,
        bytes: &[u8],
    ) -> Result<(), End> {
        if hold {
            self.bytes.extend_from_slice(bytes);
            Ok(())
        } else {
            client.write_all(bytes).await.map_err(|_| End::ClientGone)
        }
    }
}

/// Backend → client: copies every message, holding a read's result until its
/// record is durable; closes statements as they end.
async fn to_client<R, W>(
    backend: &mut BufReader<R>,
    client: &mut BufWriter<W>,
    record: &SessionRecord,
    shared: &Shared,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let deadline = record.deadline;
    let expiry = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);
    let mut expired = false;
    let mut held = Held::default();
    let mut readies: u64 = 0;
    loop {
        if let Some(end) = shared.should_end() {
            return held.end(client, end).await;
        }
        if backend.buffer().is_empty() {
            // Nothing more to read now: whatever can leave, leaves (its records
            // were appended together, so they share a commit).
            if let Err(end) = held.release(client).await {
                return end;
            }
            if client.flush().await.is_err() {
                return End::ClientGone;
            }
            // Waits only here, between messages, so that every branch is safe to
            // abandon.
            tokio::select! {
                biased;
                () = shared.wake.notified() => continue,
                () = &mut expiry, if !expired => {
                    expired = true;
                    shared.stop(End::TokenExpired);
                    continue;
                }
                filled = backend.fill_buf() => match filled {
                    Ok([]) | Err(_) => return End::BackendClosed,
                    Ok(_) => {}
                },
            }
        }
        let mut head = [0u8; 5];
        if backend.read_exact(&mut head).await.is_err() {
            return held.end(client, End::BackendClosed).await;
        }
        let tag = head[0];
        let len = u32::from_be_bytes(head[1..].try_into().expect("4 bytes")) as usize;
        let Some(body_len) = len.checked_sub(4) else {
            return End::BackendClosed;
        };
        // A message answers the oldest statement in flight; while that is a read
        // not yet recorded, it waits. Behind held bytes, everything waits, in order.
        let waits = shared.front_unrecorded();
        let hold = waits || !held.bytes.is_empty();
        if matches!(tag, b'C' | b'E' | b'Z' | b'I' | b's') {
            let mut body = vec![0; body_len];
            if backend.read_exact(&mut body).await.is_err() {
                return held.end(client, End::BackendClosed).await;
            }
            for part in [&head[..], &body] {
                if let Err(end) = held.pass(hold, client, part).await {
                    return end;
                }
            }
            if tag == b'Z' {
                readies += 1;
            }
            let finished = settle(shared, tag, &body, readies);
            if !waits || !finished.is_empty() {
                // Everything held so far answers statements now finished or
                // recorded.
                held.releasable = held.bytes.len();
            }
            for (done, note) in finished {
                let reads = !done.recorded;
                let append = complete(record, done, note);
                if reads {
                    held.records.push(append);
                }
            }
            if !expired && deadline.is_some_and(|at| tokio::time::Instant::now() >= at) {
                expired = true;
                shared.stop(End::TokenExpired);
            }
        } else {
            if let Err(end) = held.pass(hold, client, &head).await {
                return end;
            }
            let mut remaining = body_len;
            while remaining > 0 {
                let chunk = match backend.fill_buf().await {
                    Ok([]) | Err(_) => return End::BackendClosed,
                    Ok(chunk) => chunk,
                };
                let n = chunk.len().min(remaining);
                if let Err(end) = held.pass(hold, client, &chunk[..n]).await {
                    return end;
                }
                backend.consume(n);
                remaining -= n;
            }
            if hold && !waits {
                held.releasable = held.bytes.len();
            }
            if held.bytes.len() - held.releasable > HOLD {
                // A large result: its record goes first, then it streams.
                if let Some(append) = shared.record_front(record) {
                    held.records.push(append);
                }
                held.releasable = held.bytes.len();
                if let Err(end) = held.release(client).await {
                    return end;
                }
            }
        }
    }
}

/// What a backend message says about the statements in flight: those it ends,
/// each with a note for its record. `readies`: the `ReadyForQuery` messages
/// seen, this one included.
fn settle(
    shared: &Shared,
    tag: u8,
    body: &[u8],
    readies: u64,
) -> Vec<(Pending, Option<&'static str>)> {
    let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
    match tag {
        b'Z' => {
            // Only those it ends: a client may already have sent later ones.
            let ended = pending
                .iter()
                .take_while(|p| p.until_ready <= readies)
                .count();
            pending
                .drain(..ended)
                .map(|p| {
                    let note = (p.kind == Kind::Execute && p.sqlstate.is_none())
                        .then_some("not executed: an earlier message of its batch failed");
                    (p, note)
                })
                .collect()
        }
        _ => {
            let Some(front) = pending.front_mut() else {
                return Vec::new();
            };
            match tag {
                b'C' => {
                    if let Some(rows) = codec::command_rows(body) {
                        *front.rows.get_or_insert(0) += rows;
                    }
                }
                b'E' => front.sqlstate = codec::sqlstate(body),
                _ => {}
            }
            if front.kind == Kind::Execute {
                vec![(pending.pop_front().expect("front exists"), None)]
            } else {
                Vec::new()
            }
        }
    }
}

/// Appends a finished statement's record: for a read not yet recorded, its one
/// `sql.statement` record with the outcome; otherwise the completion record.
fn complete(
    record: &SessionRecord,
    p: Pending,
    note: Option<&str>,
) -> JoinHandle<Result<(), String>> {
    let mut event = p.event;
    if p.recorded {
        event.event_type = EventType::Other(STATEMENT_COMPLETED.to_owned());
        event.statement = None;
    }
    event.time = Timestamp::now();
    event.rows = p.rows;
    event.sqlstate = p.sqlstate;
    event.duration_ms = Some(p.started.elapsed().as_millis() as u64);
    event.detail = note.map(str::to_owned);
    append(record, event)
}

/// Appends `event` on its own task: it is on its way even if nobody waits for it.
fn append(record: &SessionRecord, event: Event) -> JoinHandle<Result<(), String>> {
    let audit = Arc::clone(&record.audit);
    tokio::spawn(async move {
        let result = audit.append(event).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "could not audit a SQL statement");
        }
        result
    })
}

fn header(tag: u8, body_len: usize) -> [u8; 5] {
    let mut h = [0u8; 5];
    h[0] = tag;
    h[1..].copy_from_slice(&(body_len as u32 + 4).to_be_bytes());
    h
}
