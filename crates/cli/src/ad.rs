//! `entraflow ad ...`: the tenant directory in the shape of `az ad` (apps,
//! service principals, credentials, roles, users, groups, managed identities).
//! Writes the authority's database directly; the running server sees changes at once.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use entraflow_authority::{NewApplication, SecretExpiry, Store};

use crate::Globals;
use crate::authority::print;

/// Manage applications, service principals, users, groups and managed identities (like `az ad`).
#[derive(Debug, Args)]
pub(crate) struct AdArgs {
    /// The audit store every change is recorded in:
    /// sqlite:///path/audit.db or postgres://user@host:port/db.
    /// Defaults to <data-dir>/audit.db.
    #[arg(long, global = true, env = "ENTRAFLOW_AUDIT_STORE", value_name = "URL")]
    audit_store: Option<String>,

    #[command(subcommand)]
    command: AdCommand,
}

impl AdCommand {
    /// The command as its audit record names it (never an argument's value), and
    /// whether it changes the directory.
    fn describe(&self) -> (&'static str, bool) {
        match self {
            AdCommand::App { command } => match command {
                AppCommand::Create { .. } => ("ad app create", true),
                AppCommand::Update { .. } => ("ad app update", true),
                AppCommand::List => ("ad app list", false),
                AppCommand::Delete { .. } => ("ad app delete", true),
                AppCommand::Show { .. } => ("ad app show", false),
                AppCommand::Credential {
                    command: CredentialCommand::Reset { .. },
                } => ("ad app credential reset", true),
                AppCommand::Credential {
                    command: CredentialCommand::UploadCert { .. },
                } => ("ad app credential upload-cert", true),
                AppCommand::Credential {
                    command: CredentialCommand::List { .. },
                } => ("ad app credential list", false),
                AppCommand::Credential {
                    command: CredentialCommand::Delete { .. },
                } => ("ad app credential delete", true),
                AppCommand::FederatedCredential {
                    command: FederatedCommand::Create { .. },
                } => ("ad app federated-credential create", true),
                AppCommand::FederatedCredential {
                    command: FederatedCommand::List { .. },
                } => ("ad app federated-credential list", false),
                AppCommand::FederatedCredential {
                    command: FederatedCommand::Show { .. },
                } => ("ad app federated-credential show", false),
                AppCommand::FederatedCredential {
                    command: FederatedCommand::Delete { .. },
                } => ("ad app federated-credential delete", true),
                AppCommand::Role {
                    command: RoleCommand::Create { .. },
                } => ("ad app role create", true),
                AppCommand::Role {
                    command: RoleCommand::Assign { .. },
                } => ("ad app role assign", true),
            },
            AdCommand::Sp {
                command: SpCommand::Create { .. },
            } => ("ad sp create", true),
            AdCommand::Sp {
                command: SpCommand::List,
            } => ("ad sp list", false),
            AdCommand::Sp {
                command: SpCommand::Show { .. },
            } => ("ad sp show", false),
            AdCommand::Sp {
                command: SpCommand::Delete { .. },
            } => ("ad sp delete", true),
            AdCommand::User {
                command: UserCommand::Create { .. },
            } => ("ad user create", true),
            AdCommand::User {
                command: UserCommand::List,
            } => ("ad user list", false),
            AdCommand::User {
                command: UserCommand::Show { .. },
            } => ("ad user show", false),
            AdCommand::User {
                command: UserCommand::Update { .. },
            } => ("ad user update", true),
            AdCommand::User {
                command: UserCommand::Delete { .. },
            } => ("ad user delete", true),
            AdCommand::Group { command } => match command {
                GroupCommand::Create { .. } => ("ad group create", true),
                GroupCommand::List => ("ad group list", false),
                GroupCommand::Show { .. } => ("ad group show", false),
                GroupCommand::Delete { .. } => ("ad group delete", true),
                GroupCommand::Member { command } => match command {
                    MemberCommand::Add { .. } => ("ad group member add", true),
                    MemberCommand::Remove { .. } => ("ad group member remove", true),
                    MemberCommand::List { .. } => ("ad group member list", false),
                    MemberCommand::Check { .. } => ("ad group member check", false),
                },
            },
            AdCommand::Identity {
                command: IdentityCommand::Create { .. },
            } => ("ad identity create", true),
            AdCommand::Identity {
                command: IdentityCommand::Delete(_),
            } => ("ad identity delete", true),
            AdCommand::Identity {
                command: IdentityCommand::List { .. },
            } => ("ad identity list", false),
            AdCommand::Identity {
                command: IdentityCommand::Show(_),
            } => ("ad identity show", false),
        }
    }
}

