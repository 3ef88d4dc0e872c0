//! The audit store test suite. Every test body is generic over the store and runs
//! twice: against SQLite and against PostgreSQL (see `common` for how PostgreSQL is
//! found, and skipped or required).

mod common;

use std::collections::HashSet;

use common::{Fixture, SCOPE, blob_event};
use entraflow_audit::merkle::{self, Frontier, leaf_hash};
use entraflow_audit::store::{AnyStore, Filter, StoreBackend};
use entraflow_audit::{
    AuditError, AuditLog, AuditOptions, CheckpointSigner, Decision, Event, EventType,
    ExternalCheckpoint, ProblemKind, Record, StoreError, Summarizer, VerifyOptions, VerifyReport,
    export_jsonl, prove_consistency, prove_inclusion, verify_jsonl, verify_store,
};

const LOG: &str = "entraflow/gate/test-1";

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fixture = super::Fixture::sqlite().await;
                    super::$name(&fixture).await;
                    fixture.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(fixture) = super::Fixture::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&fixture).await;
                    fixture.cleanup().await;
                }
            )*
        }
    };
}

suite!(
    appends_are_durable_ordered_and_verify,
    concurrent_appends_share_commits_and_keep_every_event,
    a_reopened_log_continues_its_chain,
    chains_of_several_writers_are_independent,
    two_writers_on_one_chain_conflict_without_damage,
    queries_filter_and_summaries_aggregate,
    a_modified_record_is_reported_precisely,
    a_rehashed_modification_breaks_the_signed_checkpoint,
    an_edited_query_column_is_reported,
    a_deleted_record_is_reported_precisely,
    reordered_records_are_reported,
    a_truncated_tail_is_reported,
    a_rollback_is_caught_by_an_exported_checkpoint,
    a_deleted_chain_is_caught_by_an_exported_checkpoint,
    regression_a_deleted_head_row_does_not_hide_a_chain,
    regression_a_chain_with_only_checkpoints_left_is_reported,
    verify_says_what_it_cannot_detect,
    forged_checkpoints_are_reported,
    json_lines_export_round_trips_into_verify,
    inclusion_and_consistency_proofs_verify_and_fail_when_tampered,
    appends_after_close_are_refused,
    blob_versions_are_hashed_stored_as_columns_and_checked,
    lineage_queries_find_versions_runs_grants_and_leaves,
);

/// Writes `n` events (principal `job` reading data/train/i) and closes the log.
async fn write_log(f: &Fixture, n: u64) -> Vec<entraflow_audit::EventId> {
    let log = f.open(LOG).await;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            log.append(blob_event("job", "data", &format!("train/{i}"), false, i))
                .await
                .unwrap(),
        );
    }
    log.close().await.unwrap();
    ids
}

async fn verify(f: &Fixture) -> VerifyReport {
    let store = AnyStore::open(&f.url).await.unwrap();
    verify_store(&store, &f.verify_options()).await.unwrap()
}

fn first(report: &VerifyReport) -> &entraflow_audit::Problem {
    report
        .problems
        .first()
        .unwrap_or_else(|| panic!("verify found nothing wrong: {report:?}"))
}

/// A byte string as an SQL literal of the store's dialect.
fn blob_literal(f: &Fixture, bytes: &[u8]) -> String {
    let hex = hex::encode(bytes);
    match f.raw {
        common::Raw::Sqlite(_) => format!("X'{hex}'"),
        common::Raw::Postgres { .. } => format!("'\\x{hex}'::bytea"),
    }
}

