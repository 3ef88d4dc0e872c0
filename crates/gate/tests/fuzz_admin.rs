//! Property-based fuzzing of the admin API's JSON bodies through the real server:
//! random documents built from ARM's field names, sent as role assignments and
//! role definitions by an Owner. Every answer is a 2xx or a 4xx in ARM's error
//! shape, never a 5xx, and the gate keeps serving. `PROPTEST_CASES` sets the run
//! length (CI: 64 per endpoint).

use entraflow_testkit::Stack;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

const ARM_SCOPE: &str = "https://management.azure.com/.default";

fn arm_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("properties"),
        Just("roleDefinitionId"),
        Just("principalId"),
        Just("principalType"),
        Just("condition"),
        Just("conditionVersion"),
        Just("roleName"),
        Just("permissions"),
        Just("actions"),
        Just("dataActions"),
        Just("notDataActions"),
        Just("assignableScopes"),
        Just("type"),
        Just("description"),
        Just("expiresOn"),
        Just("x"),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!(
            "/providers/Microsoft.Authorization/roleDefinitions/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
        )),
        Just(json!(
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"
        )),
        Just(json!(
            "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike 'a*'"
        )),
        Just(json!("2.0")),
        Just(json!("/")),
        "[ -~]{0,30}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|pairs| {
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

#[test]
fn random_admin_bodies_get_arm_answers_and_never_a_5xx() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (env, token, base) = runtime.block_on(async {
        let env = Stack::start().await;
        let owner = env.app("owner");
        env.assign(&owner.oid, "Owner", &env.account_scope);
        env.wait_for_policy().await;
        let token = env.token(&owner, ARM_SCOPE).await;
        let published =
            entraflow_gate::read_env_file(&env.data_dir().join(entraflow_gate::GATE_ENV_FILE));
        let base = published["ENTRAFLOW_ADMIN_ENDPOINT"].clone();
        (env, token, base)
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    for kind in ["roleAssignments", "roleDefinitions"] {
        let mut runner = TestRunner::new(Config {
            cases,
            ..Config::default()
        });
        runner
            .run(&arm_json(), |body| {
                let url = format!(
                    "{base}{}/providers/Microsoft.Authorization/{kind}/{}?api-version=2022-04-01",
                    env.account_scope,
                    uuid::Uuid::new_v4()
                );
                let (status, text) = runtime.block_on(async {
                    let resp = env
                        .authority
                        .http
                        .put(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    (resp.status().as_u16(), resp.text().await.unwrap())
                });
                prop_assert!(status < 500, "{} {}: {}", kind, status, text);
                if status >= 400 {
                    let parsed: Value = serde_json::from_str(&text).unwrap_or_default();
                    prop_assert!(
                        parsed["error"]["code"].is_string(),
                        "ARM error shape: {}",
                        text
                    );
                }
                Ok(())
            })
            .unwrap();
    }
    // The gate still answers.
    let status = runtime.block_on(async {
        let url = format!(
            "{base}{}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01",
            env.account_scope
        );
        env.authority
            .http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
}
