//! Where events live: one [`StoreBackend`] trait, implemented by SQLite (the
//! default, one file in the data directory) and PostgreSQL (shared by several gates).
//!
//! Three tables, the same in both:
//! - `audit_logs`: one row per chain (`log_id`), with its size and right frontier,
//!   updated in the same transaction as the events so a writer restarts in O(log n).
//! - `audit_events`: one row per event: the canonical record bytes (`record`), their
//!   leaf hash, and copies of the fields that queries filter on. `verify` checks the
//!   copies against the record, so they cannot be edited unnoticed either.
//! - `audit_checkpoints`: every signed checkpoint note.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::event::{Record, Timestamp};
use crate::merkle::{Frontier, Hash};

mod postgres;
mod sqlite;

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

/// Where the audit log is stored.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite:///absolute/path/audit.db` (or a plain path).
    Sqlite(PathBuf),
    /// `postgres://user@host:port/db` (or `postgresql://`), as tokio-postgres parses it.
    Postgres(String),
}

impl StoreUrl {
    /// File name of the default store in the data directory.
    pub const DEFAULT_FILE: &'static str = "audit.db";

    /// The default: `<data_dir>/audit.db`.
    pub fn default_for(data_dir: &Path) -> StoreUrl {
        StoreUrl::Sqlite(data_dir.join(StoreUrl::DEFAULT_FILE))
    }

    /// Parses `sqlite:///path`, `sqlite:path`, `postgres://...`, or a plain file path.
    pub fn parse(text: &str) -> Result<StoreUrl, StoreError> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(text.to_owned()));
        }
        let path = if let Some(rest) = text.strip_prefix("sqlite://") {
            rest
        } else if let Some(rest) = text.strip_prefix("sqlite:") {
            rest
        } else if text.contains("://") {
            return Err(StoreError::Url(format!(
                "'{text}' is neither sqlite:///path nor postgres://...; those are the audit stores"
            )));
        } else {
            text
        };
        if path.is_empty() {
            return Err(StoreError::Url(format!("'{text}' names no file")));
        }
        Ok(StoreUrl::Sqlite(PathBuf::from(path)))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            // Never print a password.
            StoreUrl::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StoreUrl::parse(s)
    }
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:REDACTED{}", &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Why the store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store URL is not usable.
    #[error("audit store: {0}")]
    Url(String),
    /// SQLite failed.
    #[error("audit store {path}: {message}")]
    Sqlite {
        /// The database file.
        path: String,
        /// What SQLite said.
        message: String,
    },
    /// PostgreSQL failed.
    #[error("audit store {url}: {message}")]
    Postgres {
        /// The server (password redacted).
        url: String,
        /// What the server or client said.
        message: String,
    },
    /// Another writer appended to the same chain.
    #[error(
        "another writer appended to audit chain '{log_id}' (expected {expected} events, found {found}); give each writer its own log id"
    )]
    Conflict {
        /// The chain.
        log_id: String,
        /// The size this writer expected.
        expected: u64,
        /// The size in the store.
        found: u64,
    },
    /// The store is not in the state this crate keeps it in.
    #[error("audit store is inconsistent: {0}; run `entraflow audit verify`")]
    Corrupt(String),
    /// There is no store to read.
    #[error("no audit log at {0}")]
    Missing(String),
}

/// A chain's head as stored: its size and right frontier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHead {
    /// The chain id (checkpoint origin).
    pub log_id: String,
    /// Number of events.
    pub size: u64,
    /// The stored frontier bytes (32 per set bit of `size`).
    pub frontier: Vec<u8>,
    /// When the chain was created.
    pub created: String,
}

impl LogHead {
    /// The frontier, if the stored bytes are well formed.
    pub fn frontier(&self) -> Result<Frontier, StoreError> {
        Frontier::from_bytes(self.size, &self.frontier).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the stored head of chain '{}' has {} frontier bytes for {} events",
                self.log_id,
                self.frontier.len(),
                self.size
            ))
        })
    }
}

