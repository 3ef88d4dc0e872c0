//! Shared vocabulary of entraflow: the pieces of Microsoft Entra ID's protocol that
//! the authority, the credential library and the gate must agree on byte for byte.
//!
//! This crate holds *types and rules*, never I/O beyond writing owner-only files:
//! - [`aadsts`]: the `AADSTSnnnn` error codes, what each means and what to do about it,
//!   and the JSON error body Entra ID returns.
//! - [`claims`]: the claims of v1 and v2 access tokens.
//! - [`scope`]: turning `https://storage.azure.com/.default` into a resource.
//! - [`secret`]: [`Secret`] values that never print, and token fingerprints for logs.
//! - [`fsutil`]: files and directories only their owner can read.
//! - [`env`]: the environment variable names azure-identity and entraflow read.
//! - [`retry`]: the one retry policy (backoff with full jitter, server waits honoured).
//! - [`sqlite`]: versioned schemas, the one migration runner every database uses.
//!
//! ```
//! use entraflow_core::scope::resource_of_scope;
//! assert_eq!(resource_of_scope("https://storage.azure.com/.default").unwrap(), "https://storage.azure.com");
//! ```
#![forbid(unsafe_code)]

pub mod aadsts;
pub mod claims;
pub mod env;
pub mod fsutil;
pub mod retry;
pub mod scope;
pub mod secret;
pub mod sqlite;

pub use aadsts::{Aadsts, ErrorResponse};
pub use claims::AccessTokenClaims;
pub use secret::{Secret, fingerprint};

/// Resource id (audience) of Azure Storage, as Entra ID issues it in `aud`.
pub const STORAGE_RESOURCE: &str = "https://storage.azure.com";
/// Application id of the Azure Storage first-party application.
pub const STORAGE_APP_ID: &str = "e406a681-f3d4-42a8-90b6-c2b029497af1";
/// Resource id (audience) of Azure Database for PostgreSQL (and MySQL) flexible
/// server: what a client asks for to sign in with its token as the password.
pub const OSSRDBMS_RESOURCE: &str = "https://ossrdbms-aad.database.windows.net";
/// Application id of the "Azure OSSRDBMS Database" first-party application.
pub const OSSRDBMS_APP_ID: &str = "123cd850-d9df-40bd-94d5-c9f07b7fa203";
/// Client id of the Azure CLI, the first-party public client every tenant has: what a
/// person signs in with when no application of their own is configured.
pub const AZURE_CLI_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
/// Audience that a federated (workload identity) assertion must carry.
pub const FEDERATION_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The public cloud's authority host, used when `AZURE_AUTHORITY_HOST` is unset.
pub const PUBLIC_CLOUD_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// `client_assertion_type` for certificate and federated assertions.
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// `grant_type` of the device authorization grant.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