/// The leaf hash of `record` bytes, as an SQL literal.
fn hash_literal(f: &Fixture, bytes: &[u8]) -> String {
    blob_literal(f, &leaf_hash(bytes).0)
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn record_at(f: &Fixture, seq: u64) -> String {
    let store = AnyStore::open(&f.url).await.unwrap();
    store.rows(LOG, seq, 1).await.unwrap().remove(0).record
}

async fn appends_are_durable_ordered_and_verify(f: &Fixture) {
    let ids = write_log(f, 25).await;
    let seqs: Vec<u64> = ids.iter().map(|i| i.seq).collect();
    assert_eq!(seqs, (0..25).collect::<Vec<_>>());
    let store = AnyStore::open(&f.url).await.unwrap();
    let rows = store.rows(LOG, 0, 100).await.unwrap();
    assert_eq!(rows.len(), 25);
    for (row, id) in rows.iter().zip(&ids) {
        assert_eq!(row.event_id, id.id.to_string());
        let record = Record::parse(row.record.as_bytes()).unwrap();
        assert_eq!(record.canonical_bytes(), row.record.as_bytes());
        assert_eq!(record.log, LOG);
    }
    // close() wrote a checkpoint of all 25 events.
    let checkpoints = store.checkpoints(LOG).await.unwrap();
    assert_eq!(checkpoints.last().unwrap().size, 25);
    let report = verify_store(&store, &f.verify_options()).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.chains[0].size, 25);
    assert_eq!(report.chains[0].checkpoints_checked, checkpoints.len());
    // Without the key, the checkpoints cannot be trusted: verify says so.
    let keyless = verify_store(&store, &VerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(first(&keyless).kind, ProblemKind::CheckpointInvalid);
}

async fn concurrent_appends_share_commits_and_keep_every_event(f: &Fixture) {
    let log = f.open(LOG).await;
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..20u64 {
                let e = blob_event(&format!("w{w}"), "data", &format!("x/{i}"), i % 2 == 0, i);
                ids.push(log.append(e).await.unwrap());
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let cp = log.checkpoint().await.unwrap();
    assert_eq!(cp.checkpoint.size, 640);
    log.close().await.unwrap();
    let seqs: HashSet<u64> = all.iter().map(|i| i.seq).collect();
    assert_eq!(seqs.len(), 640, "every append got its own position");
    assert_eq!(*seqs.iter().max().unwrap(), 639);
    let report = verify(f).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.chains[0].size, 640);
    assert_eq!(report.chains[0].root, cp.checkpoint.root);
}

async fn a_reopened_log_continues_its_chain(f: &Fixture) {
    write_log(f, 5).await;
    let log = f.open(LOG).await;
    let id = log
        .append(Event::new(EventType::AdminChange))
        .await
        .unwrap();
    assert_eq!(id.seq, 5);
    // Dropping without close: the writer still checkpoints when the last handle goes.
    drop(log);
    let store = AnyStore::open(&f.url).await.unwrap();
    let mut size = 0;
    for _ in 0..100 {
        size = store.checkpoints(LOG).await.unwrap().last().unwrap().size;
        if size == 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(size, 6);
    assert!(verify(f).await.is_ok());
}

async fn chains_of_several_writers_are_independent(f: &Fixture) {
    let a = f.open("entraflow/gate/a").await;
    let b = f.open("entraflow/gate/b").await;
    let (ra, rb) = tokio::join!(
        async {
            for i in 0..30 {
                a.append(blob_event("x", "c", &format!("a/{i}"), false, i))
                    .await
                    .unwrap();
            }
        },
        async {
            for i in 0..30 {
                b.append(blob_event("y", "c", &format!("b/{i}"), true, i))
                    .await
                    .unwrap();
            }
        }
    );
    let _ = (ra, rb);
    a.close().await.unwrap();
    b.close().await.unwrap();
    let report = verify(f).await;
    assert!(report.is_ok(), "{report:?}");
    let sizes: Vec<(String, u64)> = report
        .chains
        .iter()
        .map(|c| (c.log_id.clone(), c.size))
        .collect();
    assert_eq!(
        sizes,
        [
            ("entraflow/gate/a".to_owned(), 30),
            ("entraflow/gate/b".to_owned(), 30)
        ]
    );
}

async fn two_writers_on_one_chain_conflict_without_damage(f: &Fixture) {
    let one = f.open(LOG).await;
    let two = f.open(LOG).await;
    one.append(Event::new(EventType::BlobRead)).await.unwrap();
    // `two` still believes the chain is empty: the store refuses its batch.
    let err = two
        .append(Event::new(EventType::BlobRead))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::Store(StoreError::Conflict {
                expected: 0,
                found: 1,
                ..
            })
        ),
        "{err}"
    );
    // It reloads the head and carries on at the right position.
    assert_eq!(
        two.append(Event::new(EventType::BlobRead))
            .await
            .unwrap()
            .seq,
        1
    );
    one.close().await.unwrap();
    two.close().await.unwrap();
    assert!(verify(f).await.is_ok());
}

