//! `entraflow authority ...`: run the local Entra ID-compatible authority and
//! administer its tenant (lifetimes, signing keys, trusted issuers, device-code approval).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use entraflow_audit::StoreUrl;
use entraflow_authority::{Lifetime, ServerConfig, Store};

use crate::{Globals, Output};

/// Run the local authority and administer its tenant.
#[derive(Debug, Args)]
pub(crate) struct AuthorityArgs {
    /// The audit store for token decisions and admin changes:
    /// sqlite:///path/audit.db or postgres://user@host:port/db.
    /// Defaults to <data-dir>/audit.db.
    #[arg(long, global = true, env = "ENTRAFLOW_AUDIT_STORE", value_name = "URL")]
    audit_store: Option<String>,

    #[command(subcommand)]
    command: AuthorityCommand,
}

impl AuthorityArgs {
    /// `authority serve`, which creates the data directory it serves.
    pub(crate) fn serves(&self) -> bool {
        matches!(self.command, AuthorityCommand::Serve { .. })
    }
}

#[derive(Debug, Subcommand)]
enum AuthorityCommand {
    /// Serve the token endpoints over HTTPS and managed identity over plain HTTP.
    ///
    /// Writes <data-dir>/env (export lines for AZURE_AUTHORITY_HOST, AZURE_TENANT_ID,
    /// SSL_CERT_FILE, REQUESTS_CA_BUNDLE, ...) once both listeners are bound, prints
    /// `authority ready: URL tenant ID`, and stops gracefully on SIGTERM or Ctrl-C.
    Serve {
        /// HTTPS port on 127.0.0.1 (0 = pick a free one; the env file has the real one).
        #[arg(long, default_value_t = 8443)]
        port: u16,
        /// Managed-identity (IMDS and App Service) port on 127.0.0.1, plain HTTP like the real one.
        #[arg(long, default_value_t = 8089)]
        imds_port: u16,
        /// The host whose managed identities the IMDS endpoint serves.
        #[arg(long, default_value = "local-vm")]
        host_name: String,
        /// Seconds device-code clients are told to wait between polls.
        #[arg(long, default_value_t = 5, value_name = "SECS")]
        device_code_interval: u64,
    },
    /// Show or change the tenant.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Add a new signing key: published in JWKS at once, signing after the publish
    /// delay (so resource servers know it first); the old key signs until then and
    /// keeps validating until the overlap ends, then disappears from JWKS.
    RotateKeys {
        /// How long the old key stays published after the new one starts signing:
        /// e.g. 10m, 1h, 30s, 0.
        #[arg(long, default_value = "10m")]
        overlap: String,
        /// How long the new key is published before it signs (resource servers such
        /// as the gate refetch keys for an unknown kid at most every 5 minutes).
        #[arg(long, default_value = "6m")]
        publish_delay: String,
    },
    /// Approve (or decline) a device-code sign-in, as the user would in the browser.
    Approve {
        /// The code shown to the user.
        user_code: String,
        /// The signing-in user's UPN.
        #[arg(long, value_name = "UPN")]
        user: String,
        /// Decline instead of approving.
        #[arg(long)]
        deny: bool,
    },
    /// List device-code sign-ins waiting for a user (their user codes, for
    /// `approve`), newest first.
    Pending,
    /// Trust an external OIDC issuer for workload identity federation.
    Issuer {
        #[command(subcommand)]
        command: IssuerCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Print the tenant id, domain and token lifetime.
    Show,
    /// Change tenant settings.
    Update {
        /// Access-token lifetime in seconds: `5`, or a random range `3600-5400`.
        #[arg(long, value_name = "SECS|MIN-MAX")]
        token_lifetime: Lifetime,
    },
}

#[derive(Debug, Subcommand)]
enum IssuerCommand {
    /// Use a JWKS file as the issuer's keys (offline; re-read at every exchange).
    Add {
        /// The issuer exactly as it appears in `iss` (a trailing '/' matters).
        #[arg(long)]
        issuer: String,
        /// JWKS document with the issuer's public keys.
        #[arg(long, value_name = "PATH")]
        jwks_file: std::path::PathBuf,
    },
}

/// Parses `10m`, `1h`, `30s`, `2d` or plain seconds.
fn parse_duration(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .with_context(|| format!("'{s}' is not a duration; use e.g. 10m, 1h, 30s"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("'{s}' has an unknown unit; use s, m, h or d"),
    };
    Ok(n * mult)
}

pub(crate) fn print<T: serde::Serialize>(globals: &Globals, value: &T) -> anyhow::Result<()> {
    crate::output::emit(globals, &serde_json::to_value(value)?, None)
}

/// Parses `--audit-store` (`None`: the data directory's `audit.db`).
pub(crate) fn audit_store(url: Option<&str>) -> anyhow::Result<Option<StoreUrl>> {
    url.map(|u| StoreUrl::parse(u).context("--audit-store"))
        .transpose()
}

/// Runs a directory change `f` with the audit log opened first (an unreachable
/// store stops the change) and records what the store noted afterwards.
pub(crate) fn audited<T>(
    globals: &Globals,
    audit_store: Option<StoreUrl>,
    store: &Store,
    command: &str,
    mutates: bool,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if !mutates {
        return f();
    }
    crate::admin_log::audited(globals, audit_store, command, f, |_| {
        let tenant = store.default_tenant()?.id;
        Ok((Some(tenant), store.take_admin_changes()))
    })
}

pub(crate) fn run(args: AuthorityArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let audit_store = audit_store(args.audit_store.as_deref())?;
    let admin = |command: &str, f: &dyn Fn(&Store) -> anyhow::Result<()>| {
        let store = Store::open(&globals.data_dir).context("opening the authority's database")?;
        audited(globals, audit_store.clone(), &store, command, true, || {
            f(&store)
        })
    };
    match args.command {
        AuthorityCommand::Serve {
            port,
            imds_port,
            host_name,
            device_code_interval,
        } => {
            let mut config = ServerConfig::new(&globals.data_dir);
            config.port = port;
            config.imds_port = imds_port;
            config.host_name = host_name;
            config.device_code_interval = device_code_interval;
            config.audit_store = audit_store;
            crate::datadir::init(&globals.data_dir)?;
            let mut lock = crate::datadir::ServerLock::acquire(&globals.data_dir, "authority")?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async {
                let handle = entraflow_authority::serve(config, shutdown_signal())
                    .await
                    .context("starting the authority")?;
                lock.describe(&[
                    ("authority", &handle.authority_host),
                    ("imds", &handle.imds_endpoint),
                ])?;
                println!(
                    "authority ready: {} tenant {}",
                    handle.authority_host, handle.tenant_id
                );
                handle.wait().await.context("serving")?;
                anyhow::Ok(())
            })?;
        }
        AuthorityCommand::Tenant {
            command: TenantCommand::Show,
        } => print(
            globals,
            &Store::open(&globals.data_dir)
                .context("opening the authority's database")?
                .tenant_info()?,
        )?,
        AuthorityCommand::Tenant {
            command: TenantCommand::Update { token_lifetime },
        } => admin("authority tenant update", &|store| {
            print(globals, &store.set_token_lifetime(token_lifetime)?)
        })?,
        AuthorityCommand::RotateKeys {
            overlap,
            publish_delay,
        } => {
            let overlap = parse_duration(&overlap)?;
            let delay = parse_duration(&publish_delay)?;
            admin("authority rotate-keys", &|store| {
                print(globals, &store.rotate_keys(overlap, delay)?)
            })?
        }
        AuthorityCommand::Approve {
            user_code,
            user,
            deny,
        } => {
            admin("authority approve", &|store| {
                Ok(store.approve_device_code(&user_code, &user, deny)?)
            })?;
            if globals.output == Output::Json {
                print(
                    globals,
                    &serde_json::json!({"userCode": user_code.to_uppercase(), "user": user, "approved": !deny}),
                )?;
            } else {
                println!(
                    "{} sign-in {}",
                    user_code.to_uppercase(),
                    if deny { "declined" } else { "approved" }
                );
            }
        }
        AuthorityCommand::Pending => print(
            globals,
            &Store::open(&globals.data_dir)
                .context("opening the authority's database")?
                .pending_device_codes()?,
        )?,
        AuthorityCommand::Issuer {
            command: IssuerCommand::Add { issuer, jwks_file },
        } => {
            admin("authority issuer add", &|store| {
                Ok(store.add_trusted_issuer(&issuer, &jwks_file)?)
            })?;
            print(
                globals,
                &serde_json::json!({"issuer": issuer, "jwksFile": jwks_file}),
            )?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_parse() {
        assert_eq!(super::parse_duration("10m").unwrap(), 600);
        assert_eq!(super::parse_duration("0").unwrap(), 0);
        assert_eq!(super::parse_duration("2h").unwrap(), 7200);
        assert!(super::parse_duration("5y").is_err());
        assert!(super::parse_duration("m").is_err());
    }
}
