//! `audit.db` carries a schema version: a database written before versions existed
//! is brought forward with its records intact, and one from a newer entraflow is
//! refused instead of being written with an older schema.

use entraflow_audit::StoreBackend;
use entraflow_audit::{
    AnyStore, AuditLog, AuditOptions, CheckpointSigner, Event, EventType, StoreUrl,
};

fn user_version(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn an_unversioned_audit_db_is_migrated_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let url = StoreUrl::Sqlite(path.clone());
    let signer = CheckpointSigner::generate("test").unwrap();
    let log = AuditLog::open(url.clone(), signer, AuditOptions::new("entraflow/gate"))
        .await
        .unwrap();
    for _ in 0..3 {
        log.append(Event::new(EventType::BlobRead)).await.unwrap();
    }
    log.close().await.unwrap();
    assert_eq!(user_version(&path), 1);

    // As written before schemas were versioned: the same tables, version 0.
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 0)
        .unwrap();
    let store = AnyStore::open(&url).await.unwrap();
    assert_eq!(store.heads().await.unwrap()[0].size, 3, "records kept");
    drop(store);
    assert_eq!(user_version(&path), 1);

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
