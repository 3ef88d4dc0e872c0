//! `entraflow token`, `login`, `whoami`, `doctor`: the credential library from a shell.
//!
//! Variables come from the process environment, then from the local authority's
//! `<data-dir>/env` (so `entraflow authority serve` + `entraflow token` just works).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use entraflow_credential::{
    CredentialOptions, DefaultCredential, DeviceCodeCredential, Environment, LoginCache,
    TokenCredential, TokenRequest, default_public_client_id,
    doctor::{self, Diagnosis},
};

use crate::{Globals, Output};

/// Token commands, flattened into the top level (`entraflow token`, not `entraflow x token`).
#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Print an access token for a scope (like `az account get-access-token`).
    ///
    /// Table output shows only the token's fingerprint and expiry; `--show` prints the
    /// raw token alone on stdout (for piping), `-o json` prints az's JSON shape.
    Token(TokenArgs),
    /// Sign in as a person with a device code; the refresh token is kept, readable
    /// only by you, in <data-dir>/token-cache.json for later commands and jobs.
    Login(LoginArgs),
    /// Sign out: forget the sign-in `login` kept (<data-dir>/token-cache.json),
    /// so later commands and jobs no longer get tokens as that person.
    Logout,
    /// Show who the current credential is: tenant, object id, app id, roles, expiry
    /// (never the token).
    Whoami(ScopeArgs),
    /// Find out why a job cannot get a token or reach a resource.
    ///
    /// Exit codes: 0 healthy, 3 no credential found, 4 credential rejected by the
    /// authority, 5 authority unreachable, 6 token lacks a role/assignment on the
    /// resource, 7 resource unreachable, 8 clock skew, 9 resource refused the token,
    /// 1 anything else.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ScopeArgs {
    /// Scope of one resource.
    #[arg(long, default_value = "https://storage.azure.com/.default")]
    scope: String,
    /// The resource instead of a scope, as `az account get-access-token --resource`
    /// takes it (e.g. https://ossrdbms-aad.database.windows.net for PostgreSQL).
    #[arg(long, value_name = "URI", conflicts_with = "scope")]
    resource: Option<String>,
    /// Tenant other than the credential's own.
    #[arg(long)]
    tenant: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Print the raw token alone on stdout (table output only).
    #[arg(long)]
    show: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// Tenant to sign in to (default AZURE_TENANT_ID, else `organizations`).
    #[arg(long)]
    tenant: Option<String>,
    /// Public client application id (default AZURE_CLIENT_ID, else the Azure CLI's).
    #[arg(long)]
    client_id: Option<String>,
    /// Scope of the first token.
    #[arg(long, default_value = "https://storage.azure.com/.default")]
    scope: String,
    /// az's choice of the device code over a browser; entraflow always signs in
    /// with a device code, so the flag changes nothing.
    #[arg(long = "use-device-code")]
    _use_device_code: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// A URL of the resource to call with the token (e.g. a container listing:
    /// https://HOST/ACCOUNT/CONTAINER?restype=container&comp=list).
    #[arg(long, value_name = "URL")]
    resource_url: Option<String>,
}

pub(crate) fn run(command: IdentityCommand, globals: &Globals) -> anyhow::Result<ExitCode> {
    let vars = Environment::process().with_env_file(&globals.data_dir.join("env"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match command {
            IdentityCommand::Token(args) => token(args, &vars, globals).await,
            IdentityCommand::Login(args) => login(args, &vars, globals).await,
            IdentityCommand::Logout => logout(globals),
            IdentityCommand::Whoami(args) => whoami(args, &vars, globals).await,
            IdentityCommand::Doctor(args) => doctor(args, &vars, globals).await,
        }
    })
}

impl ScopeArgs {
    /// The scope asked for: `--resource`'s `.default` scope, else `--scope`.
    fn scope(&self) -> String {
        match &self.resource {
            Some(resource) => entraflow_core::scope::default_scope(resource),
            None => self.scope.clone(),
        }
    }
}

fn request(args: &ScopeArgs) -> TokenRequest {
    TokenRequest {
        tenant_id: args.tenant.clone(),
        ..TokenRequest::new(&[args.scope().as_str()])
    }
}

