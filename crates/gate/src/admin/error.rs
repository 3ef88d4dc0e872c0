//! Errors as Azure Resource Manager words them: a status and
//! `{"error": {"code": "...", "message": "...", "target": "..."}}`, so ARM clients
//! (az, the Azure SDKs' management libraries) surface them as they would Azure's.

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use entraflow_rbac::{Denial, DenialReason};

use crate::verify::{ARM_AUDIENCES, AuthError};

/// An ARM error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArmError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// The request field at fault (`properties.condition`), when there is one.
    pub(crate) target: Option<&'static str>,
    /// `WWW-Authenticate` of 401s.
    pub(crate) challenge: Option<String>,
}

impl ArmError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            target: None,
            challenge: None,
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn target(mut self, field: &'static str) -> Self {
        self.target = Some(field);
        self
    }

    pub(crate) fn into_response(self) -> Response {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let Some(target) = self.target {
            error["target"] = target.into();
        }
        let mut response = super::json(self.status, &serde_json::json!({ "error": error }));
        if let Some(challenge) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert("www-authenticate", challenge);
        }
        response
    }

    /// 401 for a token the admin API does not accept, in ARM's codes.
    pub(crate) fn authentication(err: &AuthError, challenge: &str) -> Self {
        let (code, message) = match err {
            AuthError::Missing => (
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing. Send 'Authorization: Bearer <token>' with an Entra ID token for https://management.azure.com/.default.".to_owned(),
            ),
            AuthError::KeyBasedNotPermitted => (
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format; the admin API accepts only Entra ID bearer tokens.".to_owned(),
            ),
            AuthError::Audience(aud) => (
                "InvalidAuthenticationTokenAudience",
                format!(
                    "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences {}. Request a token for https://management.azure.com/.default.",
                    allowed_audiences()
                ),
            ),
            AuthError::Expired => (
                "ExpiredAuthenticationToken",
                "The access token has expired. Get a new token for https://management.azure.com/.default and try again.".to_owned(),
            ),
            AuthError::Issuer(_) => (
                "InvalidAuthenticationTokenTenant",
                format!("The access token is from a tenant this gate does not trust. {err}"),
            ),
            other => (
                "InvalidAuthenticationToken",
                format!("The access token is invalid. {other}"),
            ),
        };
        let description = message.replace('"', "'");
        let mut error = Self::new(StatusCode::UNAUTHORIZED, code, message);
        error.challenge = Some(format!(
            "{challenge}, error=\"invalid_token\", error_description=\"{description}\""
        ));
        error
    }

    /// 403 `AuthorizationFailed`, worded as ARM words it, plus which roles would grant
    /// the action and why the caller's own assignments did not.
    pub(crate) fn authorization_failed(denial: &Denial) -> Self {
        let oid = &denial.principal_id;
        let mut message = format!(
            "The client '{oid}' with object id '{oid}' does not have authorization to perform action '{}' over scope '{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            denial.action, denial.scope
        );
        match &denial.reason {
            DenialReason::Expired { assignment_ids } => message.push_str(&format!(
                " The role assignment {} would grant it, but it has expired.",
                assignment_ids.join(", ")
            )),
            DenialReason::ConditionNotMet { assignment_ids } => message.push_str(&format!(
                " The role assignment {} grants it, but its condition is false for this request.",
                assignment_ids.join(", ")
            )),
            _ => {}
        }
        let roles: Vec<String> = denial
            .suggestions
            .iter()
            .take(3)
            .map(|s| format!("'{}' ({})", s.name, s.id))
            .collect();
        if !roles.is_empty() {
            message.push_str(&format!(
                " A role assignment of {} at this scope or above grants it.",
                roles.join(" or ")
            ));
        }
        Self::new(StatusCode::FORBIDDEN, "AuthorizationFailed", message)
    }

    /// A role store error, as ARM reports the same mistakes.
    pub(crate) fn from_rbac(err: entraflow_rbac::Error) -> Self {
        use entraflow_rbac::Error as E;
        let text = err.to_string();
        match err {
            E::UnknownRole { reference } => Self::bad_request(
                "RoleDefinitionDoesNotExist",
                format!("The specified role definition with ID '{reference}' does not exist. List the roles with GET <scope>/providers/Microsoft.Authorization/roleDefinitions."),
            )
            .target("properties.roleDefinitionId"),
            E::InvalidScope(e) => Self::bad_request("InvalidScope", e.to_string()),
            E::InvalidCondition(e) => Self::bad_request(
                "InvalidCondition",
                format!(
                    "The condition is invalid: {e} (character offset {}).\n{}",
                    e.offset,
                    e.excerpt()
                ),
            )
            .target("properties.condition"),
            E::UnsupportedConditionVersion { .. } | E::VersionWithoutCondition => {
                Self::bad_request("InvalidConditionVersion", text)
                    .target("properties.conditionVersion")
            }
            E::NotAssignable { .. } => Self::bad_request("RoleNotAssignableAtScope", text),
            E::InvalidPrincipalId { .. } => {
                Self::bad_request("InvalidPrincipalId", text).target("properties.principalId")
            }
            E::ExpiryInPast { .. } | E::InvalidExpiry { .. } => {
                Self::bad_request("InvalidExpiresOn", text).target("properties.expiresOn")
            }
            E::AssignmentExists { .. } => {
                Self::new(StatusCode::CONFLICT, "RoleAssignmentExists", text)
            }
            E::DuplicateAssignment { existing } => Self::new(
                StatusCode::CONFLICT,
                "RoleAssignmentExists",
                format!(
                    "The role assignment already exists. The ID of the existing role assignment is {}.",
                    existing.name
                ),
            ),
            E::RoleInUse { .. } => {
                Self::new(StatusCode::CONFLICT, "RoleDefinitionHasAssignments", text)
            }
            E::InvalidAssignmentName { value } => invalid_assignment_id(&value),
            E::DuplicateRole { .. } => {
                Self::new(StatusCode::CONFLICT, "RoleDefinitionWithSameNameExists", text)
            }
            E::DefinitionChanged { .. } => {
                Self::new(StatusCode::CONFLICT, "RoleDefinitionChanged", text)
            }
            E::BuiltInRole { .. } => Self::new(StatusCode::FORBIDDEN, "BuiltInRoleCannotBeChanged", text),
            E::InvalidDefinition(e) => Self::bad_request("InvalidRoleDefinition", e.to_string()),
            other => {
                tracing::error!(error = %other, "role store failed");
                if let Some(cause) = entraflow_core::fsutil::no_room(&other) {
                    // ARM's shape for a passing server-side failure; the client retries.
                    return Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "ServiceUnavailable",
                        format!("The role store (rbac.db) has no room for this change ({cause}); nothing was changed. Free space in the gate's data directory and retry."),
                    );
                }
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    "The role store failed; see the gate's log. Retry the request.",
                )
            }
        }
    }
}

