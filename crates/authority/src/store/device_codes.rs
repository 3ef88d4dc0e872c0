//! Device codes: stored as SHA-256 beside their user code, answered by the user
//! (or an admin), spent by the first poll that finds them answered.

use rusqlite::{OptionalExtension, params};

use super::{Store, now, rfc3339};
use crate::directory::PendingSignIn;
use crate::error::AuthorityError;

/// How long past its expiry a device code is kept before it is swept.
const DEVICE_CODE_MEMORY: i64 = 3600;

/// A device code to store, pending until its user answers.
pub(crate) struct DeviceCodeRecord<'a> {
    pub(crate) sha256: &'a [u8],
    pub(crate) user_code: &'a str,
    pub(crate) tenant_id: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) expires_at: i64,
}

/// What a poll found.
#[derive(Debug)]
pub(crate) enum DevicePoll {
    /// Approved, and spent by this poll.
    Approved {
        scope: String,
        user_id: Option<String>,
    },
    /// Declined, and spent by this poll.
    Declined,
    /// Not answered yet (or answered since this poll looked).
    Pending,
    /// Past its lifetime.
    Expired,
    /// Unknown, another client's, or already spent.
    Unknown,
}

impl Store {
    pub(crate) fn insert_device_code(
        &self,
        code: &DeviceCodeRecord<'_>,
    ) -> Result<(), AuthorityError> {
        self.conn().execute(
            "INSERT INTO device_codes (device_code_sha256, user_code, tenant_id, client_id, scope, expires_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
            params![
                code.sha256,
                code.user_code,
                code.tenant_id,
                code.client_id,
                code.scope,
                code.expires_at
            ],
        )?;
        Ok(())
    }

