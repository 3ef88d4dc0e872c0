//! Entra ID error codes (`AADSTSnnnn`) and the JSON error body of the token endpoint.
//!
//! Clients must classify failures by `error_codes`, never by parsing the description,
//! so the table lives here once and both sides use it.

use serde::{Deserialize, Serialize};

/// The AADSTS codes entraflow emits and understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Aadsts {
    /// 90002: the tenant in the URL does not exist.
    InvalidTenant,
    /// 700016: no application with this client id in the tenant.
    AppNotFound,
    /// 7000215: the client secret is wrong.
    InvalidSecret,
    /// 7000222: the client secret has expired.
    ExpiredSecret,
    /// 7000218: the request carried neither a secret nor an assertion.
    NoCredential,
    /// 700027: the client assertion's signature does not verify against a registered key.
    AssertionSignatureInvalid,
    /// 70021: no federated identity credential matches the assertion's issuer/subject/audience.
    NoFederatedMatch,
    /// 700024: the assertion is expired, not yet valid, or lives too long.
    AssertionTimeRange,
    /// 700222: an Entra-issued token was presented as a federated assertion.
    EntraTokenAsAssertion,
    /// 90061: the external issuer's keys could not be fetched.
    ExternalIssuerUnreachable,
    /// 500011: the resource in the scope is not registered in the tenant.
    ResourceNotFound,
    /// 70011: the scope is malformed or not allowed for this grant.
    InvalidScope,
    /// 700022: the scope names more than one resource.
    MultipleResources,
    /// 900144: a required request parameter is missing.
    MissingParameter,
    /// 70003: the grant type is not supported.
    UnsupportedGrantType,
    /// 900023: the request body could not be parsed.
    MalformedRequest,
    /// 7000112: the application or service principal is disabled.
    Disabled,
    /// 700082: the refresh token has expired or was revoked.
    RefreshTokenExpired,
    /// 9002313: the assertion was already used (replayed `jti`).
    AssertionReplayed,
    /// 70016: device code: the user has not finished signing in yet.
    AuthorizationPending,
    /// 70000 (device code): the user declined.
    AuthorizationDeclined,
    /// 70019: the device code expired.
    ExpiredToken,
    /// 70018: the device code or user code is unknown.
    BadVerificationCode,
    /// 700023: the client assertion's `aud` is not this token endpoint.
    AssertionAudienceInvalid,
    /// 7000229: the application has no service principal in the tenant.
    MissingServicePrincipal,
    /// 90006: the service cannot answer right now (e.g. its audit log cannot record
    /// the request); retry later.
    TemporarilyUnavailable,
    /// 50011 (InvalidReplyTo): the redirect URI is not registered for the app, or
    /// differs from the one the authorization code was requested with.
    InvalidReplyTo,
    /// 500113: the application has no redirect URI registered at all.
    NoReplyAddressRegistered,
    /// 900971: the authorization request carried no `redirect_uri`.
    NoReplyAddressProvided,
    /// 50126 (InvalidUserNameOrPassword): the sign-in page's user name or password is wrong.
    InvalidUserNameOrPassword,
    /// 50058 (UserInformationNotProvided): `prompt=none`, but no user is signed in.
    LoginRequired,
    /// 50147 (MissingCodeChallenge): PKCE is required but no `code_challenge` was sent.
    MissingCodeChallenge,
    /// 50148: the `code_verifier` does not match the authorization request's `code_challenge`.
    CodeVerifierMismatch,
    /// 50149: the `code_challenge_method` is not accepted.
    InvalidCodeChallengeMethod,
    /// 501491 (InvalidCodeChallengeMethodInvalidSize): the `code_challenge` has the wrong size.
    InvalidCodeChallengeSize,
    /// 54005: the authorization code was already redeemed.
    AuthorizationCodeRedeemed,
    /// 70008 (ExpiredOrRevokedGrant): the authorization code expired or is not valid for this client.
    ExpiredOrRevokedGrant,
    /// 700005 (InvalidGrantRedeemAgainstWrongTenant): the code belongs to another tenant.
    GrantForOtherTenant,
    /// 700025 (InvalidClientPublicClientWithCredential): a public client sent a secret or assertion.
    PublicClientWithCredential,
    /// 70005 (UnsupportedResponseType): `response_type` is not `code`.
    UnsupportedResponseType,
    /// 70007 (UnsupportedResponseMode): `response_mode` is not `query`, `fragment` or `form_post`.
    UnsupportedResponseMode,
    /// 50053 (IdsLocked): too many wrong passwords or secrets; locked for a while.
    IdsLocked,
}

