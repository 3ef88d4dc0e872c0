//! The token service itself, independent of HTTP: tenant resolution, client
//! authentication, grants and issuance. The server module only parses HTTP
//! into [`TokenRequest`] and renders the result.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use entraflow_core::scope::{ScopeError, single_resource};
use entraflow_core::{Aadsts, DEVICE_CODE_GRANT, JWT_BEARER_ASSERTION_TYPE};
use serde_json::Value;

use crate::assertion;
use crate::decision::Decision;
use crate::error::{AuthorityError, OAuthError};
use crate::federation::{self, IssuerKeyCache};
use crate::issue::{self, EndpointVersion, Principal};
use crate::keys::{KeyRing, SigningKey};
use crate::lockout::{Locked, Lockout, LockoutPolicy, Subject, subjects};
use crate::resource::Resource;
use crate::secrets;
use crate::store::{Store, Tenant, TenantApp, now};
use entraflow_audit::{AuditLog, Event};

/// Largest request body accepted (Entra's requests are a few KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// A parsed token-endpoint request: form parameters (each at most once), the
/// credentials of an `Authorization: Basic` header, and who sent it (for the audit
/// record).
#[derive(Clone, Default)]
pub struct TokenRequest {
    params: HashMap<String, String>,
    basic: Option<(String, String)>,
    pub(crate) client: ClientInfo,
}

/// Where a request came from, as the audit record names it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientInfo {
    /// `ip:port`.
    pub(crate) addr: Option<String>,
    /// `User-Agent`.
    pub(crate) user_agent: Option<String>,
}

impl ClientInfo {
    pub(crate) fn new(addr: Option<std::net::SocketAddr>, user_agent: Option<&str>) -> ClientInfo {
        ClientInfo {
            addr: addr.map(|a| a.to_string()),
            // Bounded: the field is stored in every audit record.
            user_agent: user_agent.map(|ua| ua.chars().take(256).collect()),
        }
    }
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<_> = self.params.keys().collect();
        keys.sort();
        f.debug_struct("TokenRequest")
            .field("params", &keys)
            .finish_non_exhaustive()
    }
}

fn malformed(what: impl Into<String>) -> OAuthError {
    OAuthError::new(Aadsts::MalformedRequest, what)
}

