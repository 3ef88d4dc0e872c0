//! Refresh tokens: stored as SHA-256, spent by their first redemption.

use rusqlite::{OptionalExtension, params};

use super::{Store, now};
use crate::error::AuthorityError;

/// What a redeemed refresh token was issued for.
#[derive(Debug)]
pub(crate) struct SpentRefreshToken {
    pub(crate) client_id: String,
    pub(crate) user_id: String,
    pub(crate) scope: String,
    pub(crate) expires_at: i64,
    pub(crate) confidential: bool,
}

/// A refresh token to store.
pub(crate) struct RefreshTokenRecord<'a> {
    pub(crate) sha256: &'a [u8],
    pub(crate) tenant_id: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) expires_at: i64,
    /// Issued to a client that authenticated: redeemed only with its credential.
    pub(crate) confidential: bool,
}

impl Store {
    pub(crate) fn insert_refresh_token(
        &self,
        token: &RefreshTokenRecord<'_>,
    ) -> Result<(), AuthorityError> {
        self.conn().execute(
            "INSERT INTO refresh_tokens (sha256, tenant_id, client_id, user_id, scope, expires_at, confidential)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                token.sha256,
                token.tenant_id,
                token.client_id,
                token.user_id,
                token.scope,
                token.expires_at,
                token.confidential
            ],
        )?;
        Ok(())
    }

    /// Spends a refresh token: one statement deletes it and returns what it was
    /// issued for, so two redemptions of the same token (in any process) can never
    /// both find it. Expired tokens are swept on the way.
    pub(crate) fn take_refresh_token(
        &self,
        sha256: &[u8],
        tenant_id: &str,
    ) -> Result<Option<SpentRefreshToken>, AuthorityError> {
        let conn = self.conn();
        let spent = conn
            .query_row(
                "DELETE FROM refresh_tokens WHERE sha256 = ?1 AND tenant_id = ?2
                 RETURNING client_id, user_id, scope, expires_at, confidential",
                params![sha256, tenant_id],
                |r| {
                    Ok(SpentRefreshToken {
                        client_id: r.get(0)?,
                        user_id: r.get(1)?,
                        scope: r.get(2)?,
                        expires_at: r.get(3)?,
                        confidential: r.get(4)?,
                    })
                },
            )
            .optional()?;
        conn.execute(
            "DELETE FROM refresh_tokens WHERE expires_at < ?1",
            params![now()],
        )?;
        Ok(spent)
    }
}
