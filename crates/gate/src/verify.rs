//! Bearer token verification, strict like Azure Storage's front end.
//!
//! A token is accepted only if: its header asks for RS256 and carries no `jwk`,
//! `jku` or `x5u` (keys come from the trusted issuer, never from the token); its
//! `tid` is an allowed tenant and `iss` is that tenant's issuer; the signature checks
//! against the key its `kid` names in the issuer's JWKS (fetched through OIDC
//! discovery); `aud` is one of the gate's audiences; and `exp`/`nbf` hold within
//! the configured skew.
//!
//! Keys are cached per tenant and replaced wholesale on every fetch, so a key the
//! issuer removes stops validating. An unknown `kid` triggers a refetch at most once
//! per [`VerifierConfig::min_refresh_interval`]; keys older than
//! [`VerifierConfig::max_key_age`] are refetched on use. Verified tokens are cached
//! by SHA-256 until they expire, so the hot path is a hash and a map lookup; a
//! cached token whose key left the JWKS is dropped from the cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entraflow_core::AccessTokenClaims;
use entraflow_core::claims::{v1_issuer, v2_issuer};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use thiserror::Error;

/// Why a token was refused. The `Display` text is what goes into Azure's
/// `<AuthenticationErrorDetail>`.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header.
    #[error(
        "Authentication information is not given in the correct format. Check the value of Authorization header."
    )]
    Missing,
    /// Shared Key or SAS: the gate accepts Entra ID tokens only.
    #[error("Key based authentication is not permitted on this storage account.")]
    KeyBasedNotPermitted,
    /// Not a JWT, or a claim is missing or mistyped.
    #[error(
        "Token is malformed: {0}. Send an Entra ID access token for https://storage.azure.com."
    )]
    Malformed(String),
    /// The header asks for something the gate never accepts.
    #[error("Signature validation failed. {0}")]
    ForbiddenHeader(String),
    /// The signature does not verify, or no trusted key has the token's `kid`.
    #[error("Signature validation failed. {0}")]
    Signature(String),
    /// Tenant not allowed, or `iss` not the tenant's issuer.
    #[error("Issuer validation failed. Issuer did not match. {0}")]
    Issuer(String),
    /// `aud` is not the gate's resource.
    #[error(
        "Audience validation failed. Audience did not match. The token's audience is '{0}'; request a token for https://storage.azure.com/.default."
    )]
    Audience(String),
    /// `exp` is in the past.
    #[error("Lifetime validation failed. The token is expired.")]
    Expired,
    /// `nbf` is in the future.
    #[error("Lifetime validation failed. The token is not yet valid (nbf is in the future).")]
    NotYetValid,
    /// The trusted issuer's keys could not be fetched and none are cached.
    #[error(
        "Signature validation failed. The signing keys of {0} could not be retrieved; the gate cannot verify tokens from it right now."
    )]
    KeysUnavailable(String),
}

impl AuthError {
    /// A short, fixed name of the failure (a metrics label): `missing`,
    /// `key_based`, `malformed`, `forbidden_header`, `signature`, `issuer`,
    /// `audience`, `expired`, `not_yet_valid`, `keys_unavailable`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::KeyBasedNotPermitted => "key_based",
            AuthError::Malformed(_) => "malformed",
            AuthError::ForbiddenHeader(_) => "forbidden_header",
            AuthError::Signature(_) => "signature",
            AuthError::Issuer(_) => "issuer",
            AuthError::Audience(_) => "audience",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::KeysUnavailable(_) => "keys_unavailable",
        }
    }
}

/// An unknown `kid` refetches the JWKS at most this often by default: short enough
/// that a key rotated in without a publish delay is picked up (and the retired key
/// refused) within seconds, long enough that tokens with made-up kids cannot make
/// the gate hammer its issuer (one fetch per interval, single flight).
pub(crate) const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(10);

