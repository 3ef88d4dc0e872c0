//! The directory's objects named the way `az` names them, and their removal.
//!
//! `az` lets a principal be named by UPN, by service principal name (an appId,
//! an identifier URI, a managed identity's client or resource id) or by object
//! id, and resolves it through Graph before writing anything; here the directory
//! is the database, so the lookups are the same rules over the store. Deleting an
//! object removes everything that only exists for it (memberships, credentials,
//! refresh tokens; the store's `*_cascade` methods), so the next token request
//! for it is refused.

use serde::Serialize;

use crate::admin::{FederatedCredential, Group, ServicePrincipal, User};
use crate::error::AuthorityError;
use crate::store::{ManagedIdentityInfo, Store};

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
    pub(crate) fn new(
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

    /// A group by object id or display name (`az ad group ... --group`); a name
    /// several groups share is refused rather than guessed.
    pub fn find_group(&self, group: &str) -> Result<Group, AuthorityError> {
        let found = self.groups_by_id_or_name(group.trim())?;
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

    /// `ad group member list --group`: the direct members.
    pub fn list_group_members(&self, group: &str) -> Result<Vec<DirectoryObject>, AuthorityError> {
        let group = self.find_group(group)?;
        let ids = self.group_member_ids(&group.id)?;
        let mut members = Vec::with_capacity(ids.len());
        for id in ids {
            members.extend(self.directory_object(&id)?);
        }
        Ok(members)
    }

    /// `ad group member check --group --member-id`.
    pub fn is_group_member(&self, group: &str, member_id: &str) -> Result<bool, AuthorityError> {
        let group = self.find_group(group)?;
        self.has_group_member(&group.id, member_id.trim())
    }

    /// `ad group member remove --group --member-id`.
    pub fn remove_group_member(&self, group: &str, member_id: &str) -> Result<(), AuthorityError> {
        let group = self.find_group(group)?;
        let member_id = member_id.trim().to_ascii_lowercase();
        if !self.delete_group_member(&group.id, &member_id)? {
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
        self.delete_group_cascade(&group.id)?;
        self.changed("group.delete", &[("group", &group.id)]);
        Ok(group)
    }

    /// `ad user delete --id <objectId|UPN>`: the user and their sign-ins
    /// (refresh tokens, pending codes) go.
    pub fn delete_user(&self, id: &str) -> Result<String, AuthorityError> {
        let object_id = self.find_user(id)?.id;
        self.delete_user_cascade(&object_id)?;
        self.changed("user.delete", &[("user", &object_id)]);
        Ok(object_id)
    }

    /// `ad user show --id <objectId|UPN>`.
    pub fn find_user(&self, id: &str) -> Result<User, AuthorityError> {
        let id = id.trim();
        let found = match self.user_by_upn(id)? {
            Some((user, _)) => Some(user),
            None => self.user_by_object_id(id)?,
        };
        found.ok_or_else(|| AuthorityError::NotFound {
            kind: "user",
            id: id.to_owned(),
            cmd: "user",
        })
    }

    /// `ad user update --id <objectId|UPN>`: a new display name and/or password
    /// (which, as a reset in Entra, ends the user's sign-ins).
    pub fn update_user(
        &self,
        id: &str,
        display_name: Option<&str>,
        password: Option<&str>,
    ) -> Result<User, AuthorityError> {
        if display_name.is_none() && password.is_none() {
            return Err(invalid(
                "nothing to change: give --display-name and/or --password-stdin".into(),
            ));
        }
        if display_name.is_some_and(|n| n.trim().is_empty()) {
            return Err(invalid("--display-name cannot be empty".into()));
        }
        let user = self.find_user(id)?;
        let hash = password.map(crate::password::hash).transpose()?;
        if !self.update_user_row(&user.id, display_name, hash.as_deref())? {
            return Err(AuthorityError::NotFound {
                kind: "user",
                id: id.to_owned(),
                cmd: "user",
            });
        }
        let what = match (display_name.is_some(), password.is_some()) {
            (true, true) => "display name, password",
            (true, false) => "display name",
            _ => "password",
        };
        // The password itself stays out of the record.
        self.changed("user.update", &[("user", &user.id), ("changed", what)]);
        self.find_user(&user.id)
    }

    /// `ad sp show --id <objectId|appId>`.
    pub fn show_service_principal(&self, id: &str) -> Result<ServicePrincipal, AuthorityError> {
        self.find_service_principal(id.trim())?
            .ok_or_else(|| AuthorityError::NotFound {
                kind: "service principal",
                id: id.to_owned(),
                cmd: "sp",
            })
    }

    /// `ad identity show --name N` or `--system-assigned --host H`.
    /// `host` is required with `system_assigned`; with `name` it must be the
    /// identity's host, if given.
    pub fn show_managed_identity(
        &self,
        name: Option<&str>,
        host: Option<&str>,
        system_assigned: bool,
    ) -> Result<ManagedIdentityInfo, AuthorityError> {
        self.find_managed_identity(name, host, system_assigned)?
            .ok_or_else(|| AuthorityError::NotFound {
                kind: "managed identity",
                id: name
                    .filter(|_| !system_assigned)
                    .or(host)
                    .unwrap_or_default()
                    .to_owned(),
                cmd: "identity",
            })
    }

    /// The client id of an application named by object id or appId (`az ad app
    /// ... --id` accepts either).
    pub fn resolve_app_id(&self, id: &str) -> Result<String, AuthorityError> {
        self.app_id_by_id(id.trim())?
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
        self.delete_application_cascade(&app_id)?;
        self.changed("application.delete", &[("application", &app_id)]);
        Ok(app_id)
    }

    /// `ad sp delete --id <objectId|appId>`: the application stays, but no token
    /// is issued to it until a service principal is created again.
    pub fn delete_service_principal(&self, id: &str) -> Result<String, AuthorityError> {
        let id = id.trim();
        let Some(ServicePrincipal {
            id: object_id,
            app_id,
            service_principal_type: kind,
            ..
        }) = self.find_service_principal(id)?
        else {
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
        self.delete_service_principals_cascade(&app_id)?;
        self.changed(
            "service_principal.delete",
            &[("service_principal", &object_id), ("application", &app_id)],
        );
        Ok(object_id)
    }

    /// `ad identity delete --name N [--host H] | --system-assigned --host H`.
    pub fn delete_managed_identity(
        &self,
        name: Option<&str>,
        host: Option<&str>,
        system_assigned: bool,
    ) -> Result<String, AuthorityError> {
        let found = self.find_managed_identity(name, host, system_assigned)?;
        let Some(ManagedIdentityInfo {
            principal_id,
            client_id,
            ..
        }) = found
        else {
            return Err(invalid(match name {
                Some(n) if !system_assigned => match host {
                    Some(h) => {
                        format!("no user-assigned managed identity named '{n}' on host '{h}'")
                    }
                    None => format!("no user-assigned managed identity named '{n}'"),
                },
                _ => format!(
                    "host '{}' has no system-assigned managed identity",
                    host.unwrap_or_default()
                ),
            }));
        };
        self.delete_managed_identity_cascade(&principal_id, &client_id)?;
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
        self.delete_federated_credential_by_id(&app_id, &found.id)?;
        self.changed(
            "application.federated_credential.delete",
            &[
                ("application", &app_id),
                ("federated_credential", &found.id),
            ],
        );
        Ok(found)
    }
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
