//! Crash test: a child process appends under concurrent load and prints every event
//! id the log acknowledged; the parent kills it with SIGKILL at a random moment,
//! several times over. Afterwards every acknowledged event is in the store and
//! `verify` passes. The child is this test binary, re-run with an environment
//! variable that turns `crash_child` into the writer.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use entraflow_audit::store::{AnyStore, StoreBackend};
use entraflow_audit::{AuditLog, AuditOptions, CheckpointSigner, StoreUrl, verify_store};
use rand::Rng;

const CHILD_URL: &str = "ENTRAFLOW_AUDIT_CRASH_CHILD_URL";
const CHILD_DIR: &str = "ENTRAFLOW_AUDIT_CRASH_CHILD_DIR";
const LOG: &str = "entraflow/gate/crash";
const WRITERS: u64 = 32;
const ROUNDS: usize = 6;

/// The writer. A no-op unless the parent started this binary to be it.
#[test]
fn crash_child() {
    let (Ok(url), Ok(dir)) = (std::env::var(CHILD_URL), std::env::var(CHILD_DIR)) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let signer = CheckpointSigner::load_or_create(Path::new(&dir), "crash-test").unwrap();
        let options = AuditOptions::new(LOG).checkpoint_interval(Some(Duration::from_millis(50)));
        let log = AuditLog::open(url.as_str(), signer, options).await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let event = common::blob_event(
                        &format!("w{w}"),
                        "data",
                        &format!("{w}/{i}"),
                        i % 3 == 0,
                        i,
                    );
                    let id = log.append(event).await.unwrap();
                    // Only now may a client be told the request completed.
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {} {}", id.id, id.seq).unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn run_crash_test(url: &StoreUrl, dir: &Path) {
    let url_text = match url {
        StoreUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        StoreUrl::Postgres(u) => u.clone(),
    };
    let mut rng = rand::rng();
    let mut acked: HashSet<String> = HashSet::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_URL, &url_text)
            .env(CHILD_DIR, dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(ack) = line.strip_prefix("ACK ") {
                    let id = ack.split(' ').next().unwrap_or_default().to_owned();
                    if lines.send(id).is_err() {
                        break;
                    }
                }
            }
        });
        // Kill only once the writer is under load, at a random moment.
        let first = received
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("round {round}: the writer acknowledged nothing"));
        acked.insert(first);
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let before = acked.len();
        acked.extend(received.try_iter());
        eprintln!(
            "round {round}: {} acknowledged events",
            acked.len() - before + 1
        );
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = AnyStore::open(url).await.unwrap();
        let mut stored = HashSet::new();
        let mut from = 0;
        loop {
            let rows = store.rows(LOG, from, 10_000).await.unwrap();
            let Some(last) = rows.last() else { break };
            from = last.seq + 1;
            stored.extend(rows.into_iter().map(|r| r.event_id));
        }
        let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged events are missing after SIGKILL, e.g. {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(5)]
        );
        let verifier = CheckpointSigner::load_or_create(dir, "crash-test")
            .unwrap()
            .verifier();
        let options = entraflow_audit::VerifyOptions {
            verifiers: vec![verifier],
            ..Default::default()
        };
        let report = verify_store(&store, &options).await.unwrap();
        assert!(
            report.is_ok(),
            "verify after crashes: {:?}",
            report.problems
        );
        assert_eq!(report.chains[0].size, stored.len() as u64);
        assert!(report.chains[0].checkpoints_checked > 0);
        eprintln!(
            "{} events acknowledged, {} stored, {} checkpoints verified",
            acked.len(),
            stored.len(),
            report.chains[0].checkpoints_checked
        );
    });
}

#[test]
fn sqlite_loses_no_acknowledged_event_under_sigkill() {
    if std::env::var(CHILD_URL).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run_crash_test(&StoreUrl::Sqlite(dir.path().join("audit.db")), dir.path());
}

#[test]
fn postgres_loses_no_acknowledged_event_under_sigkill() {
    if std::env::var(CHILD_URL).is_ok() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(fixture) = runtime.block_on(common::Fixture::postgres(
        "postgres_loses_no_acknowledged_event_under_sigkill",
    )) else {
        return;
    };
    run_crash_test(&fixture.url, fixture.dir.path());
    runtime.block_on(fixture.cleanup());
}
