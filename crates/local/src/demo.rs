//! `entraflow demo`: an identity-enforced TensorFlow training run, end to end.
//!
//! 1. Start (or reuse) the authority and the gate.
//! 2. Provision two projects with workload identity and scoped, expiring roles.
//! 3. Stage a dataset.
//! 4. Train as project A's pod, with short-lived tokens.
//! 5. Show project B denied on A's data.
//! 6. Print the security team's audit view; sign a checkpoint of every chain
//!    and verify the log against them; trace the model's lineage, check it
//!    against the staging step's shards, and verify its proof bundle offline.
//! 7. Write the report (`report.html`, `report.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use entraflow_audit::Lineage;
use entraflow_authority::{AdminAudit, Lifetime, Store};
use entraflow_console::report::{ChainCheckpoint, LineageReport, ReportInput};
use entraflow_credential::{
    AuthorityHost, CredentialOptions, TokenCredential, TokenRequest, WorkloadIdentityCredential,
};
use entraflow_gate::sql::{SQL_GATE_ENV_FILE, SqlGateConfig};
use entraflow_gate::{AUTHORITY_ENV_FILE, GATE_ENV_FILE, read_env_file};

use crate::cluster::ClusterIssuer;
use crate::error::{LocalError, io};
use crate::jobs::{Cluster, Job, Pod, job_error, run_capturing_stderr, run_visible};
use crate::provision::{Project, Tenant, provision};
use crate::report::RunReport;
use crate::sql::{self, MANIFEST};
use crate::stack::{LocalStack, StackOptions};

/// Exit code of `examples/train.py` on a permission error.
const EXIT_PERMISSION_DENIED: i32 = 3;

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The data directory (state, logs, reports).
    pub data_dir: PathBuf,
    /// TensorFlow workers (`MultiWorkerMirroredStrategy` when more than one).
    pub workers: usize,
    /// Training epochs.
    pub epochs: u32,
    /// TFRecord shards to stage.
    pub shards: usize,
    /// Stage only this many examples (0: the whole dataset).
    pub limit: usize,
    /// Lifetime of access tokens, in seconds: short, so refreshes happen mid-training.
    pub token_lifetime_secs: i64,
    /// The Python interpreter with TensorFlow and the entraflow package.
    pub python: PathBuf,
    /// The directory holding `train.py` and `stage_digits.py`.
    pub examples: PathBuf,
    /// The `entraflow` binary, for the security team's audit commands.
    pub entraflow: PathBuf,
    /// The PostgreSQL (an admin login URL) whose shard manifest the jobs reach
    /// through the SQL gate; without one the demo is Blob storage only.
    pub sql_backend: Option<String>,
}

/// What the demo showed.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// The run id every request carried.
    pub run_id: String,
    /// The report's path (`report.html`; `report.md` is beside it).
    pub report: PathBuf,
    /// Final training accuracy.
    pub accuracy: f64,
    /// The permission error project B's job got.
    pub denial: String,
    /// The error PostgreSQL gave project B's job for project A's manifest.
    pub sql_denial: Option<String>,
    /// Audit records of the run.
    pub events: Vec<serde_json::Value>,
    /// The demo's identities.
    pub tenant: Tenant,
}

struct Endpoints {
    authority_host: String,
    tenant_id: String,
    blob_endpoint: String,
    storage_scope: String,
    ca_pem_path: PathBuf,
    /// The SQL gate's client settings (`PGHOST`, `PGPORT`, ...), when it runs.
    sql: Option<std::collections::HashMap<String, String>>,
}

fn step(n: u32, title: &str) {
    println!("\n\x1b[1m[{n}/7] {title}\x1b[0m");
}