impl TokenRequest {
    /// Parses an `application/x-www-form-urlencoded` body and an optional
    /// `Authorization` header value.
    pub fn parse(body: &[u8], authorization: Option<&str>) -> Result<TokenRequest, OAuthError> {
        if body.len() > MAX_BODY {
            return Err(malformed(format!(
                "The request body is larger than {MAX_BODY} bytes."
            )));
        }
        let not_form =
            || malformed("The request body must be application/x-www-form-urlencoded UTF-8.");
        std::str::from_utf8(body).map_err(|_| not_form())?;
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|_| not_form())?;
        // The decoder replaces invalid UTF-8 escapes with U+FFFD instead of failing.
        if pairs
            .iter()
            .any(|(k, v)| k.contains('\u{FFFD}') || v.contains('\u{FFFD}'))
        {
            return Err(not_form());
        }
        let mut params = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            if params.insert(k.clone(), v).is_some() {
                return Err(malformed(format!(
                    "The request contains the parameter '{k}' more than once."
                )));
            }
        }
        let basic = match authorization {
            Some(h) if h.len() > 6 && h[..6].eq_ignore_ascii_case("basic ") => {
                let bad = || {
                    malformed(
                        "The Authorization header is not valid HTTP Basic (base64 of client_id:client_secret).",
                    )
                };
                let decoded = STANDARD.decode(h[6..].trim()).map_err(|_| bad())?;
                let text = String::from_utf8(decoded).map_err(|_| bad())?;
                let (id, secret) = text.split_once(':').ok_or_else(bad)?;
                let unescape = |s: &str| {
                    url::form_urlencoded::parse(format!("x={s}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                };
                Some((unescape(id), unescape(secret)))
            }
            _ => None,
        };
        Ok(TokenRequest {
            params,
            basic,
            client: ClientInfo::default(),
        })
    }

    /// Names the client (address and `User-Agent`) in the audit record of this request.
    pub fn with_client(
        mut self,
        addr: Option<std::net::SocketAddr>,
        user_agent: Option<&str>,
    ) -> TokenRequest {
        self.client = ClientInfo::new(addr, user_agent);
        self
    }

    /// A parameter's value, if present and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Every parameter, sorted by name.
    pub(crate) fn params(&self) -> Vec<(&str, &str)> {
        let mut all: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all.sort_unstable();
        all
    }

    /// The client id the request names: `client_id` in the body or the user of
    /// an `Authorization: Basic` header (which must agree).
    pub(crate) fn client_id(&self) -> Result<&str, OAuthError> {
        match (&self.basic, self.get("client_id")) {
            (Some((id, _)), Some(form_id)) if !id.eq_ignore_ascii_case(form_id) => Err(malformed(
                "The client_id in the Authorization header and in the body differ.",
            )),
            (Some((id, _)), _) => Ok(id.as_str()),
            (None, Some(id)) => Ok(id),
            (None, None) => Err(OAuthError::new(
                Aadsts::MissingParameter,
                "The request body must contain the following parameter: 'client_id'.",
            )),
        }
    }

    /// Whether the request carries a client credential (a secret, in the body or
    /// as HTTP Basic, or an assertion).
    pub(crate) fn has_client_credential(&self) -> bool {
        self.basic.is_some()
            || self.get("client_secret").is_some()
            || self.get("client_assertion").is_some()
    }

    pub(crate) fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| {
            OAuthError::new(
                Aadsts::MissingParameter,
                format!("The request body must contain the following parameter: '{name}'."),
            )
        })
    }
}

/// Tunables of the token service.
#[derive(Debug, Clone)]
pub struct AuthorityOptions {
    /// Seconds between device-code polls the client is told to wait.
    pub device_code_interval: u64,
    /// When wrong passwords and client secrets lock an account, app or source.
    pub lockout: LockoutPolicy,
}

impl Default for AuthorityOptions {
    fn default() -> Self {
        AuthorityOptions {
            device_code_interval: 5,
            lockout: LockoutPolicy::default(),
        }
    }
}

/// The token service: a [`Store`], the signing keys, and the authority host URL.
pub struct Authority {
    pub(crate) store: Arc<Store>,
    pub(crate) host: String,
    keys: RwLock<Arc<KeyRing>>,
    pub(crate) issuer_keys: IssuerKeyCache,
    pub(crate) http: reqwest::Client,
    pub(crate) options: AuthorityOptions,
    /// Smart lockout's counters for passwords and client secrets.
    pub(crate) lockout: Lockout,
    /// Where token decisions are recorded; `None` only for in-process use
    /// without a server (benchmarks, doctests).
    audit: Option<AuditLog>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("host", &self.host)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A confidential client's service principal.
pub(crate) struct ClientPrincipal {
    pub(crate) oid: String,
    pub(crate) app_id: String,
    display_name: String,
}

/// A confidential client that proved who it is.
pub(crate) struct AuthenticatedClient {
    pub(crate) sp: ClientPrincipal,
    /// `1` secret, `2` certificate or federated assertion (`appidacr`/`azpacr`).
    pub(crate) acr: &'static str,
}

/// What a client sees when its decision could not be audited: retry later.
fn audit_unavailable() -> OAuthError {
    OAuthError::new(
        Aadsts::TemporarilyUnavailable,
        "The authority could not record this request in its audit log, so it does not answer it; retry shortly. The authority's log says why.",
    )
}

/// Tenant path segments that name no tenant.
const TENANT_INDEPENDENT: [&str; 3] = ["common", "organizations", "consumers"];

impl Authority {
    /// A token service at `host` (e.g. `https://127.0.0.1:8443`), creating the
    /// first signing key if needed. `http` fetches external issuers' keys.
    pub fn new(
        store: Arc<Store>,
        host: &str,
        http: reqwest::Client,
        options: AuthorityOptions,
    ) -> Result<Authority, AuthorityError> {
        let ring = store.load_key_ring()?;
        Ok(Authority {
            store,
            host: host.trim_end_matches('/').to_owned(),
            keys: RwLock::new(Arc::new(ring)),
            issuer_keys: IssuerKeyCache::default(),
            http,
            lockout: Lockout::new(options.lockout),
            options,
            audit: None,
        })
    }

