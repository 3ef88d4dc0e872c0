//! What can go wrong getting a token, as variants a caller can act on.
//!
//! Errors are `Clone` because one failed refresh is handed to every caller that
//! waited on it (single-flight); underlying causes are therefore kept as text.

use std::time::Duration;

use entraflow_core::{Aadsts, ErrorResponse};
use thiserror::Error;

/// Why a credential produced no token.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialError {
    /// The authority answered and refused: the credential itself is wrong, expired,
    /// or not allowed (classified by `error_codes`, never by the description).
    #[error(
        "{authority} rejected the credential: {}{meaning} (trace id {trace_id}, correlation id {correlation_id})",
        code.map(|c| format!("{c}: ")).unwrap_or_else(|| codes_prefix(codes))
    )]
    AuthenticationRejected {
        /// The first AADSTS code entraflow knows, if any.
        code: Option<Aadsts>,
        /// Every code the authority sent.
        codes: Vec<u32>,
        /// What the code means and what to do.
        meaning: String,
        /// The authority's `trace_id` (quote it in a support request).
        trace_id: String,
        /// The request's `correlation_id`.
        correlation_id: String,
        /// The token endpoint that answered.
        authority: String,
    },
    /// IMDS answered 400: no managed identity (or not this one) is assigned to this host.
    #[error(
        "the managed identity endpoint {url} says no identity {identity} is assigned to this host: {detail}; assign the identity to the VM/pod or fix AZURE_CLIENT_ID"
    )]
    IdentityNotAssigned {
        /// The endpoint asked.
        url: String,
        /// Which identity was asked for (`system-assigned`, `client_id=…`).
        identity: String,
        /// The endpoint's own explanation.
        detail: String,
    },
    /// The authority (or identity endpoint) could not be reached at all.
    #[error(
        "the authority at {url} is unreachable: {cause}; check that it is running and that AZURE_AUTHORITY_HOST points at it"
    )]
    AuthorityUnreachable {
        /// The URL that failed.
        url: String,
        /// The network error, with its causes.
        cause: String,
    },
    /// The endpoint kept answering 429 after every retry.
    #[error(
        "{url} is throttling token requests{}; wait and retry, or cache tokens longer",
        retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default()
    )]
    Throttled {
        /// The endpoint.
        url: String,
        /// What `Retry-After` asked for, if anything.
        retry_after: Option<Duration>,
    },
    /// Configuration is missing or wrong (an environment variable, a file).
    #[error("{variable} is not usable: {hint}")]
    Misconfigured {
        /// The variable or setting at fault, e.g. `AZURE_TENANT_ID`.
        variable: String,
        /// What is wrong and how to fix it.
        hint: String,
    },
    /// The endpoint answered with something that is neither a token nor a documented error.
    #[error("{url} answered HTTP {status} that is not a token: {detail}")]
    UnexpectedResponse {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// A short, secret-free excerpt of what came back.
        detail: String,
    },
    /// This credential does not apply here (its environment is absent); a chain moves on.
    #[error("{credential} is unavailable: {reason}")]
    CredentialUnavailable {
        /// The credential's name.
        credential: &'static str,
        /// Why it was skipped.
        reason: String,
    },
    /// Every credential in a chain was skipped or failed.
    #[error("no credential in the chain produced a token:{}", chain_lines(.0))]
    ChainFailed(Vec<(&'static str, CredentialError)>),
}

impl CredentialError {
    /// Builds `AuthenticationRejected` from the token endpoint's error body.
    pub fn rejected(authority: &str, body: &ErrorResponse) -> Self {
        let code = body.aadsts();
        let meaning = match code {
            Some(c) => c.meaning().to_owned(),
            // Unknown code: the first line of the description is the best we have.
            None => body
                .error_description
                .lines()
                .next()
                .unwrap_or(&body.error)
                .to_owned(),
        };
        Self::AuthenticationRejected {
            code,
            codes: body.error_codes.clone(),
            meaning,
            trace_id: body.trace_id.clone(),
            correlation_id: body.correlation_id.clone(),
            authority: authority.to_owned(),
        }
    }

    /// Builds `AuthorityUnreachable` from a transport error, keeping its whole cause chain.
    pub(crate) fn unreachable(url: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        Self::AuthorityUnreachable {
            url: redact_query(url),
            cause: cause_chain(err),
        }
    }

    /// Whether a chain should move on to the next credential.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::CredentialUnavailable { .. })
    }
}

fn codes_prefix(codes: &[u32]) -> String {
    codes
        .first()
        .map(|c| format!("AADSTS{c}: "))
        .unwrap_or_default()
}

fn chain_lines(attempts: &[(&'static str, CredentialError)]) -> String {
    attempts
        .iter()
        .map(|(name, err)| match err {
            CredentialError::CredentialUnavailable { reason, .. } => {
                format!("\n  - {name}: skipped: {reason}")
            }
            other => format!("\n  - {name}: failed: {other}"),
        })
        .collect()
}

/// `err` and its sources joined by `: `.
pub(crate) fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A URL without its query string (IMDS/App Service queries carry no secrets, but
/// SAS-like parameters might; errors never need them).
pub(crate) fn redact_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => base.to_owned(),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_is_classified_by_code_not_text() {
        let body = ErrorResponse {
            error: "invalid_client".into(),
            error_description: "AADSTS7000215: something misleading".into(),
            error_codes: vec![7000222],
            timestamp: String::new(),
            trace_id: "t-1".into(),
            correlation_id: "c-1".into(),
            error_uri: None,
        };
        let err = CredentialError::rejected("https://a/t/oauth2/v2.0/token", &body);
        let text = err.to_string();
        assert!(matches!(
            err,
            CredentialError::AuthenticationRejected {
                code: Some(Aadsts::ExpiredSecret),
                ..
            }
        ));
        assert!(text.contains("AADSTS7000222"), "{text}");
        assert!(text.contains("expired"), "{text}");
        assert!(text.contains("t-1"), "{text}");
    }

    #[test]
    fn chain_failure_names_every_credential() {
        let err = CredentialError::ChainFailed(vec![
            (
                "EnvironmentCredential",
                CredentialError::CredentialUnavailable {
                    credential: "EnvironmentCredential",
                    reason: "AZURE_CLIENT_SECRET is not set".into(),
                },
            ),
            (
                "ManagedIdentityCredential",
                CredentialError::AuthorityUnreachable {
                    url: "http://169.254.169.254/metadata/identity/oauth2/token".into(),
                    cause: "timed out".into(),
                },
            ),
        ]);
        let text = err.to_string();
        assert!(text.contains("EnvironmentCredential: skipped: AZURE_CLIENT_SECRET"));
        assert!(text.contains(
            "ManagedIdentityCredential: failed: the authority at http://169.254.169.254"
        ));
    }

    #[test]
    fn urls_in_errors_lose_their_query() {
        assert_eq!(redact_query("http://h/p?sig=abc"), "http://h/p");
    }
}
