//! Custom role definitions and role assignments in SQLite (`<data-dir>/rbac.db`).
//!
//! Every write bumps a generation counter (by trigger, so even a hand edit
//! counts); readers in other processes compare it to notice changes.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use entraflow_core::sqlite::{Migration, migrate};
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::assignment::{CONDITION_VERSION, NewAssignment, PrincipalType, RoleAssignment, rfc3339};
use crate::condition::Condition;
use crate::definition::{RoleDefinition, RoleType, builtin_roles};
use crate::error::Error;
use crate::scope::Scope;

/// File name of the store inside the data directory.
pub const DB_FILE: &str = "rbac.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);
CREATE TABLE IF NOT EXISTS role_definitions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    definition TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS role_assignments (
    name TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL,
    principal_type TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    condition TEXT,
    condition_version TEXT,
    expires_at TEXT,
    created_at TEXT NOT NULL,
    description TEXT
);
CREATE INDEX IF NOT EXISTS role_assignments_principal ON role_assignments (principal_id);
CREATE TRIGGER IF NOT EXISTS gen_ai AFTER INSERT ON role_assignments
  BEGIN UPDATE meta SET value = value + 1 WHERE key = 'generation'; END;
CREATE TRIGGER IF NOT EXISTS gen_ad AFTER DELETE ON role_assignments
  BEGIN UPDATE meta SET value = value + 1 WHERE key = 'generation'; END;
CREATE TRIGGER IF NOT EXISTS gen_au AFTER UPDATE ON role_assignments
  BEGIN UPDATE meta SET value = value + 1 WHERE key = 'generation'; END;
CREATE TRIGGER IF NOT EXISTS gen_di AFTER INSERT ON role_definitions
  BEGIN UPDATE meta SET value = value + 1 WHERE key = 'generation'; END;
CREATE TRIGGER IF NOT EXISTS gen_dd AFTER DELETE ON role_definitions
  BEGIN UPDATE meta SET value = value + 1 WHERE key = 'generation'; END;
CREATE TRIGGER IF NOT EXISTS gen_du AFTER UPDATE ON role_definitions
  BEGIN UPDATE meta SET value = value + 1 WHERE key = 'generation'; END;
";

/// `rbac.db`'s schema, one step per version (`PRAGMA user_version`, as `gate.db`
/// does). A database written before versions existed has exactly step 1's
/// tables, which step 1 leaves as they are. Append steps; never edit one.
const MIGRATIONS: [Migration; 1] = [Migration::sql(SCHEMA)];

/// Which assignments `list_assignments` returns.
#[derive(Debug, Clone, Default)]
pub struct AssignmentFilter {
    /// Only this principal's assignments.
    pub principal_id: Option<String>,
    /// Only assignments exactly at this scope...
    pub scope: Option<Scope>,
    /// ...or, when set, also those at scopes above it (that apply there).
    pub include_inherited: bool,
}

/// Everything the authorizer needs, read in one transaction.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) generation: i64,
    pub(crate) definitions: Vec<RoleDefinition>,
    pub(crate) assignments: Vec<RoleAssignment>,
}