impl Aadsts {
    /// Every code, for tables and tests.
    pub const ALL: [Aadsts; 42] = [
        Self::InvalidTenant,
        Self::AppNotFound,
        Self::InvalidSecret,
        Self::ExpiredSecret,
        Self::NoCredential,
        Self::AssertionSignatureInvalid,
        Self::NoFederatedMatch,
        Self::AssertionTimeRange,
        Self::EntraTokenAsAssertion,
        Self::ExternalIssuerUnreachable,
        Self::ResourceNotFound,
        Self::InvalidScope,
        Self::MultipleResources,
        Self::MissingParameter,
        Self::UnsupportedGrantType,
        Self::MalformedRequest,
        Self::Disabled,
        Self::RefreshTokenExpired,
        Self::AssertionReplayed,
        Self::AuthorizationPending,
        Self::AuthorizationDeclined,
        Self::ExpiredToken,
        Self::BadVerificationCode,
        Self::AssertionAudienceInvalid,
        Self::MissingServicePrincipal,
        Self::TemporarilyUnavailable,
        Self::InvalidReplyTo,
        Self::NoReplyAddressRegistered,
        Self::NoReplyAddressProvided,
        Self::InvalidUserNameOrPassword,
        Self::LoginRequired,
        Self::MissingCodeChallenge,
        Self::CodeVerifierMismatch,
        Self::InvalidCodeChallengeMethod,
        Self::InvalidCodeChallengeSize,
        Self::AuthorizationCodeRedeemed,
        Self::ExpiredOrRevokedGrant,
        Self::GrantForOtherTenant,
        Self::PublicClientWithCredential,
        Self::UnsupportedResponseType,
        Self::UnsupportedResponseMode,
        Self::IdsLocked,
    ];

    /// The numeric code as Entra ID writes it in `error_codes`.
    pub fn code(self) -> u32 {
        match self {
            Self::InvalidTenant => 90002,
            Self::AppNotFound => 700016,
            Self::InvalidSecret => 7000215,
            Self::ExpiredSecret => 7000222,
            Self::NoCredential => 7000218,
            Self::AssertionSignatureInvalid => 700027,
            Self::NoFederatedMatch => 70021,
            Self::AssertionTimeRange => 700024,
            Self::EntraTokenAsAssertion => 700222,
            Self::ExternalIssuerUnreachable => 90061,
            Self::ResourceNotFound => 500011,
            Self::InvalidScope => 70011,
            Self::MultipleResources => 700022,
            Self::MissingParameter => 900144,
            Self::UnsupportedGrantType => 70003,
            Self::MalformedRequest => 900023,
            Self::Disabled => 7000112,
            Self::RefreshTokenExpired => 700082,
            Self::AssertionReplayed => 9002313,
            Self::AuthorizationPending => 70016,
            Self::AuthorizationDeclined => 70000,
            Self::ExpiredToken => 70019,
            Self::BadVerificationCode => 70018,
            Self::AssertionAudienceInvalid => 700023,
            Self::MissingServicePrincipal => 7000229,
            Self::TemporarilyUnavailable => 90006,
            Self::InvalidReplyTo => 50011,
            Self::NoReplyAddressRegistered => 500113,
            Self::NoReplyAddressProvided => 900971,
            Self::InvalidUserNameOrPassword => 50126,
            Self::LoginRequired => 50058,
            Self::MissingCodeChallenge => 50147,
            Self::CodeVerifierMismatch => 50148,
            Self::InvalidCodeChallengeMethod => 50149,
            Self::InvalidCodeChallengeSize => 501491,
            Self::AuthorizationCodeRedeemed => 54005,
            Self::ExpiredOrRevokedGrant => 70008,
            Self::GrantForOtherTenant => 700005,
            Self::PublicClientWithCredential => 700025,
            Self::UnsupportedResponseType => 70005,
            Self::UnsupportedResponseMode => 70007,
            Self::IdsLocked => 50053,
        }
    }