/// `2026-11-26 17:05:00 UTC (in 59 min)`.
fn describe_expiry(expires_on: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(expires_on)
        .map(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .unwrap_or_default()
        })
        .unwrap_or_default();
    let left = expires_on - time::OffsetDateTime::now_utc().unix_timestamp();
    if left >= 0 {
        format!("{at} (in {} min {} s)", left / 60, left % 60)
    } else {
        format!("{at} ({} s ago)", -left)
    }
}

async fn token(args: TokenArgs, vars: &Environment, globals: &Globals) -> anyhow::Result<ExitCode> {
    let chain = DefaultCredential::from_environment(vars, &globals.data_dir);
    let token = chain.get_token(&request(&args.scope)).await?;
    let claims = entraflow_credential::claims::decode_unverified(token.token.expose()).ok();
    let tenant = claims
        .as_ref()
        .map(|c| c.tid.clone())
        .or_else(|| args.scope.tenant.clone())
        .or_else(|| vars.get(entraflow_core::env::AZURE_TENANT_ID))
        .unwrap_or_default();
    match globals.output {
        Output::Json => {
            let expires = time::OffsetDateTime::from_unix_timestamp(token.expires_on)
                .ok()
                .and_then(|t| {
                    t.format(time::macros::format_description!(
                        "[year]-[month]-[day] [hour]:[minute]:[second].000000"
                    ))
                    .ok()
                })
                .unwrap_or_default();
            let json = serde_json::json!({
                "accessToken": token.token.expose(),
                "expiresOn": expires,
                "expires_on": token.expires_on,
                "tenant": tenant,
                "tokenType": token.token_type,
            });
            crate::output::emit(globals, &json, None)?;
        }
        Output::Table if args.show => println!("{}", token.token.expose()),
        Output::Table => {
            println!("token       {}", token.fingerprint());
            println!("expires     {}", describe_expiry(token.expires_on));
            println!("tenant      {tenant}");
            println!("credential  {}", chain.chosen().unwrap_or("?"));
            eprintln!("(pass --show to print the token itself, or -o json)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn logout(globals: &Globals) -> anyhow::Result<ExitCode> {
    let cache = LoginCache::in_dir(&globals.data_dir);
    match std::fs::remove_file(cache.path()) {
        Ok(()) => eprintln!("signed out: removed {}", cache.path().display()),
        // As `az logout` with nobody signed in: say so, and fail.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "nobody is signed in ({} does not exist)",
                cache.path().display()
            )
        }
        Err(e) => {
            return Err(e).with_context(|| format!("removing {}", cache.path().display()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn login(args: LoginArgs, vars: &Environment, globals: &Globals) -> anyhow::Result<ExitCode> {
    let tenant = args
        .tenant
        .or_else(|| vars.get(entraflow_core::env::AZURE_TENANT_ID))
        .unwrap_or_else(|| "organizations".into());
    let client_id = args
        .client_id
        .unwrap_or_else(|| default_public_client_id(vars));
    let options = CredentialOptions::from_environment(vars)?;
    let cache = LoginCache::in_dir(&globals.data_dir);
    let credential =
        DeviceCodeCredential::new(&tenant, &client_id, options, Some(cache.clone()), |info| {
            if info.message.is_empty() {
                eprintln!(
                    "To sign in, open {} and enter the code {}",
                    info.verification_uri, info.user_code
                );
            } else {
                eprintln!("{}", info.message);
            }
        });
    let token = credential
        .get_token(&TokenRequest::new(&[args.scope.as_str()]))
        .await?;
    let who = entraflow_credential::claims::decode_unverified(token.token.expose())
        .ok()
        .and_then(|c| c.upn.or(c.preferred_username).or(Some(c.oid)))
        .unwrap_or_default();
    match globals.output {
        Output::Json => crate::output::emit(
            globals,
            &serde_json::json!({
                "user": who, "tenant": tenant, "clientId": client_id,
                "cache": cache.path().display().to_string(),
            }),
            None,
        )?,
        Output::Table => println!(
            "Signed in as {who} (tenant {tenant}); the sign-in is kept in {}",
            cache.path().display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn whoami(
    args: ScopeArgs,
    vars: &Environment,
    globals: &Globals,
) -> anyhow::Result<ExitCode> {
    let chain = DefaultCredential::from_environment(vars, &globals.data_dir);
    let token = chain.get_token(&request(&args)).await?;
    let claims = entraflow_credential::claims::decode_unverified(token.token.expose())?;
    let roles = claims.roles.clone().unwrap_or_default();
    match globals.output {
        Output::Json => crate::output::emit(
            globals,
            &serde_json::json!({
                "credential": chain.chosen(),
                "tenant": claims.tid,
                "objectId": claims.oid,
                "appId": claims.client_app_id(),
                "user": claims.upn.as_ref().or(claims.preferred_username.as_ref()),
                "identityType": claims.idtyp,
                "audience": claims.aud,
                "roles": roles,
                "expires_on": token.expires_on,
                "tokenFingerprint": token.fingerprint(),
            }),
            None,
        )?,
        Output::Table => {
            println!("credential  {}", chain.chosen().unwrap_or("?"));
            println!("tenant      {}", claims.tid);
            println!("object id   {}", claims.oid);
            println!("app id      {}", claims.client_app_id().unwrap_or("-"));
            if let Some(user) = claims.upn.as_ref().or(claims.preferred_username.as_ref()) {
                println!("user        {user}");
            }
            println!("audience    {}", claims.aud);
            println!(
                "roles       {}",
                if roles.is_empty() {
                    "(none in the token; data roles are checked by the resource)".to_owned()
                } else {
                    roles.join(", ")
                }
            );
            println!("expires     {}", describe_expiry(token.expires_on));
            println!("token       {}", token.fingerprint());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn doctor(
    args: DoctorArgs,
    vars: &Environment,
    globals: &Globals,
) -> anyhow::Result<ExitCode> {
    let chain = DefaultCredential::from_environment(vars, &globals.data_dir);
    let options = match CredentialOptions::from_environment(vars) {
        Ok(o) => o,
        Err(e) => {
            let diagnosis = doctor::classify(&e);
            eprintln!("{}", diagnosis.explain());
            return Ok(ExitCode::from(diagnosis.exit_code()));
        }
    };
    let tenant = args
        .scope
        .tenant
        .clone()
        .or_else(|| vars.get(entraflow_core::env::AZURE_TENANT_ID));
    let report = doctor::diagnose(
        &chain,
        &request(&args.scope),
        &options,
        tenant.as_deref(),
        args.resource_url.as_deref(),
    )
    .await;
    match globals.output {
        Output::Json => {
            let json = serde_json::json!({
                "credential": chain.chosen(),
                "tokenFingerprint": report.token.as_ref().map(|t| &t.0),
                "expires_on": report.token.as_ref().map(|t| t.1),
                "tenant": report.claims.as_ref().map(|c| &c.tid),
                "objectId": report.claims.as_ref().map(|c| &c.oid),
                "appId": report.claims.as_ref().and_then(|c| c.client_app_id()),
                "roles": report.claims.as_ref().and_then(|c| c.roles.clone()),
                "clockSkewSeconds": report.clock_skew_seconds,
                "resourceStatus": report.resource_status,
                "diagnosis": report.diagnosis.name(),
                "exitCode": report.diagnosis.exit_code(),
                "explanation": report.diagnosis.explain(),
            });
            crate::output::emit(globals, &json, None)?;
        }
        Output::Table => {
            let check = |ok: bool| if ok { "ok  " } else { "FAIL" };
            println!(
                "[{}] credential   {}",
                check(report.token.is_some()),
                chain.chosen().unwrap_or("none")
            );
            if let (Some((fingerprint, expires_on)), Some(claims)) = (&report.token, &report.claims)
            {
                println!(
                    "[ok  ] token        {fingerprint}, expires {}",
                    describe_expiry(*expires_on)
                );
                println!(
                    "[ok  ] identity     tenant {}, object id {}, app id {}",
                    claims.tid,
                    claims.oid,
                    claims.client_app_id().unwrap_or("-")
                );
            }
            if let Some(skew) = report.clock_skew_seconds {
                let fine = skew.unsigned_abs() <= doctor::MAX_CLOCK_SKEW.as_secs();
                println!(
                    "[{}] clock        {skew:+} s against the authority",
                    check(fine)
                );
            }
            if let Some(url) = &args.resource_url {
                let fine = matches!(
                    report.diagnosis,
                    Diagnosis::Healthy | Diagnosis::ClockSkew { .. }
                );
                let status = report
                    .resource_status
                    .map_or("no answer".to_owned(), |s| format!("HTTP {s}"));
                println!("[{}] resource     {url}: {status}", check(fine));
            }
            println!();
            println!("{}", report.diagnosis.explain());
        }
    }
    Ok(ExitCode::from(report.diagnosis.exit_code()))
}