/// The role store. Safe to share between threads.
pub struct RbacStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for RbacStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbacStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RbacStore {
    /// Opens (creating if needed) `<data_dir>/rbac.db`.
    pub fn open(data_dir: &Path) -> Result<Self, Error> {
        entraflow_core::fsutil::create_private_dir(data_dir).map_err(|source| Error::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        Self::open_path(&data_dir.join(DB_FILE))
    }

    /// Opens (creating if needed) the store at `path`.
    pub fn open_path(path: &Path) -> Result<Self, Error> {
        let storage = |source| Error::Storage {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(storage)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(storage)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(storage)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(storage)?;
        migrate(&mut conn, &MIGRATIONS).map_err(|detail| Error::Schema {
            path: path.to_owned(),
            detail,
        })?;
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (statements
        // are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn storage(&self, source: rusqlite::Error) -> Error {
        Error::Storage {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    /// A number that changes whenever any assignment or custom role changes, in
    /// this process or another.
    pub fn generation(&self) -> Result<i64, Error> {
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.storage(e))
    }

    /// Built-in roles followed by custom roles (sorted by name).
    pub fn definitions(&self) -> Result<Vec<RoleDefinition>, Error> {
        let conn = self.conn();
        self.definitions_in(&conn)
    }

    fn definitions_in(&self, conn: &Connection) -> Result<Vec<RoleDefinition>, Error> {
        let mut defs = builtin_roles();
        let mut stmt = conn
            .prepare("SELECT id, definition FROM role_definitions ORDER BY name")
            .map_err(|e| self.storage(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.storage(e))?;
        for row in rows {
            let (id, json) = row.map_err(|e| self.storage(e))?;
            let def = RoleDefinition::from_json(&json)
                .map_err(|e| self.corrupt(format!("role definition {id}: {e}")))?;
            defs.push(def);
        }
        Ok(defs)
    }

    /// Finds a role by display name (case-insensitive), GUID, or ARM id.
    pub fn find_definition(&self, reference: &str) -> Result<RoleDefinition, Error> {
        let defs = self.definitions()?;
        find_in(&defs, reference)
            .cloned()
            .ok_or(Error::UnknownRole {
                reference: reference.to_owned(),
            })
    }

    /// Stores a custom role. Names and ids are unique, built-ins included.
    pub fn create_definition(&self, mut def: RoleDefinition) -> Result<RoleDefinition, Error> {
        def.role_type = RoleType::Custom;
        def.check_actions()?;
        let conn = self.conn();
        let clash = self
            .definitions_in(&conn)?
            .into_iter()
            .any(|d| d.id.eq_ignore_ascii_case(&def.id) || d.name.eq_ignore_ascii_case(&def.name));
        if clash {
            return Err(Error::DuplicateRole {
                name: def.name,
                id: def.id,
            });
        }
        conn.execute(
            "INSERT INTO role_definitions (id, name, definition) VALUES (?1, ?2, ?3)",
            params![def.id, def.name, def.to_az_json().to_string()],
        )
        .map_err(|e| self.storage(e))?;
        tracing::info!(role = %def.name, id = %def.id, "custom role created");
        Ok(def)
    }

    /// Replaces the custom role `prior` (as the caller read it, and authorized the
    /// change against) with `def` (ARM's `PUT roleDefinitions/{guid}` on an existing
    /// role). Built-in roles cannot be changed; the new name must not be another
    /// role's; a role changed by someone else since `prior` was read is refused, so
    /// a permission check made against `prior` always covers what is replaced.
    pub fn update_definition(
        &self,
        prior: &RoleDefinition,
        mut def: RoleDefinition,
    ) -> Result<RoleDefinition, Error> {
        def.role_type = RoleType::Custom;
        def.check_actions()?;
        let conn = self.conn();
        let defs = self.definitions_in(&conn)?;
        let existing = defs.iter().find(|d| d.id.eq_ignore_ascii_case(&def.id));
        match existing {
            Some(d) if d.role_type == RoleType::Custom && d != prior => {
                return Err(Error::DefinitionChanged {
                    name: d.name.clone(),
                });
            }
            Some(d) if d.role_type == RoleType::Custom => {}
            Some(d) => {
                return Err(Error::BuiltInRole {
                    name: d.name.clone(),
                });
            }
            None => {
                return Err(Error::UnknownRole {
                    reference: def.id.clone(),
                });
            }
        }
        let clash = defs
            .iter()
            .any(|d| !d.id.eq_ignore_ascii_case(&def.id) && d.name.eq_ignore_ascii_case(&def.name));
        if clash {
            return Err(Error::DuplicateRole {
                name: def.name,
                id: def.id,
            });
        }
        conn.execute(
            "UPDATE role_definitions SET name = ?2, definition = ?3 WHERE id = ?1",
            params![def.id, def.name, def.to_az_json().to_string()],
        )
        .map_err(|e| self.storage(e))?;
        tracing::info!(role = %def.name, id = %def.id, "custom role updated");
        Ok(def)
    }

    /// Validates and stores a role assignment created at `now`.
    pub fn create_assignment(
        &self,
        new: NewAssignment,
        now: OffsetDateTime,
    ) -> Result<RoleAssignment, Error> {
        self.create_assignment_named(&uuid::Uuid::new_v4().to_string(), new, now)
    }

    /// Like [`RbacStore::create_assignment`], under a GUID the caller chose (ARM's
    /// `PUT .../roleAssignments/{guid}`). A GUID already in use is
    /// [`Error::AssignmentExists`].
    pub fn create_assignment_named(
        &self,
        name: &str,
        new: NewAssignment,
        now: OffsetDateTime,
    ) -> Result<RoleAssignment, Error> {
        let name = uuid::Uuid::parse_str(name.trim())
            .map_err(|_| Error::InvalidAssignmentName {
                value: name.to_owned(),
            })?
            .to_string();
        let principal_id = uuid::Uuid::parse_str(new.principal_id.trim())
            .map_err(|_| Error::InvalidPrincipalId {
                value: new.principal_id.clone(),
            })?
            .to_string();
        let scope = Scope::parse(&new.scope)?;
        scope.check_names()?;
        let (condition, condition_version) =
            checked_condition(new.condition, new.condition_version)?;
        if let Some(at) = new.expires_at
            && at <= now
        {
            return Err(Error::ExpiryInPast {
                expires_at: rfc3339(at),
            });
        }
        let role = self.find_definition(&new.role)?;
        if !role.assignable_at(&scope) {
            return Err(Error::NotAssignable {
                role: role.name,
                scope: scope.to_string(),
                assignable: role
                    .assignable_scopes
                    .iter()
                    .map(Scope::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let assignment = RoleAssignment {
            name,
            principal_id,
            principal_type: new.principal_type,
            role_definition_id: role.id.clone(),
            scope,
            condition,
            condition_version,
            expires_at: new.expires_at,
            created_at: now,
            description: new.description,
        };
        let conn = self.conn();
        // Checked under the same lock as the insert, so two creates cannot both pass.
        if let Some(existing) = self.assignments_in(&conn)?.into_iter().find(|a| {
            a.principal_id == assignment.principal_id
                && a.role_definition_id
                    .eq_ignore_ascii_case(&assignment.role_definition_id)
                && a.scope == assignment.scope
                && a.name != assignment.name
        }) {
            return Err(Error::DuplicateAssignment {
                existing: Box::new(existing),
            });
        }
        conn.execute(
            "INSERT INTO role_assignments (name, principal_id, principal_type, role_definition_id,
                   scope, condition, condition_version, expires_at, created_at, description)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                assignment.name,
                assignment.principal_id,
                assignment.principal_type.as_str(),
                assignment.role_definition_id,
                assignment.scope.as_str(),
                assignment.condition,
                assignment.condition_version,
                assignment.expires_at.map(rfc3339),
                rfc3339(assignment.created_at),
                assignment.description,
            ],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Error::AssignmentExists {
                    id: assignment.name.clone(),
                }
            }
            e => self.storage(e),
        })?;
        tracing::info!(
            assignment = %assignment.name,
            principal = %assignment.principal_id,
            role = %role.name,
            scope = %assignment.scope,
            "role assignment created"
        );
        Ok(assignment)
    }

    /// Deletes a custom role (`role definition delete --name`), refused while an
    /// assignment uses it: ARM refuses too, and an assignment whose role is gone
    /// would grant nothing without saying why.
    pub fn delete_definition(&self, reference: &str) -> Result<RoleDefinition, Error> {
        let conn = self.conn();
        let defs = self.definitions_in(&conn)?;
        let def = find_in(&defs, reference)
            .cloned()
            .ok_or_else(|| Error::UnknownRole {
                reference: reference.to_owned(),
            })?;
        if def.role_type != RoleType::Custom {
            return Err(Error::BuiltInRole { name: def.name });
        }
        let users: Vec<String> = self
            .assignments_in(&conn)?
            .into_iter()
            .filter(|a| a.role_definition_id.eq_ignore_ascii_case(&def.id))
            .map(|a| a.name)
            .collect();
        if !users.is_empty() {
            return Err(Error::RoleInUse {
                name: def.name,
                count: users.len(),
                ids: users.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            });
        }
        conn.execute("DELETE FROM role_definitions WHERE id = ?1", [&def.id])
            .map_err(|e| self.storage(e))?;
        tracing::info!(role = %def.name, id = %def.id, "custom role deleted");
        Ok(def)
    }

    /// Deletes an assignment by ARM id or GUID, returning what was deleted.
    pub fn delete_assignment(&self, id: &str) -> Result<RoleAssignment, Error> {
        let name = id
            .trim()
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let conn = self.conn();
        let found = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM role_assignments WHERE name = ?1"),
                params![name],
                raw_row,
            )
            .optional()
            .map_err(|e| self.storage(e))?;
        let Some(raw) = found else {
            return Err(Error::AssignmentNotFound { id: id.to_owned() });
        };
        let assignment = self.parse_row(raw)?;
        // An ARM id must also name the right scope.
        if id.contains('/') && !assignment.id().eq_ignore_ascii_case(id.trim()) {
            return Err(Error::AssignmentNotFound { id: id.to_owned() });
        }
        conn.execute(
            "DELETE FROM role_assignments WHERE name = ?1",
            params![name],
        )
        .map_err(|e| self.storage(e))?;
        tracing::info!(assignment = %assignment.name, principal = %assignment.principal_id, "role assignment deleted");
        Ok(assignment)
    }

    /// ARM's PUT on an existing assignment (`az role assignment update`): the
    /// condition, its version and the description change; who, what role and
    /// where are the assignment itself and stay.
    pub fn update_assignment(
        &self,
        id: &str,
        condition: Option<String>,
        condition_version: Option<String>,
        description: Option<String>,
    ) -> Result<RoleAssignment, Error> {
        let (condition, condition_version) = checked_condition(condition, condition_version)?;
        let current = self
            .assignments()?
            .into_iter()
            .find(|a| {
                a.name.eq_ignore_ascii_case(id.trim()) || a.id().eq_ignore_ascii_case(id.trim())
            })
            .ok_or_else(|| Error::AssignmentNotFound { id: id.to_owned() })?;
        self.conn()
            .execute(
                "UPDATE role_assignments SET condition = ?2, condition_version = ?3, description = ?4
                 WHERE name = ?1",
                params![current.name, condition, condition_version, description],
            )
            .map_err(|e| self.storage(e))?;
        tracing::info!(assignment = %current.name, "role assignment updated");
        Ok(RoleAssignment {
            condition,
            condition_version,
            description,
            ..current
        })
    }

    /// All assignments, oldest first.
    pub fn assignments(&self) -> Result<Vec<RoleAssignment>, Error> {
        let conn = self.conn();
        self.assignments_in(&conn)
    }

    fn assignments_in(&self, conn: &Connection) -> Result<Vec<RoleAssignment>, Error> {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM role_assignments ORDER BY created_at, name"
            ))
            .map_err(|e| self.storage(e))?;
        let rows = stmt.query_map([], raw_row).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.parse_row(row.map_err(|e| self.storage(e))?)?);
        }
        Ok(out)
    }

