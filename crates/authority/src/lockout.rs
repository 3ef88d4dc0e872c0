//! Smart lockout, as Entra ID does it for passwords, applied to client secrets too.
//!
//! Entra's rules (howto-password-smart-lockout): an account locks after 10 failed
//! attempts, first for 60 s and longer on repeats; once a lockout ends, each further
//! failure locks it again; the last 3 wrong passwords are remembered, so retyping
//! the same wrong one does not count again; a locked account is refused whatever
//! the password (`AADSTS50053`). The growth rate is not disclosed: here each lockout
//! doubles the last, up to an hour. A source address that fails against many
//! accounts (password spraying) is locked the same way with its own, higher
//! threshold. State lives in memory, like Entra's counters it resets on restart,
//! and holds at most `MAX_SUBJECTS` entries (the quietest are forgotten first).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many failures lock a subject, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failed attempts that lock one account or application (Entra: 10).
    pub threshold: u32,
    /// Failed attempts, across accounts, that lock one source address.
    pub source_threshold: u32,
    /// The first lockout (Entra: 60 s); each further one doubles, up to an hour.
    pub first_lockout: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 10,
            source_threshold: 50,
            first_lockout: Duration::from_secs(60),
        }
    }
}

const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
/// Wrong secrets remembered per subject, so a retyped one does not count twice.
const REMEMBERED: usize = 3;
const MAX_SUBJECTS: usize = 100_000;

/// Who is being guessed at, or where the guesses come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    /// A user, by lower-cased user principal name (UPNs are unique across tenants).
    Account(String),
    /// An application's client secret, by client id.
    Client(String),
    /// A source address.
    Source(IpAddr),
}

impl Subject {
    pub(crate) fn account(upn: &str) -> Self {
        Subject::Account(upn.to_lowercase())
    }

    pub(crate) fn client(client_id: &str) -> Self {
        Subject::Client(client_id.to_lowercase())
    }
}

#[derive(Debug, Default)]
struct Counter {
    failures: u32,
    lockouts: u32,
    locked_until: Option<Instant>,
    /// Keyed digests of the last wrong secrets (never the secrets).
    recent: Vec<[u8; 32]>,
    last_seen: Option<Instant>,
}

/// A refusal because the subject is locked, with the time left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Locked {
    pub(crate) subject: Subject,
    pub(crate) remaining: Duration,
}

impl Locked {
    /// Whole seconds left, rounded up, for messages.
    pub(crate) fn seconds(&self) -> u64 {
        self.remaining.as_secs() + u64::from(self.remaining.subsec_nanos() > 0)
    }
}

/// The counters, shared by every sign-in path.
#[derive(Debug)]
pub(crate) struct Lockout {
    policy: LockoutPolicy,
    /// Keys the digests of wrong secrets, so the memory holds nothing guessable.
    key: aws_lc_rs::hmac::Key,
    counters: Mutex<HashMap<Subject, Counter>>,
}

impl Lockout {
    pub(crate) fn new(policy: LockoutPolicy) -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &rng)
            .expect("the system random source works");
        Self {
            policy,
            key,
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses at once if any of `subjects` is locked; call before checking a secret.
    pub(crate) fn check(&self, subjects: &[Subject]) -> Result<(), Locked> {
        let now = Instant::now();
        let counters = self.counters.lock().expect("lockout counters");
        for subject in subjects {
            if let Some(until) = counters.get(subject).and_then(|c| c.locked_until)
                && until > now
            {
                return Err(Locked {
                    subject: subject.clone(),
                    remaining: until - now,
                });
            }
        }
        Ok(())
    }

    /// Counts a wrong `secret` against each subject; the lockout it starts, if any.
    pub(crate) fn failed(&self, subjects: &[Subject], secret: &str) -> Option<Locked> {
        let now = Instant::now();
        let digest: [u8; 32] = aws_lc_rs::hmac::sign(&self.key, secret.as_bytes())
            .as_ref()
            .try_into()
            .expect("HMAC-SHA256 is 32 bytes");
        let mut counters = self.counters.lock().expect("lockout counters");
        if counters.len() >= MAX_SUBJECTS {
            forget_quietest(&mut counters, now);
        }
        let mut started = None;
        for subject in subjects {
            let threshold = match subject {
                Subject::Source(_) => self.policy.source_threshold,
                _ => self.policy.threshold,
            };
            let counter = counters.entry(subject.clone()).or_default();
            counter.last_seen = Some(now);
            // A retyped wrong password is one mistake; a source spraying one
            // password over many accounts is many guesses.
            if !matches!(subject, Subject::Source(_)) {
                if counter.recent.contains(&digest) {
                    continue;
                }
                if counter.recent.len() == REMEMBERED {
                    counter.recent.remove(0);
                }
                counter.recent.push(digest);
            }
            counter.failures += 1;
            if counter.failures >= threshold {
                let lockout = self
                    .policy
                    .first_lockout
                    .saturating_mul(1 << counter.lockouts.min(16))
                    .min(MAX_LOCKOUT);
                counter.lockouts += 1;
                counter.locked_until = Some(now + lockout);
                started.get_or_insert(Locked {
                    subject: subject.clone(),
                    remaining: lockout,
                });
            }
        }
        started
    }

    /// A correct secret: the subject's failures are forgiven (not the source's, which
    /// may be guessing at other accounts too).
    pub(crate) fn succeeded(&self, subject: &Subject) {
        self.counters
            .lock()
            .expect("lockout counters")
            .remove(subject);
    }
}

