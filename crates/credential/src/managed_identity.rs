//! Managed identity: the host hands out tokens for the identity assigned to it.
//!
//! Two forms, chosen from the environment like azure-identity does:
//! - **App Service / Container Apps**: `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`,
//!   `GET {endpoint}?resource=…&api-version=2019-08-01` with `X-IDENTITY-HEADER`.
//! - **IMDS** (VMs, AKS pod identity): `GET http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=…`
//!   with `Metadata: true` (host overridable by `AZURE_POD_IDENTITY_AUTHORITY_HOST`).
//!   400 means no such identity on this host; 404/410/429/5xx are retried on a
//!   schedule (attempts at about 0, 2, 6, 14, 30 s), honouring `Retry-After`.
//!
//! In a chain, the *first* request is a probe with a short connect timeout so a host
//! without IMDS fails fast. Only the connect is bounded: an IMDS that accepts the
//! connection but answers slowly is waited for, and a failed probe is never
//! remembered, so one bad moment cannot disable managed identity for the life of the
//! process (azure-sdk-for-python #31637).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use entraflow_core::{Secret, env};
use serde::Deserialize;

use entraflow_core::retry::RetryPolicy;

use crate::authority::{excerpt, now_unix, retry_after};
use crate::cache::{CacheKey, RefreshPolicy, TokenCache};
use crate::error::{CredentialError, redact_query};
use crate::http::{ClientKind, HttpClient};
use crate::token::{AccessToken, TokenCredential, TokenFuture, TokenRequest};
use crate::vars::Environment;

/// The documented IMDS host.
pub const IMDS_HOST: &str = "http://169.254.169.254";
const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Which identity to ask for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ManagedIdentityId {
    /// The host's system-assigned identity.
    #[default]
    SystemAssigned,
    /// A user-assigned identity by client (application) id.
    ClientId(String),
    /// A user-assigned identity by object (principal) id.
    ObjectId(String),
    /// A user-assigned identity by ARM resource id.
    ResourceId(String),
}

impl ManagedIdentityId {
    fn describe(&self) -> String {
        match self {
            Self::SystemAssigned => "system-assigned".into(),
            Self::ClientId(id) => format!("client_id={id}"),
            Self::ObjectId(id) => format!("object_id={id}"),
            Self::ResourceId(id) => format!("resource id {id}"),
        }
    }
}

/// Settings of a [`ManagedIdentityCredential`].
#[derive(Debug, Clone)]
pub struct ManagedIdentityOptions {
    /// Which identity.
    pub id: ManagedIdentityId,
    /// Retries of a 404/410/429/5xx or transport failure (`Retry-After` wins when
    /// longer). Default [`RetryPolicy::MANAGED_IDENTITY`].
    pub retry: RetryPolicy,
    /// In a chain: connect timeout of the first request, after which the credential
    /// reports itself unavailable. `None` (standalone use): no probe.
    pub probe_connect_timeout: Option<Duration>,
    /// The IMDS host; default `AZURE_POD_IDENTITY_AUTHORITY_HOST` or [`IMDS_HOST`].
    pub imds_host: Option<String>,
    /// App Service endpoint and header; default `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`.
    pub app_service: Option<(String, Secret)>,
    /// The cache's rules.
    pub refresh: RefreshPolicy,
}

impl Default for ManagedIdentityOptions {
    fn default() -> Self {
        Self {
            id: ManagedIdentityId::SystemAssigned,
            retry: RetryPolicy::MANAGED_IDENTITY,
            probe_connect_timeout: None,
            imds_host: None,
            app_service: None,
            refresh: RefreshPolicy::default(),
        }
    }
}

enum Source {
    Imds { url: String },
    AppService { url: String, header: Secret },
}

struct Inner {
    source: Source,
    id: ManagedIdentityId,
    retry: RetryPolicy,
    probe: Option<HttpClient>,
    /// Set once the endpoint has answered anything: from then on no more probing.
    answered: AtomicBool,
    http: HttpClient,
    cache: TokenCache,
}

/// Tokens for the managed identity assigned to this host.
#[derive(Clone)]
pub struct ManagedIdentityCredential {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ManagedIdentityCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, url) = match &self.inner.source {
            Source::Imds { url } => ("imds", url),
            Source::AppService { url, .. } => ("app-service", url),
        };
        f.debug_struct("ManagedIdentityCredential")
            .field("source", &kind)
            .field("url", url)
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct MsiResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    expires_on: Option<serde_json::Value>,
    #[serde(default)]
    token_type: Option<String>,
}

