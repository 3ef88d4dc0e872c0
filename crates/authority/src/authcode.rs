//! The authorization code flow with PKCE: how a person signs in to an app in a
//! browser (`az login`, MSAL's `acquire_token_interactive`, web apps).
//!
//! `/authorize` checks the request before anyone signs in. A request whose app or
//! redirect URI cannot be trusted gets an error page, never a redirect; every
//! later problem goes back to the redirect URI as `error`/`error_description`
//! with the request's `state`, as Entra does. The user signs in on the
//! authority's page (password checked with argon2id). The code sent back lives
//! [`CODE_LIFETIME`] seconds, is stored hashed, is bound to the client, the
//! redirect URI and the PKCE challenge, and is spent by its first redemption:
//! whatever that redemption's outcome, a second one is refused (AADSTS54005).
//!
//! Where the redirect URI is registered decides the client type: a public
//! (mobile and desktop) one must use PKCE with `S256` (`plain`, and so an omitted
//! method, is refused: RFC 9700 §2.1.1) and must not authenticate; a web one is
//! a confidential client that must authenticate when redeeming.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entraflow_core::Aadsts;
use entraflow_core::scope::{OIDC_SCOPES, default_scope, resource_of_scope};
use serde_json::Value;
use subtle::ConstantTimeEq as _;

use crate::authority::{Authority, TokenRequest};
use crate::decision::Decision;
use crate::device::{UserGrant, random_token, sha256};
use crate::error::OAuthError;
use crate::issue::{EndpointVersion, SignIn};
use crate::redirect_uri::{self, Platform};
use crate::store::{AuthorizationCode, CodeRecord, Tenant, TenantApp, now};

/// How long an authorization code can be redeemed (Entra: about 10 minutes).
pub(crate) const CODE_LIFETIME: i64 = 600;

/// How the answer travels back to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseMode {
    /// `?code=…` on the redirect URI (the default).
    Query,
    /// `#code=…` on the redirect URI.
    Fragment,
    /// An auto-submitted HTML form POSTed to the redirect URI.
    FormPost,
}

/// Where and how the answer to an authorization request goes: the redirect
/// URI exactly as the client sent it (it matched a registered one), and `state`.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) redirect_uri: String,
    /// `redirect_uri`, parsed (a URI without a path gets `/`, as Entra answers).
    pub(crate) url: url::Url,
    pub(crate) mode: ResponseMode,
    pub(crate) state: Option<String>,
}

/// An authorization request that passed every check: the user may sign in.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizeRequest {
    pub(crate) tenant: Tenant,
    /// The application's client id (lower case).
    pub(crate) client_id: String,
    /// Its display name, for the sign-in page.
    pub(crate) app_name: String,
    /// The redirect URI is registered for mobile and desktop apps.
    pub(crate) public_client: bool,
    pub(crate) reply: Reply,
    /// What the user consents to; the code is redeemed for these scopes.
    pub(crate) scope: String,
    pub(crate) nonce: Option<String>,
    /// The S256 challenge, if the client sent one.
    pub(crate) code_challenge: Option<String>,
    /// Pre-fills the user name.
    pub(crate) login_hint: Option<String>,
}

/// Why an authorization request was refused, and where the refusal goes.
#[derive(Debug)]
pub(crate) enum AuthorizeError {
    /// The app or its redirect URI cannot be trusted: the authority's own
    /// error page answers, never a redirect.
    Page(OAuthError),
    /// Sent back to the app's (registered) redirect URI.
    Redirect(Box<Reply>, OAuthError),
}

impl AuthorizeError {
    /// The refusal itself.
    pub(crate) fn error(&self) -> &OAuthError {
        match self {
            AuthorizeError::Page(e) | AuthorizeError::Redirect(_, e) => e,
        }
    }
}