/// How often the JWKS is fetched again while no fetch has succeeded yet.
const FIRST_FETCH_RETRY: Duration = Duration::from_secs(1);
/// Which issuers the gate trusts and what it demands of their tokens.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Authority host, e.g. `https://127.0.0.1:8443` or `https://login.microsoftonline.com`.
    pub authority_host: String,
    /// Tenants whose tokens are accepted.
    pub tenants: Vec<String>,
    /// Accepted `aud` values (compared without a trailing slash, case-insensitively).
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// An unknown `kid` refetches the JWKS at most this often.
    pub min_refresh_interval: Duration,
    /// Keys older than this are refetched when used.
    pub max_key_age: Duration,
}

impl VerifierConfig {
    /// Defaults: audiences `https://storage.azure.com` plus `account_url`, 5 min skew,
    /// refetch on unknown `kid` at most every 10 s, keys refetched after 24 h.
    pub fn new(
        authority_host: impl Into<String>,
        tenants: Vec<String>,
        account_url: Option<&str>,
    ) -> Self {
        let mut audiences = vec![entraflow_core::STORAGE_RESOURCE.to_owned()];
        audiences.extend(account_url.map(str::to_owned));
        Self {
            authority_host: authority_host.into().trim_end_matches('/').to_owned(),
            tenants,
            audiences,
            leeway: Duration::from_secs(300),
            min_refresh_interval: UNKNOWN_KID_REFETCH,
            max_key_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// Audiences of Azure Resource Manager tokens, which the gate's admin API accepts
/// (compared without a trailing slash, so both spellings of each match).
pub const ARM_AUDIENCES: [&str; 2] = [
    "https://management.azure.com/",
    "https://management.core.windows.net/",
];

/// A token that passed verification.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Its claims.
    pub claims: AccessTokenClaims,
    /// The key that signed it.
    pub kid: String,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    /// Why the last fetch failed; cleared by a successful one.
    last_error: Option<String>,
}

impl KeySet {
    /// Whether a fetch is allowed now: every second until one succeeds, then at
    /// most once per `interval`.
    fn may_refetch(&self, interval: Duration) -> bool {
        let interval = match self.fetched_at {
            Some(_) => interval,
            None => FIRST_FETCH_RETRY.min(interval),
        };
        self.last_attempt.is_none_or(|t| t.elapsed() >= interval)
    }

    /// No keys yet, or keys older than `max_age`.
    fn stale(&self, max_age: Duration) -> bool {
        self.fetched_at.is_none_or(|t| t.elapsed() >= max_age)
    }
}

/// What the verifier holds of one tenant's signing keys (for health checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// The tenant.
    pub tenant: String,
    /// Usable RS256 keys in the last fetched JWKS.
    pub keys: usize,
    /// How long ago the last successful fetch was; `None` if none succeeded yet.
    pub fetched_ago: Option<Duration>,
    /// Why the last fetch failed, if the last attempt failed.
    pub last_error: Option<String>,
}

struct CachedToken {
    token: Arc<VerifiedToken>,
    exp: i64,
}

/// Verifies bearer tokens; cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: VerifierConfig,
    http: reqwest::Client,
    keys: Arc<Keys>,
    cache: RwLock<HashMap<[u8; 32], CachedToken>>,
}