/// IMDS sends numbers as strings; App Service sends either.
fn as_i64(v: &Option<serde_json::Value>) -> Option<i64> {
    match v.as_ref()? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl ManagedIdentityCredential {
    /// App Service form when `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set, else IMDS.
    pub fn new(options: ManagedIdentityOptions) -> Result<Self, CredentialError> {
        Self::from_environment(&Environment::process(), options)
    }

    /// Like [`Self::new`], reading `IDENTITY_ENDPOINT`, `IDENTITY_HEADER` and
    /// `AZURE_POD_IDENTITY_AUTHORITY_HOST` from `vars` where `options` leaves them open.
    pub fn from_environment(
        vars: &Environment,
        options: ManagedIdentityOptions,
    ) -> Result<Self, CredentialError> {
        let (endpoint, header) = match options.app_service.clone() {
            Some((url, header)) => (Some(url), Some(header)),
            None => (
                vars.get(env::IDENTITY_ENDPOINT),
                vars.get(env::IDENTITY_HEADER).map(Secret::new),
            ),
        };
        let source = match (endpoint, header) {
            (Some(url), Some(header)) => Source::AppService { url, header },
            (Some(_), None) => {
                return Err(CredentialError::Misconfigured {
                    variable: env::IDENTITY_HEADER.into(),
                    hint: "IDENTITY_ENDPOINT is set but IDENTITY_HEADER is not; both come from the App Service/Container Apps runtime".into(),
                });
            }
            _ => {
                let host = options
                    .imds_host
                    .clone()
                    .or_else(|| vars.get(env::AZURE_POD_IDENTITY_AUTHORITY_HOST))
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| IMDS_HOST.to_owned());
                Source::Imds {
                    url: format!("{}{IMDS_PATH}", host.trim_end_matches('/')),
                }
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                id: options.id,
                retry: options.retry,
                probe: options.probe_connect_timeout.map(|connect_timeout| {
                    HttpClient::new(ClientKind::IdentityEndpoint { connect_timeout })
                }),
                answered: AtomicBool::new(false),
                http: HttpClient::new(ClientKind::IdentityEndpoint {
                    connect_timeout: Duration::from_secs(10),
                }),
                cache: TokenCache::new(options.refresh),
            }),
        })
    }

    fn key(&self, request: &TokenRequest) -> CacheKey {
        CacheKey {
            tenant: String::new(),
            client: self.inner.id.describe(),
            scopes: request.scope_string(),
            claims: None,
        }
    }
}

impl TokenCredential for ManagedIdentityCredential {
    fn get_token<'a>(&'a self, request: &'a TokenRequest) -> TokenFuture<'a> {
        Box::pin(async move {
            let resource = request.resource()?;
            let inner = self.inner.clone();
            self.inner
                .cache
                .get(&self.key(request), move || async move {
                    inner.fetch(&resource).await
                })
                .await
        })
    }

    fn cached_token(&self, request: &TokenRequest) -> Option<AccessToken> {
        self.inner.cache.fresh(&self.key(request))
    }

    fn name(&self) -> &'static str {
        "ManagedIdentityCredential"
    }
}

impl Inner {
    fn request(
        &self,
        client: &reqwest::Client,
        resource: &str,
    ) -> (String, reqwest::RequestBuilder) {
        let (url, api_version, mut builder) = match &self.source {
            Source::Imds { url } => (
                url.clone(),
                IMDS_API_VERSION,
                client.get(url).header("Metadata", "true"),
            ),
            Source::AppService { url, header } => (
                url.clone(),
                APP_SERVICE_API_VERSION,
                client.get(url).header("X-IDENTITY-HEADER", header.expose()),
            ),
        };
        let app_service = matches!(self.source, Source::AppService { .. });
        let mut query: Vec<(&str, &str)> =
            vec![("api-version", api_version), ("resource", resource)];
        match &self.id {
            ManagedIdentityId::SystemAssigned => {}
            ManagedIdentityId::ClientId(id) => query.push(("client_id", id)),
            ManagedIdentityId::ObjectId(id) => query.push((
                if app_service {
                    "principal_id"
                } else {
                    "object_id"
                },
                id,
            )),
            ManagedIdentityId::ResourceId(id) => query.push((
                if app_service {
                    "mi_res_id"
                } else {
                    "msi_res_id"
                },
                id,
            )),
        }
        builder = builder.query(&query).timeout(REQUEST_TIMEOUT);
        (url, builder)
    }