/// One event row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The chain.
    pub log_id: String,
    /// Position in the chain.
    pub seq: u64,
    /// The event id (a UUID).
    pub event_id: String,
    /// Event time (copy).
    pub time: String,
    /// Event type (copy).
    pub event_type: String,
    /// Principal oid (copy).
    pub principal_oid: Option<String>,
    /// Principal appid (copy).
    pub principal_appid: Option<String>,
    /// Principal name (copy).
    pub principal_name: Option<String>,
    /// Action (copy).
    pub action: Option<String>,
    /// Resource (copy).
    pub resource: Option<String>,
    /// Decision (copy).
    pub decision: Option<String>,
    /// Run id (copy).
    pub run_id: Option<String>,
    /// Blob REST operation (copy; schema 2).
    pub operation: Option<String>,
    /// Blob version's ETag (copy; schema 2).
    pub etag: Option<String>,
    /// Blob version's Content-MD5 (copy; schema 2).
    pub content_md5: Option<String>,
    /// Copy Blob's source scope (copy; schema 2).
    pub copy_source: Option<String>,
    /// Copy Blob's source ETag (copy; schema 2).
    pub copy_source_etag: Option<String>,
    /// The canonical record: the bytes that were hashed.
    pub record: String,
    /// Stored leaf hash.
    pub leaf_hash: Vec<u8>,
}

impl Row {
    /// The row for `record`, whose canonical bytes are `bytes` and leaf hash `leaf`.
    pub fn new(record: &Record, bytes: Vec<u8>, leaf: &Hash) -> Row {
        let mut row = Row::columns_of(record);
        row.record = String::from_utf8(bytes).expect("JSON is UTF-8");
        row.leaf_hash = leaf.0.to_vec();
        row
    }

    /// The indexed columns as they should be for `record` (record and hash left empty).
    fn columns_of(record: &Record) -> Row {
        let e = &record.event;
        let p = e.principal.as_ref();
        Row {
            log_id: record.log.clone(),
            seq: record.seq,
            event_id: record.id.to_string(),
            time: e.time.to_string(),
            event_type: e.event_type.as_str().to_owned(),
            principal_oid: p.and_then(|p| p.oid.clone()),
            principal_appid: p.and_then(|p| p.appid.clone()),
            principal_name: p.and_then(|p| p.name.clone()),
            action: e.action.clone(),
            resource: e.resource.clone(),
            decision: e.decision.map(|d| d.as_str().to_owned()),
            run_id: e.run_id.clone(),
            operation: e.operation.clone(),
            etag: e.etag.clone(),
            content_md5: e.content_md5.clone(),
            copy_source: e.copy_source.clone(),
            copy_source_etag: e.copy_source_etag.clone(),
            record: String::new(),
            leaf_hash: Vec::new(),
        }
    }

    /// The first indexed column whose value disagrees with `record`, if any.
    pub fn mismatched_column(&self, record: &Record) -> Option<&'static str> {
        let want = Row::columns_of(record);
        let checks: [(&'static str, bool); 17] = [
            ("log_id", self.log_id == want.log_id),
            ("seq", self.seq == want.seq),
            ("event_id", self.event_id == want.event_id),
            ("time", self.time == want.time),
            ("event_type", self.event_type == want.event_type),
            ("principal_oid", self.principal_oid == want.principal_oid),
            (
                "principal_appid",
                self.principal_appid == want.principal_appid,
            ),
            ("principal_name", self.principal_name == want.principal_name),
            ("action", self.action == want.action),
            ("resource", self.resource == want.resource),
            ("decision", self.decision == want.decision),
            ("run_id", self.run_id == want.run_id),
            ("operation", self.operation == want.operation),
            ("etag", self.etag == want.etag),
            ("content_md5", self.content_md5 == want.content_md5),
            ("copy_source", self.copy_source == want.copy_source),
            (
                "copy_source_etag",
                self.copy_source_etag == want.copy_source_etag,
            ),
        ];
        checks.into_iter().find(|(_, ok)| !ok).map(|(name, _)| name)
    }
}

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The chain.
    pub log_id: String,
    /// Tree size it covers.
    pub size: u64,
    /// Root it claims (copy of the note's).
    pub root: Vec<u8>,
    /// The signed note.
    pub note: String,
    /// When it was made.
    pub created: String,
}

/// Which events a query returns. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this chain.
    pub log_id: Option<String>,
    /// Only events after this position (with `log_id`, for `--follow`).
    pub after_seq: Option<u64>,
    /// The principal's oid, appid or name.
    pub principal: Option<String>,
    /// Resource scopes starting with this.
    pub resource_prefix: Option<String>,
    /// This exact action.
    pub action: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// At or after this time.
    pub since: Option<Timestamp>,
    /// Before this time.
    pub until: Option<Timestamp>,
    /// This training run.
    pub run_id: Option<String>,
    /// This event type.
    pub event_type: Option<String>,
}

