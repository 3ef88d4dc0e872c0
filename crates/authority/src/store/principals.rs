//! Principals: service principals, users, groups and their members, app role
//! assignments, and deleting a principal with everything that exists only for it.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Store;
use crate::admin::{Group, ServicePrincipal, User};
use crate::directory::{DirectoryObject, PrincipalKind};
use crate::error::AuthorityError;

/// A user to store.
pub(crate) struct UserRecord<'a> {
    pub(crate) id: &'a str,
    pub(crate) tenant_id: &'a str,
    pub(crate) upn: &'a str,
    pub(crate) display_name: &'a str,
    /// argon2id.
    pub(crate) password_hash: Option<&'a str>,
}

/// The service principal a client signs in as.
pub(crate) struct ClientServicePrincipal {
    pub(crate) object_id: String,
    pub(crate) enabled: bool,
    pub(crate) display_name: String,
}

fn sp_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ServicePrincipal> {
    Ok(ServicePrincipal {
        id: r.get(0)?,
        app_id: r.get(1)?,
        display_name: r.get(2)?,
        service_principal_type: r.get(3)?,
    })
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        user_principal_name: r.get(1)?,
        display_name: r.get(2)?,
    })
}

fn group_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Group> {
    Ok(Group {
        id: r.get(0)?,
        display_name: r.get(1)?,
    })
}

