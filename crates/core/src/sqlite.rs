//! Versioned SQLite schemas, the one way every entraflow database (authority,
//! roles, gate, audit) upgrades: `PRAGMA user_version` counts the steps applied,
//! each step runs in its own transaction, and a database from a newer entraflow
//! is refused rather than guessed at.

use rusqlite::{Connection, Transaction};

/// One schema step: SQL, then an optional fix-up in the same transaction (for
/// databases written before versions existed). Append steps; never edit one.
#[derive(Clone, Copy)]
pub struct Migration {
    /// The step's statements.
    pub sql: &'static str,
    /// Run after `sql`, before the version is bumped.
    pub fixup: Option<fn(&Transaction<'_>) -> rusqlite::Result<()>>,
}

impl Migration {
    /// A step that is only SQL.
    pub const fn sql(sql: &'static str) -> Migration {
        Migration { sql, fixup: None }
    }
}

/// Brings `conn` to the last of `steps`; the error says why not, for the caller
/// to name its file.
pub fn migrate(conn: &mut Connection, steps: &[Migration]) -> Result<(), String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > steps.len() {
        return Err(format!(
            "it has schema version {version}, written by a newer entraflow (this one knows {}); use that version or move the file aside",
            steps.len()
        ));
    }
    for (step, migration) in steps.iter().enumerate().skip(version) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(migration.sql)
            .and_then(|()| migration.fixup.map_or(Ok(()), |fix| fix(&tx)))
            .and_then(|()| tx.pragma_update(None, "user_version", step as i64 + 1))
            .and_then(|()| tx.commit())
            .map_err(|e| format!("migrating to schema version {}: {e}", step + 1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: [Migration; 2] = [
        Migration::sql("CREATE TABLE t (a INTEGER);"),
        Migration::sql("ALTER TABLE t ADD COLUMN b TEXT;"),
    ];

    #[test]
    fn steps_apply_once_in_order_and_a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &STEPS[..1]).unwrap();
        conn.execute("INSERT INTO t (a) VALUES (1)", []).unwrap();
        migrate(&mut conn, &STEPS).unwrap();
        migrate(&mut conn, &STEPS).unwrap();
        let b: Option<String> = conn.query_row("SELECT b FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(b, None);
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
        let err = migrate(&mut conn, &STEPS[..1]).unwrap_err();
        assert!(
            err.contains("schema version 2") && err.contains("newer"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_step_leaves_the_version_where_it_was() {
        let mut conn = Connection::open_in_memory().unwrap();
        let broken = [
            STEPS[0],
            Migration::sql("ALTER TABLE missing ADD COLUMN c;"),
        ];
        let err = migrate(&mut conn, &broken).unwrap_err();
        assert!(err.contains("migrating to schema version 2"), "{err}");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
    }
}