    async fn fetch(&self, resource: &str) -> Result<AccessToken, CredentialError> {
        let mut retry = self.retry.start();
        loop {
            let probing = self.probe.is_some() && !self.answered.load(Ordering::Relaxed);
            let client = match (&self.probe, probing) {
                (Some(probe), true) => probe.get()?,
                _ => self.http.get()?,
            };
            let (url, request) = self.request(&client, resource);
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) if probing => {
                    return Err(CredentialError::CredentialUnavailable {
                        credential: "ManagedIdentityCredential",
                        reason: format!(
                            "no managed identity endpoint answered at {url} ({}); this host has no managed identity",
                            crate::error::cause_chain(&e)
                        ),
                    });
                }
                Err(e) => {
                    if let Some(delay) = retry.next_delay(None) {
                        tracing::debug!(%url, error = %e, retries = retry.retries(), "identity endpoint unreachable; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(CredentialError::unreachable(&url, &e));
                }
            };
            let status = response.status().as_u16();
            let wait = retry_after(response.headers());
            let body = response
                .bytes()
                .await
                .map_err(|e| CredentialError::unreachable(&url, &e))?;
            // Identity endpoints always answer JSON; a firewall or proxy answering for
            // the link-local address means there is no managed identity here.
            if probing && serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                return Err(CredentialError::CredentialUnavailable {
                    credential: "ManagedIdentityCredential",
                    reason: format!(
                        "{} answered HTTP {status} with something that is not an identity endpoint ({}); this host has no managed identity",
                        redact_query(&url),
                        excerpt(&body)
                    ),
                });
            }
            self.answered.store(true, Ordering::Relaxed);
            match status {
                200..=299 => return self.parse(&url, status, &body),
                400 => {
                    return Err(CredentialError::IdentityNotAssigned {
                        url: redact_query(&url),
                        identity: self.id.describe(),
                        detail: excerpt(&body),
                    });
                }
                404 | 410 | 429 | 500..=599 => {
                    if let Some(delay) = retry.next_delay(wait) {
                        tracing::debug!(%url, status, retries = retry.retries(), delay_ms = delay.as_millis() as u64, "identity endpoint asked us to retry");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    if status == 429 {
                        return Err(CredentialError::Throttled {
                            url: redact_query(&url),
                            retry_after: wait,
                        });
                    }
                    return Err(CredentialError::UnexpectedResponse {
                        url: redact_query(&url),
                        status,
                        detail: format!(
                            "still failing after {} retries: {}",
                            retry.retries(),
                            excerpt(&body)
                        ),
                    });
                }
                _ => {
                    return Err(CredentialError::UnexpectedResponse {
                        url: redact_query(&url),
                        status,
                        detail: excerpt(&body),
                    });
                }
            }
        }
    }

    fn parse(&self, url: &str, status: u16, body: &[u8]) -> Result<AccessToken, CredentialError> {
        let parsed: MsiResponse =
            serde_json::from_slice(body).map_err(|e| CredentialError::UnexpectedResponse {
                url: redact_query(url),
                status,
                detail: format!("the body is not a token response ({e})"),
            })?;
        // Prefer the relative lifetime: it does not depend on the two clocks agreeing.
        let expires_on = match (as_i64(&parsed.expires_in), as_i64(&parsed.expires_on)) {
            (Some(expires_in), _) => now_unix() + expires_in,
            (None, Some(expires_on)) => expires_on,
            (None, None) => {
                return Err(CredentialError::UnexpectedResponse {
                    url: redact_query(url),
                    status,
                    detail: "the token response has neither expires_in nor expires_on".into(),
                });
            }
        };
        Ok(AccessToken {
            token: Secret::new(parsed.access_token),
            expires_on,
            refresh_on: expires_on,
            token_type: parsed.token_type.unwrap_or_else(|| "Bearer".into()),
        })
    }
}
