//! `entraflow role lint`: assignments broader or longer-lived than they need to be.
//!
//! A *project* is a blob container: in entraflow one training project keeps its
//! data and models in one container, so container scope is the natural boundary
//! of a job's identity. A principal assigned roles in several containers is one
//! identity shared by several projects: a leaked credential of one project reads
//! the others, and the audit log cannot tell the projects' jobs apart.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use time::OffsetDateTime;

use crate::assignment::{PrincipalType, RoleAssignment};
use crate::condition::Condition;
use crate::definition::{CompiledRole, RoleDefinition, RoleType};
use crate::error::Error;
use crate::scope::ScopeLevel;
use crate::store::RbacStore;

/// Lint settings.
#[derive(Debug, Clone, Copy)]
pub struct LintOptions {
    /// Assignments without expiry older than this many days are flagged.
    pub max_age_days: i64,
}

impl Default for LintOptions {
    fn default() -> Self {
        Self { max_age_days: 90 }
    }
}

/// The rule a finding comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LintRule {
    /// A role with data actions assigned at `/`, a subscription or a resource group.
    DataRoleAtBroadScope,
    /// A custom role with `*` in its actions is in use.
    WildcardActions,
    /// No expiry and older than `max_age_days`.
    NoExpiry,
    /// One principal holds roles in several projects (containers).
    SharedAcrossProjects,
    /// Expired: grants nothing, but clutters the store.
    Expired,
    /// The assignment's scope is no longer among its role's assignable scopes (the
    /// role was edited): it grants nothing.
    OutsideAssignableScopes,
    /// The stored condition does not pass validation (edited in by hand, or written
    /// before a limit existed): the assignment grants nothing.
    InvalidCondition,
    /// The principal is gone from the directory (Azure shows "Identity not found").
    OrphanedPrincipal,
    /// The principal id is an application's appId: tokens carry its service
    /// principal's object id, so the assignment grants nothing.
    AppIdAssignee,
    /// A group with no members: the assignment grants nothing today.
    EmptyGroup,
    /// The role grants data actions the audit log shows the principal never used
    /// at that scope in the window looked at.
    WiderThanUsed,
}

/// What the directory says a principal id is, for [`lint_principals`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryStatus {
    /// A user, service principal, or a group with members.
    Present,
    /// A group without members.
    EmptyGroup,
    /// An application's appId, with its service principal's object id if it has one.
    AppId(Option<String>),
    /// Not in the directory.
    Missing,
}

/// Lints assignments against the directory their principals live in.
pub fn lint_principals(
    assignments: &[RoleAssignment],
    lookup: impl Fn(&str) -> DirectoryStatus,
) -> Vec<Finding> {
    let mut by_principal: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for a in assignments {
        by_principal
            .entry(&a.principal_id)
            .or_default()
            .push(a.id());
    }
    let mut out = Vec::new();
    for (principal, ids) in by_principal {
        let (rule, severity, message) = match lookup(principal) {
            DirectoryStatus::Present => continue,
            DirectoryStatus::Missing => (
                LintRule::OrphanedPrincipal,
                Severity::Warning,
                format!(
                    "principal {principal} is not in the directory (deleted?); its {} assignment(s) grant nothing: delete them with `entraflow role assignment delete --assignee {principal}`",
                    ids.len()
                ),
            ),
            DirectoryStatus::AppId(sp) => (
                LintRule::AppIdAssignee,
                Severity::High,
                match sp {
                    Some(sp) => format!(
                        "{principal} is an appId, but tokens carry the service principal's object id {sp}: assign to --assignee {principal} (resolved) or --assignee-object-id {sp} instead"
                    ),
                    None => format!(
                        "{principal} is an appId without a service principal: create one with `entraflow ad sp create --id {principal}` and assign to it"
                    ),
                },
            ),
            DirectoryStatus::EmptyGroup => (
                LintRule::EmptyGroup,
                Severity::Info,
                format!("group {principal} has no members; its assignments grant nobody anything"),
            ),
        };
        out.push(Finding {
            rule,
            severity,
            principal_id: Some(principal.to_owned()),
            assignment_ids: ids,
            message,
        });
    }
    out
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Housekeeping.
    Info,
    /// Broader than needed.
    Warning,
    /// Far broader than needed.
    High,
}