/// Which blob [`StoreBackend::blob_writes`] looks for, by its Azure scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceMatch {
    /// Exactly this scope (`/subscriptions/.../containers/c/blobs/b`).
    Exact(String),
    /// Scopes ending with this (`/storageAccounts/a/blobServices/default/containers/c/blobs/b`),
    /// when the subscription and resource group are not known; the caller checks
    /// what the rest of each match is.
    Suffix(String),
}

/// Where a query continues: after the row with this (time, log, seq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Time of the last row returned.
    pub time: String,
    /// Its chain.
    pub log_id: String,
    /// Its position.
    pub seq: u64,
}

impl Cursor {
    /// The cursor just after `row`.
    pub fn after(row: &Row) -> Cursor {
        Cursor {
            time: row.time.clone(),
            log_id: row.log_id.clone(),
            seq: row.seq,
        }
    }
}

/// A bound SQL parameter.
#[derive(Debug, Clone)]
pub(crate) enum SqlParam {
    Text(String),
    Int(i64),
}

/// Builds an event query; `placeholder(n, param)` spells the n-th parameter in the
/// backend's dialect (`?n`, or `$n::type` so PostgreSQL knows its type).
pub(crate) fn query_sql(
    filter: &Filter,
    cursor: Option<&Cursor>,
    limit: usize,
    placeholder: fn(usize, &SqlParam) -> String,
) -> (String, Vec<SqlParam>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<SqlParam> = Vec::new();
    let bind = |params: &mut Vec<SqlParam>, p: SqlParam| {
        let text = placeholder(params.len() + 1, &p);
        params.push(p);
        text
    };
    if let Some(log) = &filter.log_id {
        let p = bind(&mut params, SqlParam::Text(log.clone()));
        clauses.push(format!("log_id = {p}"));
    }
    if let Some(after) = filter.after_seq {
        let p = bind(&mut params, SqlParam::Int(after as i64));
        clauses.push(format!("seq > {p}"));
    }
    if let Some(who) = &filter.principal {
        let p = bind(&mut params, SqlParam::Text(who.clone()));
        let q = bind(&mut params, SqlParam::Text(who.clone()));
        let r = bind(&mut params, SqlParam::Text(who.clone()));
        clauses.push(format!(
            "(principal_oid = {p} OR principal_appid = {q} OR principal_name = {r})"
        ));
    }
    if let Some(prefix) = &filter.resource_prefix {
        let n = bind(&mut params, SqlParam::Int(prefix.chars().count() as i64));
        let p = bind(&mut params, SqlParam::Text(prefix.clone()));
        clauses.push(format!("substr(resource, 1, CAST({n} AS INTEGER)) = {p}"));
    }
    for (column, value) in [
        ("action", &filter.action),
        ("decision", &filter.decision),
        ("run_id", &filter.run_id),
        ("event_type", &filter.event_type),
    ] {
        if let Some(value) = value {
            let p = bind(&mut params, SqlParam::Text(value.clone()));
            clauses.push(format!("{column} = {p}"));
        }
    }
    if let Some(since) = &filter.since {
        let p = bind(&mut params, SqlParam::Text(since.to_string()));
        clauses.push(format!("time >= {p}"));
    }
    if let Some(until) = &filter.until {
        let p = bind(&mut params, SqlParam::Text(until.to_string()));
        clauses.push(format!("time < {p}"));
    }
    if let Some(c) = cursor {
        let t = bind(&mut params, SqlParam::Text(c.time.clone()));
        let l = bind(&mut params, SqlParam::Text(c.log_id.clone()));
        let s = bind(&mut params, SqlParam::Int(c.seq as i64));
        clauses.push(format!("(time, log_id, seq) > ({t}, {l}, {s})"));
    }
    let mut sql = format!("SELECT {ROW_COLUMNS} FROM audit_events");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    let l = bind(&mut params, SqlParam::Int(limit as i64));
    sql.push_str(&format!(" ORDER BY time, log_id, seq LIMIT {l}"));
    (sql, params)
}

/// The event columns, in the order both backends read them.
pub(crate) const ROW_COLUMNS: &str = "log_id, seq, event_id, time, event_type, principal_oid, \
     principal_appid, principal_name, action, resource, decision, run_id, operation, etag, \
     content_md5, copy_source, copy_source_etag, record, leaf_hash";