/// The trusted issuers' keys, shared by every verifier derived with
/// [`TokenVerifier::for_audiences`]: one JWKS cache, one refresh schedule.
struct Keys {
    sets: HashMap<String, RwLock<KeySet>>,
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Most verified tokens kept before expired ones are swept.
const CACHE_SWEEP_AT: usize = 100_000;

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

impl TokenVerifier {
    /// A verifier fetching keys with `http` (which must trust the authority's CA).
    pub fn new(config: VerifierConfig, http: reqwest::Client) -> Self {
        let sets = config
            .tenants
            .iter()
            .map(|t| (t.clone(), RwLock::new(KeySet::default())))
            .collect();
        let keys = Arc::new(Keys {
            sets,
            refresh: tokio::sync::Mutex::new(()),
        });
        Self {
            inner: Arc::new(Inner {
                config,
                http,
                keys,
                cache: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// A verifier that accepts `audiences` instead of this one's, with the same
    /// issuers, tenants, skew and, shared, the same signing keys (a key the issuer
    /// removes stops validating for both). Verified tokens are cached separately,
    /// so a token accepted by one is never served from the other's cache.
    pub fn for_audiences(&self, audiences: Vec<String>) -> TokenVerifier {
        let mut config = self.inner.config.clone();
        config.audiences = audiences;
        Self {
            inner: Arc::new(Inner {
                config,
                http: self.inner.http.clone(),
                keys: Arc::clone(&self.inner.keys),
                cache: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.inner.config
    }

    /// Verifies the value of an `Authorization` header.
    pub async fn verify_header(
        &self,
        authorization: Option<&str>,
    ) -> Result<Arc<VerifiedToken>, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?.trim();
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("Bearer") && !token.trim().is_empty() {
            self.verify(token.trim()).await
        } else if scheme.eq_ignore_ascii_case("SharedKey")
            || scheme.eq_ignore_ascii_case("SharedKeyLite")
        {
            Err(AuthError::KeyBasedNotPermitted)
        } else {
            Err(AuthError::Missing)
        }
    }

    /// Verifies a compact JWT.
    pub async fn verify(&self, token: &str) -> Result<Arc<VerifiedToken>, AuthError> {
        let now = unix_now();
        let hash = sha256(token.as_bytes());
        if let Some(hit) = self.cached(&hash, now) {
            return Ok(hit);
        }
        let verified = Arc::new(self.verify_uncached(token, now).await?);
        let mut cache = self.inner.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_SWEEP_AT {
            cache.retain(|_, c| c.exp > now);
        }
        cache.insert(
            hash,
            CachedToken {
                token: verified.clone(),
                exp: verified.claims.exp,
            },
        );
        Ok(verified)
    }

    /// A cached verification still valid now whose key is still published.
    fn cached(&self, hash: &[u8; 32], now: i64) -> Option<Arc<VerifiedToken>> {
        let cache = self.inner.cache.read().unwrap_or_else(|p| p.into_inner());
        let hit = cache.get(hash)?;
        if hit.exp + self.inner.config.leeway.as_secs() as i64 <= now {
            return None;
        }
        let keys = self.inner.keys.sets.get(&hit.token.claims.tid)?;
        let keys = keys.read().unwrap_or_else(|p| p.into_inner());
        keys.keys
            .contains_key(&hit.token.kid)
            .then(|| hit.token.clone())
    }

    async fn verify_uncached(&self, token: &str, now: i64) -> Result<VerifiedToken, AuthError> {
        let config = &self.inner.config;
        check_raw_header(token)?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithmName => AuthError::ForbiddenHeader(
                "The token's algorithm is not accepted; only RS256 is.".into(),
            ),
            _ => AuthError::Malformed(format!("the JWT header cannot be read ({e})")),
        })?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::ForbiddenHeader(format!(
                "The token's algorithm {:?} is not accepted; only RS256 is.",
                header.alg
            )));
        }
        if header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() {
            return Err(AuthError::ForbiddenHeader("The token header carries its own key (jwk, jku or x5u); keys come only from the trusted issuer.".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Signature("The token header has no kid.".into()))?;

        // The tenant picks the key set, so read it before the signature is checked;
        // nothing from the payload is trusted until then.
        let unverified = unverified_claims(token)?;
        let tid = unverified
            .get("tid")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        if !self.inner.keys.sets.contains_key(&tid) {
            return Err(AuthError::Issuer(format!(
                "The tenant '{tid}' is not trusted by this gate."
            )));
        }
        let key = self.key_for(&tid, &kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<AccessTokenClaims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    AuthError::Signature("The signature does not match the key.".into())
                }
                jsonwebtoken::errors::ErrorKind::Json(_) => {
                    AuthError::Malformed(format!("a claim is missing or has the wrong type ({e})"))
                }
                _ => AuthError::Signature(e.to_string()),
            })?
            .claims;

        // Entra writes the v1 issuer (sts.windows.net) into `ver: 1.0` tokens and
        // the v2 one into `ver: 2.0` tokens; any other pairing is not Entra's.
        let issuer = match claims.ver.as_str() {
            "1.0" => v1_issuer(&claims.tid),
            "2.0" => v2_issuer(&config.authority_host, &claims.tid),
            other => {
                return Err(AuthError::Issuer(format!(
                    "The token's version '{other}' is neither 1.0 nor 2.0."
                )));
            }
        };
        if claims.iss != issuer {
            return Err(AuthError::Issuer(format!(
                "The token's issuer '{}' is not the issuer of version {} tokens of tenant '{}' ('{issuer}').",
                claims.iss, claims.ver, claims.tid
            )));
        }
        if !config
            .audiences
            .iter()
            .any(|a| entraflow_core::scope::same_resource(a, &claims.aud))
        {
            return Err(AuthError::Audience(claims.aud));
        }
        let leeway = config.leeway.as_secs() as i64;
        if claims.exp + leeway <= now {
            return Err(AuthError::Expired);
        }
        if claims.nbf - leeway > now {
            return Err(AuthError::NotYetValid);
        }
        Ok(VerifiedToken { claims, kid })
    }

    /// The key `kid` of `tenant`, fetching the JWKS when the key is unknown (at most
    /// once per minimum interval) or the keys are older than their maximum age.
    async fn key_for(&self, tenant: &str, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        let config = &self.inner.config;
        let set = &self.inner.keys.sets[tenant];
        let lookup = || {
            let s = set.read().unwrap_or_else(|p| p.into_inner());
            let fresh = !s.stale(config.max_key_age);
            // Until a first fetch succeeds there are no keys to fall back on, so
            // the issuer is asked again every second rather than every interval: a
            // gate started while its authority is down recovers as soon as it is up.
            let may_refetch = s.may_refetch(config.min_refresh_interval);
            (
                s.keys.get(kid).cloned(),
                fresh,
                may_refetch,
                s.fetched_at.is_some(),
            )
        };
        // Use the cached key when it is fresh, or when it is stale but a refetch is
        // throttled (an issuer outage must not turn into one fetch per request).
        let usable = |key: &Option<Arc<DecodingKey>>, fresh: bool, may_refetch: bool| {
            key.clone().filter(|_| fresh || !may_refetch)
        };
        let (key, fresh, may_refetch, _) = lookup();
        if let Some(key) = usable(&key, fresh, may_refetch) {
            return Ok(key);
        }
        if may_refetch {
            // Single flight: whoever waited on the lock re-checks before fetching again.
            let _guard = self.inner.keys.refresh.lock().await;
            let (key, fresh, may_refetch, _) = lookup();
            if let Some(key) = usable(&key, fresh, may_refetch) {
                return Ok(key);
            }
            if may_refetch {
                self.refresh(tenant).await;
            }
        }
        let (key, _, _, have_any) = lookup();
        match key {
            Some(key) => Ok(key),
            None if !have_any => Err(AuthError::KeysUnavailable(config.authority_host.clone())),
            None => Err(AuthError::Signature(format!(
                "No signing key with kid '{kid}' is published by the trusted issuer."
            ))),
        }
    }

    /// Fetches the tenant's JWKS and replaces its key set; on failure the old keys
    /// stay (an outage of the issuer must not lock everyone out) and the attempt
    /// still counts against the refresh interval.
    async fn refresh(&self, tenant: &str) {
        let set = &self.inner.keys.sets[tenant];
        set.write().unwrap_or_else(|p| p.into_inner()).last_attempt = Some(Instant::now());
        match self.fetch_keys(tenant).await {
            Ok(keys) => {
                tracing::info!(tenant, keys = keys.len(), "fetched signing keys");
                let mut s = set.write().unwrap_or_else(|p| p.into_inner());
                s.keys = keys;
                s.fetched_at = Some(Instant::now());
                s.last_error = None;
            }
            Err(e) => {
                tracing::warn!(tenant, error = %e, "could not fetch signing keys");
                set.write().unwrap_or_else(|p| p.into_inner()).last_error = Some(e);
            }
        }
    }

    /// Each trusted tenant's key state, in tenant order.
    pub fn key_status(&self) -> Vec<KeyStatus> {
        let mut status: Vec<KeyStatus> = self
            .inner
            .keys
            .sets
            .iter()
            .map(|(tenant, set)| {
                let s = set.read().unwrap_or_else(|p| p.into_inner());
                KeyStatus {
                    tenant: tenant.clone(),
                    keys: s.keys.len(),
                    fetched_ago: s.fetched_at.map(|t| t.elapsed()),
                    last_error: s.last_error.clone(),
                }
            })
            .collect();
        status.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        status
    }

    /// Fetches the JWKS of every tenant whose keys were never fetched or are older
    /// than [`VerifierConfig::max_key_age`], within the same throttle as an
    /// unknown `kid` (every second until a first fetch succeeds, then at most once
    /// per [`VerifierConfig::min_refresh_interval`]) and single-flight with it. A
    /// readiness probe calls this, so a gate that has served no token yet still
    /// learns its keys, and probes cannot make it hammer its issuer.
    pub async fn refresh_stale_keys(&self) {
        let config = &self.inner.config;
        let due = |tenant: &str| {
            let s = self.inner.keys.sets[tenant]
                .read()
                .unwrap_or_else(|p| p.into_inner());
            s.stale(config.max_key_age) && s.may_refetch(config.min_refresh_interval)
        };
        let mut tenants: Vec<&String> = self.inner.keys.sets.keys().collect();
        tenants.sort();
        for tenant in tenants {
            if !due(tenant) {
                continue;
            }
            let _guard = self.inner.keys.refresh.lock().await;
            if due(tenant) {
                self.refresh(tenant).await;
            }
        }
    }

    async fn fetch_keys(&self, tenant: &str) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
        let host = &self.inner.config.authority_host;
        let discovery_url = format!("{host}/{tenant}/v2.0/.well-known/openid-configuration");
        let jwks_uri = match self.get_json::<Discovery>(&discovery_url).await {
            Ok(d) => d.jwks_uri,
            Err(e) => {
                tracing::debug!(error = %e, "OIDC discovery failed; trying the well-known JWKS path");
                format!("{host}/{tenant}/discovery/v2.0/keys")
            }
        };
        let jwks: Jwks = self.get_json(&jwks_uri).await?;
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else {
                continue;
            };
            if jwk.kty != "RSA" || jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            match DecodingKey::from_rsa_components(&n, &e) {
                Ok(key) => {
                    keys.insert(kid, Arc::new(key));
                }
                Err(err) => tracing::warn!(kid, error = %err, "skipping unusable JWKS key"),
            }
        }
        Ok(keys)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self
            .inner
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        response.json().await.map_err(|e| format!("GET {url}: {e}"))
    }
}

/// Looks at the header as sent, before any library interprets it: exactly `RS256`,
/// and no key material (`jwk`, `jku`, `x5u`) that could steer verification.
fn check_raw_header(token: &str) -> Result<(), AuthError> {
    let segment = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Malformed("the header is not base64url".into()))?;
    let header: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("the header is not JSON".into()))?;
    match header.get("alg").and_then(|a| a.as_str()) {
        Some("RS256") => {}
        Some(other) => {
            return Err(AuthError::ForbiddenHeader(format!(
                "The token's algorithm '{other}' is not accepted; only RS256 is."
            )));
        }
        None => return Err(AuthError::Malformed("the header has no alg".into())),
    }
    if ["jwk", "jku", "x5u"]
        .iter()
        .any(|k| header.get(k).is_some())
    {
        return Err(AuthError::ForbiddenHeader(
            "The token header carries its own key (jwk, jku or x5u); keys come only from the trusted issuer.".into(),
        ));
    }
    Ok(())
}

