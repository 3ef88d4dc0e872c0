//! Model lineage and its proof bundles, on a log shaped like a training run's:
//! the platform team grants roles (chain `entraflow/admin`), a stager writes shards,
//! the trainer reads them (small reads with one record, streamed reads with a
//! decision and a completion record) among other principals' and other runs'
//! reads, writes a model twice, and someone else changes the model's metadata.
//! Runs against SQLite and, when configured, PostgreSQL.

mod common;

use common::{Fixture, SCOPE};
use entraflow_audit::bundle::{verify_bundle, write_bundle};
use entraflow_audit::lineage::BlobTarget;
use entraflow_audit::{
    AnyStore, AuditError, Decision, Event, EventType, Found, Principal, lineage,
};
use serde_json::Value;

const GATE: &str = "entraflow/gate";
const ADMIN: &str = "entraflow/admin";
const RUN: &str = "run-42";
const MODEL: &str = "az://data/models/run-42/model.keras";
const READER_GRANT: &str =
    "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/reader";
const WRITER_GRANT: &str =
    "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/writer";

/// A gate record: `who` does `op` on `container/path` in `run`.
fn gate(who: &str, run: &str, op: &str, path: &str, etag: Option<&str>, bytes: u64) -> Event {
    let write = !matches!(op, "GetBlob" | "GetBlobProperties");
    let mut e = Event::new(if write {
        EventType::BlobWrite
    } else {
        EventType::BlobRead
    });
    e.request_id = Some(uuid::Uuid::new_v4().to_string());
    e.principal = Some(Principal {
        oid: Some(who.into()),
        appid: Some(format!("app-{who}")),
        name: Some(format!("{who} job")),
    });
    e.token_uti = Some(format!("uti-{who}"));
    e.action = Some(format!(
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/{}",
        if write { "write" } else { "read" }
    ));
    let (container, blob) = path.split_once('/').unwrap();
    e.resource = Some(format!("{SCOPE}/{container}/blobs/{blob}"));
    e.decision = Some(Decision::Allow);
    e.assignment_id = Some(if write { WRITER_GRANT } else { READER_GRANT }.into());
    e.role_name = Some(
        if write {
            "Storage Blob Data Contributor"
        } else {
            "Storage Blob Data Reader"
        }
        .into(),
    );
    e.status = Some(if write { 201 } else { 200 });
    e.bytes = Some(bytes);
    e.run_id = Some(run.into());
    e.operation = Some(op.into());
    e.etag = etag.map(str::to_owned);
    e.content_md5 = etag.map(|t| format!("md5{}==", t.trim_matches('"')));
    e
}

fn grant_change(assignment: &str) -> Event {
    let mut e = Event::new(EventType::AdminChange);
    e.principal = Some(Principal {
        name: Some("alice (uid 1000)".into()),
        ..Principal::default()
    });
    e.action = Some("role_assignment.create".into());
    e.resource = Some(assignment.into());
    e.decision = Some(Decision::Allow);
    e.detail = Some(format!(
        "entraflow role assignment create: role_assignment={assignment}"
    ));
    e
}

