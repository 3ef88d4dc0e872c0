//! The token cache's hot paths: a cached `get_token` (what every storage request
//! pays) and a single-flight refresh with many waiters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use entraflow_core::Secret;
use entraflow_credential::{
    AccessToken, BlockingCredential, CacheKey, CredentialError, RefreshPolicy, TokenCache,
    TokenCredential, TokenFuture, TokenRequest,
};

const SCOPE: &str = "https://storage.azure.com/.default";

fn key() -> CacheKey {
    CacheKey {
        tenant: "tenant".into(),
        client: "client".into(),
        scopes: SCOPE.into(),
        claims: None,
    }
}

/// A realistic token: ~1.2 KB, valid for an hour.
fn token() -> AccessToken {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    AccessToken {
        token: Secret::new("e".repeat(1200)),
        expires_on: now + 3600,
        refresh_on: 0,
        token_type: "Bearer".into(),
    }
}

/// A credential whose fetch costs nothing, so the cache is all that is measured.
struct Cached {
    cache: TokenCache,
    key: CacheKey,
}

impl TokenCredential for Cached {
    fn get_token<'a>(&'a self, _request: &'a TokenRequest) -> TokenFuture<'a> {
        Box::pin(self.cache.get(&self.key, || async { Ok(token()) }))
    }
    fn cached_token(&self, _request: &TokenRequest) -> Option<AccessToken> {
        self.cache.fresh(&self.key)
    }
    fn name(&self) -> &'static str {
        "bench"
    }
}

fn cached_get_token(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cache = TokenCache::new(RefreshPolicy::default());
    rt.block_on(cache.get(&key(), || async { Ok(token()) }))
        .unwrap();
    let mut group = c.benchmark_group("cached_get_token");
    group.bench_function("async TokenCache::get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(
                        cache.get(&key(), || async { Ok(token()) }).await.unwrap(),
                    );
                }
                start.elapsed()
            })
        })
    });

    let blocking = BlockingCredential::new(Cached {
        cache: TokenCache::new(RefreshPolicy::default()),
        key: key(),
    });
    let request = TokenRequest::new(&[SCOPE]);
    blocking.get_token(&request).unwrap();
    group.bench_function("BlockingCredential::get_token (the Python path)", |b| {
        b.iter(|| std::hint::black_box(blocking.get_token(&request).unwrap()))
    });
    group.finish();
}

fn single_flight(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("single_flight_refresh");
    group.sample_size(30);
    for waiters in [100usize, 1000] {
        group.bench_function(format!("{waiters} callers, one fetch"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let cache = TokenCache::new(RefreshPolicy::default());
                    let fetches = Arc::new(AtomicUsize::new(0));
                    total += rt.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..waiters)
                            .map(|_| {
                                let cache = cache.clone();
                                let fetches = fetches.clone();
                                tokio::spawn(async move {
                                    cache
                                        .get(&key(), move || async move {
                                            fetches.fetch_add(1, Ordering::SeqCst);
                                            // The authority's answer takes a moment.
                                            tokio::task::yield_now().await;
                                            Ok::<_, CredentialError>(token())
                                        })
                                        .await
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.unwrap().unwrap();
                        }
                        start.elapsed()
                    });
                    assert_eq!(fetches.load(Ordering::SeqCst), 1, "single flight");
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, cached_get_token, single_flight);
criterion_main!(benches);
