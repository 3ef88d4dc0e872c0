//! Azure RBAC, natively: the authorization model the gate applies to every
//! Blob request, with Azure's own role definitions, scopes, role assignments and
//! ABAC conditions, so that what is granted here means what it means in Azure.
//!
//! How a decision is made (as Azure makes it):
//! - a request is an *action* (`.../containers/blobs/read`) on a *scope*
//!   (`/subscriptions/.../containers/train`), by a *principal* (the token's `oid`)
//!   who may belong to *groups* (the token's `groups`);
//! - it is allowed when some assignment of the principal or one of its groups
//!   has a scope that contains the request's scope, a role whose
//!   `DataActions − NotDataActions` (or `Actions − NotActions`) match the action,
//!   no expiry in the past, and a condition that holds for the request;
//! - otherwise it is denied, and the [`Denial`] names the principal, the action,
//!   the scope and the roles that would grant it.
//!
//! This crate is for deciding and for managing the assignments
//! ([`RbacStore`], `<data-dir>/rbac.db`). It is not an HTTP server (the gate maps
//! Blob operations to actions and denials to `403 AuthorizationPermissionMismatch`),
//! it does not verify tokens, and it does not write the audit log.
//!
//! ```
//! use entraflow_rbac::{action, Authorizer, NewAssignment, Principal, Request, Scope};
//! # let dir = tempfile::tempdir().unwrap();
//! let now = time::OffsetDateTime::now_utc();
//! let authorizer = Authorizer::open(dir.path()).unwrap();
//! let account = Scope::storage_account("00000000-0000-0000-0000-000000000001", "ml", "data");
//! let job = "11111111-1111-1111-1111-111111111111";
//! authorizer
//!     .store()
//!     .create_assignment(
//!         NewAssignment::new(job, "Storage Blob Data Reader", account.container("train").unwrap().as_str()),
//!         now,
//!     )
//!     .unwrap();
//! authorizer.refresh().unwrap();
//!
//! let read = |container: &str| {
//!     Request::data(action::blob::READ, account.container(container).unwrap()).with_blob("x.tfrecord")
//! };
//! assert!(authorizer.authorize(&Principal::new(job), &read("train"), now).is_allowed());
//! let denied = authorizer.authorize(&Principal::new(job), &read("eval"), now);
//! assert!(!denied.is_allowed());
//! ```
#![forbid(unsafe_code)]

pub mod action;
mod assignment;
mod authorizer;
mod condition;
mod decision;
mod definition;
mod error;
mod lint;
mod scope;
mod store;
mod suggest;

pub use assignment::{
    CONDITION_VERSION, NewAssignment, PrincipalType, RoleAssignment, parse_expiry,
};
pub use authorizer::{Authorizer, DEFAULT_REFRESH_INTERVAL};
pub use condition::{Condition, ConditionError, MAX_CONDITION_LEN};
pub use decision::{Decision, Denial, DenialReason, Principal, Request, RoleSuggestion};
pub use definition::{
    ActionKind, DefinitionError, Permission, RoleDefinition, RoleType, builtin, builtin_roles,
    role_definition_arm_id,
};
pub use error::Error;
pub use lint::{
    DirectoryStatus, Finding, LintOptions, LintRule, Severity, lint, lint_assignments,
    lint_principals,
};
pub use scope::{
    AUDIT_PROVIDER, Scope, ScopeError, ScopeLevel, valid_account_name, valid_container_name,
};
pub use store::{AssignmentFilter, DB_FILE, RbacStore};
pub use suggest::{
    CheckReport, Narrowness, Observed, SuggestedAssignment, check, lint_usage, narrower_than,
    suggest,
};
