//! `audit.db`'s WAL is checkpointed off the writer and stays bounded while appends
//! never pause: without a checkpoint it would grow with every commit, since the
//! writer's own automatic checkpoint is replaced by the checkpoint thread's hook.

use entraflow_audit::{AuditLog, AuditOptions, CheckpointSigner, Event, EventType, StoreUrl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_continuous_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let signer = CheckpointSigner::generate("test").unwrap();
    let log = AuditLog::open(
        StoreUrl::Sqlite(path.clone()),
        signer,
        AuditOptions::new("entraflow/gate/wal").checkpoint_interval(None),
    )
    .await
    .unwrap();
    // ~2 KiB records, 16 writers: about 200 MB of WAL frames in all, several
    // times the bound.
    let detail = "x".repeat(2048);
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let log = log.clone();
            let detail = detail.clone();
            tokio::spawn(async move {
                for i in 0..2_500 {
                    let mut event = Event::new(EventType::BlobRead);
                    event.detail = Some(format!("{w}/{i} {detail}"));
                    log.append(event).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("audit.db-wal"))
        .unwrap()
        .len();
    let database = std::fs::metadata(&path).unwrap().len();
    log.close().await.unwrap();
    // The restart threshold is 16,000 pages (64 MB); frames committed while a
    // restart waits for the writer land beyond it.
    assert!(wal < 96 << 20, "WAL of {} MiB", wal >> 20);
    assert!(
        database > 64 << 20,
        "the events were checkpointed into the database ({} MiB)",
        database >> 20
    );
}
