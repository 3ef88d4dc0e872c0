//! The device authorization grant for people, and refresh tokens.
//!
//! `/devicecode` hands out a `device_code` (stored hashed) and a short
//! `user_code`; the user approves at `verification_uri` (or an admin runs
//! `entraflow authority approve`); the client polls the token endpoint. Refresh
//! tokens are opaque, stored hashed, single-use: each use returns a new one.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entraflow_core::Aadsts;
use entraflow_core::scope::OIDC_SCOPES;
use serde_json::{Value, json};

use crate::authority::{Authority, TokenRequest};
use crate::decision::Decision;
use crate::error::{AuthorityError, OAuthError};
use crate::issue::{self, EndpointVersion, Principal, SignIn};
use crate::store::{
    DeviceCodeRecord, DevicePoll, RefreshTokenRecord, SpentRefreshToken, Tenant, now,
};

/// How long a device code lives.
pub(crate) const DEVICE_CODE_LIFETIME: i64 = 900;
/// How long a refresh token lives (Entra: 90 days).
pub(crate) const REFRESH_TOKEN_LIFETIME: i64 = 90 * 86_400;
/// What a user grant verified and asks for: the client (and how it
/// authenticated: `0` public, `1` secret, `2` certificate or assertion), the
/// signed-in user, the scopes, and what the id token says about the sign-in.
pub(crate) struct UserGrant<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) client_acr: &'static str,
    pub(crate) user_id: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) sign_in: SignIn,
}

/// Letters that cannot be confused with each other when typed.
const USER_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).expect("the OS random generator failed");
    URL_SAFE_NO_PAD.encode(b)
}

pub(crate) fn sha256(v: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v.as_bytes())
        .as_ref()
        .to_vec()
}

fn user_code() -> String {
    let mut b = [0u8; 9];
    aws_lc_rs::rand::fill(&mut b).expect("the OS random generator failed");
    b.iter()
        .map(|x| USER_CODE_ALPHABET[usize::from(*x) % USER_CODE_ALPHABET.len()] as char)
        .collect()
}

/// The delegated scopes (`scp`) a user token carries for the requested scopes.
fn delegated_scp(scope: &str) -> String {
    let perms: Vec<&str> = scope
        .split_whitespace()
        .filter(|s| !OIDC_SCOPES.contains(s))
        .filter_map(|s| s.rsplit_once('/').map(|(_, p)| p))
        .filter(|p| *p != ".default")
        .collect();
    if perms.is_empty() {
        "user_impersonation".into()
    } else {
        perms.join(" ")
    }
}

impl Authority {
    /// `POST /{tenant}/oauth2/v2.0/devicecode` (and v1 `/oauth2/devicecode` with `resource`).
    pub fn device_authorization(
        &self,
        segment: &str,
        version: EndpointVersion,
        req: &TokenRequest,
    ) -> Result<Value, OAuthError> {
        let tenant = self.tenant(segment, true)?;
        let client_id = req.require("client_id")?;
        let scope = match version {
            EndpointVersion::V2 => req
                .get("scope")
                .unwrap_or("openid profile offline_access")
                .to_owned(),
            EndpointVersion::V1 => match req.get("resource") {
                Some(r) => format!(
                    "{} openid offline_access",
                    entraflow_core::scope::default_scope(r)
                ),
                None => "openid profile offline_access".into(),
            },
        };
        let public = self
            .store
            .tenant_application(&tenant.id, client_id)?
            .map(|app| app.public_client);
        match public {
            None => {
                return Err(OAuthError::new(
                    Aadsts::AppNotFound,
                    format!(
                        "Application with identifier '{client_id}' was not found in the directory '{}'.",
                        tenant.id
                    ),
                ));
            }
            Some(false) => {
                return Err(OAuthError::new(
                    Aadsts::NoCredential,
                    format!(
                        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'. Application '{client_id}' is not a public client; create it with --public-client for device code sign-in."
                    ),
                ));
            }
            Some(true) => {}
        }
        let device_code = random_token();
        let code = user_code();
        let expires_at = now() + DEVICE_CODE_LIFETIME;
        self.store.insert_device_code(&DeviceCodeRecord {
            sha256: &sha256(&device_code),
            user_code: &code,
            tenant_id: &tenant.id,
            client_id: &client_id.to_ascii_lowercase(),
            scope: &scope,
            expires_at,
        })?;
        let uri = format!("{}/devicelogin", self.host);
        let message = format!(
            "To sign in, use a web browser to open the page {uri} and enter the code {code} to authenticate."
        );
        let mut body = json!({
            "user_code": code,
            "device_code": device_code,
            "verification_uri": uri,
            "expires_in": DEVICE_CODE_LIFETIME,
            "interval": self.options.device_code_interval,
            "message": message,
        });
        if version == EndpointVersion::V1 {
            body["verification_url"] = json!(uri);
            body["expires_in"] = json!(DEVICE_CODE_LIFETIME.to_string());
            body["interval"] = json!(self.options.device_code_interval.to_string());
        }
        Ok(body)
    }

