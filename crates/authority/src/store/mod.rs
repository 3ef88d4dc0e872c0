//! The tenant directory in SQLite: `<data-dir>/authority.db` (0600, WAL), and
//! the only place the authority's SQL lives. The token logic and the admin
//! commands call the typed methods of this module's files, one per table family;
//! the connection is private to it, so no other module can run a statement.
//! What can only be checked inside a write (a name already taken, a limit
//! reached) is refused here; every other rule is the caller's, before it writes.
//!
//! Admin commands open the same file directly; file permissions are the admin
//! authentication. The server therefore reads directory state per request with
//! indexed lookups, so a CLI change takes effect on the next request.

mod apps;
mod authorization_codes;
mod credentials;
mod device_codes;
mod keys;
mod managed_identities;
mod principals;
mod refresh_tokens;
mod schema;
mod tenants;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use entraflow_core::sqlite::migrate;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::AuthorityError;

pub(crate) use apps::{ApplicationRecord, TenantApp};
pub(crate) use authorization_codes::{AuthorizationCode, CodeRecord};
pub(crate) use credentials::{CertificateRecord, ClientSecretRecord};
pub(crate) use device_codes::{DeviceCodeRecord, DevicePoll};
pub(crate) use keys::NewSigningKey;
pub use managed_identities::ManagedIdentityInfo;
pub(crate) use managed_identities::{HostIdentity, ManagedIdentityRecord};
pub(crate) use principals::UserRecord;
pub(crate) use refresh_tokens::{RefreshTokenRecord, SpentRefreshToken};
pub use tenants::Tenant;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "authority.db";

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 3339 for a Unix time, as `az` prints dates.
pub(crate) fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The SQLite-backed directory. One connection behind a mutex: every query is an
/// indexed lookup of microseconds, so contention costs less than a pool would.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Admin changes made through this handle, not yet audited.
    pub(crate) admin_changes: Mutex<Vec<crate::admin_audit::AdminChange>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/authority.db`, creating the data
    /// directory 0700, the database 0600, and the default tenant.
    pub fn open(data_dir: &Path) -> Result<Store, AuthorityError> {
        entraflow_core::fsutil::create_private_dir(data_dir).map_err(|source| {
            AuthorityError::Io {
                what: "creating data directory",
                path: data_dir.to_owned(),
                source,
            }
        })?;
        let path = data_dir.join(DB_FILE);
        let db_err = |source| AuthorityError::Database {
            path: path.clone(),
            source,
        };
        // Create the file owner-only before SQLite opens it (SQLite gives its WAL
        // and shared-memory files the database file's permissions).
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(|source| AuthorityError::Io {
                    what: "creating the authority database",
                    path: path.clone(),
                    source,
                })?;
        }
        let mut conn = Connection::open(&path).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        migrate(&mut conn, &schema::MIGRATIONS).map_err(|reason| AuthorityError::Schema {
            path: path.clone(),
            reason,
        })?;
        let store = Store {
            path,
            conn: Mutex::new(conn),
            admin_changes: Mutex::default(),
        };
        store.ensure_default_tenant()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection: private to this module and its files, which is what keeps
    /// SQL out of the rest of the crate.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in one transaction, committed only if `f` succeeds. It takes the
    /// write lock first (`BEGIN IMMEDIATE`, waiting up to the busy timeout): a
    /// transaction that read before writing would otherwise fail at its first
    /// write, "database is locked", whenever another process wrote in between.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, AuthorityError>,
    ) -> Result<T, AuthorityError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unversioned_database_is_migrated_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        {
            // authority.db as entraflow wrote it before keys were published ahead
            // of use and before refresh tokens knew their client kind.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, pkcs8 BLOB NOT NULL, cert_der BLOB NOT NULL,
                   created_at INTEGER NOT NULL, retires_at INTEGER);
                 CREATE TABLE refresh_tokens (sha256 BLOB PRIMARY KEY, tenant_id TEXT NOT NULL,
                   client_id TEXT NOT NULL, user_id TEXT NOT NULL, scope TEXT NOT NULL, expires_at INTEGER NOT NULL);
                 INSERT INTO refresh_tokens VALUES (x'00', 't', 'c', 'u', 's', 1);",
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let conn = store.conn();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, schema::MIGRATIONS.len() as i64);
        let confidential: i64 = conn
            .query_row("SELECT confidential FROM refresh_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            confidential, 0,
            "the old row is kept, with the new column's default"
        );
        conn.execute("UPDATE signing_keys SET activates_at = 1", [])
            .unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        drop(store);
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("schema version 99") && err.contains("newer"),
            "{err}"
        );
    }

    #[test]
    fn default_tenant_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let t1 = Store::open(dir.path()).unwrap().default_tenant().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.default_tenant().unwrap(), t1);
        assert_eq!(store.find_tenant(&t1.domain).unwrap(), Some(t1.clone()));
        assert_eq!(
            store
                .find_tenant(&t1.id.to_uppercase())
                .unwrap()
                .map(|t| t.id),
            Some(t1.id)
        );
        assert_eq!(store.find_tenant("nope").unwrap(), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
