//! Server-side sessions. The browser holds only a random id (256 bits) in an
//! `HttpOnly`, `Secure`, `SameSite=Lax` cookie with the `__Host-` prefix (so no
//! other origin can set it); who the person is, their CSRF token and when the
//! session ends stay here. Sign-ins in progress are kept the same way, bound to
//! the browser by a second cookie that lives ten minutes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use cookie::{Cookie, SameSite};

use crate::oidc::{Identity, PendingSignIn, random_token};

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "__Host-entraflow-console";
/// The cookie of a sign-in in progress.
pub(crate) const SIGN_IN_COOKIE: &str = "__Host-entraflow-console-signin";
/// How long a sign-in may take (the authority's codes live as long).
pub(crate) const SIGN_IN_LIFETIME: Duration = Duration::from_secs(600);
/// Most sessions and most sign-ins in progress kept at once; beyond it the
/// oldest are dropped (their people sign in again).
const MAX_ENTRIES: usize = 10_000;

/// A signed-in person.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) identity: Identity,
    /// The token every state-changing form (sign-out) must carry.
    pub(crate) csrf: String,
    expires: Instant,
}

struct Pending {
    sign_in: PendingSignIn,
    expires: Instant,
}

/// Sessions and sign-ins in progress, in memory (a restart signs everyone out).
pub(crate) struct Sessions {
    lifetime: Duration,
    sessions: Mutex<HashMap<String, Session>>,
    pending: Mutex<HashMap<String, Pending>>,
}

/// Keys are the SHA-256 of the cookie value: the map never holds the bearer value.
fn key(id: &str) -> String {
    entraflow_core::secret::sha256_hex(id.as_bytes())
}

fn make_room<V>(map: &mut HashMap<String, V>, expires: impl Fn(&V) -> Instant) {
    let now = Instant::now();
    map.retain(|_, v| expires(v) > now);
    while map.len() >= MAX_ENTRIES {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| expires(v))
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&oldest);
    }
}

impl Sessions {
    pub(crate) fn new(lifetime: Duration) -> Sessions {
        Sessions {
            lifetime,
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps a sign-in in progress; returns the id its cookie carries.
    pub(crate) fn start_sign_in(&self, sign_in: PendingSignIn) -> String {
        let id = random_token();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut pending, |p| p.expires);
        pending.insert(
            key(&id),
            Pending {
                sign_in,
                expires: Instant::now() + SIGN_IN_LIFETIME,
            },
        );
        id
    }

    /// Takes (once) the sign-in whose cookie is `id`, if it has not expired.
    pub(crate) fn take_sign_in(&self, id: &str) -> Option<PendingSignIn> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let p = pending.remove(&key(id))?;
        (p.expires > Instant::now()).then_some(p.sign_in)
    }

    /// A new session for `identity`; returns the id its cookie carries.
    pub(crate) fn create(&self, identity: Identity) -> String {
        let id = random_token();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut sessions, |s| s.expires);
        sessions.insert(
            key(&id),
            Session {
                identity,
                csrf: random_token(),
                expires: Instant::now() + self.lifetime,
            },
        );
        id
    }

    /// The live session whose cookie is `id`.
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(id);
        match sessions.get(&k) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                sessions.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends the session whose cookie is `id`.
    pub(crate) fn end(&self, id: &str) -> Option<Session> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(id))
    }

    /// Seconds a session lasts, for the cookie's `Max-Age`.
    pub(crate) fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

/// The value of cookie `name` in the request, if any.
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value: `__Host-` rules (Secure, Path=/, no Domain), HttpOnly,
/// SameSite=Lax; `max_age` zero deletes the cookie.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    Cookie::build((name, value))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            oid: "o".into(),
            tenant: "t".into(),
            name: "Ada".into(),
            username: None,
            uti: "u".into(),
            groups: Vec::new(),
        }
    }

    #[test]
    fn sessions_expire_and_sign_ins_are_taken_once() {
        let sessions = Sessions::new(Duration::from_millis(50));
        let id = sessions.create(identity());
        assert_eq!(sessions.get(&id).unwrap().identity.name, "Ada");
        assert!(sessions.get("forged").is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(sessions.get(&id).is_none(), "expired");

        let pending = PendingSignIn {
            state: "s".into(),
            nonce: "n".into(),
            code_verifier: "v".into(),
            next: "/".into(),
        };
        let sign_in = sessions.start_sign_in(pending);
        assert_eq!(sessions.take_sign_in(&sign_in).unwrap().state, "s");
        assert!(sessions.take_sign_in(&sign_in).is_none(), "single use");
    }

    #[test]
    fn the_cookie_is_host_only_http_only_secure_and_lax() {
        let c = set_cookie(SESSION_COOKIE, "abc", Duration::from_secs(60));
        for part in [
            "__Host-entraflow-console=abc",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!c.contains("Domain"), "{c}");
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; __Host-entraflow-console=abc".parse().unwrap(),
        );
        assert_eq!(
            cookie_value(&headers, SESSION_COOKIE).as_deref(),
            Some("abc")
        );
        assert_eq!(cookie_value(&headers, SIGN_IN_COOKIE), None);
    }
}
