//! `entraflow gate serve`: the Blob-compatible gateway on the data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use entraflow_gate::{Backend, Gate, GateConfig};

use crate::Globals;

/// The gate: Azure Blob REST with Entra ID tokens, Azure RBAC and auditing.
#[derive(Debug, Subcommand)]
pub(crate) enum GateCommand {
    /// Serve until Ctrl-C/SIGTERM. Writes <data-dir>/gate.env with
    /// ENTRAFLOW_BLOB_ENDPOINT, ENTRAFLOW_STORAGE_SCOPE, ENTRAFLOW_ADMIN_ENDPOINT
    /// and ENTRAFLOW_GATE_HEALTH_URL once listening.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on: 127.0.0.1 (this machine only), or 0.0.0.0 / a
    /// pod's address where clients on other hosts reach the gate (a Kubernetes
    /// Service); give their name with --tls-name so the certificate matches.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// A DNS name the gate's certificate carries besides localhost, 127.0.0.1
    /// and ::1 (e.g. entraflow-gate.ml.svc); repeat for several.
    #[arg(long = "tls-name", value_name = "NAME")]
    tls_names: Vec<String>,
    /// Storage account name the gate stands for.
    #[arg(long, default_value = entraflow_gate::DEFAULT_ACCOUNT)]
    account: String,
    /// Subscription id of the account's Azure scope.
    #[arg(long, default_value = entraflow_gate::DEFAULT_SUBSCRIPTION)]
    subscription: String,
    /// Resource group of the account's Azure scope.
    #[arg(long, default_value = entraflow_gate::DEFAULT_RESOURCE_GROUP)]
    resource_group: String,
    /// Directory holding the blobs (default <data-dir>/blobs).
    #[arg(long, value_name = "DIR", conflicts_with = "backend")]
    root: Option<PathBuf>,
    /// object_store URL of the backend instead (az://container, file:///path),
    /// with credentials from the environment as object_store reads them.
    #[arg(long, value_name = "URL")]
    backend: Option<String>,
    /// Authority host whose tokens are trusted (default AZURE_AUTHORITY_HOST from <data-dir>/env).
    #[arg(long, value_name = "URL")]
    trusted_authority: Option<String>,
    /// Tenant whose tokens are accepted; repeat for several (default AZURE_TENANT_ID from <data-dir>/env).
    #[arg(long = "tenant", value_name = "ID")]
    tenants: Vec<String>,
    /// Clock skew tolerated on token exp/nbf, in seconds.
    #[arg(long, default_value_t = 300)]
    clock_skew: u64,
    /// The audit store: sqlite:///path/audit.db (default <data-dir>/audit.db) or
    /// postgres://user@host:port/db, which several gates can share.
    #[arg(long, value_name = "URL", env = "ENTRAFLOW_AUDIT_STORE")]
    audit_store: Option<String>,
    /// This gate's name when several share one audit store: its chain is
    /// entraflow/gate/<NAME>, so instances never contend on one head.
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// Where the plain-HTTP health and metrics listener binds (GET /livez,
    /// /readyz, /metrics): ADDR:PORT, or a PORT on 127.0.0.1, or `off`. Plain
    /// HTTP, as pod-local probe ports are; bind a non-loopback address only where
    /// the network is the pod's.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0", value_parser = parse_health_bind)]
    health_bind: HealthBind,
}

/// `--health-bind`: an address, or none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HealthBind(Option<std::net::SocketAddr>);

fn parse_health_bind(text: &str) -> Result<HealthBind, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(HealthBind(None));
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(HealthBind(Some(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            port,
        )))));
    }
    text.parse()
        .map(|addr| HealthBind(Some(addr)))
        .map_err(|_| {
            format!("'{text}' is not ADDR:PORT (127.0.0.1:9090, [::1]:9090), a port, or off")
        })
}

/// `entraflow up`: the authority and the gate on one data directory.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Authority HTTPS port (AZURE_AUTHORITY_HOST).
    #[arg(long, default_value_t = 8443)]
    authority_port: u16,
    /// Managed-identity (IMDS-style) port.
    #[arg(long, default_value_t = 8089)]
    imds_port: u16,
    /// Gate HTTPS port (0 picks a free one).
    #[arg(long, default_value_t = 10443)]
    gate_port: u16,
    /// Storage account name the gate stands for.
    #[arg(long, default_value = entraflow_gate::DEFAULT_ACCOUNT)]
    account: String,
    /// Also run the SQL gate in front of this PostgreSQL (postgres://host:port).
    #[arg(long, value_name = "URL", env = "ENTRAFLOW_SQL_BACKEND")]
    sql_backend: Option<String>,
    /// SQL gate port (0 picks a free one).
    #[arg(long, default_value_t = 15432)]
    sql_port: u16,
    /// The audit store all three servers record to: sqlite:///path/audit.db
    /// (default <data-dir>/audit.db) or postgres://user@host:port/db.
    #[arg(long, value_name = "URL", env = "ENTRAFLOW_AUDIT_STORE")]
    audit_store: Option<String>,
    /// The gate's plain-HTTP health and metrics listener (GET /livez, /readyz,
    /// /metrics): ADDR:PORT, a PORT on 127.0.0.1, or `off`; its URL goes into
    /// the env files as ENTRAFLOW_GATE_HEALTH_URL.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0", value_parser = parse_health_bind)]
    health_bind: HealthBind,
    /// The security team's console (HTTPS on 127.0.0.1; 0 picks a free port):
    /// its URL goes into the env files as ENTRAFLOW_CONSOLE_URL.
    #[arg(long, default_value_t = 0, conflicts_with = "no_console")]
    console_port: u16,
    /// Do not start the console.
    #[arg(long)]
    no_console: bool,
}

