//! The OIDC UserInfo endpoint. Entra publishes Microsoft Graph's
//! (`https://graph.microsoft.com/oidc/userinfo`), which takes a Graph access
//! token; offline there is no Graph, so the authority answers at `/oidc/userinfo`
//! itself, for the Graph tokens it issues to signed-in users (what a sign-in with
//! only `openid profile` scopes gets). It returns what Entra's does when the
//! directory has it: `sub` (the id token's pairwise subject) and `name`; users
//! here have no mail attribute, so never `email`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use entraflow_core::claims::{v1_issuer, v2_issuer};
use serde_json::{Value, json};

use crate::authority::Authority;
use crate::resource::BUILT_IN;
use crate::store::now;

/// Microsoft Graph's application id, the `aud` of v2-style Graph tokens.
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

impl Authority {
    /// Verifies a token this authority signed: RS256 by a published key (by
    /// `kid`), `iss` one of this host's issuers for the token's own `tid`, and
    /// (when `check_exp`) not expired. Returns its claims, or why not.
    pub(crate) fn verify_issued(&self, token: &str, check_exp: bool) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| format!("the token is not a JWT ({e})"))?;
        let kid = header
            .kid
            .ok_or_else(|| "the token header has no kid".to_owned())?;
        let ring = self.key_ring().map_err(|e| e.to_string())?;
        let key = ring
            .current(now())
            .find(|k| k.kid == kid)
            .ok_or_else(|| format!("no published signing key has kid '{kid}'"))?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        validation.validate_exp = check_exp;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Value>(token, &key.decoding_key(), &validation)
            .map_err(|e| format!("the token does not verify ({e})"))?
            .claims;
        let tid = claims["tid"].as_str().unwrap_or_default();
        let issuers = [v1_issuer(tid), v2_issuer(&self.host, tid)];
        if !issuers.iter().any(|i| claims["iss"] == *i)
            || self.store.find_tenant(tid).ok().flatten().is_none()
        {
            return Err(format!(
                "the token's issuer '{}' is not this authority's for a tenant it knows",
                claims["iss"].as_str().unwrap_or_default()
            ));
        }
        Ok(claims)
    }

    /// The claims UserInfo returns for a bearer token, or why it is refused.
    fn userinfo(&self, token: &str) -> Result<Value, String> {
        let claims = self.verify_issued(token, true)?;
        let graph = BUILT_IN
            .iter()
            .find(|b| b.app_id == GRAPH_APP_ID)
            .map(|b| b.uri)
            .unwrap_or_default();
        let aud = claims["aud"].as_str().unwrap_or_default();
        if !(entraflow_core::scope::same_resource(aud, graph) || aud == GRAPH_APP_ID) {
            return Err(format!(
                "the UserInfo endpoint takes a Microsoft Graph token (sign in with scope 'openid profile'); this one is for '{aud}'"
            ));
        }
        if claims["idtyp"] != "user" {
            return Err("the token is an application's, not a signed-in user's".to_owned());
        }
        let oid = claims["oid"].as_str().unwrap_or_default();
        let user = self
            .store
            .user_by_object_id(oid)
            .map_err(|e| format!("the directory could not be read ({e})"))?;
        let name = user
            .map(|u| u.display_name)
            .ok_or_else(|| "the signed-in user no longer exists".to_owned())?;
        Ok(json!({ "sub": claims["sub"], "name": name }))
    }
}

/// `GET` or `POST /oidc/userinfo` with `Authorization: Bearer <Graph token>`.
/// Refusals are Graph's: 401 `InvalidAuthenticationToken` with a bearer challenge.
pub(crate) async fn userinfo(State(a): State<Arc<Authority>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim())
        })
        .filter(|t| !t.is_empty());
    let answer = match bearer {
        None => Err("Access token is empty: send 'Authorization: Bearer <token>'.".to_owned()),
        Some(token) => a
            .userinfo(token)
            .map_err(|why| format!("Access token validation failure: {why}.")),
    };
    match answer {
        Ok(claims) => ([(header::CACHE_CONTROL, "no-store")], Json(claims)).into_response(),
        Err(message) => {
            tracing::info!(reason = %message, "userinfo refused");
            let challenge = format!(
                "Bearer realm=\"\", authorization_uri=\"{}/common/oauth2/authorize\", client_id=\"{GRAPH_APP_ID}\"",
                a.host()
            );
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
                Json(json!({"error": {"code": "InvalidAuthenticationToken", "message": message}})),
            )
                .into_response()
        }
    }
}
