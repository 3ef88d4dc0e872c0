//! Several gates sharing one PostgreSQL audit store: each writes its own chain, so
//! instances never contend on one head, and every chain verifies.

use entraflow_audit::{AnyStore, StoreUrl, VerifyOptions, verify_store};
use entraflow_testkit::{STORAGE_SCOPE, Stack};

fn postgres_url() -> Option<String> {
    match std::env::var("ENTRAFLOW_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("ENTRAFLOW_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("ENTRAFLOW_REQUIRE_POSTGRES=1 but ENTRAFLOW_TEST_POSTGRES_URL is unset")
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gates_write_their_own_chains_into_one_postgres_store() {
    let Some(url) = postgres_url() else {
        eprintln!("SKIPPED: set ENTRAFLOW_TEST_POSTGRES_URL to run against PostgreSQL");
        return;
    };
    let store_url = StoreUrl::parse(&url).unwrap();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut chains = Vec::new();
    let mut gates = Vec::new();
    for instance in ["east", "west"] {
        let log_id = format!("entraflow/gate/{instance}-{run}");
        let (store, id) = (store_url.clone(), log_id.clone());
        let env = Stack::start_with(move |config| {
            config.audit_store = store;
            config.audit_log_id = id;
        })
        .await;
        let app = env.app(instance);
        env.assign(
            &app.oid,
            "Storage Blob Data Contributor",
            &env.account_scope,
        );
        env.wait_for_policy().await;
        let token = env.token(&app, STORAGE_SCOPE).await;
        env.create_container(&token, &format!("c-{instance}")).await;
        chains.push(log_id);
        gates.push(env);
    }

    let store = AnyStore::open(&store_url).await.unwrap();
    for log_id in &chains {
        let options = VerifyOptions {
            log_id: Some(log_id.clone()),
            ..VerifyOptions::default()
        };
        let report = verify_store(&store, &options).await.unwrap();
        assert!(
            report.problems.is_empty(),
            "{log_id}: {:?}",
            report.problems
        );
        let chain = report
            .chains
            .iter()
            .find(|c| &c.log_id == log_id)
            .expect("chain present");
        assert!(chain.size >= 1, "{log_id} has no events");
    }
    drop(gates);
}
