//! The tenant directory in SQLite: `<data-dir>/authority.db` (0600, WAL).
//!
//! Admin commands open the same file directly; file permissions are the admin
//! authentication. The server therefore reads directory state per request with
//! indexed lookups, so a CLI change takes effect on the next request.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use entraflow_core::sqlite::{Migration, migrate};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::AuthorityError;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "authority.db";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tenants (
  id TEXT PRIMARY KEY, display_name TEXT NOT NULL, domain TEXT NOT NULL UNIQUE COLLATE NOCASE,
  lifetime_min INTEGER NOT NULL, lifetime_max INTEGER NOT NULL, is_default INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS applications (
  object_id TEXT PRIMARY KEY, app_id TEXT NOT NULL UNIQUE, tenant_id TEXT NOT NULL,
  display_name TEXT NOT NULL, token_version INTEGER NOT NULL, public_client INTEGER NOT NULL,
  group_claims TEXT, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identifier_uris (
  tenant_id TEXT NOT NULL, uri TEXT NOT NULL COLLATE NOCASE, app_id TEXT NOT NULL,
  PRIMARY KEY (tenant_id, uri));
CREATE TABLE IF NOT EXISTS app_roles (
  id TEXT PRIMARY KEY, app_id TEXT NOT NULL, value TEXT NOT NULL, display_name TEXT NOT NULL,
  UNIQUE (app_id, value));
CREATE TABLE IF NOT EXISTS service_principals (
  object_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, tenant_id TEXT NOT NULL,
  display_name TEXT NOT NULL, kind TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1,
  UNIQUE (tenant_id, app_id));
CREATE TABLE IF NOT EXISTS client_secrets (
  id TEXT PRIMARY KEY, app_id TEXT NOT NULL, sha256 BLOB NOT NULL, hint TEXT NOT NULL,
  end_at INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS client_secrets_app ON client_secrets (app_id);
CREATE TABLE IF NOT EXISTS certificates (
  id TEXT PRIMARY KEY, app_id TEXT NOT NULL, der BLOB NOT NULL, sha1 BLOB NOT NULL,
  sha256 BLOB NOT NULL, end_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS certificates_app ON certificates (app_id);
CREATE TABLE IF NOT EXISTS federated_credentials (
  id TEXT PRIMARY KEY, app_id TEXT NOT NULL, name TEXT NOT NULL, issuer TEXT NOT NULL,
  subject TEXT NOT NULL, audiences TEXT NOT NULL, UNIQUE (app_id, name));
CREATE TABLE IF NOT EXISTS trusted_issuers (issuer TEXT PRIMARY KEY, jwks_file TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
  object_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, upn TEXT NOT NULL UNIQUE COLLATE NOCASE,
  display_name TEXT NOT NULL, password_hash TEXT);
CREATE TABLE IF NOT EXISTS groups (
  object_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, display_name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS group_members (
  group_id TEXT NOT NULL, member_id TEXT NOT NULL, PRIMARY KEY (group_id, member_id));
CREATE INDEX IF NOT EXISTS group_members_member ON group_members (member_id);
CREATE TABLE IF NOT EXISTS app_role_assignments (
  id TEXT PRIMARY KEY, principal_id TEXT NOT NULL, resource_app_id TEXT NOT NULL,
  role_id TEXT NOT NULL, UNIQUE (principal_id, resource_app_id, role_id));
CREATE TABLE IF NOT EXISTS managed_identities (
  principal_id TEXT PRIMARY KEY, client_id TEXT NOT NULL UNIQUE, tenant_id TEXT NOT NULL,
  name TEXT NOT NULL, resource_id TEXT NOT NULL COLLATE NOCASE, host TEXT NOT NULL,
  system_assigned INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS managed_identities_host ON managed_identities (host);
CREATE TABLE IF NOT EXISTS signing_keys (
  kid TEXT PRIMARY KEY, pkcs8 BLOB NOT NULL, cert_der BLOB NOT NULL, created_at INTEGER NOT NULL,
  retires_at INTEGER, activates_at INTEGER);
CREATE TABLE IF NOT EXISTS used_jtis (
  client_id TEXT NOT NULL, jti TEXT NOT NULL, exp INTEGER NOT NULL, PRIMARY KEY (client_id, jti));
CREATE TABLE IF NOT EXISTS device_codes (
  device_code_sha256 BLOB PRIMARY KEY, user_code TEXT NOT NULL UNIQUE, tenant_id TEXT NOT NULL,
  client_id TEXT NOT NULL, scope TEXT NOT NULL, expires_at INTEGER NOT NULL,
  status TEXT NOT NULL, user_id TEXT);
CREATE TABLE IF NOT EXISTS refresh_tokens (
  sha256 BLOB PRIMARY KEY, tenant_id TEXT NOT NULL, client_id TEXT NOT NULL, user_id TEXT NOT NULL,
  scope TEXT NOT NULL, expires_at INTEGER NOT NULL, confidential INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS redirect_uris (
  app_id TEXT NOT NULL, platform TEXT NOT NULL, uri TEXT NOT NULL, PRIMARY KEY (app_id, platform, uri));
CREATE TABLE IF NOT EXISTS authorization_codes (
  sha256 BLOB PRIMARY KEY, tenant_id TEXT NOT NULL, client_id TEXT NOT NULL, user_id TEXT NOT NULL,
  redirect_uri TEXT NOT NULL, public_client INTEGER NOT NULL, scope TEXT NOT NULL, nonce TEXT,
  code_challenge TEXT, auth_time INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  redeemed INTEGER NOT NULL DEFAULT 0);
"#;

/// `authority.db`'s schema, one step per version (`PRAGMA user_version`, as
/// `gate.db` does): a database is brought forward step by step on open, and
/// one from a newer entraflow is refused. Append steps; never edit one.
const MIGRATIONS: [Migration; 1] = [Migration {
    sql: SCHEMA,
    fixup: Some(add_unversioned_columns),
}];

/// Columns added before the schema was versioned: a version-0 database may
/// lack them (its tables predate them), so the first step adds what is missing.
const UNVERSIONED_COLUMNS: [(&str, &str, &str); 2] = [
    ("signing_keys", "activates_at", "INTEGER"),
    (
        "refresh_tokens",
        "confidential",
        "INTEGER NOT NULL DEFAULT 0",
    ),
];

fn add_unversioned_columns(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    for (table, column, decl) in UNVERSIONED_COLUMNS {
        let has: bool = tx
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"
            ))?
            .exists([])?;
        if !has {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    Ok(())
}

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

/// A tenant and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Tenant id (GUID).
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// The verified domain (`<name>.onmicrosoft.com`-like).
    pub domain: String,
    /// Lower bound of the randomized access-token lifetime, seconds.
    pub lifetime_min: i64,
    /// Upper bound, seconds.
    pub lifetime_max: i64,
}

/// What a redeemed refresh token was issued for.
#[derive(Debug)]
pub(crate) struct SpentRefreshToken {
    pub(crate) client_id: String,
    pub(crate) user_id: String,
    pub(crate) scope: String,
    pub(crate) expires_at: i64,
    pub(crate) confidential: bool,
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
        migrate(&mut conn, &MIGRATIONS).map_err(|reason| AuthorityError::Schema {
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

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ensure_default_tenant(&self) -> Result<(), AuthorityError> {
        let conn = self.conn();
        let exists: Option<String> = conn
            .query_row("SELECT id FROM tenants WHERE is_default = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        let id = match exists {
            Some(id) => id,
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                let domain = format!("entraflow{}.onmicrosoft.com", &id[..8]);
                conn.execute(
                    "INSERT INTO tenants (id, display_name, domain, lifetime_min, lifetime_max, is_default)
                     VALUES (?1, 'entraflow local', ?2, 3600, 5400, 1)",
                    params![id, domain],
                )?;
                id
            }
        };
        // Like Entra, every tenant knows the Azure CLI's public client, so a person
        // can `entraflow login` (device code) or `az login` (authorization code on a
        // loopback redirect) before registering any application.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        conn.execute(
            "INSERT OR IGNORE INTO applications (object_id, app_id, tenant_id, display_name,
             token_version, public_client, group_claims, created_at)
             VALUES (?1, ?2, ?3, 'Microsoft Azure CLI', 1, 1, NULL, ?4)",
            params![
                uuid::Uuid::new_v4().to_string(),
                entraflow_core::AZURE_CLI_CLIENT_ID,
                id,
                now
            ],
        )?;
        conn.execute(
            "INSERT OR IGNORE INTO service_principals (object_id, app_id, tenant_id, display_name, kind)
             VALUES (?1, ?2, ?3, 'Microsoft Azure CLI', 'Application')",
            params![uuid::Uuid::new_v4().to_string(), entraflow_core::AZURE_CLI_CLIENT_ID, id],
        )?;
        conn.execute(
            "INSERT OR IGNORE INTO redirect_uris (app_id, platform, uri) VALUES (?1, ?2, 'http://localhost')",
            params![
                entraflow_core::AZURE_CLI_CLIENT_ID,
                crate::redirect_uri::Platform::PublicClient.as_str()
            ],
        )?;
        Ok(())
    }

    /// The default tenant (created on first open).
    pub fn default_tenant(&self) -> Result<Tenant, AuthorityError> {
        self.conn()
            .query_row(
                "SELECT id, display_name, domain, lifetime_min, lifetime_max FROM tenants WHERE is_default = 1",
                [],
                tenant_row,
            )
            .map_err(Into::into)
    }

    /// A tenant by id or by domain.
    pub fn find_tenant(&self, id_or_domain: &str) -> Result<Option<Tenant>, AuthorityError> {
        self.conn()
            .query_row(
                "SELECT id, display_name, domain, lifetime_min, lifetime_max FROM tenants
                 WHERE id = ?1 COLLATE NOCASE OR domain = ?1",
                [id_or_domain],
                tenant_row,
            )
            .optional()
            .map_err(Into::into)
    }

    /// A value from the `meta` table.
    pub(crate) fn meta(&self, key: &str) -> Result<Option<String>, AuthorityError> {
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(Into::into)
    }
}

fn tenant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        display_name: r.get(1)?,
        domain: r.get(2)?,
        lifetime_min: r.get(3)?,
        lifetime_max: r.get(4)?,
    })
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
        assert_eq!(version, MIGRATIONS.len() as i64);
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