/// The subjects one attempt counts against: `first`, and the source if known.
pub(crate) fn subjects(first: Subject, source: Option<IpAddr>) -> Vec<Subject> {
    std::iter::once(first)
        .chain(source.map(Subject::Source))
        .collect()
}

/// Drops the tenth of the counters seen longest ago that are not locked now.
fn forget_quietest(counters: &mut HashMap<Subject, Counter>, now: Instant) {
    let mut quiet: Vec<(Option<Instant>, Subject)> = counters
        .iter()
        .filter(|(_, c)| c.locked_until.is_none_or(|u| u <= now))
        .map(|(s, c)| (c.last_seen, s.clone()))
        .collect();
    quiet.sort_by_key(|(seen, _)| *seen);
    for (_, subject) in quiet.into_iter().take(MAX_SUBJECTS / 10) {
        counters.remove(&subject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(threshold: u32) -> LockoutPolicy {
        LockoutPolicy {
            threshold,
            source_threshold: 100,
            first_lockout: Duration::from_millis(200),
        }
    }

    #[test]
    fn the_threshold_locks_and_a_retyped_password_counts_once() {
        let lockout = Lockout::new(policy(3));
        let alice = [Subject::account("Alice@x")];
        assert!(lockout.failed(&alice, "guess-1").is_none());
        // The same wrong password again, in any case of the user name, counts once.
        assert!(
            lockout
                .failed(&[Subject::account("alice@X")], "guess-1")
                .is_none()
        );
        assert!(lockout.failed(&alice, "guess-2").is_none());
        let locked = lockout.failed(&alice, "guess-3").unwrap();
        assert_eq!(locked.subject, alice[0]);
        assert!(lockout.check(&alice).is_err());
        // Other accounts are not affected.
        assert!(lockout.check(&[Subject::account("bob@x")]).is_ok());
    }

    #[test]
    fn after_a_lockout_each_failure_locks_again_for_longer() {
        let lockout = Lockout::new(policy(2));
        let app = [Subject::client("app")];
        lockout.failed(&app, "a");
        let first = lockout.failed(&app, "b").unwrap().remaining;
        std::thread::sleep(first + Duration::from_millis(20));
        assert!(lockout.check(&app).is_ok(), "the lockout ends");
        let second = lockout.failed(&app, "c").expect("one failure locks again");
        assert_eq!(second.remaining, first * 2);
        lockout.succeeded(&app[0]);
        assert!(lockout.check(&app).is_ok());
        assert!(lockout.failed(&app, "d").is_none(), "success forgives");
    }

    #[test]
    fn a_source_guessing_across_accounts_is_locked() {
        let lockout = Lockout::new(LockoutPolicy {
            threshold: 10,
            source_threshold: 5,
            first_lockout: Duration::from_secs(60),
        });
        let source = Subject::Source("192.0.2.7".parse().unwrap());
        for i in 0..4 {
            let subjects = [Subject::account(&format!("user{i}@x")), source.clone()];
            assert!(lockout.failed(&subjects, "Winter2026!").is_none());
        }
        let subjects = [Subject::account("user9@x"), source.clone()];
        assert_eq!(
            lockout.failed(&subjects, "Winter2026!").unwrap().subject,
            source
        );
        assert!(lockout.check(&[Subject::account("new@x"), source]).is_err());
    }
}
