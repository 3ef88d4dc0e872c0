//! The errors of role management (the decision itself never fails: it denies).

use std::path::PathBuf;

use thiserror::Error;

use crate::assignment::RoleAssignment;
use crate::condition::ConditionError;
use crate::definition::DefinitionError;
use crate::scope::ScopeError;

/// Why a role store operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The data directory cannot be created.
    #[error("cannot create the data directory {path}: {source}; choose a writable --data-dir")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite failed (cannot open, locked for too long, disk full, ...).
    #[error(
        "cannot use the role store {path}: {source}; check that the data directory exists and is writable"
    )]
    Storage {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored record no longer parses (edited by hand, or written by a newer version).
    #[error(
        "the role store {path} holds a record entraflow cannot read ({detail}); fix or delete that row"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which record and what is wrong.
        detail: String,
    },
    /// The store's schema cannot be brought to this version's.
    #[error("the role store {path}: {detail}")]
    Schema {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No role has that name, GUID or ARM id.
    #[error(
        "no role named or with id '{reference}'; run 'entraflow role definition list' to see the roles, or create one with 'entraflow role definition create'"
    )]
    UnknownRole {
        /// The reference as given.
        reference: String,
    },
    /// The scope is malformed.
    #[error(transparent)]
    InvalidScope(#[from] ScopeError),
    /// The condition does not parse.
    #[error(transparent)]
    InvalidCondition(#[from] ConditionError),
    /// A condition version other than 2.0.
    #[error(
        "condition version '{version}' is not supported; Azure Storage conditions use version 2.0"
    )]
    UnsupportedConditionVersion {
        /// The version as given.
        version: String,
    },
    /// A condition version without a condition.
    #[error(
        "a condition version was given without a condition; add --condition or drop the version"
    )]
    VersionWithoutCondition,
    /// The role's assignable scopes do not contain the scope.
    #[error(
        "role '{role}' cannot be assigned at {scope}: it is assignable only at or below {assignable}; add the scope to its AssignableScopes"
    )]
    NotAssignable {
        /// Role name.
        role: String,
        /// The requested scope.
        scope: String,
        /// The role's assignable scopes, comma-separated.
        assignable: String,
    },
    /// The principal id is not an object id.
    #[error(
        "'{value}' is not an object id; give the GUID of the service principal, user, managed identity or group (the token's 'oid' claim)"
    )]
    InvalidPrincipalId {
        /// The id as given.
        value: String,
    },
    /// No assignment has that id.
    #[error(
        "no role assignment '{id}'; run 'entraflow role assignment list' to see assignment ids"
    )]
    AssignmentNotFound {
        /// The id as given.
        id: String,
    },
    /// Built-in roles are Azure's and cannot be changed.
    #[error("'{name}' is a built-in role and cannot be changed; create a custom role instead")]
    BuiltInRole {
        /// The role's name.
        name: String,
    },
    /// The role was changed by someone else after the caller read it.
    #[error(
        "role '{name}' was changed by someone else meanwhile; read it again and repeat the update"
    )]
    DefinitionChanged {
        /// The role's name.
        name: String,
    },
    /// An assignment with that GUID exists already.
    #[error(
        "a role assignment named '{id}' already exists; choose another GUID, or delete that assignment first"
    )]
    AssignmentExists {
        /// The GUID.
        id: String,
    },
    /// The principal already holds the role at the scope (ARM's 409
    /// `RoleAssignmentExists`); the existing assignment is returned.
    #[error(
        "RoleAssignmentExists: the role assignment already exists. The ID of the existing role assignment is {}.",
        existing.name
    )]
    DuplicateAssignment {
        /// The assignment that already grants it.
        existing: Box<RoleAssignment>,
    },
    /// A custom role still used by assignments cannot be deleted (ARM refuses
    /// with `RoleDefinitionHasAssignments`).
    #[error(
        "role '{name}' is used by {count} role assignment(s) ({ids}); delete them first with `entraflow role assignment delete --ids ...`"
    )]
    RoleInUse {
        /// The role's name.
        name: String,
        /// How many assignments use it.
        count: usize,
        /// Their ids (the first few).
        ids: String,
    },
    /// An assignment name that is not a GUID.
    #[error(
        "role assignment name '{value}' is not a GUID; name assignments by GUID, as Azure does"
    )]
    InvalidAssignmentName {
        /// The name as given.
        value: String,
    },
    /// A role of that name or id exists.
    #[error(
        "a role named '{name}' or with id {id} already exists; choose another name, or omit the id"
    )]
    DuplicateRole {
        /// The role name.
        name: String,
        /// The role id.
        id: String,
    },
    /// The role definition document is invalid.
    #[error(transparent)]
    InvalidDefinition(#[from] DefinitionError),
    /// The expiry is not in the future.
    #[error(
        "the expiry {expires_at} is not in the future; an assignment that is already expired would grant nothing"
    )]
    ExpiryInPast {
        /// The expiry given.
        expires_at: String,
    },
    /// The expiry is neither a time nor a duration.
    #[error(
        "'{value}' is not an expiry; give an RFC 3339 time such as 2026-12-31T00:00:00Z or a duration such as 30d, 12h, 90m, 2w"
    )]
    InvalidExpiry {
        /// The value as given.
        value: String,
    },
}
