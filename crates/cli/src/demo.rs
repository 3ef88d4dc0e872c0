//! `entraflow demo`: the identity-enforced training run, end to end.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use entraflow_local::demo::{DemoOptions, run};

use crate::Globals;

/// Options of the demo; the defaults tell the whole story in a few minutes.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// TensorFlow workers; more than one trains with MultiWorkerMirroredStrategy,
    /// each worker its own process with its own token exchange.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Training epochs: enough that training outlives several access tokens.
    #[arg(long, default_value_t = 10)]
    epochs: u32,
    /// TFRecord shards to stage.
    #[arg(long, default_value_t = 8)]
    shards: usize,
    /// Stage only this many examples (0: all 1,797 digits).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Access-token lifetime in seconds: short, so tokens are refreshed mid-training.
    #[arg(long, default_value_t = 6)]
    token_lifetime: i64,
    /// Python with TensorFlow and the entraflow package (default: $VIRTUAL_ENV, else the repository's .venv).
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Directory holding train.py and stage_digits.py (default: the repository's examples/).
    #[arg(long, value_name = "DIR")]
    examples: Option<PathBuf>,
    /// PostgreSQL (an admin login URL, postgres://user@host:port/db) for the shard
    /// manifest, reached by the jobs through the SQL gate; without it, Blob only.
    #[arg(long, value_name = "URL", env = "ENTRAFLOW_SQL_BACKEND")]
    sql_backend: Option<String>,
}

/// The repository this binary was built from, for its `.venv` and `examples/`.
fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn run_demo(args: DemoArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let python = args.python.unwrap_or_else(|| {
        std::env::var_os("VIRTUAL_ENV")
            .map(|venv| PathBuf::from(venv).join("bin/python"))
            .unwrap_or_else(|| repository().join(".venv/bin/python"))
    });
    let options = DemoOptions {
        data_dir: globals.data_dir.clone(),
        workers: args.workers,
        epochs: args.epochs,
        shards: args.shards,
        limit: args.limit,
        token_lifetime_secs: args.token_lifetime,
        python,
        examples: args
            .examples
            .unwrap_or_else(|| repository().join("examples")),
        entraflow: std::env::current_exe().context("cannot find the entraflow binary")?,
        sql_backend: args.sql_backend,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcome = runtime.block_on(run(options))?;
    println!(
        "\ndone: run {} trained to {:.1} % accuracy; {} audited requests; report {}",
        outcome.run_id,
        outcome.accuracy * 100.0,
        outcome.events.len(),
        outcome.report.display()
    );
    Ok(ExitCode::SUCCESS)
}
