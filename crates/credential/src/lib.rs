//! Entra ID credentials for jobs and people, with a token cache that never hands out
//! a stale token and never fails while a valid one is cached.
//!
//! **For:** getting access tokens at runtime — a service principal with a secret or a
//! certificate, workload identity (a federated token file, re-read on every exchange),
//! managed identity (IMDS or App Service), a person's device-code sign-in — and the
//! chain ([`DefaultCredential`]) that picks among them from the environment exactly as
//! azure-identity does. **Not for:** validating tokens (the resource does that) or
//! issuing them (that is `entraflow-authority`, or Entra ID itself).
//!
//! # Design
//! Every credential owns a [`TokenCache`] keyed by (tenant, client, scopes, claims).
//! The cache is generic over *how* a token is fetched and contains no HTTP: its rules
//! (refresh at `refresh_on`, single-flight, serve-while-valid with jittered backoff,
//! never inside the safety margin) are unit-tested with a fake clock and a fake
//! source. Credentials are async ([`TokenCredential`]); [`BlockingCredential`] is the
//! synchronous facade for Python and TensorFlow, with one runtime per process so that
//! it is safe after `fork()` (see [`blocking`](BlockingCredential)).
//!
//! Configuration comes from an [`Environment`]: the process environment, optionally
//! over an env file such as the local authority's `<data-dir>/env`, or explicit pairs.
//! [`doctor`] turns a failure (or a resource's 403) into one plain diagnosis.
//!
//! Failures are a typed [`CredentialError`]: an authority that refuses
//! (`AuthenticationRejected`, classified by AADSTS code), an identity not assigned to
//! this host, an authority that cannot be reached (naming the URL), throttling,
//! misconfiguration (naming the variable), and a chain's per-credential report.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use entraflow_credential::{AccessToken, CacheKey, RefreshPolicy, TokenCache};
//! use entraflow_core::Secret;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cache = TokenCache::new(RefreshPolicy::default());
//! let key = CacheKey { tenant: "t".into(), client: "c".into(),
//!                      scopes: "https://storage.azure.com/.default".into(), claims: None };
//! let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
//! let fetch = move || async move {
//!     Ok(AccessToken { token: Secret::new("eyJ..."), expires_on: now + 3600,
//!                      refresh_on: 0, token_type: "Bearer".into() })
//! };
//! let token = cache.get(&key, fetch).await.unwrap();
//! // A one-hour token is refreshed 5 minutes before it expires.
//! assert_eq!(token.refresh_on, now + 3600 - 300);
//! // The second call is served from the cache.
//! assert!(cache.fresh(&key).is_some());
//! # let _ = Duration::ZERO;
//! # });
//! ```
#![forbid(unsafe_code)]

mod assertion;
mod authority;
mod blocking;
mod cache;
mod chain;
pub mod claims;
mod confidential;
mod device_code;
pub mod doctor;
mod environment;
mod error;
mod http;
mod managed_identity;
mod shared;
mod token;
mod vars;

pub use authority::{AuthorityHost, ENTRAFLOW_ALLOW_HTTP_AUTHORITY};
pub use blocking::{BlockingCredential, process_runtime};
pub use cache::{CacheKey, Clock, RefreshPolicy, SystemClock, TokenCache};
pub use chain::{ChainedCredential, DefaultCredential, IMDS_PROBE_CONNECT_TIMEOUT};
pub use confidential::{
    CertificateOptions, ClientCertificateCredential, ClientSecretCredential, CredentialOptions,
    WorkloadIdentityCredential,
};
pub use device_code::{
    AZURE_CLI_CLIENT_ID, DeveloperLoginCredential, DeviceCodeCredential, DeviceCodeInfo,
    LOGIN_CACHE_FILE, LoginCache, StoredLogin, default_public_client_id,
};
pub use environment::EnvironmentCredential;
pub use error::CredentialError;
pub use managed_identity::{
    IMDS_HOST, ManagedIdentityCredential, ManagedIdentityId, ManagedIdentityOptions,
};
pub use shared::SharedTokenStore;
pub use token::{AccessToken, TokenCredential, TokenFuture, TokenRequest};
pub use vars::Environment;
