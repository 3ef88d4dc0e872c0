//! `entraflow sql-gate serve` (the PostgreSQL gate) and `entraflow sql principal`
//! (mapping Entra principals to PostgreSQL roles, as `pgaadauth_create_principal`
//! does on Azure).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use entraflow_authority::AdminChange;
use entraflow_gate::sql::{MappedPrincipal, PrincipalStore, PrincipalType, SqlGate, SqlGateConfig};

use crate::{Globals, Output};

/// The SQL gate: PostgreSQL with an Entra token as the password.
#[derive(Debug, Subcommand)]
pub(crate) enum SqlGateCommand {
    /// Serve until Ctrl-C/SIGTERM. Writes <data-dir>/sql-gate.env (PGHOST, PGPORT,
    /// PGSSLMODE, PGSSLROOTCERT) once listening.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The PostgreSQL the gate relays to: postgres://host:port (the gate signs in
    /// as each mapped role).
    #[arg(long, value_name = "URL", env = "ENTRAFLOW_SQL_BACKEND")]
    backend: String,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Flexible server name in scopes (.../flexibleServers/<NAME>/databases/<db>).
    #[arg(long, default_value = entraflow_gate::sql::DEFAULT_SERVER)]
    server: String,
    /// Subscription id of the server's Azure scope.
    #[arg(long, default_value = entraflow_gate::DEFAULT_SUBSCRIPTION)]
    subscription: String,
    /// Resource group of the server's Azure scope.
    #[arg(long, default_value = entraflow_gate::DEFAULT_RESOURCE_GROUP)]
    resource_group: String,
    /// Authority host whose tokens are trusted (default AZURE_AUTHORITY_HOST from <data-dir>/env).
    #[arg(long, value_name = "URL")]
    trusted_authority: Option<String>,
    /// Tenant whose tokens are accepted; repeat for several (default AZURE_TENANT_ID from <data-dir>/env).
    #[arg(long = "tenant", value_name = "ID")]
    tenants: Vec<String>,
    /// Clock skew tolerated on token exp/nbf, in seconds.
    #[arg(long, default_value_t = 300)]
    clock_skew: u64,
    /// Seconds a session may outlive its token (0: it ends at expiry, after the
    /// statement in flight).
    #[arg(long, default_value_t = 0)]
    expiry_grace: u64,
    /// Record statements as sent; by default literals are redacted.
    #[arg(long)]
    full_statements: bool,
    /// The audit store (default <data-dir>/audit.db), as for `gate serve`.
    #[arg(long, value_name = "URL", env = "ENTRAFLOW_AUDIT_STORE")]
    audit_store: Option<String>,
}

/// Entra principals mapped to PostgreSQL roles.
#[derive(Debug, Args)]
pub(crate) struct SqlArgs {
    #[command(subcommand)]
    command: SqlCommand,
}

#[derive(Debug, Subcommand)]
enum SqlCommand {
    /// Map Entra principals to PostgreSQL roles.
    #[command(subcommand)]
    Principal(PrincipalCommand),
}

#[derive(Debug, Subcommand)]
enum PrincipalCommand {
    /// Create (or take over) the role <NAME> on the backend, bound to the principal's
    /// object id, like Azure's pgaadauth_create_principal_with_oid. Permissions stay
    /// PostgreSQL GRANTs.
    Create(CreateArgs),
    /// List the mapped principals.
    List,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The user name clients sign in with: a UPN, an app's or managed identity's
    /// display name, or a group's name (case-sensitive).
    #[arg(long)]
    name: String,
    /// The principal's object id.
    #[arg(long)]
    oid: String,
    /// What kind of principal it is.
    #[arg(long = "type", value_enum)]
    kind: Kind,
    /// An admin login on the backend (superuser or CREATEROLE):
    /// postgres://user[:password]@host:port/db.
    #[arg(long, value_name = "URL", env = "ENTRAFLOW_SQL_BACKEND")]
    backend: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    User,
    Service,
    Group,
}

pub(crate) fn serve(command: SqlGateCommand, globals: &Globals) -> anyhow::Result<ExitCode> {
    let SqlGateCommand::Serve(args) = command;
    let mut config = SqlGateConfig::new(&globals.data_dir);
    config.bind = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    config.backend = args.backend;
    config.server = args.server;
    config.subscription = args.subscription;
    config.resource_group = args.resource_group;
    if let Some(host) = args.trusted_authority {
        config.authority_host = host;
    }
    if !args.tenants.is_empty() {
        config.tenants = args.tenants;
    }
    config.leeway = std::time::Duration::from_secs(args.clock_skew);
    config.expiry_grace = std::time::Duration::from_secs(args.expiry_grace);
    config.full_statements = args.full_statements;
    if let Some(url) = args.audit_store {
        config.audit_store = entraflow_audit::StoreUrl::parse(&url)
            .with_context(|| format!("--audit-store {url}"))?;
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let gate = SqlGate::bind(config).await?;
        gate.write_env_file()?;
        println!("SQL gate ready: {}", gate.local_addr());
        println!(
            "client settings: source {}",
            globals
                .data_dir
                .join(entraflow_gate::sql::SQL_GATE_ENV_FILE)
                .display()
        );
        println!(
            "databases are scopes under {}/databases/<name>",
            gate.server_scope()
        );
        gate.run(crate::gate::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(args: SqlArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = PrincipalStore::open(&globals.data_dir)?;
    match args.command {
        SqlCommand::Principal(PrincipalCommand::Create(args)) => {
            let principal = MappedPrincipal {
                name: args.name,
                oid: args.oid,
                principal_type: match args.kind {
                    Kind::User => PrincipalType::User,
                    Kind::Service => PrincipalType::Service,
                    Kind::Group => PrincipalType::Group,
                },
            };
            crate::admin_log::audited(
                globals,
                None,
                "sql principal create",
                || {
                    let runtime =
                        tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
                    runtime
                        .block_on(store.create(&args.backend, &principal))
                        .map_err(anyhow::Error::from)
                },
                |created| {
                    let changes = match created {
                        Ok(()) => vec![AdminChange::new(
                            "sql_principal.create",
                            vec![
                                ("sql_principal", principal.name.clone()),
                                ("object", principal.oid.clone()),
                            ],
                        )],
                        Err(_) => Vec::new(),
                    };
                    Ok((None, changes))
                },
            )?;
            print(&[principal], globals.output);
        }
        SqlCommand::Principal(PrincipalCommand::List) => print(&store.list()?, globals.output),
    }
    Ok(ExitCode::SUCCESS)
}

fn print(principals: &[MappedPrincipal], output: Output) {
    match output {
        Output::Json => {
            let rows: Vec<serde_json::Value> = principals
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "rolname": p.name,
                        "objectId": p.oid,
                        "principalType": p.principal_type.as_str(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
        }
        Output::Table => {
            println!("{:<40} {:<38} TYPE", "ROLE", "OBJECT ID");
            for p in principals {
                println!("{:<40} {:<38} {}", p.name, p.oid, p.principal_type.as_str());
            }
        }
    }
}
