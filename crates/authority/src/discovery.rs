//! OpenID Connect discovery documents (v1 and v2) and the JWKS, as Entra serves
//! them, advertising only what this authority serves: every endpoint URL in them
//! answers, `response_types_supported` is `code` alone (no implicit or hybrid
//! flow), and front-channel logout is not claimed (apps get no logout calls).
//! `userinfo_endpoint` is the authority's own `/oidc/userinfo`: Entra's is on
//! Microsoft Graph, which does not exist offline.

use serde_json::{Value, json};

use crate::authority::Authority;
use crate::error::{AuthorityError, OAuthError};
use crate::store::now;

/// The claims the authority's id tokens carry.
const ID_TOKEN_CLAIMS: [&str; 13] = [
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "auth_time",
    "nonce",
    "name",
    "preferred_username",
    "oid",
    "tid",
    "ver",
];

impl Authority {
    /// `/{tenant}/v2.0/.well-known/openid-configuration`. Tenant-independent
    /// segments get Entra's `{tenantid}` placeholder issuer.
    pub fn openid_configuration_v2(&self, segment: &str) -> Result<Value, OAuthError> {
        let (tid, issuer_tid) = self.discovery_tenant(segment)?;
        let h = &self.host;
        Ok(json!({
            "token_endpoint": format!("{h}/{tid}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{h}/{tid}/discovery/v2.0/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": format!("{h}/{issuer_tid}/v2.0"),
            "request_uri_parameter_supported": false,
            "userinfo_endpoint": format!("{h}/oidc/userinfo"),
            "authorization_endpoint": format!("{h}/{tid}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{h}/{tid}/oauth2/v2.0/devicecode"),
            "http_logout_supported": false,
            "frontchannel_logout_supported": false,
            "end_session_endpoint": format!("{h}/{tid}/oauth2/v2.0/logout"),
            "claims_supported": ID_TOKEN_CLAIMS,
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }))
    }

    /// `/{tenant}/.well-known/openid-configuration` (v1).
    pub fn openid_configuration_v1(&self, segment: &str) -> Result<Value, OAuthError> {
        let (tid, issuer_tid) = self.discovery_tenant(segment)?;
        let h = &self.host;
        Ok(json!({
            "token_endpoint": format!("{h}/{tid}/oauth2/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{h}/{tid}/discovery/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid"],
            "issuer": format!("https://sts.windows.net/{issuer_tid}/"),
            "authorization_endpoint": format!("{h}/{tid}/oauth2/authorize"),
            "device_authorization_endpoint": format!("{h}/{tid}/oauth2/devicecode"),
            "http_logout_supported": false,
            "frontchannel_logout_supported": false,
            "end_session_endpoint": format!("{h}/{tid}/oauth2/logout"),
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }))
    }

    fn discovery_tenant(&self, segment: &str) -> Result<(String, String), OAuthError> {
        if ["common", "organizations", "consumers"]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(segment))
        {
            return Ok((segment.to_owned(), "{tenantid}".to_owned()));
        }
        let t = self.tenant(segment, false)?;
        Ok((t.id.clone(), t.id))
    }

    /// The JWKS: every key not yet retired. `v2` decides the `issuer` field.
    pub fn jwks(&self, segment: &str, v2: bool) -> Result<Value, OAuthError> {
        let (_, issuer_tid) = self.discovery_tenant(segment)?;
        let issuer = if v2 {
            format!("{}/{issuer_tid}/v2.0", self.host)
        } else {
            format!("https://sts.windows.net/{issuer_tid}/")
        };
        let ring = self
            .key_ring()
            .map_err(|e: AuthorityError| OAuthError::from(e))?;
        let keys: Vec<Value> = ring.current(now()).map(|k| k.jwk(&issuer)).collect();
        Ok(json!({ "keys": keys }))
    }
}