    /// A poll of `client_id` for a device code. An answered one is spent by one
    /// statement that deletes it and returns it, so of concurrent polls (in any
    /// process) only one ever sees it answered.
    pub(crate) fn poll_device_code(
        &self,
        sha256: &[u8],
        tenant_id: &str,
        client_id: &str,
    ) -> Result<DevicePoll, AuthorityError> {
        let at = now();
        let conn = self.conn();
        let spent: Option<(String, String, Option<String>)> = conn
            .query_row(
                "DELETE FROM device_codes WHERE device_code_sha256 = ?1 AND tenant_id = ?2
                 AND client_id = ?3 AND expires_at > ?4 AND status IN ('approved', 'denied')
                 RETURNING status, scope, user_id",
                params![sha256, tenant_id, client_id, at],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((status, scope, user_id)) = spent {
            conn.execute(
                "DELETE FROM device_codes WHERE expires_at < ?1",
                [at - DEVICE_CODE_MEMORY],
            )?;
            return Ok(if status == "denied" {
                DevicePoll::Declined
            } else {
                DevicePoll::Approved { scope, user_id }
            });
        }
        let expires_at: Option<i64> = conn
            .query_row(
                "SELECT expires_at FROM device_codes WHERE device_code_sha256 = ?1
                 AND tenant_id = ?2 AND client_id = ?3",
                params![sha256, tenant_id, client_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match expires_at {
            None => DevicePoll::Unknown,
            Some(t) if t <= at => DevicePoll::Expired,
            Some(_) => DevicePoll::Pending,
        })
    }

    /// Records the user's answer to a pending, unexpired user code; false if
    /// there is none.
    pub(crate) fn set_device_code_answer(
        &self,
        user_code: &str,
        user_id: &str,
        deny: bool,
    ) -> Result<bool, AuthorityError> {
        let changed = self.conn().execute(
            "UPDATE device_codes SET status = ?1, user_id = ?2
             WHERE user_code = ?3 AND status = 'pending' AND expires_at > ?4",
            params![
                if deny { "denied" } else { "approved" },
                user_id,
                user_code,
                now()
            ],
        )?;
        Ok(changed != 0)
    }

    /// `authority pending`: device-code sign-ins waiting for a user, newest
    /// first (the user code an admin approves, never the device code).
    pub fn pending_device_codes(&self) -> Result<Vec<PendingSignIn>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT d.user_code, d.client_id, a.display_name, d.expires_at FROM device_codes d
             LEFT JOIN applications a ON a.app_id = d.client_id
             WHERE d.status = 'pending' AND d.expires_at > ?1 ORDER BY d.expires_at DESC",
        )?;
        Ok(stmt
            .query_map([now()], |r| {
                Ok(PendingSignIn {
                    user_code: r.get(0)?,
                    client_id: r.get(1)?,
                    app_display_name: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    expires_on: rfc3339(r.get(3)?),
                })
            })?
            .collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(store: &Store, tenant: &str, n: u8, expires_at: i64) -> ([u8; 32], String) {
        let (hash, user_code) = ([n; 32], format!("CODE{n}"));
        store
            .insert_device_code(&DeviceCodeRecord {
                sha256: &hash,
                user_code: &user_code,
                tenant_id: tenant,
                client_id: "client",
                scope: "openid",
                expires_at,
            })
            .unwrap();
        (hash, user_code)
    }

    #[test]
    fn concurrent_polls_from_separate_connections_redeem_an_approved_code_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tenant = store.default_tenant().unwrap().id;
        let user = store.create_user("u@example.org", "U", None).unwrap();
        // Each poller has its own connection, as another process would.
        let pollers: Vec<Store> = (0..4).map(|_| Store::open(dir.path()).unwrap()).collect();
        for round in 0..10 {
            let (hash, user_code) = pending(&store, &tenant, round, now() + 60);
            assert!(
                store
                    .set_device_code_answer(&user_code, &user.id, false)
                    .unwrap()
            );
            let barrier = std::sync::Barrier::new(pollers.len());
            let polls: Vec<DevicePoll> = std::thread::scope(|s| {
                let polling: Vec<_> = pollers
                    .iter()
                    .map(|p| {
                        s.spawn(|| {
                            barrier.wait();
                            p.poll_device_code(&hash, &tenant, "client").unwrap()
                        })
                    })
                    .collect();
                polling.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let approved = polls
                .iter()
                .filter(|p| matches!(p, DevicePoll::Approved { .. }))
                .count();
            assert_eq!(approved, 1, "round {round}: {polls:?}");
            assert!(
                polls
                    .iter()
                    .all(|p| matches!(p, DevicePoll::Approved { .. } | DevicePoll::Unknown)),
                "round {round}: {polls:?}"
            );
        }
    }

    #[test]
    fn a_poll_tells_pending_declined_expired_and_unknown_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tenant = store.default_tenant().unwrap().id;
        let user = store.create_user("u@example.org", "U", None).unwrap();
        let poll = |hash: &[u8], tenant: &str, client: &str| {
            store.poll_device_code(hash, tenant, client).unwrap()
        };
        let (hash, user_code) = pending(&store, &tenant, 1, now() + 60);
        assert!(matches!(
            poll(&hash, &tenant, "client"),
            DevicePoll::Pending
        ));
        assert!(matches!(poll(&hash, &tenant, "other"), DevicePoll::Unknown));
        assert!(matches!(
            poll(&hash, "other", "client"),
            DevicePoll::Unknown
        ));
        assert!(
            store
                .set_device_code_answer(&user_code, &user.id, true)
                .unwrap()
        );
        assert!(
            !store
                .set_device_code_answer(&user_code, &user.id, false)
                .unwrap(),
            "an answered code cannot be answered again"
        );
        assert!(matches!(poll(&hash, &tenant, "other"), DevicePoll::Unknown));
        assert!(matches!(
            poll(&hash, &tenant, "client"),
            DevicePoll::Declined
        ));
        assert!(matches!(
            poll(&hash, &tenant, "client"),
            DevicePoll::Unknown
        ));

        let (hash, _) = pending(&store, &tenant, 2, now() - 1);
        assert!(matches!(
            poll(&hash, &tenant, "client"),
            DevicePoll::Expired
        ));
    }
}