    /// Looks a numeric code up.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The OAuth `error` value Entra ID pairs with this code.
    pub fn oauth_error(self) -> &'static str {
        match self {
            Self::InvalidTenant
            | Self::MissingParameter
            | Self::MalformedRequest
            | Self::NoReplyAddressRegistered
            | Self::NoReplyAddressProvided
            | Self::MissingCodeChallenge
            | Self::InvalidCodeChallengeMethod
            | Self::InvalidCodeChallengeSize
            | Self::UnsupportedResponseMode => "invalid_request",
            Self::AppNotFound
            | Self::InvalidSecret
            | Self::ExpiredSecret
            | Self::NoCredential
            | Self::AssertionSignatureInvalid
            | Self::NoFederatedMatch
            | Self::AssertionTimeRange
            | Self::EntraTokenAsAssertion
            | Self::ExternalIssuerUnreachable
            | Self::AssertionReplayed
            | Self::AssertionAudienceInvalid
            | Self::MissingServicePrincipal
            | Self::PublicClientWithCredential
            | Self::Disabled => "invalid_client",
            Self::ResourceNotFound | Self::InvalidScope | Self::MultipleResources => {
                "invalid_scope"
            }
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::RefreshTokenExpired
            | Self::InvalidReplyTo
            | Self::InvalidUserNameOrPassword
            | Self::CodeVerifierMismatch
            | Self::AuthorizationCodeRedeemed
            | Self::ExpiredOrRevokedGrant
            | Self::GrantForOtherTenant
            | Self::IdsLocked => "invalid_grant",
            Self::LoginRequired => "login_required",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::AuthorizationPending => "authorization_pending",
            Self::AuthorizationDeclined => "authorization_declined",
            Self::ExpiredToken => "expired_token",
            Self::BadVerificationCode => "bad_verification_code",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// HTTP status of the token endpoint's answer.
    pub fn http_status(self) -> u16 {
        match self {
            Self::AppNotFound
            | Self::InvalidSecret
            | Self::ExpiredSecret
            | Self::NoCredential
            | Self::AssertionSignatureInvalid
            | Self::NoFederatedMatch
            | Self::AssertionTimeRange
            | Self::EntraTokenAsAssertion
            | Self::AssertionReplayed
            | Self::AssertionAudienceInvalid
            | Self::MissingServicePrincipal
            | Self::PublicClientWithCredential
            | Self::Disabled => 401,
            Self::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }

    /// What the code means and what to do about it, in plain words.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::InvalidTenant => "the tenant does not exist; check AZURE_TENANT_ID",
            Self::AppNotFound => {
                "no application with this client id exists in the tenant; check AZURE_CLIENT_ID and the tenant"
            }
            Self::InvalidSecret => {
                "the client secret is wrong; reset it and update the job's secret store"
            }
            Self::ExpiredSecret => {
                "the client secret has expired; create a new one (or move to a certificate or workload identity)"
            }
            Self::NoCredential => "the request carried no client secret or assertion",
            Self::AssertionSignatureInvalid => {
                "the client assertion's signature does not match any certificate registered on the application"
            }
            Self::NoFederatedMatch => {
                "no federated identity credential on the application matches the token's issuer, subject and audience (a trailing '/' in the issuer matters)"
            }
            Self::AssertionTimeRange => {
                "the client assertion is expired or not yet valid; a workload identity token file must be re-read before each exchange"
            }
            Self::EntraTokenAsAssertion => {
                "an Entra ID access token cannot be used as a federated assertion; use the cluster's service-account token"
            }
            Self::ExternalIssuerUnreachable => {
                "the external issuer's OIDC discovery document or keys could not be fetched"
            }
            Self::ResourceNotFound => "the resource in the scope is not registered in the tenant",
            Self::InvalidScope => {
                "the scope is not valid for this request; app-only tokens need '<resource>/.default'"
            }
            Self::MultipleResources => {
                "a token is for one resource only; ask for one resource's scopes per request"
            }
            Self::MissingParameter => "a required parameter is missing from the request",
            Self::UnsupportedGrantType => "the grant type is not supported",
            Self::MalformedRequest => "the request body is malformed",
            Self::Disabled => "the application or service principal is disabled",
            Self::RefreshTokenExpired => "the refresh token expired or was revoked; sign in again",
            Self::AssertionReplayed => {
                "the client assertion was already used; create a new one with a fresh 'jti'"
            }
            Self::AuthorizationPending => "the user has not finished signing in",
            Self::AuthorizationDeclined => "the user declined the sign-in",
            Self::ExpiredToken => "the device code expired before the user signed in; start again",
            Self::BadVerificationCode => "the device code is not recognised",
            Self::AssertionAudienceInvalid => {
                "the client assertion's 'aud' must be the tenant's token endpoint URL"
            }
            Self::MissingServicePrincipal => {
                "the application has no service principal in the tenant; create one with `entraflow ad sp create --id <appId>`"
            }
            Self::TemporarilyUnavailable => {
                "the authority cannot answer right now (its audit log could not record the request); retry shortly"
            }
            Self::InvalidReplyTo => {
                "the redirect URI is not registered for the application (or differs from the one the code was requested with); register it with `entraflow ad app update --public-client-redirect-uris` or `--web-redirect-uris`"
            }
            Self::NoReplyAddressRegistered => {
                "the application has no redirect URI; register one with `entraflow ad app update --public-client-redirect-uris http://localhost`"
            }
            Self::NoReplyAddressProvided => "the authorization request must name a redirect_uri",
            Self::InvalidUserNameOrPassword => "the user name or password is wrong",
            Self::LoginRequired => {
                "prompt=none was sent but no user is signed in; sign in interactively"
            }
            Self::MissingCodeChallenge => {
                "PKCE is required: send code_challenge with code_challenge_method=S256"
            }
            Self::CodeVerifierMismatch => {
                "the code_verifier does not match the code_challenge of the authorization request; send the verifier the challenge was made from"
            }
            Self::InvalidCodeChallengeMethod => "the code_challenge_method must be S256",
            Self::InvalidCodeChallengeSize => {
                "an S256 code_challenge is 43 base64url characters (a SHA-256 digest)"
            }
            Self::AuthorizationCodeRedeemed => {
                "the authorization code was already redeemed; sign in again, or use the refresh token"
            }
            Self::ExpiredOrRevokedGrant => {
                "the authorization code expired or is not valid for this application; sign in again"
            }
            Self::GrantForOtherTenant => {
                "the authorization code was issued for another tenant; redeem it at the tenant it was requested from"
            }
            Self::PublicClientWithCredential => {
                "a public client must not send a client secret or assertion; remove it, or register the redirect URI as a web one"
            }
            Self::UnsupportedResponseType => "only response_type=code is supported",
            Self::UnsupportedResponseMode => "response_mode must be query, fragment or form_post",
            Self::IdsLocked => {
                "too many wrong passwords or client secrets: the account, application or source address is locked for a while; wait, then use the right one"
            }
        }
    }
}

