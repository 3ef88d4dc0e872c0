//! `audit.db` carries a schema version: a database written before versions existed
//! and one written by schema version 1 are brought forward with their records and
//! hashes intact, and one from a newer entraflow is refused instead of being
//! written with an older schema. PostgreSQL's tables are brought forward in place.

mod common;

use common::{Fixture, Raw, blob_event};
use entraflow_audit::checkpoint::Checkpoint;
use entraflow_audit::merkle::{Frontier, leaf_hash};
use entraflow_audit::store::{ResourceMatch, StoreBackend};
use entraflow_audit::{AnyStore, AuditLog, AuditOptions, Record, StoreUrl, verify_store};

const LOG: &str = "entraflow/gate";

fn user_version(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// The audit tables exactly as schema version 1 made them (the DDL of entraflow
/// before blob versions were recorded), in each dialect.
fn v1_tables(postgres: bool) -> String {
    let (int, blob, c) = if postgres {
        ("BIGINT", "BYTEA", " COLLATE \"C\"")
    } else {
        ("INTEGER", "BLOB", "")
    };
    format!(
        "CREATE TABLE audit_logs (log_id TEXT{c} PRIMARY KEY, size {int} NOT NULL, frontier {blob} NOT NULL, created TEXT NOT NULL);
         CREATE TABLE audit_events (log_id TEXT{c} NOT NULL, seq {int} NOT NULL, event_id TEXT NOT NULL,
           time TEXT{c} NOT NULL, event_type TEXT NOT NULL, principal_oid TEXT, principal_appid TEXT,
           principal_name TEXT, action TEXT, resource TEXT{c}, decision TEXT, run_id TEXT,
           record TEXT NOT NULL, leaf_hash {blob} NOT NULL, PRIMARY KEY (log_id, seq));
         CREATE INDEX audit_events_time ON audit_events (time);
         CREATE INDEX audit_events_principal ON audit_events (principal_oid);
         CREATE INDEX audit_events_run ON audit_events (run_id);
         CREATE INDEX audit_events_id ON audit_events (event_id);
         CREATE TABLE audit_checkpoints (log_id TEXT{c} NOT NULL, size {int} NOT NULL, root {blob} NOT NULL,
           note TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (log_id, size));"
    )
}

fn text(value: Option<&str>) -> String {
    value.map_or("NULL".into(), |t| format!("'{}'", t.replace('\'', "''")))
}

/// A version 1 log of `n` schema 1 records (as a version 1 writer made them),
/// with its head and a signed checkpoint, as SQL for the v1 tables.
fn v1_log(f: &Fixture, n: u64, postgres: bool) -> (String, Vec<Record>) {
    let bytes = |b: &[u8]| {
        if postgres {
            format!("'\\x{}'::bytea", hex::encode(b))
        } else {
            format!("X'{}'", hex::encode(b))
        }
    };
    let mut sql = v1_tables(postgres);
    let mut frontier = Frontier::new();
    let mut records = Vec::new();
    for seq in 0..n {
        let record = Record {
            schema: 1,
            log: LOG.into(),
            seq,
            id: uuid::Uuid::now_v7(),
            event: blob_event("job", "data", &format!("train/{seq}"), false, seq),
        };
        let canonical = record.canonical_bytes();
        let leaf = leaf_hash(&canonical);
        frontier.push(leaf);
        let e = &record.event;
        let p = e.principal.as_ref().unwrap();
        sql.push_str(&format!(
            "INSERT INTO audit_events VALUES ('{LOG}', {seq}, '{}', '{}', '{}', {}, {}, {}, {}, {}, {}, {}, {}, {});\n",
            record.id,
            e.time,
            e.event_type,
            text(p.oid.as_deref()),
            text(p.appid.as_deref()),
            text(p.name.as_deref()),
            text(e.action.as_deref()),
            text(e.resource.as_deref()),
            text(e.decision.map(|d| d.as_str())),
            text(e.run_id.as_deref()),
            text(Some(std::str::from_utf8(&canonical).unwrap())),
            bytes(&leaf.0),
        ));
        records.push(record);
    }
    sql.push_str(&format!(
        "INSERT INTO audit_logs VALUES ('{LOG}', {n}, {}, '2026-01-01T00:00:00.000Z');\n",
        bytes(&frontier.to_bytes())
    ));
    let checkpoint = Checkpoint {
        origin: LOG.into(),
        size: n,
        root: frontier.root(),
    };
    sql.push_str(&format!(
        "INSERT INTO audit_checkpoints VALUES ('{LOG}', {n}, {}, {}, '2026-01-01T00:00:00.000Z');\n",
        bytes(&checkpoint.root.0),
        text(Some(&f.signer().sign(&checkpoint)))
    ));
    (sql, records)
}

/// Opens a version 1 store with this entraflow: the old records keep their bytes
/// and hashes and verify; new records carry blob versions in the new columns,
/// which verify checks too; lineage's queries find them.
async fn a_version_1_store_is_brought_forward(f: &Fixture) {
    let store = AnyStore::open(&f.url).await.unwrap();
    let report = verify_store(&store, &f.verify_options()).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.chains[0].size, 3);
    assert_eq!(
        report.chains[0].signed_size, 3,
        "the version 1 checkpoint still matches"
    );
    let old = store.rows(LOG, 0, 10).await.unwrap();
    assert!(
        old.iter()
            .all(|r| r.etag.is_none() && r.operation.is_none())
    );
    assert!(old[0].record.contains("\"schema\":1,"));

    let log = AuditLog::with_store(
        store.clone(),
        f.signer(),
        AuditOptions::new(LOG).checkpoint_interval(None),
    )
    .await
    .unwrap();
    let mut write = blob_event("job", "models", "run-1/model.keras", true, 99);
    write.operation = Some("PutBlob".into());
    write.etag = Some("\"0x1\"".into());
    write.content_md5 = Some("md5==".into());
    let id = log.append(write).await.unwrap();
    assert_eq!(id.seq, 3);
    log.close().await.unwrap();
    let row = store.rows(LOG, 3, 1).await.unwrap().remove(0);
    assert_eq!(row.etag.as_deref(), Some("\"0x1\""));
    assert_eq!(row.operation.as_deref(), Some("PutBlob"));
    assert!(row.record.contains("\"schema\":2,"));
    let writes = store
        .blob_writes(
            &ResourceMatch::Suffix(
                "/storageAccounts/data/blobServices/default/containers/models/blobs/run-1/model.keras"
                    .into(),
            ),
            10,
        )
        .await
        .unwrap();
    assert_eq!(writes.len(), 1);
    let report = verify_store(&store, &f.verify_options()).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.chains[0].size, 4);
}