/// Writes the run; the gate chain is left without a checkpoint covering its end.
async fn write_run(f: &Fixture) {
    let admin = f.open(ADMIN).await;
    admin.append(grant_change(READER_GRANT)).await.unwrap();
    admin.append(grant_change(WRITER_GRANT)).await.unwrap();
    admin.close().await.unwrap();

    let log = f.open(GATE).await;
    let append = |e: Event| {
        let log = log.clone();
        async move { log.append(e).await.unwrap() }
    };
    for i in 0..3 {
        append(gate(
            "stager",
            "stage-1",
            "PutBlob",
            &format!("data/train-{i}"),
            Some(&format!("\"0xs{i}\"")),
            100,
        ))
        .await;
    }
    // Shard 0: two small reads (one record each).
    append(gate(
        "trainer",
        RUN,
        "GetBlob",
        "data/train-0",
        Some("\"0xs0\""),
        100,
    ))
    .await;
    append(gate(
        "trainer",
        RUN,
        "GetBlob",
        "data/train-0",
        Some("\"0xs0\""),
        100,
    ))
    .await;
    // Shard 1: a streamed read, its decision record (bytes it meant to send) and,
    // after other traffic, its completion (bytes it sent).
    let streamed = gate(
        "trainer",
        RUN,
        "GetBlob",
        "data/train-1",
        Some("\"0xs1\""),
        5000,
    );
    let mut completion = streamed.clone();
    completion.event_type = EventType::Other("blob.read.completed".into());
    completion.bytes = Some(4000);
    append(streamed).await;
    // Not inputs: another principal in the run, the trainer in another run, a
    // denial, a HEAD, a failed read.
    append(gate(
        "intruder",
        RUN,
        "GetBlob",
        "data/train-2",
        Some("\"0xs2\""),
        100,
    ))
    .await;
    append(gate(
        "trainer",
        "run-other",
        "GetBlob",
        "data/train-2",
        Some("\"0xs2\""),
        100,
    ))
    .await;
    let mut denied = gate(
        "trainer",
        RUN,
        "GetBlob",
        "data/train-2",
        Some("\"0xs2\""),
        0,
    );
    denied.event_type = EventType::AuthzDenied;
    denied.decision = Some(Decision::Deny);
    denied.status = Some(403);
    append(denied).await;
    append(gate(
        "trainer",
        RUN,
        "GetBlobProperties",
        "data/train-2",
        Some("\"0xs2\""),
        0,
    ))
    .await;
    let mut missing = gate("trainer", RUN, "GetBlob", "data/train-9", None, 0);
    missing.status = Some(404);
    append(missing).await;
    append(completion).await;
    // The first model, then a read of shard 2, then the second model.
    append(gate(
        "trainer",
        RUN,
        "PutBlockList",
        "models/run-42/model.keras",
        Some("\"0xm1\""),
        700,
    ))
    .await;
    append(gate(
        "trainer",
        RUN,
        "GetBlob",
        "data/train-2",
        Some("\"0xs2\""),
        100,
    ))
    .await;
    append(gate(
        "trainer",
        RUN,
        "PutBlock",
        "models/run-42/model.keras",
        None,
        800,
    ))
    .await;
    append(gate(
        "trainer",
        RUN,
        "PutBlockList",
        "models/run-42/model.keras",
        Some("\"0xm2\""),
        800,
    ))
    .await;
    // The same blob name in another account does not match.
    let mut elsewhere = gate(
        "trainer",
        RUN,
        "PutBlob",
        "models/run-42/model.keras",
        Some("\"0xelse\""),
        1,
    );
    elsewhere.resource = Some(
        "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/other/blobServices/default/containers/models/blobs/run-42/model.keras".into(),
    );
    append(elsewhere).await;
    // Closing signs a checkpoint; the events after it are not covered.
    log.close().await.unwrap();
    let log = entraflow_audit::AuditLog::open(
        &f.url,
        f.signer(),
        entraflow_audit::AuditOptions::new(GATE).checkpoint_interval(None),
    )
    .await
    .unwrap();
    log.append(gate(
        "trainer",
        RUN,
        "GetBlob",
        "data/train-0",
        Some("\"0xs0\""),
        100,
    ))
    .await
    .unwrap();
    let append = |e: Event| {
        let log = log.clone();
        async move { log.append(e).await.unwrap() }
    };
    // Someone else tags the model with metadata: a new ETag, the same content.
    append(gate(
        "platform",
        "ops",
        "SetBlobMetadata",
        "models/run-42/model.keras",
        Some("\"0xm2-1\""),
        0,
    ))
    .await;

    // No close: no checkpoint covers this last event.
    std::mem::forget(log);
}

async fn find(f: &Fixture, blob: &str, etag: Option<&str>) -> Result<Found, AuditError> {
    let store = AnyStore::open(&f.url).await.unwrap();
    lineage(&store, &BlobTarget::parse(blob).unwrap(), etag).await
}

