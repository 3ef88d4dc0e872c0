//! The directory's objects named the way `az` names them, and their removal.
//!
//! `az` lets a principal be named by UPN, by service principal name (an appId,
//! an identifier URI, a managed identity's client or resource id) or by object
//! id, and resolves it through Graph before writing anything; here the directory
//! is the database, so the lookups are the same rules over SQL. Deleting an
//! object removes everything that only exists for it (memberships, credentials,
//! refresh tokens), so the next token request for it is refused.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::admin::{FederatedCredential, Group};
use crate::error::AuthorityError;
use crate::store::Store;

/// What kind of directory object a principal is, spelled as ARM's `principalType`
/// (a managed identity is a `ServicePrincipal`, as in Azure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A security group.
    Group,
    /// An application's or a managed identity's service principal.
    ServicePrincipal,
}

impl PrincipalKind {
    /// ARM's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "User",
            PrincipalKind::Group => "Group",
            PrincipalKind::ServicePrincipal => "ServicePrincipal",
        }
    }

    fn odata_type(self) -> &'static str {
        match self {
            PrincipalKind::User => "#microsoft.graph.user",
            PrincipalKind::Group => "#microsoft.graph.group",
            PrincipalKind::ServicePrincipal => "#microsoft.graph.servicePrincipal",
        }
    }
}

/// A user, group or service principal as Graph's directory-object stubs show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryObject {
    /// `#microsoft.graph.user`, `…group` or `…servicePrincipal`.
    #[serde(rename = "@odata.type")]
    pub odata_type: &'static str,
    /// Object id (the `oid` of its tokens).
    pub id: String,
    /// Display name.
    #[serde(rename = "displayName")]
    pub display_name: String,
    /// What kind of principal it is.
    #[serde(skip)]
    pub kind: PrincipalKind,
    /// How the name given was matched: `userPrincipalName`, `servicePrincipalNames`
    /// or `id`.
    #[serde(skip)]
    pub matched_by: &'static str,
}

impl DirectoryObject {
    fn new(
        kind: PrincipalKind,
        id: String,
        display_name: String,
        matched_by: &'static str,
    ) -> Self {
        Self {
            odata_type: kind.odata_type(),
            id,
            display_name,
            kind,
            matched_by,
        }
    }
}

/// A device-code sign-in waiting for its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingSignIn {
    /// The code the user is shown (what `authority approve` takes).
    pub user_code: String,
    /// The application signing the user in.
    pub client_id: String,
    /// Its display name.
    pub app_display_name: String,
    /// When the code expires, RFC 3339.
    pub expires_on: String,
}

fn invalid(msg: String) -> AuthorityError {
    AuthorityError::Invalid(msg)
}

impl Store {
    /// Resolves `--assignee` as `az role assignment create` does: a name with `@`
    /// is looked up as a UPN; then as a service principal name (appId, identifier
    /// URI, managed identity client or resource id), so an appId becomes its
    /// service principal's object id; then as the object id of a user, group or
    /// service principal. Anything else is refused.
    pub fn resolve_assignee(&self, assignee: &str) -> Result<DirectoryObject, AuthorityError> {
        let name = assignee.trim();
        if name.contains('@')
            && let Some((user, _)) = self.user_by_upn(name)?
        {
            return Ok(DirectoryObject::new(
                PrincipalKind::User,
                user.id,
                user.display_name,
                "userPrincipalName",
            ));
        }
        if let Some(sp) = self.service_principal_by_name(name)? {
            return Ok(sp);
        }
        if uuid::Uuid::parse_str(name).is_ok()
            && let Some(object) = self.directory_object(name)?
        {
            return Ok(object);
        }
        Err(invalid(format!(
            "cannot find a user or service principal for '{name}' in the directory {}: it is no UPN, service principal name (appId, identifier URI) or object id there. If it is an appId, create its service principal with `entraflow ad sp create --id {name}`",
            self.path().display()
        )))
    }

