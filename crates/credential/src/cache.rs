//! The token cache: generic over how a token is fetched, free of HTTP, driven by a
//! [`Clock`] so that every rule is tested with a fake clock and a fake source.
//!
//! Rules, for a token acquired at `t0` that expires at `exp` (lifetime `L = exp - t0`):
//! - **guard** = `min(safety_margin + clock_skew, L / 4)`: the token is *usable* until
//!   `exp - guard` and is never handed out after that. The `L / 4` cap keeps tokens of a
//!   few seconds (tests, `--token-lifetime 5`) usable at all.
//! - **refresh_on** = `t0 + L/2` when `L ≥ 2 h` (MSAL's rule for managed identity),
//!   `exp - 5 min` when `10 min < L < 2 h` (azure-identity's rule), `t0 + L/2` for
//!   shorter tokens (proportionally earlier, so a 5 s token refreshes after 2.5 s);
//!   and never later than `exp - guard`.
//! - Between `refresh_on` and `exp - guard` the cached token is returned at once and
//!   one background refresh runs; callers never wait for it.
//! - Exactly one fetch is in flight per key; callers without a usable token all wait
//!   on that one fetch (single-flight).
//! - A failed *background* refresh is logged, the cached token keeps being served, and
//!   the next background attempt waits `retry_backoff` (jittered ±`retry_jitter`).
//!   Once no usable token is left, every caller gets the fetch's error: the cache never
//!   hides a failure behind a stale token.
//! - After `fork()`, a fetch that was in flight in the parent is ignored in the child
//!   (it would never finish there): the child starts its own.
//! - With a [`SharedTokenStore`] (the node's shared cache), a fetch first adopts a
//!   token another process stored that is not yet due, and otherwise fetches under
//!   the key's cross-process lock: one refresh per key per node, not per process.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::error::CredentialError;
use crate::shared::SharedTokenStore;
use crate::token::AccessToken;

/// Where the cache reads the time. Tests substitute a clock they move by hand.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The cache's tunables. Defaults suit real Entra ID tokens (60–90 min, 24 h for
/// managed identity).
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshPolicy {
    /// A token is not handed out within this long of its expiry.
    pub safety_margin: Duration,
    /// How far this host's clock may be off the authority's; added to the margin.
    pub clock_skew: Duration,
    /// After a failed background refresh, wait this long before the next one.
    pub retry_backoff: Duration,
    /// Spread of the backoff, as a fraction (0.2 = ±20 %), so that many processes
    /// that failed together do not retry together.
    pub retry_jitter: f64,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            safety_margin: Duration::from_secs(60),
            clock_skew: Duration::from_secs(30),
            retry_backoff: Duration::from_secs(30),
            retry_jitter: 0.2,
        }
    }
}

/// What a token is cached under: azure-identity's (tenant, client, scopes, claims).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Tenant the token is for.
    pub tenant: String,
    /// Client (application or managed identity) the token is for.
    pub client: String,
    /// Sorted, space-joined scopes.
    pub scopes: String,
    /// Claims challenge, if any.
    pub claims: Option<String>,
}

/// A token cache shared by all callers of one credential. Cloning shares the cache.
pub struct TokenCache<C: Clock = SystemClock> {
    inner: Arc<Inner<C>>,
}

impl<C: Clock> Clone for TokenCache<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Clock> std::fmt::Debug for TokenCache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.inner.entries.lock().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("TokenCache")
            .field("policy", &self.inner.policy)
            .field("entries", &entries)
            .finish()
    }
}

struct Inner<C> {
    entries: Mutex<HashMap<CacheKey, Entry>>,
    policy: RefreshPolicy,
    clock: C,
    shared: Option<SharedTokenStore>,
}

type FetchResult = Option<Result<AccessToken, CredentialError>>;

#[derive(Default)]
struct Entry {
    token: Option<Cached>,
    inflight: Option<Inflight>,
    /// No background refresh before this (ms since the epoch), after a failure.
    retry_at: Option<i64>,
}

