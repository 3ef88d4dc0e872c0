//! Managed identities: each one a row here plus its service principal, assigned
//! to the host whose IMDS serves it.

use rusqlite::{OptionalExtension, params};

use super::Store;
use super::principals::delete_service_principals_of;
use crate::admin::ManagedIdentity;
use crate::error::AuthorityError;

/// A managed identity to store.
pub(crate) struct ManagedIdentityRecord<'a> {
    pub(crate) identity: &'a ManagedIdentity,
    pub(crate) tenant_id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) host: &'a str,
    pub(crate) system_assigned: bool,
}

/// `type` of a user-assigned identity, as ARM names its resources.
const USER_ASSIGNED: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";
/// `type` of a host's own identity, as `az vm identity show` prints it.
const SYSTEM_ASSIGNED: &str = "SystemAssigned";

/// A managed identity as `ad identity show/list` print it (az's keys).
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedIdentityInfo {
    /// Name (a system-assigned identity's is its host's).
    pub name: String,
    /// ARM resource id.
    pub id: String,
    /// Client id.
    pub client_id: String,
    /// Object id of its service principal.
    pub principal_id: String,
    /// Tenant.
    pub tenant_id: String,
    /// The host whose IMDS serves it.
    pub host: String,
    /// User- or system-assigned.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

const INFO_COLUMNS: &str =
    "name, resource_id, client_id, principal_id, tenant_id, host, system_assigned";

fn info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ManagedIdentityInfo> {
    let system_assigned: bool = r.get(6)?;
    Ok(ManagedIdentityInfo {
        name: r.get(0)?,
        id: r.get(1)?,
        client_id: r.get(2)?,
        principal_id: r.get(3)?,
        tenant_id: r.get(4)?,
        host: r.get(5)?,
        kind: if system_assigned {
            SYSTEM_ASSIGNED
        } else {
            USER_ASSIGNED
        },
    })
}

/// An identity assigned to a host, as IMDS looks it up.
#[derive(Debug)]
pub(crate) struct HostIdentity {
    pub(crate) principal_id: String,
    pub(crate) client_id: String,
    pub(crate) resource_id: String,
    pub(crate) system_assigned: bool,
}

impl Store {
    /// Stores an identity and its service principal in one transaction, refusing
    /// a second system-assigned identity on a host and a second identity with
    /// the same resource id (a user-assigned one's name).
    pub(crate) fn insert_managed_identity(
        &self,
        mi: &ManagedIdentityRecord<'_>,
    ) -> Result<(), AuthorityError> {
        let id = mi.identity;
        self.write(|tx| {
            if mi.system_assigned {
                let existing: Option<i64> = tx
                    .query_row(
                        "SELECT 1 FROM managed_identities WHERE host = ?1 AND system_assigned = 1",
                        [mi.host],
                        |r| r.get(0),
                    )
                    .optional()?;
                if existing.is_some() {
                    return Err(AuthorityError::invalid(format!(
                        "host '{}' already has a system-assigned identity",
                        mi.host
                    )));
                }
            }
            // The schema does not make resource ids unique (older databases may
            // hold duplicates), so the check is here, under the write lock.
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM managed_identities WHERE resource_id = ?1)",
                [&id.id],
                |r| r.get(0),
            )?;
            if taken {
                return Err(AuthorityError::invalid(format!(
                    "a managed identity with resource id {} already exists",
                    id.id
                )));
            }
            tx.execute(
                "INSERT INTO managed_identities (principal_id, client_id, tenant_id, name, resource_id, host, system_assigned)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id.principal_id, id.client_id, mi.tenant_id, mi.name, id.id, mi.host, mi.system_assigned],
            )?;
            tx.execute(
                "INSERT INTO service_principals (object_id, app_id, tenant_id, display_name, kind)
                 VALUES (?1, ?2, ?3, ?4, 'ManagedIdentity')",
                params![id.principal_id, id.client_id, mi.tenant_id, mi.name],
            )?;
            Ok(())
        })
    }

    /// The system-assigned identity of `host`, or the user-assigned identity
    /// `name` (assigned to `host`, when one is given).
    pub(crate) fn find_managed_identity(
        &self,
        name: Option<&str>,
        host: Option<&str>,
        system_assigned: bool,
    ) -> Result<Option<ManagedIdentityInfo>, AuthorityError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {INFO_COLUMNS} FROM managed_identities
                     WHERE (?1 AND system_assigned = 1 AND host = ?2) OR (NOT ?1 AND system_assigned = 0 AND name = ?3 AND (?2 IS NULL OR host = ?2))"
                ),
                params![system_assigned, host, name.unwrap_or_default()],
                info_row,
            )
            .optional()?)
    }

    /// Deletes an identity, its service principal and what was granted to it.
    pub(crate) fn delete_managed_identity_cascade(
        &self,
        principal_id: &str,
        client_id: &str,
    ) -> Result<(), AuthorityError> {
        self.write(|tx| {
            delete_service_principals_of(tx, client_id)?;
            tx.execute(
                "DELETE FROM managed_identities WHERE principal_id = ?1",
                [principal_id],
            )?;
            Ok(())
        })
    }

    /// `ad identity list [--host]`: every identity (or those of `host`), by name.
    pub fn list_managed_identities(
        &self,
        host: Option<&str>,
    ) -> Result<Vec<ManagedIdentityInfo>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {INFO_COLUMNS} FROM managed_identities
             WHERE ?1 IS NULL OR host = ?1 ORDER BY name, host"
        ))?;
        Ok(stmt
            .query_map([host], info_row)?
            .collect::<Result<_, _>>()?)
    }

    /// The identities assigned to `host`, in the order they were created.
    pub(crate) fn managed_identities_on_host(
        &self,
        host: &str,
    ) -> Result<Vec<HostIdentity>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT principal_id, client_id, resource_id, system_assigned FROM managed_identities
             WHERE host = ?1 ORDER BY rowid",
        )?;
        Ok(stmt
            .query_map([host], |r| {
                Ok(HostIdentity {
                    principal_id: r.get(0)?,
                    client_id: r.get(1)?,
                    resource_id: r.get(2)?,
                    system_assigned: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_or_a_host_identity_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let etl = store
            .create_managed_identity(Some("etl"), "vm1", false)
            .unwrap();
        let err = store
            .create_managed_identity(Some("etl"), "vm2", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already exists") && err.contains(&etl.id),
            "{err}"
        );
        store.create_managed_identity(None, "vm1", true).unwrap();
        let err = store
            .create_managed_identity(None, "vm1", true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already has a system-assigned identity"),
            "{err}"
        );
        let on_vm1 = store.managed_identities_on_host("vm1").unwrap();
        assert_eq!(on_vm1.len(), 2, "{on_vm1:?}");
        assert!(store.managed_identities_on_host("vm2").unwrap().is_empty());
        assert_eq!(store.list_service_principals().unwrap().len(), 3);
    }
}