async fn queries_filter_and_summaries_aggregate(f: &Fixture) {
    let log = f.open(LOG).await;
    for i in 0..10 {
        log.append(blob_event(
            "reader",
            "data",
            &format!("train/{i}"),
            false,
            100,
        ))
        .await
        .unwrap();
    }
    for i in 0..3 {
        log.append(blob_event("writer", "models", &format!("m{i}"), true, 7))
            .await
            .unwrap();
    }
    let mut denied = blob_event("reader", "secret", "k", false, 0);
    denied.event_type = EventType::AuthzDenied;
    denied.decision = Some(Decision::Deny);
    denied.status = Some(403);
    denied.run_id = Some("run-43".into());
    denied.detail = Some("no role grants blobs/read".into());
    log.append(denied).await.unwrap();
    log.close().await.unwrap();

    let store = AnyStore::open(&f.url).await.unwrap();
    let count = |filter: Filter| {
        let store = store.clone();
        async move { store.query(&filter, None, 1000).await.unwrap().len() }
    };
    assert_eq!(count(Filter::default()).await, 14);
    let by = |who: &str| Filter {
        principal: Some(who.into()),
        ..Filter::default()
    };
    assert_eq!(count(by("reader")).await, 11);
    assert_eq!(count(by("app-writer")).await, 3, "appid matches too");
    assert_eq!(count(by("writer job")).await, 3, "display name matches too");
    let prefix = Filter {
        resource_prefix: Some(format!("{SCOPE}/data/blobs/train/")),
        ..Filter::default()
    };
    assert_eq!(count(prefix).await, 10);
    let boundary = Filter {
        resource_prefix: Some(format!("{SCOPE}/data/blobs/train/1")),
        ..Filter::default()
    };
    assert_eq!(count(boundary).await, 1);
    let deny = Filter {
        decision: Some("deny".into()),
        ..Filter::default()
    };
    assert_eq!(count(deny).await, 1);
    let run = Filter {
        run_id: Some("run-42".into()),
        ..Filter::default()
    };
    assert_eq!(count(run).await, 13);
    let action = Filter {
        action: Some(
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write".into(),
        ),
        ..Filter::default()
    };
    assert_eq!(count(action).await, 3);
    let future = Filter {
        since: Some("2999-01-01T00:00:00Z".parse().unwrap()),
        ..Filter::default()
    };
    assert_eq!(count(future).await, 0);
    let past = Filter {
        until: Some("2999-01-01T00:00:00Z".parse().unwrap()),
        since: Some("2000-01-01T00:00:00Z".parse().unwrap()),
        ..Filter::default()
    };
    assert_eq!(count(past).await, 14);
    // Paging with a cursor returns every row exactly once, in time order.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(&Filter::default(), cursor.as_ref(), 4)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(entraflow_audit::store::Cursor::after(last));
        seen.extend(page.into_iter().map(|r| r.seq));
    }
    assert_eq!(seen, (0..14).collect::<Vec<_>>());
    // Following one chain from a position.
    let tail = Filter {
        log_id: Some(LOG.into()),
        after_seq: Some(11),
        ..Filter::default()
    };
    assert_eq!(count(tail).await, 2);

    let mut summary = Summarizer::new();
    for row in store.query(&Filter::default(), None, 1000).await.unwrap() {
        summary.add(&Record::parse(row.record.as_bytes()).unwrap());
    }
    let summary = summary.finish();
    let reader = summary.iter().find(|s| s.principal == "reader").unwrap();
    assert_eq!(reader.read["data/train/"].requests, 10);
    assert_eq!(reader.bytes_read, 1000);
    assert_eq!(reader.denials, 1);
    let writer = summary.iter().find(|s| s.principal == "writer").unwrap();
    assert_eq!(writer.written["models/"].bytes, 21);
    assert!(writer.first <= writer.last);
}

async fn a_modified_record_is_reported_precisely(f: &Fixture) {
    let ids = write_log(f, 20).await;
    let original = record_at(f, 7).await;
    assert!(original.contains("\"bytes\":7,"));
    let forged = original.replace("\"bytes\":7,", "\"bytes\":70000,");
    f.exec(&format!(
        "UPDATE audit_events SET record = {} WHERE seq = 7",
        sql_string(&forged)
    ))
    .await;
    let report = verify(f).await;
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::RecordAltered);
    assert_eq!(p.index, Some(7));
    assert_eq!(p.event_id.as_deref(), Some(ids[7].id.to_string().as_str()));
    assert!(p.detail.contains("modified"), "{p}");
}

