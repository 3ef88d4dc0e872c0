//! Role assignments: who holds which role at which scope, under which condition,
//! until when.

use std::fmt;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::scope::Scope;

/// What kind of directory object a principal id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalType {
    /// An application's service principal (client credentials, certificates, workload identity).
    ServicePrincipal,
    /// A person.
    User,
    /// A security group; members get the assignment through the token's `groups` claim.
    Group,
    /// A managed identity (Azure lists these as `ServicePrincipal`).
    ManagedIdentity,
}

impl PrincipalType {
    /// The spelling az uses in `principalType`.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::ServicePrincipal => "ServicePrincipal",
            PrincipalType::User => "User",
            PrincipalType::Group => "Group",
            PrincipalType::ManagedIdentity => "ManagedIdentity",
        }
    }

    /// Parses az's spelling, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::ServicePrincipal,
            Self::User,
            Self::Group,
            Self::ManagedIdentity,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for PrincipalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The only condition version Azure accepts for data-plane conditions.
pub const CONDITION_VERSION: &str = "2.0";

/// A stored role assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    /// The assignment's GUID (az's `name`).
    pub name: String,
    /// Object id of the principal (service principal, user, managed identity or group).
    pub principal_id: String,
    /// What the principal is.
    pub principal_type: PrincipalType,
    /// GUID of the role definition.
    pub role_definition_id: String,
    /// Where the assignment applies (and everything below).
    pub scope: Scope,
    /// ABAC condition (version 2.0), if any.
    pub condition: Option<String>,
    /// `2.0` when there is a condition.
    pub condition_version: Option<String>,
    /// After this instant the assignment grants nothing.
    pub expires_at: Option<OffsetDateTime>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// Free text: why the assignment exists.
    pub description: Option<String>,
}

impl RoleAssignment {
    /// The ARM id az prints: `<scope>/providers/Microsoft.Authorization/roleAssignments/<guid>`.
    pub fn id(&self) -> String {
        assignment_arm_id(&self.scope, &self.name)
    }

    /// True when the assignment has expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// The assignment as az prints it, with entraflow's `expiresAt` added.
    pub fn to_az_json(&self, role_name: Option<&str>) -> Value {
        serde_json::json!({
            "condition": self.condition,
            "conditionVersion": self.condition_version,
            "createdOn": rfc3339(self.created_at),
            "description": self.description,
            "expiresAt": self.expires_at.map(rfc3339),
            "id": self.id(),
            "name": self.name,
            "principalId": self.principal_id,
            "principalType": self.principal_type.as_str(),
            "roleDefinitionId": crate::definition::role_definition_arm_id(&self.role_definition_id),
            "roleDefinitionName": role_name,
            "scope": self.scope.as_str(),
            "type": "Microsoft.Authorization/roleAssignments",
        })
    }
}

pub(crate) fn assignment_arm_id(scope: &Scope, name: &str) -> String {
    let base = if scope.as_str() == "/" {
        ""
    } else {
        scope.as_str()
    };
    format!("{base}/providers/Microsoft.Authorization/roleAssignments/{name}")
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// What to create. The role may be named (`Storage Blob Data Reader`), or given by
/// GUID or ARM id.
#[derive(Debug, Clone)]
pub struct NewAssignment {
    /// Object id of the principal.
    pub principal_id: String,
    /// What the principal is.
    pub principal_type: PrincipalType,
    /// Role name, GUID or `/providers/Microsoft.Authorization/roleDefinitions/<guid>`.
    pub role: String,
    /// Scope string; parsed and normalised on create.
    pub scope: String,
    /// Optional ABAC condition.
    pub condition: Option<String>,
    /// Condition version; defaults to `2.0` when a condition is given.
    pub condition_version: Option<String>,
    /// Optional expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// Optional description.
    pub description: Option<String>,
}

impl NewAssignment {
    /// An assignment of `role` to a service principal at `scope`, without condition or expiry.
    pub fn new(
        principal_id: impl Into<String>,
        role: impl Into<String>,
        scope: impl Into<String>,
    ) -> Self {
        Self {
            principal_id: principal_id.into(),
            principal_type: PrincipalType::ServicePrincipal,
            role: role.into(),
            scope: scope.into(),
            condition: None,
            condition_version: None,
            expires_at: None,
            description: None,
        }
    }
}

/// Parses an expiry: an RFC 3339 instant (`2026-12-31T00:00:00Z`) or a duration from
/// `now` with a unit suffix: `90m`, `12h`, `30d`, `2w`.
pub fn parse_expiry(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, crate::Error> {
    let t = text.trim();
    if let Ok(at) = OffsetDateTime::parse(t, &Rfc3339) {
        return Ok(at);
    }
    let bad = || crate::Error::InvalidExpiry {
        value: text.to_owned(),
    };
    let unit_at = t.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = t.split_at(unit_at);
    let n: i64 = number.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(bad());
    }
    let d = match unit {
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        "w" => time::Duration::weeks(n),
        _ => return Err(bad()),
    };
    now.checked_add(d).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn expiry_accepts_instants_and_durations() {
        let now = datetime!(2026-01-01 0:00 UTC);
        assert_eq!(
            parse_expiry("30d", now).unwrap(),
            datetime!(2026-01-31 0:00 UTC)
        );
        assert_eq!(
            parse_expiry("12h", now).unwrap(),
            datetime!(2026-01-01 12:00 UTC)
        );
        assert_eq!(
            parse_expiry("90m", now).unwrap(),
            datetime!(2026-01-01 1:30 UTC)
        );
        assert_eq!(
            parse_expiry("1w", now).unwrap(),
            datetime!(2026-01-08 0:00 UTC)
        );
        assert_eq!(
            parse_expiry("2026-06-01T10:00:00+02:00", now).unwrap(),
            datetime!(2026-06-01 8:00 UTC)
        );
        for bad in ["", "d", "30", "30y", "-1d", "0d", "tomorrow"] {
            let err = parse_expiry(bad, now).expect_err(bad).to_string();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn arm_ids_follow_azure() {
        let scope = Scope::parse("/subscriptions/s").unwrap();
        assert_eq!(
            assignment_arm_id(&scope, "g"),
            "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/g"
        );
        assert_eq!(
            assignment_arm_id(&Scope::root(), "g"),
            "/providers/Microsoft.Authorization/roleAssignments/g"
        );
    }
}