    pub(crate) fn device_code_grant(
        &self,
        segment: &str,
        version: EndpointVersion,
        req: &TokenRequest,
        decision: &mut Decision,
    ) -> Result<Value, OAuthError> {
        let tenant = self.tenant(segment, true)?;
        decision.tenant = Some(tenant.id.clone());
        let device_code = req.require("device_code")?;
        let client_id = req
            .get("client_id")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let poll_error = |code: Aadsts, msg: &str| OAuthError {
            code,
            description: msg.into(),
            status: Some(400),
        };
        let (scope, user_id) =
            match self
                .store
                .poll_device_code(&sha256(device_code), &tenant.id, &client_id)?
            {
                DevicePoll::Approved { scope, user_id } => (scope, user_id),
                DevicePoll::Unknown => {
                    return Err(poll_error(
                        Aadsts::BadVerificationCode,
                        "Verification code is not recognized for this client.",
                    ));
                }
                DevicePoll::Expired => {
                    return Err(poll_error(
                        Aadsts::ExpiredToken,
                        "The device code has expired; start the sign-in again.",
                    ));
                }
                DevicePoll::Pending => {
                    return Err(poll_error(
                        Aadsts::AuthorizationPending,
                        "Authorization pending: the user has not yet completed sign-in.",
                    ));
                }
                DevicePoll::Declined => {
                    return Err(poll_error(
                        Aadsts::AuthorizationDeclined,
                        "The end user declined the sign-in.",
                    ));
                }
            };
        let user_id = user_id.unwrap_or_default();
        let requested = match version {
            EndpointVersion::V2 => req.get("scope").map(str::to_owned).unwrap_or(scope),
            EndpointVersion::V1 => scope,
        };
        self.user_tokens(
            &tenant,
            version,
            &UserGrant {
                client_id: &client_id,
                client_acr: "0",
                user_id: &user_id,
                scope: &requested,
                sign_in: SignIn::default(),
            },
            decision,
        )
    }

    pub(crate) async fn refresh_token_grant(
        &self,
        segment: &str,
        version: EndpointVersion,
        req: &TokenRequest,
        decision: &mut Decision,
    ) -> Result<Value, OAuthError> {
        let tenant = self.tenant(segment, true)?;
        decision.tenant = Some(tenant.id.clone());
        let token = req.require("refresh_token")?;
        let client_id = req.client_id()?.to_ascii_lowercase();
        let hash = sha256(token);
        // Single use: a refresh token is spent whether or not the rest succeeds.
        let row = self.store.take_refresh_token(&hash, &tenant.id)?;
        let expired = || {
            OAuthError::new(
                Aadsts::RefreshTokenExpired,
                "The refresh token has expired, was already used, or was revoked. Sign in again.",
            )
        };
        let SpentRefreshToken {
            client_id: owner,
            user_id,
            scope,
            expires_at,
            confidential,
        } = row.ok_or_else(expired)?;
        if owner != client_id || expires_at <= now() {
            return Err(expired());
        }
        // A token issued to a confidential client is redeemed only with its credential.
        let client_acr = if confidential {
            self.authenticate_client(&tenant, segment, req, decision)
                .await?
                .acr
        } else {
            "0"
        };
        let requested = match version {
            EndpointVersion::V2 => req.get("scope").map(str::to_owned).unwrap_or(scope),
            EndpointVersion::V1 => req
                .get("resource")
                .map(|r| format!("{} offline_access", entraflow_core::scope::default_scope(r)))
                .unwrap_or(scope),
        };
        self.user_tokens(
            &tenant,
            version,
            &UserGrant {
                client_id: &owner,
                client_acr,
                user_id: &user_id,
                scope: &requested,
                sign_in: SignIn::default(),
            },
            decision,
        )
    }

