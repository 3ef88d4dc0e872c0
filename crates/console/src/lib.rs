//! The security team's web console: the audit log read in a browser, by people
//! who sign in with Entra and hold a role that lets them.
//!
//! Design in brief:
//! - **Sign-in** ([`oidc`](crate) module): the OpenID Connect authorization code
//!   flow with PKCE, as a confidential web client, against the local authority
//!   (the console registers itself there, [`Client::RegisterLocally`]) or any
//!   Entra tenant ([`Client::Registered`]). The ID token is verified by the
//!   gate's own token verifier (signature via JWKS, `iss`, `aud`, `exp`), then
//!   its `nonce`; `state` binds the answer to the browser that asked.
//! - **Sessions**: server-side; the browser holds a random id in an
//!   `HttpOnly`, `Secure`, `SameSite=Lax`, `__Host-` cookie; sign-out is a POST
//!   carrying the session's CSRF token.
//! - **Authorization**: every page needs the data action
//!   [`entraflow_rbac::action::audit::READ`] at the audit log's scope
//!   (`…/providers/Entraflow.Audit/auditLogs/default`), decided by the same
//!   `Authorizer` as the gates; the console creates the custom role
//!   [`READER_ROLE`] ("Audit Log Reader") that grants it. A page handler cannot
//!   run without a `Viewer`, which exists only after the decision and its
//!   audit record (chain [`AUDIT_LOG_ID`]) are made.
//! - **Pages**: server-rendered (maud), reading the store through the audit
//!   crate's APIs; charts by Chart.js, vendored and embedded; no network at run
//!   time. Model lineage is the CLI's (`entraflow audit lineage`); the run page
//!   points at it.
//! - **The run report** ([`report`]): the run page's sections as one
//!   self-contained HTML file (styles and Chart.js inlined), with the lineage,
//!   least-privilege suggestion and checkpoints its caller adds.
//!
//! Not for: changing anything. The console only reads (and appends its own
//! page-view records); role assignments are made with `entraflow role` or the
//! gate's admin API.
//!
//! ```no_run
//! # async fn f() -> Result<(), entraflow_console::ConsoleError> {
//! use entraflow_console::{Console, ConsoleConfig};
//! let config = ConsoleConfig::new("/home/me/.entraflow", "https://127.0.0.1:8443", "<tenant id>");
//! let console = Console::bind(config).await?; // registers itself in the local tenant
//! console.write_env_file()?;
//! println!("console ready: {}", console.url());
//! console.run(std::future::pending()).await
//! # }
//! ```
#![forbid(unsafe_code)]

mod access;
mod assets;
mod config;
mod error;
mod evidence;
mod oidc;
mod pages;
mod provision;
pub mod report;
mod server;
mod session;

pub use access::{PAGE_VIEW, SIGN_IN, SIGN_IN_REFUSED};
pub use assets::{CHART_JS_SHA256, CHART_JS_VERSION};
pub use config::{
    AUDIT_LOG_ID, CALLBACK_PATH, CONSOLE_ENV_FILE, Client, ConsoleConfig, DEFAULT_AUDIT_LOG_NAME,
    SIGNED_OUT_PATH, SignInConfig, default_audit_scope,
};
pub use error::ConsoleError;
pub use provision::{APP_DISPLAY_NAME, APP_IDENTIFIER_URI, READER_ROLE};
pub use server::Console;
