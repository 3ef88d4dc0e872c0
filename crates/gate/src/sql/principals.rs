//! Entra principals mapped to PostgreSQL roles, in Azure's shape
//! (`pgaadauth_create_principal_with_oid`): a role named after the principal
//! (UPN, display name of an app or managed identity, or group name), bound to its
//! object id. The mapping lives in `<data-dir>/sql.db` (owner-only), with the
//! role's login password, which only the gate knows: the gate signs in to the
//! backend *as* the mapped role, so the session user is that role and `RESET
//! ROLE` leads nowhere. The backend role also gets a comment in the shape of
//! Azure's security label (`aadauth,oid=<oid>,type=<type>`) so a DBA sees the
//! mapping in `\du+`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::error::SqlGateError;

/// The mapping database in the data directory.
pub const SQL_DB_FILE: &str = "sql.db";

/// PostgreSQL cuts identifiers at 63 bytes (`NAMEDATALEN - 1`); a longer name would
/// silently become another role.
const MAX_ROLE_NAME_BYTES: usize = 63;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS principals (
    name TEXT PRIMARY KEY,
    oid TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('user', 'group', 'service')),
    password TEXT NOT NULL,
    created_at TEXT NOT NULL
);";

/// What kind of Entra principal a role stands for (Azure's `objectType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalType {
    /// A person, signing in with their UPN.
    User,
    /// A group: members sign in with the group's name and their own token.
    Group,
    /// A service principal or managed identity, by display name.
    Service,
}

impl PrincipalType {
    /// `user`, `group` or `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "user",
            PrincipalType::Group => "group",
            PrincipalType::Service => "service",
        }
    }
}

impl std::str::FromStr for PrincipalType {
    type Err = SqlGateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(PrincipalType::User),
            "group" => Ok(PrincipalType::Group),
            "service" => Ok(PrincipalType::Service),
            other => Err(SqlGateError::Principal(format!(
                "unknown principal type '{other}'; use user, group or service"
            ))),
        }
    }
}

/// One mapping (without its password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedPrincipal {
    /// The role name, which is also the user name clients sign in with.
    pub name: String,
    /// The Entra object id the role is bound to.
    pub oid: String,
    /// What kind of principal it is.
    pub principal_type: PrincipalType,
}

/// The mapping database.
pub struct PrincipalStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for PrincipalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PrincipalStore {
    /// Opens (or creates, owner-only) `<data_dir>/sql.db`.
    pub fn open(data_dir: &Path) -> Result<Self, SqlGateError> {
        entraflow_core::fsutil::create_private_dir(data_dir).map_err(|source| {
            SqlGateError::Io {
                path: data_dir.to_owned(),
                source,
            }
        })?;
        let path = data_dir.join(SQL_DB_FILE);
        // Owner-only before SQLite opens it: it holds the roles' passwords.
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(|source| SqlGateError::Io {
                    path: path.clone(),
                    source,
                })?;
        }
        let db = |source| SqlGateError::Database {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(db)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
        })
    }

    fn db_err(&self) -> impl Fn(rusqlite::Error) -> SqlGateError + '_ {
        |source| SqlGateError::Database {
            path: self.path.clone(),
            source,
        }
    }

    /// The mapping for user name `name` (exact, case-sensitive, as Azure matches).
    pub fn lookup(&self, name: &str) -> Result<Option<MappedPrincipal>, SqlGateError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT name, oid, type FROM principals WHERE name = ?1",
            [name],
            row_to_principal,
        )
        .optional()
        .map_err(self.db_err())
    }

    /// Every mapping, by name.
    pub fn list(&self) -> Result<Vec<MappedPrincipal>, SqlGateError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn
            .prepare("SELECT name, oid, type FROM principals ORDER BY name")
            .map_err(self.db_err())?;
        let rows = stmt
            .query_map([], row_to_principal)
            .map_err(self.db_err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db_err())?;
        Ok(rows)
    }

    /// The login password of a mapped role.
    pub(crate) fn password(&self, name: &str) -> Result<Option<String>, SqlGateError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT password FROM principals WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.db_err())
    }

    fn upsert(&self, p: &MappedPrincipal, password: &str) -> Result<(), SqlGateError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute(
            "INSERT INTO principals (name, oid, type, password, created_at)
             VALUES (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
             ON CONFLICT (name) DO UPDATE SET oid = ?2, type = ?3, password = ?4",
            params![p.name, p.oid, p.principal_type.as_str(), password],
        )
        .map_err(self.db_err())?;
        Ok(())
    }

    /// Creates (or takes over) the role `principal.name` on the backend reached with
    /// `admin_url` (a superuser or CREATEROLE login), gives it a login password only
    /// the gate knows, and records the mapping. A superuser role is refused: a
    /// token must never sign anyone in as one.
    pub async fn create(
        &self,
        admin_url: &str,
        principal: &MappedPrincipal,
    ) -> Result<(), SqlGateError> {
        validate(principal)?;
        let backend = admin_url
            .split('@')
            .next_back()
            .unwrap_or_default()
            .to_owned();
        let fail = |message: String| SqlGateError::Backend {
            backend: backend.clone(),
            message,
        };
        let (client, connection) = entraflow_tls::postgres::connect(admin_url)
            .await
            .map_err(|e| fail(format!("cannot connect as the admin login: {e}")))?;
        let driver = tokio::spawn(connection);
        let existing = client
            .query_opt(
                "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
                &[&principal.name],
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        if existing.as_ref().is_some_and(|r| r.get::<_, bool>(0)) {
            return Err(SqlGateError::Principal(format!(
                "role '{}' is a superuser; map Entra principals to ordinary roles and GRANT them what they need",
                principal.name
            )));
        }
        let password = random_password();
        // A SCRAM verifier: the backend never sees the password itself.
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let role = quote_ident(&principal.name);
        let verb = if existing.is_some() {
            "ALTER"
        } else {
            "CREATE"
        };
        let label = format!(
            "aadauth,oid={},type={}",
            principal.oid,
            principal.principal_type.as_str()
        );
        client
            .batch_execute(&format!(
                "{verb} ROLE {role} WITH LOGIN NOSUPERUSER NOREPLICATION NOBYPASSRLS PASSWORD '{verifier}'; COMMENT ON ROLE {role} IS '{label}'"
            ))
            .await
            .map_err(|e| fail(e.to_string()))?;
        drop(client);
        let _ = driver.await;
        self.upsert(principal, &password)
    }
}

