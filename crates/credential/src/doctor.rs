//! `entraflow doctor`: from "it does not work" to which of five things it is.
//!
//! Acquire a token, read it, compare clocks with the authority, call the resource
//! with it, and name the one diagnosis that explains the outcome. A missing role
//! must never look like a network failure: the resource's 403
//! `AuthorizationPermissionMismatch` is reported as such, naming principal, action
//! and scope.

use std::time::{Duration, SystemTime};

use entraflow_core::{Aadsts, AccessTokenClaims};

use crate::authority::AuthorityHost;
use crate::confidential::CredentialOptions;
use crate::error::{CredentialError, cause_chain, redact_query};
use crate::http::{ClientKind, HttpClient};
use crate::token::{TokenCredential, TokenRequest};

/// Clock difference with the authority beyond which tokens start failing at resources
/// (Entra and Azure Storage tolerate 5 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The one explanation `doctor` gives, most decisive first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Diagnosis {
    /// Token acquired, clocks agree, and the resource (if given) accepted the token.
    Healthy,
    /// No credential applies here; `report` says why each was skipped.
    NoCredential {
        /// The chain's per-credential report.
        report: String,
    },
    /// The authority refused the credential.
    CredentialRejected {
        /// The AADSTS code, when known.
        code: Option<Aadsts>,
        /// The full error.
        detail: String,
    },
    /// The authority could not be reached.
    AuthorityUnreachable {
        /// The full error, naming the URL.
        detail: String,
    },
    /// The resource authenticated the token but no role assignment allows the action.
    MissingRole {
        /// Object id (and app id) of the principal.
        principal: String,
        /// What was attempted.
        action: String,
        /// Where.
        scope: String,
        /// The resource's own explanation, when it gave one.
        detail: Option<String>,
    },
    /// The resource refused the token itself (401: wrong audience, issuer, expiry).
    TokenRefusedByResource {
        /// `AuthenticationErrorDetail` or the status.
        detail: String,
    },
    /// The resource could not be reached.
    ResourceUnreachable {
        /// The URL.
        url: String,
        /// The network error.
        cause: String,
    },
    /// This host's clock disagrees with the authority's by more than [`MAX_CLOCK_SKEW`].
    ClockSkew {
        /// Local minus authority, seconds.
        skew_seconds: i64,
    },
    /// Anything else, with the details.
    Other {
        /// What happened.
        detail: String,
    },
}

impl Diagnosis {
    /// The process exit code for this diagnosis; distinct for each.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Healthy => 0,
            Self::Other { .. } => 1,
            Self::NoCredential { .. } => 3,
            Self::CredentialRejected { .. } => 4,
            Self::AuthorityUnreachable { .. } => 5,
            Self::MissingRole { .. } => 6,
            Self::ResourceUnreachable { .. } => 7,
            Self::ClockSkew { .. } => 8,
            Self::TokenRefusedByResource { .. } => 9,
        }
    }

    /// A stable snake_case name for scripts (`-o json`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::NoCredential { .. } => "no_credential",
            Self::CredentialRejected { .. } => "credential_rejected",
            Self::AuthorityUnreachable { .. } => "authority_unreachable",
            Self::MissingRole { .. } => "missing_role",
            Self::TokenRefusedByResource { .. } => "token_refused_by_resource",
            Self::ResourceUnreachable { .. } => "resource_unreachable",
            Self::ClockSkew { .. } => "clock_skew",
            Self::Other { .. } => "other",
        }
    }

    /// One plain sentence (or a few lines) saying what is wrong and what to do.
    pub fn explain(&self) -> String {
        match self {
            Self::Healthy => "everything works: a token was acquired and accepted".into(),
            Self::NoCredential { report } => format!(
                "no credential found: nothing in this environment can get a token.\n{report}\nSet AZURE_CLIENT_ID/AZURE_TENANT_ID with a secret, certificate or federated token file, run on a host with a managed identity, or run `entraflow login`."
            ),
            Self::CredentialRejected { detail, .. } => {
                format!("credential rejected by the authority: {detail}")
            }
            Self::AuthorityUnreachable { detail } => format!("authority unreachable: {detail}"),
            Self::MissingRole {
                principal,
                action,
                scope,
                detail,
            } => {
                let mut text = format!(
                    "the token is valid but lacks a role or assignment for this action on this resource: principal {principal} may not {action} on {scope}. Assign a data role (e.g. Storage Blob Data Reader/Contributor) to this principal at that scope or above."
                );
                if let Some(detail) = detail {
                    text.push_str(&format!("\nThe resource says: {detail}"));
                }
                text
            }
            Self::TokenRefusedByResource { detail } => format!(
                "the resource did not accept the token (authentication, not authorization): {detail}"
            ),
            Self::ResourceUnreachable { url, cause } => {
                format!("resource unreachable: {url}: {cause}")
            }
            Self::ClockSkew { skew_seconds } => format!(
                "this host's clock is {skew_seconds} s off the authority's; tokens will look expired or not yet valid. Synchronise the clock (NTP)."
            ),
            Self::Other { detail } => detail.clone(),
        }
    }
}

