//! The authority host and its token endpoint: `POST {host}/{tenant}/oauth2/v2.0/token`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use entraflow_core::{ErrorResponse, Secret, env};
use serde::Deserialize;

use crate::error::{CredentialError, redact_query};
use crate::http::HttpClient;
use crate::token::AccessToken;
use crate::vars::Environment;

/// Set to `1` to let `AZURE_AUTHORITY_HOST` be plain `http://` on a loopback address
/// (a local test authority). Anything else must be `https://`.
pub const ENTRAFLOW_ALLOW_HTTP_AUTHORITY: &str = "ENTRAFLOW_ALLOW_HTTP_AUTHORITY";

/// How long one token request may take before the authority counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An authority host such as `https://login.microsoftonline.com`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityHost(String);

impl AuthorityHost {
    /// Parses a host URL. `https://` always; `http://` only when `allow_http_loopback`
    /// and the host is `127.0.0.1`, `::1` or `localhost`.
    pub fn parse(host: &str, allow_http_loopback: bool) -> Result<Self, CredentialError> {
        let bad = |hint: String| CredentialError::Misconfigured {
            variable: env::AZURE_AUTHORITY_HOST.into(),
            hint,
        };
        let url = url::Url::parse(host.trim())
            .map_err(|e| bad(format!("'{host}' is not a URL ({e})")))?;
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = matches!(url.host(), Some(url::Host::Domain("localhost")))
                    || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                    || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
                if !(allow_http_loopback && loopback) {
                    return Err(bad(format!(
                        "'{host}' is plain http; tokens must travel over https. For a local test authority on a loopback address, set {ENTRAFLOW_ALLOW_HTTP_AUTHORITY}=1"
                    )));
                }
            }
            other => return Err(bad(format!("'{host}' has scheme '{other}'; use https://"))),
        }
        if url.host().is_none() {
            return Err(bad(format!("'{host}' has no host")));
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    /// `AZURE_AUTHORITY_HOST`, else the public cloud.
    pub fn from_env() -> Result<Self, CredentialError> {
        Self::from_environment(&Environment::process())
    }

    /// `AZURE_AUTHORITY_HOST` from `vars`, else the public cloud.
    pub fn from_environment(vars: &Environment) -> Result<Self, CredentialError> {
        match vars.get(env::AZURE_AUTHORITY_HOST) {
            Some(host) => Self::parse(&host, http_opted_in(vars)),
            None => Ok(Self::public_cloud()),
        }
    }

    /// `https://login.microsoftonline.com`.
    pub fn public_cloud() -> Self {
        Self(entraflow_core::PUBLIC_CLOUD_AUTHORITY_HOST.to_owned())
    }

    /// The host URL without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `{host}/{tenant}/oauth2/v2.0/token`.
    pub fn token_endpoint(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.0)
    }

    /// `{host}/{tenant}/oauth2/v2.0/devicecode`.
    pub fn device_code_endpoint(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/devicecode", self.0)
    }
}

impl std::fmt::Display for AuthorityHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `ENTRAFLOW_ALLOW_HTTP_AUTHORITY=1`.
pub(crate) fn http_opted_in(vars: &Environment) -> bool {
    vars.get(ENTRAFLOW_ALLOW_HTTP_AUTHORITY)
        .is_some_and(|v| v == "1")
}

/// A successful token endpoint answer.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    #[serde(default = "bearer")]
    pub(crate) token_type: String,
    #[serde(deserialize_with = "number_or_string")]
    pub(crate) expires_in: u64,
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
}

/// v2 sends `expires_in` as a number; v1, ADFS and some proxies send a string.
fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

fn bearer() -> String {
    "Bearer".into()
}

impl TokenResponse {
    /// The access token, its expiry counted from this host's clock when it arrived
    /// (so skew between us and the authority does not matter for `expires_in`).
    pub(crate) fn access_token(&self) -> AccessToken {
        let expires_on = now_unix() + self.expires_in as i64;
        AccessToken {
            token: Secret::new(self.access_token.clone()),
            expires_on,
            refresh_on: expires_on,
            token_type: self.token_type.clone(),
        }
    }
}

/// How the token endpoint refused, before mapping to [`CredentialError`]: the device
/// code flow must see `authorization_pending` and friends.
pub(crate) enum EndpointError {
    OAuth(ErrorResponse),
    Other(CredentialError),
}

impl EndpointError {
    pub(crate) fn into_credential_error(self, url: &str) -> CredentialError {
        match self {
            Self::OAuth(body) => CredentialError::rejected(url, &body),
            Self::Other(e) => e,
        }
    }
}

/// POSTs a form to an authority endpoint and parses the answer as `T` or an Entra error.
pub(crate) async fn post_form<T: serde::de::DeserializeOwned>(
    http: &HttpClient,
    url: &str,
    form: &[(&str, &str)],
) -> Result<T, EndpointError> {
    let client = http.get().map_err(EndpointError::Other)?;
    let response = client
        .post(url)
        .form(form)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| EndpointError::Other(CredentialError::unreachable(url, &e)))?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|e| EndpointError::Other(CredentialError::unreachable(url, &e)))?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| {
            EndpointError::Other(CredentialError::UnexpectedResponse {
                url: redact_query(url),
                status: status.as_u16(),
                detail: format!("the body is not a token response ({e})"),
            })
        });
    }
    if status.as_u16() == 429 {
        return Err(EndpointError::Other(CredentialError::Throttled {
            url: redact_query(url),
            retry_after,
        }));
    }
    match serde_json::from_slice::<ErrorResponse>(&body) {
        Ok(err) => Err(EndpointError::OAuth(err)),
        Err(_) => Err(EndpointError::Other(CredentialError::UnexpectedResponse {
            url: redact_query(url),
            status: status.as_u16(),
            detail: excerpt(&body),
        })),
    }
}

/// The wait a response asks for (`Retry-After`, `x-ms-retry-after-ms`), as the one
/// retry policy reads it.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    entraflow_core::retry::server_wait(|name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
}

/// The first 200 characters of a non-token body, for error messages. Token endpoints
/// never echo credentials in errors, and a success body is never passed here.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_required_unless_loopback_http_is_opted_into() {
        assert!(AuthorityHost::parse("https://login.microsoftonline.com/", false).is_ok());
        assert_eq!(
            AuthorityHost::parse("https://h:8443/", false)
                .unwrap()
                .token_endpoint("t"),
            "https://h:8443/t/oauth2/v2.0/token"
        );
        let err = AuthorityHost::parse("http://127.0.0.1:8080", false).unwrap_err();
        assert!(
            err.to_string().contains(ENTRAFLOW_ALLOW_HTTP_AUTHORITY),
            "{err}"
        );
        assert!(AuthorityHost::parse("http://127.0.0.1:8080", true).is_ok());
        assert!(AuthorityHost::parse("http://[::1]:8080", true).is_ok());
        // Opting in never allows http to a remote host.
        assert!(AuthorityHost::parse("http://login.example.com", true).is_err());
        assert!(AuthorityHost::parse("ftp://x", true).is_err());
    }

    #[test]
    fn expires_in_may_be_a_string() {
        for body in [
            r#"{"access_token":"a","token_type":"Bearer","expires_in":3599}"#,
            r#"{"access_token":"a","token_type":"Bearer","expires_in":"3599"}"#,
        ] {
            let parsed: TokenResponse = serde_json::from_str(body).unwrap();
            assert_eq!(parsed.expires_in, 3599);
        }
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }
}