/// A token with its schedule, in milliseconds since the epoch: when to refresh, and
/// until when to hand it out. The shared cache stores exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cached {
    pub(crate) token: AccessToken,
    pub(crate) refresh_at: i64,
    pub(crate) usable_until: i64,
}

struct Inflight {
    pid: u32,
    result: watch::Receiver<FetchResult>,
}

impl Inflight {
    /// In flight in *this* process and still able to finish.
    fn is_live(&self) -> bool {
        self.pid == std::process::id() && self.result.has_changed().is_ok()
    }
}

impl TokenCache<SystemClock> {
    /// A cache on the system clock, over the node's shared cache when
    /// `ENTRAFLOW_SHARED_TOKEN_CACHE` asks for one. Read here, where every
    /// credential's cache is made, so the setting reaches all of them — those the
    /// TensorFlow plugin and fsspec build from the environment included.
    pub fn new(policy: RefreshPolicy) -> Self {
        Self::with_shared_store(policy, SystemClock, SharedTokenStore::from_process_env())
    }
}

impl Default for TokenCache<SystemClock> {
    fn default() -> Self {
        Self::new(RefreshPolicy::default())
    }
}

impl<C: Clock> TokenCache<C> {
    /// A cache on `clock`, private to this process.
    pub fn with_clock(policy: RefreshPolicy, clock: C) -> Self {
        Self::with_shared_store(policy, clock, None)
    }

    /// A cache on `clock` whose fetches go through `shared` (when given).
    pub fn with_shared_store(
        policy: RefreshPolicy,
        clock: C,
        shared: Option<SharedTokenStore>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: Mutex::new(HashMap::new()),
                policy,
                clock,
                shared,
            }),
        }
    }

    /// The node's shared cache this cache fetches through, if any.
    pub fn shared_store(&self) -> Option<&SharedTokenStore> {
        self.inner.shared.as_ref()
    }

    /// The policy in force.
    pub fn policy(&self) -> &RefreshPolicy {
        &self.inner.policy
    }

    /// A cached token for `key` that is not yet due for refresh; no I/O, no runtime.
    pub fn fresh(&self, key: &CacheKey) -> Option<AccessToken> {
        let now = self.inner.now_ms();
        let entries = self.inner.lock();
        let cached = entries.get(key)?.token.as_ref()?;
        (now < cached.refresh_at).then(|| cached.token.clone())
    }

    /// Forgets every token (e.g. after `entraflow login` switches user).
    pub fn clear(&self) {
        self.inner.lock().clear();
    }

    /// The token for `key`: cached while usable (refreshing in the background past
    /// `refresh_on`), else from `fetch`, of which at most one runs per key. Must be
    /// called within a tokio runtime: fetches run as spawned tasks so that they finish
    /// even if every waiting caller gives up.
    pub async fn get<F, Fut>(
        &self,
        key: &CacheKey,
        fetch: F,
    ) -> Result<AccessToken, CredentialError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AccessToken, CredentialError>> + Send + 'static,
    {
        let mut waiting = {
            let now = self.inner.now_ms();
            let mut entries = self.inner.lock();
            let entry = entries.entry(key.clone()).or_default();
            if entry.inflight.as_ref().is_some_and(|i| !i.is_live()) {
                entry.inflight = None;
            }
            if let Some(cached) = &entry.token
                && now < cached.usable_until
            {
                let token = cached.token.clone();
                let due = now >= cached.refresh_at;
                if due && entry.inflight.is_none() && entry.retry_at.is_none_or(|r| now >= r) {
                    tracing::debug!(token = %token.fingerprint(), "refreshing a token in the background");
                    let _ = self.start(key, entry, fetch());
                }
                return Ok(token);
            }
            match &entry.inflight {
                Some(inflight) => inflight.result.clone(),
                None => self.start(key, entry, fetch()),
            }
        };
        match waiting.wait_for(Option::is_some).await {
            Ok(result) => result
                .clone()
                .unwrap_or_else(|| unreachable!("waited for Some")),
            Err(_) => Err(CredentialError::CredentialUnavailable {
                credential: "token cache",
                reason: "the token fetch stopped without a result (it panicked); see the log"
                    .into(),
            }),
        }
    }

    /// Marks a fetch in flight for `key` and spawns it; returns where its result appears.
    fn start<Fut>(
        &self,
        key: &CacheKey,
        entry: &mut Entry,
        fetch: Fut,
    ) -> watch::Receiver<FetchResult>
    where
        Fut: Future<Output = Result<AccessToken, CredentialError>> + Send + 'static,
    {
        let (tx, rx) = watch::channel(None);
        entry.inflight = Some(Inflight {
            pid: std::process::id(),
            result: rx.clone(),
        });
        let inner = self.inner.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let result = inner.fetch_scheduled(&key, fetch).await;
            let result = inner.store(&key, result);
            let _ = tx.send(Some(result));
        });
        rx
    }
}