/// One lint finding.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Which rule.
    pub rule: LintRule,
    /// How bad.
    pub severity: Severity,
    /// The principal concerned, if one.
    pub principal_id: Option<String>,
    /// ARM ids of the assignments concerned.
    pub assignment_ids: Vec<String>,
    /// What is wrong and what to do.
    pub message: String,
}

/// Lints every assignment in `store`.
pub fn lint(
    store: &RbacStore,
    now: OffsetDateTime,
    options: LintOptions,
) -> Result<Vec<Finding>, Error> {
    let snapshot = store.snapshot()?;
    Ok(lint_assignments(
        &snapshot.definitions,
        &snapshot.assignments,
        now,
        options,
    ))
}

/// Lints `assignments` against `definitions` (pure; what [`lint`] runs).
pub fn lint_assignments(
    definitions: &[RoleDefinition],
    assignments: &[RoleAssignment],
    now: OffsetDateTime,
    options: LintOptions,
) -> Vec<Finding> {
    let roles: HashMap<String, CompiledRole> = definitions
        .iter()
        .map(|d| (d.id.to_ascii_lowercase(), CompiledRole::new(d.clone())))
        .collect();
    let mut findings = Vec::new();
    let mut wildcard_users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut projects: BTreeMap<&str, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let max_age = time::Duration::days(options.max_age_days);

    for a in assignments {
        let Some(role) = roles.get(&a.role_definition_id.to_ascii_lowercase()) else {
            continue;
        };
        let def = &role.definition;
        if !def.assignable_at(&a.scope) {
            findings.push(Finding {
                rule: LintRule::OutsideAssignableScopes,
                severity: Severity::Warning,
                principal_id: Some(a.principal_id.clone()),
                assignment_ids: vec![a.id()],
                message: format!(
                    "'{}' for {} at {} grants nothing: the role is assignable only at or below {}; add the scope back to the role or delete the assignment",
                    def.name,
                    a.principal_id,
                    a.scope,
                    def.assignable_scopes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            });
            continue;
        }
        if let Some(Err(e)) = a.condition.as_deref().map(Condition::parse) {
            findings.push(Finding {
                rule: LintRule::InvalidCondition,
                severity: Severity::Warning,
                principal_id: Some(a.principal_id.clone()),
                assignment_ids: vec![a.id()],
                message: format!(
                    "'{}' for {} at {} grants nothing: its stored condition is invalid ({e}); delete the assignment and create it again with a valid condition",
                    def.name, a.principal_id, a.scope
                ),
            });
            continue;
        }
        if a.is_expired(now) {
            findings.push(Finding {
                rule: LintRule::Expired,
                severity: Severity::Info,
                principal_id: Some(a.principal_id.clone()),
                assignment_ids: vec![a.id()],
                message: format!(
                    "'{}' for {} at {} has expired and grants nothing; delete it with 'entraflow role assignment delete --ids {}'",
                    def.name, a.principal_id, a.scope, a.name
                ),
            });
            continue;
        }
        if def.has_data_actions() && a.scope.level() <= ScopeLevel::ResourceGroup {
            findings.push(Finding {
                rule: LintRule::DataRoleAtBroadScope,
                severity: Severity::High,
                principal_id: Some(a.principal_id.clone()),
                assignment_ids: vec![a.id()],
                message: format!(
                    "data role '{}' is assigned to {} at {} scope ({}): it reaches every storage account below; assign it at the storage account or, better, the container",
                    def.name,
                    a.principal_id,
                    a.scope.level().as_str(),
                    a.scope
                ),
            });
        }
        if def.role_type == RoleType::Custom && !role.wildcard_patterns().is_empty() {
            wildcard_users
                .entry(def.id.clone())
                .or_default()
                .push(a.id());
        }
        if a.expires_at.is_none() && now - a.created_at > max_age {
            findings.push(Finding {
                rule: LintRule::NoExpiry,
                severity: Severity::Warning,
                principal_id: Some(a.principal_id.clone()),
                assignment_ids: vec![a.id()],
                message: format!(
                    "'{}' for {} at {} has no expiry and is {} days old (limit {}); recreate it with --expires so access rotates",
                    def.name,
                    a.principal_id,
                    a.scope,
                    (now - a.created_at).whole_days(),
                    options.max_age_days
                ),
            });
        }
        if a.principal_type != PrincipalType::Group
            && let Some(container) = a.scope.container_name()
        {
            let project = format!("{}/{}", a.scope.account_name().unwrap_or(""), container)
                .to_ascii_lowercase();
            projects
                .entry(&a.principal_id)
                .or_default()
                .entry(project)
                .or_default()
                .push(a.id());
        }
    }

    for (role_id, ids) in wildcard_users {
        let role = &roles[&role_id.to_ascii_lowercase()];
        let patterns = role.wildcard_patterns();
        let bare = patterns.contains(&"*");
        findings.push(Finding {
            rule: LintRule::WildcardActions,
            severity: if bare { Severity::High } else { Severity::Warning },
            principal_id: None,
            assignment_ids: ids,
            message: format!(
                "custom role '{}' grants wildcard actions ({}) and is assigned; list the exact actions it needs, since a wildcard also grants actions Azure adds later",
                role.definition.name,
                patterns.join(", ")
            ),
        });
    }

    for (principal, by_project) in projects {
        if by_project.len() < 2 {
            continue;
        }
        let names: Vec<&str> = by_project.keys().map(String::as_str).collect();
        findings.push(Finding {
            rule: LintRule::SharedAcrossProjects,
            severity: Severity::Warning,
            principal_id: Some(principal.to_owned()),
            assignment_ids: by_project.values().flatten().cloned().collect(),
            message: format!(
                "principal {principal} holds roles in {} projects (containers {}); give each project its own identity so one leaked credential reaches one project and the audit log tells them apart",
                names.len(),
                names.join(", ")
            ),
        });
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    findings
}

#[cfg(test)]
mod principal_tests {
    use super::*;
    use crate::assignment::NewAssignment;

    #[test]
    fn assignments_to_missing_principals_app_ids_and_empty_groups_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let store = RbacStore::open(dir.path()).unwrap();
        let now = OffsetDateTime::now_utc();
        let scope = "/subscriptions/00000000-0000-0000-0000-000000000001";
        let ids = [
            "11111111-1111-1111-1111-111111111111",
            "22222222-2222-2222-2222-222222222222",
            "33333333-3333-3333-3333-333333333333",
            "44444444-4444-4444-4444-444444444444",
        ];
        for id in ids {
            store
                .create_assignment(
                    NewAssignment::new(id, "Storage Blob Data Reader", scope),
                    now,
                )
                .unwrap();
        }
        let findings = lint_principals(&store.assignments().unwrap(), |p| match p {
            p if p == ids[0] => DirectoryStatus::Present,
            p if p == ids[1] => DirectoryStatus::Missing,
            p if p == ids[2] => DirectoryStatus::AppId(Some("sp-oid".into())),
            _ => DirectoryStatus::EmptyGroup,
        });
        let got: Vec<(LintRule, &str)> = findings
            .iter()
            .map(|f| (f.rule, f.principal_id.as_deref().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (LintRule::OrphanedPrincipal, ids[1]),
                (LintRule::AppIdAssignee, ids[2]),
                (LintRule::EmptyGroup, ids[3]),
            ]
        );
        assert!(findings[1].message.contains("sp-oid"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assignment::NewAssignment;
    use crate::scope::Scope;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 0:00 UTC);
    const SP: &str = "11111111-1111-1111-1111-111111111111";
    const SP2: &str = "22222222-2222-2222-2222-222222222222";
    const GROUP: &str = "33333333-3333-3333-3333-333333333333";

    fn rules(findings: &[Finding]) -> Vec<(LintRule, Option<&str>)> {
        findings
            .iter()
            .map(|f| (f.rule, f.principal_id.as_deref()))
            .collect()
    }

    #[test]
    fn flags_each_rule_and_nothing_for_a_tidy_assignment() {
        let dir = tempfile::tempdir().unwrap();
        let store = RbacStore::open(dir.path()).unwrap();
        let account = Scope::storage_account("00000000-0000-0000-0000-000000000001", "ml", "data");
        let c = |n: &str| account.container(n).unwrap().to_string();
        let assign = |principal: &str,
                      role: &str,
                      scope: &str,
                      age_days: i64,
                      expires: Option<OffsetDateTime>| {
            let mut new = NewAssignment::new(principal, role, scope);
            new.expires_at = expires;
            if principal == GROUP {
                new.principal_type = PrincipalType::Group;
            }
            store
                .create_assignment(new, NOW - time::Duration::days(age_days))
                .unwrap()
        };
        let soon = Some(NOW + time::Duration::days(10));
        // Tidy: container scope, expires, young.
        assign(SP2, "Storage Blob Data Reader", &c("aaa"), 1, soon);
        assert!(
            lint(&store, NOW, LintOptions::default())
                .unwrap()
                .is_empty()
        );

        let broad = assign(
            SP,
            "Storage Blob Data Reader",
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ml",
            1,
            soon,
        );
        assign(
            SP,
            "Owner",
            "/subscriptions/00000000-0000-0000-0000-000000000001",
            1,
            soon,
        ); // no data actions: not a broad data role
        let old = assign(SP2, "Storage Blob Data Contributor", &c("bbb"), 200, None);
        assign(GROUP, "Storage Blob Data Reader", &c("aaa"), 1, soon);
        assign(GROUP, "Storage Blob Data Reader", &c("bbb"), 1, soon);
        let wild = RoleDefinition::from_json(
            r#"{"Name":"Everything","DataActions":["*"],"AssignableScopes":["/"]}"#,
        )
        .unwrap();
        store.create_definition(wild).unwrap();
        let wild_a = assign(SP, "Everything", &c("zzz"), 1, soon);
        assign(
            SP,
            "Storage Blob Data Reader",
            &c("yyy"),
            2,
            Some(NOW - time::Duration::days(1)),
        );

        let findings = lint(&store, NOW, LintOptions { max_age_days: 90 }).unwrap();
        let got = rules(&findings);
        assert!(
            got.contains(&(LintRule::DataRoleAtBroadScope, Some(SP))),
            "{got:?}"
        );
        assert!(got.contains(&(LintRule::NoExpiry, Some(SP2))), "{got:?}");
        assert!(got.contains(&(LintRule::WildcardActions, None)), "{got:?}");
        assert!(
            got.contains(&(LintRule::SharedAcrossProjects, Some(SP2))),
            "{got:?}"
        );
        assert!(got.contains(&(LintRule::Expired, Some(SP))), "{got:?}");
        // SP's live container assignment is only 'z' (the 'y' one expired): not shared.
        assert!(
            !got.contains(&(LintRule::SharedAcrossProjects, Some(SP))),
            "{got:?}"
        );
        // Groups spanning projects are normal (a team), not flagged.
        assert!(
            !got.contains(&(LintRule::SharedAcrossProjects, Some(GROUP))),
            "{got:?}"
        );
        assert_eq!(got.len(), 5, "{findings:#?}");
        let by_rule = |r| findings.iter().find(|f| f.rule == r).unwrap();
        assert_eq!(
            by_rule(LintRule::DataRoleAtBroadScope).assignment_ids,
            [broad.id()]
        );
        assert_eq!(by_rule(LintRule::NoExpiry).assignment_ids, [old.id()]);
        assert_eq!(
            by_rule(LintRule::WildcardActions).assignment_ids,
            [wild_a.id()]
        );
        assert_eq!(by_rule(LintRule::WildcardActions).severity, Severity::High);
        assert!(by_rule(LintRule::NoExpiry).message.contains("200 days old"));
        assert_eq!(findings[0].severity, Severity::High);
        // A longer limit clears the age finding.
        let relaxed = lint(&store, NOW, LintOptions { max_age_days: 365 }).unwrap();
        assert!(!rules(&relaxed).contains(&(LintRule::NoExpiry, Some(SP2))));
    }
}
