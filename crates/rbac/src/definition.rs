//! Role definitions in Azure's shapes, and the built-in roles entraflow knows.
//!
//! A role grants an operation when one of its permission blocks lists it in
//! `Actions` (or `DataActions`) and the same block does not list it in `NotActions`
//! (`NotDataActions`). `NotActions` subtracts; it is not a deny: another role can
//! still grant the operation.

use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::action::ActionPattern;
use crate::scope::{Scope, ScopeError};

/// Built-in role ids (the GUIDs are the same in every Azure tenant).
pub mod builtin {
    /// Storage Blob Data Reader.
    pub const STORAGE_BLOB_DATA_READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
    /// Storage Blob Data Contributor.
    pub const STORAGE_BLOB_DATA_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
    /// Storage Blob Data Owner.
    pub const STORAGE_BLOB_DATA_OWNER: &str = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b";
    /// Owner.
    pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    /// User Access Administrator.
    pub const USER_ACCESS_ADMINISTRATOR: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
}

/// Whether a role ships with Azure or was defined by the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RoleType {
    /// Azure's built-in role (`BuiltInRole`).
    #[serde(rename = "BuiltInRole")]
    BuiltIn,
    /// A tenant's custom role (`CustomRole`).
    #[serde(rename = "CustomRole")]
    Custom,
}

/// One permission block of a role definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// Control-plane operations granted.
    pub actions: Vec<String>,
    /// Control-plane operations removed from `actions`.
    pub not_actions: Vec<String>,
    /// Data-plane operations granted.
    pub data_actions: Vec<String>,
    /// Data-plane operations removed from `data_actions`.
    pub not_data_actions: Vec<String>,
}

/// A role definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefinition {
    /// The role's GUID (the `name` of the ARM resource).
    pub id: String,
    /// Display name, e.g. `Storage Blob Data Reader`.
    pub name: String,
    /// What the role is for.
    pub description: String,
    /// Built-in or custom.
    pub role_type: RoleType,
    /// Permission blocks; their grants add up.
    pub permissions: Vec<Permission>,
    /// Scopes at which the role may be assigned.
    pub assignable_scopes: Vec<Scope>,
}

/// Why a role definition document was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DefinitionError {
    /// Not JSON, or not a JSON object.
    #[error("role definition is not a JSON object: {0}")]
    NotJson(String),
    /// A required field is absent.
    #[error("role definition has no '{field}' field; {hint}")]
    Missing {
        /// The field, in az's file-format spelling.
        field: &'static str,
        /// How to fix it.
        hint: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("role definition field '{field}' must be {expected}")]
    WrongType {
        /// The field.
        field: String,
        /// The expected JSON type.
        expected: &'static str,
    },
    /// An assignable scope does not parse.
    #[error("role definition has an invalid assignable scope: {0}")]
    Scope(#[from] ScopeError),
    /// The role id is not a GUID.
    #[error("role definition id '{0}' is not a GUID; omit 'Id' to have one generated")]
    BadId(String),
    /// An action names no operation the gate knows.
    #[error(
        "role definition {field} entry '{action}' is not a known action{}; list the data actions the gate checks with `entraflow role definition list -o json`",
        suggestion.map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default()
    )]
    UnknownAction {
        /// `Actions`, `NotActions`, `DataActions` or `NotDataActions`.
        field: &'static str,
        /// The entry as written.
        action: String,
        /// The closest known action.
        suggestion: Option<&'static str>,
    },
    /// The role grants nothing.
    #[error("role definition '{0}' grants no Actions or DataActions")]
    Empty(String),
}

