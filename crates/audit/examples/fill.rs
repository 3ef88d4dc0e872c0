//! Fills an audit store with gate-like events, for trying the `entraflow audit`
//! commands by hand:
//!
//! ```sh
//! cargo run --release -p entraflow-audit --example fill -- DATA_DIR [EVENTS] [WRITERS] [STORE_URL]
//! entraflow --data-dir DATA_DIR audit verify
//! ```
//!
//! The signing key is `DATA_DIR/audit-key.pk8` (created if absent); the store
//! defaults to `DATA_DIR/audit.db`.

use std::path::PathBuf;
use std::time::Instant;

use entraflow_audit::{
    AuditLog, AuditOptions, CheckpointSigner, Decision, Event, EventType, Principal, StoreUrl,
};

const SCOPE: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ml/providers/Microsoft.Storage/storageAccounts/data/blobServices/default/containers";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: fill DATA_DIR [EVENTS] [WRITERS] [STORE_URL]")?,
    );
    let events: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let writers: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(16);
    let url = match args.next() {
        Some(url) => StoreUrl::parse(&url)?,
        None => StoreUrl::default_for(&dir),
    };
    std::fs::create_dir_all(&dir)?;
    let signer = CheckpointSigner::load_or_create(&dir, "entraflow-audit")?;
    let log = AuditLog::open(&url, signer, AuditOptions::new("entraflow/gate/fill")).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        let n = events / writers + u64::from(w < events % writers);
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                log.append(event(w, i)).await?;
            }
            Ok::<_, entraflow_audit::AuditError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed();
    let checkpoint = log.close().await?;
    eprintln!(
        "{events} durable appends from {writers} writers in {elapsed:.2?} ({:.0}/s); checkpoint at {} events",
        events as f64 / elapsed.as_secs_f64(),
        checkpoint.map_or(0, |c| c.checkpoint.size)
    );
    Ok(())
}

fn event(writer: u64, i: u64) -> Event {
    let denied = i % 50 == 49;
    let write = i.is_multiple_of(10);
    let mut e = Event::new(match (denied, write) {
        (true, _) => EventType::AuthzDenied,
        (false, true) => EventType::BlobWrite,
        (false, false) => EventType::BlobRead,
    });
    let (container, path) = match (denied, write) {
        (true, _) => ("secrets", format!("keys/{i}")),
        (false, true) => ("models", format!("run-{writer}/checkpoint-{i}.keras")),
        (false, false) => ("data", format!("train/shard-{:05}.tfrecord", i % 1024)),
    };
    e.request_id = Some(uuid::Uuid::new_v4().to_string());
    e.tenant = Some("00000000-0000-0000-0000-0000000000aa".into());
    e.principal = Some(Principal {
        oid: Some(format!("00000000-0000-0000-0000-{:012}", writer)),
        appid: Some(format!("app-{writer}")),
        name: Some(format!("trainer-{writer}")),
    });
    e.token_uti = Some(format!("uti-{writer}-{}", i / 1000));
    e.action = Some(format!(
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/{}",
        if write { "write" } else { "read" }
    ));
    e.resource = Some(format!("{SCOPE}/{container}/blobs/{path}"));
    if denied {
        e.decision = Some(Decision::Deny);
        e.status = Some(403);
        e.detail = Some("no role assignment grants blobs/read at this scope".into());
    } else {
        e.decision = Some(Decision::Allow);
        e.assignment_id = Some(format!("assignment-{writer}"));
        e.role_name = Some("Storage Blob Data Contributor".into());
        e.status = Some(if write { 201 } else { 200 });
        e.bytes = Some(256 * 1024);
    }
    e.duration_ms = Some(2);
    e.client_addr = Some("127.0.0.1:50000".into());
    e.user_agent = Some("azsdk-python-storage-blob/12.23.0 Python/3.11.7".into());
    e.run_id = Some(format!("run-{}", writer % 2));
    e
}