impl std::fmt::Display for Aadsts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AADSTS{}", self.code())
    }
}

/// The token endpoint's JSON error body, field for field as Entra ID sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorResponse {
    /// OAuth error, e.g. `invalid_client`.
    pub error: String,
    /// Starts with `AADSTSnnnn:`.
    pub error_description: String,
    /// The numeric AADSTS codes; classify by these.
    #[serde(default)]
    pub error_codes: Vec<u32>,
    /// `YYYY-MM-DD HH:MM:SSZ`.
    #[serde(default)]
    pub timestamp: String,
    /// Identifies the request in the authority's logs.
    #[serde(default)]
    pub trace_id: String,
    /// The client's correlation id, or a fresh one.
    #[serde(default)]
    pub correlation_id: String,
    /// Where to read about the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
}

impl ErrorResponse {
    /// The first code this crate knows, if any.
    pub fn aadsts(&self) -> Option<Aadsts> {
        self.error_codes.iter().find_map(|c| Aadsts::from_code(*c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in Aadsts::ALL {
            assert!(seen.insert(c.code()), "duplicate code {c}");
            assert_eq!(Aadsts::from_code(c.code()), Some(c));
        }
    }

    #[test]
    fn display_is_the_aadsts_prefix() {
        assert_eq!(Aadsts::ExpiredSecret.to_string(), "AADSTS7000222");
    }
}