#[derive(Debug, Subcommand)]
enum AdCommand {
    /// Application registrations.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Service principals (an application's identity in the tenant).
    Sp {
        #[command(subcommand)]
        command: SpCommand,
    },
    /// Users (for device-code sign-in).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Security groups.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Managed identities, assigned to a host whose IMDS endpoint serves them.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// Register an application.
    Create {
        /// Display name.
        #[arg(long)]
        display_name: String,
        /// Token version the app accepts as a resource (Entra's default, null, means 1).
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=2))]
        token_version: Option<i64>,
        /// Allow public-client flows (device code without a secret). az's
        /// `--is-fallback-public-client true|false` is the same setting.
        #[arg(long, visible_alias = "is-fallback-public-client", num_args = 0..=1,
              default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
        public_client: bool,
        /// Application id URIs, e.g. api://trainer.
        #[arg(long, num_args = 1.., value_name = "URI")]
        identifier_uris: Vec<String>,
        /// Put `groups` in tokens for this app: SecurityGroup, All or None.
        #[arg(long, value_name = "KIND")]
        group_membership_claims: Option<String>,
        /// Redirect URIs of a desktop or command-line app (public client: PKCE, no
        /// secret), e.g. http://localhost (any port matches).
        #[arg(long, num_args = 1.., value_name = "URI")]
        public_client_redirect_uris: Vec<String>,
        /// Redirect URIs of a web app (confidential client: redeems codes with its
        /// secret or certificate); https, or http on localhost.
        #[arg(long, num_args = 1.., value_name = "URI")]
        web_redirect_uris: Vec<String>,
    },
    /// Change an application's redirect URIs (each list given replaces the old one).
    Update {
        /// Application (client) id.
        #[arg(long)]
        id: String,
        /// Desktop and command-line redirect URIs; give the flag alone to clear them.
        #[arg(long, num_args = 0.., value_name = "URI")]
        public_client_redirect_uris: Option<Vec<String>>,
        /// Web redirect URIs; give the flag alone to clear them.
        #[arg(long, num_args = 0.., value_name = "URI")]
        web_redirect_uris: Option<Vec<String>>,
    },
    /// List applications.
    List,
    /// Show one application.
    Show {
        /// Application (client) id or object id.
        #[arg(long)]
        id: String,
    },
    /// Delete an application with its service principal, credentials and grants.
    Delete {
        /// Application (client) id or object id.
        #[arg(long)]
        id: String,
    },
    /// Client secrets and certificates.
    Credential {
        #[command(subcommand)]
        command: CredentialCommand,
    },
    /// Federated identity credentials (workload identity).
    FederatedCredential {
        #[command(subcommand)]
        command: FederatedCommand,
    },
    /// App roles and their assignments.
    Role {
        #[command(subcommand)]
        command: RoleCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CredentialCommand {
    /// Create a client secret (printed once) and, without --append, remove the others.
    Reset {
        /// Application (client) id.
        #[arg(long)]
        id: String,
        /// Years until the secret expires.
        #[arg(long, conflicts_with = "end_date")]
        years: Option<u32>,
        /// Expiry as RFC 3339, e.g. 2027-01-31T00:00:00Z.
        #[arg(long)]
        end_date: Option<String>,
        /// Keep the existing secrets.
        #[arg(long)]
        append: bool,
    },
    /// List the application's secrets (key id, hint, dates), or with --cert its
    /// certificates (key id, thumbprint, expiry). Secrets themselves are never shown.
    List {
        /// Application (client) id or object id.
        #[arg(long)]
        id: String,
        /// Certificates instead of secrets.
        #[arg(long)]
        cert: bool,
    },
    /// Delete one secret, or with --cert one certificate, by its key id: it stops
    /// authenticating the application at once (tokens already issued stay valid
    /// until they expire, as in Entra).
    Delete {
        /// Application (client) id or object id.
        #[arg(long)]
        id: String,
        /// The credential's key id, from `credential list`.
        #[arg(long)]
        key_id: String,
        /// The key id is a certificate's.
        #[arg(long)]
        cert: bool,
    },
    /// Register a certificate's public key (PEM) for certificate assertions.
    UploadCert {
        /// Application (client) id.
        #[arg(long)]
        id: String,
        /// PEM file with the certificate.
        #[arg(long, value_name = "PEM")]
        cert: PathBuf,
    },
}

/// What the issuer's own discovery document says its `iss` is, when that differs
/// from `issuer` (a trailing `/` is the classic mismatch: tokens then never
/// match the credential). `None` when they agree or the issuer cannot be reached
/// within two seconds (offline issuers, or ones without discovery, are fine).
fn issuer_mismatch(data_dir: &std::path::Path, issuer: &str) -> Option<String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let ca = std::fs::read_to_string(data_dir.join("ca.pem")).ok();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let published: String = runtime.block_on(async {
        let client = entraflow_tls::https_client(ca.as_deref()).ok()?;
        let doc: serde_json::Value = client
            .get(&url)
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .json()
            .await
            .ok()?;
        doc.get("issuer")?.as_str().map(str::to_owned)
    })?;
    (published != issuer).then(|| {
        format!(
            "the issuer's discovery document ({url}) says its tokens carry iss '{published}', not '{issuer}'; the match is exact, so tokens from it will not be accepted. Use --issuer '{published}'."
        )
    })
}