/// RFC 7636 §4.1: 43–128 characters of `[A-Za-z0-9-._~]`.
fn is_pkce_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Checks the PKCE parameters of an authorization request; returns the S256
/// challenge to store.
fn checked_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
    public_client: bool,
    redirect_uri: &str,
) -> Result<Option<String>, OAuthError> {
    let Some(challenge) = challenge else {
        if method.is_some() {
            return Err(OAuthError::new(
                Aadsts::MissingCodeChallenge,
                "The request has a code_challenge_method but no code_challenge; send both (code_challenge_method=S256).",
            ));
        }
        if public_client {
            return Err(OAuthError::new(
                Aadsts::MissingCodeChallenge,
                format!(
                    "Proof Key for Code Exchange is required for public clients: the redirect URI '{redirect_uri}' is registered for mobile and desktop apps. Send code_challenge (the base64url SHA-256 of a random code_verifier) with code_challenge_method=S256."
                ),
            ));
        }
        return Ok(None);
    };
    match method.unwrap_or("plain") {
        "S256" => {
            let base64url = challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if challenge.len() != 43 || !base64url {
                return Err(OAuthError::new(
                    Aadsts::InvalidCodeChallengeSize,
                    format!(
                        "Invalid size of Code_Challenge parameter: an S256 code_challenge is the 43-character base64url SHA-256 of the code_verifier; this one has {} characters{}.",
                        challenge.len(),
                        if base64url {
                            ""
                        } else {
                            " and characters outside base64url"
                        }
                    ),
                ));
            }
            Ok(Some(challenge.to_owned()))
        }
        "plain" => Err(OAuthError::new(
            Aadsts::InvalidCodeChallengeMethod,
            "The code_challenge_method 'plain' (which is also what an omitted method means) is not accepted: the challenge would be the verifier itself. Send code_challenge_method=S256 with the base64url SHA-256 of the code_verifier.",
        )),
        other => Err(OAuthError::new(
            Aadsts::InvalidCodeChallengeMethod,
            format!("Invalid Code_Challenge_method parameter '{other}'; use S256."),
        )),
    }
}

/// Checks a code redemption's `code_verifier` against the stored challenge.
fn verify_pkce(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), OAuthError> {
    let refuse = |why: &str| OAuthError::new(Aadsts::CodeVerifierMismatch, why);
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(refuse(
            "A code_verifier was sent, but the authorization request had no code_challenge; send a verifier only with the challenge made from it.",
        )),
        (Some(_), None) => Err(refuse(
            "The code_verifier is missing: the authorization request sent a code_challenge, so the redemption must send the code_verifier it was made from.",
        )),
        (Some(_), Some(v)) if !is_pkce_verifier(v) => Err(refuse(
            "The code_verifier is not a PKCE verifier: 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~' (RFC 7636 §4.1).",
        )),
        (Some(c), Some(v)) => {
            let computed = URL_SAFE_NO_PAD.encode(sha256(v));
            if bool::from(computed.as_bytes().ct_eq(c.as_bytes())) {
                Ok(())
            } else {
                Err(refuse(
                    "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
                ))
            }
        }
    }
}

impl Authority {
    /// `GET /{tenant}/oauth2/v2.0/authorize` (v1: `/oauth2/authorize` with
    /// `resource`): checks an authorization request, filling in what its audit
    /// record names.
    pub(crate) fn authorize(
        &self,
        segment: &str,
        version: EndpointVersion,
        req: &TokenRequest,
        decision: &mut Decision,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        let page = AuthorizeError::Page;
        let tenant = self.tenant(segment, true).map_err(page)?;
        decision.tenant = Some(tenant.id.clone());
        let client_id = req.require("client_id").map_err(page)?;
        decision.client_id = Some(client_id.to_owned());
        let app = self
            .store
            .tenant_application(&tenant.id, client_id)
            .map_err(|e| page(e.into()))?;
        let Some(TenantApp {
            app_id,
            display_name: app_name,
            ..
        }) = app
        else {
            return Err(page(OAuthError::new(
                Aadsts::AppNotFound,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'. Check the client id, or register the app with `entraflow ad app create`.",
                    tenant.id
                ),
            )));
        };
        let Some(redirect_uri) = req.get("redirect_uri") else {
            return Err(page(OAuthError::new(
                Aadsts::NoReplyAddressProvided,
                "No reply address provided: the request must contain 'redirect_uri', e.g. http://localhost:<port> for a desktop or command-line app.",
            )));
        };
        let registered = self
            .store
            .redirect_uris(&app_id)
            .map_err(|e| page(e.into()))?;
        if registered.is_empty() {
            return Err(page(OAuthError::new(
                Aadsts::NoReplyAddressRegistered,
                format!(
                    "No reply address is registered for the application '{app_id}'. Register it with `entraflow ad app update --id {app_id} {} http://localhost` (desktop and command-line apps) or `{} https://…` (web apps).",
                    Platform::PublicClient.flag(),
                    Platform::Web.flag()
                ),
            )));
        }
        let Some(platform) = redirect_uri::find_match(&registered, redirect_uri) else {
            let listed: Vec<&str> = registered.iter().map(|(_, u)| u.as_str()).collect();
            return Err(page(OAuthError::new(
                Aadsts::InvalidReplyTo,
                format!(
                    "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{app_id}' ({}). Loopback addresses match on any port; anything else must match exactly. Register it with `entraflow ad app update --id {app_id} {} …` or `{} …`.",
                    listed.join(", "),
                    Platform::PublicClient.flag(),
                    Platform::Web.flag()
                ),
            )));
        };
        let public_client = platform == Platform::PublicClient;
        let url = url::Url::parse(redirect_uri).map_err(|e| {
            page(OAuthError::new(
                Aadsts::InvalidReplyTo,
                format!("The redirect URI '{redirect_uri}' is not a URL: {e}."),
            ))
        })?;

