//! The SQLite store: one file, WAL, `synchronous=FULL` (a commit returns after the
//! WAL is fsync'd), driven from its own thread so that blocking I/O never runs on the
//! async runtime. Each call sends a closure to that thread and awaits its answer.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use entraflow_core::sqlite::{Migration, migrate};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    CHAIN_IDS_SQL, Cursor, Filter, LogHead, ROW_COLUMNS, ResourceMatch, Row, SqlParam,
    StoreBackend, StoreError, StoredCheckpoint, now_text, query_sql,
};
use crate::merkle::Frontier;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_logs (
    log_id   TEXT PRIMARY KEY,
    size     INTEGER NOT NULL,
    frontier BLOB NOT NULL,
    created  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_events (
    log_id          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    time            TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    principal_oid   TEXT,
    principal_appid TEXT,
    principal_name  TEXT,
    action          TEXT,
    resource        TEXT,
    decision        TEXT,
    run_id          TEXT,
    record          TEXT NOT NULL,
    leaf_hash       BLOB NOT NULL,
    PRIMARY KEY (log_id, seq)
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time);
CREATE INDEX IF NOT EXISTS audit_events_principal ON audit_events (principal_oid);
CREATE INDEX IF NOT EXISTS audit_events_run ON audit_events (run_id);
CREATE INDEX IF NOT EXISTS audit_events_id ON audit_events (event_id);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    log_id  TEXT NOT NULL,
    size    INTEGER NOT NULL,
    root    BLOB NOT NULL,
    note    TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (log_id, size)
);
";

/// Version 2: the blob version fields of schema 2 records as columns (NULL for
/// version 1 records, which never have them), and two partial indexes for lineage
/// that only writes producing a blob version and admin changes enter, so the read
/// path (most events) pays nothing for them.
const SCHEMA_2: &str = "
ALTER TABLE audit_events ADD COLUMN operation TEXT;
ALTER TABLE audit_events ADD COLUMN etag TEXT;
ALTER TABLE audit_events ADD COLUMN content_md5 TEXT;
ALTER TABLE audit_events ADD COLUMN copy_source TEXT;
ALTER TABLE audit_events ADD COLUMN copy_source_etag TEXT;
CREATE INDEX audit_events_writes ON audit_events (resource, time)
    WHERE event_type = 'blob.write' AND etag IS NOT NULL;
CREATE INDEX audit_events_admin ON audit_events (resource)
    WHERE event_type = 'admin.change';
";

/// `audit.db`'s schema, one step per version (`PRAGMA user_version`, as every
/// entraflow database). A database written before versions existed has exactly
/// step 1's tables, which step 1 leaves as they are. Append steps; never edit one.
const MIGRATIONS: [Migration; 2] = [Migration::sql(SCHEMA), Migration::sql(SCHEMA_2)];

/// The SQLite audit store. Cheap to share; all work happens on one dedicated thread.
#[derive(Debug)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    path: Arc<str>,
}

impl SqliteStore {
    /// Opens (creating, mode 0600) the database at `path` and starts its thread.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let label: Arc<str> = path.display().to_string().into();
        let text = label.clone();
        let err = sqlite_err(&text);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        create_private(path).map_err(|e| err(e.to_string()))?;
        let mut conn = Connection::open(path).map_err(|e| err(e.to_string()))?;
        configure(&conn).map_err(&err)?;
        start_checkpointer(path, &mut conn).map_err(&err)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("audit-sqlite".into())
            .spawn(move || {
                let mut conn = conn;
                for job in queue {
                    job(&mut conn);
                }
            })
            .map_err(|e| err(format!("cannot start the database thread: {e}")))?;
        Ok(SqliteStore { jobs, path: label })
    }

    /// Runs `f` on the database thread.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &str) -> Result<R, StoreError> + Send + 'static,
    ) -> impl Future<Output = Result<R, StoreError>> + Send + 'static {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let path = self.path.clone();
        let job_path = self.path.clone();
        let sent = self.jobs.send(Box::new(move |conn: &mut Connection| {
            let _ = reply.send(f(conn, &job_path));
        }));
        async move {
            let gone = || sqlite_err(&path)("the database thread has stopped".to_owned());
            sent.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        }
    }
}

fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