async fn lineage_follows_versions_runs_and_grants(f: &Fixture) {
    write_run(f).await;

    // The latest version is the metadata change; the lineage follows its content.
    let latest = find(f, MODEL, None).await.unwrap();
    let l = &latest.lineage;
    assert_eq!(l.blob, MODEL);
    assert_eq!(l.version.etag.as_deref(), Some("\"0xm2-1\""));
    assert_eq!(l.version.operation.as_deref(), Some("SetBlobMetadata"));
    let content = l.content.as_ref().expect("the content's write");
    assert_eq!(content.etag.as_deref(), Some("\"0xm2\""));
    assert_eq!(l.run_id.as_deref(), Some(RUN));
    assert_eq!(
        l.principal.as_ref().unwrap().oid.as_deref(),
        Some("trainer")
    );
    let reads: Vec<(&str, Option<&str>, u64, u64)> = l
        .reads
        .iter()
        .map(|r| (r.blob.as_str(), r.etag.as_deref(), r.requests, r.bytes))
        .collect();
    assert_eq!(
        reads,
        [
            ("az://data/data/train-0", Some("\"0xs0\""), 2, 200),
            ("az://data/data/train-1", Some("\"0xs1\""), 1, 4000),
            ("az://data/data/train-2", Some("\"0xs2\""), 1, 100),
        ],
        "inputs only, a streamed read's bytes from its completion"
    );
    assert_eq!(l.grants.len(), 1);
    assert_eq!(l.grants[0].assignment_id, READER_GRANT);
    assert_eq!(l.grants[0].reads, 4);
    assert_eq!(l.grants[0].changes.len(), 1);
    assert_eq!(l.grants[0].changes[0].event.log, ADMIN);
    assert_eq!(
        l.grants[0].changes[0].actor.as_deref(),
        Some("alice (uid 1000)")
    );
    assert_eq!(
        latest.later_reads, 1,
        "the read after the model was written"
    );

    // The first version: shard 2 was read after it, so it is not an input.
    let first = find(
        f,
        "https://127.0.0.1:1/data/models/run-42/model.keras",
        Some("0xm1"),
    )
    .await
    .unwrap();
    assert_eq!(first.lineage.version.etag.as_deref(), Some("\"0xm1\""));
    assert!(first.lineage.content.is_none());
    let blobs: Vec<&str> = first
        .lineage
        .reads
        .iter()
        .map(|r| r.blob.as_str())
        .collect();
    assert_eq!(blobs, ["az://data/data/train-0", "az://data/data/train-1"]);
    assert_eq!(first.later_reads, 2);

    // By full scope, the other account's blob of the same name.
    let other = find(
        f,
        "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/other/blobServices/default/containers/models/blobs/run-42/model.keras",
        None,
    )
    .await
    .unwrap();
    assert_eq!(other.lineage.version.etag.as_deref(), Some("\"0xelse\""));

    let err = find(f, "az://data/models/never-written", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no write of az://data/models/never-written is in the audit log; was it written through the gate?"),
        "{err}"
    );
    let err = find(f, MODEL, Some("\"0xnope\""))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no write of") && err.contains("\"0xm1\""),
        "{err}"
    );
}

/// A bundle of the latest version, verified with the signer's key.
async fn bundle(f: &Fixture, found: &Found) -> Vec<u8> {
    let store = AnyStore::open(&f.url).await.unwrap();
    let mut out = Vec::new();
    let written = write_bundle(&store, found, Some(&f.signer()), &[f.verifier()], &mut out)
        .await
        .unwrap();
    assert_eq!(written.events, found.evidence.records().count());
    assert_eq!(written.bytes, out.len() as u64);
    out
}

fn edit(bundle: &[u8], change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(bundle).unwrap();
    change(&mut value);
    serde_json::to_vec(&value).unwrap()
}

fn problems(bytes: &[u8], keys: &[entraflow_audit::NoteVerifier]) -> Vec<String> {
    let report = verify_bundle(bytes, keys).unwrap();
    assert!(!report.is_ok(), "tampering went unnoticed");
    report.problems
}