async fn a_rehashed_modification_breaks_the_signed_checkpoint(f: &Fixture) {
    write_log(f, 20).await;
    // A careful attacker also rewrites the stored leaf hash: only the signature holds.
    let forged = record_at(f, 3)
        .await
        .replace("\"bytes\":3,", "\"bytes\":3000,");
    f.exec(&format!(
        "UPDATE audit_events SET record = {}, leaf_hash = {} WHERE seq = 3",
        sql_string(&forged),
        hash_literal(f, forged.as_bytes())
    ))
    .await;
    let report = verify(f).await;
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::CheckpointMismatch, "{report:?}");
    assert!(p.detail.contains("first 20 events"), "{p}");
}

async fn an_edited_query_column_is_reported(f: &Fixture) {
    write_log(f, 10).await;
    f.exec("UPDATE audit_events SET principal_oid = 'someone-else' WHERE seq = 4")
        .await;
    let report = verify(f).await;
    let p = first(&report);
    assert_eq!((p.kind, p.index), (ProblemKind::ColumnAltered, Some(4)));
    assert!(p.detail.contains("principal_oid"), "{p}");
}

async fn a_deleted_record_is_reported_precisely(f: &Fixture) {
    write_log(f, 20).await;
    f.exec("DELETE FROM audit_events WHERE seq = 5").await;
    let report = verify(f).await;
    let p = first(&report);
    assert_eq!((p.kind, p.index), (ProblemKind::Missing, Some(5)));
    assert!(p.detail.contains("event #5 is missing"), "{p}");
}

async fn reordered_records_are_reported(f: &Fixture) {
    let ids = write_log(f, 20).await;
    // Swap whole rows 3 and 4 (record, hash and columns move together).
    f.exec(
        "UPDATE audit_events SET seq = -1 WHERE seq = 3;
         UPDATE audit_events SET seq = 3 WHERE seq = 4;
         UPDATE audit_events SET seq = 4 WHERE seq = -1;",
    )
    .await;
    let report = verify(f).await;
    let p = first(&report);
    assert_eq!((p.kind, p.index), (ProblemKind::Misplaced, Some(3)));
    assert_eq!(p.event_id.as_deref(), Some(ids[4].id.to_string().as_str()));
    assert!(p.detail.contains("reordered"), "{p}");
}

async fn a_truncated_tail_is_reported(f: &Fixture) {
    write_log(f, 20).await;
    f.exec("DELETE FROM audit_events WHERE seq >= 15").await;
    let report = verify(f).await;
    let p = first(&report);
    assert_eq!((p.kind, p.index), (ProblemKind::Truncated, Some(15)));
    assert!(p.detail.contains("#15 to #19"), "{p}");
}

async fn a_rollback_is_caught_by_an_exported_checkpoint(f: &Fixture) {
    write_log(f, 20).await;
    // The security team exports the head.
    let store = AnyStore::open(&f.url).await.unwrap();
    let exported = entraflow_audit::checkpoint_now(&store, &f.signer(), None)
        .await
        .unwrap();
    assert_eq!(exported.checkpoint.size, 20);
    // Someone with database access rolls the chain back to 12 events and makes the
    // store self-consistent again: head rewritten, later checkpoints deleted.
    let mut frontier = Frontier::new();
    for row in store.rows(LOG, 0, 12).await.unwrap() {
        frontier.push(leaf_hash(row.record.as_bytes()));
    }
    let blob = blob_literal(f, &frontier.to_bytes());
    f.exec(&format!(
        "DELETE FROM audit_events WHERE seq >= 12;
         DELETE FROM audit_checkpoints WHERE size > 12;
         UPDATE audit_logs SET size = 12, frontier = {blob};"
    ))
    .await;
    // The store alone can no longer tell...
    assert!(verify(f).await.is_ok());
    // ...but the exported checkpoint can.
    let options = VerifyOptions {
        external: vec![ExternalCheckpoint {
            source: "head.checkpoint".into(),
            note: exported.note.clone(),
        }],
        ..f.verify_options()
    };
    let report = verify_store(&store, &options).await.unwrap();
    let p = first(&report);
    assert_eq!((p.kind, p.index), (ProblemKind::Truncated, Some(12)));
    assert!(p.detail.contains("head.checkpoint"), "{p}");
    // And a rewritten history after the rollback does not match it either.
    let log = f.open(LOG).await;
    for i in 0..8 {
        log.append(blob_event("intruder", "data", &format!("y/{i}"), false, i))
            .await
            .unwrap();
    }
    log.close().await.unwrap();
    let report = verify_store(&store, &options).await.unwrap();
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::CheckpointMismatch, "{report:?}");
}

