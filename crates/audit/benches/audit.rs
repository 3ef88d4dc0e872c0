//! Audit log benchmarks:
//! - `append/*`: durable appends per second (each `append` returns after its commit
//!   is fsync'd), one writer awaiting each append in turn, and 64 concurrent writers
//!   whose appends the writer task groups into shared commits. SQLite always;
//!   PostgreSQL when `ENTRAFLOW_TEST_POSTGRES_URL` is set.
//! - `peer/sqlite_commit_per_row`: the same machine's plain SQLite baseline in the
//!   same run (WAL, synchronous=FULL, one 200-byte row per transaction), so the
//!   ratio is taken side by side.
//! - `verify/100k_events`: `verify_store` over a 100,000-event chain (multiply by 10
//!   for the time per million).
//!
//! Run: `cargo bench -p entraflow-audit --bench audit`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use entraflow_audit::store::AnyStore;
use entraflow_audit::{
    AuditLog, AuditOptions, CheckpointSigner, Decision, Event, EventType, Principal, StoreUrl,
    VerifyOptions, verify_store,
};

const SCOPE: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ml/providers/Microsoft.Storage/storageAccounts/data/blobServices/default/containers";

/// A typical gate record (about 800 bytes stored).
fn event(i: u64) -> Event {
    let mut e = Event::new(EventType::BlobRead);
    e.request_id = Some(uuid::Uuid::new_v4().to_string());
    e.tenant = Some("00000000-0000-0000-0000-0000000000aa".into());
    e.principal = Some(Principal {
        oid: Some("00000000-0000-0000-0000-000000000007".into()),
        appid: Some("11111111-0000-0000-0000-000000000007".into()),
        name: Some("trainer".into()),
    });
    e.token_uti = Some("AAAAAAAAAAAAAAAAAAAAAA".into());
    e.action = Some("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read".into());
    e.resource = Some(format!(
        "{SCOPE}/data/blobs/train/shard-{:05}.tfrecord",
        i % 1024
    ));
    e.decision = Some(Decision::Allow);
    e.assignment_id = Some("assignment-7".into());
    e.role_name = Some("Storage Blob Data Reader".into());
    e.status = Some(206);
    e.bytes = Some(8 << 20);
    e.duration_ms = Some(4);
    e.client_addr = Some("127.0.0.1:50000".into());
    e.user_agent = Some("azsdk-python-storage-blob/12.23.0 Python/3.11.7".into());
    e.run_id = Some("run-1".into());
    e
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn open(url: &StoreUrl, log_id: &str) -> AuditLog {
    let signer = CheckpointSigner::generate("bench").unwrap();
    let options = AuditOptions::new(log_id).checkpoint_interval(None);
    AuditLog::open(url, signer, options).await.unwrap()
}

/// A fresh PostgreSQL schema for the benchmark, when a server is configured.
fn postgres_url(rt: &tokio::runtime::Runtime) -> Option<StoreUrl> {
    let admin = std::env::var("ENTRAFLOW_TEST_POSTGRES_URL").ok()?;
    let schema = format!("audit_bench_{}", uuid::Uuid::new_v4().simple());
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .ok()?;
        Some(())
    })?;
    let sep = if admin.contains('?') { '&' } else { '?' };
    Some(StoreUrl::Postgres(format!(
        "{admin}{sep}options=-csearch_path%3D{schema}"
    )))
}

fn appends(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![("sqlite", StoreUrl::Sqlite(dir.path().join("audit.db")))];
    match postgres_url(&rt) {
        Some(url) => stores.push(("postgres", url)),
        None => eprintln!("append/postgres_*: skipped (ENTRAFLOW_TEST_POSTGRES_URL is not set)"),
    }
    // The plain-SQLite peer, measured in the same run on the same disk.
    let mut peer = c.benchmark_group("peer");
    peer.throughput(Throughput::Elements(1));
    peer.sample_size(10);
    peer.measurement_time(Duration::from_secs(10));
    let conn = rusqlite::Connection::open(dir.path().join("peer.db")).unwrap();
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        .unwrap();
    let payload = "x".repeat(200);
    peer.bench_function("sqlite_commit_per_row", |b| {
        b.iter(|| {
            conn.execute("INSERT INTO t (payload) VALUES (?1)", [&payload])
                .unwrap()
        })
    });
    peer.finish();

    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, url) in &stores {
        let log = rt.block_on(open(url, &format!("bench/{name}/single")));
        group.bench_function(format!("{name}_single_writer"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        log.append(event(i)).await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
        rt.block_on(log.close()).unwrap();

        // 16 writers: the SQL gate's benchmark (pgbench at 16 connections); 64: the
        // Blob gate's small-request benchmark.
        for writers in [16u64, 64] {
            let log = rt.block_on(open(url, &format!("bench/{name}/group{writers}")));
            group.bench_function(format!("{name}_{writers}_writers_group_commit"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..writers)
                            .map(|w| {
                                let log = log.clone();
                                let n = iters / writers + u64::from(w < iters % writers);
                                tokio::spawn(async move {
                                    for i in 0..n {
                                        log.append(event(i)).await.unwrap();
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.unwrap();
                        }
                        start.elapsed()
                    })
                })
            });
            rt.block_on(log.close()).unwrap();
        }
    }
    group.finish();
}

fn verify(c: &mut Criterion) {
    const EVENTS: u64 = 100_000;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::Sqlite(dir.path().join("audit.db"));
    let signer = CheckpointSigner::generate("bench").unwrap();
    let verifier = signer.verifier();
    rt.block_on(async {
        let log = AuditLog::open(&url, signer, AuditOptions::new("bench/verify"))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..256u64)
            .map(|w| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..EVENTS / 256 + u64::from(w < EVENTS % 256) {
                        log.append(event(i)).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        log.close().await.unwrap();
    });
    let store = rt.block_on(AnyStore::open(&url)).unwrap();
    let options = VerifyOptions {
        verifiers: vec![verifier],
        ..VerifyOptions::default()
    };
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("100k_events", |b| {
        b.iter(|| {
            let report = rt.block_on(verify_store(&store, &options)).unwrap();
            assert!(report.is_ok());
            assert_eq!(report.chains[0].size, EVENTS);
        })
    });
    group.finish();
}

criterion_group!(benches, appends, verify);
criterion_main!(benches);