fn row_to_principal(r: &rusqlite::Row<'_>) -> rusqlite::Result<MappedPrincipal> {
    let kind: String = r.get(2)?;
    Ok(MappedPrincipal {
        name: r.get(0)?,
        oid: r.get(1)?,
        principal_type: kind.parse().unwrap_or(PrincipalType::User),
    })
}

/// Names PostgreSQL keeps whole, and object ids that are GUIDs (they go into the
/// role's comment).
fn validate(p: &MappedPrincipal) -> Result<(), SqlGateError> {
    if p.name.is_empty() || p.name.len() > MAX_ROLE_NAME_BYTES || p.name.contains('\0') {
        return Err(SqlGateError::Principal(format!(
            "'{}' cannot be a PostgreSQL role name: it must be 1 to {MAX_ROLE_NAME_BYTES} bytes",
            p.name
        )));
    }
    if uuid::Uuid::parse_str(&p.oid).is_err() {
        return Err(SqlGateError::Principal(format!(
            "'{}' is not an Entra object id (a GUID); find it with `entraflow ad sp show` or `entraflow ad user show`",
            p.oid
        )));
    }
    Ok(())
}

/// `"name"`, with inner quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn random_password() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_are_looked_up_by_exact_name_and_the_file_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = PrincipalStore::open(dir.path()).unwrap();
        let p = MappedPrincipal {
            name: "Alice@contoso.com".into(),
            oid: "6b9e4c1e-0d3b-4c43-9a55-0d7b8a0e2f11".into(),
            principal_type: PrincipalType::User,
        };
        store.upsert(&p, "pw").unwrap();
        assert_eq!(store.lookup("Alice@contoso.com").unwrap(), Some(p.clone()));
        assert_eq!(store.lookup("alice@contoso.com").unwrap(), None);
        assert_eq!(
            store.password("Alice@contoso.com").unwrap().as_deref(),
            Some("pw")
        );
        assert_eq!(store.list().unwrap(), vec![p]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SQL_DB_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "sql.db holds passwords: {mode:o}");
        }
    }

    #[test]
    fn names_postgres_would_cut_and_non_guid_oids_are_refused() {
        let mut p = MappedPrincipal {
            name: "x".repeat(64),
            oid: "6b9e4c1e-0d3b-4c43-9a55-0d7b8a0e2f11".into(),
            principal_type: PrincipalType::Service,
        };
        assert!(
            validate(&p)
                .unwrap_err()
                .to_string()
                .contains("1 to 63 bytes")
        );
        p.name = "svc".into();
        p.oid = "x'; DROP ROLE postgres; --".into();
        assert!(
            validate(&p)
                .unwrap_err()
                .to_string()
                .contains("not an Entra object id")
        );
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