async fn a_deleted_chain_is_caught_by_an_exported_checkpoint(f: &Fixture) {
    write_log(f, 4).await;
    let store = AnyStore::open(&f.url).await.unwrap();
    let exported = entraflow_audit::checkpoint_now(&store, &f.signer(), Some(LOG))
        .await
        .unwrap();
    f.exec("DELETE FROM audit_events; DELETE FROM audit_checkpoints; DELETE FROM audit_logs;")
        .await;
    let options = VerifyOptions {
        external: vec![ExternalCheckpoint {
            source: "cp".into(),
            note: exported.note,
        }],
        ..f.verify_options()
    };
    let report = verify_store(&store, &options).await.unwrap();
    assert_eq!(first(&report).kind, ProblemKind::UnknownChain);
}

/// Finding (hardening issue): `verify` enumerated chains from the heads table only,
/// so deleting one row there hid a whole chain (edited events included) while
/// `query` and `summary` still showed its events.
async fn regression_a_deleted_head_row_does_not_hide_a_chain(f: &Fixture) {
    write_log(f, 10).await;
    let other = f.open("entraflow/gate/test-2").await;
    other
        .append(blob_event("other", "data", "x", false, 0))
        .await
        .unwrap();
    other.close().await.unwrap();
    // Edit an event, then hide the chain by deleting its head row.
    let record = record_at(f, 3).await.replace("train/3", "train/X");
    f.exec(&format!(
        "UPDATE audit_events SET record = {} WHERE log_id = '{LOG}' AND seq = 3;
         DELETE FROM audit_logs WHERE log_id = '{LOG}';",
        sql_string(&record)
    ))
    .await;
    let report = verify(f).await;
    assert!(!report.is_ok(), "{report:?}");
    let kinds: Vec<(&str, ProblemKind)> = report
        .problems
        .iter()
        .map(|p| (p.log_id.as_str(), p.kind))
        .collect();
    assert!(
        kinds.contains(&(LOG, ProblemKind::HeadMissing)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(LOG, ProblemKind::RecordAltered)),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().all(|(log, _)| *log == LOG),
        "the intact chain verifies: {kinds:?}"
    );
    let chains: Vec<&str> = report.chains.iter().map(|c| c.log_id.as_str()).collect();
    assert_eq!(chains, [LOG, "entraflow/gate/test-2"]);
    assert_eq!(report.chains[0].size, 10);

    // An export holds the headless chain too, and verifying it fails as well.
    let store = AnyStore::open(&f.url).await.unwrap();
    let path = f.dir.path().join("headless.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    assert_eq!(
        export_jsonl(&store, Some(LOG), &mut file).await.unwrap(),
        10
    );
    drop(file);
    let report = verify_jsonl(&path, &f.verify_options()).unwrap();
    assert!(!report.is_ok(), "{report:?}");
}

async fn regression_a_chain_with_only_checkpoints_left_is_reported(f: &Fixture) {
    write_log(f, 6).await;
    f.exec(&format!(
        "DELETE FROM audit_events WHERE log_id = '{LOG}'; DELETE FROM audit_logs WHERE log_id = '{LOG}';"
    ))
    .await;
    let report = verify(f).await;
    let kinds: Vec<ProblemKind> = report.problems.iter().map(|p| p.kind).collect();
    assert!(kinds.contains(&ProblemKind::HeadMissing), "{report:?}");
    assert!(kinds.contains(&ProblemKind::Truncated), "{report:?}");
}