/// What `doctor` found, step by step.
#[derive(Debug, Clone)]
pub struct DoctorReport {
    /// The token's fingerprint and expiry, when one was acquired.
    pub token: Option<(String, i64)>,
    /// Its claims (never the token itself).
    pub claims: Option<AccessTokenClaims>,
    /// Local minus authority clock, seconds, when the authority's `Date` was read.
    pub clock_skew_seconds: Option<i64>,
    /// The resource's HTTP status, when it answered.
    pub resource_status: Option<u16>,
    /// The verdict.
    pub diagnosis: Diagnosis,
}

/// Runs the checks: token from `credential`, clock against `authority`, then a GET of
/// `resource_url` with the token (Azure Storage headers included).
pub async fn diagnose(
    credential: &dyn TokenCredential,
    request: &TokenRequest,
    options: &CredentialOptions,
    tenant: Option<&str>,
    resource_url: Option<&str>,
) -> DoctorReport {
    let mut report = DoctorReport {
        token: None,
        claims: None,
        clock_skew_seconds: None,
        resource_status: None,
        diagnosis: Diagnosis::Healthy,
    };
    let http = HttpClient::new(ClientKind::Authority {
        extra_ca_pem: options.extra_ca_pem.clone(),
    });
    let token = match credential.get_token(request).await {
        Ok(token) => token,
        Err(err) => {
            report.diagnosis = classify(&err);
            return report;
        }
    };
    report.token = Some((token.fingerprint(), token.expires_on));
    report.claims = crate::claims::decode_unverified(token.token.expose()).ok();

    let tenant = report
        .claims
        .as_ref()
        .map(|c| c.tid.clone())
        .or_else(|| tenant.map(str::to_owned));
    if let Some(tenant) = tenant {
        report.clock_skew_seconds = clock_skew(&http, &options.authority, &tenant).await;
    }

    if let Some(url) = resource_url {
        let (status, diagnosis) =
            call_resource(&http, url, token.token.expose(), report.claims.as_ref()).await;
        report.resource_status = status;
        if diagnosis != Diagnosis::Healthy {
            report.diagnosis = diagnosis;
            return report;
        }
    }
    if let Some(skew) = report.clock_skew_seconds
        && skew.unsigned_abs() > MAX_CLOCK_SKEW.as_secs()
    {
        report.diagnosis = Diagnosis::ClockSkew { skew_seconds: skew };
    }
    report
}

/// Maps a token failure to its diagnosis.
pub fn classify(err: &CredentialError) -> Diagnosis {
    let decisive = err.decisive();
    match decisive {
        CredentialError::ChainFailed(_) | CredentialError::CredentialUnavailable { .. } => {
            Diagnosis::NoCredential {
                report: err.to_string(),
            }
        }
        CredentialError::Misconfigured { .. } => Diagnosis::NoCredential {
            report: format!("{err}\n(decisive: {decisive})"),
        },
        CredentialError::AuthenticationRejected { code, .. } => Diagnosis::CredentialRejected {
            code: *code,
            detail: decisive.to_string(),
        },
        CredentialError::IdentityNotAssigned { .. } => Diagnosis::CredentialRejected {
            code: None,
            detail: decisive.to_string(),
        },
        CredentialError::AuthorityUnreachable { .. } | CredentialError::Throttled { .. } => {
            Diagnosis::AuthorityUnreachable {
                detail: decisive.to_string(),
            }
        }
        other => Diagnosis::Other {
            detail: other.to_string(),
        },
    }
}

async fn clock_skew(http: &HttpClient, authority: &AuthorityHost, tenant: &str) -> Option<i64> {
    let url = format!(
        "{}/{tenant}/v2.0/.well-known/openid-configuration",
        authority.as_str()
    );
    let response = http
        .get()
        .ok()?
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let date = response
        .headers()
        .get(reqwest::header::DATE)?
        .to_str()
        .ok()?;
    let server = httpdate::parse_http_date(date).ok()?;
    let now = SystemTime::now();
    Some(match now.duration_since(server) {
        Ok(ahead) => ahead.as_secs() as i64,
        Err(behind) => -(behind.duration().as_secs() as i64),
    })
}