fn configure(conn: &Connection) -> Result<(), String> {
    let e = |e: rusqlite::Error| e.to_string();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(e)?;
    // 4 KiB pages: a one-event commit dirties ~7 pages (the row, four indexes, the
    // head), each copied whole into the WAL and checksummed. Measured with this
    // schema (~1 KiB records, synchronous=FULL): 36 KiB of WAL per commit instead
    // of 120 KiB with 16 KiB pages, and 1.6-1.9x the commits/s. Only takes effect
    // when the file is new (before WAL is switched on).
    conn.pragma_update(None, "page_size", 4096).map_err(e)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(e)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "the database refused WAL mode (journal_mode is {mode})"
        ));
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(e)?;
    Ok(())
}

/// WAL pages (4 KiB) of growth after which the WAL is copied into the database.
const CHECKPOINT_PAGES: i32 = 1000;
/// WAL pages after which the WAL also starts over (it cannot while commits keep
/// coming otherwise), holding the writer up for the few frames still to copy.
const RESTART_PAGES: i32 = 16 * CHECKPOINT_PAGES;

/// Moves WAL checkpoints off the writer: SQLite's automatic checkpoint runs inside
/// the commit that crosses its threshold, so every waiter of that group commit
/// waited for it (11 % of the SQL gate's samples, in the commit path). A thread
/// with its own connection checkpoints instead, told by the writer's WAL hook how
/// large the WAL has grown; a passive checkpoint never blocks the writer.
fn start_checkpointer(path: &Path, writer: &mut Connection) -> Result<(), String> {
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let (grew, wal_pages) = mpsc::sync_channel::<i32>(1);
    // Replaces the automatic checkpoint (both are the connection's WAL hook).
    writer
        .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            let _ = grew.try_send(pages);
            Ok(())
        }))
        .map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("audit-checkpoint".into())
        .spawn(move || {
            let mut next = CHECKPOINT_PAGES;
            // Ends when the writer's connection (and with it the hook) is gone.
            for pages in wal_pages {
                if pages < next - CHECKPOINT_PAGES {
                    // The WAL started over on its own.
                    next = CHECKPOINT_PAGES;
                }
                if pages < next {
                    continue;
                }
                let mode = if pages >= RESTART_PAGES { "RESTART" } else { "PASSIVE" };
                if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
                    tracing::warn!(error = %e, "audit WAL checkpoint failed; retried as the WAL grows");
                }
                next = if mode == "RESTART" { CHECKPOINT_PAGES } else { pages + CHECKPOINT_PAGES };
            }
        })
        .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
    Ok(())
}

fn sqlite_err(path: &str) -> impl Fn(String) -> StoreError + '_ {
    move |message| StoreError::Sqlite {
        path: path.to_owned(),
        message,
    }
}

trait Ctx<T> {
    fn ctx(self, path: &str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, path: &str) -> Result<T, StoreError> {
        self.map_err(|e| sqlite_err(path)(e.to_string()))
    }
}

fn read_head(conn: &Connection, log_id: &str) -> rusqlite::Result<Option<LogHead>> {
    conn.query_row(
        "SELECT log_id, size, frontier, created FROM audit_logs WHERE log_id = ?1",
        [log_id],
        head_from_row,
    )
    .optional()
}

fn head_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogHead> {
    Ok(LogHead {
        log_id: r.get(0)?,
        size: r.get::<_, i64>(1)? as u64,
        frontier: r.get(2)?,
        created: r.get(3)?,
    })
}

fn row_from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        log_id: r.get(0)?,
        seq: r.get::<_, i64>(1)? as u64,
        event_id: r.get(2)?,
        time: r.get(3)?,
        event_type: r.get(4)?,
        principal_oid: r.get(5)?,
        principal_appid: r.get(6)?,
        principal_name: r.get(7)?,
        action: r.get(8)?,
        resource: r.get(9)?,
        decision: r.get(10)?,
        run_id: r.get(11)?,
        operation: r.get(12)?,
        etag: r.get(13)?,
        content_md5: r.get(14)?,
        copy_source: r.get(15)?,
        copy_source_etag: r.get(16)?,
        record: r.get(17)?,
        leaf_hash: r.get(18)?,
    })
}

impl rusqlite::ToSql for SqlParam {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            SqlParam::Text(text) => text.to_sql(),
            SqlParam::Int(n) => n.to_sql(),
        }
    }
}