async fn verify_says_what_it_cannot_detect(f: &Fixture) {
    write_log(f, 3).await;
    let report = verify(f).await;
    assert!(report.is_ok(), "{report:?}");
    assert!(
        report
            .cannot_detect
            .iter()
            .any(|c| c.contains("without an exported checkpoint")),
        "{:?}",
        report.cannot_detect
    );
    let store = AnyStore::open(&f.url).await.unwrap();
    let exported = entraflow_audit::checkpoint_now(&store, &f.signer(), Some(LOG))
        .await
        .unwrap();
    let options = VerifyOptions {
        external: vec![ExternalCheckpoint {
            source: "cp".into(),
            note: exported.note,
        }],
        ..f.verify_options()
    };
    let report = verify_store(&store, &options).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert!(
        report
            .cannot_detect
            .iter()
            .all(|c| !c.contains("without an exported checkpoint")),
        "{:?}",
        report.cannot_detect
    );
    assert!(
        report
            .cannot_detect
            .iter()
            .any(|c| c.contains("signing key"))
    );
}

async fn forged_checkpoints_are_reported(f: &Fixture) {
    write_log(f, 10).await;
    let store = AnyStore::open(&f.url).await.unwrap();
    let genuine = store.checkpoints(LOG).await.unwrap().pop().unwrap();
    // A checkpoint signed by another key under the same name.
    let impostor = CheckpointSigner::generate(f.signer_name).unwrap();
    let forged = impostor.sign(&entraflow_audit::Checkpoint {
        origin: LOG.into(),
        size: genuine.size,
        root: merkle::Hash::from_slice(&genuine.root).unwrap(),
    });
    f.exec(&format!(
        "UPDATE audit_checkpoints SET note = {} WHERE size = {}",
        sql_string(&forged),
        genuine.size
    ))
    .await;
    let report = verify(f).await;
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::CheckpointInvalid);
    assert!(p.detail.contains("not signed by a known key"), "{p}");

    // The genuine signature over an edited body.
    let edited = genuine.note.replacen("\n10\n", "\n11\n", 1);
    f.exec(&format!(
        "UPDATE audit_checkpoints SET note = {} WHERE size = {}",
        sql_string(&edited),
        genuine.size
    ))
    .await;
    let report = verify(f).await;
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::CheckpointInvalid);
    assert!(p.detail.contains("forged or altered"), "{p}");

    // A forged external checkpoint file is refused too.
    f.exec(&format!(
        "UPDATE audit_checkpoints SET note = {} WHERE size = {}",
        sql_string(&genuine.note),
        genuine.size
    ))
    .await;
    assert!(verify(f).await.is_ok());
    let options = VerifyOptions {
        external: vec![ExternalCheckpoint {
            source: "evil.cp".into(),
            note: forged,
        }],
        ..f.verify_options()
    };
    let report = verify_store(&store, &options).await.unwrap();
    assert!(first(&report).detail.contains("evil.cp"));
}

