//! Requests, principals, and the allow/deny decision with an explanation.

use std::fmt;
use std::sync::Arc;

use crate::condition::Attributes;
use crate::definition::ActionKind;
use crate::scope::Scope;

/// Who is asking: the token's `oid`, its `appid`/`azp`, and its `groups`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// Object id (`oid` claim).
    pub object_id: String,
    /// Application id (`appid` or `azp`), shown in denials.
    pub app_id: Option<String>,
    /// Group object ids (`groups` claim); assignments to these groups apply.
    pub group_ids: Vec<String>,
}

impl Principal {
    /// A principal with no groups.
    pub fn new(object_id: impl Into<String>) -> Self {
        Self {
            object_id: object_id.into(),
            ..Self::default()
        }
    }

    /// Sets the application id.
    pub fn with_app_id(mut self, app_id: impl Into<String>) -> Self {
        self.app_id = Some(app_id.into());
        self
    }

    /// Sets the group ids.
    pub fn with_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.group_ids = groups.into_iter().map(Into::into).collect();
        self
    }
}

/// What is being done, to what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The operation, e.g. [`crate::action::blob::READ`].
    pub action: String,
    /// Data action (blobs) or control-plane action (containers, role assignments).
    pub kind: ActionKind,
    /// The resource's scope: the container's scope for blob operations.
    pub scope: Scope,
    /// Blob path inside the container (`@Resource[...blobs:path]`).
    pub blob_path: Option<String>,
    /// Sub-operation, e.g. `Blob.List` for List Blobs.
    pub sub_operation: Option<String>,
    /// List Blobs' `prefix` (`@Request[...blobs:prefix]`).
    pub list_prefix: Option<String>,
    /// The blob's index tags (`@Resource[...blobs/tags:<key><$key_case_sensitive$>]`).
    pub resource_tags: Option<Vec<(String, String)>>,
    /// The tags the request sets (`x-ms-tags`, `@Request[...blobs/tags:...]`).
    pub request_tags: Option<Vec<(String, String)>>,
}

impl Request {
    /// A data action (role definitions' `DataActions`) at `scope`.
    pub fn data(action: impl Into<String>, scope: Scope) -> Self {
        Self {
            action: action.into(),
            kind: ActionKind::Data,
            scope,
            blob_path: None,
            sub_operation: None,
            list_prefix: None,
            resource_tags: None,
            request_tags: None,
        }
    }

    /// A control-plane action (role definitions' `Actions`) at `scope`.
    pub fn control(action: impl Into<String>, scope: Scope) -> Self {
        Self {
            kind: ActionKind::Control,
            ..Self::data(action, scope)
        }
    }

    /// Sets the blob path.
    pub fn with_blob(mut self, path: impl Into<String>) -> Self {
        self.blob_path = Some(path.into());
        self
    }

    /// Sets the sub-operation (`Blob.List`).
    pub fn with_sub_operation(mut self, sub_operation: impl Into<String>) -> Self {
        self.sub_operation = Some(sub_operation.into());
        self
    }

    /// Sets List Blobs' prefix.
    pub fn with_list_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.list_prefix = Some(prefix.into());
        self
    }

    /// Sets the blob's index tags, for conditions on them.
    pub fn with_resource_tags(mut self, tags: Vec<(String, String)>) -> Self {
        self.resource_tags = Some(tags);
        self
    }

    /// Sets the tags the request writes, for conditions on them.
    pub fn with_request_tags(mut self, tags: Vec<(String, String)>) -> Self {
        self.request_tags = Some(tags);
        self
    }

    /// The container name, from the scope.
    pub fn container(&self) -> Option<&str> {
        self.scope.container_name()
    }

    pub(crate) fn action_lower(&self) -> String {
        self.action.to_ascii_lowercase()
    }

    pub(crate) fn attributes<'a>(&'a self, action_lower: &'a str) -> Attributes<'a> {
        Attributes {
            action_lower,
            sub_operation: self.sub_operation.as_deref(),
            container: self.container(),
            blob_path: self.blob_path.as_deref(),
            list_prefix: self.list_prefix.as_deref(),
            resource_tags: self.resource_tags.as_deref(),
            request_tags: self.request_tags.as_deref(),
        }
    }
}

/// The outcome of an authorization check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An assignment grants the request.
    Allow {
        /// ARM id of the granting assignment (for the audit log).
        assignment_id: Arc<str>,
        /// Name of the granting role.
        role_name: Arc<str>,
        /// Scope of the granting assignment.
        scope: Scope,
        /// The principal id the assignment names: the caller's oid or one of its groups.
        granted_to: Arc<str>,
    },
    /// Nothing grants it (deny by default).
    Deny(Denial),
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// A role that would grant a denied request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSuggestion {
    /// Role GUID.
    pub id: String,
    /// Role name.
    pub name: String,
}

/// Why assignments that name the action did not grant it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenialReason {
    /// No assignment of the principal or its groups grants the action at this scope.
    NoAssignment,
    /// Assignments would grant it, but they have expired.
    Expired {
        /// Their ARM ids.
        assignment_ids: Vec<String>,
    },
    /// Assignments grant the action, but their conditions are false for this request.
    ConditionNotMet {
        /// Their ARM ids.
        assignment_ids: Vec<String>,
    },
}

/// A denial that says who, what, where, and which role would have granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The caller's object id.
    pub principal_id: String,
    /// The caller's application id, if known.
    pub app_id: Option<String>,
    /// The action denied.
    pub action: String,
    /// Data or control action.
    pub kind: ActionKind,
    /// The resource scope.
    pub scope: Scope,
    /// Why nothing granted it.
    pub reason: DenialReason,
    /// Roles that grant the action, least privileged built-ins first.
    pub suggestions: Vec<RoleSuggestion>,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "principal {}", self.principal_id)?;
        if let Some(app) = &self.app_id {
            write!(f, " (appid {app})")?;
        }
        write!(
            f,
            " has no role assignment granting {} on {}",
            self.action, self.scope
        )?;
        match &self.reason {
            DenialReason::NoAssignment => {}
            DenialReason::Expired { assignment_ids } => write!(
                f,
                " (assignment {} would, but it has expired)",
                assignment_ids.join(", ")
            )?,
            DenialReason::ConditionNotMet { assignment_ids } => write!(
                f,
                " (assignment {} grants it, but its condition is false for this request)",
                assignment_ids.join(", ")
            )?,
        }
        match self.suggestions.as_slice() {
            [] => write!(f, "; no known role grants this action"),
            suggestions => {
                f.write_str("; assign ")?;
                for (i, s) in suggestions.iter().take(3).enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    write!(f, "'{}' ({})", s.name, s.id)?;
                }
                f.write_str(" at this scope or above")
            }
        }
    }
}

impl std::error::Error for Denial {}