    /// Access token (+ refresh token with `offline_access`, + id token and
    /// `client_info` with `openid`) for a user signed in to a client.
    pub(crate) fn user_tokens(
        &self,
        tenant: &Tenant,
        version: EndpointVersion,
        grant: &UserGrant<'_>,
        decision: &mut Decision,
    ) -> Result<Value, OAuthError> {
        let (client_id, client_acr, user_id, scope) = (
            grant.client_id,
            grant.client_acr,
            grant.user_id,
            grant.scope,
        );
        let user = self.store.user_by_object_id(user_id)?;
        let (upn, name) = user
            .map(|u| (u.user_principal_name, u.display_name))
            .ok_or_else(|| {
                OAuthError::new(
                    Aadsts::RefreshTokenExpired,
                    "The signed-in user no longer exists.",
                )
            })?;
        let has_resource = scope.split_whitespace().any(|s| !OIDC_SCOPES.contains(&s));
        let scope_for_resource = if has_resource {
            scope.to_owned()
        } else {
            format!("{scope} https://graph.microsoft.com/User.Read")
        };
        let resource_req = TokenRequest::parse(
            serde_urlencoded::to_string([("scope", scope_for_resource.as_str())])
                .unwrap_or_default()
                .as_bytes(),
            None,
        )?;
        let resource = self
            .requested_resource(tenant, EndpointVersion::V2, &resource_req, false)?
            .0;
        let principal = Principal::User {
            oid: user_id.to_owned(),
            upn: upn.clone(),
            name: name.clone(),
            app_id: client_id.to_owned(),
            acr: client_acr,
            scp: delegated_scp(&scope_for_resource),
        };
        let mut body = self.issue(tenant, version, &resource, &principal, decision)?;
        let scopes: Vec<&str> = scope.split_whitespace().collect();
        body["scope"] = json!(
            scope_for_resource
                .split_whitespace()
                .filter(|s| !OIDC_SCOPES.contains(s))
                .chain(scopes.iter().copied().filter(|s| OIDC_SCOPES.contains(s)))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if scopes.contains(&"offline_access") {
            let refresh = random_token();
            self.store.insert_refresh_token(&RefreshTokenRecord {
                sha256: &sha256(&refresh),
                tenant_id: &tenant.id,
                client_id,
                user_id,
                scope,
                expires_at: now() + REFRESH_TOKEN_LIFETIME,
                confidential: client_acr != "0",
            })?;
            body["refresh_token"] = json!(refresh);
        }
        if scopes.contains(&"openid") {
            let key = self.key_ring()?.active.clone();
            body["id_token"] = json!(issue::id_token(
                &key,
                &self.host,
                tenant,
                user_id,
                &upn,
                &name,
                client_id,
                &grant.sign_in
            )?);
            body["client_info"] = json!(issue::client_info(user_id, &tenant.id));
        }
        Ok(body)
    }

    /// Approves or denies a pending user code for `upn` once their password is
    /// right (argon2id under smart lockout: call it off the async workers). A
    /// refused password is the caller's to record from `decision`.
    pub(crate) fn approve_with_password(
        &self,
        user_code: &str,
        upn: &str,
        password: &str,
        deny: bool,
        decision: &mut Decision,
    ) -> Result<(), DeviceLoginError> {
        // Bounded: the typed name goes into the audit record.
        decision.principal_name = Some(upn.chars().take(256).collect());
        let user = self.store.user_by_upn(upn)?;
        if let Some((user, _)) = &user {
            decision.principal = Some(user.id.clone());
        }
        let stored = user.as_ref().and_then(|(_, hash)| hash.as_deref());
        self.check_password(upn, stored, password, decision.source_ip())
            .map_err(DeviceLoginError::Refused)?;
        self.store.answer_device_code(user_code, upn, deny)?;
        Ok(())
    }
}

/// Why the device-login page did not approve.
#[derive(Debug)]
pub(crate) enum DeviceLoginError {
    /// A wrong password or a lockout: audited as a refused sign-in.
    Refused(OAuthError),
    /// The code is unknown, expired or already answered.
    Code(AuthorityError),
}

impl From<AuthorityError> for DeviceLoginError {
    fn from(e: AuthorityError) -> Self {
        DeviceLoginError::Code(e)
    }
}

impl std::fmt::Display for DeviceLoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceLoginError::Refused(e) => write!(f, "{}", e.description),
            DeviceLoginError::Code(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_and_scp() {
        let c = user_code();
        assert_eq!(c.len(), 9);
        assert!(c.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        assert_eq!(
            delegated_scp("https://storage.azure.com/.default offline_access"),
            "user_impersonation"
        );
        assert_eq!(
            delegated_scp("api://x/Data.Read api://x/Data.Write openid"),
            "Data.Read Data.Write"
        );
    }
}