impl Store {
    /// The service principal of `app_id`, created as `object_id` if it has none.
    pub(crate) fn ensure_service_principal(
        &self,
        object_id: &str,
        app_id: &str,
        tenant_id: &str,
        display_name: &str,
    ) -> Result<ServicePrincipal, AuthorityError> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO service_principals (object_id, app_id, tenant_id, display_name, kind)
             VALUES (?1, ?2, ?3, ?4, 'Application')",
            params![object_id, app_id, tenant_id, display_name],
        )?;
        Ok(conn.query_row(
            "SELECT object_id, app_id, display_name, kind FROM service_principals WHERE app_id = ?1",
            [app_id],
            sp_row,
        )?)
    }

    /// `ad sp list`.
    pub fn list_service_principals(&self) -> Result<Vec<ServicePrincipal>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT object_id, app_id, display_name, kind FROM service_principals ORDER BY display_name",
        )?;
        Ok(stmt.query_map([], sp_row)?.collect::<Result<_, _>>()?)
    }

    /// A service principal by object id or appId.
    pub(crate) fn find_service_principal(
        &self,
        id: &str,
    ) -> Result<Option<ServicePrincipal>, AuthorityError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT object_id, app_id, display_name, kind FROM service_principals
                 WHERE object_id = ?1 COLLATE NOCASE OR app_id = ?1 COLLATE NOCASE",
                [id],
                sp_row,
            )
            .optional()?)
    }

    /// The service principal of client `app_id` in a tenant.
    pub(crate) fn client_service_principal(
        &self,
        tenant_id: &str,
        app_id: &str,
    ) -> Result<Option<ClientServicePrincipal>, AuthorityError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT object_id, enabled, display_name FROM service_principals WHERE app_id = ?1 AND tenant_id = ?2",
                [app_id, tenant_id],
                |r| {
                    Ok(ClientServicePrincipal {
                        object_id: r.get(0)?,
                        enabled: r.get(1)?,
                        display_name: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// A service principal by one of its names: its appId (a managed identity's
    /// client id), its application's identifier URIs, or a managed identity's
    /// resource id.
    pub(crate) fn service_principal_by_name(
        &self,
        name: &str,
    ) -> Result<Option<DirectoryObject>, AuthorityError> {
        let found: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT sp.object_id, sp.display_name FROM service_principals sp
                 WHERE sp.app_id = ?1 COLLATE NOCASE
                    OR sp.app_id IN (SELECT app_id FROM identifier_uris WHERE uri = ?1)
                    OR sp.object_id IN (SELECT principal_id FROM managed_identities WHERE resource_id = ?1)",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(found.map(|(id, display)| {
            DirectoryObject::new(
                PrincipalKind::ServicePrincipal,
                id,
                display,
                "servicePrincipalNames",
            )
        }))
    }

    /// The user, group or service principal with this object id.
    pub fn directory_object(
        &self,
        object_id: &str,
    ) -> Result<Option<DirectoryObject>, AuthorityError> {
        let found: Option<(String, String, String)> = self
            .conn()
            .query_row(
                "SELECT 'User', object_id, display_name FROM users WHERE object_id = ?1 COLLATE NOCASE
                 UNION ALL SELECT 'Group', object_id, display_name FROM groups WHERE object_id = ?1 COLLATE NOCASE
                 UNION ALL SELECT 'ServicePrincipal', object_id, display_name FROM service_principals WHERE object_id = ?1 COLLATE NOCASE",
                [object_id.trim()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(found.map(|(kind, id, display)| {
            let kind = match kind.as_str() {
                "User" => PrincipalKind::User,
                "Group" => PrincipalKind::Group,
                _ => PrincipalKind::ServicePrincipal,
            };
            DirectoryObject::new(kind, id, display, "id")
        }))
    }

    /// Whether a service principal, user or group has this object id.
    pub(crate) fn principal_exists(&self, object_id: &str) -> Result<bool, AuthorityError> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM service_principals WHERE object_id = ?1)
                 OR EXISTS (SELECT 1 FROM users WHERE object_id = ?1)
                 OR EXISTS (SELECT 1 FROM groups WHERE object_id = ?1)",
            [object_id],
            |r| r.get(0),
        )?)
    }

    /// Stores a user; false if the UPN is taken.
    pub(crate) fn insert_user(&self, user: &UserRecord<'_>) -> Result<bool, AuthorityError> {
        let inserted = self.conn().execute(
            "INSERT OR IGNORE INTO users (object_id, tenant_id, upn, display_name, password_hash)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                user.id,
                user.tenant_id,
                user.upn,
                user.display_name,
                user.password_hash
            ],
        )?;
        Ok(inserted != 0)
    }

    /// A user by UPN, with their password hash.
    pub fn user_by_upn(&self, upn: &str) -> Result<Option<(User, Option<String>)>, AuthorityError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT object_id, upn, display_name, password_hash FROM users WHERE upn = ?1",
                [upn],
                |r| Ok((user_row(r)?, r.get(3)?)),
            )
            .optional()?)
    }

    /// A user of a tenant by UPN, with their password hash.
    pub(crate) fn tenant_user_by_upn(
        &self,
        tenant_id: &str,
        upn: &str,
    ) -> Result<Option<(User, Option<String>)>, AuthorityError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT object_id, upn, display_name, password_hash FROM users
                 WHERE upn = ?1 AND tenant_id = ?2",
                [upn, tenant_id],
                |r| Ok((user_row(r)?, r.get(3)?)),
            )
            .optional()?)
    }

    /// A user by object id (exactly as tokens carry it).
    pub(crate) fn user_by_object_id(
        &self,
        object_id: &str,
    ) -> Result<Option<User>, AuthorityError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT object_id, upn, display_name FROM users WHERE object_id = ?1",
                [object_id],
                user_row,
            )
            .optional()?)
    }

    /// Changes what is given of a user's display name and password hash; a new
    /// password also ends the user's sign-ins (refresh tokens), as a reset does in
    /// Entra. False when there is no such user.
    pub(crate) fn update_user_row(
        &self,
        object_id: &str,
        display_name: Option<&str>,
        password_hash: Option<&str>,
    ) -> Result<bool, AuthorityError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE users SET display_name = COALESCE(?2, display_name),
                                  password_hash = COALESCE(?3, password_hash)
                 WHERE object_id = ?1",
                params![object_id, display_name, password_hash],
            )?;
            if changed == 1 && password_hash.is_some() {
                tx.execute("DELETE FROM refresh_tokens WHERE user_id = ?1", [object_id])?;
            }
            Ok(changed == 1)
        })
    }

    /// `ad user list`.
    pub fn list_users(&self) -> Result<Vec<User>, AuthorityError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT object_id, upn, display_name FROM users ORDER BY upn")?;
        Ok(stmt.query_map([], user_row)?.collect::<Result<_, _>>()?)
    }

    /// Deletes a user, their memberships and grants, and every sign-in they
    /// could still redeem (refresh tokens, codes).
    pub(crate) fn delete_user_cascade(&self, object_id: &str) -> Result<(), AuthorityError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM group_members WHERE member_id = ?1",
                [object_id],
            )?;
            forget_principal(tx, object_id)?;
            tx.execute("DELETE FROM refresh_tokens WHERE user_id = ?1", [object_id])?;
            tx.execute(
                "DELETE FROM authorization_codes WHERE user_id = ?1",
                [object_id],
            )?;
            tx.execute("DELETE FROM device_codes WHERE user_id = ?1", [object_id])?;
            tx.execute("DELETE FROM users WHERE object_id = ?1", [object_id])?;
            Ok(())
        })
    }

    pub(crate) fn insert_group(
        &self,
        group: &Group,
        tenant_id: &str,
    ) -> Result<(), AuthorityError> {
        self.conn().execute(
            "INSERT INTO groups (object_id, tenant_id, display_name) VALUES (?1, ?2, ?3)",
            params![group.id, tenant_id, group.display_name],
        )?;
        Ok(())
    }

    pub(crate) fn group_exists(&self, group_id: &str) -> Result<bool, AuthorityError> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM groups WHERE object_id = ?1)",
            [group_id],
            |r| r.get(0),
        )?)
    }

    /// The groups whose object id (any case) or display name is `group`.
    pub(crate) fn groups_by_id_or_name(&self, group: &str) -> Result<Vec<Group>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT object_id, display_name FROM groups
             WHERE object_id = ?1 COLLATE NOCASE OR display_name = ?1 ORDER BY object_id",
        )?;
        Ok(stmt
            .query_map([group], group_row)?
            .collect::<Result<_, _>>()?)
    }

    /// `ad group list`.
    pub fn list_groups(&self) -> Result<Vec<Group>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT object_id, display_name FROM groups ORDER BY display_name, object_id",
        )?;
        Ok(stmt.query_map([], group_row)?.collect::<Result<_, _>>()?)
    }

    /// Deletes a group, its memberships (as a group and as a member) and grants.
    pub(crate) fn delete_group_cascade(&self, group_id: &str) -> Result<(), AuthorityError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM group_members WHERE group_id = ?1 OR member_id = ?1",
                [group_id],
            )?;
            forget_principal(tx, group_id)?;
            tx.execute("DELETE FROM groups WHERE object_id = ?1", [group_id])?;
            Ok(())
        })
    }

    pub(crate) fn insert_group_member(
        &self,
        group_id: &str,
        member_id: &str,
    ) -> Result<(), AuthorityError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO group_members (group_id, member_id) VALUES (?1, ?2)",
            params![group_id, member_id],
        )?;
        Ok(())
    }

    /// The direct members' object ids.
    pub(crate) fn group_member_ids(&self, group_id: &str) -> Result<Vec<String>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT member_id FROM group_members WHERE group_id = ?1 ORDER BY member_id",
        )?;
        Ok(stmt
            .query_map([group_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    /// Whether `member_id` (any case) is a direct member.
    pub(crate) fn has_group_member(
        &self,
        group_id: &str,
        member_id: &str,
    ) -> Result<bool, AuthorityError> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM group_members WHERE group_id = ?1 AND member_id = ?2 COLLATE NOCASE)",
            params![group_id, member_id],
            |r| r.get(0),
        )?)
    }

    /// Removes a direct membership; false if there was none.
    pub(crate) fn delete_group_member(
        &self,
        group_id: &str,
        member_id: &str,
    ) -> Result<bool, AuthorityError> {
        let removed = self.conn().execute(
            "DELETE FROM group_members WHERE group_id = ?1 AND member_id = ?2",
            params![group_id, member_id],
        )?;
        Ok(removed != 0)
    }

    /// Object ids of the groups `oid` is a direct member of.
    pub(crate) fn groups_of(&self, oid: &str) -> Result<Vec<String>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT group_id FROM group_members WHERE member_id = ?1 ORDER BY group_id",
        )?;
        Ok(stmt
            .query_map([oid], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    /// Assigns a role; returns the assignment's id (the existing one's, if the
    /// principal already holds the role).
    pub(crate) fn insert_app_role_assignment(
        &self,
        id: &str,
        principal_id: &str,
        resource_app_id: &str,
        role_id: &str,
    ) -> Result<String, AuthorityError> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO app_role_assignments (id, principal_id, resource_app_id, role_id)
             VALUES (?1, ?2, ?3, ?4)",
            params![id, principal_id, resource_app_id, role_id],
        )?;
        Ok(conn.query_row(
            "SELECT id FROM app_role_assignments WHERE principal_id = ?1 AND resource_app_id = ?2 AND role_id = ?3",
            params![principal_id, resource_app_id, role_id],
            |r| r.get(0),
        )?)
    }

    /// Values of the app roles assigned to `oid` (directly or through a group) on a resource.
    pub(crate) fn assigned_roles(
        &self,
        oid: &str,
        resource_app_id: &str,
    ) -> Result<Vec<String>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT r.value FROM app_role_assignments a JOIN app_roles r ON r.id = a.role_id
             WHERE a.resource_app_id = ?2 AND (a.principal_id = ?1
               OR a.principal_id IN (SELECT group_id FROM group_members WHERE member_id = ?1))
             ORDER BY r.value",
        )?;
        Ok(stmt
            .query_map([oid, resource_app_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    /// Deletes the service principals of `app_id` and what exists only for them.
    pub(crate) fn delete_service_principals_cascade(
        &self,
        app_id: &str,
    ) -> Result<(), AuthorityError> {
        self.write(|tx| Ok(delete_service_principals_of(tx, app_id)?))
    }
}

/// Removes what a principal was granted in the directory (app roles, group
/// memberships as a member). Azure RBAC assignments live in the role store and
/// stay, as in Azure, until deleted (`role lint` shows them).
fn forget_principal(tx: &Transaction<'_>, object_id: &str) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM app_role_assignments WHERE principal_id = ?1",
        [object_id],
    )?;
    tx.execute(
        "DELETE FROM group_members WHERE member_id = ?1",
        [object_id],
    )?;
    Ok(())
}

/// Deletes the service principals of `app_id` (a client id) and every sign-in
/// they could still redeem.
pub(super) fn delete_service_principals_of(
    tx: &Transaction<'_>,
    app_id: &str,
) -> rusqlite::Result<()> {
    let ids: Vec<String> = {
        let mut stmt = tx.prepare("SELECT object_id FROM service_principals WHERE app_id = ?1")?;
        stmt.query_map([app_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    for id in &ids {
        forget_principal(tx, id)?;
    }
    tx.execute("DELETE FROM service_principals WHERE app_id = ?1", [app_id])?;
    for table in ["refresh_tokens", "device_codes", "authorization_codes"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE client_id = ?1"),
            [app_id],
        )?;
    }
    Ok(())
}
