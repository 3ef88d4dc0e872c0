//! Token signing keys (PKCS#8, only ever in this 0600 file) and the generation
//! counter the server watches to reload them.

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::error::AuthorityError;

/// The `meta` key of the counter bumped by every rotation.
const GENERATION_KEY: &str = "key_generation";

/// `kid`, PKCS#8, certificate DER, `retires_at`, `activates_at`.
pub(crate) type KeyRow = (String, Vec<u8>, Vec<u8>, Option<i64>, Option<i64>);

/// A key that replaces the active one.
pub(crate) struct NewSigningKey<'a> {
    pub(crate) kid: &'a str,
    pub(crate) pkcs8: &'a [u8],
    pub(crate) cert_der: &'a [u8],
    pub(crate) created_at: i64,
    /// When it starts signing, if later than `created_at`.
    pub(crate) activates_at: Option<i64>,
    /// When the key it replaces leaves JWKS; at or before `created_at`, that
    /// key goes at once.
    pub(crate) retire_previous_at: i64,
}

impl Store {
    /// The current key generation (0 before any key exists).
    pub fn key_generation(&self) -> Result<i64, AuthorityError> {
        Ok(self
            .meta(GENERATION_KEY)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Adds `key` in one transaction: keys whose overlap already ended are
    /// deleted, the active one is retired, and the generation bumped. Returns the
    /// retired key's `kid`.
    pub(crate) fn add_signing_key(
        &self,
        key: &NewSigningKey<'_>,
    ) -> Result<Option<String>, AuthorityError> {
        let at = key.created_at;
        self.write(|tx| {
            tx.execute(
                "DELETE FROM signing_keys WHERE retires_at IS NOT NULL AND retires_at <= ?1",
                [at],
            )?;
            let retiring: Option<String> = tx
                .query_row(
                    "SELECT kid FROM signing_keys WHERE retires_at IS NULL",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            if key.retire_previous_at <= at {
                tx.execute("DELETE FROM signing_keys WHERE retires_at IS NULL", [])?;
            } else {
                tx.execute(
                    "UPDATE signing_keys SET retires_at = ?1 WHERE retires_at IS NULL",
                    [key.retire_previous_at],
                )?;
            }
            tx.execute(
                "INSERT INTO signing_keys (kid, pkcs8, cert_der, created_at, activates_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key.kid, key.pkcs8, key.cert_der, at, key.activates_at],
            )?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, '1')
                 ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                [GENERATION_KEY],
            )?;
            Ok(retiring)
        })
    }

    /// Every stored key, newest first.
    pub(crate) fn signing_keys(&self) -> Result<Vec<KeyRow>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT kid, pkcs8, cert_der, retires_at, activates_at FROM signing_keys
             ORDER BY created_at DESC, rowid DESC",
        )?;
        Ok(stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?)
    }
}