async fn bundles_verify_offline_and_tampering_names_the_event(f: &Fixture) {
    write_run(f).await;
    let found = find(f, MODEL, None).await.unwrap();
    let store = AnyStore::open(&f.url).await.unwrap();
    // Without the signing key, an uncovered event cannot be proven.
    let err = write_bundle(&store, &found, None, &[f.verifier()], &mut Vec::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("entraflow audit checkpoint --log entraflow/gate"),
        "{err}"
    );
    let late = find(f, MODEL, Some("\"0xm1\"")).await.unwrap();
    // (The first version's events are covered: no new checkpoint needed.)
    let mut out = Vec::new();
    let written = write_bundle(&store, &late, None, &[f.verifier()], &mut out)
        .await
        .unwrap();
    assert_eq!(written.new_checkpoints, 0);

    let bytes = bundle(f, &found).await;
    let keys = [f.verifier()];
    let report = verify_bundle(&bytes, &keys).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.key_pinned);
    assert_eq!(report.proven, report.events);
    assert_eq!(
        report.lineage.as_ref(),
        Some(&found.lineage),
        "derived again, the same"
    );
    let logs: Vec<&str> = report.checkpoints.iter().map(|c| c.log.as_str()).collect();
    assert_eq!(logs, [ADMIN, GATE]);
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(value["format"], "entraflow-lineage-bundle/1");
    assert_eq!(value["keys"][0], f.verifier().to_string());
    let events = value["events"].as_array().unwrap().clone();
    let roles: Vec<&str> = events.iter().map(|e| e["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "version", "content", "read", "read", "read", "read", "read", "grant"
        ]
    );

    // One field of one event: that event is named.
    let read = events
        .iter()
        .position(|e| {
            e["record"]["resource"]
                .as_str()
                .unwrap_or("")
                .ends_with("train-1")
        })
        .unwrap();
    let id = events[read]["record"]["id"].as_str().unwrap().to_owned();
    let tampered = edit(&bytes, |v| v["events"][read]["record"]["bytes"] = 1.into());
    let found_problems = problems(&tampered, &keys);
    assert!(
        found_problems[0].starts_with(&format!("event {} of the bundle (read event #", read + 1))
            && found_problems[0].contains(&id)
            && found_problems[0].contains("az://data/data/train-1")
            && found_problems[0].contains("inclusion proof does not verify"),
        "{found_problems:?}"
    );
    // The version's ETag.
    let tampered = edit(&bytes, |v| {
        v["events"][0]["record"]["etag"] = "\"0xforged\"".into()
    });
    assert!(problems(&tampered, &keys)[0].starts_with("event 1 of the bundle (version event"));
    // A dropped proof, and two proofs swapped.
    let tampered = edit(&bytes, |v| {
        v["events"][3]["proof"] = Value::Array(Vec::new())
    });
    assert!(problems(&tampered, &keys)[0].starts_with("event 4 of the bundle"));
    let tampered = edit(&bytes, |v| {
        let a = v["events"][2]["proof"].clone();
        v["events"][2]["proof"] = v["events"][5]["proof"].clone();
        v["events"][5]["proof"] = a;
    });
    let swapped = problems(&tampered, &keys);
    assert!(
        swapped
            .iter()
            .any(|p| p.starts_with("event 3 of the bundle")),
        "{swapped:?}"
    );
    assert!(
        swapped
            .iter()
            .any(|p| p.starts_with("event 6 of the bundle")),
        "{swapped:?}"
    );
    // Hashes of one proof reordered.
    let tampered = edit(&bytes, |v| {
        let proof = v["events"][2]["proof"].as_array_mut().unwrap();
        proof.swap(0, 1);
    });
    assert!(problems(&tampered, &keys)[0].starts_with("event 3 of the bundle"));
    // A read dropped from the bundle: the stated lineage no longer follows.
    let shard_0 = events
        .iter()
        .position(|e| {
            e["record"]["resource"]
                .as_str()
                .unwrap_or("")
                .ends_with("train-0")
        })
        .unwrap();
    let tampered = edit(&bytes, |v| {
        v["events"].as_array_mut().unwrap().remove(shard_0);
    });
    let dropped = problems(&tampered, &keys);
    assert!(
        dropped[0].contains("does not follow from its proven events"),
        "{dropped:?}"
    );
    // The summary edited alone.
    let tampered = edit(&bytes, |v| v["lineage"]["reads"][0]["bytes"] = 5.into());
    assert!(
        problems(&tampered, &keys)[0]
            .contains("at lineage.reads[0].bytes, the bundle says 5, the events say 200")
    );
    // A checkpoint's note altered, and a key that did not sign.
    let tampered = edit(&bytes, |v| {
        let note = v["checkpoints"][1]["note"]
            .as_str()
            .unwrap()
            .replacen('\n', "\n1", 1);
        v["checkpoints"][1]["note"] = note.into();
    });
    let altered = problems(&tampered, &keys);
    assert!(
        altered[0].contains("checkpoint of chain 'entraflow/gate' is refused"),
        "{altered:?}"
    );
    let stranger = entraflow_audit::CheckpointSigner::generate("audit-test").unwrap();
    let refused = problems(&bytes, &[stranger.verifier()]);
    assert!(
        refused[0].contains("not signed by a known key"),
        "{refused:?}"
    );

    // With no key of one's own, the carried keys serve, and the report says what that means.
    let unpinned = verify_bundle(&bytes, &[]).unwrap();
    assert!(unpinned.is_ok() && !unpinned.key_pinned);
    assert!(unpinned.cannot_detect.iter().any(|c| c.contains("--key")));
    // Pretty-printed, the bundle still verifies (records are canonicalised again).
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    assert!(verify_bundle(&pretty, &keys).unwrap().is_ok());
    assert!(matches!(
        verify_bundle(b"{\"format\":\"something/2\"}", &keys),
        Err(AuditError::Bundle(_))
    ));

    // A record edited in the store stops lineage itself.
    f.exec("UPDATE audit_events SET record = replace(record, '\"bytes\":4000', '\"bytes\":4001') WHERE record LIKE '%blob.read.completed%'")
        .await;
    let err = find(f, MODEL, None).await.unwrap_err().to_string();
    assert!(err.contains("was modified in the store"), "{err}");
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = super::Fixture::sqlite().await;
                    super::$name(&f).await;
                    f.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(f) = super::Fixture::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&f).await;
                    f.cleanup().await;
                }
            )*
        }
    };
}

both!(
    lineage_follows_versions_runs_and_grants,
    bundles_verify_offline_and_tampering_names_the_event
);