fn unverified_claims(token: &str) -> Result<serde_json::Value, AuthError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| AuthError::Malformed("it is not a compact JWT".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthError::Malformed("the payload is not base64url".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("the payload is not JSON".into()))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(header: serde_json::Value, claims: serde_json::Value) -> String {
        let enc = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
        format!("{}.{}.c2lnbmF0dXJl", enc(header), enc(claims))
    }

    fn verifier() -> TokenVerifier {
        entraflow_tls::install_crypto_provider();
        // Port 1 on loopback: nothing listens, so every key fetch fails.
        let config = VerifierConfig::new("https://127.0.0.1:1", vec!["t1".into()], None);
        TokenVerifier::new(config, entraflow_tls::https_client(None).unwrap())
    }

    #[tokio::test]
    async fn headers_are_refused_before_any_key_is_looked_up() {
        let v = verifier();
        let claims = serde_json::json!({"tid": "t1"});
        for header in [
            serde_json::json!({"alg": "none"}),
            serde_json::json!({"alg": "HS256", "kid": "k"}),
            serde_json::json!({"alg": "RS256", "kid": "k", "jwk": {"kty": "RSA"}}),
            serde_json::json!({"alg": "RS256", "kid": "k", "x5u": "https://x/cert"}),
        ] {
            let err = v
                .verify(&jwt(header.clone(), claims.clone()))
                .await
                .unwrap_err();
            assert!(
                matches!(err, AuthError::ForbiddenHeader(_)),
                "{header}: {err:?}"
            );
        }
        assert_eq!(
            v.verify_header(Some("SharedKey acct:sig"))
                .await
                .unwrap_err(),
            AuthError::KeyBasedNotPermitted
        );
        assert_eq!(v.verify_header(None).await.unwrap_err(), AuthError::Missing);
    }

    #[tokio::test]
    async fn untrusted_tenants_and_unreachable_issuers_say_so() {
        let v = verifier();
        let header = serde_json::json!({"alg": "RS256", "kid": "k"});
        let err = v
            .verify(&jwt(header.clone(), serde_json::json!({"tid": "other"})))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Issuer(_)), "{err:?}");
        let err = v
            .verify(&jwt(header.clone(), serde_json::json!({"tid": "t1"})))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
        // The failed fetch counts against the refresh interval: no second attempt.
        let err = v
            .verify(&jwt(header, serde_json::json!({"tid": "t1"})))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
        assert!(err.to_string().starts_with("Signature validation failed."));
    }

    #[tokio::test]
    async fn key_status_says_no_keys_were_fetched_and_why() {
        let v = verifier();
        let before = v.key_status();
        assert_eq!(before.len(), 1);
        assert_eq!(
            (before[0].keys, before[0].fetched_ago, &before[0].last_error),
            (0, None, &None)
        );
        v.refresh_stale_keys().await;
        let after = &v.key_status()[0];
        assert_eq!((after.keys, after.fetched_ago), (0, None));
        let error = after.last_error.as_deref().expect("the failure is kept");
        assert!(error.contains("127.0.0.1:1"), "{error}");
        // Throttled: a second call within the second does not fetch again.
        let attempt = v.inner.keys.sets["t1"].read().unwrap().last_attempt;
        v.refresh_stale_keys().await;
        assert_eq!(
            v.inner.keys.sets["t1"].read().unwrap().last_attempt,
            attempt
        );
    }
}
