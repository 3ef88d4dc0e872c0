//! What the console is told: where it listens, which Entra authority signs
//! people in (the local one by default, any tenant by configuration), which
//! audit store it reads, and the scope at which reading it is authorized.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use entraflow_audit::StoreUrl;
use entraflow_core::Secret;
use entraflow_rbac::Scope;

/// File the console writes its URL to once it serves (its presence means
/// "ready"), in the data directory; removed on shutdown.
pub const CONSOLE_ENV_FILE: &str = "console.env";
/// The audit chain every page view is appended to.
pub const AUDIT_LOG_ID: &str = "entraflow/console";
/// The path of the OIDC redirect URI on the console's own origin.
pub const CALLBACK_PATH: &str = "/auth/callback";
/// Where the authority sends the browser back after signing out
/// (`post_logout_redirect_uri`, registered beside the callback).
pub const SIGNED_OUT_PATH: &str = "/signed-out";
/// The audit log resource's name under its resource group by default.
pub const DEFAULT_AUDIT_LOG_NAME: &str = "default";

/// Which application the console signs people in as.
#[derive(Debug, Clone)]
pub enum Client {
    /// Register the console in the data directory's local tenant (or refresh
    /// its registration): an app with a web redirect URI on the console's own
    /// address, exactly, and a fresh client secret that lives only in the
    /// console's memory. What `entraflow up` does.
    RegisterLocally,
    /// An app registered elsewhere, e.g. in a real Entra tenant, as a web
    /// application whose redirect URI is `<public url>/auth/callback`.
    Registered {
        /// Application (client) id.
        client_id: String,
        /// Its client secret (the console is a confidential client; it also
        /// uses PKCE, as Entra recommends for web apps).
        client_secret: Secret,
    },
}

/// The Entra authority people sign in with.
#[derive(Debug, Clone)]
pub struct SignInConfig {
    /// `https://127.0.0.1:8443` (local) or `https://login.microsoftonline.com`.
    pub authority_host: String,
    /// The tenant id (a GUID; `organizations` and `common` are refused, since
    /// the ID token's issuer names one tenant).
    pub tenant: String,
    /// The application.
    pub client: Client,
}

/// The console's configuration. Build it with [`ConsoleConfig::new`].
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Data directory: the local CA, `rbac.db`, `authority.db` (names, and the
    /// local registration), `audit-key.pub`, the env files.
    pub data_dir: PathBuf,
    /// Where to listen (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// Who signs people in.
    pub sign_in: SignInConfig,
    /// The audit log to read, and to append page views to.
    pub audit_store: StoreUrl,
    /// Where reading the audit log is authorized: the scope of the audit log
    /// resource ([`Scope::audit_log`]); an assignment there or above grants it.
    pub audit_scope: Scope,
    /// The origin browsers reach the console at, when it is not
    /// `https://127.0.0.1:<port>` (behind a proxy, or a host name): the redirect
    /// URI is `<public_url>/auth/callback`.
    pub public_url: Option<String>,
    /// How long a session lasts after sign-in (at most the ID token's
    /// lifetime is not required: the session is the console's own).
    pub session_lifetime: Duration,
    /// Extra checkpoint verifier keys (`name+id+key`) besides the data
    /// directory's `audit-key.pub`.
    pub verifier_keys: Vec<String>,
}

impl ConsoleConfig {
    /// Local defaults in `data_dir`: any free port, sign-in with the given
    /// authority and tenant as a locally registered app, `<data-dir>/audit.db`,
    /// the default audit log scope of the gate's default subscription and
    /// resource group, 8-hour sessions.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        authority_host: impl Into<String>,
        tenant: impl Into<String>,
    ) -> Self {
        let data_dir = data_dir.into();
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            sign_in: SignInConfig {
                authority_host: authority_host.into().trim_end_matches('/').to_owned(),
                tenant: tenant.into(),
                client: Client::RegisterLocally,
            },
            audit_store: StoreUrl::default_for(&data_dir),
            audit_scope: default_audit_scope(),
            public_url: None,
            session_lifetime: Duration::from_secs(8 * 3600),
            verifier_keys: Vec::new(),
            data_dir,
        }
    }
}

/// `/subscriptions/<gate's default subscription>/resourceGroups/entraflow-local/providers/Entraflow.Audit/auditLogs/default`.
pub fn default_audit_scope() -> Scope {
    Scope::audit_log(
        entraflow_gate::DEFAULT_SUBSCRIPTION,
        entraflow_gate::DEFAULT_RESOURCE_GROUP,
        DEFAULT_AUDIT_LOG_NAME,
    )
}
