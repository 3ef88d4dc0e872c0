//! ARM's resource shapes for role assignments and role definitions, and the
//! `$filter` expressions their list operations take.

use entraflow_rbac::{RoleAssignment, RoleDefinition, Scope, ScopeLevel};
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use super::error::ArmError;

/// Resource type of role assignments.
pub(crate) const ASSIGNMENT_TYPE: &str = "Microsoft.Authorization/roleAssignments";
/// Resource type of role definitions.
pub(crate) const DEFINITION_TYPE: &str = "Microsoft.Authorization/roleDefinitions";

/// `/subscriptions/<id>` of a scope at or below a subscription, else empty: ARM
/// prefixes role definition ids with the subscription they are seen from.
pub(crate) fn subscription_prefix(scope: &Scope) -> String {
    if scope.level() < ScopeLevel::Subscription {
        return String::new();
    }
    scope
        .as_str()
        .split('/')
        .take(3)
        .collect::<Vec<_>>()
        .join("/")
}

/// A role definition's ARM id as seen from `scope`.
pub(crate) fn definition_id(scope: &Scope, guid: &str) -> String {
    format!(
        "{}/providers/{DEFINITION_TYPE}/{guid}",
        subscription_prefix(scope)
    )
}

fn rfc3339(t: time::OffsetDateTime) -> Option<String> {
    t.format(&Rfc3339).ok()
}

/// A role assignment in ARM's shape (`id`, `name`, `type`, `properties{...}`), with
/// entraflow's `properties.expiresOn`.
pub(crate) fn assignment(a: &RoleAssignment) -> Value {
    let created = rfc3339(a.created_at);
    json!({
        "id": a.id(),
        "name": a.name,
        "type": ASSIGNMENT_TYPE,
        "properties": {
            "roleDefinitionId": definition_id(&a.scope, &a.role_definition_id),
            "principalId": a.principal_id,
            "principalType": a.principal_type.as_str(),
            "scope": a.scope.as_str(),
            "condition": a.condition,
            "conditionVersion": a.condition_version,
            "description": a.description,
            "createdOn": created,
            "updatedOn": created,
            "createdBy": null,
            "updatedBy": null,
            "delegatedManagedIdentityResourceId": null,
            "expiresOn": a.expires_at.and_then(rfc3339),
        }
    })
}

/// A role definition in ARM's shape, its id as seen from `scope`.
pub(crate) fn definition(d: &RoleDefinition, scope: &Scope) -> Value {
    let az = d.to_az_json();
    json!({
        "id": definition_id(scope, &d.id),
        "name": d.id,
        "type": DEFINITION_TYPE,
        "properties": {
            "roleName": d.name,
            "type": az["roleType"],
            "description": d.description,
            "assignableScopes": az["assignableScopes"],
            "permissions": az["permissions"],
            "createdOn": null,
            "updatedOn": null,
            "createdBy": null,
            "updatedBy": null,
        }
    })
}

/// The body of `PUT .../roleAssignments/{guid}`.
#[derive(Debug, Deserialize)]
pub(crate) struct PutAssignment {
    pub(crate) properties: AssignmentProperties,
}

/// `properties` of a role assignment request. Fields ARM computes (`scope`,
/// `createdOn`, ...) are ignored when sent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AssignmentProperties {
    pub(crate) role_definition_id: String,
    pub(crate) principal_id: String,
    #[serde(default)]
    pub(crate) principal_type: Option<String>,
    #[serde(default)]
    pub(crate) condition: Option<String>,
    #[serde(default)]
    pub(crate) condition_version: Option<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    /// entraflow's extension: when the assignment stops granting (RFC 3339, or a
    /// duration from now such as `30d`).
    #[serde(default)]
    pub(crate) expires_on: Option<String>,
}

/// What a List Role Assignments `$filter` asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AssignmentFilter {
    /// `atScope()`: only assignments at the scope or above it, none below.
    pub(crate) at_scope: bool,
    /// `principalId eq '<id>'` or `assignedTo('<id>')`.
    pub(crate) principal_id: Option<String>,
}

impl AssignmentFilter {
    pub(crate) fn parse(filter: Option<&str>) -> Result<Self, ArmError> {
        let mut out = Self::default();
        let Some(text) = filter.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(out);
        };
        for term in split_and(text) {
            if term.eq_ignore_ascii_case("atScope()") {
                out.at_scope = true;
            } else if let Some(id) =
                eq_term(term, "principalId").or_else(|| call_term(term, "assignedTo"))
            {
                out.principal_id = Some(id.to_ascii_lowercase());
            } else {
                return Err(unsupported_filter(
                    text,
                    "'atScope()', 'principalId eq '{value}'' or 'assignedTo('{value}')', joined by 'and'",
                ));
            }
        }
        Ok(out)
    }
}

