//! Group membership, resolved by the gate as Azure Storage does: Entra puts no
//! `groups` claim into Storage tokens (and past 200 groups it sends an overage
//! marker instead of the list), so a role assigned to a group reaches its members
//! only if the resource server looks membership up itself.
//!
//! The source is the local directory the authority keeps in the shared data
//! directory (`authority.db`, read-only), transitive over nested groups. A
//! principal's groups are cached for at most `staleness`: adding or removing a
//! member takes effect within that bound. When there is no local directory (a
//! gate trusting real Entra ID), only the token's own `groups` claim counts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entraflow_rbac::Principal;
use rusqlite::{Connection, OpenFlags};

/// How stale a principal's groups may be unless configured otherwise.
pub const DEFAULT_STALENESS: Duration = Duration::from_secs(30);

/// The authority's database in a data directory (`entraflow_authority::DB_FILE`).
const DIRECTORY_FILE: &str = "authority.db";
/// Cached principals at most; beyond it the cache starts again (each entry is
/// cheap to look up again).
const MAX_CACHED: usize = 100_000;

/// Every group `?1` is a member of, directly or through nested groups. The table
/// is the authority's (`group_members(group_id, member_id)`).
const GROUPS_OF: &str = "WITH RECURSIVE g(id) AS (
    SELECT group_id FROM group_members WHERE member_id = ?1
    UNION SELECT m.group_id FROM group_members m JOIN g ON m.member_id = g.id)
  SELECT id FROM g";

/// A principal's groups and when they were looked up.
type Cached = (Instant, Arc<[String]>);

/// Cached, bounded-staleness lookups of a principal's groups.
pub struct GroupDirectory {
    conn: Mutex<Connection>,
    staleness: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

impl GroupDirectory {
    /// The directory of `data_dir`, if the authority keeps one there.
    pub fn open(data_dir: &Path, staleness: Duration) -> Option<Self> {
        let path = data_dir.join(DIRECTORY_FILE);
        if !path.exists() {
            return None;
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| tracing::warn!(error = %e, "cannot read the local directory; group grants will not apply"))
        .ok()?;
        let _ = conn.busy_timeout(Duration::from_secs(2));
        Some(Self {
            conn: Mutex::new(conn),
            staleness,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// `oid`'s groups, at most `staleness` old. A failed lookup grants nothing
    /// (no groups) and is not cached.
    pub fn groups_of(&self, oid: &str) -> Arc<[String]> {
        if let Some((at, groups)) = self.cache.lock().expect("group cache").get(oid)
            && at.elapsed() < self.staleness
        {
            return Arc::clone(groups);
        }
        let looked_up = {
            let conn = self.conn.lock().expect("directory connection");
            conn.prepare_cached(GROUPS_OF).and_then(|mut stmt| {
                stmt.query_map([oid], |r| r.get::<_, String>(0))
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            })
        };
        match looked_up {
            Ok(groups) => {
                let groups: Arc<[String]> = groups.into();
                let mut cache = self.cache.lock().expect("group cache");
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(oid.to_owned(), (Instant::now(), Arc::clone(&groups)));
                groups
            }
            Err(e) => {
                tracing::warn!(error = %e, "group lookup failed; group grants do not apply to this request");
                Arc::from(Vec::new())
            }
        }
    }
}

/// The RBAC principal `oid` with its groups: those its token names (when the
/// issuer sends a `groups` claim) and those the directory adds.
pub fn principal_with_groups(
    oid: &str,
    token_groups: &[String],
    directory: Option<&GroupDirectory>,
) -> Principal {
    let mut groups = token_groups.to_vec();
    if let Some(directory) = directory {
        for g in directory.groups_of(oid).iter() {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
    }
    Principal::new(oid.to_owned()).with_groups(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_is_transitive_and_bounded_in_staleness() {
        let dir = tempfile::tempdir().unwrap();
        let db = Connection::open(dir.path().join(DIRECTORY_FILE)).unwrap();
        db.execute_batch(
            "CREATE TABLE group_members (group_id TEXT NOT NULL, member_id TEXT NOT NULL,
               PRIMARY KEY (group_id, member_id));
             INSERT INTO group_members VALUES ('team', 'alice'), ('org', 'team'), ('org', 'org');",
        )
        .unwrap();
        let groups = GroupDirectory::open(dir.path(), Duration::from_millis(100)).unwrap();
        let mut of_alice = groups.groups_of("alice").to_vec();
        of_alice.sort();
        assert_eq!(of_alice, ["org", "team"], "nested, and a cycle ends");
        db.execute("DELETE FROM group_members WHERE member_id = 'alice'", [])
            .unwrap();
        assert_eq!(
            groups.groups_of("alice").len(),
            2,
            "cached within the bound"
        );
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            groups.groups_of("alice").is_empty(),
            "looked up again after it"
        );
        assert!(GroupDirectory::open(&dir.path().join("none"), Duration::ZERO).is_none());
    }
}
