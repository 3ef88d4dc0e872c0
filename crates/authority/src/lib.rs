//! An offline, strict, Microsoft Entra ID–compatible authority: the token
//! service that jobs, people and managed identities get tokens from when there
//! is no cloud, and that real Entra ID replaces in production by changing
//! `AZURE_AUTHORITY_HOST` and the tenant.
//!
//! What it is for: speaking Entra's protocols byte for byte so unmodified
//! clients (azure-identity, MSAL, the Azure SDKs) work against it — the v1 and
//! v2 token endpoints (client secret, certificate assertion, workload identity
//! federation, device code, authorization code with PKCE, refresh token), the
//! authorization endpoint with its sign-in page, end-session and UserInfo, OIDC
//! discovery and JWKS, and the IMDS and App Service managed-identity endpoints —
//! and refusing everything Entra would refuse, with Entra's `AADSTS` codes.
//!
//! What it is not for: validating tokens at a resource (that is the gate's job,
//! against the JWKS published here), or being a production identity provider.
//! Administration is local: the CLI opens the same SQLite database (file
//! permissions are the authentication); nothing administrative is on the network.
//!
//! The pieces: [`Store`] (tenant directory in SQLite, admin operations in the
//! shape of `az ad`), [`Authority`] (HTTP-free token logic), [`serve`] (HTTPS and
//! the plain-HTTP managed-identity listener, plus the env files).
//!
//! Auditing (`entraflow-audit`): every token issued or refused by a served
//! authority is one `token.issued` / `token.refused` event on chain
//! [`AUDIT_LOG_ID`], durable before the answer leaves (if the log cannot take it,
//! the client gets `temporarily_unavailable`, never an unaudited token); the
//! record names the token by its `uti`, never its bytes. Every mutating [`Store`]
//! method notes its change, and [`AdminAudit`] writes those as `admin.change`
//! events on chain [`ADMIN_LOG_ID`] (the CLI does so before it exits).
//!
//! ```
//! use std::sync::Arc;
//! use entraflow_authority::{Authority, EndpointVersion, NewApplication, SecretExpiry, Store, TokenRequest};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let app = store.create_application(&NewApplication { display_name: "trainer".into(), ..Default::default() })?;
//! store.create_service_principal(&app.app_id)?;
//! let secret = store.reset_secret(&app.app_id, SecretExpiry::Years(1), false)?;
//!
//! let http = entraflow_tls::https_client(None)?;
//! let authority = Authority::new(Arc::new(store), "https://127.0.0.1:8443", http, Default::default())?;
//! let body = serde_urlencoded::to_string([
//!     ("grant_type", "client_credentials"),
//!     ("client_id", app.app_id.as_str()),
//!     ("client_secret", secret.password.as_str()),
//!     ("scope", "https://storage.azure.com/.default"),
//! ])?;
//! let request = TokenRequest::parse(body.as_bytes(), None)?;
//! let answer = tokio::runtime::Runtime::new()?
//!     .block_on(authority.token(&secret.tenant, EndpointVersion::V2, &request))?;
//! assert_eq!(answer["token_type"], "Bearer");
//!
//! let wrong = TokenRequest::parse(body.replace("client_secret=", "client_secret=x").as_bytes(), None)?;
//! let refused = tokio::runtime::Runtime::new()?
//!     .block_on(authority.token(&secret.tenant, EndpointVersion::V2, &wrong))
//!     .unwrap_err();
//! assert_eq!(refused.code.code(), 7000215);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod admin;
mod admin_audit;
mod assertion;
mod authcode;
mod authority;
mod decision;
mod device;
mod devicelogin;
mod directory;
mod discovery;
mod error;
mod federation;
mod imds;
mod issue;
mod keys;
mod lockout;
mod password;
mod redirect_uri;
mod resource;
mod secrets;
mod server;
mod signin;
mod store;
mod userinfo;

#[cfg(test)]
mod fuzz;

pub use admin::{
    AppCredentialInfo, AppRole, Application, CertificateCredential, FederatedCredential, Group,
    Lifetime, MAX_FEDERATED_CREDENTIALS, ManagedIdentity, NewApplication, PasswordCredential,
    RoleAssignment, SecretExpiry, ServicePrincipal, TenantInfo, User,
};
pub use admin_audit::{ADMIN_LOG_ID, AdminAudit, AdminChange, os_user};
pub use authority::{Authority, AuthorityOptions, MAX_BODY, TokenRequest};
pub use directory::{DirectoryObject, PendingSignIn, PrincipalKind};
pub use error::{AuthorityError, OAuthError};
pub use issue::EndpointVersion;
pub use keys::{KeyRing, Rotation, SigningKey};
pub use lockout::LockoutPolicy;
pub use redirect_uri::RedirectUris;
pub use resource::{BUILT_IN, BuiltIn, Resource};
pub use server::{
    AUDIT_LOG_ID, CA_BUNDLE_FILE, ENV_FILE, IMDS_ENV_FILE, ServerConfig, ServerHandle, serve,
};
pub use store::{DB_FILE, ManagedIdentityInfo, Store, Tenant};