/// What a List Role Definitions `$filter` asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DefinitionFilter {
    /// `roleName eq '<name>'`.
    pub(crate) role_name: Option<String>,
    /// `type eq 'BuiltInRole'` or `type eq 'CustomRole'`.
    pub(crate) role_type: Option<String>,
}

impl DefinitionFilter {
    pub(crate) fn parse(filter: Option<&str>) -> Result<Self, ArmError> {
        let mut out = Self::default();
        let Some(text) = filter.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(out);
        };
        for term in split_and(text) {
            if let Some(name) = eq_term(term, "roleName") {
                out.role_name = Some(name);
            } else if let Some(kind) = eq_term(term, "type") {
                out.role_type = Some(kind);
            } else {
                return Err(unsupported_filter(
                    text,
                    "'roleName eq '{value}'' or 'type eq 'BuiltInRole'|'CustomRole''",
                ));
            }
        }
        Ok(out)
    }

    pub(crate) fn matches(&self, d: &RoleDefinition) -> bool {
        let az = d.to_az_json();
        self.role_name
            .as_deref()
            .is_none_or(|n| d.name.eq_ignore_ascii_case(n))
            && self.role_type.as_deref().is_none_or(|t| {
                az["roleType"]
                    .as_str()
                    .is_some_and(|r| r.eq_ignore_ascii_case(t))
            })
    }
}

fn unsupported_filter(text: &str, supported: &str) -> ArmError {
    ArmError::bad_request(
        "UnsupportedQuery",
        format!("The filter '{text}' is not supported. Supported filters are {supported}."),
    )
}

/// Splits at ` and ` outside quotes, case-insensitively.
fn split_and(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            quoted = !quoted;
        } else if !quoted
            && text.len() >= i + 5
            && text.is_char_boundary(i)
            && text.is_char_boundary(i + 5)
            && text[i..i + 5].eq_ignore_ascii_case(" and ")
        {
            terms.push(text[start..i].trim());
            start = i + 5;
            i += 5;
            continue;
        }
        i += 1;
    }
    terms.push(text[start..].trim());
    terms
}

/// `<field> eq '<value>'` → value.
fn eq_term(term: &str, field: &str) -> Option<String> {
    let rest = strip_prefix_ci(term, field)?.trim_start();
    let rest = strip_prefix_ci(rest, "eq")?.trim();
    quoted(rest)
}

/// `<function>('<value>')` → value.
fn call_term(term: &str, function: &str) -> Option<String> {
    let rest = strip_prefix_ci(term, function)?.trim();
    quoted(rest.strip_prefix('(')?.strip_suffix(')')?.trim())
}

fn quoted(text: &str) -> Option<String> {
    Some(text.strip_prefix('\'')?.strip_suffix('\'')?.to_owned())
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    (text.len() >= prefix.len()
        && text.is_char_boundary(prefix.len())
        && text[..prefix.len()].eq_ignore_ascii_case(prefix))
    .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_filters_parse_as_arm_writes_them() {
        assert_eq!(
            AssignmentFilter::parse(None).unwrap(),
            AssignmentFilter::default()
        );
        let f = AssignmentFilter::parse(Some("atScope() and principalId eq 'AB-12'")).unwrap();
        assert!(f.at_scope);
        assert_eq!(f.principal_id.as_deref(), Some("ab-12"));
        let f = AssignmentFilter::parse(Some("assignedTo('x y and z')")).unwrap();
        assert_eq!(f.principal_id.as_deref(), Some("x y and z"));
        let err = AssignmentFilter::parse(Some("roleDefinitionId eq 'x'")).unwrap_err();
        assert_eq!(err.code, "UnsupportedQuery");
    }

    #[test]
    fn definition_filters_match_name_and_type() {
        let f = DefinitionFilter::parse(Some("roleName eq 'owner'")).unwrap();
        let roles = entraflow_rbac::builtin_roles();
        let matched: Vec<_> = roles
            .iter()
            .filter(|d| f.matches(d))
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(matched, ["Owner"]);
        let custom = DefinitionFilter::parse(Some("type eq 'CustomRole'")).unwrap();
        assert!(roles.iter().all(|d| !custom.matches(d)));
        assert!(DefinitionFilter::parse(Some("name eq 'x'")).is_err());
    }

    #[test]
    fn definition_ids_carry_the_subscription_they_are_seen_from() {
        let account = Scope::storage_account("s1", "rg", "acct");
        assert_eq!(
            definition_id(&account, "g"),
            "/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions/g"
        );
        assert_eq!(
            definition_id(&Scope::root(), "g"),
            "/providers/Microsoft.Authorization/roleDefinitions/g"
        );
    }
}
