//! One retry policy for every client entraflow writes (the credential library's
//! managed-identity client, the TensorFlow plugin's Blob client): exponential
//! backoff with full jitter, the server's own wait (`Retry-After`,
//! `x-ms-retry-after-ms`, `retry-after-ms`) honoured when longer, and a bound on
//! both attempts and total time. In the style of object_store's
//! `client/retry.rs` + `client/backoff.rs`. It decides *when*, never *whether*: what
//! is worth repeating is the caller's call ([`is_transient_status`] for Azure's
//! data plane).
//!
//! ```
//! use std::time::Duration;
//! use entraflow_core::retry::RetryPolicy;
//! let policy = RetryPolicy { max_retries: 2, ..RetryPolicy::STORAGE };
//! let mut retry = policy.start();
//! assert!(retry.next_delay(None).is_some());
//! assert!(retry.next_delay(Some(Duration::from_millis(5))).unwrap() >= Duration::from_millis(5));
//! assert_eq!(retry.next_delay(None), None); // two retries spent
//! ```

use std::time::{Duration, Instant, SystemTime};

/// How often and how long to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The backoff ceiling of the first retry; it doubles for each later one.
    pub initial_backoff: Duration,
    /// The most one backoff may grow to (a server's wait may exceed it).
    pub max_backoff: Duration,
    /// No retry starts once this much time has passed since the first attempt.
    pub max_elapsed: Duration,
}

impl RetryPolicy {
    /// Azure Storage requests: azure-core's defaults (3 retries, 0.8 s doubling),
    /// with a short first step for a local gate.
    pub const STORAGE: RetryPolicy = RetryPolicy {
        max_retries: 3,
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(10),
        max_elapsed: Duration::from_secs(60),
    };

    /// Managed identity endpoints (IMDS, App Service): Azure's guidance of
    /// exponential retries over about half a minute.
    pub const MANAGED_IDENTITY: RetryPolicy = RetryPolicy {
        max_retries: 4,
        initial_backoff: Duration::from_secs(2),
        max_backoff: Duration::from_secs(30),
        max_elapsed: Duration::from_secs(60),
    };

    /// Starts counting a request's attempts.
    pub fn start(&self) -> Retry {
        Retry {
            policy: *self,
            retries: 0,
            started: Instant::now(),
        }
    }
}

/// The retry state of one request.
#[derive(Debug, Clone)]
pub struct Retry {
    policy: RetryPolicy,
    retries: u32,
    started: Instant,
}

impl Retry {
    /// The wait before the next attempt, or `None` when the policy is spent (by
    /// attempts, or because waiting would end past `max_elapsed`). `server_wait` is
    /// what the server asked for; it wins when longer than the backoff.
    pub fn next_delay(&mut self, server_wait: Option<Duration>) -> Option<Duration> {
        if self.retries >= self.policy.max_retries {
            return None;
        }
        let ceiling = self
            .policy
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(self.retries))
            .min(self.policy.max_backoff);
        // Full jitter: anywhere in [0, ceiling], so that many clients that failed
        // together do not retry together.
        let jittered = ceiling.mul_f64(rand::random::<f64>());
        let delay = server_wait.map_or(jittered, |w| w.max(jittered));
        if self.started.elapsed() + delay > self.policy.max_elapsed {
            return None;
        }
        self.retries += 1;
        Some(delay)
    }

    /// Retries made so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

/// The wait a response asks for: `x-ms-retry-after-ms` or `retry-after-ms`
/// (milliseconds), else `Retry-After` (seconds or an HTTP date). `header` looks a
/// header up by its lower-case name.
pub fn server_wait(header: impl Fn(&str) -> Option<String>) -> Option<Duration> {
    for name in ["x-ms-retry-after-ms", "retry-after-ms"] {
        if let Some(ms) = header(name).and_then(|v| v.trim().parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    let value = header("retry-after")?;
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Statuses Azure documents as transient for data-plane requests (azure-core's
/// retry policy): timeout, throttling, and server errors except 501 and 505.
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_ceiling_and_stops_after_the_retries() {
        let policy = RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            max_elapsed: Duration::from_secs(60),
        };
        let mut retry = policy.start();
        let ceilings = [100, 200, 300, 300, 300];
        for ceiling in ceilings {
            let d = retry.next_delay(None).unwrap();
            assert!(d <= Duration::from_millis(ceiling), "{d:?} > {ceiling} ms");
        }
        assert_eq!(retry.retries(), 5);
        assert_eq!(retry.next_delay(None), None);
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut waits: Vec<Duration> = (0..50)
            .map(|_| {
                RetryPolicy::MANAGED_IDENTITY
                    .start()
                    .next_delay(None)
                    .unwrap()
            })
            .collect();
        waits.sort();
        waits.dedup();
        assert!(waits.len() > 40, "full jitter gives distinct waits");
    }

    #[test]
    fn the_server_wait_wins_and_the_total_time_is_bounded() {
        let policy = RetryPolicy {
            max_elapsed: Duration::from_secs(5),
            ..RetryPolicy::STORAGE
        };
        let mut retry = policy.start();
        assert_eq!(
            retry.next_delay(Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        // A wait that would end past max_elapsed is not taken.
        assert_eq!(retry.next_delay(Some(Duration::from_secs(30))), None);
    }

    #[test]
    fn server_waits_are_read_from_every_header_azure_sends() {
        let wait = |pairs: &[(&str, String)]| {
            server_wait(|name| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        let one = |k: &'static str, v: &str| vec![(k, v.to_owned())];
        assert_eq!(
            wait(&one("x-ms-retry-after-ms", "1500")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            wait(&[("retry-after-ms", "20".into()), ("retry-after", "9".into())]),
            Some(Duration::from_millis(20))
        );
        assert_eq!(wait(&one("retry-after", "3")), Some(Duration::from_secs(3)));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let by_date = wait(&one("retry-after", &soon)).unwrap();
        assert!(by_date > Duration::from_secs(25) && by_date <= Duration::from_secs(30));
        assert_eq!(wait(&one("retry-after", "soon")), None);
        assert_eq!(wait(&[]), None);
        assert!(is_transient_status(503) && is_transient_status(429));
        assert!(!is_transient_status(403) && !is_transient_status(501));
    }
}
