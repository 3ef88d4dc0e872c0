//! `entraflow audit ...`: verify, query, summarize, export and prove the audit log
//! in `<data-dir>/audit.db` (or the PostgreSQL store given with `--store`); trace a
//! model's lineage and export and verify its proof bundle.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use entraflow_audit::checkpoint::{DEFAULT_KEY_NAME, SIGNING_KEY_FILE, VERIFIER_KEY_FILE};
use entraflow_audit::event::container_and_blob;
use entraflow_audit::store::{Cursor, StoreBackend};
use entraflow_audit::{
    AnyStore, BlobTarget, CheckpointSigner, ExternalCheckpoint, Filter, NoteVerifier, Record,
    StoreUrl, Summarizer, Timestamp, VerifyOptions, VerifyReport,
};

use crate::{Globals, Output};

/// The tamper-evident audit log: who touched what data.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// The audit store: sqlite:///path/audit.db or postgres://user@host:port/db.
    /// Defaults to <data-dir>/audit.db.
    #[arg(long, global = true, env = "ENTRAFLOW_AUDIT_STORE", value_name = "URL")]
    store: Option<String>,

    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print the checkpoint verifier key (creating the signing key if there is none).
    /// Keep it, with exported checkpoints, outside the system.
    Key {
        /// Name for a new key.
        #[arg(long, default_value = DEFAULT_KEY_NAME)]
        name: String,
    },
    /// Recompute every chain, check every checkpoint signature and that the log is
    /// consistent with each checkpoint, stored or exported. Reports the first damaged
    /// record; exits 1 on any problem.
    Verify {
        /// An exported checkpoint the log must still be consistent with (detects
        /// truncation and rollback). Repeatable.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// A verifier key (`name+id+key`) or a file holding one. Repeatable.
        /// Defaults to <data-dir>/audit-key.pub.
        #[arg(long = "key", value_name = "KEY|FILE")]
        keys: Vec<String>,
        /// Verify a JSON-lines export instead of the store.
        #[arg(long, value_name = "FILE", conflicts_with = "bundle")]
        from_jsonl: Option<PathBuf>,
        /// Verify a lineage proof bundle (from `audit lineage --bundle`) instead of
        /// the store: offline, no database needed. With no --key, the data
        /// directory's key if there is one, else the keys the bundle carries (and
        /// the report says what that cannot show).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["checkpoints", "log"])]
        bundle: Option<PathBuf>,
        /// Only this chain.
        #[arg(long, value_name = "LOG_ID")]
        log: Option<String>,
    },
    /// Sign a checkpoint of a chain's current head and print it (or write it to --out).
    Checkpoint {
        /// Write the checkpoint here.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The chain (needed when the store has several).
        #[arg(long, value_name = "LOG_ID")]
        log: Option<String>,
    },
    /// Show events, oldest first. -o json prints JSON lines (the stored records).
    Query {
        #[command(flatten)]
        filter: FilterArgs,
        /// Most events to print (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
        /// Keep printing new events as they arrive.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Per principal: which containers/prefixes it read and wrote, bytes, first and
    /// last access, denials. What the security team reads after a training run.
    Summary {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Write every chain, with its checkpoints, as JSON lines; `verify --from-jsonl`
    /// reads it back.
    Export {
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Only this chain.
        #[arg(long, value_name = "LOG_ID")]
        log: Option<String>,
    },
    /// The lineage of a blob version (a model, a checkpoint): the write that made
    /// it, its run and identity, every blob version that identity read in the run
    /// before the write, and the role assignments that allowed each read.
    Lineage {
        /// az://account/container/path, a Blob URL, or the blob's Azure scope.
        #[arg(value_name = "BLOB")]
        blob: String,
        /// This version (its ETag) instead of the latest.
        #[arg(long)]
        etag: Option<String>,
        /// Also write a proof bundle: the events, each with an inclusion proof
        /// against a signed checkpoint (one is signed first if none covers them),
        /// and the verifier keys. `audit verify --bundle FILE` checks it offline.
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// A verifier key (`name+id+key`) or a file holding one that the
        /// checkpoints must verify with. Defaults to <data-dir>/audit-key.pub.
        #[arg(long = "key", value_name = "KEY|FILE")]
        keys: Vec<String>,
    },
    /// Print, as JSON, an inclusion proof of one event in the latest checkpoint, or a
    /// consistency proof from an earlier tree size to it.
    Prove {
        /// The event position (leaf index).
        #[arg(
            long,
            conflicts_with = "old_size",
            required_unless_present = "old_size"
        )]
        index: Option<u64>,
        /// The earlier tree size for a consistency proof.
        #[arg(long)]
        old_size: Option<u64>,
        /// The chain (needed when the store has several).
        #[arg(long, value_name = "LOG_ID")]
        log: Option<String>,
        /// A verifier key or a file holding one. Defaults to <data-dir>/audit-key.pub.
        #[arg(long = "key", value_name = "KEY|FILE")]
        keys: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct FilterArgs {
    /// The principal's object id, app id or name.
    #[arg(long)]
    principal: Option<String>,
    /// Resource scopes starting with this (e.g. .../containers/data/blobs/train/).
    #[arg(long, value_name = "SCOPE")]
    resource_prefix: Option<String>,
    /// This exact action, e.g. Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read.
    #[arg(long)]
    action: Option<String>,
    /// allow or deny.
    #[arg(long)]
    decision: Option<String>,
    /// At or after: RFC 3339 time, or an age such as 30m, 12h, 7d.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Before: RFC 3339 time, or an age such as 30m, 12h, 7d.
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// The training run id.
    #[arg(long)]
    run_id: Option<String>,
    /// The event type, e.g. blob.read, authz.denied, token.issued.
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// Only this chain.
    #[arg(long, value_name = "LOG_ID")]
    log: Option<String>,
}

impl FilterArgs {
    fn to_filter(&self) -> anyhow::Result<Filter> {
        if let Some(d) = &self.decision {
            d.parse::<entraflow_audit::Decision>()
                .map_err(anyhow::Error::msg)?;
        }
        Ok(Filter {
            log_id: self.log.clone(),
            principal: self.principal.clone(),
            resource_prefix: self.resource_prefix.clone(),
            action: self.action.clone(),
            decision: self.decision.clone(),
            since: self.since.as_deref().map(parse_when).transpose()?,
            until: self.until.as_deref().map(parse_when).transpose()?,
            run_id: self.run_id.clone(),
            event_type: self.event_type.clone(),
            ..Filter::default()
        })
    }
}

/// An RFC 3339 time, or an age (`90s`, `30m`, `12h`, `7d`, `2w`) before now.
pub(crate) fn parse_when(text: &str) -> anyhow::Result<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => 0,
    };
    let n: i64 = number.parse().unwrap_or(-1);
    if seconds == 0 || n < 0 {
        bail!(
            "'{text}' is not a time; give an RFC 3339 time such as 2026-11-26T09:00:00Z or an age such as 30m, 12h, 7d"
        );
    }
    let now = Timestamp::now().as_offset_date_time();
    Ok(Timestamp::from(now - time::Duration::seconds(n * seconds)))
}

