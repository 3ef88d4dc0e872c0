//! Signing people in: the OpenID Connect authorization code flow with PKCE, as
//! a confidential web client of Entra (or of the local authority, which speaks
//! the same protocol).
//!
//! 1. [`Oidc::begin`] makes a fresh `state`, `nonce` and PKCE verifier (256
//!    random bits each) and the `/authorize` URL with the S256 challenge; the
//!    three values stay on the server, bound to the browser by a short-lived
//!    cookie holding a random sign-in id.
//! 2. [`Oidc::finish`] redeems the code at the token endpoint with the client
//!    secret and the verifier, and accepts the ID token only after the gate's
//!    token verifier has checked it (RS256 signature against the tenant's JWKS
//!    from discovery, `kid` cached and refetched as the gate does, `iss` bound to
//!    `tid`, `aud` = the console's client id, `exp`/`nbf`), and its `nonce` is
//!    the one this sign-in sent. The access token that comes with it is dropped
//!    unread; no token is ever logged.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entraflow_core::Secret;
use entraflow_gate::{TokenVerifier, VerifierConfig};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

/// What the console asks for: an ID token only (`profile` for the name).
pub(crate) const SCOPES: &str = "openid profile";

/// One sign-in between the redirect to `/authorize` and the callback.
#[derive(Debug, Clone)]
pub(crate) struct PendingSignIn {
    pub(crate) state: String,
    pub(crate) nonce: String,
    pub(crate) code_verifier: String,
    /// Where to go after signing in (a path on the console).
    pub(crate) next: String,
}

/// The person the ID token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Object id (`oid`): what role assignments name.
    pub(crate) oid: String,
    /// Tenant (`tid`).
    pub(crate) tenant: String,
    /// `name`, else `preferred_username`, else the oid.
    pub(crate) name: String,
    /// `preferred_username` (the UPN), when present.
    pub(crate) username: Option<String>,
    /// The ID token's `uti`, for the audit records of this session.
    pub(crate) uti: String,
    /// The ID token's `groups` claim, when the app registration asks for one
    /// (`groupMembershipClaims`); the local directory adds the rest.
    pub(crate) groups: Vec<String>,
}

/// Why a sign-in did not complete; the text is shown to the person.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignInError {
    /// The authority sent an error to the callback, or refused the code.
    #[error("the authority refused the sign-in: {error}: {description}")]
    Refused { error: String, description: String },
    /// The authority could not be reached or answered nonsense.
    #[error("the authority at {host} could not be used: {detail}")]
    Authority { host: String, detail: String },
    /// The ID token failed verification.
    #[error("the ID token was not accepted: {0}")]
    IdToken(String),
    /// The callback does not belong to a sign-in this browser started.
    #[error("{0}")]
    Forged(String),
}

