//! The token a credential hands out, what a caller asks for, and the credential trait.

use std::future::Future;
use std::pin::Pin;

use entraflow_core::{Secret, fingerprint};

use crate::error::CredentialError;

/// An access token and when to stop using it. Times are Unix seconds, like azure-core's
/// `AccessToken.expires_on` and `AccessTokenInfo.refresh_on`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The bearer token. Never printed; refer to it with [`AccessToken::fingerprint`].
    pub token: Secret,
    /// When the authority stops accepting it.
    pub expires_on: i64,
    /// When the cache starts refreshing it proactively (see [`crate::RefreshPolicy`]).
    pub refresh_on: i64,
    /// Normally `Bearer`.
    pub token_type: String,
}

impl AccessToken {
    /// `sha256:` + 12 hex digits: safe to log.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.token.expose())
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &self.fingerprint())
            .field("expires_on", &self.expires_on)
            .field("refresh_on", &self.refresh_on)
            .field("token_type", &self.token_type)
            .finish()
    }
}

/// What a caller asks for: the azure-core `get_token(*scopes, claims=, tenant_id=)` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TokenRequest {
    /// Scopes of one resource, e.g. `https://storage.azure.com/.default`.
    pub scopes: Vec<String>,
    /// Extra claims (a CAE challenge), passed through to the authority.
    pub claims: Option<String>,
    /// A tenant other than the credential's own.
    pub tenant_id: Option<String>,
}

impl TokenRequest {
    /// A request for these scopes, no claims, the credential's tenant.
    pub fn new<S: AsRef<str>>(scopes: &[S]) -> Self {
        Self {
            scopes: scopes.iter().map(|s| s.as_ref().to_owned()).collect(),
            claims: None,
            tenant_id: None,
        }
    }

    /// The scopes sorted and space-joined: the form both the cache key and the
    /// `scope` form field use.
    pub fn scope_string(&self) -> String {
        let mut scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        scopes.dedup();
        scopes.join(" ")
    }

    /// The one resource the scopes name (for IMDS and App Service, which take `resource`).
    pub fn resource(&self) -> Result<String, CredentialError> {
        entraflow_core::scope::single_resource(&self.scope_string()).map_err(|e| {
            CredentialError::Misconfigured {
                variable: "scope".into(),
                hint: e.to_string(),
            }
        })
    }
}

/// A boxed future, so credentials can sit in a chain as trait objects.
pub type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AccessToken, CredentialError>> + Send + 'a>>;

/// Something that produces access tokens. Implementations cache internally: calling
/// `get_token` for every request is the intended use.
pub trait TokenCredential: Send + Sync {
    /// A token for `request`, from the cache when it is still fresh.
    fn get_token<'a>(&'a self, request: &'a TokenRequest) -> TokenFuture<'a>;

    /// A cached token that needs no refresh yet, without touching the network or
    /// needing a runtime. The blocking facade's fast path.
    fn cached_token(&self, request: &TokenRequest) -> Option<AccessToken>;

    /// The credential's name as azure-identity spells it, for chain reports.
    fn name(&self) -> &'static str;
}