/// 400 `InvalidRoleAssignmentId`: assignment names are GUIDs.
pub(crate) fn invalid_assignment_id(value: &str) -> ArmError {
    ArmError::bad_request(
        "InvalidRoleAssignmentId",
        format!(
            "The role assignment ID '{value}' is not valid. The role assignment ID must be a GUID."
        ),
    )
}

fn allowed_audiences() -> String {
    ARM_AUDIENCES
        .iter()
        .flat_map(|a| [format!("'{a}'"), format!("'{}'", a.trim_end_matches('/'))])
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_errors_list_every_arm_spelling() {
        let err = ArmError::authentication(
            &AuthError::Audience("https://storage.azure.com".into()),
            "Bearer authorization_uri=x",
        );
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        assert_eq!(err.code, "InvalidAuthenticationTokenAudience");
        for aud in [
            "'https://management.azure.com/'",
            "'https://management.azure.com'",
            "'https://management.core.windows.net/'",
            "'https://management.core.windows.net'",
            "'https://storage.azure.com'",
        ] {
            assert!(err.message.contains(aud), "{aud}: {}", err.message);
        }
        assert!(err.challenge.unwrap().contains("error=\"invalid_token\""));
        let missing = ArmError::authentication(&AuthError::Missing, "Bearer x");
        assert_eq!(missing.code, "AuthenticationFailed");
    }

    #[test]
    fn condition_errors_carry_the_position() {
        let cond = entraflow_rbac::Condition::parse("(@Resource[x] StringLike").unwrap_err();
        let err = ArmError::from_rbac(entraflow_rbac::Error::InvalidCondition(cond.clone()));
        assert_eq!(err.code, "InvalidCondition");
        assert_eq!(err.target, Some("properties.condition"));
        assert!(
            err.message.contains(&format!("column {}", cond.column)),
            "{}",
            err.message
        );
        assert!(
            err.message.contains(&format!("offset {}", cond.offset)),
            "{}",
            err.message
        );
    }
}