#[derive(Debug, Deserialize)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
    issuer: String,
    /// RP-initiated logout (Entra's `/oauth2/v2.0/logout`), when offered.
    end_session_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenRefusal {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// The console's OpenID Connect client.
pub(crate) struct Oidc {
    authority_host: String,
    tenant: String,
    client_id: String,
    client_secret: Secret,
    redirect_uri: String,
    http: reqwest::Client,
    verifier: TokenVerifier,
    endpoints: tokio::sync::OnceCell<Arc<Discovery>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("authority_host", &self.authority_host)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// 256 random bits, base64url: 43 characters (a valid PKCE verifier too).
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 challenge of a PKCE verifier (RFC 7636 §4.2).
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

pub(crate) fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Oidc {
    pub(crate) fn new(
        authority_host: &str,
        tenant: &str,
        client_id: &str,
        client_secret: Secret,
        redirect_uri: String,
        http: reqwest::Client,
    ) -> Oidc {
        let mut config = VerifierConfig::new(authority_host, vec![tenant.to_owned()], None);
        // An ID token's audience is the client id, and nothing else.
        config.audiences = vec![client_id.to_owned()];
        Oidc {
            authority_host: authority_host.trim_end_matches('/').to_owned(),
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            client_secret,
            redirect_uri,
            verifier: TokenVerifier::new(config, http.clone()),
            http,
            endpoints: tokio::sync::OnceCell::new(),
        }
    }

    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    pub(crate) fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    pub(crate) fn authority_host(&self) -> &str {
        &self.authority_host
    }

    /// The tenant's discovery document, fetched once.
    async fn endpoints(&self) -> Result<Arc<Discovery>, SignInError> {
        self.endpoints
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/{}/v2.0/.well-known/openid-configuration",
                    self.authority_host, self.tenant
                );
                let fail = |detail: String| SignInError::Authority {
                    host: self.authority_host.clone(),
                    detail,
                };
                let answer = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| fail(format!("GET {url}: {e}")))?;
                if !answer.status().is_success() {
                    return Err(fail(format!("GET {url} answered {}", answer.status())));
                }
                let discovery: Discovery = answer
                    .json()
                    .await
                    .map_err(|e| fail(format!("the discovery document at {url}: {e}")))?;
                let issuer =
                    entraflow_core::claims::v2_issuer(&self.authority_host, &self.tenant);
                if discovery.issuer != issuer {
                    return Err(fail(format!(
                        "its discovery document names the issuer '{}', not '{issuer}': ID tokens from it would not verify; check the authority host and tenant",
                        discovery.issuer
                    )));
                }
                Ok(Arc::new(discovery))
            })
            .await
            .cloned()
    }

    /// A new sign-in and the authorization URL to send the browser to.
    pub(crate) async fn begin(&self, next: String) -> Result<(PendingSignIn, String), SignInError> {
        let endpoints = self.endpoints().await?;
        let pending = PendingSignIn {
            state: random_token(),
            nonce: random_token(),
            code_verifier: random_token(),
            next,
        };
        let mut url = url::Url::parse(&endpoints.authorization_endpoint).map_err(|e| {
            SignInError::Authority {
                host: self.authority_host.clone(),
                detail: format!("its authorization endpoint is not a URL: {e}"),
            }
        })?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("response_mode", "query")
            .append_pair("scope", SCOPES)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &s256(&pending.code_verifier))
            .append_pair("code_challenge_method", "S256")
            .append_pair("prompt", "select_account");
        Ok((pending, url.into()))
    }

    /// Redeems `code` for this sign-in and verifies the ID token.
    pub(crate) async fn finish(
        &self,
        pending: &PendingSignIn,
        code: &str,
    ) -> Result<Identity, SignInError> {
        let endpoints = self.endpoints().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", pending.code_verifier.as_str()),
            ("scope", SCOPES),
        ];
        let fail = |detail: String| SignInError::Authority {
            host: self.authority_host.clone(),
            detail,
        };
        let answer = self
            .http
            .post(&endpoints.token_endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| fail(format!("POST {}: {e}", endpoints.token_endpoint)))?;
        let status = answer.status();
        let body = answer
            .bytes()
            .await
            .map_err(|e| fail(format!("reading the token endpoint's answer: {e}")))?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<TokenRefusal>(&body) {
                Ok(r) => SignInError::Refused {
                    error: r.error,
                    description: r.error_description,
                },
                Err(_) => fail(format!("the token endpoint answered {status}")),
            });
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            fail(format!(
                "the token endpoint's answer is not a token response: {e}"
            ))
        })?;
        let id_token = answer.id_token.ok_or_else(|| {
            fail("the token endpoint sent no id_token for scope 'openid'".to_owned())
        })?;
        self.verify_id_token(&id_token, &pending.nonce).await
    }

    /// Where to send the browser to end its session at the authority too
    /// (OpenID Connect RP-Initiated Logout, as Entra's v2.0 logout endpoint
    /// takes it): the authority then returns it to `post_logout_redirect_uri`,
    /// a redirect URI of this app. `None` when the authority offers no such
    /// endpoint or cannot be reached; the console's own session is over anyway.
    pub(crate) async fn end_session_url(&self, post_logout_redirect_uri: &str) -> Option<url::Url> {
        let endpoints = self
            .endpoints()
            .await
            .map_err(|e| tracing::warn!(error = %e, "signing out at the console only"))
            .ok()?;
        let mut url = url::Url::parse(endpoints.end_session_endpoint.as_deref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
        Some(url)
    }

    /// Verifies an ID token (see the module docs) and its `nonce`.
    pub(crate) async fn verify_id_token(
        &self,
        id_token: &str,
        nonce: &str,
    ) -> Result<Identity, SignInError> {
        let verified = self
            .verifier
            .verify(id_token)
            .await
            .map_err(|e| SignInError::IdToken(e.to_string()))?;
        let claims = &verified.claims;
        if claims.ver != "2.0" {
            return Err(SignInError::IdToken(format!(
                "it is a version {} token; the v2.0 endpoint issues version 2.0 ID tokens",
                claims.ver
            )));
        }
        // The signature is verified: the payload can be read for what the
        // access-token claim set does not hold.
        let payload = id_token
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
            .ok_or_else(|| SignInError::IdToken("its payload cannot be read".into()))?;
        match payload.get("nonce").and_then(|n| n.as_str()) {
            Some(n) if same(n, nonce) => {}
            Some(_) => {
                return Err(SignInError::IdToken(
                    "its nonce is not the one this sign-in sent (a replayed or injected token)"
                        .into(),
                ));
            }
            None => {
                return Err(SignInError::IdToken(
                    "it carries no nonce, though this sign-in sent one".into(),
                ));
            }
        }
        let username = claims.preferred_username.clone().or(claims.upn.clone());
        Ok(Identity {
            oid: claims.oid.to_ascii_lowercase(),
            tenant: claims.tid.clone(),
            name: claims
                .name
                .clone()
                .or_else(|| username.clone())
                .unwrap_or_else(|| claims.oid.clone()),
            username,
            uti: claims.uti.clone(),
            groups: claims
                .groups
                .iter()
                .flatten()
                .map(|g| g.to_ascii_lowercase())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenges_are_rfc_7636s() {
        // RFC 7636 appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let v = random_token();
        assert_eq!(v.len(), 43);
        assert_ne!(v, random_token());
    }
}
