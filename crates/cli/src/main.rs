//! `entraflow`: the one binary. It turns flags into typed arguments and calls the
//! library crates; it holds no logic of its own and is the only user of `anyhow`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod ad;
mod admin_log;
mod audit;
mod authority;
mod console;
mod datadir;
mod demo;
mod gate;
mod output;
mod role;
mod sql;
mod suggest;
mod token;

/// Microsoft Entra ID identity for TensorFlow data pipelines.
///
/// Jobs get short-lived Entra tokens at runtime; every read and write of training
/// data is authorized against resource-scoped roles and recorded in a tamper-evident
/// audit log. Run `entraflow up` for the local authority and gate, then point any
/// Azure SDK, TensorFlow `az://` path or `entraflow token` at them.
#[derive(Debug, Parser)]
#[command(
    name = "entraflow",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// Where state lives (authority database, keys, CA, audit log).
    /// Defaults to $ENTRAFLOW_DATA_DIR, else ~/.entraflow.
    #[arg(long, global = true, env = "ENTRAFLOW_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Output format of commands that print records.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = output::Format::Table)]
    output: output::Format,

    /// Only errors on stderr: no warnings, notes or log lines (as az's flag).
    #[arg(long, global = true, conflicts_with_all = ["verbose", "debug"])]
    only_show_errors: bool,

    /// Log what the command does (info level) unless ENTRAFLOW_LOG/RUST_LOG say otherwise.
    #[arg(long, global = true)]
    verbose: bool,

    /// Log in detail (debug level) unless ENTRAFLOW_LOG/RUST_LOG say otherwise.
    #[arg(long, global = true)]
    debug: bool,

    /// JMESPath query applied to the record before it is printed (as az's --query).
    #[arg(long, global = true, value_name = "JMESPATH")]
    query: Option<String>,

    #[command(subcommand)]
    command: Command,
}

/// Which printing path a command takes: its own table, or the structured
/// record that `output::emit` formats (json, tsv, a queried table, nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local Entra ID-compatible authority and administer its tenant.
    Authority(authority::AuthorityArgs),
    /// Manage apps, service principals, users, groups, managed identities (like `az ad`).
    Ad(ad::AdArgs),
    /// Manage Azure RBAC role assignments and definitions (like `az role`).
    Role(role::RoleArgs),
    /// The gate: Azure Blob REST with Entra ID tokens, Azure RBAC and auditing.
    #[command(subcommand)]
    Gate(gate::GateCommand),
    /// The SQL gate: PostgreSQL with an Entra access token as the password.
    #[command(subcommand, name = "sql-gate")]
    SqlGate(sql::SqlGateCommand),
    /// Map Entra principals to PostgreSQL roles (like pgaadauth_create_principal).
    Sql(sql::SqlArgs),
    /// The security team's web console: runs, principals, timeline and chain
    /// integrity, behind Entra sign-in and the "Audit Log Reader" role.
    #[command(subcommand)]
    Console(console::ConsoleCommand),
    /// Create a data directory: its tenant and role store (`up` and `authority
    /// serve` do this too; every other command needs an existing one).
    Init,
    /// Run the authority, the gate and the console together on one data
    /// directory; writes <data-dir>/env with everything a client needs.
    Up(gate::UpArgs),
    /// The tamper-evident audit log: verify, query, summarize, export, prove, and
    /// a model's lineage with its proof bundle.
    Audit(audit::AuditArgs),
    /// The main job: an identity-enforced TensorFlow training run, end to end, with the
    /// security team's audit view and a run report.
    Demo(demo::DemoArgs),
    /// Tokens for jobs and people: token, login, whoami, doctor.
    #[command(flatten)]
    Identity(token::IdentityCommand),
}

/// What every command receives besides its own arguments.
#[derive(Debug, Clone)]
pub(crate) struct Globals {
    pub(crate) data_dir: PathBuf,
    pub(crate) output: Output,
    pub(crate) format: output::Format,
    pub(crate) query: Option<String>,
    /// `--only-show-errors`: warnings and notes stay off stderr.
    pub(crate) only_show_errors: bool,
}

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    // The demo tells its own story; the servers it hosts only speak up about problems.
    let default_level = if cli.debug {
        "debug"
    } else if cli.verbose {
        "info"
    } else if cli.only_show_errors {
        "error"
    } else if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ENTRAFLOW_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(query) = &cli.query
        && let Err(err) = output::compile(query)
    {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    let globals = Globals {
        data_dir: cli
            .data_dir
            .unwrap_or_else(entraflow_core::fsutil::default_data_dir),
        output: if cli.output == output::Format::Table && cli.query.is_none() {
            Output::Table
        } else {
            Output::Json
        },
        format: cli.output,
        query: cli.query,
        only_show_errors: cli.only_show_errors,
    };
    match run(cli.command, globals) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, globals: Globals) -> anyhow::Result<ExitCode> {
    // Only commands that create a data directory may run on one without a tenant.
    match &command {
        Command::Ad(_) => datadir::require_tenant(&globals.data_dir)?,
        // A role store may serve a gate whose principals live in another
        // directory; naming one by --assignee still needs a tenant here.
        Command::Role(_) => datadir::require_dir(&globals.data_dir)?,
        Command::Authority(args) if !args.serves() => datadir::require_tenant(&globals.data_dir)?,
        Command::Gate(_) => datadir::require_dir(&globals.data_dir)?,
        Command::Console(_) => datadir::require_dir(&globals.data_dir)?,
        Command::Audit(args) => {
            // Its reports print themselves; refuse what they would ignore.
            if globals.query.is_some()
                || !matches!(globals.format, output::Format::Json | output::Format::Table)
            {
                anyhow::bail!("audit commands print -o json or -o table, without --query");
            }
            // A proof bundle is verified anywhere, with no data directory.
            if args.needs_data_dir() {
                datadir::require_dir(&globals.data_dir)?
            }
        }
        _ => {}
    }
    match command {
        Command::Init => {
            let tenant = datadir::init(&globals.data_dir)?;
            println!(
                "data directory {} ready: tenant {tenant}",
                globals.data_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Authority(args) => authority::run(args, &globals),
        Command::Ad(args) => ad::run(args, &globals),
        Command::Role(args) => role::run(args, &globals),
        Command::Gate(command) => gate::run(command, &globals),
        Command::SqlGate(command) => sql::serve(command, &globals),
        Command::Sql(args) => sql::run(args, &globals),
        Command::Console(command) => console::run(command, &globals),
        Command::Up(args) => gate::up(args, &globals),
        Command::Audit(args) => audit::run(args, &globals),
        Command::Demo(args) => demo::run_demo(args, &globals),
        Command::Identity(command) => token::run(command, &globals),
    }
}

/// `entraflow ... | head` closes stdout early; Rust's `println!` then panics. Exit as
/// a shell would for SIGPIPE (128 + 13) instead of printing a panic.
fn exit_quietly_on_broken_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
}