impl AuditArgs {
    /// Whether the command reads the data directory (all but verifying a bundle,
    /// which is meant to run anywhere).
    pub(crate) fn needs_data_dir(&self) -> bool {
        !matches!(
            self.command,
            AuditCommand::Verify {
                bundle: Some(_),
                ..
            }
        )
    }
}

pub(crate) fn run(args: AuditArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    match run_command(args, globals) {
        // `entraflow audit query | head`: the reader left; that is not a failure.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

/// `println!` that returns write errors (a closed pipe) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout(), $($arg)*)?
    };
}

fn run_command(args: AuditArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let url = match &args.store {
        Some(text) => StoreUrl::parse(text)?,
        None => StoreUrl::default_for(&globals.data_dir),
    };
    // Two workers: `verify` reads the next chunk of the log while it checks this one.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match args.command {
            AuditCommand::Key { name } => {
                let signer = CheckpointSigner::load_or_create(&globals.data_dir, &name)?;
                out!("{}", signer.verifier());
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Verify {
                bundle: Some(path),
                keys,
                ..
            } => verify_bundle(&path, globals, &keys),
            AuditCommand::Verify {
                checkpoints,
                keys,
                from_jsonl,
                log,
                bundle: None,
            } => verify(&url, globals, checkpoints, &keys, from_jsonl, log).await,
            AuditCommand::Lineage {
                blob,
                etag,
                bundle,
                keys,
            } => {
                let store = AnyStore::open_existing(&url).await?;
                lineage(&store, globals, &blob, etag.as_deref(), bundle, &keys).await
            }
            AuditCommand::Checkpoint { out, log } => {
                let store = AnyStore::open_existing(&url).await?;
                let signer = CheckpointSigner::load_or_create(&globals.data_dir, DEFAULT_KEY_NAME)?;
                let signed =
                    entraflow_audit::checkpoint_now(&store, &signer, log.as_deref()).await?;
                match out {
                    Some(path) => {
                        entraflow_core::fsutil::write_public_file(&path, signed.note.as_bytes())
                            .with_context(|| format!("writing {}", path.display()))?;
                        eprintln!(
                            "checkpoint of '{}' at {} events written to {}",
                            signed.checkpoint.origin,
                            signed.checkpoint.size,
                            path.display()
                        );
                    }
                    None => write!(std::io::stdout(), "{}", signed.note)?,
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Query {
                filter,
                limit,
                follow,
            } => {
                let store = AnyStore::open_existing(&url).await?;
                query(&store, filter.to_filter()?, limit, follow, globals.output).await?;
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Summary { filter } => {
                let store = AnyStore::open_existing(&url).await?;
                summary(&store, filter.to_filter()?, globals.output).await?;
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Export { out, log } => {
                let store = AnyStore::open_existing(&url).await?;
                let file = std::fs::File::create(&out)
                    .with_context(|| format!("creating {}", out.display()))?;
                let mut writer = std::io::BufWriter::new(file);
                let n = entraflow_audit::export_jsonl(&store, log.as_deref(), &mut writer).await?;
                writer
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("writing {}", out.display()))?;
                eprintln!("{n} events written to {}", out.display());
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Prove {
                index,
                old_size,
                log,
                keys,
            } => {
                let store = AnyStore::open_existing(&url).await?;
                let verifiers = verifiers(&globals.data_dir, &keys)?;
                let json = match (index, old_size) {
                    (Some(index), _) => serde_json::to_string_pretty(
                        &entraflow_audit::prove_inclusion(
                            &store,
                            log.as_deref(),
                            index,
                            &verifiers,
                        )
                        .await?,
                    )?,
                    (None, Some(old)) => serde_json::to_string_pretty(
                        &entraflow_audit::prove_consistency(
                            &store,
                            log.as_deref(),
                            old,
                            &verifiers,
                        )
                        .await?,
                    )?,
                    (None, None) => bail!("give --index N or --old-size N"),
                };
                out!("{json}");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// The verifier keys: each `--key` (a key, or a file holding one), else the data
/// directory's `audit-key.pub`.
fn verifiers(data_dir: &Path, keys: &[String]) -> anyhow::Result<Vec<NoteVerifier>> {
    let mut texts = Vec::new();
    if keys.is_empty() {
        let path = data_dir.join(VERIFIER_KEY_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no verifier key: {} cannot be read; pass the key the security team keeps with --key",
                path.display()
            )
        })?;
        texts.push(text);
    }
    for key in keys {
        if key.contains('+') && !Path::new(key).exists() {
            texts.push(key.clone());
        } else {
            texts.push(
                std::fs::read_to_string(key).with_context(|| format!("reading key file {key}"))?,
            );
        }
    }
    let mut out = Vec::new();
    for text in texts {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            out.push(NoteVerifier::parse(line)?);
        }
    }
    Ok(out)
}

async fn verify(
    url: &StoreUrl,
    globals: &Globals,
    checkpoints: Vec<PathBuf>,
    keys: &[String],
    from_jsonl: Option<PathBuf>,
    log: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut options = VerifyOptions {
        verifiers: verifiers(&globals.data_dir, keys)?,
        log_id: log,
        ..VerifyOptions::default()
    };
    for path in checkpoints {
        let note = std::fs::read_to_string(&path)
            .with_context(|| format!("reading checkpoint {}", path.display()))?;
        options.external.push(ExternalCheckpoint {
            source: path.display().to_string(),
            note,
        });
    }
    let (report, what) = match &from_jsonl {
        Some(path) => (
            entraflow_audit::verify_jsonl(path, &options)?,
            path.display().to_string(),
        ),
        None => {
            let store = AnyStore::open_existing(url).await?;
            (
                entraflow_audit::verify_store(&store, &options).await?,
                url.to_string(),
            )
        }
    };
    match globals.output {
        Output::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print_report(&report, &what)?,
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(report: &VerifyReport, what: &str) -> std::io::Result<()> {
    for chain in &report.chains {
        out!(
            "chain {}: {} events, root {}, {} signed checkpoint(s) checked",
            chain.log_id,
            chain.size,
            chain.root,
            chain.checkpoints_checked
        );
        if report.is_ok() && chain.signed_size < chain.size {
            out!(
                "  note: events #{} to #{} are not yet covered by a signed checkpoint (run `entraflow audit checkpoint`)",
                chain.signed_size,
                chain.size - 1
            );
        }
    }
    if report.is_ok() {
        out!("OK: {what} verifies");
        for blind in &report.cannot_detect {
            out!("  cannot detect: {blind}");
        }
        return Ok(());
    }
    let mut problems = report.problems.iter();
    if let Some(first) = problems.next() {
        out!("FAILED: {} problem(s) in {what}", report.problem_count);
        out!("first: {first}");
    }
    for problem in problems.by_ref().take(19) {
        out!("  also: {problem}");
    }
    let shown = report.problems.len().min(20);
    if report.problem_count > shown {
        out!("  ... and {} more", report.problem_count - shown);
    }
    Ok(())
}

async fn query(
    store: &AnyStore,
    filter: Filter,
    limit: usize,
    follow: bool,
    output: Output,
) -> anyhow::Result<()> {
    let page = 1000;
    let mut stdout = std::io::stdout().lock();
    if output == Output::Table {
        writeln!(
            stdout,
            "{:<24} {:<16} {:<5} {:>3} {:<36} {:<12} {:>10} RESOURCE",
            "TIME", "TYPE", "DEC", "ST", "PRINCIPAL", "ACTION", "BYTES"
        )?;
    }
    // Where following picks up: each chain's size before the first query.
    let mut next: std::collections::BTreeMap<String, u64> = store
        .heads()
        .await?
        .into_iter()
        .map(|h| (h.log_id, h.size))
        .collect();
    let mut printed = 0usize;
    let mut cursor: Option<Cursor> = None;
    'history: loop {
        let rows = store.query(&filter, cursor.as_ref(), page).await?;
        let Some(last) = rows.last() else { break };
        cursor = Some(Cursor::after(last));
        for row in &rows {
            print_row(&mut stdout, &row.record, output)?;
            let n = next.entry(row.log_id.clone()).or_default();
            *n = (*n).max(row.seq + 1);
            printed += 1;
            if limit > 0 && printed >= limit {
                break 'history;
            }
        }
    }
    stdout.flush()?;
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for head in store.heads().await? {
            let from = next.entry(head.log_id.clone()).or_default();
            if head.size <= *from {
                continue;
            }
            let mut f = filter.clone();
            f.log_id = Some(head.log_id.clone());
            f.after_seq = from.checked_sub(1);
            let mut last_seen = *from;
            loop {
                let rows = store.query(&f, None, page).await?;
                let Some(last) = rows.iter().map(|r| r.seq).max() else {
                    break;
                };
                for row in &rows {
                    print_row(&mut stdout, &row.record, output)?;
                }
                last_seen = last_seen.max(last + 1);
                f.after_seq = Some(last);
            }
            *from = head.size.max(last_seen);
        }
        stdout.flush()?;
    }
}

fn print_row(out: &mut impl Write, record: &str, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        writeln!(out, "{record}")?;
        return Ok(());
    }
    let Ok(r) = Record::parse(record.as_bytes()) else {
        writeln!(out, "(unreadable record) {record}")?;
        return Ok(());
    };
    let e = &r.event;
    let action = e
        .action
        .as_deref()
        .map(|a| a.rsplitn(3, '/').take(2).collect::<Vec<_>>())
        .map(|parts| parts.into_iter().rev().collect::<Vec<_>>().join("/"))
        .unwrap_or_else(|| "-".into());
    let resource = match e.resource.as_deref() {
        Some(res) => match container_and_blob(res) {
            Some((c, Some(b))) => format!("{c}/{b}"),
            Some((c, None)) => format!("{c}/"),
            None => res.to_owned(),
        },
        None => "-".into(),
    };
    writeln!(
        out,
        "{:<24} {:<16} {:<5} {:>3} {:<36} {:<12} {:>10} {}",
        e.time.to_string(),
        e.event_type.as_str(),
        e.decision.map_or("-", |d| d.as_str()),
        e.status.map_or_else(|| "-".into(), |s| s.to_string()),
        e.principal.as_ref().map_or("-", |p| p.label()),
        action,
        e.bytes.map_or_else(|| "-".into(), |b| b.to_string()),
        resource
    )?;
    Ok(())
}

async fn summary(store: &AnyStore, filter: Filter, output: Output) -> anyhow::Result<()> {
    let mut summarizer = Summarizer::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let rows = store.query(&filter, cursor.as_ref(), 5000).await?;
        let Some(last) = rows.last() else { break };
        cursor = Some(Cursor::after(last));
        for row in &rows {
            if let Ok(record) = Record::parse(row.record.as_bytes()) {
                summarizer.add(&record);
            }
        }
    }
    let summaries = summarizer.finish();
    if output == Output::Json {
        out!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(());
    }
    if summaries.is_empty() {
        out!("no events match");
    }
    for s in &summaries {
        let who = match (&s.name, &s.appid) {
            (Some(name), Some(app)) => format!("{} ({name}, app {app})", s.principal),
            (Some(name), None) => format!("{} ({name})", s.principal),
            (None, Some(app)) => format!("{} (app {app})", s.principal),
            (None, None) => s.principal.clone(),
        };
        out!("{who}");
        out!(
            "  {} events, {} denied, first {}, last {}",
            s.events,
            s.denials,
            s.first,
            s.last
        );
        out!(
            "  read {} bytes, wrote {} bytes",
            s.bytes_read,
            s.bytes_written
        );
        for (verb, map) in [("read ", &s.read), ("wrote", &s.written)] {
            for (prefix, access) in map {
                out!(
                    "    {verb} {prefix:<40} {:>8} requests {:>14} bytes",
                    access.requests,
                    access.bytes
                );
            }
        }
        for (database, q) in &s.queried {
            out!(
                "    SQL   {:<40} {:>8} statements {:>12} rows",
                format!("database {database}"),
                q.statements,
                q.rows
            );
        }
    }
    Ok(())
}

async fn lineage(
    store: &AnyStore,
    globals: &Globals,
    blob: &str,
    etag: Option<&str>,
    bundle: Option<PathBuf>,
    keys: &[String],
) -> anyhow::Result<ExitCode> {
    let target = BlobTarget::parse(blob)?;
    let found = entraflow_audit::lineage(store, &target, etag).await?;
    let written = match &bundle {
        None => None,
        Some(path) => {
            let verifiers = verifiers(&globals.data_dir, keys)?;
            // The signing key signs a checkpoint when none covers the events yet;
            // without it (a store read from elsewhere) only stored ones serve.
            let signer = globals
                .data_dir
                .join(SIGNING_KEY_FILE)
                .exists()
                .then(|| CheckpointSigner::load_or_create(&globals.data_dir, DEFAULT_KEY_NAME))
                .transpose()?;
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
            let written = entraflow_audit::write_bundle(
                store,
                &found,
                signer.as_ref(),
                &verifiers,
                &mut writer,
            )
            .await?;
            writer
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Some(written)
        }
    };
    match globals.output {
        Output::Json => out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "lineage": found.lineage,
                "later_reads": found.later_reads,
                "bundle": written.as_ref().map(|w| serde_json::json!({
                    "file": bundle.as_ref().map(|p| p.display().to_string()),
                    "events": w.events,
                    "bytes": w.bytes,
                    "new_checkpoints": w.new_checkpoints,
                    "checkpoints": w.checkpoints,
                })),
            }))?
        ),
        Output::Table => {
            print_lineage(&found.lineage)?;
            if found.later_reads > 0 {
                out!(
                    "{} later read request(s) of the run by the same identity began after the write: not inputs of this version",
                    found.later_reads
                );
            }
            if let (Some(w), Some(path)) = (&written, &bundle) {
                let heads: Vec<String> = w
                    .checkpoints
                    .iter()
                    .map(|c| {
                        format!(
                            "{} at {} events (key {}+{})",
                            c.log, c.size, c.signer, c.key_id
                        )
                    })
                    .collect();
                out!(
                    "bundle {}: {} events with inclusion proofs against the signed checkpoints of {}{}; check it with `entraflow audit verify --bundle {}`",
                    path.display(),
                    w.events,
                    heads.join(", "),
                    if w.new_checkpoints > 0 {
                        format!(" ({} signed now)", w.new_checkpoints)
                    } else {
                        String::new()
                    },
                    path.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn who(principal: Option<&entraflow_audit::Principal>) -> String {
    let Some(p) = principal else {
        return "an unknown principal".into();
    };
    match (&p.name, &p.appid) {
        (Some(name), Some(app)) => format!("{} ({name}, app {app})", p.label()),
        (Some(name), None) => format!("{} ({name})", p.label()),
        (None, Some(app)) => format!("{} (app {app})", p.label()),
        (None, None) => p.label().to_owned(),
    }
}

fn print_write(label: &str, w: &entraflow_audit::lineage::Write) -> std::io::Result<()> {
    out!(
        "{label:<9} {} made by {} at {} (event #{} of {})",
        w.etag.as_deref().unwrap_or("-"),
        w.operation.as_deref().unwrap_or("an unrecorded operation"),
        w.time,
        w.event.seq,
        w.event.log
    );
    let mut facts = Vec::new();
    if let Some(md5) = &w.content_md5 {
        facts.push(format!("content MD5 {md5}"));
    }
    if let Some(bytes) = w.bytes {
        facts.push(format!("{bytes} bytes"));
    }
    if let Some(source) = &w.copy_source {
        facts.push(format!(
            "copied from {source} version {}",
            w.copy_source_etag.as_deref().unwrap_or("-")
        ));
    }
    if !facts.is_empty() {
        out!("{:<9} {}", "", facts.join(", "));
    }
    Ok(())
}

fn print_lineage(l: &entraflow_audit::Lineage) -> std::io::Result<()> {
    out!("blob      {}", l.blob);
    print_write("version", &l.version)?;
    if l.content.is_some() {
        out!(
            "{:<9} set by {}; its content:",
            "",
            who(l.version.principal.as_ref())
        );
    }
    if let Some(content) = &l.content {
        print_write("content", content)?;
    }
    let source = l.source();
    out!(
        "written by {} in run {}{}",
        who(l.principal.as_ref()),
        l.run_id.as_deref().unwrap_or("(none)"),
        source
            .token_uti
            .as_deref()
            .map(|u| format!(", token uti {u}"))
            .unwrap_or_default()
    );
    if let Some(id) = &source.assignment_id {
        out!(
            "{:<9} allowed by {} ({id})",
            "",
            source.role_name.as_deref().unwrap_or("a role")
        );
    }
    out!(
        "read in run {} before the write: {} blob version(s), {} request(s), {} bytes",
        l.run_id.as_deref().unwrap_or("(none)"),
        l.reads.len(),
        l.read_requests(),
        l.read_bytes()
    );
    if !l.reads.is_empty() {
        let width = l
            .reads
            .iter()
            .map(|r| r.blob.len())
            .max()
            .unwrap_or(4)
            .max(4);
        out!(
            "  {:<width$}  {:<24} {:>8} {:>12}  ROLE",
            "BLOB",
            "ETAG",
            "REQUESTS",
            "BYTES"
        );
        for r in &l.reads {
            let roles: Vec<&str> = r
                .assignments
                .iter()
                .filter_map(|id| {
                    l.grants
                        .iter()
                        .find(|g| &g.assignment_id == id)
                        .and_then(|g| g.role_name.as_deref())
                })
                .collect();
            out!(
                "  {:<width$}  {:<24} {:>8} {:>12}  {}",
                r.blob,
                r.etag.as_deref().unwrap_or("(not recorded)"),
                r.requests,
                r.bytes,
                if roles.is_empty() {
                    "-".to_owned()
                } else {
                    roles.join(", ")
                }
            );
        }
    }
    if !l.grants.is_empty() {
        out!("role assignments that allowed these reads:");
        for g in &l.grants {
            out!(
                "  {}  {}  ({} read request(s))",
                g.role_name.as_deref().unwrap_or("(role not recorded)"),
                g.assignment_id,
                g.reads
            );
            for c in &g.changes {
                out!(
                    "    {} {} by {}{}",
                    c.time,
                    c.operation.as_deref().unwrap_or("changed"),
                    c.actor.as_deref().unwrap_or("an unknown actor"),
                    c.detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    for note in &l.notes {
        out!("note: {note}");
    }
    Ok(())
}

/// `audit verify --bundle`: no store, no data directory needed.
fn verify_bundle(path: &Path, globals: &Globals, keys: &[String]) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading bundle {}", path.display()))?;
    let trusted = if keys.is_empty() && !globals.data_dir.join(VERIFIER_KEY_FILE).exists() {
        Vec::new()
    } else {
        verifiers(&globals.data_dir, keys)?
    };
    let report = entraflow_audit::verify_bundle(&bytes, &trusted)
        .with_context(|| format!("{}", path.display()))?;
    match globals.output {
        Output::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => {
            out!(
                "bundle {}: {}, made {}, {} events",
                path.display(),
                entraflow_audit::BUNDLE_FORMAT,
                report.created.as_deref().unwrap_or("(no date)"),
                report.events
            );
            for c in &report.checkpoints {
                out!(
                    "checkpoint {} at {} events, root {}, signed by {}",
                    c.log,
                    c.size,
                    c.root,
                    c.signed_by
                );
            }
            if report.is_ok() {
                out!(
                    "OK: all {} events are in their chains' signed checkpoints{}, and the lineage follows from them",
                    report.proven,
                    if report.key_pinned {
                        ""
                    } else {
                        " (checked with the keys the bundle carries)"
                    }
                );
                if let Some(lineage) = &report.lineage {
                    print_lineage(lineage)?;
                }
                for blind in &report.cannot_detect {
                    out!("  cannot detect: {blind}");
                }
            } else {
                let mut problems = report.problems.iter();
                if let Some(first) = problems.next() {
                    out!(
                        "FAILED: {} problem(s) in bundle {}",
                        report.problem_count,
                        path.display()
                    );
                    out!("first: {first}");
                }
                for problem in problems.by_ref().take(19) {
                    out!("  also: {problem}");
                }
                let shown = report.problems.len().min(20);
                if report.problem_count > shown {
                    out!("  ... and {} more", report.problem_count - shown);
                }
            }
        }
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