/// Runs the whole story. Servers started here are stopped at the end.
pub async fn run(options: DemoOptions) -> Result<DemoOutcome, LocalError> {
    let run_id = format!("demo-{}", time::OffsetDateTime::now_utc().unix_timestamp());
    println!(
        "entraflow demo: run {run_id}, data directory {}",
        options.data_dir.display()
    );

    step(1, "Authority and gate");
    let (stack, endpoints) = start_or_reuse(&options.data_dir, &options.sql_backend).await?;
    println!(
        "      authority  {}  (tenant {})",
        endpoints.authority_host, endpoints.tenant_id
    );
    println!("      gate       {}", endpoints.blob_endpoint);
    if let Some(sql) = &endpoints.sql {
        println!(
            "      SQL gate   {}:{}  (PostgreSQL behind it)",
            sql.get("PGHOST").map_or("?", String::as_str),
            sql.get("PGPORT").map_or("?", String::as_str)
        );
    }
    let outcome = story(&options, &run_id, &endpoints).await;
    if let Some(stack) = stack {
        stack.stop().await?;
    }
    outcome
}

async fn story(
    options: &DemoOptions,
    run_id: &str,
    endpoints: &Endpoints,
) -> Result<DemoOutcome, LocalError> {
    step(
        2,
        "Tenant: two projects, workload identity, roles scoped to their own data",
    );
    let lifetime = options.token_lifetime_secs;
    let store = Store::open(&options.data_dir)?;
    store.set_token_lifetime(Lifetime {
        min: lifetime,
        max: lifetime,
    })?;
    let issuer = ClusterIssuer::load_or_create(&options.data_dir)?;
    let (tenant, mut role_changes) =
        provision(&store, &options.data_dir, &issuer, &endpoints.storage_scope)?;
    let database = options.sql_backend.as_deref().map(database_of);
    if let (Some(backend), Some(database), Some(_)) =
        (&options.sql_backend, &database, &endpoints.sql)
    {
        let scope = format!(
            "{}/databases/{database}",
            SqlGateConfig::new(&options.data_dir).server_scope()
        );
        sql::provision(
            backend,
            &options.data_dir,
            &tenant,
            &scope,
            &mut role_changes,
        )
        .await?;
    }
    // The platform team's changes are audited like any `entraflow ad`/`role` command.
    let audit = AdminAudit::open(&options.data_dir, None).await?;
    let command = "demo (platform team provisioning)";
    audit.record(&store, command).await?;
    let tenant_id = store.default_tenant()?.id;
    audit
        .record_changes(Some(&tenant_id), command, &role_changes)
        .await?;
    audit.close().await?;
    for project in [&tenant.stager, &tenant.project_a, &tenant.project_b] {
        println!(
            "      {:<22} appId {}  trusts system:serviceaccount:{}:{}",
            project.name, project.app_id, project.namespace, project.service_account
        );
    }
    println!(
        "      trainers: Storage Blob Data Reader on their own container; Contributor there for models/* only; all expire in 30 days"
    );
    if endpoints.sql.is_some() {
        println!(
            "      PostgreSQL: each principal mapped to a role of its name; the stager may INSERT into {MANIFEST}, project A's trainer SELECT from it, project B's trainer nothing"
        );
    }
    println!(
        "      access tokens live {lifetime} s; step 4 counts, from the audit log, how often training refreshed them"
    );

    let pods_dir = options.data_dir.join("pods");
    let pod = |project: &Project| -> Result<PathBuf, LocalError> {
        issuer.project_token(
            &pods_dir.join(&project.name),
            &project.namespace,
            &project.service_account,
        )
    };
    let account = endpoints
        .blob_endpoint
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    create_containers(
        endpoints,
        &tenant.platform,
        &pod(&tenant.platform)?,
        &["project-a", "project-b"],
    )
    .await?;
    let cluster = Cluster {
        authority_host: endpoints.authority_host.clone(),
        tenant_id: endpoints.tenant_id.clone(),
        blob_endpoint: endpoints.blob_endpoint.clone(),
        ca_pem_path: endpoints.ca_pem_path.clone(),
        python: options.python.clone(),
        run_id: run_id.to_owned(),
        sql: endpoints.sql.clone().map(|mut env| {
            env.insert(
                "PGDATABASE".into(),
                database.clone().unwrap_or_else(|| "postgres".into()),
            );
            env.into_iter().collect()
        }),
    };
    let manifest = cluster.sql.is_some();

    let data = format!("az://{account}/project-a/digits");
    step(
        3,
        &format!("Staging scikit-learn's digits as TFRecord shards into {data}"),
    );
    let stager = Pod {
        project: &tenant.stager,
        token_file: pod(&tenant.stager)?,
    };
    let mut args = vec![
        "--dest".to_owned(),
        data.clone(),
        "--shards".into(),
        options.shards.to_string(),
    ];
    if options.limit > 0 {
        args.extend(["--limit".to_owned(), options.limit.to_string()]);
    }
    if manifest {
        args.push("--manifest".into());
    }
    let command = cluster.python(&stager, &options.examples.join("stage_digits.py"), &args);
    expect_success(
        "staging",
        &options.python,
        blocking(
            move |python| run_visible("staging", &python, command),
            &options.python,
        )
        .await?,
    )?;

    let model_dir = format!("az://{account}/project-a/models/{run_id}");
    step(
        4,
        &format!(
            "Training as project-a-trainer with {} worker(s); the pod has AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_AUTHORITY_HOST, AZURE_FEDERATED_TOKEN_FILE and no secret",
            options.workers
        ),
    );
    let trainer = Pod {
        project: &tenant.project_a,
        token_file: pod(&tenant.project_a)?,
    };
    let training_start = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| LocalError::Check(e.to_string()))?;
    let metrics = options
        .data_dir
        .join("runs")
        .join(run_id)
        .join("metrics.json");
    std::fs::create_dir_all(metrics.parent().expect("has a parent")).map_err(io(&metrics))?;
    let train_args = |out: &str, metrics: Option<&Path>, manifest: bool| {
        let mut args = vec![
            "--data".to_owned(),
            format!("{data}/train-*"),
            "--out".into(),
            out.to_owned(),
            "--epochs".into(),
            options.epochs.to_string(),
        ];
        if let Some(m) = metrics {
            args.extend(["--metrics".to_owned(), m.display().to_string()]);
        }
        if manifest {
            args.push("--manifest".into());
        }
        args
    };
    let script = options.examples.join("train.py");
    let mut workers: Vec<Command> = (0..options.workers.max(1))
        .map(|_| {
            cluster.python(
                &trainer,
                &script,
                &train_args(&model_dir, Some(&metrics), manifest),
            )
        })
        .collect();
    if workers.len() > 1 {
        let ports = free_ports(workers.len())?;
        let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        for (index, command) in workers.iter_mut().enumerate() {
            let tf_config = serde_json::json!({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}});
            command.env("TF_CONFIG", tf_config.to_string());
            // Keras 3's fit does not run MultiWorkerMirroredStrategy across processes;
            // TensorFlow's own Keras 2 (tf-keras) does, with the same script.
            command.env("TF_USE_LEGACY_KERAS", "1");
        }
    }
    let training = std::time::Instant::now();
    let statuses = blocking(
        move |python| {
            let jobs: Vec<Job> = workers
                .into_iter()
                .map(|c| Job::start("training", &python, c))
                .collect::<Result<_, _>>()?;
            jobs.into_iter()
                .map(|job| job.wait("training", &python).map(|(status, _)| status))
                .collect::<Result<Vec<_>, _>>()
        },
        &options.python,
    )
    .await?;
    let training_secs = training.elapsed().as_secs_f64();
    for status in statuses {
        expect_success("training", &options.python, status)?;
    }
    let history: BTreeMap<String, Vec<f64>> = std::fs::read(&metrics)
        .map_err(io(&metrics))
        .and_then(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|e| LocalError::Check(format!("{}: {e}", metrics.display())))
        })?;
    let accuracy = history
        .get("accuracy")
        .and_then(|a| a.last())
        .copied()
        .unwrap_or(0.0);
    // Counted from the authority's audit chain, not assumed: each token.issued
    // after the first is a refresh the job made while it trained.
    let trainer_tokens = entraflow(
        options,
        &[
            "audit",
            "query",
            "--log",
            "entraflow/authority",
            "--principal",
            &tenant.project_a.principal_id,
            "--since",
            &training_start,
            "-o",
            "json",
        ],
    )?
    .lines()
    .filter(|line| line.contains("\"event_type\":\"token.issued\""))
    .count();
    println!(
        "      the audit log (entraflow/authority) holds {trainer_tokens} access token(s) issued to project-a-trainer during {training_secs:.1} s of training: {} refresh(es) of a {lifetime} s token beyond each worker's first",
        trainer_tokens.saturating_sub(options.workers.max(1))
    );

    step(5, "Project B's trainer reads project A's data");
    let intruder = Pod {
        project: &tenant.project_b,
        token_file: pod(&tenant.project_b)?,
    };
    let intruder_out = format!("az://{account}/project-b/models/{run_id}");
    let sql_denial = if manifest {
        // First the manifest in PostgreSQL: connecting is allowed, reading is not.
        let command = cluster.python(&intruder, &script, &train_args(&intruder_out, None, true));
        let (status, denial) = run_refused(options, command).await?;
        if status.code() != Some(EXIT_PERMISSION_DENIED) || !denial.contains("shards") {
            return Err(LocalError::Check(format!(
                "project B's job should have been refused the manifest by PostgreSQL ({MANIFEST}); it exited {status}"
            )));
        }
        println!(
            "      PostgreSQL refused it the manifest: its own GRANTs apply behind the gate, and the error names the table"
        );
        Some(denial)
    } else {
        None
    };
    // Then the shards themselves in Blob storage.
    let command = cluster.python(&intruder, &script, &train_args(&intruder_out, None, false));
    let (status, denial) = run_refused(options, command).await?;
    if status.code() != Some(EXIT_PERMISSION_DENIED) || !denial.contains("Storage Blob Data Reader")
    {
        return Err(LocalError::Check(format!(
            "project B's job should have failed with a permission error naming 'Storage Blob Data Reader'; it exited {status}"
        )));
    }
    println!(
        "      denied, as it must be: a permission error that names the missing role and scope, not a network error"
    );

    step(6, "The security team's view");
    let run_dir = options.data_dir.join("runs").join(run_id);
    println!("      principals (object ids in the log):");
    for project in [&tenant.stager, &tenant.project_a, &tenant.project_b] {
        println!("        {}  {}", project.principal_id, project.name);
    }
    let summary = entraflow(options, &["audit", "summary", "--run-id", run_id])?;
    let events: Vec<serde_json::Value> = entraflow(
        options,
        &["audit", "query", "--run-id", run_id, "-o", "json"],
    )?
    .lines()
    .filter_map(|l| serde_json::from_str(l).ok())
    .collect();
    let (checkpoints, verify) = checkpoint_every_chain(options, &run_dir, &events)?;
    let lineage = model_lineage(
        options,
        &format!("{model_dir}/model.keras"),
        &run_dir,
        &written(&events, &tenant.stager.principal_id, &data),
        &written(&events, &tenant.project_a.principal_id, &model_dir),
    )?;
    let suggestion = entraflow(options, &["role", "suggest", "--run-id", run_id, "--check"])?;
    println!(
        "      model accuracy after {} epochs: {:.1} %",
        options.epochs,
        accuracy * 100.0
    );

    step(7, "Run report");
    let names = [
        &tenant.platform,
        &tenant.stager,
        &tenant.project_a,
        &tenant.project_b,
    ]
    .iter()
    .map(|p| (p.principal_id.clone(), p.name.clone()))
    .collect();
    let page = ReportInput {
        run_id: run_id.to_owned(),
        facts: vec![
            ("Authority".into(), endpoints.authority_host.clone()),
            ("Storage (gate)".into(), endpoints.blob_endpoint.clone()),
            (
                "Final training accuracy".into(),
                format!("{:.1} %", accuracy * 100.0),
            ),
        ],
        history,
        refusals: sql_denial.iter().chain([&denial]).cloned().collect(),
        lineage: Some(lineage),
        suggestion,
        checkpoints,
        verify,
    };
    let report = RunReport {
        page,
        summary,
        names,
    }
    .write(&run_dir, &options.data_dir)
    .await?;
    println!("      {}", report.display());
    println!("      {}", run_dir.join("report.md").display());
    Ok(DemoOutcome {
        run_id: run_id.to_owned(),
        report,
        accuracy,
        denial,
        sql_denial,
        events,
        tenant,
    })
}