    /// Records every token decision in `log`: each issued or refused token is one
    /// event, durable before the answer is returned. [`serve`](crate::serve) always
    /// attaches its log; without one, decisions are only traced.
    pub fn with_audit_log(mut self, log: AuditLog) -> Authority {
        self.audit = Some(log);
        self
    }

    /// The audit log decisions go to, if any.
    pub fn audit_log(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// Appends a decision's event; if the log cannot take it, the client gets
    /// `temporarily_unavailable` instead of an unaudited answer.
    pub(crate) async fn record(&self, event: Event) -> Result<(), OAuthError> {
        let Some(log) = &self.audit else {
            return Ok(());
        };
        log.append(event).await.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "could not audit a token decision; answering temporarily_unavailable");
            audit_unavailable()
        })
    }

    /// Records the refusal of a request that could not even be parsed and returns
    /// the error to send (or `temporarily_unavailable` if it could not be recorded).
    pub(crate) async fn refuse_unparsed(
        &self,
        grant: &str,
        client: &ClientInfo,
        err: OAuthError,
    ) -> OAuthError {
        let event = Decision::new(grant, client).refused(
            err.code,
            err.http_status().as_u16(),
            &err.description,
        );
        match self.record(event).await {
            Ok(()) => err,
            Err(unavailable) => unavailable,
        }
    }

    /// The authority host URL.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current key ring, reloaded when `rotate-keys` bumped the generation.
    pub fn key_ring(&self) -> Result<Arc<KeyRing>, AuthorityError> {
        let generation = self.store.key_generation()?;
        {
            let ring = self.keys.read().unwrap_or_else(|e| e.into_inner());
            // A key published ahead of use starts signing at `reload_at`.
            if ring.generation == generation && ring.reload_at.is_none_or(|t| t > now()) {
                return Ok(ring.clone());
            }
        }
        let ring = Arc::new(self.store.load_key_ring()?);
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = ring.clone();
        Ok(ring)
    }

    fn active_key(&self) -> Result<Arc<SigningKey>, AuthorityError> {
        Ok(self.key_ring()?.active.clone())
    }

    /// Resolves the tenant path segment (id or domain). Tenant-independent
    /// segments resolve to the default tenant only where `allow_common`.
    pub fn tenant(&self, segment: &str, allow_common: bool) -> Result<Tenant, OAuthError> {
        if TENANT_INDEPENDENT
            .iter()
            .any(|t| t.eq_ignore_ascii_case(segment))
        {
            if allow_common {
                return Ok(self.store.default_tenant()?);
            }
            return Err(OAuthError::new(
                Aadsts::InvalidTenant,
                format!(
                    "Use of the '/{segment}' endpoint is not supported for this application; app-only tokens need the tenant id or domain in the URL."
                ),
            ));
        }
        self.store.find_tenant(segment)?.ok_or_else(|| {
            OAuthError::new(
                Aadsts::InvalidTenant,
                format!("Tenant '{segment}' not found. Check the tenant id (AZURE_TENANT_ID) and the authority host; `entraflow authority tenant show` prints it."),
            )
        })
    }

    /// Token endpoint URLs a certificate assertion's `aud` may name.
    fn assertion_audiences(&self, tenant: &Tenant, segment: &str) -> Vec<String> {
        let mut out = Vec::new();
        for t in [
            tenant.id.as_str(),
            tenant.domain.as_str(),
            segment,
            "common",
            "organizations",
        ] {
            out.push(format!("{}/{t}/oauth2/v2.0/token", self.host));
            out.push(format!("{}/{t}/oauth2/token", self.host));
        }
        out
    }

    /// Handles one token request: `/{tenant}/oauth2[/v2.0]/token`.
    pub async fn token(
        &self,
        tenant_segment: &str,
        version: EndpointVersion,
        req: &TokenRequest,
    ) -> Result<Value, OAuthError> {
        let mut decision = Decision::new(req.get("grant_type").unwrap_or("-"), &req.client);
        decision.client_id = req
            .get("client_id")
            .or(req.basic.as_ref().map(|(id, _)| id.as_str()))
            .map(str::to_owned);
        decision.resource = req.get("scope").or(req.get("resource")).map(str::to_owned);
        let result = match req.require("grant_type") {
            Err(e) => Err(e),
            Ok("client_credentials") => {
                self.client_credentials(tenant_segment, version, req, &mut decision)
                    .await
            }
            Ok(DEVICE_CODE_GRANT) => {
                self.device_code_grant(tenant_segment, version, req, &mut decision)
            }
            Ok("refresh_token") => {
                self.refresh_token_grant(tenant_segment, version, req, &mut decision)
                    .await
            }
            Ok("authorization_code") => {
                self.authorization_code_grant(tenant_segment, version, req, &mut decision)
                    .await
            }
            Ok(other) => Err(OAuthError::new(
                Aadsts::UnsupportedGrantType,
                format!(
                    "The provided value for the input parameter 'grant_type' is not valid: '{other}'. Supported: authorization_code, client_credentials, refresh_token, {DEVICE_CODE_GRANT}."
                ),
            )),
        };
        // A pending device-code poll is a "not yet", not a decision: polls every
        // few seconds would drown the log.
        let event = match &result {
            Ok(_) => Some(decision.issued()),
            Err(e) if e.code == Aadsts::AuthorizationPending => None,
            Err(e) => Some(decision.refused(e.code, e.http_status().as_u16(), &e.description)),
        };
        if let Some(event) = event {
            self.record(event).await?;
        }
        result
    }

    /// The resource a request names (`scope` on v2, `resource` on v1).
    pub(crate) fn requested_resource(
        &self,
        tenant: &Tenant,
        version: EndpointVersion,
        req: &TokenRequest,
        app_only: bool,
    ) -> Result<(Resource, String), OAuthError> {
        let (requested, scope) = match version {
            EndpointVersion::V2 => {
                let scope = req.require("scope")?;
                let resource = single_resource(scope).map_err(|e| match e {
                    ScopeError::MultipleResources(a, b) => OAuthError::new(
                        Aadsts::MultipleResources,
                        format!("The provided value for the input parameter 'scope' is not valid: a token is for one resource only, but the scopes name '{a}' and '{b}'."),
                    ),
                    other => OAuthError::new(Aadsts::InvalidScope, format!("The provided value for the input parameter 'scope' is not valid: {other}.")),
                })?;
                if app_only {
                    let only_default = scope.split_whitespace().all(|s| s.ends_with("/.default"));
                    if !only_default {
                        return Err(OAuthError::new(
                            Aadsts::InvalidScope,
                            format!(
                                "The provided value for the input parameter 'scope' is not valid. The scope '{scope}' is not valid: app-only tokens need '{}'.",
                                entraflow_core::scope::default_scope(&resource)
                            ),
                        ));
                    }
                }
                (resource, scope.to_owned())
            }
            EndpointVersion::V1 => {
                let r = req.require("resource")?.to_owned();
                (r.clone(), entraflow_core::scope::default_scope(&r))
            }
        };
        let resource = self.store.resolve_resource(&tenant.id, &requested)?.ok_or_else(|| {
            OAuthError::new(
                Aadsts::ResourceNotFound,
                format!("The resource principal named {requested} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant.", tenant.id),
            )
        })?;
        Ok((resource, scope))
    }

    async fn client_credentials(
        &self,
        segment: &str,
        version: EndpointVersion,
        req: &TokenRequest,
        decision: &mut Decision,
    ) -> Result<Value, OAuthError> {
        let tenant = self.tenant(segment, false)?;
        decision.tenant = Some(tenant.id.clone());
        let client = self
            .authenticate_client(&tenant, segment, req, decision)
            .await?;
        let (resource, _) = self.requested_resource(&tenant, version, req, true)?;
        let principal = Principal::App {
            oid: client.sp.oid,
            app_id: client.sp.app_id,
            acr: client.acr,
            mirid: None,
        };
        self.issue(&tenant, version, &resource, &principal, decision)
    }

    /// Authenticates a confidential client by secret (body or Basic) or by
    /// certificate or federated assertion, and finds its service principal.
    pub(crate) async fn authenticate_client(
        &self,
        tenant: &Tenant,
        segment: &str,
        req: &TokenRequest,
        decision: &mut Decision,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let client_id = req.client_id()?;
        let sp = self.client_service_principal(tenant, client_id)?;
        decision.principal = Some(sp.oid.clone());
        decision.principal_name = Some(sp.display_name.clone());
        let basic_secret = req.basic.as_ref().map(|(_, secret)| secret.as_str());
        let secret = match (basic_secret, req.get("client_secret")) {
            (Some(_), Some(_)) => {
                return Err(malformed(
                    "The client secret was sent both in the Authorization header and in the body; send it once.",
                ));
            }
            (a, b) => a.or(b),
        };
        let acr = match (secret, req.get("client_assertion")) {
            (Some(_), Some(_)) => {
                return Err(malformed(
                    "The request contains both a client secret and a client assertion; send one.",
                ));
            }
            (Some(secret), None) => {
                self.verify_secret(client_id, secret, decision.source_ip())?;
                "1"
            }
            (None, Some(assertion)) => {
                if req.get("client_assertion_type") != Some(JWT_BEARER_ASSERTION_TYPE) {
                    return Err(OAuthError::new(
                        Aadsts::MalformedRequest,
                        format!("client_assertion_type must be '{JWT_BEARER_ASSERTION_TYPE}'."),
                    ));
                }
                self.verify_assertion(tenant, segment, client_id, assertion)
                    .await?;
                "2"
            }
            (None, None) => {
                return Err(OAuthError::new(
                    Aadsts::NoCredential,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                ));
            }
        };
        Ok(AuthenticatedClient { sp, acr })
    }

    /// Issues an access token and fills in what the decision records about it.
    pub(crate) fn issue(
        &self,
        tenant: &Tenant,
        version: EndpointVersion,
        resource: &Resource,
        principal: &Principal,
        decision: &mut Decision,
    ) -> Result<Value, OAuthError> {
        let key = self.active_key()?;
        let issued =
            issue::access_token(&self.store, &key, &self.host, tenant, resource, principal)?;
        decision.tenant = Some(tenant.id.clone());
        decision.principal = Some(principal.oid().to_owned());
        decision.client_id = Some(principal.client_id().to_owned());
        if let Principal::User { upn, .. } = principal {
            decision.principal_name = Some(upn.clone());
        }
        decision.resource = Some(resource.identifier.clone());
        decision.uti = Some(issued.claims.uti.clone());
        decision.token_fingerprint = Some(entraflow_core::fingerprint(&issued.access_token));
        Ok(issue::response(version, &issued, resource))
    }

    /// An application's service principal.
    fn client_service_principal(
        &self,
        tenant: &Tenant,
        client_id: &str,
    ) -> Result<ClientPrincipal, OAuthError> {
        let app = self.store.tenant_application(&tenant.id, client_id)?;
        let Some(TenantApp { app_id, .. }) = app else {
            return Err(OAuthError::new(
                Aadsts::AppNotFound,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or if you sent your authentication request to the wrong tenant.",
                    tenant.id
                ),
            ));
        };
        match self.store.client_service_principal(&tenant.id, &app_id)? {
            None => Err(OAuthError::new(
                Aadsts::MissingServicePrincipal,
                format!(
                    "The client application {app_id} is missing service principal in the tenant {}. Create it with `entraflow ad sp create --id {app_id}`.",
                    tenant.id
                ),
            )),
            Some(sp) if !sp.enabled => Err(OAuthError::new(
                Aadsts::Disabled,
                format!("Application '{app_id}' is disabled."),
            )),
            Some(sp) => Ok(ClientPrincipal {
                oid: sp.object_id,
                app_id,
                display_name: sp.display_name,
            }),
        }
    }

    /// Checks a user's password (argon2id: call it off the async workers) under
    /// smart lockout: a locked account or source is refused before the check.
    /// `stored` is the user's password hash; `None` (no such user, or no password)
    /// fails like a wrong password and counts against the source.
    pub(crate) fn check_password(
        &self,
        upn: &str,
        stored: Option<&str>,
        password: &str,
        source: Option<std::net::IpAddr>,
    ) -> Result<(), OAuthError> {
        let subjects = subjects(Subject::account(upn), source);
        self.lockout.check(&subjects).map_err(|l| locked(&l))?;
        if stored.is_some_and(|hash| crate::password::verify(password, hash)) {
            self.lockout.succeeded(&subjects[0]);
            return Ok(());
        }
        Err(match self.lockout.failed(&subjects, password) {
            Some(l) => locked(&l),
            None => wrong_password(),
        })
    }

    fn verify_secret(
        &self,
        client_id: &str,
        secret: &str,
        source: Option<std::net::IpAddr>,
    ) -> Result<(), OAuthError> {
        let subjects = subjects(Subject::client(client_id), source);
        self.lockout.check(&subjects).map_err(|l| locked(&l))?;
        let checked = self.compare_secret(client_id, secret);
        match &checked {
            Err(e) if e.code == Aadsts::InvalidSecret => {
                if let Some(l) = self.lockout.failed(&subjects, secret) {
                    return Err(locked(&l));
                }
            }
            Ok(()) => self.lockout.succeeded(&subjects[0]),
            Err(_) => {}
        }
        checked
    }

    fn compare_secret(&self, client_id: &str, secret: &str) -> Result<(), OAuthError> {
        let rows = self.store.client_secret_hashes(client_id)?;
        // Check every stored secret so timing does not reveal which one matched.
        let matched = rows
            .iter()
            .filter(|(hash, _)| secrets::matches(secret, hash))
            .map(|(_, end)| *end)
            .max();
        match matched {
            Some(end) if end > now() => Ok(()),
            Some(_) => Err(OAuthError::new(
                Aadsts::ExpiredSecret,
                format!(
                    "The provided client secret keys for app '{client_id}' are expired. Create a new secret with `entraflow ad app credential reset --id {client_id}`."
                ),
            )),
            None => Err(OAuthError::new(
                Aadsts::InvalidSecret,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            )),
        }
    }

    async fn verify_assertion(
        &self,
        tenant: &Tenant,
        segment: &str,
        client_id: &str,
        assertion: &str,
    ) -> Result<(), OAuthError> {
        let (header, claims) = assertion::peek(assertion)?;
        let self_signed = claims
            .iss
            .as_deref()
            .is_some_and(|i| i.eq_ignore_ascii_case(client_id));
        if self_signed {
            let audiences = self.assertion_audiences(tenant, segment);
            assertion::verify_certificate_assertion(
                &self.store,
                client_id,
                assertion,
                &header,
                &claims,
                &audiences,
            )
        } else {
            federation::verify_federated_assertion(
                &self.store,
                &self.issuer_keys,
                &self.http,
                &self.host,
                client_id,
                assertion,
                &header,
                &claims,
            )
            .await
        }
    }
}