/// Starts the authority, then the gate trusting it (`entraflow_local::LocalStack`),
/// writes one `<data-dir>/env` with everything a client needs, and stops both on
/// Ctrl-C/SIGTERM.
pub(crate) fn up(args: UpArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    crate::datadir::init(&globals.data_dir)?;
    let mut authority_lock = crate::datadir::ServerLock::acquire(&globals.data_dir, "authority")?;
    let mut gate_lock = crate::datadir::ServerLock::acquire(&globals.data_dir, "gate")?;
    let mut console_lock = if args.no_console {
        None
    } else {
        Some(crate::datadir::ServerLock::acquire(
            &globals.data_dir,
            "console",
        )?)
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut options = entraflow_local::StackOptions::new(&globals.data_dir);
        options.console_port = (!args.no_console).then_some(args.console_port);
        options.authority_port = args.authority_port;
        options.imds_port = args.imds_port;
        options.gate_port = args.gate_port;
        options.account = args.account;
        options.sql_backend = args.sql_backend;
        options.sql_port = args.sql_port;
        options.health_bind = args.health_bind.0;
        options.audit_store = crate::authority::audit_store(args.audit_store.as_deref())?;
        let stack = entraflow_local::LocalStack::start(options)
            .await
            .context("starting the authority and the gate")?;
        authority_lock.describe(&[
            ("authority", &stack.authority_host),
            ("imds", &stack.imds_endpoint),
        ])?;
        match &stack.health_url {
            Some(health) => {
                gate_lock.describe(&[("gate", &stack.blob_endpoint), ("health", health)])?
            }
            None => gate_lock.describe(&[("gate", &stack.blob_endpoint)])?,
        }
        println!(
            "authority ready: {} tenant {}",
            stack.authority_host, stack.tenant_id
        );
        println!("gate ready: {}", stack.blob_endpoint);
        if let Some(health) = &stack.health_url {
            println!("gate health: {health}/readyz (metrics: {health}/metrics)");
        }
        if let (Some(url), Some(lock)) = (&stack.console_url, console_lock.as_mut()) {
            lock.describe(&[("console", url)])?;
            println!(
                "console ready: {url} (sign in with Entra; needs the role \"{}\")",
                entraflow_console::READER_ROLE
            );
        }
        if let Some(addr) = stack.sql_addr {
            println!(
                "SQL gate ready: {addr} (source {})",
                globals
                    .data_dir
                    .join(entraflow_gate::sql::SQL_GATE_ENV_FILE)
                    .display()
            );
        }
        println!("client settings: source {}", stack.env_file().display());
        shutdown_signal().await;
        stack.stop().await.context("stopping")?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(command: GateCommand, globals: &Globals) -> anyhow::Result<ExitCode> {
    match command {
        GateCommand::Serve(args) => serve(args, globals),
    }
}

fn serve(args: ServeArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let mut config = GateConfig::new(&globals.data_dir);
    config.bind = std::net::SocketAddr::new(args.bind, args.port);
    config.tls_names = args.tls_names;
    config.account = args.account;
    config.subscription = args.subscription;
    config.resource_group = args.resource_group;
    if let Some(root) = args.root {
        config.backend = Backend::Local(root);
    }
    if let Some(url) = args.backend {
        config.backend = Backend::Url(url);
    }
    if let Some(host) = args.trusted_authority {
        config.authority_host = host;
    }
    if !args.tenants.is_empty() {
        config.tenants = args.tenants;
    }
    config.leeway = std::time::Duration::from_secs(args.clock_skew);
    config.health_bind = args.health_bind.0;
    if let Some(url) = args.audit_store {
        config.audit_store = entraflow_audit::StoreUrl::parse(&url)
            .with_context(|| format!("--audit-store {url}"))?;
    }
    if let Some(name) = args.instance {
        config.audit_log_id = format!("entraflow/gate/{name}");
    }

    let mut lock = crate::datadir::ServerLock::acquire(&globals.data_dir, "gate")?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let gate = Gate::bind(config).await?;
        match gate.health_url() {
            Some(health) => lock.describe(&[("gate", gate.endpoint()), ("health", health)])?,
            None => lock.describe(&[("gate", gate.endpoint())])?,
        }
        let env_file = gate.write_env_file()?;
        println!("gate ready: {}", gate.endpoint());
        if let Some(health) = gate.health_url() {
            println!("gate health: {health}/readyz (metrics: {health}/metrics)");
        }
        println!("client settings: source {}", env_file.display());
        println!(
            "trust the CA:    export SSL_CERT_FILE={}",
            gate.ca_pem_path().display()
        );
        gate.run(shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_bind_takes_an_address_a_port_or_off() {
        assert_eq!(
            parse_health_bind("0.0.0.0:9090").unwrap().0,
            Some("0.0.0.0:9090".parse().unwrap())
        );
        assert_eq!(
            parse_health_bind("9090").unwrap().0,
            Some("127.0.0.1:9090".parse().unwrap())
        );
        assert_eq!(parse_health_bind("off").unwrap().0, None);
        assert!(parse_health_bind("localhost").is_err());
    }
}