    /// A service principal by one of its names: its appId (a managed identity's
    /// client id), its application's identifier URIs, or a managed identity's
    /// resource id.
    fn service_principal_by_name(
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

    /// A group by object id or display name (`az ad group ... --group`); a name
    /// several groups share is refused rather than guessed.
    pub fn find_group(&self, group: &str) -> Result<Group, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT object_id, display_name FROM groups
             WHERE object_id = ?1 COLLATE NOCASE OR display_name = ?1 ORDER BY object_id",
        )?;
        let found: Vec<Group> = stmt
            .query_map([group.trim()], |r| {
                Ok(Group {
                    id: r.get(0)?,
                    display_name: r.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(AuthorityError::NotFound {
                kind: "group",
                id: group.to_owned(),
                cmd: "group",
            }),
            many => Err(invalid(format!(
                "{} groups are named '{group}'; give the object id of one: {}",
                many.len(),
                many.iter()
                    .map(|g| g.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// `ad group list`.
    pub fn list_groups(&self) -> Result<Vec<Group>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT object_id, display_name FROM groups ORDER BY display_name, object_id",
        )?;
        Ok(stmt
            .query_map([], |r| {
                Ok(Group {
                    id: r.get(0)?,
                    display_name: r.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    /// `ad group member list --group`: the direct members.
    pub fn list_group_members(&self, group: &str) -> Result<Vec<DirectoryObject>, AuthorityError> {
        let group = self.find_group(group)?;
        let ids: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT member_id FROM group_members WHERE group_id = ?1 ORDER BY member_id",
            )?;
            stmt.query_map([&group.id], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut members = Vec::with_capacity(ids.len());
        for id in ids {
            members.extend(self.directory_object(&id)?);
        }
        Ok(members)
    }

    /// `ad group member check --group --member-id`.
    pub fn is_group_member(&self, group: &str, member_id: &str) -> Result<bool, AuthorityError> {
        let group = self.find_group(group)?;
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM group_members WHERE group_id = ?1 AND member_id = ?2 COLLATE NOCASE)",
            params![group.id, member_id.trim()],
            |r| r.get(0),
        )?)
    }

    /// `ad group member remove --group --member-id`.
    pub fn remove_group_member(&self, group: &str, member_id: &str) -> Result<(), AuthorityError> {
        let group = self.find_group(group)?;
        let member_id = member_id.trim().to_ascii_lowercase();
        let removed = self.conn().execute(
            "DELETE FROM group_members WHERE group_id = ?1 AND member_id = ?2",
            params![group.id, member_id],
        )?;
        if removed == 0 {
            return Err(invalid(format!(
                "'{member_id}' is not a member of group '{}' ({}); list the members with `entraflow ad group member list --group {}`",
                group.display_name, group.id, group.id
            )));
        }
        self.changed(
            "group.member.remove",
            &[("group", &group.id), ("member", &member_id)],
        );
        Ok(())
    }

    /// `ad group delete --group`.
    pub fn delete_group(&self, group: &str) -> Result<Group, AuthorityError> {
        let group = self.find_group(group)?;
        self.in_transaction(|tx| {
            tx.execute(
                "DELETE FROM group_members WHERE group_id = ?1 OR member_id = ?1",
                [&group.id],
            )?;
            forget_principal(tx, &group.id)?;
            tx.execute("DELETE FROM groups WHERE object_id = ?1", [&group.id])?;
            Ok(())
        })?;
        self.changed("group.delete", &[("group", &group.id)]);
        Ok(group)
    }

    /// `ad user delete --id <objectId|UPN>`: the user and their sign-ins
    /// (refresh tokens, pending codes) go.
    pub fn delete_user(&self, id: &str) -> Result<String, AuthorityError> {
        let id = id.trim();
        let object_id = match self.user_by_upn(id)? {
            Some((user, _)) => user.id,
            None => self
                .directory_object(id)?
                .filter(|o| o.kind == PrincipalKind::User)
                .map(|o| o.id)
                .ok_or_else(|| AuthorityError::NotFound {
                    kind: "user",
                    id: id.to_owned(),
                    cmd: "user",
                })?,
        };
        self.in_transaction(|tx| {
            tx.execute(
                "DELETE FROM group_members WHERE member_id = ?1",
                [&object_id],
            )?;
            forget_principal(tx, &object_id)?;
            tx.execute(
                "DELETE FROM refresh_tokens WHERE user_id = ?1",
                [&object_id],
            )?;
            tx.execute(
                "DELETE FROM authorization_codes WHERE user_id = ?1",
                [&object_id],
            )?;
            tx.execute("DELETE FROM device_codes WHERE user_id = ?1", [&object_id])?;
            tx.execute("DELETE FROM users WHERE object_id = ?1", [&object_id])?;
            Ok(())
        })?;
        self.changed("user.delete", &[("user", &object_id)]);
        Ok(object_id)
    }

    /// The client id of an application named by object id or appId (`az ad app
    /// ... --id` accepts either).
    pub fn resolve_app_id(&self, id: &str) -> Result<String, AuthorityError> {
        self.conn()
            .query_row(
                "SELECT app_id FROM applications WHERE app_id = ?1 COLLATE NOCASE OR object_id = ?1 COLLATE NOCASE",
                [id.trim()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| AuthorityError::NotFound {
                kind: "application",
                id: id.to_owned(),
                cmd: "app",
            })
    }

    /// `ad app delete --id <objectId|appId>`: as in Entra, the application's
    /// service principal, credentials and grants go with it.
    pub fn delete_application(&self, id: &str) -> Result<String, AuthorityError> {
        let app_id = self.resolve_app_id(id)?;
        if app_id.eq_ignore_ascii_case(entraflow_core::AZURE_CLI_CLIENT_ID) {
            return Err(invalid(
                "the Microsoft Azure CLI application is Microsoft's, not the tenant's; it cannot be deleted".into(),
            ));
        }
        self.in_transaction(|tx| {
            delete_service_principals_of(tx, &app_id)?;
            for table in [
                "identifier_uris",
                "app_roles",
                "client_secrets",
                "certificates",
                "federated_credentials",
                "redirect_uris",
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE app_id = ?1"), [&app_id])?;
            }
            tx.execute(
                "DELETE FROM app_role_assignments WHERE resource_app_id = ?1",
                [&app_id],
            )?;
            tx.execute("DELETE FROM applications WHERE app_id = ?1", [&app_id])?;
            Ok(())
        })?;
        self.changed("application.delete", &[("application", &app_id)]);
        Ok(app_id)
    }

    /// `ad sp delete --id <objectId|appId>`: the application stays, but no token
    /// is issued to it until a service principal is created again.
    pub fn delete_service_principal(&self, id: &str) -> Result<String, AuthorityError> {
        let id = id.trim();
        let found: Option<(String, String, String)> = self
            .conn()
            .query_row(
                "SELECT object_id, app_id, kind FROM service_principals
                 WHERE object_id = ?1 COLLATE NOCASE OR app_id = ?1 COLLATE NOCASE",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((object_id, app_id, kind)) = found else {
            return Err(AuthorityError::NotFound {
                kind: "service principal",
                id: id.to_owned(),
                cmd: "sp",
            });
        };
        if kind == "ManagedIdentity" {
            return Err(invalid(format!(
                "service principal {object_id} belongs to a managed identity; delete it with `entraflow ad identity delete`"
            )));
        }
        if app_id.eq_ignore_ascii_case(entraflow_core::AZURE_CLI_CLIENT_ID) {
            return Err(invalid(
                "the Microsoft Azure CLI's service principal is what `entraflow login` signs in with; it cannot be deleted".into(),
            ));
        }
        self.in_transaction(|tx| delete_service_principals_of(tx, &app_id))?;
        self.changed(
            "service_principal.delete",
            &[("service_principal", &object_id), ("application", &app_id)],
        );
        Ok(object_id)
    }

    /// `ad identity delete --name N | --system-assigned --host H`.
    pub fn delete_managed_identity(
        &self,
        name: Option<&str>,
        host: &str,
        system_assigned: bool,
    ) -> Result<String, AuthorityError> {
        let found: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT principal_id, client_id FROM managed_identities
                 WHERE (?1 AND system_assigned = 1 AND host = ?2) OR (NOT ?1 AND system_assigned = 0 AND name = ?3)",
                params![system_assigned, host, name.unwrap_or_default()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((principal_id, client_id)) = found else {
            return Err(invalid(match name {
                Some(n) if !system_assigned => {
                    format!("no user-assigned managed identity named '{n}'")
                }
                _ => format!("host '{host}' has no system-assigned managed identity"),
            }));
        };
        self.in_transaction(|tx| {
            delete_service_principals_of(tx, &client_id)?;
            tx.execute(
                "DELETE FROM managed_identities WHERE principal_id = ?1",
                [&principal_id],
            )?;
            Ok(())
        })?;
        self.changed(
            "managed_identity.delete",
            &[("managed_identity", &principal_id), ("client", &client_id)],
        );
        Ok(principal_id)
    }

    /// One federated credential of an app, by id or name.
    pub fn federated_credential(
        &self,
        app: &str,
        credential: &str,
    ) -> Result<FederatedCredential, AuthorityError> {
        let app_id = self.resolve_app_id(app)?;
        self.list_federated_credentials(&app_id)?
            .into_iter()
            .find(|f| f.id.eq_ignore_ascii_case(credential.trim()) || f.name == credential.trim())
            .ok_or_else(|| {
                invalid(format!(
                    "application {app_id} has no federated identity credential with id or name '{credential}'; list them with `entraflow ad app federated-credential list --id {app_id}`"
                ))
            })
    }

    /// `ad app federated-credential delete --id --federated-credential-id`.
    pub fn delete_federated_credential(
        &self,
        app: &str,
        credential: &str,
    ) -> Result<FederatedCredential, AuthorityError> {
        let app_id = self.resolve_app_id(app)?;
        let found = self.federated_credential(&app_id, credential)?;
        self.conn().execute(
            "DELETE FROM federated_credentials WHERE id = ?1 AND app_id = ?2",
            params![found.id, app_id],
        )?;
        self.changed(
            "application.federated_credential.delete",
            &[
                ("application", &app_id),
                ("federated_credential", &found.id),
            ],
        );
        Ok(found)
    }

    /// `authority pending`: device-code sign-ins waiting for a user, newest
    /// first (the user code an admin approves, never the device code).
    pub fn pending_device_codes(&self) -> Result<Vec<PendingSignIn>, AuthorityError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT d.user_code, d.client_id, a.display_name, d.expires_at FROM device_codes d
             LEFT JOIN applications a ON a.app_id = d.client_id
             WHERE d.status = 'pending' AND d.expires_at > ?1 ORDER BY d.expires_at DESC",
        )?;
        Ok(stmt
            .query_map([crate::store::now()], |r| {
                Ok(PendingSignIn {
                    user_code: r.get(0)?,
                    client_id: r.get(1)?,
                    app_display_name: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    expires_on: crate::store::rfc3339(r.get(3)?),
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    fn in_transaction(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Result<(), AuthorityError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        f(&tx)?;
        tx.commit()?;
        Ok(())
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
fn delete_service_principals_of(tx: &Transaction<'_>, app_id: &str) -> rusqlite::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::NewApplication;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn an_app_id_resolves_to_its_service_principal_and_unknown_names_are_refused() {
        let (_dir, store) = store();
        let app = store
            .create_application(&NewApplication {
                display_name: "trainer".into(),
                identifier_uris: vec!["api://trainer".into()],
                ..Default::default()
            })
            .unwrap();
        let err = store.resolve_assignee(&app.app_id).unwrap_err().to_string();
        assert!(err.contains("ad sp create --id"), "{err}");
        let sp = store.create_service_principal(&app.app_id).unwrap();
        for name in [app.app_id.as_str(), "api://trainer", sp.id.as_str()] {
            let found = store.resolve_assignee(name).unwrap();
            assert_eq!(
                (found.id.as_str(), found.kind),
                (sp.id.as_str(), PrincipalKind::ServicePrincipal),
                "{name}"
            );
        }
        // The application's object id is not a principal: tokens never carry it.
        assert!(store.resolve_assignee(&app.id).is_err());
        let user = store.create_user("ann@example.org", "Ann", None).unwrap();
        let by_upn = store.resolve_assignee("ANN@example.org").unwrap();
        assert_eq!((by_upn.id, by_upn.kind), (user.id, PrincipalKind::User));
        let group = store.create_group("readers").unwrap();
        assert_eq!(
            store.resolve_assignee(&group.id).unwrap().kind,
            PrincipalKind::Group
        );
        let mi = store
            .create_managed_identity(Some("etl"), "vm1", false)
            .unwrap();
        for name in [
            mi.client_id.as_str(),
            mi.id.as_str(),
            mi.principal_id.as_str(),
        ] {
            assert_eq!(
                store.resolve_assignee(name).unwrap().id,
                mi.principal_id,
                "{name}"
            );
        }
        let made_up = uuid::Uuid::new_v4().to_string();
        let err = store.resolve_assignee(&made_up).unwrap_err().to_string();
        assert!(
            err.contains(&made_up) && err.contains("authority.db"),
            "{err}"
        );
    }

    #[test]
    fn deleting_an_app_takes_its_service_principal_credentials_and_memberships() {
        let (_dir, store) = store();
        let app = store
            .create_application(&NewApplication {
                display_name: "job".into(),
                ..Default::default()
            })
            .unwrap();
        let sp = store.create_service_principal(&app.app_id).unwrap();
        store
            .create_federated_credential(&app.app_id, "ci", "https://issuer.example", "s", &[])
            .unwrap();
        let group = store.create_group("g").unwrap();
        store.add_group_member(&group.id, &sp.id).unwrap();
        assert_eq!(store.list_group_members("g").unwrap()[0].id, sp.id);
        // By object id, as `az ad app delete --id` accepts.
        store.delete_application(&app.id).unwrap();
        assert!(store.application(&app.app_id).is_err());
        assert!(store.directory_object(&sp.id).unwrap().is_none());
        assert!(store.list_group_members("g").unwrap().is_empty());
        assert!(
            store
                .list_federated_credentials(&app.app_id)
                .unwrap()
                .is_empty()
        );
        assert!(store.delete_application(&app.app_id).is_err());
        assert!(
            store
                .delete_application(entraflow_core::AZURE_CLI_CLIENT_ID)
                .is_err()
        );
    }

    #[test]
    fn groups_are_found_by_name_or_id_and_an_ambiguous_name_is_refused() {
        let (_dir, store) = store();
        let a = store.create_group("team").unwrap();
        assert_eq!(store.find_group("team").unwrap(), a);
        store.create_group("team").unwrap();
        let err = store.find_group("team").unwrap_err().to_string();
        assert!(err.contains("2 groups"), "{err}");
        assert_eq!(store.find_group(&a.id.to_uppercase()).unwrap(), a);
        let user = store.create_user("u@example.org", "U", None).unwrap();
        store.add_group_member(&a.id, &user.id).unwrap();
        assert!(store.is_group_member(&a.id, &user.id).unwrap());
        store.remove_group_member(&a.id, &user.id).unwrap();
        assert!(!store.is_group_member(&a.id, &user.id).unwrap());
        assert!(store.remove_group_member(&a.id, &user.id).is_err());
        store.delete_user("u@example.org").unwrap();
        assert!(store.user_by_upn("u@example.org").unwrap().is_none());
        store.delete_group(&a.id).unwrap();
        assert_eq!(store.list_groups().unwrap().len(), 1);
    }
}
