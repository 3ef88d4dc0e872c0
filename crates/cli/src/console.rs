//! `entraflow console serve`: the security team's web console on the data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use entraflow_console::{Client, Console, ConsoleConfig};

use crate::Globals;

/// The security team's web console: the audit log in a browser, behind Entra sign-in.
#[derive(Debug, Subcommand)]
pub(crate) enum ConsoleCommand {
    /// Serve until Ctrl-C/SIGTERM. Writes <data-dir>/console.env with
    /// ENTRAFLOW_CONSOLE_URL once listening. Without --client-id it registers
    /// itself in the data directory's local tenant (redirect URI
    /// <url>/auth/callback, a fresh client secret kept only in memory).
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// HTTPS port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The Entra authority people sign in with (default AZURE_AUTHORITY_HOST from
    /// <data-dir>/env; https://login.microsoftonline.com for Entra ID).
    #[arg(long, value_name = "URL")]
    authority_host: Option<String>,
    /// The tenant id (default AZURE_TENANT_ID from <data-dir>/env).
    #[arg(long, value_name = "ID")]
    tenant: Option<String>,
    /// The console's app registration (a web app with redirect URIs
    /// <public url>/auth/callback and <public url>/signed-out); without it the console registers itself in
    /// the local tenant.
    #[arg(long, value_name = "APP_ID", requires = "client_secret_file")]
    client_id: Option<String>,
    /// A file holding that app's client secret (never given on the command line).
    #[arg(long, value_name = "FILE", requires = "client_id")]
    client_secret_file: Option<PathBuf>,
    /// The origin browsers reach the console at, if not https://127.0.0.1:<port>
    /// (the redirect URI is built from it).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// The audit store: sqlite:///path/audit.db (default <data-dir>/audit.db) or
    /// postgres://user@host:port/db.
    #[arg(long, value_name = "URL", env = "ENTRAFLOW_AUDIT_STORE")]
    audit_store: Option<String>,
    /// The scope reading the audit log is authorized at (an "Audit Log Reader"
    /// assignment there or above grants it).
    #[arg(long, value_name = "SCOPE")]
    audit_scope: Option<String>,
    /// A checkpoint verifier key (name+id+key) trusted besides <data-dir>/audit-key.pub. Repeatable.
    #[arg(long = "key", value_name = "KEY")]
    keys: Vec<String>,
    /// Hours a session lasts after sign-in.
    #[arg(long, default_value_t = 8)]
    session_hours: u64,
}

pub(crate) fn run(command: ConsoleCommand, globals: &Globals) -> anyhow::Result<ExitCode> {
    let ConsoleCommand::Serve(args) = command;
    let env =
        entraflow_gate::read_env_file(&globals.data_dir.join(entraflow_gate::AUTHORITY_ENV_FILE));
    let from_env = |name: &str| env.get(name).cloned();
    let authority_host = args
        .authority_host
        .or_else(|| from_env(entraflow_core::env::AZURE_AUTHORITY_HOST))
        .context("no authority to sign in with: start `entraflow up` or `entraflow authority serve` on this data directory, or pass --authority-host and --tenant")?;
    let tenant = args
        .tenant
        .or_else(|| from_env(entraflow_core::env::AZURE_TENANT_ID))
        .context("no tenant: pass --tenant <id>")?;
    let mut config = ConsoleConfig::new(&globals.data_dir, authority_host, tenant);
    config.bind = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    if let (Some(client_id), Some(file)) = (args.client_id, args.client_secret_file) {
        let secret = std::fs::read_to_string(&file)
            .with_context(|| format!("reading the client secret from {}", file.display()))?;
        config.sign_in.client = Client::Registered {
            client_id,
            client_secret: entraflow_core::Secret::new(secret.trim()),
        };
    }
    config.public_url = args.public_url;
    if let Some(store) = crate::authority::audit_store(args.audit_store.as_deref())? {
        config.audit_store = store;
    }
    if let Some(scope) = args.audit_scope {
        let parsed = entraflow_rbac::Scope::parse(&scope)
            .with_context(|| format!("--audit-scope {scope}"))?;
        parsed
            .check_names()
            .with_context(|| format!("--audit-scope {scope}"))?;
        config.audit_scope = parsed;
    }
    config.verifier_keys = args.keys;
    config.session_lifetime = std::time::Duration::from_secs(args.session_hours.max(1) * 3600);

    let mut lock = crate::datadir::ServerLock::acquire(&globals.data_dir, "console")?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let console = Console::bind(config).await?;
        lock.describe(&[("console", console.url())])?;
        let env_file = console.write_env_file()?;
        println!(
            "console ready: {} (client {}, redirect URI {})",
            console.url(),
            console.client_id(),
            console.redirect_uri()
        );
        println!("client settings: source {}", env_file.display());
        console.run(crate::gate::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
