//! The PostgreSQL store, for deployments where several gates share one log. Each
//! gate writes its own chain (its own `audit_logs` row), so writers never wait on one
//! another's head. A commit returns after the server flushed its WAL
//! (`synchronous_commit` on, the server default). One connection, reopened if it drops.

use std::future::Future;

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::{
    CHAIN_IDS_SQL, Cursor, Filter, LogHead, ROW_COLUMNS, ResourceMatch, Row, SqlParam,
    StoreBackend, StoreError, StoredCheckpoint, now_text, query_sql, redact_password,
};
use crate::merkle::Frontier;

/// Serialises schema creation between gates starting at once (an arbitrary key).
const SCHEMA_LOCK: i64 = 0x6175_6469_745f_7631;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_logs (
    log_id   TEXT COLLATE "C" PRIMARY KEY,
    size     BIGINT NOT NULL,
    frontier BYTEA NOT NULL,
    created  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_events (
    log_id          TEXT COLLATE "C" NOT NULL,
    seq             BIGINT NOT NULL,
    event_id        TEXT NOT NULL,
    time            TEXT COLLATE "C" NOT NULL,
    event_type      TEXT NOT NULL,
    principal_oid   TEXT,
    principal_appid TEXT,
    principal_name  TEXT,
    action          TEXT,
    resource        TEXT COLLATE "C",
    decision        TEXT,
    run_id          TEXT,
    record          TEXT NOT NULL,
    leaf_hash       BYTEA NOT NULL,
    PRIMARY KEY (log_id, seq)
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time);
CREATE INDEX IF NOT EXISTS audit_events_principal ON audit_events (principal_oid);
CREATE INDEX IF NOT EXISTS audit_events_run ON audit_events (run_id);
CREATE INDEX IF NOT EXISTS audit_events_id ON audit_events (event_id);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    log_id  TEXT COLLATE "C" NOT NULL,
    size    BIGINT NOT NULL,
    root    BYTEA NOT NULL,
    note    TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (log_id, size)
);
-- Version 2 (schema 2 records' blob version fields; see the SQLite store): added in
-- place to a version 1 schema, under the same lock, by the first gate that starts.
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS operation TEXT;
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS etag TEXT;
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS content_md5 TEXT;
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS copy_source TEXT COLLATE "C";
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS copy_source_etag TEXT;
CREATE INDEX IF NOT EXISTS audit_events_writes ON audit_events (resource, time)
    WHERE event_type = 'blob.write' AND etag IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_admin ON audit_events (resource)
    WHERE event_type = 'admin.change';
"#;

/// A connection with the statements the writer runs on every batch.
struct Conn {
    client: Client,
    update_head: Statement,
    insert_events: Statement,
}

/// The PostgreSQL audit store.
pub struct PostgresStore {
    url: String,
    label: String,
    conn: Mutex<Conn>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.label)
            .finish_non_exhaustive()
    }
}

fn pg_err(label: &str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
    move |e| {
        // The server's message (with its detail) says more than the client's summary.
        let message = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => e.to_string(),
        };
        StoreError::Postgres {
            url: label.to_owned(),
            message,
        }
    }
}

