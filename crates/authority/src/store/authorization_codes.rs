//! Authorization codes: stored as SHA-256, marked spent by their first redemption
//! and remembered a while after, so a replay is told it was already redeemed.

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::error::AuthorityError;

/// How long past its expiry a code is remembered.
const CODE_MEMORY: i64 = 3600;

/// A code to store, issued at `auth_time` to a user signed in for a client.
pub(crate) struct CodeRecord<'a> {
    pub(crate) sha256: &'a [u8],
    pub(crate) tenant_id: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) redirect_uri: &'a str,
    pub(crate) public_client: bool,
    pub(crate) scope: &'a str,
    pub(crate) nonce: Option<&'a str>,
    pub(crate) code_challenge: Option<&'a str>,
    pub(crate) auth_time: i64,
    pub(crate) expires_at: i64,
}

/// A code row, as its redemption needs it.
pub(crate) struct AuthorizationCode {
    pub(crate) user_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) public_client: bool,
    pub(crate) scope: String,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) auth_time: i64,
    pub(crate) expires_at: i64,
}

/// A redemption attempt of a known code.
pub(crate) struct CodeSpend {
    /// The tenant and client the code was issued at and to.
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
    /// This attempt spent it: it was redeemed at its tenant, by its client, and
    /// never before.
    pub(crate) first: bool,
    pub(crate) code: AuthorizationCode,
}

impl Store {
    /// Stores a new code, forgetting codes long expired.
    pub(crate) fn insert_authorization_code(
        &self,
        code: &CodeRecord<'_>,
    ) -> Result<(), AuthorityError> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM authorization_codes WHERE expires_at < ?1",
            [code.auth_time - CODE_MEMORY],
        )?;
        conn.execute(
            "INSERT INTO authorization_codes (sha256, tenant_id, client_id, user_id, redirect_uri,
             public_client, scope, nonce, code_challenge, auth_time, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                code.sha256,
                code.tenant_id,
                code.client_id,
                code.user_id,
                code.redirect_uri,
                code.public_client,
                code.scope,
                code.nonce,
                code.code_challenge,
                code.auth_time,
                code.expires_at
            ],
        )?;
        Ok(())
    }

    /// Redeems a code at `tenant_id` for `client_id` in one transaction: of all
    /// redemptions, only the first by its own client at its own tenant gets
    /// `first`. None for an unknown code.
    pub(crate) fn spend_authorization_code(
        &self,
        sha256: &[u8],
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<CodeSpend>, AuthorityError> {
        self.write(|tx| {
            let row = tx
                .query_row(
                    "SELECT tenant_id, client_id, redeemed, user_id, redirect_uri, public_client, scope,
                     nonce, code_challenge, auth_time, expires_at FROM authorization_codes WHERE sha256 = ?1",
                    [sha256],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, bool>(2)?,
                            AuthorizationCode {
                                user_id: r.get(3)?,
                                redirect_uri: r.get(4)?,
                                public_client: r.get(5)?,
                                scope: r.get(6)?,
                                nonce: r.get(7)?,
                                code_challenge: r.get(8)?,
                                auth_time: r.get(9)?,
                                expires_at: r.get(10)?,
                            },
                        ))
                    },
                )
                .optional()?;
            let Some((code_tenant, owner, redeemed, code)) = row else {
                return Ok(None);
            };
            let spent = tx.execute(
                "UPDATE authorization_codes SET redeemed = 1
                 WHERE sha256 = ?1 AND tenant_id = ?2 AND client_id = ?3 COLLATE NOCASE AND redeemed = 0",
                params![sha256, tenant_id, client_id],
            )?;
            Ok(Some(CodeSpend {
                tenant_id: code_tenant,
                client_id: owner,
                first: !redeemed && spent == 1,
                code,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::now;

    fn issue(store: &Store, tenant: &str, hash: &[u8]) {
        store
            .insert_authorization_code(&CodeRecord {
                sha256: hash,
                tenant_id: tenant,
                client_id: "client",
                user_id: "user",
                redirect_uri: "http://localhost",
                public_client: true,
                scope: "openid",
                nonce: None,
                code_challenge: None,
                auth_time: now(),
                expires_at: now() + 60,
            })
            .unwrap();
    }

    #[test]
    fn concurrent_redemptions_from_separate_connections_spend_a_code_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tenant = store.default_tenant().unwrap().id;
        // Each redeemer has its own connection, as another process would.
        let redeemers: Vec<Store> = (0..4).map(|_| Store::open(dir.path()).unwrap()).collect();
        for round in 0..20u8 {
            let hash = [round; 32];
            issue(&store, &tenant, &hash);
            let barrier = std::sync::Barrier::new(redeemers.len());
            let spends: Vec<Result<bool, String>> = std::thread::scope(|s| {
                let redeeming: Vec<_> = redeemers
                    .iter()
                    .map(|r| {
                        s.spawn(|| {
                            barrier.wait();
                            r.spend_authorization_code(&hash, &tenant, "CLIENT")
                                .map(|spend| spend.unwrap().first)
                                .map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                redeeming.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let first = spends.iter().filter(|s| matches!(s, Ok(true))).count();
            assert_eq!(first, 1, "round {round}: {spends:?}");
            assert!(
                spends.iter().all(Result::is_ok),
                "round {round}: {spends:?}"
            );
        }
        // Another tenant's or client's attempt is refused without spending it.
        issue(&store, &tenant, &[50; 32]);
        for (at, by) in [("other", "client"), (tenant.as_str(), "other")] {
            let spend = store.spend_authorization_code(&[50; 32], at, by).unwrap();
            assert!(!spend.unwrap().first);
        }
        let spend = store
            .spend_authorization_code(&[50; 32], &tenant, "client")
            .unwrap();
        assert!(spend.unwrap().first);
        assert!(
            store
                .spend_authorization_code(&[99; 32], &tenant, "client")
                .unwrap()
                .is_none()
        );
    }
}