/// `federated-credential create --parameters`, in az's shape (Microsoft Graph's
/// federatedIdentityCredential). entraflow keeps no description, so one that is
/// given is refused rather than dropped.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FederatedParameters {
    name: String,
    issuer: String,
    subject: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

impl FederatedParameters {
    fn parse(argument: &str) -> anyhow::Result<Self> {
        let text = crate::role::read_json_argument(argument)?;
        let parsed: Self = serde_json::from_str(&text).context(
            "--parameters: expected {\"name\", \"issuer\", \"subject\", \"audiences\": [...]}",
        )?;
        if parsed.description.as_deref().is_some_and(|d| !d.is_empty()) {
            anyhow::bail!(
                "--parameters: entraflow does not store a federated credential's description, so it refuses one rather than drop it; remove \"description\" (nothing was created)"
            );
        }
        Ok(parsed)
    }
}

#[derive(Debug, Subcommand)]
enum FederatedCommand {
    /// Trust tokens from an external issuer for a subject (exact match).
    Create {
        /// Application (client) id.
        #[arg(long)]
        id: String,
        /// Credential name, unique per app.
        #[arg(long, required_unless_present = "parameters")]
        name: Option<String>,
        /// Issuer exactly as in the token's `iss` (a trailing '/' matters).
        #[arg(long, required_unless_present = "parameters")]
        issuer: Option<String>,
        /// Subject exactly as in `sub`, e.g. system:serviceaccount:ns:sa.
        #[arg(long, required_unless_present = "parameters")]
        subject: Option<String>,
        /// Accepted audiences (default api://AzureADTokenExchange).
        #[arg(long)]
        audience: Vec<String>,
        /// All of it as az takes it: JSON (inline, @file or a file path) with
        /// `name`, `issuer`, `subject` and optionally `audiences` (a `description`
        /// is refused: entraflow does not store one).
        #[arg(long, value_name = "JSON|@FILE", conflicts_with_all = ["name", "issuer", "subject", "audience"])]
        parameters: Option<String>,
    },
    /// List an app's federated identity credentials.
    List {
        /// Application (client) id or object id.
        #[arg(long)]
        id: String,
    },
    /// Show one federated identity credential.
    Show {
        /// Application (client) id or object id.
        #[arg(long)]
        id: String,
        /// The credential's id or name.
        #[arg(long)]
        federated_credential_id: String,
    },
    /// Delete a federated identity credential: tokens from that issuer and subject
    /// are no longer exchanged.
    Delete {
        /// Application (client) id or object id.
        #[arg(long)]
        id: String,
        /// The credential's id or name.
        #[arg(long)]
        federated_credential_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum RoleCommand {
    /// Define an app role.
    Create {
        /// Application (client) id of the resource app.
        #[arg(long)]
        id: String,
        /// The value tokens carry in `roles`, e.g. Data.Read.
        #[arg(long)]
        value: String,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Assign an app role to a service principal, managed identity, user or group.
    Assign {
        /// Object id of the principal.
        #[arg(long, value_name = "OBJECT_ID")]
        principal: String,
        /// Application (client) id of the resource app.
        #[arg(long, value_name = "APP_ID")]
        resource: String,
        /// Role value or id.
        #[arg(long)]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
enum SpCommand {
    /// Create the service principal of an application.
    Create {
        /// Application (client) id.
        #[arg(long)]
        id: String,
    },
    /// List service principals.
    List,
    /// Show one service principal.
    Show {
        /// Object id of the service principal, or its application (client) id.
        #[arg(long)]
        id: String,
    },
    /// Delete a service principal; its application stays, but gets no tokens.
    Delete {
        /// Object id of the service principal, or its application (client) id.
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user.
    Create {
        /// User principal name, e.g. alice@entraflow.local.
        #[arg(long, visible_alias = "user-principal-name")]
        upn: String,
        /// Display name.
        #[arg(long)]
        display_name: String,
        /// Read a password (for the device-login page) from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Show one user.
    Show {
        /// Object id or user principal name.
        #[arg(long)]
        id: String,
    },
    /// Change a user's display name or password (a new password ends their sign-ins).
    Update {
        /// Object id or user principal name.
        #[arg(long)]
        id: String,
        /// New display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Read a new password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user and their sign-ins (refresh tokens, pending codes).
    Delete {
        /// Object id or user principal name.
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Create a security group.
    Create {
        /// Display name.
        #[arg(long)]
        display_name: String,
    },
    /// List groups.
    List,
    /// Show one group.
    Show {
        /// Group object id or display name.
        #[arg(long)]
        group: String,
    },
    /// Delete a group; its members lose what was granted to it.
    Delete {
        /// Group object id or display name.
        #[arg(long)]
        group: String,
    },
    /// Group membership.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// Add a member (user, service principal, managed identity) to a group.
    Add {
        /// Group object id or display name.
        #[arg(long)]
        group: String,
        /// Member object id.
        #[arg(long, value_name = "OBJECT_ID")]
        member_id: String,
    },
    /// Remove a member from a group.
    Remove {
        /// Group object id or display name.
        #[arg(long)]
        group: String,
        /// Member object id.
        #[arg(long, value_name = "OBJECT_ID")]
        member_id: String,
    },
    /// List a group's direct members.
    List {
        /// Group object id or display name.
        #[arg(long)]
        group: String,
    },
    /// Whether an object is a direct member: `{"value": true|false}`.
    Check {
        /// Group object id or display name.
        #[arg(long)]
        group: String,
        /// Member object id.
        #[arg(long, value_name = "OBJECT_ID")]
        member_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Create a user-assigned (--name) or system-assigned (--system-assigned) identity on a host.
    Create {
        /// Name of a user-assigned identity.
        #[arg(long, required_unless_present = "system_assigned")]
        name: Option<String>,
        /// The host (VM) the identity is assigned to.
        #[arg(long, default_value = DEFAULT_HOST)]
        host: String,
        /// The host's own system-assigned identity.
        #[arg(long, conflicts_with = "name")]
        system_assigned: bool,
    },
    /// List managed identities (of one host with --host).
    List {
        /// Only the identities assigned to this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Show a user-assigned (--name) or a host's system-assigned identity.
    Show(IdentityRef),
    /// Delete a user-assigned (--name) or a host's system-assigned identity.
    Delete(IdentityRef),
}

/// The host managed identities are assigned to unless --host says otherwise (the
/// authority's default `--host-name`).
const DEFAULT_HOST: &str = "local-vm";

/// The identity `ad identity show/delete` name: a user-assigned one by name, or a
/// host's own.
#[derive(Debug, Args)]
struct IdentityRef {
    /// Name of a user-assigned identity.
    #[arg(long, required_unless_present = "system_assigned")]
    name: Option<String>,
    /// The host of a system-assigned identity (default local-vm); with --name, the
    /// host the identity must be assigned to.
    #[arg(long)]
    host: Option<String>,
    /// The host's system-assigned identity.
    #[arg(long, conflicts_with = "name")]
    system_assigned: bool,
}

impl IdentityRef {
    /// The host to look in: a system-assigned identity's defaults to local-vm.
    fn host(&self) -> Option<&str> {
        match (&self.host, self.system_assigned) {
            (Some(host), _) => Some(host),
            (None, true) => Some(DEFAULT_HOST),
            (None, false) => None,
        }
    }
}

pub(crate) fn run(args: AdArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = Store::open(&globals.data_dir).context("opening the authority's database")?;
    let audit_store = crate::authority::audit_store(args.audit_store.as_deref())?;
    let (command, mutates) = args.command.describe();
    crate::authority::audited(globals, audit_store, &store, command, mutates, || {
        apply(args.command, globals, &store)
    })
}

fn apply(command: AdCommand, globals: &Globals, store: &Store) -> anyhow::Result<ExitCode> {
    match command {
        AdCommand::App { command } => match command {
            AppCommand::Create {
                display_name,
                token_version,
                public_client,
                identifier_uris,
                group_membership_claims,
                public_client_redirect_uris,
                web_redirect_uris,
            } => {
                let app = store.create_application_with_redirect_uris(
                    &NewApplication {
                        display_name,
                        token_version,
                        public_client,
                        identifier_uris,
                        group_membership_claims,
                    },
                    &public_client_redirect_uris,
                    &web_redirect_uris,
                )?;
                print(globals, &app)?
            }
            AppCommand::Update {
                id,
                public_client_redirect_uris,
                web_redirect_uris,
            } => print(
                globals,
                &store.update_redirect_uris(
                    &id,
                    public_client_redirect_uris.as_deref(),
                    web_redirect_uris.as_deref(),
                )?,
            )?,
            AppCommand::List => print(globals, &store.list_applications()?)?,
            AppCommand::Show { id } => {
                print(globals, &store.application(&store.resolve_app_id(&id)?)?)?
            }
            AppCommand::Delete { id } => {
                let app_id = store.delete_application(&id)?;
                print(
                    globals,
                    &serde_json::json!({"appId": app_id, "deleted": true}),
                )?
            }
            AppCommand::Credential {
                command:
                    CredentialCommand::Reset {
                        id,
                        years,
                        end_date,
                        append,
                    },
            } => {
                let expiry = match end_date {
                    Some(d) => {
                        let t = time::OffsetDateTime::parse(
                            &d,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .with_context(|| {
                            format!("--end-date '{d}' is not RFC 3339, e.g. 2027-01-31T00:00:00Z")
                        })?;
                        SecretExpiry::At(t.unix_timestamp())
                    }
                    None => SecretExpiry::Years(years.unwrap_or(1)),
                };
                print(globals, &store.reset_secret(&id, expiry, append)?)?
            }
            AppCommand::Credential {
                command: CredentialCommand::UploadCert { id, cert },
            } => print(globals, &store.upload_certificate(&id, &cert)?)?,
            AppCommand::Credential {
                command: CredentialCommand::List { id, cert },
            } => print(globals, &store.list_app_credentials(&id, cert)?)?,
            AppCommand::Credential {
                command: CredentialCommand::Delete { id, key_id, cert },
            } => {
                store.delete_app_credential_by_key_id(&id, &key_id, cert)?;
                print(
                    globals,
                    &serde_json::json!({"keyId": key_id, "deleted": true}),
                )?
            }
            AppCommand::FederatedCredential {
                command:
                    FederatedCommand::Create {
                        id,
                        name,
                        issuer,
                        subject,
                        audience,
                        parameters,
                    },
            } => {
                let fic = match parameters {
                    Some(p) => FederatedParameters::parse(&p)?,
                    None => FederatedParameters {
                        name: name.unwrap_or_default(),
                        issuer: issuer.unwrap_or_default(),
                        subject: subject.unwrap_or_default(),
                        audiences: audience,
                        description: None,
                    },
                };
                if !globals.only_show_errors
                    && let Some(warning) = issuer_mismatch(&globals.data_dir, &fic.issuer)
                {
                    eprintln!("warning: {warning}");
                }
                let audiences = if fic.audiences.is_empty() {
                    vec![entraflow_core::FEDERATION_AUDIENCE.to_owned()]
                } else {
                    fic.audiences
                };
                print(
                    globals,
                    &store.create_federated_credential(
                        &id,
                        &fic.name,
                        &fic.issuer,
                        &fic.subject,
                        &audiences,
                    )?,
                )?
            }
            AppCommand::FederatedCredential {
                command: FederatedCommand::List { id },
            } => print(
                globals,
                &store.list_federated_credentials(&store.resolve_app_id(&id)?)?,
            )?,
            AppCommand::FederatedCredential {
                command:
                    FederatedCommand::Show {
                        id,
                        federated_credential_id,
                    },
            } => print(
                globals,
                &store.federated_credential(&id, &federated_credential_id)?,
            )?,
            AppCommand::FederatedCredential {
                command:
                    FederatedCommand::Delete {
                        id,
                        federated_credential_id,
                    },
            } => print(
                globals,
                &store.delete_federated_credential(&id, &federated_credential_id)?,
            )?,
            AppCommand::Role {
                command:
                    RoleCommand::Create {
                        id,
                        value,
                        display_name,
                    },
            } => print(
                globals,
                &store.create_app_role(&id, &value, display_name.as_deref())?,
            )?,
            AppCommand::Role {
                command:
                    RoleCommand::Assign {
                        principal,
                        resource,
                        role,
                    },
            } => print(
                globals,
                &store.assign_app_role(&principal, &resource, &role)?,
            )?,
        },
        AdCommand::Sp {
            command: SpCommand::Create { id },
        } => print(globals, &store.create_service_principal(&id)?)?,
        AdCommand::Sp {
            command: SpCommand::List,
        } => print(globals, &store.list_service_principals()?)?,
        AdCommand::Sp {
            command: SpCommand::Show { id },
        } => print(globals, &store.show_service_principal(&id)?)?,
        AdCommand::Sp {
            command: SpCommand::Delete { id },
        } => {
            let object_id = store.delete_service_principal(&id)?;
            print(
                globals,
                &serde_json::json!({"id": object_id, "deleted": true}),
            )?
        }
        AdCommand::User {
            command:
                UserCommand::Create {
                    upn,
                    display_name,
                    password_stdin,
                },
        } => {
            let password = password_stdin.then(read_password).transpose()?;
            print(
                globals,
                &store.create_user(&upn, &display_name, password.as_deref())?,
            )?
        }
        AdCommand::User {
            command: UserCommand::List,
        } => print(globals, &store.list_users()?)?,
        AdCommand::User {
            command: UserCommand::Show { id },
        } => print(globals, &store.find_user(&id)?)?,
        AdCommand::User {
            command:
                UserCommand::Update {
                    id,
                    display_name,
                    password_stdin,
                },
        } => {
            let password = password_stdin.then(read_password).transpose()?;
            print(
                globals,
                &store.update_user(&id, display_name.as_deref(), password.as_deref())?,
            )?
        }
        AdCommand::User {
            command: UserCommand::Delete { id },
        } => {
            let object_id = store.delete_user(&id)?;
            print(
                globals,
                &serde_json::json!({"id": object_id, "deleted": true}),
            )?
        }
        AdCommand::Group { command } => group(command, globals, store)?,
        AdCommand::Identity {
            command:
                IdentityCommand::Create {
                    name,
                    host,
                    system_assigned,
                },
        } => {
            let identity =
                store.create_managed_identity(name.as_deref(), &host, system_assigned)?;
            offer_imds_to_running_shells(&globals.data_dir, &host)?;
            print(globals, &identity)?
        }
        AdCommand::Identity {
            command: IdentityCommand::List { host },
        } => print(globals, &store.list_managed_identities(host.as_deref())?)?,
        AdCommand::Identity {
            command: IdentityCommand::Show(identity),
        } => print(
            globals,
            &store.show_managed_identity(
                identity.name.as_deref(),
                identity.host(),
                identity.system_assigned,
            )?,
        )?,
        AdCommand::Identity {
            command: IdentityCommand::Delete(identity),
        } => {
            let principal_id = store.delete_managed_identity(
                identity.name.as_deref(),
                identity.host(),
                identity.system_assigned,
            )?;
            print(
                globals,
                &serde_json::json!({"principalId": principal_id, "deleted": true}),
            )?
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn group(command: GroupCommand, globals: &Globals, store: &Store) -> anyhow::Result<()> {
    match command {
        GroupCommand::Create { display_name } => {
            print(globals, &store.create_group(&display_name)?)
        }
        GroupCommand::List => print(globals, &store.list_groups()?),
        GroupCommand::Show { group } => print(globals, &store.find_group(&group)?),
        GroupCommand::Delete { group } => {
            let deleted = store.delete_group(&group)?;
            print(
                globals,
                &serde_json::json!({"id": deleted.id, "deleted": true}),
            )
        }
        GroupCommand::Member { command } => match command {
            MemberCommand::Add { group, member_id } => {
                let group = store.find_group(&group)?;
                store.add_group_member(&group.id, &member_id)?;
                print(
                    globals,
                    &serde_json::json!({"groupId": group.id, "memberId": member_id}),
                )
            }
            MemberCommand::Remove { group, member_id } => {
                store.remove_group_member(&group, &member_id)?;
                print(
                    globals,
                    &serde_json::json!({"groupId": group, "memberId": member_id, "removed": true}),
                )
            }
            MemberCommand::List { group } => print(globals, &store.list_group_members(&group)?),
            MemberCommand::Check { group, member_id } => print(
                globals,
                &serde_json::json!({"value": store.is_group_member(&group, &member_id)?}),
            ),
        },
    }
}

/// The first line of stdin: a password never travels on the command line.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// A running authority wrote `env` without the IMDS variable when its host had no
/// managed identity; the first identity of that host adds it, so that a shell
/// sourcing `env` from now on finds IMDS. (The authority still removes `env` when
/// it stops.)
fn offer_imds_to_running_shells(data_dir: &std::path::Path, host: &str) -> anyhow::Result<()> {
    use entraflow_authority::{ENV_FILE, IMDS_ENV_FILE};
    let env = data_dir.join(ENV_FILE);
    let serves_host = data_dir
        .join("hosts")
        .join(host)
        .join("identity.env")
        .exists();
    let (Ok(current), Ok(imds)) = (
        std::fs::read_to_string(&env),
        std::fs::read_to_string(data_dir.join(IMDS_ENV_FILE)),
    ) else {
        return Ok(());
    };
    let var = entraflow_core::env::AZURE_POD_IDENTITY_AUTHORITY_HOST;
    if !serves_host || current.contains(&format!("export {var}=")) {
        return Ok(());
    }
    let line = imds
        .lines()
        .find(|l| l.starts_with(&format!("export {var}=")));
    if let Some(line) = line {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&env)
            .with_context(|| format!("adding {var} to {}", env.display()))?;
        std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes())?;
    }
    Ok(())
}