#[tokio::test]
async fn sqlite_version_1_and_unversioned_databases_are_migrated() {
    for version in [1, 0] {
        let f = Fixture::sqlite().await;
        let Raw::Sqlite(path) = &f.raw else {
            unreachable!()
        };
        let (sql, _) = v1_log(&f, 3, false);
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(&sql).unwrap();
        conn.pragma_update(None, "user_version", version).unwrap();
        drop(conn);
        a_version_1_store_is_brought_forward(&f).await;
        assert_eq!(user_version(path), 2, "from version {version}");
    }
}

#[tokio::test]
async fn postgres_version_1_tables_are_brought_forward_in_place() {
    let Some(f) = Fixture::postgres("postgres_version_1_tables_are_brought_forward_in_place").await
    else {
        return;
    };
    let (sql, _) = v1_log(&f, 3, true);
    f.exec(&sql).await;
    a_version_1_store_is_brought_forward(&f).await;
    // A second gate starting on the migrated tables changes nothing.
    let again = AnyStore::open(&f.url).await.unwrap();
    assert!(
        verify_store(&again, &f.verify_options())
            .await
            .unwrap()
            .is_ok()
    );
    f.cleanup().await;
}

#[tokio::test]
async fn a_newer_audit_db_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let url = StoreUrl::Sqlite(path.clone());
    drop(AnyStore::open(&url).await.unwrap());
    assert_eq!(user_version(&path), 2);
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 7)
        .unwrap();
    let err = AnyStore::open(&url).await.unwrap_err().to_string();
    assert!(
        err.contains("schema version 7") && err.contains("newer entraflow"),
        "{err}"
    );
}