/// `AADSTS50126`.
pub(crate) fn wrong_password() -> OAuthError {
    OAuthError::new(
        Aadsts::InvalidUserNameOrPassword,
        "Error validating credentials due to invalid username or password. A user without a password cannot sign in here; give one with `entraflow ad user create --password-stdin`.",
    )
}

/// `AADSTS50053`, naming what is locked and for how long.
fn locked(l: &Locked) -> OAuthError {
    let what = match &l.subject {
        Subject::Account(upn) => format!(
            "The account '{upn}' is locked because of too many sign-in attempts with an incorrect user ID or password"
        ),
        Subject::Client(client_id) => format!(
            "Application '{client_id}' is locked because of too many requests with an invalid client secret"
        ),
        Subject::Source(ip) => format!(
            "Sign-in was blocked because too many incorrect passwords or secrets came from IP address {ip}"
        ),
    };
    OAuthError::new(
        Aadsts::IdsLocked,
        format!("{what}. Try again in {} seconds.", l.seconds()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_parsing_is_strict() {
        let r = TokenRequest::parse(b"grant_type=client_credentials&scope=a%20b", None).unwrap();
        assert_eq!(
            (r.get("grant_type"), r.get("scope")),
            (Some("client_credentials"), Some("a b"))
        );
        assert_eq!(r.get("missing"), None);
        let dup = TokenRequest::parse(b"a=1&a=2", None).unwrap_err();
        assert_eq!(dup.code, Aadsts::MalformedRequest);
        assert!(TokenRequest::parse(&vec![b'a'; MAX_BODY + 1], None).is_err());
        assert!(TokenRequest::parse(b"a=%ff", None).is_err());
        assert!(
            !format!("{r:?}").contains("client_credentials"),
            "Debug shows parameter names only"
        );
    }

    #[test]
    fn basic_auth_is_form_decoded_like_rfc6749_says() {
        let header = format!("Basic {}", STANDARD.encode("my%3Aapp:s%2Bcret~"));
        let r = TokenRequest::parse(b"", Some(&header)).unwrap();
        assert_eq!(r.basic, Some(("my:app".into(), "s+cret~".into())));
        assert!(TokenRequest::parse(b"", Some("Basic ***")).is_err());
        assert!(
            TokenRequest::parse(b"", Some("Bearer x"))
                .unwrap()
                .basic
                .is_none()
        );
    }

    #[tokio::test]
    async fn tenant_resolution_and_scope_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let a = Authority::new(
            store.clone(),
            "https://h:1/",
            reqwest::Client::new(),
            AuthorityOptions::default(),
        )
        .unwrap();
        assert_eq!(a.host(), "https://h:1");
        let t = store.default_tenant().unwrap();
        assert_eq!(a.tenant(&t.domain, false).unwrap().id, t.id);
        assert_eq!(
            a.tenant("common", false).unwrap_err().code,
            Aadsts::InvalidTenant
        );
        assert_eq!(a.tenant("organizations", true).unwrap().id, t.id);
        assert_eq!(
            a.tenant("nope", true).unwrap_err().code,
            Aadsts::InvalidTenant
        );
        let req = |scope: &str| {
            TokenRequest::parse(
                serde_urlencoded::to_string([("scope", scope)])
                    .unwrap()
                    .as_bytes(),
                None,
            )
            .unwrap()
        };
        let err = |scope: &str| {
            a.requested_resource(&t, EndpointVersion::V2, &req(scope), true)
                .unwrap_err()
                .code
        };
        assert_eq!(
            err("https://storage.azure.com/.default https://graph.microsoft.com/.default"),
            Aadsts::MultipleResources
        );
        assert_eq!(
            err("https://storage.azure.com/user_impersonation"),
            Aadsts::InvalidScope
        );
        assert_eq!(err("openid"), Aadsts::InvalidScope);
        assert_eq!(err("api://unknown/.default"), Aadsts::ResourceNotFound);
        let (r, _) = a
            .requested_resource(
                &t,
                EndpointVersion::V1,
                &TokenRequest::parse(b"resource=https%3A%2F%2Fstorage.azure.com", None).unwrap(),
                true,
            )
            .unwrap();
        assert_eq!(r.identifier, "https://storage.azure.com");
    }
}