impl StoreBackend for SqliteStore {
    fn init(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.call(|conn, path| {
            migrate(conn, &MIGRATIONS).map_err(|e| sqlite_err(path)(format!("schema: {e}")))
        })
    }

    fn open_log(&self, log_id: &str) -> impl Future<Output = Result<LogHead, StoreError>> + Send {
        let log_id = log_id.to_owned();
        self.call(move |conn, path| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx(path)?;
            tx.execute(
                "INSERT OR IGNORE INTO audit_logs (log_id, size, frontier, created) VALUES (?1, 0, X'', ?2)",
                params![log_id, now_text()],
            )
            .ctx(path)?;
            let head = read_head(&tx, &log_id).ctx(path)?.expect("just inserted");
            let stored: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_events WHERE log_id = ?1",
                    [&log_id],
                    |r| r.get(0),
                )
                .ctx(path)?;
            tx.commit().ctx(path)?;
            if stored as u64 != head.size {
                return Err(StoreError::Corrupt(format!(
                    "chain '{log_id}': its head says {} events but events up to position {} are stored",
                    head.size, stored
                )));
            }
            head.frontier()?;
            Ok(head)
        })
    }

    fn head(
        &self,
        log_id: &str,
    ) -> impl Future<Output = Result<Option<LogHead>, StoreError>> + Send {
        let log_id = log_id.to_owned();
        self.call(move |conn, path| read_head(conn, &log_id).ctx(path))
    }

    fn heads(&self) -> impl Future<Output = Result<Vec<LogHead>, StoreError>> + Send {
        self.call(|conn, path| {
            let mut stmt = conn
                .prepare("SELECT log_id, size, frontier, created FROM audit_logs ORDER BY log_id")
                .ctx(path)?;
            let heads = stmt
                .query_map([], head_from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .ctx(path)?;
            Ok(heads)
        })
    }

    fn chain_ids(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        self.call(|conn, path| {
            let mut stmt = conn.prepare(CHAIN_IDS_SQL).ctx(path)?;
            let ids = stmt
                .query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
                .ctx(path)?;
            Ok(ids)
        })
    }

    fn append(
        &self,
        log_id: &str,
        expected_size: u64,
        rows: Vec<Row>,
        head: &Frontier,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let log_id = log_id.to_owned();
        let (new_size, frontier) = (head.size(), head.to_bytes());
        self.call(move |conn, path| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx(path)?;
            let updated = tx
                .prepare_cached(
                    "UPDATE audit_logs SET size = ?1, frontier = ?2 WHERE log_id = ?3 AND size = ?4",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        new_size as i64,
                        frontier,
                        log_id,
                        expected_size as i64
                    ])
                })
                .ctx(path)?;
            if updated != 1 {
                let found = read_head(&tx, &log_id).ctx(path)?.map_or(0, |h| h.size);
                return Err(StoreError::Conflict {
                    log_id,
                    expected: expected_size,
                    found,
                });
            }
            {
                let mut insert = tx
                    .prepare_cached(&format!(
                        "INSERT INTO audit_events ({ROW_COLUMNS}) VALUES \
                         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                         ?16, ?17, ?18, ?19)"
                    ))
                    .ctx(path)?;
                for row in &rows {
                    insert
                        .execute(params![
                            row.log_id,
                            row.seq as i64,
                            row.event_id,
                            row.time,
                            row.event_type,
                            row.principal_oid,
                            row.principal_appid,
                            row.principal_name,
                            row.action,
                            row.resource,
                            row.decision,
                            row.run_id,
                            row.operation,
                            row.etag,
                            row.content_md5,
                            row.copy_source,
                            row.copy_source_etag,
                            row.record,
                            row.leaf_hash,
                        ])
                        .ctx(path)?;
                }
            }
            tx.commit().ctx(path)
        })
    }

    fn add_checkpoint(
        &self,
        checkpoint: StoredCheckpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.call(move |conn, path| {
            conn.execute(
                "INSERT OR IGNORE INTO audit_checkpoints (log_id, size, root, note, created) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    checkpoint.log_id,
                    checkpoint.size as i64,
                    checkpoint.root,
                    checkpoint.note,
                    checkpoint.created
                ],
            )
            .map(drop)
            .ctx(path)
        })
    }

    fn checkpoints(
        &self,
        log_id: &str,
    ) -> impl Future<Output = Result<Vec<StoredCheckpoint>, StoreError>> + Send {
        let log_id = log_id.to_owned();
        self.call(move |conn, path| {
            let mut stmt = conn
                .prepare(
                    "SELECT log_id, size, root, note, created FROM audit_checkpoints \
                     WHERE log_id = ?1 ORDER BY size",
                )
                .ctx(path)?;
            let rows = stmt
                .query_map([&log_id], |r| {
                    Ok(StoredCheckpoint {
                        log_id: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                        root: r.get(2)?,
                        note: r.get(3)?,
                        created: r.get(4)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .ctx(path)?;
            Ok(rows)
        })
    }

    fn rows(
        &self,
        log_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send {
        let log_id = log_id.to_owned();
        self.call(move |conn, path| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ROW_COLUMNS} FROM audit_events WHERE log_id = ?1 AND seq >= ?2 \
                     ORDER BY seq LIMIT ?3"
                ))
                .ctx(path)?;
            let rows = stmt
                .query_map(params![log_id, from_seq as i64, limit as i64], row_from_sql)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .ctx(path)?;
            Ok(rows)
        })
    }

    fn query(
        &self,
        filter: &Filter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send {
        let (sql, params) = query_sql(filter, cursor, limit, |n, _| format!("?{n}"));
        self.call(move |conn, path| {
            let mut stmt = conn.prepare_cached(&sql).ctx(path)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params.iter()), row_from_sql)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .ctx(path)?;
            Ok(rows)
        })
    }

    fn blob_writes(
        &self,
        resource: &ResourceMatch,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send {
        // The partial index holds only such writes: found by seek for an exact
        // scope, by a scan of the writes alone (never the reads) for a suffix.
        let (condition, params): (&str, Vec<SqlParam>) = match resource {
            ResourceMatch::Exact(scope) => ("resource = ?1", vec![SqlParam::Text(scope.clone())]),
            ResourceMatch::Suffix(suffix) => (
                "substr(resource, -?1) = ?2",
                vec![
                    SqlParam::Int(suffix.chars().count() as i64),
                    SqlParam::Text(suffix.clone()),
                ],
            ),
        };
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM audit_events INDEXED BY audit_events_writes \
             WHERE event_type = 'blob.write' AND etag IS NOT NULL AND {condition} \
             ORDER BY time DESC, log_id DESC, seq DESC LIMIT {limit}"
        );
        self.call(move |conn, path| {
            let mut stmt = conn.prepare_cached(&sql).ctx(path)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params.iter()), row_from_sql)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .ctx(path)?;
            Ok(rows)
        })
    }

    fn run_events(
        &self,
        run_id: &str,
        principal_oid: &str,
        event_types: &[&str],
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send {
        let types: Vec<String> = (0..event_types.len())
            .map(|i| format!("?{}", i + 3))
            .collect();
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM audit_events \
             WHERE run_id = ?1 AND principal_oid = ?2 AND event_type IN ({})",
            types.join(", ")
        );
        let mut params = vec![run_id.to_owned(), principal_oid.to_owned()];
        params.extend(event_types.iter().map(|t| (*t).to_owned()));
        self.call(move |conn, path| {
            let mut stmt = conn.prepare_cached(&sql).ctx(path)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params.iter()), row_from_sql)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .ctx(path)?;
            Ok(rows)
        })
    }

    fn admin_changes(
        &self,
        resource: &str,
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send {
        let resource = resource.to_owned();
        self.call(move |conn, path| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ROW_COLUMNS} FROM audit_events INDEXED BY audit_events_admin \
                     WHERE event_type = 'admin.change' AND resource = ?1 \
                     ORDER BY time, log_id, seq"
                ))
                .ctx(path)?;
            let rows = stmt
                .query_map([&resource], row_from_sql)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .ctx(path)?;
            Ok(rows)
        })
    }

    fn leaf_hashes(
        &self,
        log_id: &str,
        from_seq: u64,
        to_seq: u64,
    ) -> impl Future<Output = Result<Vec<(u64, Vec<u8>)>, StoreError>> + Send {
        let log_id = log_id.to_owned();
        self.call(move |conn, path| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, leaf_hash FROM audit_events \
                     WHERE log_id = ?1 AND seq >= ?2 AND seq < ?3 ORDER BY seq",
                )
                .ctx(path)?;
            let rows = stmt
                .query_map(params![log_id, from_seq as i64, to_seq as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .ctx(path)?;
            Ok(rows)
        })
    }
}