impl RoleDefinition {
    /// Refuses actions that match no operation entraflow knows (a typo would
    /// otherwise grant nothing, silently). Done when a role is created or
    /// changed, not when stored roles are read.
    pub fn check_actions(&self) -> Result<(), DefinitionError> {
        for p in &self.permissions {
            for (field, list, data) in [
                ("Actions", &p.actions, false),
                ("NotActions", &p.not_actions, false),
                ("DataActions", &p.data_actions, true),
                ("NotDataActions", &p.not_data_actions, true),
            ] {
                for action in list {
                    crate::action::check_action(action, data).map_err(|e| {
                        DefinitionError::UnknownAction {
                            field,
                            action: e.action,
                            suggestion: e.suggestion,
                        }
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Parses a role definition from `az role definition create --role-definition`'s
    /// file format (`Name`, `Actions`, `DataActions`, `AssignableScopes`, ...) or from
    /// the ARM shape (`roleName`, `permissions[]`, `assignableScopes`, optionally
    /// under `properties`). Field names are matched case-insensitively, as az does.
    /// A missing `Id` gets a fresh GUID. The result is a custom role.
    pub fn from_json(text: &str) -> Result<Self, DefinitionError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| DefinitionError::NotJson(e.to_string()))?;
        let Value::Object(top) = value else {
            return Err(DefinitionError::NotJson("found a non-object value".into()));
        };
        let props = match get(&top, "properties") {
            Some(Value::Object(p)) => p,
            _ => &top,
        };
        let name = string_field(props, &["roleName", "Name"])?
            .or(string_field(&top, &["roleName"])?)
            .ok_or(DefinitionError::Missing {
                field: "Name",
                hint: "give the role a display name",
            })?;
        // In the ARM shape `name` is the GUID; in az's file format `Name` is the display
        // name, so only take it as the id when `roleName` names the role.
        let id_value = string_field(&top, &["Id", "id"])?.or(
            if get(props, "roleName").is_some() || get(&top, "roleName").is_some() {
                string_field(&top, &["name"])?
            } else {
                None
            },
        );
        let id = match id_value {
            Some(id) => {
                let guid = id.rsplit('/').next().unwrap_or(&id).to_owned();
                uuid::Uuid::parse_str(&guid)
                    .map_err(|_| DefinitionError::BadId(id.clone()))?
                    .to_string()
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let description = string_field(props, &["description"])?.unwrap_or_default();
        let permissions = match get(props, "permissions") {
            Some(Value::Array(blocks)) => blocks
                .iter()
                .enumerate()
                .map(|(i, b)| match b {
                    Value::Object(b) => permission_of(b),
                    _ => Err(DefinitionError::WrongType {
                        field: format!("permissions[{i}]"),
                        expected: "an object",
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(DefinitionError::WrongType {
                    field: "permissions".into(),
                    expected: "an array",
                });
            }
            None => vec![permission_of(props)?],
        };
        if permissions
            .iter()
            .all(|p| p.actions.is_empty() && p.data_actions.is_empty())
        {
            return Err(DefinitionError::Empty(name));
        }
        let scopes = strings(props, "assignableScopes")?;
        if scopes.is_empty() {
            return Err(DefinitionError::Missing {
                field: "AssignableScopes",
                hint: "list the scopes the role may be assigned at, e.g. the storage account's scope",
            });
        }
        let assignable_scopes = scopes
            .iter()
            .map(|s| Scope::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            id,
            name,
            description,
            role_type: RoleType::Custom,
            permissions,
            assignable_scopes,
        })
    }

    /// The ARM id az prints: `/providers/Microsoft.Authorization/roleDefinitions/<guid>`.
    pub fn arm_id(&self) -> String {
        role_definition_arm_id(&self.id)
    }

    /// True when the role lists any data action.
    pub fn has_data_actions(&self) -> bool {
        self.permissions.iter().any(|p| !p.data_actions.is_empty())
    }

    /// True when the role may be assigned at `scope`.
    pub fn assignable_at(&self, scope: &Scope) -> bool {
        self.assignable_scopes.iter().any(|s| s.contains(scope))
    }

    /// The definition as az prints it (`az role definition list -o json`).
    pub fn to_az_json(&self) -> Value {
        serde_json::json!({
            "assignableScopes": self.assignable_scopes,
            "description": self.description,
            "id": self.arm_id(),
            "name": self.id,
            "permissions": self.permissions,
            "roleName": self.name,
            "roleType": self.role_type,
            "type": "Microsoft.Authorization/roleDefinitions",
        })
    }
}

/// `/providers/Microsoft.Authorization/roleDefinitions/<guid>`.
pub fn role_definition_arm_id(guid: &str) -> String {
    format!("/providers/Microsoft.Authorization/roleDefinitions/{guid}")
}

fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn string_field(
    obj: &Map<String, Value>,
    keys: &[&str],
) -> Result<Option<String>, DefinitionError> {
    for key in keys {
        match get(obj, key) {
            Some(Value::String(s)) if !s.trim().is_empty() => return Ok(Some(s.trim().into())),
            Some(Value::Null) | None => {}
            Some(Value::String(_)) => {}
            Some(_) => {
                return Err(DefinitionError::WrongType {
                    field: (*key).into(),
                    expected: "a string",
                });
            }
        }
    }
    Ok(None)
}

fn strings(obj: &Map<String, Value>, key: &str) -> Result<Vec<String>, DefinitionError> {
    match get(obj, key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.trim().to_owned()),
                _ => Err(DefinitionError::WrongType {
                    field: key.into(),
                    expected: "an array of strings",
                }),
            })
            .collect(),
        Some(_) => Err(DefinitionError::WrongType {
            field: key.into(),
            expected: "an array of strings",
        }),
    }
}

fn permission_of(obj: &Map<String, Value>) -> Result<Permission, DefinitionError> {
    Ok(Permission {
        actions: strings(obj, "actions")?,
        not_actions: strings(obj, "notActions")?,
        data_actions: strings(obj, "dataActions")?,
        not_data_actions: strings(obj, "notDataActions")?,
    })
}

fn builtin(
    id: &str,
    name: &str,
    description: &str,
    actions: &[&str],
    data_actions: &[&str],
) -> RoleDefinition {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    RoleDefinition {
        id: id.into(),
        name: name.into(),
        description: description.into(),
        role_type: RoleType::BuiltIn,
        permissions: vec![Permission {
            actions: owned(actions),
            data_actions: owned(data_actions),
            ..Permission::default()
        }],
        assignable_scopes: vec![Scope::root()],
    }
}

/// Azure's built-in roles entraflow ships, data roles first from least to most
/// privileged (the order in which a denial suggests them).
pub fn builtin_roles() -> Vec<RoleDefinition> {
    const CONTAINERS: &str = "Microsoft.Storage/storageAccounts/blobServices/containers";
    const KEY: &str =
        "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action";
    let c = |suffix: &str| format!("{CONTAINERS}/{suffix}");
    vec![
        builtin(
            builtin::STORAGE_BLOB_DATA_READER,
            "Storage Blob Data Reader",
            "Allows for read access to Azure Storage blob containers and data",
            &[&c("read"), KEY],
            &[&c("blobs/read")],
        ),
        builtin(
            builtin::STORAGE_BLOB_DATA_CONTRIBUTOR,
            "Storage Blob Data Contributor",
            "Allows for read, write and delete access to Azure Storage blob containers and data",
            &[&c("delete"), &c("read"), &c("write"), KEY],
            &[
                &c("blobs/delete"),
                &c("blobs/read"),
                &c("blobs/write"),
                &c("blobs/move/action"),
                &c("blobs/add/action"),
            ],
        ),
        builtin(
            builtin::STORAGE_BLOB_DATA_OWNER,
            "Storage Blob Data Owner",
            "Allows for full access to Azure Storage blob containers and data, including assigning POSIX access control.",
            &[&c("*"), KEY],
            &[&c("blobs/*")],
        ),
        builtin(
            builtin::USER_ACCESS_ADMINISTRATOR,
            "User Access Administrator",
            "Lets you manage user access to Azure resources.",
            &["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"],
            &[],
        ),
        builtin(
            builtin::OWNER,
            "Owner",
            "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
            &["*"],
            &[],
        ),
    ]
}

/// Whether an operation is a control-plane action or a data action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// Matched against `Actions` / `NotActions`.
    Control,
    /// Matched against `DataActions` / `NotDataActions`.
    Data,
}

#[derive(Debug)]
struct CompiledPermission {
    actions: Vec<ActionPattern>,
    not_actions: Vec<ActionPattern>,
    data_actions: Vec<ActionPattern>,
    not_data_actions: Vec<ActionPattern>,
}

/// A role definition with its patterns compiled for matching.
#[derive(Debug)]
pub(crate) struct CompiledRole {
    pub(crate) definition: RoleDefinition,
    permissions: Vec<CompiledPermission>,
}

impl CompiledRole {
    pub(crate) fn new(definition: RoleDefinition) -> Self {
        let compile = |v: &[String]| v.iter().map(|p| ActionPattern::new(p)).collect();
        let permissions = definition
            .permissions
            .iter()
            .map(|p| CompiledPermission {
                actions: compile(&p.actions),
                not_actions: compile(&p.not_actions),
                data_actions: compile(&p.data_actions),
                not_data_actions: compile(&p.not_data_actions),
            })
            .collect();
        Self {
            definition,
            permissions,
        }
    }

    /// Whether the role grants `action_lower` (already lower-cased).
    pub(crate) fn grants(&self, kind: ActionKind, action_lower: &str) -> bool {
        self.permissions.iter().any(|p| {
            let (allow, deny) = match kind {
                ActionKind::Control => (&p.actions, &p.not_actions),
                ActionKind::Data => (&p.data_actions, &p.not_data_actions),
            };
            allow.iter().any(|a| a.matches_lower(action_lower))
                && !deny.iter().any(|a| a.matches_lower(action_lower))
        })
    }

    /// Wildcard patterns the role grants (for lint).
    pub(crate) fn wildcard_patterns(&self) -> Vec<&str> {
        self.permissions
            .iter()
            .flat_map(|p| p.actions.iter().chain(p.data_actions.iter()))
            .filter(|p| p.has_wildcard())
            .map(ActionPattern::source)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{blob, container};

    fn role(id: &str) -> CompiledRole {
        CompiledRole::new(
            builtin_roles()
                .into_iter()
                .find(|r| r.id == id)
                .expect("built-in"),
        )
    }

    #[test]
    fn builtin_data_roles_grant_what_azure_documents() {
        let lower = |s: &str| s.to_ascii_lowercase();
        let reader = role(builtin::STORAGE_BLOB_DATA_READER);
        let contributor = role(builtin::STORAGE_BLOB_DATA_CONTRIBUTOR);
        let owner = role(builtin::STORAGE_BLOB_DATA_OWNER);
        let arm_owner = role(builtin::OWNER);
        assert!(reader.grants(ActionKind::Data, &lower(blob::READ)));
        assert!(!reader.grants(ActionKind::Data, &lower(blob::WRITE)));
        assert!(reader.grants(ActionKind::Control, &lower(container::READ)));
        assert!(!reader.grants(ActionKind::Control, &lower(container::WRITE)));
        for a in [blob::READ, blob::WRITE, blob::DELETE, blob::ADD, blob::MOVE] {
            assert!(contributor.grants(ActionKind::Data, &lower(a)), "{a}");
            assert!(owner.grants(ActionKind::Data, &lower(a)), "{a}");
        }
        let tags = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/write";
        assert!(!contributor.grants(ActionKind::Data, &lower(tags)));
        assert!(owner.grants(ActionKind::Data, &lower(tags)));
        // `*` in Actions is control plane only: Owner cannot read blob data.
        assert!(arm_owner.grants(ActionKind::Control, &lower(container::WRITE)));
        assert!(!arm_owner.grants(ActionKind::Data, &lower(blob::READ)));
    }

    #[test]
    fn not_data_actions_subtract_within_their_block_only() {
        let def = RoleDefinition::from_json(
            r#"{"Name":"Reader except writes","Actions":[],
                "DataActions":["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"],
                "NotDataActions":["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
                                  "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"],
                "AssignableScopes":["/subscriptions/s"]}"#,
        )
        .unwrap();
        let r = CompiledRole::new(def);
        assert!(r.grants(ActionKind::Data, &blob::READ.to_ascii_lowercase()));
        assert!(!r.grants(ActionKind::Data, &blob::WRITE.to_ascii_lowercase()));
        assert!(!r.grants(ActionKind::Data, &blob::DELETE.to_ascii_lowercase()));
        assert!(r.grants(ActionKind::Data, &blob::ADD.to_ascii_lowercase()));
    }

    #[test]
    fn parses_az_file_format() {
        let def = RoleDefinition::from_json(
            r#"{"Name":"Training reader","Id":null,"IsCustom":true,"Description":"reads data",
                "Actions":["Microsoft.Storage/storageAccounts/blobServices/containers/read"],
                "NotActions":[],"DataActions":["Microsoft.Storage/*/blobs/read"],"NotDataActions":[],
                "AssignableScopes":["/subscriptions/00000000-0000-0000-0000-000000000001"]}"#,
        )
        .unwrap();
        assert_eq!(def.name, "Training reader");
        assert_eq!(def.description, "reads data");
        assert_eq!(def.role_type, RoleType::Custom);
        assert!(uuid::Uuid::parse_str(&def.id).is_ok());
        assert_eq!(
            def.permissions[0].data_actions,
            ["Microsoft.Storage/*/blobs/read"]
        );
    }

    #[test]
    fn parses_arm_shape_with_its_guid() {
        let def = RoleDefinition::from_json(
            r#"{"id":"/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/11111111-2222-3333-4444-555555555555",
                "name":"11111111-2222-3333-4444-555555555555",
                "properties":{"roleName":"Blob lister","description":"",
                  "permissions":[{"actions":[],"notActions":[],"dataActions":["*/read"],"notDataActions":[]},
                                 {"actions":["*/read"]}],
                  "assignableScopes":["/"]}}"#,
        )
        .unwrap();
        assert_eq!(def.id, "11111111-2222-3333-4444-555555555555");
        assert_eq!(def.name, "Blob lister");
        assert_eq!(def.permissions.len(), 2);
        let json = def.to_az_json();
        assert_eq!(json["roleName"], "Blob lister");
        assert_eq!(json["roleType"], "CustomRole");
        assert_eq!(json["permissions"][0]["dataActions"][0], "*/read");
    }

    #[test]
    fn refuses_incomplete_definitions_with_what_to_do() {
        let cases = [
            ("[]", "not a JSON object"),
            (
                r#"{"Actions":["*/read"],"AssignableScopes":["/"]}"#,
                "no 'Name'",
            ),
            (
                r#"{"Name":"x","AssignableScopes":["/"]}"#,
                "grants no Actions",
            ),
            (
                r#"{"Name":"x","DataActions":["*/read"]}"#,
                "no 'AssignableScopes'",
            ),
            (
                r#"{"Name":"x","DataActions":"*/read","AssignableScopes":["/"]}"#,
                "array of strings",
            ),
            (
                r#"{"Name":"x","Id":"nope","DataActions":["a"],"AssignableScopes":["/"]}"#,
                "not a GUID",
            ),
            (
                r#"{"Name":"x","DataActions":["a"],"AssignableScopes":["subscriptions/s"]}"#,
                "must start with '/'",
            ),
        ];
        for (json, needle) in cases {
            let err = RoleDefinition::from_json(json).expect_err(json).to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