/// Every chain id found in any table that holds chain data: heads, events and
/// checkpoints. Deleting a chain's head row must not hide its events from `verify`.
/// The recursive steps walk each primary key's distinct `log_id`s one index seek at
/// a time (a loose index scan), so the cost grows with the chains, not the events.
pub(crate) const CHAIN_IDS_SQL: &str = "WITH RECURSIVE \
     ev(id) AS (SELECT MIN(log_id) FROM audit_events \
       UNION ALL SELECT (SELECT MIN(log_id) FROM audit_events WHERE log_id > ev.id) \
       FROM ev WHERE ev.id IS NOT NULL), \
     cp(id) AS (SELECT MIN(log_id) FROM audit_checkpoints \
       UNION ALL SELECT (SELECT MIN(log_id) FROM audit_checkpoints WHERE log_id > cp.id) \
       FROM cp WHERE cp.id IS NOT NULL) \
     SELECT id FROM ev WHERE id IS NOT NULL \
     UNION SELECT id FROM cp WHERE id IS NOT NULL \
     UNION SELECT log_id FROM audit_logs \
     ORDER BY 1";

/// What every audit store does. Methods are async; the SQLite store runs them on its
/// own thread, the PostgreSQL store on the connection.
pub trait StoreBackend: Send + Sync + 'static {
    /// Creates the tables if they are missing.
    fn init(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Registers chain `log_id` if new and returns its head, after checking that the
    /// stored events match the head's size.
    fn open_log(&self, log_id: &str) -> impl Future<Output = Result<LogHead, StoreError>> + Send;

    /// The head of one chain.
    fn head(
        &self,
        log_id: &str,
    ) -> impl Future<Output = Result<Option<LogHead>, StoreError>> + Send;

    /// Every chain's head.
    fn heads(&self) -> impl Future<Output = Result<Vec<LogHead>, StoreError>> + Send;

    /// Every chain that has a head, an event or a checkpoint ([`CHAIN_IDS_SQL`]),
    /// sorted.
    fn chain_ids(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Appends `rows` to chain `log_id` (which must have `expected_size` events) and
    /// stores the new head, in one durable transaction.
    fn append(
        &self,
        log_id: &str,
        expected_size: u64,
        rows: Vec<Row>,
        head: &Frontier,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a checkpoint (one per chain and size; a second one is ignored).
    fn add_checkpoint(
        &self,
        checkpoint: StoredCheckpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A chain's checkpoints, smallest first.
    fn checkpoints(
        &self,
        log_id: &str,
    ) -> impl Future<Output = Result<Vec<StoredCheckpoint>, StoreError>> + Send;

    /// Up to `limit` events of `log_id` from position `from_seq` on, in order.
    fn rows(
        &self,
        log_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send;

    /// Up to `limit` events matching `filter` after `cursor`, in time order.
    fn query(
        &self,
        filter: &Filter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send;

    /// Up to `limit` writes that produced a version of the blob `resource` names
    /// (type `blob.write`, with an ETag), newest first.
    fn blob_writes(
        &self,
        resource: &ResourceMatch,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send;

    /// Every event of run `run_id` by the principal with object id
    /// `principal_oid` whose type is one of `event_types`, in no particular order.
    fn run_events(
        &self,
        run_id: &str,
        principal_oid: &str,
        event_types: &[&str],
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send;

    /// Every `admin.change` event whose resource is `resource` (a role
    /// assignment's id, say), oldest first.
    fn admin_changes(
        &self,
        resource: &str,
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send;

    /// The stored leaf hashes of positions `from_seq..to_seq` of chain `log_id`,
    /// as (position, hash), in order; a missing position is simply absent.
    fn leaf_hashes(
        &self,
        log_id: &str,
        from_seq: u64,
        to_seq: u64,
    ) -> impl Future<Output = Result<Vec<(u64, Vec<u8>)>, StoreError>> + Send;
}

/// Either store, chosen by URL.
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// SQLite.
    Sqlite(Arc<SqliteStore>),
    /// PostgreSQL.
    Postgres(Arc<PostgresStore>),
}

impl AnyStore {
    /// Connects to (and, for SQLite, creates) the store and makes its tables.
    pub async fn open(url: &StoreUrl) -> Result<AnyStore, StoreError> {
        let store = match url {
            StoreUrl::Sqlite(path) => AnyStore::Sqlite(Arc::new(SqliteStore::open(path)?)),
            StoreUrl::Postgres(url) => {
                AnyStore::Postgres(Arc::new(PostgresStore::connect(url).await?))
            }
        };
        store.init().await?;
        Ok(store)
    }

    /// Like [`AnyStore::open`], but a SQLite file must already exist: for commands
    /// that only read.
    pub async fn open_existing(url: &StoreUrl) -> Result<AnyStore, StoreError> {
        if let StoreUrl::Sqlite(path) = url
            && !path.exists()
        {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        AnyStore::open(url).await
    }
}

macro_rules! forward {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($store) => $call.await,
            AnyStore::Postgres($store) => $call.await,
        }
    };
}

impl StoreBackend for AnyStore {
    async fn init(&self) -> Result<(), StoreError> {
        forward!(self, s => s.init())
    }
    async fn open_log(&self, log_id: &str) -> Result<LogHead, StoreError> {
        forward!(self, s => s.open_log(log_id))
    }
    async fn head(&self, log_id: &str) -> Result<Option<LogHead>, StoreError> {
        forward!(self, s => s.head(log_id))
    }
    async fn heads(&self) -> Result<Vec<LogHead>, StoreError> {
        forward!(self, s => s.heads())
    }
    async fn chain_ids(&self) -> Result<Vec<String>, StoreError> {
        forward!(self, s => s.chain_ids())
    }
    async fn append(
        &self,
        log_id: &str,
        expected_size: u64,
        rows: Vec<Row>,
        head: &Frontier,
    ) -> Result<(), StoreError> {
        forward!(self, s => s.append(log_id, expected_size, rows, head))
    }
    async fn add_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<(), StoreError> {
        forward!(self, s => s.add_checkpoint(checkpoint))
    }
    async fn checkpoints(&self, log_id: &str) -> Result<Vec<StoredCheckpoint>, StoreError> {
        forward!(self, s => s.checkpoints(log_id))
    }
    async fn rows(
        &self,
        log_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        forward!(self, s => s.rows(log_id, from_seq, limit))
    }
    async fn query(
        &self,
        filter: &Filter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        forward!(self, s => s.query(filter, cursor, limit))
    }
    async fn blob_writes(
        &self,
        resource: &ResourceMatch,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        forward!(self, s => s.blob_writes(resource, limit))
    }
    async fn run_events(
        &self,
        run_id: &str,
        principal_oid: &str,
        event_types: &[&str],
    ) -> Result<Vec<Row>, StoreError> {
        forward!(self, s => s.run_events(run_id, principal_oid, event_types))
    }
    async fn admin_changes(&self, resource: &str) -> Result<Vec<Row>, StoreError> {
        forward!(self, s => s.admin_changes(resource))
    }
    async fn leaf_hashes(
        &self,
        log_id: &str,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        forward!(self, s => s.leaf_hashes(log_id, from_seq, to_seq))
    }
}

/// Now, as stored in `created` columns.
pub(crate) fn now_text() -> String {
    Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse() {
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/audit.db").unwrap(),
            StoreUrl::Sqlite("/var/lib/audit.db".into())
        );
        assert_eq!(
            StoreUrl::parse("audit.db").unwrap(),
            StoreUrl::Sqlite("audit.db".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgres://u:pw@h:5432/db").unwrap(),
            StoreUrl::Postgres(_)
        ));
        assert!(StoreUrl::parse("mysql://x").is_err());
        assert_eq!(
            StoreUrl::parse("postgres://u:secret@h:5432/db")
                .unwrap()
                .to_string(),
            "postgres://u:REDACTED@h:5432/db"
        );
    }

    #[test]
    fn query_sql_binds_every_filter_in_order() {
        let filter = Filter {
            principal: Some("oid".into()),
            resource_prefix: Some("/subscriptions/s/".into()),
            decision: Some("deny".into()),
            ..Filter::default()
        };
        let (sql, params) = query_sql(&filter, None, 10, |n, _| format!("${n}"));
        assert!(sql.contains("principal_oid = $1 OR principal_appid = $2"));
        assert!(sql.contains("substr(resource, 1, CAST($4 AS INTEGER)) = $5"));
        assert!(sql.contains("decision = $6"));
        assert!(sql.ends_with("LIMIT $7"));
        assert_eq!(params.len(), 7);
    }
}