impl<C: Clock> Inner<C> {
    fn now_ms(&self) -> i64 {
        unix_ms(self.clock.now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Entry>> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `fetch` and schedules its token; through the shared cache when there is
    /// one: adopt a token another process stored that is not yet due, else fetch
    /// under the key's lock (looking once more after waiting for it) and store it.
    async fn fetch_scheduled<Fut>(
        &self,
        key: &CacheKey,
        fetch: Fut,
    ) -> Result<Cached, CredentialError>
    where
        Fut: Future<Output = Result<AccessToken, CredentialError>>,
    {
        let Some(shared) = &self.shared else {
            return fetch
                .await
                .and_then(|token| self.schedule(self.now_ms(), token));
        };
        if let Some(cached) = self.shared_fresh(shared, key) {
            return Ok(cached);
        }
        let (store, locked_key) = (shared.clone(), key.clone());
        let locked = tokio::task::spawn_blocking(move || store.lock(&locked_key))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let lock = locked
            .inspect_err(|e| {
                tracing::warn!(error = %e, "cannot lock the shared token cache; fetching on our own");
            })
            .ok();
        if lock.is_some()
            && let Some(cached) = self.shared_fresh(shared, key)
        {
            return Ok(cached);
        }
        let cached = fetch
            .await
            .and_then(|token| self.schedule(self.now_ms(), token))?;
        if lock.is_some()
            && let Err(e) = shared.write(key, &cached)
        {
            tracing::warn!(error = %e, "cannot store the token in the shared token cache");
        }
        Ok(cached)
    }

    /// The shared cache's token for `key` if it is not yet due for refresh.
    fn shared_fresh(&self, shared: &SharedTokenStore, key: &CacheKey) -> Option<Cached> {
        let now = self.now_ms();
        shared.read(key).filter(|cached| now < cached.refresh_at)
    }

    /// Records a fetch's outcome; returns its token (with `refresh_on` filled in).
    fn store(
        &self,
        key: &CacheKey,
        result: Result<Cached, CredentialError>,
    ) -> Result<AccessToken, CredentialError> {
        let now = self.now_ms();
        let mut entries = self.lock();
        let entry = entries.entry(key.clone()).or_default();
        entry.inflight = None;
        match result {
            Ok(cached) => {
                entry.retry_at = None;
                let token = cached.token.clone();
                entry.token = Some(cached);
                Ok(token)
            }
            Err(err) => {
                // A throttling authority says when to come back: never sooner.
                let asked = match &err {
                    CredentialError::Throttled {
                        retry_after: Some(wait),
                        ..
                    } => *wait,
                    _ => Duration::ZERO,
                };
                let backoff =
                    jittered(self.policy.retry_backoff, self.policy.retry_jitter).max(asked);
                entry.retry_at = Some(now + backoff.as_millis() as i64);
                if entry.token.as_ref().is_some_and(|c| now < c.usable_until) {
                    tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64,
                        "token refresh failed; serving the cached token meanwhile");
                }
                Err(err)
            }
        }
    }

    /// Computes when to refresh and until when to serve a freshly fetched token.
    fn schedule(&self, now: i64, mut token: AccessToken) -> Result<Cached, CredentialError> {
        let exp = token.expires_on.saturating_mul(1000);
        let lifetime = exp - now;
        let p = &self.policy;
        let guard = ((p.safety_margin + p.clock_skew).as_millis() as i64).min(lifetime / 4);
        let usable_until = exp - guard;
        if lifetime <= 0 || now >= usable_until {
            return Err(CredentialError::Misconfigured {
                variable: "system clock".into(),
                hint: format!(
                    "the authority issued a token that expires at {} (Unix seconds), which is already past on this host's clock; synchronise the clock (NTP)",
                    token.expires_on
                ),
            });
        }
        const TWO_HOURS: i64 = 2 * 3600 * 1000;
        const TEN_MINUTES: i64 = 10 * 60 * 1000;
        const FIVE_MINUTES: i64 = 5 * 60 * 1000;
        let refresh_at = if lifetime >= TWO_HOURS || lifetime <= TEN_MINUTES {
            now + lifetime / 2
        } else {
            exp - FIVE_MINUTES
        }
        .min(usable_until);
        token.refresh_on = refresh_at.div_euclid(1000);
        Ok(Cached {
            token,
            refresh_at,
            usable_until,
        })
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// `base` scaled by a random factor in `[1 - jitter, 1 + jitter]`.
fn jittered(base: Duration, jitter: f64) -> Duration {
    let mut bytes = [0u8; 4];
    // A failing system RNG only costs us the spread, not correctness.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    let unit = f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX);
    let jitter = jitter.clamp(0.0, 1.0);
    base.mul_f64(1.0 - jitter + 2.0 * jitter * unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use entraflow_core::Secret;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
    use tokio::sync::Semaphore;

    const T0: i64 = 1_800_000_000_000; // ms since the epoch

    #[derive(Clone)]
    struct FakeClock(Arc<AtomicI64>);

    impl FakeClock {
        fn new() -> Self {
            Self(Arc::new(AtomicI64::new(T0)))
        }
        fn advance(&self, by: Duration) {
            self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
        fn set(&self, ms: i64) {
            self.0.store(ms, Ordering::SeqCst);
        }
        fn ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_millis(self.ms() as u64)
        }
    }

    /// A token source that counts fetches, can be held at a gate, and can fail.
    #[derive(Clone)]
    struct Source {
        clock: FakeClock,
        fetches: Arc<AtomicUsize>,
        lifetime: Arc<AtomicI64>,
        failing: Arc<std::sync::atomic::AtomicBool>,
        /// Answers 429 with this `Retry-After` instead of a token.
        throttled: Option<Duration>,
        gate: Option<Arc<Semaphore>>,
    }

    impl Source {
        fn new(clock: &FakeClock, lifetime: Duration) -> Self {
            Self {
                clock: clock.clone(),
                fetches: Arc::default(),
                lifetime: Arc::new(AtomicI64::new(lifetime.as_secs() as i64)),
                failing: Arc::default(),
                throttled: None,
                gate: None,
            }
        }
        fn throttled(mut self, retry_after: Duration) -> Self {
            self.throttled = Some(retry_after);
            self
        }
        fn gated(mut self) -> Self {
            self.gate = Some(Arc::new(Semaphore::new(0)));
            self
        }
        fn count(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
        fn fail(&self, on: bool) {
            self.failing.store(on, Ordering::SeqCst);
        }
        fn open_gate(&self) {
            self.gate.as_ref().unwrap().add_permits(10_000);
        }
        fn fetch(
            &self,
        ) -> impl Future<Output = Result<AccessToken, CredentialError>> + Send + 'static {
            let this = self.clone();
            async move {
                let n = this.fetches.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some(gate) = &this.gate {
                    gate.acquire().await.unwrap().forget();
                }
                if let Some(wait) = this
                    .throttled
                    .filter(|_| this.failing.load(Ordering::SeqCst))
                {
                    return Err(CredentialError::Throttled {
                        url: "https://authority.test/t/oauth2/v2.0/token".into(),
                        retry_after: Some(wait),
                    });
                }
                if this.failing.load(Ordering::SeqCst) {
                    return Err(CredentialError::AuthorityUnreachable {
                        url: "https://authority.test/t/oauth2/v2.0/token".into(),
                        cause: "connection refused".into(),
                    });
                }
                Ok(AccessToken {
                    token: Secret::new(format!("token-{n}")),
                    expires_on: this.clock.ms() / 1000 + this.lifetime.load(Ordering::SeqCst),
                    refresh_on: 0,
                    token_type: "Bearer".into(),
                })
            }
        }
    }

    fn key() -> CacheKey {
        CacheKey {
            tenant: "t".into(),
            client: "c".into(),
            scopes: "https://storage.azure.com/.default".into(),
            claims: None,
        }
    }

    fn policy() -> RefreshPolicy {
        RefreshPolicy {
            safety_margin: Duration::from_secs(60),
            clock_skew: Duration::ZERO,
            retry_backoff: Duration::from_secs(30),
            retry_jitter: 0.0,
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    async fn get(
        cache: &TokenCache<FakeClock>,
        source: &Source,
    ) -> Result<AccessToken, CredentialError> {
        cache.get(&key(), || source.fetch()).await
    }

    #[tokio::test]
    async fn refresh_on_is_half_life_for_long_tokens_and_five_minutes_before_expiry_otherwise() {
        for (lifetime, expected_refresh_after) in [
            (
                Duration::from_secs(24 * 3600),
                Duration::from_secs(12 * 3600),
            ),
            (Duration::from_secs(2 * 3600), Duration::from_secs(3600)),
            (Duration::from_secs(3600), Duration::from_secs(3600 - 300)),
            (Duration::from_secs(600), Duration::from_secs(300)),
            (Duration::from_secs(8), Duration::from_secs(4)),
        ] {
            let clock = FakeClock::new();
            let cache = TokenCache::with_clock(policy(), clock.clone());
            let source = Source::new(&clock, lifetime);
            let token = get(&cache, &source).await.unwrap();
            assert_eq!(
                token.refresh_on,
                (T0 / 1000) + expected_refresh_after.as_secs() as i64,
                "lifetime {lifetime:?}"
            );
        }
    }

    #[tokio::test]
    async fn refresh_on_is_never_later_than_the_safety_margin() {
        let clock = FakeClock::new();
        let margin = RefreshPolicy {
            safety_margin: Duration::from_secs(40 * 60),
            ..policy()
        };
        let cache = TokenCache::with_clock(margin, clock.clone());
        let source = Source::new(&clock, Duration::from_secs(3600));
        let token = get(&cache, &source).await.unwrap();
        // The guard is capped at a quarter of the lifetime (15 min), and refresh_on
        // moves before it instead of staying at "5 minutes before expiry".
        assert_eq!(token.refresh_on, T0 / 1000 + 45 * 60);
    }

    #[tokio::test]
    async fn a_fresh_token_is_served_from_the_cache() {
        let clock = FakeClock::new();
        let cache = TokenCache::with_clock(policy(), clock.clone());
        let source = Source::new(&clock, Duration::from_secs(3600));
        let first = get(&cache, &source).await.unwrap();
        clock.advance(Duration::from_secs(3000));
        let again = get(&cache, &source).await.unwrap();
        assert_eq!(first.token, again.token);
        assert_eq!(cache.fresh(&key()).unwrap().token, first.token);
        assert_eq!(source.count(), 1);
    }

    #[tokio::test]
    async fn past_refresh_on_callers_get_the_cached_token_while_one_refresh_runs() {
        let clock = FakeClock::new();
        let cache = TokenCache::with_clock(policy(), clock.clone());
        let source = Source::new(&clock, Duration::from_secs(3600)).gated();
        source.open_gate();
        let first = get(&cache, &source).await.unwrap();
        let source = Source {
            gate: Some(Arc::new(Semaphore::new(0))),
            ..source
        };
        clock.advance(Duration::from_secs(3600 - 200)); // past refresh_on, outside the margin
        assert!(
            cache.fresh(&key()).is_none(),
            "due for refresh, so not 'fresh'"
        );
        for _ in 0..50 {
            // None of these wait for the (held) refresh.
            assert_eq!(get(&cache, &source).await.unwrap().token, first.token);
        }
        settle().await;
        assert_eq!(source.count(), 2, "exactly one background refresh");
        source.open_gate();
        settle().await;
        let refreshed = get(&cache, &source).await.unwrap();
        assert_eq!(refreshed.token.expose(), "token-2");
        assert_eq!(source.count(), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_without_a_token_share_one_fetch() {
        let clock = FakeClock::new();
        let cache = TokenCache::with_clock(policy(), clock.clone());
        let source = Source::new(&clock, Duration::from_secs(3600)).gated();
        let callers: Vec<_> = (0..200)
            .map(|_| {
                let cache = cache.clone();
                let source = source.clone();
                tokio::spawn(async move { cache.get(&key(), || source.fetch()).await })
            })
            .collect();
        settle().await;
        assert_eq!(source.count(), 1);
        source.open_gate();
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap().token.expose(), "token-1");
        }
        assert_eq!(source.count(), 1);
    }

    #[tokio::test]
    async fn a_failed_refresh_serves_the_cached_token_and_backs_off() {
        let clock = FakeClock::new();
        let cache = TokenCache::with_clock(policy(), clock.clone());
        let source = Source::new(&clock, Duration::from_secs(3600));
        let first = get(&cache, &source).await.unwrap();
        source.fail(true);
        clock.advance(Duration::from_secs(3600 - 290)); // refresh due
        assert_eq!(get(&cache, &source).await.unwrap().token, first.token);
        settle().await;
        assert_eq!(source.count(), 2, "the refresh was tried");
        // Within the backoff: cached token, no new attempt.
        clock.advance(Duration::from_secs(20));
        assert_eq!(get(&cache, &source).await.unwrap().token, first.token);
        settle().await;
        assert_eq!(source.count(), 2, "backing off");
        // After the backoff: tried again.
        clock.advance(Duration::from_secs(15));
        assert_eq!(get(&cache, &source).await.unwrap().token, first.token);
        settle().await;
        assert_eq!(source.count(), 3, "retried after the backoff");
        // The authority comes back: the next due attempt succeeds.
        source.fail(false);
        clock.advance(Duration::from_secs(31));
        get(&cache, &source).await.unwrap();
        settle().await;
        assert_eq!(
            get(&cache, &source).await.unwrap().token.expose(),
            "token-4"
        );
    }

    #[tokio::test]
    async fn a_throttled_refresh_waits_as_long_as_retry_after_asks() {
        let clock = FakeClock::new();
        let cache = TokenCache::with_clock(policy(), clock.clone());
        let source =
            Source::new(&clock, Duration::from_secs(3600)).throttled(Duration::from_secs(120));
        let first = get(&cache, &source).await.unwrap();
        source.fail(true);
        clock.advance(Duration::from_secs(3600 - 290)); // refresh due
        assert_eq!(get(&cache, &source).await.unwrap().token, first.token);
        settle().await;
        assert_eq!(source.count(), 2, "the refresh was tried and throttled");
        // Past the usual 30 s backoff but within Retry-After: cached token, no request.
        clock.advance(Duration::from_secs(100));
        for _ in 0..100 {
            assert_eq!(get(&cache, &source).await.unwrap().token, first.token);
        }
        settle().await;
        assert_eq!(source.count(), 2, "Retry-After is honoured");
        clock.advance(Duration::from_secs(25));
        get(&cache, &source).await.unwrap();
        settle().await;
        assert_eq!(source.count(), 3, "tried again after Retry-After");
    }

    #[tokio::test]
    async fn once_inside_the_margin_the_error_is_returned_not_the_token() {
        let clock = FakeClock::new();
        let cache = TokenCache::with_clock(policy(), clock.clone());
        let source = Source::new(&clock, Duration::from_secs(3600));
        get(&cache, &source).await.unwrap();
        source.fail(true);
        clock.set(T0 + (3600 - 60) * 1000); // exactly at exp - margin
        let err = get(&cache, &source).await.unwrap_err();
        assert!(
            matches!(err, CredentialError::AuthorityUnreachable { ref url, .. } if url.contains("authority.test")),
            "{err}"
        );
        // No backoff applies when there is nothing to serve: each call tries again.
        assert!(get(&cache, &source).await.is_err());
        assert_eq!(source.count(), 3);
    }

    #[tokio::test]
    async fn a_token_inside_the_margin_is_never_handed_out() {
        let clock = FakeClock::new();
        let cache = TokenCache::with_clock(policy(), clock.clone());
        let source = Source::new(&clock, Duration::from_secs(3600));
        let first = get(&cache, &source).await.unwrap();
        clock.set(T0 + (3600 - 60) * 1000 + 1);
        let second = get(&cache, &source).await.unwrap();
        assert_ne!(first.token, second.token, "a fetch, not the old token");
        assert_eq!(source.count(), 2);
    }

    #[tokio::test]
    async fn clock_skew_tolerance_widens_the_margin() {
        let clock = FakeClock::new();
        let skewed = RefreshPolicy {
            clock_skew: Duration::from_secs(120),
            ..policy()
        };
        let cache = TokenCache::with_clock(skewed, clock.clone());
        let source = Source::new(&clock, Duration::from_secs(3600)).gated();
        source.open_gate();
        let first = get(&cache, &source).await.unwrap();
        source.fail(true);
        clock.set(T0 + (3600 - 181) * 1000); // outside margin + skew: still served
        assert_eq!(get(&cache, &source).await.unwrap().token, first.token);
        clock.set(T0 + (3600 - 180) * 1000); // inside: refused
        assert!(get(&cache, &source).await.is_err());
    }

    #[tokio::test]
    async fn a_token_already_expired_on_arrival_is_a_clock_problem() {
        let clock = FakeClock::new();
        let cache = TokenCache::with_clock(policy(), clock.clone());
        let source = Source::new(&clock, Duration::ZERO);
        let err = get(&cache, &source).await.unwrap_err();
        assert!(err.to_string().contains("clock"), "{err}");
    }

    #[tokio::test]
    async fn a_fetch_that_panics_does_not_wedge_the_key() {
        let clock = FakeClock::new();
        let cache = TokenCache::with_clock(policy(), clock.clone());
        let err = cache
            .get(&key(), || async { panic!("fetch bug") })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        let source = Source::new(&clock, Duration::from_secs(3600));
        assert!(get(&cache, &source).await.is_ok());
    }

    #[tokio::test]
    async fn a_fetch_in_flight_in_the_parent_is_ignored_after_fork() {
        let clock = FakeClock::new();
        let cache = TokenCache::with_clock(policy(), clock.clone());
        // What a forked child inherits: a fetch marked in flight by another process,
        // whose task (and sender) live on in the parent's memory image only.
        let (parent_sender, parent_result) = watch::channel(None);
        cache.inner.lock().entry(key()).or_default().inflight = Some(Inflight {
            pid: std::process::id().wrapping_add(1),
            result: parent_result,
        });
        let source = Source::new(&clock, Duration::from_secs(3600));
        let token = tokio::time::timeout(Duration::from_secs(5), get(&cache, &source))
            .await
            .expect("the child does not wait for the parent's fetch")
            .unwrap();
        assert_eq!(token.token.expose(), "token-1");
        drop(parent_sender);
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(30), 0.2);
            assert!(
                d >= Duration::from_secs(24) && d <= Duration::from_secs(36),
                "{d:?}"
            );
        }
        assert_eq!(
            jittered(Duration::from_secs(30), 0.0),
            Duration::from_secs(30)
        );
    }

    /// Waits (real time, bounded) until `check` holds: the shared store's lock is
    /// taken on a blocking thread, which `settle` cannot wait for.
    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what} did not happen within 5 s");
    }

    /// Two caches on one store: two processes of one user on one node.
    fn two_processes(
        clock: &FakeClock,
    ) -> (
        tempfile::TempDir,
        TokenCache<FakeClock>,
        TokenCache<FakeClock>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = SharedTokenStore::open(&dir.path().join("tokens")).unwrap();
        let a = TokenCache::with_shared_store(policy(), clock.clone(), Some(store.clone()));
        let b = TokenCache::with_shared_store(policy(), clock.clone(), Some(store));
        (dir, a, b)
    }

    #[tokio::test]
    async fn processes_sharing_a_store_make_one_fetch_per_refresh() {
        let clock = FakeClock::new();
        let (_dir, a, b) = two_processes(&clock);
        let source = Source::new(&clock, Duration::from_secs(3600));
        assert_eq!(get(&a, &source).await.unwrap().token.expose(), "token-1");
        let adopted = get(&b, &source).await.unwrap();
        assert_eq!(adopted.token.expose(), "token-1");
        assert_eq!(
            source.count(),
            1,
            "the second process adopts the first one's token"
        );
        assert_eq!(
            adopted.refresh_on,
            a.fresh(&key()).unwrap().refresh_on,
            "one schedule for both"
        );

        clock.advance(Duration::from_secs(3600 - 200)); // both due for refresh
        assert_eq!(get(&a, &source).await.unwrap().token.expose(), "token-1");
        eventually("a's background refresh", || a.fresh(&key()).is_some()).await;
        assert_eq!(source.count(), 2);
        // b's own refresh finds a's new token in the store instead of fetching.
        assert_eq!(get(&b, &source).await.unwrap().token.expose(), "token-1");
        eventually("b's background refresh", || b.fresh(&key()).is_some()).await;
        assert_eq!(b.fresh(&key()).unwrap().token.expose(), "token-2");
        assert_eq!(source.count(), 2, "one fetch per refresh for the node");
    }

    #[tokio::test]
    async fn a_process_waiting_on_the_lock_adopts_the_token_fetched_meanwhile() {
        let clock = FakeClock::new();
        let (_dir, a, b) = two_processes(&clock);
        let source = Source::new(&clock, Duration::from_secs(3600)).gated();
        let (sa, sb) = (source.clone(), source.clone());
        let first = tokio::spawn(async move { a.get(&key(), || sa.fetch()).await });
        eventually("a's fetch to start", || source.count() == 1).await;
        let second = tokio::spawn(async move { b.get(&key(), || sb.fetch()).await });
        // b is parked on the lock; give it every chance to fetch anyway.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(source.count(), 1);
        source.open_gate();
        assert_eq!(first.await.unwrap().unwrap().token.expose(), "token-1");
        assert_eq!(second.await.unwrap().unwrap().token.expose(), "token-1");
        assert_eq!(source.count(), 1);
    }

    #[tokio::test]
    async fn a_failed_fetch_stores_nothing_and_the_next_process_tries_itself() {
        let clock = FakeClock::new();
        let (_dir, a, b) = two_processes(&clock);
        let source = Source::new(&clock, Duration::from_secs(3600));
        source.fail(true);
        assert!(get(&a, &source).await.is_err());
        source.fail(false);
        assert_eq!(get(&b, &source).await.unwrap().token.expose(), "token-2");
        assert_eq!(source.count(), 2);
    }
}