        // From here on the redirect URI is trusted: refusals go back to it.
        let state = req.get("state").map(str::to_owned);
        let mut reply = Reply {
            redirect_uri: redirect_uri.to_owned(),
            url,
            mode: ResponseMode::Query,
            state,
        };
        reply.mode = match req.get("response_mode") {
            None | Some("query") => ResponseMode::Query,
            Some("fragment") => ResponseMode::Fragment,
            Some("form_post") => ResponseMode::FormPost,
            Some(other) => {
                return Err(AuthorizeError::Redirect(
                    Box::new(reply),
                    OAuthError::new(
                        Aadsts::UnsupportedResponseMode,
                        format!(
                            "The response_mode '{other}' is not supported; use query, fragment or form_post."
                        ),
                    ),
                ));
            }
        };
        let refuse = |e: OAuthError| AuthorizeError::Redirect(Box::new(reply.clone()), e);
        match req.get("response_type") {
            Some("code") => {}
            None => {
                return Err(refuse(OAuthError::new(
                    Aadsts::MissingParameter,
                    "The request must contain the following parameter: 'response_type' (response_type=code).",
                )));
            }
            Some(other) => {
                return Err(refuse(OAuthError::new(
                    Aadsts::UnsupportedResponseType,
                    format!(
                        "The response_type '{other}' is not supported: this authority answers response_type=code (the authorization code flow), not the implicit or hybrid flow."
                    ),
                )));
            }
        }
        let scope = match version {
            EndpointVersion::V2 => req.require("scope").map_err(refuse)?.to_owned(),
            EndpointVersion::V1 => match req.get("resource") {
                Some(r) => format!("{} openid offline_access", default_scope(r)),
                None => "openid profile offline_access".to_owned(),
            },
        };
        decision.resource = Some(scope.clone());
        self.check_scopes(&tenant, &scope).map_err(refuse)?;
        let code_challenge = checked_challenge(
            req.get("code_challenge"),
            req.get("code_challenge_method"),
            public_client,
            redirect_uri,
        )
        .map_err(refuse)?;
        for prompt in req.get("prompt").unwrap_or_default().split_whitespace() {
            match prompt {
                "login" | "select_account" | "consent" => {}
                "none" => {
                    return Err(refuse(OAuthError::new(
                        Aadsts::LoginRequired,
                        "A silent sign-in request was sent (prompt=none) but no user is signed in: this authority keeps no browser sessions, so every sign-in is interactive.",
                    )));
                }
                other => {
                    return Err(refuse(OAuthError::new(
                        Aadsts::MalformedRequest,
                        format!(
                            "The prompt '{other}' is not supported; use login, select_account, consent or none."
                        ),
                    )));
                }
            }
        }
        Ok(AuthorizeRequest {
            tenant,
            client_id: app_id.to_ascii_lowercase(),
            app_name,
            public_client,
            reply,
            scope,
            nonce: req.get("nonce").map(str::to_owned),
            code_challenge,
            login_hint: req.get("login_hint").map(str::to_owned),
        })
    }

    /// Every resource an authorization request names must exist in the tenant
    /// (the request may name several; a code is redeemed for one at a time).
    fn check_scopes(&self, tenant: &Tenant, scope: &str) -> Result<(), OAuthError> {
        for s in scope
            .split_whitespace()
            .filter(|s| !OIDC_SCOPES.contains(s))
        {
            let resource = resource_of_scope(s).map_err(|e| {
                OAuthError::new(
                    Aadsts::InvalidScope,
                    format!(
                        "The provided value for the input parameter 'scope' is not valid: {e}."
                    ),
                )
            })?;
            if self
                .store
                .resolve_resource(&tenant.id, &resource)?
                .is_none()
            {
                return Err(OAuthError::new(
                    Aadsts::ResourceNotFound,
                    format!(
                        "The resource principal named {resource} was not found in the tenant named {}. Register it with `entraflow ad app create --identifier-uris {resource}`, or fix the scope.",
                        tenant.id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks the password of `upn` (argon2id: call it off the async workers)
    /// and returns a fresh authorization code for the request.
    pub(crate) fn sign_in(
        &self,
        request: &AuthorizeRequest,
        upn: &str,
        password: &str,
        decision: &mut Decision,
    ) -> Result<String, OAuthError> {
        // Bounded: the typed name goes into the audit record.
        decision.principal_name = Some(upn.chars().take(256).collect());
        let user = self.store.tenant_user_by_upn(&request.tenant.id, upn)?;
        if let Some((user, _)) = &user {
            decision.principal = Some(user.id.clone());
        }
        let stored = user.as_ref().and_then(|(_, hash)| hash.as_deref());
        self.check_password(upn, stored, password, decision.source_ip())?;
        let Some((user, _)) = user else {
            return Err(crate::authority::wrong_password());
        };
        let code = random_token();
        let at = now();
        self.store.insert_authorization_code(&CodeRecord {
            sha256: &sha256(&code),
            tenant_id: &request.tenant.id,
            client_id: &request.client_id,
            user_id: &user.id,
            redirect_uri: &request.reply.redirect_uri,
            public_client: request.public_client,
            scope: &request.scope,
            nonce: request.nonce.as_deref(),
            code_challenge: request.code_challenge.as_deref(),
            auth_time: at,
            expires_at: at + CODE_LIFETIME,
        })?;
        Ok(code)
    }

    /// Spends a code: only its first redemption gets past here.
    fn spend_code(
        &self,
        tenant: &Tenant,
        client_id: &str,
        code: &str,
    ) -> Result<AuthorizationCode, OAuthError> {
        let spend = self
            .store
            .spend_authorization_code(&sha256(code), &tenant.id, client_id)?;
        let not_valid = || {
            OAuthError::new(
                Aadsts::ExpiredOrRevokedGrant,
                format!(
                    "The provided authorization code is not valid for application '{client_id}': it is unknown, or was issued to another application. Send a new interactive authorization request."
                ),
            )
        };
        let Some(spend) = spend else {
            return Err(not_valid());
        };
        if spend.tenant_id != tenant.id {
            return Err(OAuthError::new(
                Aadsts::GrantForOtherTenant,
                "Provided Authorization Code is intended to use against other tenant, thus rejected. Redeem it at the tenant it was requested from.",
            ));
        }
        if !spend.client_id.eq_ignore_ascii_case(client_id) {
            return Err(not_valid());
        }
        if !spend.first {
            return Err(OAuthError::new(
                Aadsts::AuthorizationCodeRedeemed,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
            ));
        }
        Ok(spend.code)
    }

    /// `grant_type=authorization_code` at the token endpoint.
    pub(crate) async fn authorization_code_grant(
        &self,
        segment: &str,
        version: EndpointVersion,
        req: &TokenRequest,
        decision: &mut Decision,
    ) -> Result<Value, OAuthError> {
        let tenant = self.tenant(segment, true)?;
        decision.tenant = Some(tenant.id.clone());
        let code = req.require("code")?;
        let client_id = req.client_id()?.to_ascii_lowercase();
        decision.client_id = Some(client_id.clone());
        let grant = self.spend_code(&tenant, &client_id, code)?;
        if grant.expires_at <= now() {
            return Err(OAuthError::new(
                Aadsts::ExpiredOrRevokedGrant,
                format!(
                    "The provided authorization code has expired: codes can be redeemed for {} minutes after sign-in. Send a new interactive authorization request.",
                    CODE_LIFETIME / 60
                ),
            ));
        }
        let redirect_uri = req.require("redirect_uri")?;
        if redirect_uri != grant.redirect_uri {
            return Err(OAuthError::new(
                Aadsts::InvalidReplyTo,
                format!(
                    "The reply address '{redirect_uri}' does not match the reply address '{}' provided when requesting the authorization code.",
                    grant.redirect_uri
                ),
            ));
        }
        let client_acr = if grant.public_client {
            if req.has_client_credential() {
                return Err(OAuthError::new(
                    Aadsts::PublicClientWithCredential,
                    format!(
                        "Client is public so neither 'client_assertion' nor 'client_secret' should be presented: the code was requested with '{redirect_uri}', a mobile and desktop redirect URI. Register a web redirect URI for a confidential client."
                    ),
                ));
            }
            "0"
        } else {
            self.authenticate_client(&tenant, segment, req, decision)
                .await?
                .acr
        };
        verify_pkce(grant.code_challenge.as_deref(), req.get("code_verifier"))?;
        let scope = match version {
            EndpointVersion::V2 => req.get("scope").map(str::to_owned).unwrap_or(grant.scope),
            EndpointVersion::V1 => req
                .get("resource")
                .map(|r| format!("{} openid offline_access", default_scope(r)))
                .unwrap_or(grant.scope),
        };
        self.user_tokens(
            &tenant,
            version,
            &UserGrant {
                client_id: &client_id,
                client_acr,
                user_id: &grant.user_id,
                scope: &scope,
                sign_in: SignIn {
                    nonce: grant.nonce,
                    auth_time: Some(grant.auth_time),
                },
            },
            decision,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    // RFC 7636 appendix B.
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn pkce_follows_rfc_7636_and_refuses_plain() {
        assert_eq!(
            checked_challenge(Some(CHALLENGE), Some("S256"), true, "http://localhost").unwrap(),
            Some(CHALLENGE.to_owned())
        );
        verify_pkce(Some(CHALLENGE), Some(VERIFIER)).unwrap();
        fn code<T: std::fmt::Debug>(r: Result<T, OAuthError>) -> Aadsts {
            r.unwrap_err().code
        }
        assert_eq!(
            code(verify_pkce(
                Some(CHALLENGE),
                Some(&VERIFIER.replace('d', "e"))
            )),
            Aadsts::CodeVerifierMismatch
        );
        assert_eq!(
            code(verify_pkce(Some(CHALLENGE), None)),
            Aadsts::CodeVerifierMismatch
        );
        assert_eq!(
            code(verify_pkce(None, Some(VERIFIER))),
            Aadsts::CodeVerifierMismatch
        );
        assert_eq!(
            code(verify_pkce(Some(CHALLENGE), Some("short"))),
            Aadsts::CodeVerifierMismatch
        );
        verify_pkce(None, None).unwrap();
        let challenge = |c, m, public| code(checked_challenge(c, m, public, "http://localhost"));
        assert_eq!(
            challenge(Some(VERIFIER), Some("plain"), true),
            Aadsts::InvalidCodeChallengeMethod
        );
        assert_eq!(
            challenge(Some(VERIFIER), None, false),
            Aadsts::InvalidCodeChallengeMethod
        );
        assert_eq!(
            challenge(Some(CHALLENGE), Some("S512"), true),
            Aadsts::InvalidCodeChallengeMethod
        );
        assert_eq!(
            challenge(Some("abc"), Some("S256"), true),
            Aadsts::InvalidCodeChallengeSize
        );
        assert_eq!(challenge(None, None, true), Aadsts::MissingCodeChallenge);
        assert_eq!(
            challenge(None, Some("S256"), false),
            Aadsts::MissingCodeChallenge
        );
        assert_eq!(
            checked_challenge(None, None, false, "https://app.example").unwrap(),
            None
        );
    }
}