async fn call_resource(
    http: &HttpClient,
    url: &str,
    token: &str,
    claims: Option<&AccessTokenClaims>,
) -> (Option<u16>, Diagnosis) {
    let client = match http.get() {
        Ok(c) => c,
        Err(e) => {
            return (
                None,
                Diagnosis::Other {
                    detail: e.to_string(),
                },
            );
        }
    };
    let response = client
        .get(url)
        .bearer_auth(token)
        .header("x-ms-version", "2023-11-03")
        .header("x-ms-date", httpdate::fmt_http_date(SystemTime::now()))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            return (
                None,
                Diagnosis::ResourceUnreachable {
                    url: redact_query(url),
                    cause: cause_chain(&e),
                },
            );
        }
    };
    let status = response.status().as_u16();
    let error_code = response
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.unwrap_or_default();
    let code = error_code.or_else(|| xml_element(&body, "Code"));
    let diagnosis = match (status, code.as_deref()) {
        // 404 comes after authorization at Storage: the token and the role are fine.
        (200..=299 | 404, _) => Diagnosis::Healthy,
        (403, Some("AuthorizationPermissionMismatch")) => {
            let principal = claims.map_or_else(
                || "(unknown)".to_owned(),
                |c| match c.client_app_id() {
                    Some(app) => format!("{} (appid {app})", c.oid),
                    None => c.oid.clone(),
                },
            );
            let detail = xml_element(&body, "AuthorizationDenialDetail");
            // entraflow's gate names the data action and ARM scope; Azure itself does not.
            let (action, scope) = detail
                .as_deref()
                .and_then(denied_action_and_scope)
                .unwrap_or_else(|| ("GET (read)".into(), redact_query(url)));
            Diagnosis::MissingRole {
                principal,
                action,
                scope,
                detail,
            }
        }
        (401, _) => Diagnosis::TokenRefusedByResource {
            detail: xml_element(&body, "AuthenticationErrorDetail")
                .or(code)
                .unwrap_or_else(|| format!("HTTP {status}")),
        },
        (_, code) => Diagnosis::Other {
            detail: format!(
                "the resource answered HTTP {status}{}",
                code.map(|c| format!(" {c}")).unwrap_or_default()
            ),
        },
    };
    (Some(status), diagnosis)
}

/// `… granting ACTION on SCOPE; …` → (ACTION, SCOPE).
fn denied_action_and_scope(detail: &str) -> Option<(String, String)> {
    let rest = detail.split_once(" granting ")?.1;
    let (action, rest) = rest.split_once(" on ")?;
    let scope = rest.split([';', ' ']).next()?;
    Some((action.to_owned(), scope.to_owned()))
}

/// The text of the first `<name>…</name>` in an XML error body, entities decoded.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&close)?;
    let text = &body[start..end];
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_diagnosis_has_its_own_exit_code() {
        let all = [
            Diagnosis::Healthy,
            Diagnosis::Other {
                detail: String::new(),
            },
            Diagnosis::NoCredential {
                report: String::new(),
            },
            Diagnosis::CredentialRejected {
                code: None,
                detail: String::new(),
            },
            Diagnosis::AuthorityUnreachable {
                detail: String::new(),
            },
            Diagnosis::MissingRole {
                principal: String::new(),
                action: String::new(),
                scope: String::new(),
                detail: None,
            },
            Diagnosis::ResourceUnreachable {
                url: String::new(),
                cause: String::new(),
            },
            Diagnosis::ClockSkew { skew_seconds: 0 },
            Diagnosis::TokenRefusedByResource {
                detail: String::new(),
            },
        ];
        let codes: std::collections::HashSet<u8> = all.iter().map(Diagnosis::exit_code).collect();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn storage_error_details_are_read() {
        let body = "\u{feff}<?xml version=\"1.0\"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>m</Message><AuthorizationDenialDetail>principal a &amp; b</AuthorizationDenialDetail></Error>";
        assert_eq!(
            xml_element(body, "Code").as_deref(),
            Some("AuthorizationPermissionMismatch")
        );
        assert_eq!(
            xml_element(body, "AuthorizationDenialDetail").as_deref(),
            Some("principal a & b")
        );
        assert_eq!(
            denied_action_and_scope(
                "principal p has no role assignment granting a/read on /s/c; assign x"
            ),
            Some(("a/read".into(), "/s/c".into()))
        );
    }

    #[test]
    fn a_chain_that_stopped_at_a_rejection_is_a_rejection_not_no_credential() {
        let err = CredentialError::ChainFailed(vec![
            (
                "EnvironmentCredential",
                CredentialError::CredentialUnavailable {
                    credential: "EnvironmentCredential",
                    reason: "unset".into(),
                },
            ),
            (
                "WorkloadIdentityCredential",
                CredentialError::AuthenticationRejected {
                    code: Some(Aadsts::NoFederatedMatch),
                    codes: vec![70021],
                    meaning: "m".into(),
                    trace_id: String::new(),
                    correlation_id: String::new(),
                    authority: "https://a".into(),
                },
            ),
        ]);
        assert!(matches!(
            classify(&err),
            Diagnosis::CredentialRejected {
                code: Some(Aadsts::NoFederatedMatch),
                ..
            }
        ));
    }
}
