//! Claims of Entra ID access tokens, v1 and v2 shapes in one struct.
//!
//! v1 tokens (Storage, SQL, ARM accept these) carry `appid`/`appidacr` and
//! `iss = https://sts.windows.net/{tid}/`; v2 tokens carry `azp`/`azpacr` and
//! `iss = {host}/{tid}/v2.0`. Which one a client gets is chosen by the resource.

use serde::{Deserialize, Serialize};

/// The claims of an access token. Optional claims are absent, not empty.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct AccessTokenClaims {
    /// Audience: the resource id or application id URI.
    pub aud: String,
    /// Issuer; bound to `tid`.
    pub iss: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expiry.
    pub exp: i64,
    /// Tenant id.
    pub tid: String,
    /// Object id of the principal (service principal, user, managed identity).
    pub oid: String,
    /// Subject: for app-only tokens, the service principal's object id.
    pub sub: String,
    /// `1.0` or `2.0`.
    pub ver: String,
    /// Unique token identifier.
    pub uti: String,
    /// Client application id (v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// How the client authenticated (v1): `0` public, `1` secret, `2` certificate or assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appidacr: Option<String>,
    /// Client application id (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// How the client authenticated (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azpacr: Option<String>,
    /// `app` for app-only tokens, `user` for delegated ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idtyp: Option<String>,
    /// App roles assigned to the principal on the resource. Absent when none are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Group object ids, where the application asks for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Directory role template ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wids: Option<Vec<String>>,
    /// Delegated scopes (user tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    /// User principal name (v1 user tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    /// Preferred username (v2 user tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// Display name of the user or application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Managed identity resource id (`xms_mirid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xms_mirid: Option<String>,
}

impl AccessTokenClaims {
    /// The client application id, whichever token version carries it.
    pub fn client_app_id(&self) -> Option<&str> {
        self.appid.as_deref().or(self.azp.as_deref())
    }
}

/// Issuer of v1 tokens for a tenant.
pub fn v1_issuer(tenant_id: &str) -> String {
    format!("https://sts.windows.net/{tenant_id}/")
}

/// Issuer of v2 tokens for a tenant at an authority host.
pub fn v2_issuer(authority_host: &str, tenant_id: &str) -> String {
    format!("{}/{tenant_id}/v2.0", authority_host.trim_end_matches('/'))
}