async fn connect(url: &str, label: &str) -> Result<Conn, StoreError> {
    let err = pg_err(label);
    let (client, connection) =
        entraflow_tls::postgres::connect(url)
            .await
            .map_err(|e| StoreError::Postgres {
                url: label.to_owned(),
                message: match e.as_db_error() {
                    Some(db) => format!("{}: {}", db.severity(), db.message()),
                    None => e.to_string(),
                },
            })?;
    let task_label = label.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(store = %task_label, error = %e, "audit store connection closed");
        }
    });
    // The tables must exist before the statements can be prepared.
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {SCHEMA} COMMIT;"
        ))
        .await
        .map_err(&err)?;
    let update_head = client
        .prepare(
            "UPDATE audit_logs SET size = $1::int8, frontier = $2::bytea \
             WHERE log_id = $3::text AND size = $4::int8",
        )
        .await
        .map_err(&err)?;
    let insert_events = client
        .prepare(&format!(
            "INSERT INTO audit_events ({ROW_COLUMNS}) SELECT * FROM UNNEST(\
             $1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
             $15::text[], $16::text[], $17::text[], $18::text[], $19::bytea[])"
        ))
        .await
        .map_err(&err)?;
    Ok(Conn {
        client,
        update_head,
        insert_events,
    })
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user[:password]@host:port/db`).
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let label = redact_password(url);
        let conn = connect(url, &label).await?;
        Ok(PostgresStore {
            url: url.to_owned(),
            label,
            conn: Mutex::new(conn),
        })
    }

    /// The connection, reopened first if the server closed it.
    async fn conn(&self) -> Result<MutexGuard<'_, Conn>, StoreError> {
        let mut guard = self.conn.lock().await;
        if guard.client.is_closed() {
            *guard = connect(&self.url, &self.label).await?;
        }
        Ok(guard)
    }

    fn err(&self) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        pg_err(&self.label)
    }
}

fn head_from_row(r: &tokio_postgres::Row) -> LogHead {
    LogHead {
        log_id: r.get(0),
        size: r.get::<_, i64>(1) as u64,
        frontier: r.get(2),
        created: r.get(3),
    }
}

fn row_from_sql(r: &tokio_postgres::Row) -> Row {
    Row {
        log_id: r.get(0),
        seq: r.get::<_, i64>(1) as u64,
        event_id: r.get(2),
        time: r.get(3),
        event_type: r.get(4),
        principal_oid: r.get(5),
        principal_appid: r.get(6),
        principal_name: r.get(7),
        action: r.get(8),
        resource: r.get(9),
        decision: r.get(10),
        run_id: r.get(11),
        operation: r.get(12),
        etag: r.get(13),
        content_md5: r.get(14),
        copy_source: r.get(15),
        copy_source_etag: r.get(16),
        record: r.get(17),
        leaf_hash: r.get(18),
    }
}

const HEAD_COLUMNS: &str = "log_id, size, frontier, created";

impl StoreBackend for PostgresStore {
    async fn init(&self) -> Result<(), StoreError> {
        // `connect` made the tables.
        self.conn().await.map(drop)
    }

    async fn open_log(&self, log_id: &str) -> Result<LogHead, StoreError> {
        let mut conn = self.conn().await?;
        let err = self.err();
        let tx = conn.client.transaction().await.map_err(&err)?;
        tx.execute(
            "INSERT INTO audit_logs (log_id, size, frontier, created) \
             VALUES ($1, 0, ''::bytea, $2) ON CONFLICT (log_id) DO NOTHING",
            &[&log_id, &now_text()],
        )
        .await
        .map_err(&err)?;
        let head = tx
            .query_one(
                &format!("SELECT {HEAD_COLUMNS} FROM audit_logs WHERE log_id = $1"),
                &[&log_id],
            )
            .await
            .map(|r| head_from_row(&r))
            .map_err(&err)?;
        let stored: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_events WHERE log_id = $1",
                &[&log_id],
            )
            .await
            .map_err(&err)?
            .get(0);
        tx.commit().await.map_err(&err)?;
        if stored as u64 != head.size {
            return Err(StoreError::Corrupt(format!(
                "chain '{log_id}': its head says {} events but events up to position {stored} are stored",
                head.size
            )));
        }
        head.frontier()?;
        Ok(head)
    }

    async fn head(&self, log_id: &str) -> Result<Option<LogHead>, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_opt(
                &format!("SELECT {HEAD_COLUMNS} FROM audit_logs WHERE log_id = $1"),
                &[&log_id],
            )
            .await
            .map_err(self.err())?;
        Ok(row.as_ref().map(head_from_row))
    }

    async fn heads(&self) -> Result<Vec<LogHead>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query(
                &format!("SELECT {HEAD_COLUMNS} FROM audit_logs ORDER BY log_id"),
                &[],
            )
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(head_from_row).collect())
    }

    async fn chain_ids(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query(CHAIN_IDS_SQL, &[])
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn append(
        &self,
        log_id: &str,
        expected_size: u64,
        rows: Vec<Row>,
        head: &Frontier,
    ) -> Result<(), StoreError> {
        let mut guard = self.conn().await?;
        let conn = &mut *guard;
        let err = self.err();
        let tx = conn.client.transaction().await.map_err(&err)?;
        let updated = tx
            .execute(
                &conn.update_head,
                &[
                    &(head.size() as i64),
                    &head.to_bytes(),
                    &log_id,
                    &(expected_size as i64),
                ],
            )
            .await
            .map_err(&err)?;
        if updated != 1 {
            drop(tx);
            let found = self.head_size_unlocked(&conn.client, log_id).await?;
            return Err(StoreError::Conflict {
                log_id: log_id.to_owned(),
                expected: expected_size,
                found,
            });
        }
        macro_rules! column {
            ($field:ident) => {
                rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>()
            };
        }
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq as i64).collect();
        tx.execute(
            &conn.insert_events,
            &[
                &column!(log_id),
                &seqs,
                &column!(event_id),
                &column!(time),
                &column!(event_type),
                &column!(principal_oid),
                &column!(principal_appid),
                &column!(principal_name),
                &column!(action),
                &column!(resource),
                &column!(decision),
                &column!(run_id),
                &column!(operation),
                &column!(etag),
                &column!(content_md5),
                &column!(copy_source),
                &column!(copy_source_etag),
                &column!(record),
                &column!(leaf_hash),
            ],
        )
        .await
        .map_err(&err)?;
        tx.commit().await.map_err(&err)
    }

    async fn add_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        conn.client
            .execute(
                "INSERT INTO audit_checkpoints (log_id, size, root, note, created) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (log_id, size) DO NOTHING",
                &[
                    &checkpoint.log_id,
                    &(checkpoint.size as i64),
                    &checkpoint.root,
                    &checkpoint.note,
                    &checkpoint.created,
                ],
            )
            .await
            .map(drop)
            .map_err(self.err())
    }

    async fn checkpoints(&self, log_id: &str) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query(
                "SELECT log_id, size, root, note, created FROM audit_checkpoints \
                 WHERE log_id = $1 ORDER BY size",
                &[&log_id],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| StoredCheckpoint {
                log_id: r.get(0),
                size: r.get::<_, i64>(1) as u64,
                root: r.get(2),
                note: r.get(3),
                created: r.get(4),
            })
            .collect())
    }

    async fn rows(
        &self,
        log_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query(
                &format!(
                    "SELECT {ROW_COLUMNS} FROM audit_events WHERE log_id = $1 AND seq >= $2 \
                     ORDER BY seq LIMIT $3"
                ),
                &[&log_id, &(from_seq as i64), &(limit as i64)],
            )
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(row_from_sql).collect())
    }

    fn query(
        &self,
        filter: &Filter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send {
        let (sql, params) = query_sql(filter, cursor, limit, |n, p| match p {
            SqlParam::Text(_) => format!("${n}::text"),
            SqlParam::Int(_) => format!("${n}::int8"),
        });
        async move {
            let conn = self.conn().await?;
            let values: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| match p {
                    SqlParam::Text(t) => t as &(dyn ToSql + Sync),
                    SqlParam::Int(n) => n as &(dyn ToSql + Sync),
                })
                .collect();
            let rows = conn.client.query(&sql, &values).await.map_err(self.err())?;
            Ok(rows.iter().map(row_from_sql).collect())
        }
    }

    async fn blob_writes(
        &self,
        resource: &ResourceMatch,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn().await?;
        let select = format!(
            "SELECT {ROW_COLUMNS} FROM audit_events \
             WHERE event_type = 'blob.write' AND etag IS NOT NULL"
        );
        let order = "ORDER BY time DESC, log_id DESC, seq DESC";
        let limit = limit as i64;
        let rows = match resource {
            ResourceMatch::Exact(scope) => {
                let sql = format!("{select} AND resource = $1::text {order} LIMIT $2::int8");
                conn.client.query(&sql, &[scope, &limit]).await
            }
            ResourceMatch::Suffix(suffix) => {
                let sql = format!(
                    "{select} AND right(resource, $2::int4) = $1::text {order} LIMIT $3::int8"
                );
                let n = suffix.chars().count() as i32;
                conn.client.query(&sql, &[suffix, &n, &limit]).await
            }
        }
        .map_err(self.err())?;
        Ok(rows.iter().map(row_from_sql).collect())
    }

    async fn run_events(
        &self,
        run_id: &str,
        principal_oid: &str,
        event_types: &[&str],
    ) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn().await?;
        let types: Vec<String> = event_types.iter().map(|t| (*t).to_owned()).collect();
        let rows = conn
            .client
            .query(
                &format!(
                    "SELECT {ROW_COLUMNS} FROM audit_events \
                     WHERE run_id = $1::text AND principal_oid = $2::text \
                     AND event_type = ANY($3::text[])"
                ),
                &[&run_id, &principal_oid, &types],
            )
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(row_from_sql).collect())
    }

    async fn admin_changes(&self, resource: &str) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query(
                &format!(
                    "SELECT {ROW_COLUMNS} FROM audit_events \
                     WHERE event_type = 'admin.change' AND resource = $1::text \
                     ORDER BY time, log_id, seq"
                ),
                &[&resource],
            )
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(row_from_sql).collect())
    }

    async fn leaf_hashes(
        &self,
        log_id: &str,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query(
                "SELECT seq, leaf_hash FROM audit_events \
                 WHERE log_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
                &[&log_id, &(from_seq as i64), &(to_seq as i64)],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1)))
            .collect())
    }
}

impl PostgresStore {
    async fn head_size_unlocked(&self, client: &Client, log_id: &str) -> Result<u64, StoreError> {
        let row = client
            .query_opt("SELECT size FROM audit_logs WHERE log_id = $1", &[&log_id])
            .await
            .map_err(self.err())?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }
}