async fn json_lines_export_round_trips_into_verify(f: &Fixture) {
    write_log(f, 30).await;
    let store = AnyStore::open(&f.url).await.unwrap();
    let path = f.dir.path().join("export.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    assert_eq!(export_jsonl(&store, None, &mut file).await.unwrap(), 30);
    drop(file);
    let report = verify_jsonl(&path, &f.verify_options()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.chains[0].size, 30);
    assert_eq!(report.chains[0].root, verify(f).await.chains[0].root);

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first_event = lines
        .iter()
        .position(|l| !l.starts_with("{\"checkpoint\""))
        .unwrap();
    // Modify one record.
    let mut edited = lines.clone();
    let changed = edited[first_event + 9].replace("\"bytes\":9,", "\"bytes\":1,");
    edited[first_event + 9] = &changed;
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    let report = verify_jsonl(&path, &f.verify_options()).unwrap();
    assert_eq!(first(&report).kind, ProblemKind::CheckpointMismatch);
    // Delete one record.
    let mut deleted = lines.clone();
    deleted.remove(first_event + 4);
    std::fs::write(&path, deleted.join("\n") + "\n").unwrap();
    let report = verify_jsonl(&path, &f.verify_options()).unwrap();
    let p = first(&report);
    assert_eq!((p.kind, p.index), (ProblemKind::Misplaced, Some(4)), "{p}");
    // Truncate the export.
    std::fs::write(&path, lines[..lines.len() - 3].join("\n") + "\n").unwrap();
    let report = verify_jsonl(&path, &f.verify_options()).unwrap();
    assert_eq!(first(&report).kind, ProblemKind::Truncated);
}

async fn inclusion_and_consistency_proofs_verify_and_fail_when_tampered(f: &Fixture) {
    write_log(f, 21).await;
    let store = AnyStore::open(&f.url).await.unwrap();
    let verifiers = [f.verifier()];
    for index in [0, 7, 20] {
        let p = prove_inclusion(&store, None, index, &verifiers)
            .await
            .unwrap();
        assert_eq!(p.tree_size, 21);
        // Checked independently from the signed note, as the security team would.
        let (cp, _) =
            entraflow_audit::checkpoint::open_checkpoint(&p.checkpoint, &verifiers).unwrap();
        let bytes = serde_json::to_vec(&p.record).unwrap();
        let canonical = Record::parse(&bytes).unwrap().canonical_bytes();
        let leaf = leaf_hash(&canonical);
        assert_eq!(leaf, p.leaf_hash);
        merkle::verify_inclusion(index, cp.size, &leaf, &p.proof, &cp.root).unwrap();
        if !p.proof.is_empty() {
            let mut bad = p.proof.clone();
            bad[0].0[0] ^= 1;
            assert!(merkle::verify_inclusion(index, cp.size, &leaf, &bad, &cp.root).is_err());
        }
        assert!(
            merkle::verify_inclusion(index, cp.size, &leaf_hash(b"other"), &p.proof, &cp.root)
                .is_err()
        );
    }
    let c = prove_consistency(&store, None, 13, &verifiers)
        .await
        .unwrap();
    merkle::verify_consistency(13, c.new_size, &c.old_root, &c.new_root, &c.proof).unwrap();
    let mut bad = c.proof.clone();
    bad[0].0[31] ^= 1;
    assert!(merkle::verify_consistency(13, c.new_size, &c.old_root, &c.new_root, &bad).is_err());
    // A record changed in the store: the proof no longer leads to the signed root.
    let forged = record_at(f, 7)
        .await
        .replace("\"bytes\":7,", "\"bytes\":8,");
    f.exec(&format!(
        "UPDATE audit_events SET record = {} WHERE seq = 7",
        sql_string(&forged)
    ))
    .await;
    let err = prove_inclusion(&store, None, 7, &verifiers)
        .await
        .unwrap_err();
    assert!(matches!(err, AuditError::Proof(_)), "{err}");
}

async fn appends_after_close_are_refused(f: &Fixture) {
    let log = AuditLog::open(&f.url, f.signer(), AuditOptions::new(LOG))
        .await
        .unwrap();
    log.append(Event::new(EventType::TokenIssued))
        .await
        .unwrap();
    let last = log.close().await.unwrap().unwrap();
    assert_eq!(last.checkpoint.size, 1);
    assert!(matches!(
        log.append(Event::new(EventType::TokenIssued)).await,
        Err(AuditError::Closed)
    ));
    assert!(matches!(log.close().await, Err(AuditError::Closed)));
}

/// A gate write's blob version (operation, ETag, MD5, copy source).
fn versioned(who: &str, path: &str, op: &str, etag: &str, n: u64) -> Event {
    let mut e = blob_event(who, "models", path, op != "GetBlob", n);
    e.operation = Some(op.into());
    e.etag = Some(etag.into());
    e.content_md5 = Some(format!("md5-{n}=="));
    if op == "CopyBlob" {
        e.copy_source = Some(format!("{SCOPE}/data/blobs/src"));
        e.copy_source_etag = Some("\"0xsrc\"".into());
    }
    e
}

async fn blob_versions_are_hashed_stored_as_columns_and_checked(f: &Fixture) {
    let log = f.open(LOG).await;
    log.append(versioned("job", "m/a", "CopyBlob", "\"0x1\"", 1))
        .await
        .unwrap();
    log.append(versioned("job", "m/b", "PutBlob", "\"0x2\"", 2))
        .await
        .unwrap();
    log.close().await.unwrap();
    let store = AnyStore::open(&f.url).await.unwrap();
    let row = store.rows(LOG, 0, 1).await.unwrap().remove(0);
    assert_eq!(row.operation.as_deref(), Some("CopyBlob"));
    assert_eq!(row.etag.as_deref(), Some("\"0x1\""));
    assert_eq!(row.content_md5.as_deref(), Some("md5-1=="));
    assert_eq!(
        row.copy_source.as_deref(),
        Some(format!("{SCOPE}/data/blobs/src").as_str())
    );
    assert_eq!(row.copy_source_etag.as_deref(), Some("\"0xsrc\""));
    // In the hashed bytes, not only in the columns.
    assert!(
        row.record.contains("\"etag\":\"\\\"0x1\\\"\""),
        "{}",
        row.record
    );
    assert!(verify(f).await.is_ok());
    // An edited column is caught by name ...
    f.exec("UPDATE audit_events SET etag = '\"0x9\"' WHERE seq = 1")
        .await;
    let p = first(&verify(f).await).clone();
    assert_eq!((p.kind, p.index), (ProblemKind::ColumnAltered, Some(1)));
    assert!(p.detail.contains("'etag'"), "{p}");
    f.exec("UPDATE audit_events SET etag = '\"0x2\"' WHERE seq = 1")
        .await;
    assert!(verify(f).await.is_ok());
    // ... and so is an edited record.
    let forged = record_at(f, 0).await.replace("md5-1==", "md5-7==");
    f.exec(&format!(
        "UPDATE audit_events SET record = {}, content_md5 = 'md5-7==' WHERE seq = 0",
        sql_string(&forged)
    ))
    .await;
    let p = first(&verify(f).await).clone();
    assert_eq!((p.kind, p.index), (ProblemKind::RecordAltered, Some(0)));
}

async fn lineage_queries_find_versions_runs_grants_and_leaves(f: &Fixture) {
    use entraflow_audit::store::ResourceMatch;
    let log = f.open(LOG).await;
    let mut events = vec![
        versioned("job", "m/model", "PutBlob", "\"0x1\"", 1),
        versioned("job", "m/model", "GetBlob", "\"0x1\"", 2),
        versioned("job", "m/model", "PutBlock", "\"0xnot-a-version\"", 3),
        versioned("job", "m/model", "SetBlobMetadata", "\"0x1-1\"", 4),
        versioned("job", "m/other", "PutBlob", "\"0x5\"", 5),
    ];
    events[2].etag = None;
    let mut grant = Event::new(EventType::AdminChange);
    grant.resource = Some("assignment-1".into());
    grant.action = Some("role_assignment.create".into());
    events.push(grant);
    let mut elsewhere = blob_event("other", "data", "x", false, 6);
    elsewhere.run_id = Some("run-7".into());
    events.push(elsewhere);
    for e in events {
        log.append(e).await.unwrap();
    }
    log.close().await.unwrap();
    let store = AnyStore::open(&f.url).await.unwrap();
    let suffix = "/storageAccounts/data/blobServices/default/containers/models/blobs/m/model";
    let writes = store
        .blob_writes(&ResourceMatch::Suffix(suffix.into()), 100)
        .await
        .unwrap();
    let seqs: Vec<u64> = writes.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [3, 0], "versions only, newest first");
    let exact = store
        .blob_writes(
            &ResourceMatch::Exact(format!("{SCOPE}/models/blobs/m/model")),
            1,
        )
        .await
        .unwrap();
    assert_eq!(exact.len(), 1);
    assert_eq!(exact[0].seq, 3);
    let reads = store
        .run_events("run-42", "job", &["blob.read"])
        .await
        .unwrap();
    assert_eq!(reads.iter().map(|r| r.seq).collect::<Vec<_>>(), [1]);
    assert!(
        store
            .run_events("run-7", "job", &["blob.read"])
            .await
            .unwrap()
            .is_empty()
    );
    let grants = store.admin_changes("assignment-1").await.unwrap();
    assert_eq!(grants.iter().map(|r| r.seq).collect::<Vec<_>>(), [5]);
    let leaves = store.leaf_hashes(LOG, 2, 5).await.unwrap();
    let rows = store.rows(LOG, 2, 3).await.unwrap();
    assert_eq!(
        leaves,
        rows.iter()
            .map(|r| (r.seq, r.leaf_hash.clone()))
            .collect::<Vec<_>>()
    );
}