/// Signs a checkpoint of every chain in the audit log, exports each into
/// `<run_dir>/checkpoints/`, and verifies the log against them; then checks
/// that each of the run's `events` is inside its chain's checkpoint. Every
/// record the report reads is then covered by a signature taken when the run
/// ended, and a later rollback of any chain is caught. Returns the chains and
/// the verifier's output.
fn checkpoint_every_chain(
    options: &DemoOptions,
    run_dir: &Path,
    events: &[serde_json::Value],
) -> Result<(Vec<ChainCheckpoint>, String), LocalError> {
    let chains = |json: &str| -> Result<Vec<(String, u64)>, LocalError> {
        let report: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| LocalError::Check(format!("audit verify -o json: {e}")))?;
        Ok(report["chains"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["log_id"].as_str()?.to_owned(), c["size"].as_u64()?)))
            .collect())
    };
    let dir = run_dir.join("checkpoints");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut out = Vec::new();
    for (log, _) in chains(&entraflow(options, &["audit", "verify", "-o", "json"])?)? {
        let file = dir.join(format!("{}.checkpoint", log.replace('/', "_")));
        let path = file.display().to_string();
        entraflow(
            options,
            &["audit", "checkpoint", "--log", &log, "--out", &path],
        )?;
        let note = std::fs::read_to_string(&file).map_err(io(&file))?;
        // A signed note's second line is the tree size it signs.
        let signed_size = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| LocalError::Check(format!("{path}: not a checkpoint")))?;
        let seqs: Vec<u64> = events
            .iter()
            .filter(|e| e["log"] == log.as_str())
            .filter_map(|e| e["seq"].as_u64())
            .collect();
        if let Some(seq) = seqs.iter().max().filter(|seq| **seq >= signed_size) {
            return Err(LocalError::Check(format!(
                "the checkpoint of '{log}' covers {signed_size} events, not the run's record #{seq}"
            )));
        }
        out.push(ChainCheckpoint {
            log,
            size: signed_size,
            signed_size,
            run_records: seqs.len() as u64,
            file: path,
            note,
        });
    }
    let mut args = vec!["audit".to_owned(), "verify".to_owned()];
    for c in &out {
        args.extend(["--checkpoint".to_owned(), c.file.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let verify = entraflow(options, &args)?;
    for (log, size) in chains(&entraflow(options, &[&args[..], &["-o", "json"]].concat())?)? {
        if let Some(c) = out.iter_mut().find(|c| c.log == log) {
            c.size = size;
        }
    }
    println!(
        "      every chain ({}) has a checkpoint signed now that covers the run's records, kept in {}",
        out.len(),
        dir.display()
    );
    Ok((out, verify))
}

/// The blob versions `principal` wrote under `prefix`, as its audit records
/// name them: (blob as `az://`, ETag).
fn written(
    events: &[serde_json::Value],
    principal: &str,
    prefix: &str,
) -> BTreeSet<(String, String)> {
    let mut versions = BTreeSet::new();
    for e in events {
        let (Some(resource), Some(etag)) = (e["resource"].as_str(), e["etag"].as_str()) else {
            continue;
        };
        let blob = entraflow_audit::lineage::blob_uri(resource);
        if e["principal"]["oid"].as_str() == Some(principal)
            && e["event_type"].as_str() == Some("blob.write")
            && e["decision"].as_str() == Some("allow")
            && blob.starts_with(&format!("{prefix}/"))
        {
            versions.insert((blob, etag.to_owned()));
        }
    }
    versions
}

/// Traces the model back with `entraflow audit lineage`, exports its proof
/// bundle, and checks three things: of the blob versions the lineage lists,
/// those from outside the run are exactly the ones the staging step wrote
/// (`staged`), and the rest are the trainer's own (`own`: its checkpoint
/// files, which TensorFlow reads back while saving); the bundle verifies with
/// nothing but itself and the verifier key (no database, no data directory);
/// and the same bundle with one event altered does not.
fn model_lineage(
    options: &DemoOptions,
    model: &str,
    run_dir: &Path,
    staged: &BTreeSet<(String, String)>,
    own: &BTreeSet<(String, String)>,
) -> Result<LineageReport, LocalError> {
    let bundle = run_dir.join("lineage-bundle.json");
    let bundle_arg = bundle.display().to_string();
    entraflow(
        options,
        &["audit", "lineage", model, "--bundle", &bundle_arg],
    )?;
    let json: serde_json::Value = serde_json::from_str(&entraflow(
        options,
        &["audit", "lineage", model, "-o", "json"],
    )?)
    .map_err(|e| LocalError::Check(format!("audit lineage -o json: {e}")))?;
    let lineage: Lineage = serde_json::from_value(json["lineage"].clone())
        .map_err(|e| LocalError::Check(format!("audit lineage -o json: {e}")))?;
    let (own_read, inputs): (BTreeSet<_>, BTreeSet<_>) = lineage
        .reads
        .iter()
        .map(|r| (r.blob.clone(), r.etag.clone().unwrap_or_default()))
        .partition(|version| own.contains(version));
    if staged.is_empty() || inputs != *staged {
        return Err(LocalError::Check(format!(
            "the model's lineage should list as its inputs exactly the shard versions the staging step wrote; staged {staged:?}, lineage {inputs:?}"
        )));
    }
    println!(
        "      the lineage's inputs are exactly the {} shard versions the staging step wrote (by its audit records); the {} other versions it lists are the trainer's own checkpoint files of this run",
        staged.len(),
        own_read.len()
    );

    // Offline: a directory holding only the bundle and the verifier key.
    let offline = run_dir.join("offline");
    std::fs::create_dir_all(&offline).map_err(io(&offline))?;
    let copy = offline.join("lineage-bundle.json");
    std::fs::copy(&bundle, &copy).map_err(io(&copy))?;
    let key = offline.join(entraflow_audit::checkpoint::VERIFIER_KEY_FILE);
    let source = options
        .data_dir
        .join(entraflow_audit::checkpoint::VERIFIER_KEY_FILE);
    std::fs::copy(&source, &key).map_err(io(&source))?;
    let verify = |bundle: &Path| {
        entraflow_at(
            options,
            &offline,
            &[
                "audit",
                "verify",
                "--bundle",
                &bundle.display().to_string(),
                "--key",
                &key.display().to_string(),
            ],
        )
    };
    let good = verify(&copy)?;
    let verified = String::from_utf8_lossy(&good.stdout).into_owned();
    if !good.status.success() {
        return Err(LocalError::Check(format!(
            "the proof bundle does not verify offline: {verified}{}",
            String::from_utf8_lossy(&good.stderr)
        )));
    }
    println!(
        "      $ entraflow --data-dir {} audit verify --bundle {} --key {}",
        offline.display(),
        copy.display(),
        key.display()
    );
    // Up to its verdict: the lineage it then prints is the one shown above.
    let verdict = verified.lines().position(|l| l.starts_with("OK"));
    for line in verified.lines().take(verdict.map_or(usize::MAX, |i| i + 1)) {
        println!("      {line}");
    }

    let tampered = offline.join("tampered-bundle.json");
    std::fs::write(&tampered, tamper(&copy)?).map_err(io(&tampered))?;
    let bad = verify(&tampered)?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    if bad.status.success() {
        return Err(LocalError::Check(
            "a bundle with one event altered verified; it must not".into(),
        ));
    }
    println!(
        "      with one read's byte count altered the bundle fails: {}",
        said.lines()
            .find_map(|l| l.strip_prefix("first: "))
            .unwrap_or_else(|| said.trim())
    );
    Ok(LineageReport {
        lineage,
        command: format!("entraflow audit lineage {model} --bundle {bundle_arg}"),
        bundle: bundle_arg,
        verified,
    })
}

/// The bundle at `path` with the first read event's `bytes` changed: its
/// record (embedded as JSON) then says what the log does not.
fn tamper(path: &Path) -> Result<String, LocalError> {
    let bad = |why: &str| LocalError::Check(format!("{}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut bundle: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    let record = bundle["events"]
        .as_array_mut()
        .and_then(|events| events.iter_mut().find(|e| e["role"] == "read"))
        .map(|e| &mut e["record"])
        .filter(|r| r.is_object())
        .ok_or_else(|| bad("no read event with a record"))?;
    let bytes = record["bytes"].as_u64().unwrap_or(0);
    record["bytes"] = (bytes + 1).into();
    serde_json::to_string(&bundle).map_err(|e| bad(&e.to_string()))
}

/// Runs project B's job, which should be refused: its exit status and the
/// "permission denied" line it printed (empty if none).
async fn run_refused(
    options: &DemoOptions,
    command: Command,
) -> Result<(std::process::ExitStatus, String), LocalError> {
    let (status, stderr) = blocking(
        move |python| run_capturing_stderr("project B's job", &python, command),
        &options.python,
    )
    .await?;
    let denial = stderr
        .lines()
        .find(|l| l.starts_with("permission denied"))
        .unwrap_or_default()
        .to_owned();
    Ok((status, denial))
}

/// Reuses an authority and gate already serving this data directory, else starts
/// them (with the SQL gate in front of `sql_backend`, if given).
async fn start_or_reuse(
    data_dir: &Path,
    sql_backend: &Option<String>,
) -> Result<(Option<LocalStack>, Endpoints), LocalError> {
    let env = read_env_file(&data_dir.join(AUTHORITY_ENV_FILE));
    let gate = read_env_file(&data_dir.join(GATE_ENV_FILE));
    let sql_env = || {
        let env = read_env_file(&data_dir.join(SQL_GATE_ENV_FILE));
        (!env.is_empty()).then_some(env)
    };
    if let (Some(host), Some(tenant), Some(blob), Some(scope), Some(ca)) = (
        env.get("AZURE_AUTHORITY_HOST"),
        env.get("AZURE_TENANT_ID"),
        gate.get("ENTRAFLOW_BLOB_ENDPOINT"),
        gate.get("ENTRAFLOW_STORAGE_SCOPE"),
        env.get("SSL_CERT_FILE"),
    ) {
        let pem = std::fs::read_to_string(ca).unwrap_or_default();
        let client = entraflow_tls::https_client(Some(&pem)).ok();
        let discovery = format!("{host}/{tenant}/v2.0/.well-known/openid-configuration");
        let alive = match client {
            Some(c) => c
                .get(&discovery)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            None => false,
        };
        if alive {
            let sql = sql_backend.as_ref().and_then(|_| sql_env());
            if sql_backend.is_some() && sql.is_none() {
                return Err(LocalError::Check(format!(
                    "the stack already serving {} has no SQL gate; stop it, or start it with `entraflow up --sql-backend <url>`",
                    data_dir.display()
                )));
            }
            println!(
                "      reusing the authority and gate already serving {}",
                data_dir.display()
            );
            return Ok((
                None,
                Endpoints {
                    authority_host: host.clone(),
                    tenant_id: tenant.clone(),
                    blob_endpoint: blob.clone(),
                    storage_scope: scope.clone(),
                    ca_pem_path: PathBuf::from(ca),
                    sql,
                },
            ));
        }
    }
    let mut options = StackOptions::new(data_dir);
    (options.authority_port, options.imds_port, options.gate_port) = (0, 0, 0);
    options.sql_backend = sql_backend.clone();
    options.sql_port = 0;
    let stack = LocalStack::start(options).await?;
    let endpoints = Endpoints {
        authority_host: stack.authority_host.clone(),
        tenant_id: stack.tenant_id.clone(),
        blob_endpoint: stack.blob_endpoint.clone(),
        storage_scope: stack.storage_scope.clone(),
        ca_pem_path: stack.ca_pem_path.clone(),
        sql: sql_backend.as_ref().and_then(|_| sql_env()),
    };
    Ok((Some(stack), endpoints))
}

/// The database a PostgreSQL URL names (`postgres` when it names none).
fn database_of(url: &str) -> String {
    url.rsplit_once('/')
        .map(|(_, db)| db.split('?').next().unwrap_or_default())
        .filter(|db| !db.is_empty() && !db.contains('@') && !db.contains(':'))
        .unwrap_or("postgres")
        .to_owned()
}

/// The platform team's provisioning job creates the projects' containers, with its
/// own workload identity (Storage Blob Data Owner on the account).
async fn create_containers(
    endpoints: &Endpoints,
    platform: &Project,
    token_file: &Path,
    containers: &[&str],
) -> Result<(), LocalError> {
    let ca = std::fs::read_to_string(&endpoints.ca_pem_path).map_err(io(&endpoints.ca_pem_path))?;
    let request = |what: &str| {
        let what = what.to_owned();
        move |e: &dyn std::fmt::Display| LocalError::Request {
            what: what.clone(),
            detail: e.to_string(),
        }
    };
    let options = CredentialOptions {
        authority: AuthorityHost::parse(&endpoints.authority_host, false)
            .map_err(|e| request("authority host")(&e))?,
        extra_ca_pem: Some(ca.clone()),
        ..CredentialOptions::default()
    };
    let credential = WorkloadIdentityCredential::new(
        &endpoints.tenant_id,
        &platform.app_id,
        token_file,
        options,
    )
    .map_err(|e| request("platform credential")(&e))?;
    let token = credential
        .get_token(&TokenRequest::new(&[entraflow_core::scope::default_scope(
            entraflow_core::STORAGE_RESOURCE,
        )]))
        .await
        .map_err(|e| request("platform token")(&e))?;
    let client = entraflow_tls::https_client(Some(&ca)).map_err(|e| request("HTTPS client")(&e))?;
    for container in containers {
        let response = client
            .put(format!(
                "{}/{container}?restype=container",
                endpoints.blob_endpoint
            ))
            .bearer_auth(token.token.expose())
            .header("x-ms-version", entraflow_gate::SERVICE_VERSION)
            .header("Content-Length", "0")
            .send()
            .await
            .map_err(|e| request(&format!("creating container {container}"))(&e))?;
        let status = response.status().as_u16();
        if status != 201 && status != 409 {
            let body = response.text().await.unwrap_or_default();
            return Err(request(&format!("creating container {container}"))(
                &format!("HTTP {status}: {body}"),
            ));
        }
    }
    println!(
        "      containers {} created by {} (Storage Blob Data Owner on the account)",
        containers.join(", "),
        platform.name
    );
    Ok(())
}

/// Runs blocking work (waiting for a child process) off the async runtime, which
/// keeps serving the child's requests meanwhile.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce(PathBuf) -> Result<T, LocalError> + Send + 'static,
    python: &Path,
) -> Result<T, LocalError> {
    let python = python.to_owned();
    let name = python.display().to_string();
    tokio::task::spawn_blocking(move || work(python))
        .await
        .map_err(|e| LocalError::Check(format!("a job waiting on {name} panicked: {e}")))?
}

fn expect_success(
    job: &str,
    python: &Path,
    status: std::process::ExitStatus,
) -> Result<(), LocalError> {
    if status.success() {
        Ok(())
    } else {
        Err(job_error(job, python, format!("failed ({status})")))
    }
}

/// Runs `entraflow <args>` on the data directory, prints the command and its output.
fn entraflow(options: &DemoOptions, args: &[&str]) -> Result<String, LocalError> {
    let printable = args.join(" ");
    let quiet = args.contains(&"json");
    if !quiet {
        println!("      $ entraflow {printable}");
    }
    let output = entraflow_at(options, &options.data_dir, args)?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !quiet {
        for line in stdout.lines() {
            println!("      {line}");
        }
    }
    if !output.status.success() {
        return Err(LocalError::Check(format!(
            "entraflow {printable} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(stdout)
}

/// Runs `entraflow --data-dir <data_dir> <args>`, quietly.
fn entraflow_at(
    options: &DemoOptions,
    data_dir: &Path,
    args: &[&str],
) -> Result<std::process::Output, LocalError> {
    Command::new(&options.entraflow)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .map_err(|e| LocalError::Check(format!("could not run entraflow {}: {e}", args.join(" "))))
}

/// Free loopback ports for the workers' collective communication.
fn free_ports(n: usize) -> Result<Vec<u16>, LocalError> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| LocalError::Check(format!("no free loopback port for the workers: {e}")))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| LocalError::Check(e.to_string()))
}
