//! `entraflow audit lineage` and `audit verify --bundle`, end to end through the
//! built binary: a real gate records a stager's shards and a trainer's run (reads
//! small and streamed, then the model), the trainer's read role is granted with
//! `entraflow role assignment create` (so its admin change is in the log), and the
//! CLI traces the model back, exports a proof bundle, and verifies it with no
//! database and no data directory, and a tampered copy fails naming the event.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use entraflow_testkit::{STORAGE_SCOPE, Stack};
use serde_json::Value;

const RUN: &str = "run-lineage-1";

fn entraflow(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_entraflow"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("ENTRAFLOW_AUDIT_STORE")
        .output()
        .unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Put Blob with a run id; the ETag the gate answered.
async fn put(env: &Stack, token: &str, run: &str, path: &str, body: Vec<u8>) -> String {
    let resp = env
        .request(reqwest::Method::PUT, path, Some(token))
        .header("x-ms-blob-type", "BlockBlob")
        .header("x-ms-entraflow-run-id", run)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{path}");
    resp.headers()["etag"].to_str().unwrap().to_owned()
}

async fn get(env: &Stack, token: &str, path: &str) -> usize {
    let resp = env
        .request(reqwest::Method::GET, path, Some(token))
        .header("x-ms-entraflow-run-id", RUN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.bytes().await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_traces_a_model_and_its_bundle_verifies_offline() {
    let env = Stack::start().await;
    let dir = env.data_dir().to_owned();
    let stager = env.app("stager");
    let trainer = env.app("trainer");
    env.assign(
        &stager.oid,
        "Storage Blob Data Contributor",
        &env.account_scope,
    );
    env.assign(
        &trainer.oid,
        "Storage Blob Data Contributor",
        "/blobServices/default/containers/models",
    );
    // The read grant the way an administrator makes it: audited.
    let data_scope = format!("{}/blobServices/default/containers/data", env.account_scope);
    let created: Value = serde_json::from_str(&ok(&entraflow(
        &dir,
        &[
            "role",
            "assignment",
            "create",
            "--assignee",
            &trainer.app_id,
            "--role",
            "Storage Blob Data Reader",
            "--scope",
            &data_scope,
            "-o",
            "json",
        ],
    )))
    .unwrap();
    let reader_grant = created["id"].as_str().unwrap().to_owned();
    env.wait_for_policy().await;
    let stager_token = env.token(&stager, STORAGE_SCOPE).await;
    let trainer_token = env.token(&trainer, STORAGE_SCOPE).await;
    env.create_container(&stager_token, "data").await;
    env.create_container(&stager_token, "models").await;

    // Three shards: two small, one that streams (more than 64 KiB).
    let mut shards = Vec::new();
    for (i, size) in [(0, 1000usize), (1, 2000), (2, 300_000)] {
        let path = format!("/data/shards/train-{i}.rec");
        let body: Vec<u8> = (0..size).map(|b| (b % 251) as u8).collect();
        shards.push((
            path.clone(),
            put(&env, &stager_token, "stage-1", &path, body).await,
            size,
        ));
    }
    for (path, _, size) in &shards {
        assert_eq!(get(&env, &trainer_token, path).await, *size);
    }
    get(&env, &trainer_token, &shards[0].0).await;
    let model_path = "/models/run-lineage-1/model.keras";
    let model_etag = put(&env, &trainer_token, RUN, model_path, b"weights".to_vec()).await;
    // The streamed read's completion record lands after its body.
    let model = format!("az://{}/models/run-lineage-1/model.keras", env.account);
    let mut found = Value::Null;
    for _ in 0..200 {
        found = serde_json::from_str(&ok(&entraflow(
            &dir,
            &["audit", "lineage", &model, "-o", "json"],
        )))
        .unwrap();
        let big = found["lineage"]["reads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["blob"].as_str().unwrap().ends_with("train-2.rec"))
            .cloned();
        if big.is_some_and(|b| b["bytes"] == 300_000) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let lineage = &found["lineage"];
    assert_eq!(lineage["version"]["etag"], model_etag);
    assert_eq!(lineage["version"]["operation"], "PutBlob");
    assert_eq!(lineage["run_id"], RUN);
    assert_eq!(lineage["principal"]["oid"], trainer.oid);
    let reads: Vec<(String, String, u64, u64)> = lineage["reads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["blob"].as_str().unwrap().to_owned(),
                r["etag"].as_str().unwrap().to_owned(),
                r["requests"].as_u64().unwrap(),
                r["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String, u64, u64)> = shards
        .iter()
        .enumerate()
        .map(|(i, (path, etag, size))| {
            let requests = if i == 0 { 2 } else { 1 };
            (
                format!("az://{}{path}", env.account),
                etag.clone(),
                requests,
                requests * *size as u64,
            )
        })
        .collect();
    assert_eq!(
        reads, want,
        "every shard version the trainer read, and nothing else"
    );
    let grants = lineage["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["assignment_id"], reader_grant);
    assert_eq!(grants[0]["role_name"], "Storage Blob Data Reader");
    assert_eq!(
        grants[0]["changes"][0]["operation"],
        "role_assignment.create"
    );

    // The table names the version, the writer, each input and its grant.
    let table = ok(&entraflow(&dir, &["audit", "lineage", &model]));
    assert!(
        table.contains(&format!("version   {model_etag} made by PutBlob")),
        "{table}"
    );
    assert!(table.contains(&format!("in run {RUN}")), "{table}");
    assert!(table.contains("3 blob version(s), 4 request(s)"), "{table}");
    assert!(table.contains("role_assignment.create by"), "{table}");
    // By the Blob URL, and by an older version that does not exist.
    let url = format!("{}{model_path}", env.endpoint);
    assert!(ok(&entraflow(&dir, &["audit", "lineage", &url])).contains(&model_etag));
    let missing = entraflow(&dir, &["audit", "lineage", &model, "--etag", "\"0xnone\""]);
    assert!(!missing.status.success());
    let never = entraflow(
        &dir,
        &[
            "audit",
            "lineage",
            &format!("az://{}/models/never", env.account),
        ],
    );
    assert!(!never.status.success());
    assert!(
        String::from_utf8_lossy(&never.stderr).contains(&format!(
            "no write of az://{}/models/never is in the audit log; was it written through the gate?",
            env.account
        )),
        "{}",
        String::from_utf8_lossy(&never.stderr)
    );

    // The bundle, then verification somewhere with no store and no data directory.
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("model.lineage.json");
    let exported: Value = serde_json::from_str(&ok(&entraflow(
        &dir,
        &[
            "audit",
            "lineage",
            &model,
            "--bundle",
            bundle.to_str().unwrap(),
            "-o",
            "json",
        ],
    )))
    .unwrap();
    assert_eq!(
        exported["bundle"]["events"],
        1 + 5 + 1,
        "the write, five read records, the grant"
    );
    let key = out.path().join("audit-key.pub");
    std::fs::copy(dir.join("audit-key.pub"), &key).unwrap();
    let nowhere = out.path().join("no-data-dir");
    drop(env);
    let key_arg = key.to_str().unwrap();
    let bundle_arg = bundle.to_str().unwrap();
    let verified = ok(&entraflow(
        &nowhere,
        &["audit", "verify", "--bundle", bundle_arg, "--key", key_arg],
    ));
    assert!(
        verified.contains("OK: all 7 events are in their chains' signed checkpoints"),
        "{verified}"
    );
    assert!(verified.contains(&model_etag), "{verified}");
    assert!(!nowhere.exists(), "verifying created nothing");
    let report: Value = serde_json::from_str(&ok(&entraflow(
        &nowhere,
        &[
            "audit", "verify", "--bundle", bundle_arg, "--key", key_arg, "-o", "json",
        ],
    )))
    .unwrap();
    assert_eq!(report["lineage"], exported["lineage"]);
    assert_eq!(report["key_pinned"], true);

    // One field of one event: the verification fails and names that event.
    let mut value: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let events = value["events"].as_array_mut().unwrap();
    let (i, read) = events
        .iter_mut()
        .enumerate()
        .find(|(_, e)| e["role"] == "read")
        .unwrap();
    let id = read["record"]["id"].as_str().unwrap().to_owned();
    read["record"]["bytes"] = 999.into();
    let tampered = out.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_vec(&value).unwrap()).unwrap();
    let failed = entraflow(
        &nowhere,
        &[
            "audit",
            "verify",
            "--bundle",
            tampered.to_str().unwrap(),
            "--key",
            key_arg,
        ],
    );
    assert_eq!(failed.status.code(), Some(1));
    let text = String::from_utf8_lossy(&failed.stdout);
    assert!(
        text.contains(&format!(
            "first: event {} of the bundle (read event #",
            i + 1
        )) && text.contains(&id),
        "{text}"
    );
}
