//! Writes a training run's audit log for timing `entraflow audit lineage`
//! (`benches/lineage.sh`): a stager writes `SHARDS` shards, then the run has
//! `EVENTS` gate records of one trainer, nearly all Get Blob reads of those
//! shards (one in ten streamed, so with a decision and a completion record), and
//! ends with the model's Put Block List; other principals' reads in other runs
//! are interleaved (a fifth as many again), and the grants are on
//! `entraflow/admin`. Nothing is checkpointed after the model's write, so a
//! bundle has to sign a checkpoint first, as after a real run.
//!
//! ```sh
//! cargo run --release -p entraflow-audit --example lineage_run -- DATA_DIR [EVENTS] [SHARDS]
//! ```
//!
//! Prints one JSON line: the model's `az://` path and what the lineage must find.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use entraflow_audit::{
    AuditLog, AuditOptions, CheckpointSigner, Decision, Event, EventType, Principal, StoreUrl,
};
use tokio::task::JoinSet;

const ACCOUNT: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ml/providers/Microsoft.Storage/storageAccounts/benchacct";
const READER: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.Authorization/roleAssignments/11111111-1111-1111-1111-111111111111";
const WRITER: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.Authorization/roleAssignments/22222222-2222-2222-2222-222222222222";
const RUN: &str = "bench-run-1";
/// Appends in flight at once (the writer commits what has queued as one batch).
const IN_FLIGHT: usize = 8192;

fn event(who: &str, run: &str, op: &str, blob: &str, etag: &str, bytes: u64) -> Event {
    let read = op == "GetBlob";
    let mut e = Event::new(if read {
        EventType::BlobRead
    } else {
        EventType::BlobWrite
    });
    e.request_id = Some(uuid::Uuid::new_v4().to_string());
    e.tenant = Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into());
    e.principal = Some(Principal {
        oid: Some(format!("{who}-0000-0000-0000-000000000000")),
        appid: Some(format!("{who}-app-0000-0000-000000000000")),
        name: Some(who.to_owned()),
    });
    e.token_uti = Some(format!("uti-{who}-AAAAAAAAAAAA"));
    e.action = Some(format!(
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/{}",
        if read { "read" } else { "write" }
    ));
    e.resource = Some(format!("{ACCOUNT}/blobServices/default/containers/{blob}"));
    e.decision = Some(Decision::Allow);
    e.assignment_id = Some(if read { READER } else { WRITER }.into());
    e.role_name = Some(
        if read {
            "Storage Blob Data Reader"
        } else {
            "Storage Blob Data Contributor"
        }
        .into(),
    );
    e.status = Some(if read { 206 } else { 201 });
    e.bytes = Some(bytes);
    e.duration_ms = Some(2);
    e.client_addr = Some("127.0.0.1:53412".into());
    e.user_agent = Some("entraflow-tfplugin/0.1.0 tensorflow/2.21".into());
    e.run_id = Some(run.into());
    e.detail = Some(format!("range bytes=0-{}", bytes.saturating_sub(1)));
    e.operation = Some(op.into());
    e.etag = Some(etag.into());
    e.content_md5 = Some("1B2M2Y8AsgTpgAmY7PhCfg==".into());
    e
}

fn shard(i: usize) -> (String, String) {
    (
        format!("data/blobs/shards/train-{i:05}.tfrecord"),
        format!("\"0x8DD{i:012X}\""),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: lineage_run DATA_DIR [EVENTS] [SHARDS]")?,
    );
    let events: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let shards: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    std::fs::create_dir_all(&dir)?;
    let url = StoreUrl::default_for(&dir);
    let start = Instant::now();

    let admin = AuditLog::open(
        &url,
        CheckpointSigner::load_or_create(&dir, "entraflow-audit")?,
        AuditOptions::new("entraflow/admin").checkpoint_interval(None),
    )
    .await?;
    for id in [READER, WRITER] {
        let mut e = Event::new(EventType::AdminChange);
        e.principal = Some(Principal {
            name: Some("platform (uid 1000)".into()),
            ..Principal::default()
        });
        e.action = Some("role_assignment.create".into());
        e.resource = Some(id.into());
        e.decision = Some(Decision::Allow);
        e.detail = Some(format!(
            "entraflow role assignment create: role_assignment={id}"
        ));
        admin.append(e).await?;
    }
    admin.close().await?;

    let log = AuditLog::open(
        &url,
        CheckpointSigner::load_or_create(&dir, "entraflow-audit")?,
        AuditOptions::new("entraflow/gate").checkpoint_interval(Some(Duration::from_secs(3600))),
    )
    .await?;
    for i in 0..shards {
        let (blob, etag) = shard(i);
        log.append(event("stager", "stage-1", "PutBlob", &blob, &etag, 4 << 20))
            .await?;
    }
    // The run: `events - 1` read records (one read in ten streamed: two records),
    // with a fifth as many other principals' reads of other runs between them.
    let mut tasks = JoinSet::new();
    let mut written = 0usize;
    let mut requests = 0usize;
    let mut n = 0usize;
    while written + 1 < events {
        let (blob, etag) = shard(n % shards);
        let streamed = n.is_multiple_of(10) && written + 2 < events;
        let decision = event("trainer", RUN, "GetBlob", &blob, &etag, 262_144);
        let log2 = log.clone();
        tasks.spawn(async move {
            log2.append(decision.clone()).await?;
            if streamed {
                let mut completion = decision;
                completion.event_type = EventType::Other("blob.read.completed".into());
                completion.detail = Some("range bytes=0-262143; body complete".into());
                log2.append(completion).await?;
            }
            Ok::<_, entraflow_audit::AuditError>(())
        });
        written += 1 + usize::from(streamed);
        requests += 1;
        if n.is_multiple_of(5) {
            let other = event("evaluator", "eval-7", "GetBlob", &blob, &etag, 4096);
            let log2 = log.clone();
            tasks.spawn(async move { log2.append(other).await.map(drop) });
        }
        n += 1;
        if tasks.len() >= IN_FLIGHT {
            while let Some(done) = tasks.join_next().await {
                done??;
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    // A periodic checkpoint covers the reads; none covers the model's write
    // (the log is not closed), so a bundle signs one first, as after a real run.
    let size = log.checkpoint().await?.checkpoint.size;
    let model = "models/blobs/bench-run-1/model.keras";
    log.append(event(
        "trainer",
        RUN,
        "PutBlockList",
        model,
        "\"0x8DDMODEL\"",
        9 << 20,
    ))
    .await?;
    std::mem::forget(log);
    println!(
        "{}",
        serde_json::json!({
            "model": "az://benchacct/models/bench-run-1/model.keras",
            "run_events": written + 1,
            "read_requests": requests,
            "blob_versions": shards.min(requests),
            "gate_events": size + 1,
            "seconds": start.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