    /// Assignments matching `filter`.
    pub fn list_assignments(
        &self,
        filter: &AssignmentFilter,
    ) -> Result<Vec<RoleAssignment>, Error> {
        let principal = filter
            .principal_id
            .as_deref()
            .map(|p| p.trim().to_ascii_lowercase());
        Ok(self
            .assignments()?
            .into_iter()
            .filter(|a| principal.as_deref().is_none_or(|p| a.principal_id == p))
            .filter(|a| match &filter.scope {
                None => true,
                Some(s) if filter.include_inherited => a.scope.contains(s),
                Some(s) => a.scope == *s,
            })
            .collect())
    }

    pub(crate) fn snapshot(&self) -> Result<Snapshot, Error> {
        let mut conn = self.conn();
        // One read transaction, so the generation matches the rows read.
        let tx = conn.transaction().map_err(|e| self.storage(e))?;
        let generation = tx
            .query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.storage(e))?;
        let definitions = self.definitions_in(&tx)?;
        let assignments = self.assignments_in(&tx)?;
        tx.finish().map_err(|e| self.storage(e))?;
        Ok(Snapshot {
            generation,
            definitions,
            assignments,
        })
    }

    fn parse_row(&self, raw: RawRow) -> Result<RoleAssignment, Error> {
        let bad = |what: &str| self.corrupt(format!("role assignment {}: {what}", raw.name));
        let time = |s: &str| OffsetDateTime::parse(s, &Rfc3339);
        Ok(RoleAssignment {
            principal_type: PrincipalType::parse(&raw.principal_type)
                .ok_or_else(|| bad("unknown principal type"))?,
            scope: Scope::parse(&raw.scope).map_err(|e| bad(&e.to_string()))?,
            expires_at: raw
                .expires_at
                .as_deref()
                .map(time)
                .transpose()
                .map_err(|_| bad("bad expires_at"))?,
            created_at: time(&raw.created_at).map_err(|_| bad("bad created_at"))?,
            name: raw.name,
            principal_id: raw.principal_id,
            role_definition_id: raw.role_definition_id,
            condition: raw.condition,
            condition_version: raw.condition_version,
            description: raw.description,
        })
    }
}

