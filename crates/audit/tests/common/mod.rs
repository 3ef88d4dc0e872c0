//! Test fixtures: a fresh store of each kind, and raw SQL access to it for tampering.
//!
//! PostgreSQL tests read the server from `ENTRAFLOW_TEST_POSTGRES_URL` and work in a
//! schema of their own. When the variable is unset they are skipped with a message,
//! unless `ENTRAFLOW_REQUIRE_POSTGRES=1` (as `scripts/test.sh` sets), when they fail.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use entraflow_audit::{
    AuditLog, AuditOptions, CheckpointSigner, Decision, Event, EventType, NoteVerifier, Principal,
    StoreUrl, VerifyOptions,
};

pub const POSTGRES_URL_VAR: &str = "ENTRAFLOW_TEST_POSTGRES_URL";
pub const REQUIRE_POSTGRES_VAR: &str = "ENTRAFLOW_REQUIRE_POSTGRES";

pub enum Raw {
    Sqlite(PathBuf),
    Postgres { admin_url: String, schema: String },
}

pub struct Fixture {
    pub url: StoreUrl,
    pub raw: Raw,
    pub dir: tempfile::TempDir,
    pub signer_name: &'static str,
}

/// The PostgreSQL server to test against, or `None` (after saying so) to skip.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var(REQUIRE_POSTGRES_VAR).as_deref() == Ok("1") {
                panic!(
                    "{REQUIRE_POSTGRES_VAR}=1 but {POSTGRES_URL_VAR} is not set: start PostgreSQL (scripts/test.sh does)"
                );
            }
            eprintln!(
                "SKIPPED {test}: PostgreSQL tests need {POSTGRES_URL_VAR}=postgres://user@127.0.0.1:PORT/db (scripts/test.sh starts one)"
            );
            None
        }
    }
}

impl Fixture {
    pub async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        Fixture {
            url: StoreUrl::Sqlite(path.clone()),
            raw: Raw::Sqlite(path),
            dir,
            signer_name: "audit-test",
        }
    }

    pub async fn postgres(test: &str) -> Option<Fixture> {
        let admin_url = postgres_url(test)?;
        let schema = format!("audit_t_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-csearch_path%3D{schema}");
        Some(Fixture {
            url: StoreUrl::Postgres(url),
            raw: Raw::Postgres { admin_url, schema },
            dir: tempfile::tempdir().unwrap(),
            signer_name: "audit-test",
        })
    }

    /// Runs SQL directly against the store, as an attacker with database access would.
    pub async fn exec(&self, sql: &str) {
        match &self.raw {
            Raw::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Raw::Postgres { admin_url, schema } => {
                let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("SET search_path = {schema}; {sql}"))
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    /// Same signer every time (persisted in the fixture's directory).
    pub fn signer(&self) -> CheckpointSigner {
        CheckpointSigner::load_or_create(self.dir.path(), self.signer_name).unwrap()
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.signer().verifier()
    }

    pub fn verify_options(&self) -> VerifyOptions {
        VerifyOptions {
            verifiers: vec![self.verifier()],
            ..VerifyOptions::default()
        }
    }

    pub async fn open(&self, log_id: &str) -> AuditLog {
        AuditLog::open(
            &self.url,
            self.signer(),
            AuditOptions::new(log_id).checkpoint_interval(None),
        )
        .await
        .unwrap()
    }

    pub async fn cleanup(self) {
        if let Raw::Postgres { admin_url, schema } = &self.raw {
            let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let _ = client
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await;
        }
    }
}

pub const SCOPE: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ml/providers/Microsoft.Storage/storageAccounts/data/blobServices/default/containers";

/// A gate-like event: principal `who` reads (or writes) blob `path` of container `c`.
pub fn blob_event(who: &str, container: &str, path: &str, write: bool, n: u64) -> Event {
    let mut e = Event::new(if write {
        EventType::BlobWrite
    } else {
        EventType::BlobRead
    });
    e.request_id = Some(uuid::Uuid::new_v4().to_string());
    e.tenant = Some("tenant-1".into());
    e.principal = Some(Principal {
        oid: Some(who.into()),
        appid: Some(format!("app-{who}")),
        name: Some(format!("{who} job")),
    });
    e.token_uti = Some(format!("uti{n}"));
    e.action = Some(format!(
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/{}",
        if write { "write" } else { "read" }
    ));
    e.resource = Some(format!("{SCOPE}/{container}/blobs/{path}"));
    e.decision = Some(Decision::Allow);
    e.assignment_id = Some("assignment-1".into());
    e.role_name = Some("Storage Blob Data Contributor".into());
    e.status = Some(200);
    e.bytes = Some(n);
    e.duration_ms = Some(3);
    e.client_addr = Some("127.0.0.1:5555".into());
    e.user_agent = Some("azsdk-python-storage-blob/12".into());
    e.run_id = Some("run-42".into());
    e
}
