//! What clients authenticate with: client secrets (SHA-256), certificates,
//! federated identity credentials and the issuers trusted offline, and the
//! assertion `jti`s already used.

use rusqlite::{OptionalExtension, params};

use super::{Store, now};
use crate::admin::FederatedCredential;
use crate::assertion::CLOCK_SKEW;
use crate::error::AuthorityError;

/// A client secret to store, by its hash.
pub(crate) struct ClientSecretRecord<'a> {
    pub(crate) id: &'a str,
    pub(crate) app_id: &'a str,
    pub(crate) sha256: &'a [u8],
    /// The secret's first characters, as the portal shows them.
    pub(crate) hint: &'a str,
    pub(crate) end_at: i64,
    pub(crate) created_at: i64,
}

/// An uploaded certificate to store.
pub(crate) struct CertificateRecord<'a> {
    pub(crate) id: &'a str,
    pub(crate) app_id: &'a str,
    pub(crate) der: &'a [u8],
    pub(crate) sha1: &'a [u8],
    pub(crate) sha256: &'a [u8],
    pub(crate) end_at: i64,
}

impl Store {
    /// Adds a secret; unless `keep_others`, the app's other secrets go in the
    /// same transaction.
    pub(crate) fn add_client_secret(
        &self,
        secret: &ClientSecretRecord<'_>,
        keep_others: bool,
    ) -> Result<(), AuthorityError> {
        self.write(|tx| {
            if !keep_others {
                tx.execute(
                    "DELETE FROM client_secrets WHERE app_id = ?1",
                    [secret.app_id],
                )?;
            }
            tx.execute(
                "INSERT INTO client_secrets (id, app_id, sha256, hint, end_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    secret.id,
                    secret.app_id,
                    secret.sha256,
                    secret.hint,
                    secret.end_at,
                    secret.created_at
                ],
            )?;
            Ok(())
        })
    }

    /// The hash and expiry of every secret of a client.
    pub(crate) fn client_secret_hashes(
        &self,
        client_id: &str,
    ) -> Result<Vec<(Vec<u8>, i64)>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT sha256, end_at FROM client_secrets WHERE app_id = ?1 COLLATE NOCASE",
        )?;
        Ok(stmt
            .query_map([client_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?)
    }

    /// The app's secrets as `credential list` shows them: key id, hint, start
    /// and end (never the hash).
    pub(crate) fn client_secrets(
        &self,
        app_id: &str,
    ) -> Result<Vec<(String, String, i64, i64)>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, hint, created_at, end_at FROM client_secrets WHERE app_id = ?1 ORDER BY created_at, id",
        )?;
        Ok(stmt
            .query_map([app_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?)
    }

    /// The app's certificates: key id, SHA-1 thumbprint, end.
    pub(crate) fn certificates(
        &self,
        app_id: &str,
    ) -> Result<Vec<(String, Vec<u8>, i64)>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, sha1, end_at FROM certificates WHERE app_id = ?1 ORDER BY id")?;
        Ok(stmt
            .query_map([app_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?)
    }

    /// Deletes one secret (`cert == false`) or certificate of the app by key id;
    /// false when the app has none with that id.
    pub(crate) fn delete_app_credential(
        &self,
        app_id: &str,
        key_id: &str,
        cert: bool,
    ) -> Result<bool, AuthorityError> {
        let sql = if cert {
            "DELETE FROM certificates WHERE app_id = ?1 AND id = ?2 COLLATE NOCASE"
        } else {
            "DELETE FROM client_secrets WHERE app_id = ?1 AND id = ?2 COLLATE NOCASE"
        };
        Ok(self.conn().execute(sql, params![app_id, key_id])? == 1)
    }

    pub(crate) fn insert_certificate(
        &self,
        cert: &CertificateRecord<'_>,
    ) -> Result<(), AuthorityError> {
        self.conn().execute(
            "INSERT INTO certificates (id, app_id, der, sha1, sha256, end_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![cert.id, cert.app_id, cert.der, cert.sha1, cert.sha256, cert.end_at],
        )?;
        Ok(())
    }

    /// The DER of the app's certificate with this SHA-1 or SHA-256 thumbprint.
    pub(crate) fn certificate_by_thumbprint(
        &self,
        app_id: &str,
        sha1: Option<&[u8]>,
        sha256: Option<&[u8]>,
    ) -> Result<Option<(Vec<u8>, i64)>, AuthorityError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT der, end_at FROM certificates WHERE app_id = ?1 AND (sha1 = ?2 OR sha256 = ?3)",
                params![app_id, sha1, sha256],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Stores a federated credential of `app_id`; false if the app already has
    /// one of that name.
    pub(crate) fn insert_federated_credential(
        &self,
        app_id: &str,
        credential: &FederatedCredential,
    ) -> Result<bool, AuthorityError> {
        let inserted = self.conn().execute(
            "INSERT OR IGNORE INTO federated_credentials (id, app_id, name, issuer, subject, audiences)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                credential.id,
                app_id,
                credential.name,
                credential.issuer,
                credential.subject,
                serde_json::to_string(&credential.audiences).unwrap_or_default()
            ],
        )?;
        Ok(inserted != 0)
    }

    /// `ad app federated-credential list`.
    pub fn list_federated_credentials(
        &self,
        app_id: &str,
    ) -> Result<Vec<FederatedCredential>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, name, issuer, subject, audiences FROM federated_credentials
             WHERE app_id = ?1 COLLATE NOCASE ORDER BY name",
        )?;
        Ok(stmt
            .query_map([app_id], |r| {
                Ok(FederatedCredential {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    issuer: r.get(2)?,
                    subject: r.get(3)?,
                    audiences: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    pub(crate) fn delete_federated_credential_by_id(
        &self,
        app_id: &str,
        id: &str,
    ) -> Result<(), AuthorityError> {
        self.conn().execute(
            "DELETE FROM federated_credentials WHERE id = ?1 AND app_id = ?2",
            params![id, app_id],
        )?;
        Ok(())
    }

    /// Trusts `issuer`'s keys from a JWKS file, replacing the file it had.
    pub(crate) fn set_trusted_issuer(
        &self,
        issuer: &str,
        jwks_file: &str,
    ) -> Result<(), AuthorityError> {
        self.conn().execute(
            "INSERT INTO trusted_issuers (issuer, jwks_file) VALUES (?1, ?2)
             ON CONFLICT (issuer) DO UPDATE SET jwks_file = excluded.jwks_file",
            params![issuer, jwks_file],
        )?;
        Ok(())
    }

    /// The JWKS file registered for `issuer`, if any.
    pub(crate) fn trusted_issuer_jwks_file(
        &self,
        issuer: &str,
    ) -> Result<Option<String>, AuthorityError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT jwks_file FROM trusted_issuers WHERE issuer = ?1",
                [issuer],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records a used assertion `jti`; a second use before `exp` is a replay.
    pub(crate) fn consume_jti(
        &self,
        client_id: &str,
        jti: &str,
        exp: i64,
    ) -> Result<bool, AuthorityError> {
        let conn = self.conn();
        let at = now();
        conn.execute("DELETE FROM used_jtis WHERE exp < ?1", [at - CLOCK_SKEW])?;
        let inserted = conn.execute(
            "INSERT OR IGNORE INTO used_jtis (client_id, jti, exp) VALUES (?1, ?2, ?3)",
            params![client_id, jti, exp + CLOCK_SKEW],
        )?;
        Ok(inserted == 1)
    }
}