/// Looks a role up by display name, GUID or ARM id.
pub(crate) fn find_in<'a>(
    defs: &'a [RoleDefinition],
    reference: &str,
) -> Option<&'a RoleDefinition> {
    let r = reference.trim();
    let guid = r.rsplit('/').next().unwrap_or(r);
    defs.iter()
        .find(|d| d.id.eq_ignore_ascii_case(guid))
        .or_else(|| defs.iter().find(|d| d.name.eq_ignore_ascii_case(r)))
}

const COLUMNS: &str = "name, principal_id, principal_type, role_definition_id, scope, condition, condition_version, expires_at, created_at, description";

struct RawRow {
    name: String,
    principal_id: String,
    principal_type: String,
    role_definition_id: String,
    scope: String,
    condition: Option<String>,
    condition_version: Option<String>,
    expires_at: Option<String>,
    created_at: String,
    description: Option<String>,
}

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        name: r.get(0)?,
        principal_id: r.get(1)?,
        principal_type: r.get(2)?,
        role_definition_id: r.get(3)?,
        scope: r.get(4)?,
        condition: r.get(5)?,
        condition_version: r.get(6)?,
        expires_at: r.get(7)?,
        created_at: r.get(8)?,
        description: r.get(9)?,
    })
}

/// A condition as stored: parsed (Azure's grammar), at version 2.0, the only
/// one Azure accepts; a version without a condition is refused.
fn checked_condition(
    condition: Option<String>,
    version: Option<String>,
) -> Result<(Option<String>, Option<String>), Error> {
    match (condition, version) {
        (None, None) => Ok((None, None)),
        (None, Some(_)) => Err(Error::VersionWithoutCondition),
        (Some(c), version) => {
            let version = version.unwrap_or_else(|| CONDITION_VERSION.to_owned());
            if version.trim() != CONDITION_VERSION {
                return Err(Error::UnsupportedConditionVersion { version });
            }
            Condition::parse(&c)?;
            Ok((Some(c), Some(CONDITION_VERSION.to_owned())))
        }
    }
}
