//! `entraflow role suggest`: the narrowest assignments that would have allowed
//! exactly what a principal was seen doing, and the replay that proves it.
//!
//! The input is what the audit log recorded: each allowed request as the gate put
//! it to the authorizer (action, scope, blob path, List Blobs' prefix). For every
//! principal and scope the suggestion is one assignment: a built-in role when its
//! data actions are exactly those used, otherwise a custom role with only them;
//! and an ABAC condition that limits each data action to the path prefixes it was
//! used on (List Blobs to the prefixes it listed), as Azure's conditions write it.
//! [`check`] replays the requests against the suggestion alone.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use time::OffsetDateTime;

use crate::action::{self, blob::SUB_OPERATION_LIST};
use crate::assignment::{CONDITION_VERSION, PrincipalType, RoleAssignment};
use crate::authorizer::Index;
use crate::decision::{Decision, Principal, Request};
use crate::definition::{ActionKind, CompiledRole, Permission, RoleDefinition, RoleType};
use crate::lint::Finding;
use crate::scope::Scope;
use crate::store::Snapshot;

const PATH_ATTRIBUTE: &str =
    "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path]";
const PREFIX_ATTRIBUTE: &str =
    "@Request[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:prefix]";

/// A request the audit log shows `principal_id` made and was allowed.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Object id of the principal the token named.
    pub principal_id: String,
    /// The request as the gate put it to the authorizer.
    pub request: Request,
}

/// One suggested assignment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuggestedAssignment {
    /// Object id of the principal.
    pub principal_id: String,
    /// The scope the requests were made at (a container, or the account for List Containers).
    pub scope: Scope,
    /// The role: a built-in one, or a new custom role holding only what was used.
    #[serde(serialize_with = "as_az_json")]
    pub role: RoleDefinition,
    /// Whether [`Self::role`] must be created first (`az role definition create`).
    pub custom: bool,
    /// The ABAC condition (version 2.0) limiting data actions to the paths used.
    pub condition: Option<String>,
    /// Data actions the requests used.
    pub data_actions: Vec<String>,
    /// Control-plane actions the requests used.
    pub actions: Vec<String>,
    /// How many recorded requests it covers.
    pub requests: usize,
}

fn as_az_json<S: serde::Serializer>(role: &RoleDefinition, s: S) -> Result<S::Ok, S::Error> {
    role.to_az_json().serialize(s)
}

impl SuggestedAssignment {
    /// The assignment as the authorizer would store it, for a replay.
    fn as_assignment(&self, now: OffsetDateTime) -> RoleAssignment {
        RoleAssignment {
            name: uuid::Uuid::new_v4().to_string(),
            principal_id: self.principal_id.to_ascii_lowercase(),
            principal_type: PrincipalType::ServicePrincipal,
            role_definition_id: self.role.id.clone(),
            scope: self.scope.clone(),
            condition: self.condition.clone(),
            condition_version: self.condition.as_ref().map(|_| CONDITION_VERSION.into()),
            expires_at: None,
            created_at: now,
            description: None,
        }
    }
}

/// What one principal did at one scope.
#[derive(Default)]
struct Usage {
    /// Data action → blob paths it touched (non-list requests).
    paths: BTreeMap<String, BTreeSet<String>>,
    /// List Blobs' prefixes, when List Blobs was used.
    list_prefixes: Option<BTreeSet<String>>,
    control: BTreeSet<String>,
    requests: usize,
}

/// The narrowest assignments that allow every observed request; `builtins` are
/// the roles to prefer (Azure's, as [`crate::builtin_roles`] lists them).
pub fn suggest(observed: &[Observed], builtins: &[RoleDefinition]) -> Vec<SuggestedAssignment> {
    let mut usage: BTreeMap<(String, String), (Scope, Usage)> = BTreeMap::new();
    for o in observed {
        let scope = assignable_scope(&o.request);
        let key = (
            o.principal_id.to_ascii_lowercase(),
            scope.as_str().to_ascii_lowercase(),
        );
        let (_, u) = usage
            .entry(key)
            .or_insert_with(|| (scope, Usage::default()));
        u.requests += 1;
        let r = &o.request;
        match r.kind {
            ActionKind::Control => {
                u.control.insert(r.action.clone());
            }
            ActionKind::Data => {
                let paths = u.paths.entry(r.action.clone()).or_default();
                if r.sub_operation.as_deref() == Some(SUB_OPERATION_LIST) {
                    u.list_prefixes
                        .get_or_insert_with(BTreeSet::new)
                        .insert(r.list_prefix.clone().unwrap_or_default());
                } else if let Some(p) = &r.blob_path {
                    paths.insert(p.clone());
                }
            }
        }
    }
    let compiled: Vec<CompiledRole> = builtins
        .iter()
        .filter(|r| r.role_type == RoleType::BuiltIn && r.has_data_actions())
        .cloned()
        .map(CompiledRole::new)
        .collect();
    usage
        .into_iter()
        .map(|((principal, _), (scope, u))| {
            let data: BTreeSet<String> = u.paths.keys().cloned().collect();
            let role = compiled
                .iter()
                .find(|r| fits_exactly(r, &data, &u.control))
                .map(|r| (r.definition.clone(), false))
                .unwrap_or_else(|| (custom_role(&principal, &scope, &data, &u.control), true));
            SuggestedAssignment {
                condition: condition(&u),
                principal_id: principal,
                scope,
                role: role.0,
                custom: role.1,
                data_actions: data.into_iter().collect(),
                actions: u.control.into_iter().collect(),
                requests: u.requests,
            }
        })
        .collect()
}

/// Where an assignment allowing the request can be made: its own scope, but a
/// container's creation at the account (Azure cannot assign a role at the scope
/// of a container that does not exist yet).
fn assignable_scope(r: &Request) -> Scope {
    if r.kind == ActionKind::Control && r.action.eq_ignore_ascii_case(action::container::WRITE) {
        let account = r
            .scope
            .as_str()
            .rsplit_once("/blobServices/default/containers/")
            .and_then(|(account, _)| Scope::parse(account).ok());
        if let Some(account) = account {
            return account;
        }
    }
    r.scope.clone()
}

/// A built-in role fits when its data actions are exactly those used (none
/// unused) and it grants every control action used.
fn fits_exactly(role: &CompiledRole, data: &BTreeSet<String>, control: &BTreeSet<String>) -> bool {
    let granted: BTreeSet<String> = granted_data_actions(role);
    granted == data.iter().map(|a| a.to_ascii_lowercase()).collect()
        && control
            .iter()
            .all(|a| role.grants(ActionKind::Control, &a.to_ascii_lowercase()))
}

/// The gate's data actions a role grants, lower-cased.
fn granted_data_actions(role: &CompiledRole) -> BTreeSet<String> {
    action::DATA_ACTIONS
        .iter()
        .map(|a| a.to_ascii_lowercase())
        .filter(|a| role.grants(ActionKind::Data, a))
        .collect()
}

fn custom_role(
    principal: &str,
    scope: &Scope,
    data: &BTreeSet<String>,
    control: &BTreeSet<String>,
) -> RoleDefinition {
    // "container train", "databases/postgres": the last step of the scope.
    let place = scope
        .container_name()
        .map(|c| format!("container {c}"))
        .unwrap_or_else(|| {
            let mut steps = scope.as_str().rsplit('/');
            match (steps.next(), steps.next()) {
                (Some(name), Some(kind)) => format!("{kind}/{name}"),
                _ => scope.as_str().to_owned(),
            }
        });
    let short = principal.get(..8).unwrap_or(principal);
    RoleDefinition {
        id: uuid::Uuid::new_v4().to_string(),
        name: format!("Least privilege for {short} on {place}"),
        description: format!(
            "Suggested by entraflow role suggest from the audit log: only the actions {principal} used"
        ),
        role_type: RoleType::Custom,
        permissions: vec![Permission {
            actions: control.iter().cloned().collect(),
            data_actions: data.iter().cloned().collect(),
            ..Permission::default()
        }],
        assignable_scopes: vec![scope.clone()],
    }
}

/// Azure's condition shape: one clause per data action, each "not this action,
/// or on one of these paths"; List Blobs' clause tests the request's prefix.
fn condition(u: &Usage) -> Option<String> {
    let clause = |selector: String, tests: Vec<String>| {
        let mut text = format!("(\n (\n  !({selector})\n )");
        if !tests.is_empty() {
            text.push_str(&format!("\n OR\n (\n  {}\n )", tests.join("\n  OR\n  ")));
        }
        text + "\n)"
    };
    let mut clauses = Vec::new();
    for (action, paths) in &u.paths {
        // Only blob actions have a path to test (a database's connect has none).
        if !is_blob_action(action) {
            continue;
        }
        let is_read = action.eq_ignore_ascii_case(action::blob::READ);
        let selector = if is_read {
            format!(
                "ActionMatches{{'{action}'}} AND NOT SubOperationMatches{{'{SUB_OPERATION_LIST}'}}"
            )
        } else {
            format!("ActionMatches{{'{action}'}}")
        };
        // No path at all (a read used only to list): the clause alone refuses it.
        clauses.push(clause(selector, path_tests(paths)));
        if let (true, Some(prefixes)) = (is_read, &u.list_prefixes)
            && !prefixes.contains("")
        {
            // A listing of the whole container cannot be narrowed by prefix.
            let tests = outermost(prefixes)
                .into_iter()
                .map(|p| format!("{PREFIX_ATTRIBUTE} StringStartsWith {}", quoted(p)))
                .collect();
            clauses.push(clause(
                format!(
                    "ActionMatches{{'{action}'}} AND SubOperationMatches{{'{SUB_OPERATION_LIST}'}}"
                ),
                tests,
            ));
        }
    }
    (!clauses.is_empty()).then(|| clauses.join("\nAND\n"))
}

/// The prefixes no other one of them starts: `a/` covers `a/b-` and `a/c/`.
fn outermost(prefixes: &BTreeSet<String>) -> Vec<&str> {
    let mut kept: Vec<&str> = Vec::new();
    // In sorted order a prefix comes before everything it covers.
    for p in prefixes {
        if !kept.iter().any(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    kept
}

fn is_blob_action(action: &str) -> bool {
    action
        .to_ascii_lowercase()
        .starts_with("microsoft.storage/storageaccounts/blobservices/containers/blobs/")
}

/// `@Resource[...:path]` tests covering exactly the directories the paths are in
/// (a blob at the container's root by its name).
fn path_tests(paths: &BTreeSet<String>) -> Vec<String> {
    narrowest_prefixes(paths)
        .into_iter()
        .map(|m| match m {
            PathMatch::Prefix(p) => format!("{PATH_ATTRIBUTE} StringStartsWith {}", quoted(&p)),
            PathMatch::Exact(p) if p.contains('\'') => {
                format!("{PATH_ATTRIBUTE} StringStartsWith {}", quoted(&p))
            }
            PathMatch::Exact(p) => format!("{PATH_ATTRIBUTE} StringEquals {}", quoted(&p)),
        })
        .collect()
}

/// A condition string literal. Azure's grammar has no escape for `'`, so a
/// value holding one is cut before it: the test admits more, never less.
fn quoted(s: &str) -> String {
    format!("'{}'", s.split('\'').next().unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathMatch {
    Prefix(String),
    Exact(String),
}

/// Per top-level directory, the longest common directory of the paths in it;
/// blobs at the root are matched by name.
fn narrowest_prefixes(paths: &BTreeSet<String>) -> Vec<PathMatch> {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut out = Vec::new();
    for p in paths {
        match p.find('/') {
            Some(i) => groups.entry(&p[..=i]).or_default().push(p),
            None => out.push(PathMatch::Exact(p.clone())),
        }
    }
    for members in groups.values() {
        let mut common = members[0];
        for m in &members[1..] {
            let n = common
                .bytes()
                .zip(m.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            common = &common[..n];
        }
        // Back to the last directory boundary: a prefix ending mid-name would
        // admit siblings that only share the first letters.
        let dir = &common[..=common.rfind('/').expect("the group's key holds a '/'")];
        out.push(PathMatch::Prefix(dir.to_owned()));
    }
    out
}

/// What a replay of the observed requests against the suggestion found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// Requests replayed.
    pub replayed: usize,
    /// Requests the suggestion would deny: `(principal, action, resource)`.
    pub denials: Vec<(String, String, String)>,
    /// Data actions a suggested role grants that no replayed request used:
    /// `(principal, scope, action)`.
    pub unused: Vec<(String, String, String)>,
}

impl CheckReport {
    /// No denial and nothing unused.
    pub fn passed(&self) -> bool {
        self.denials.is_empty() && self.unused.is_empty()
    }
}

/// Replays `observed` against `suggestions` alone (plus the roles they use).
pub fn check(suggestions: &[SuggestedAssignment], observed: &[Observed]) -> CheckReport {
    let now = OffsetDateTime::now_utc();
    let index = index_of(suggestions, now);
    let mut used: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut report = CheckReport::default();
    for o in observed {
        report.replayed += 1;
        match index.authorize(&Principal::new(&o.principal_id), &o.request, now) {
            Decision::Allow { scope, .. } => {
                if o.request.kind == ActionKind::Data {
                    used.insert((
                        o.principal_id.to_ascii_lowercase(),
                        scope.as_str().to_ascii_lowercase(),
                        o.request.action.to_ascii_lowercase(),
                    ));
                }
            }
            Decision::Deny(_) => report.denials.push((
                o.principal_id.clone(),
                o.request.action.clone(),
                describe(&o.request),
            )),
        }
    }
    for s in suggestions {
        let role = CompiledRole::new(s.role.clone());
        for action in granted_data_actions(&role) {
            let key = (
                s.principal_id.to_ascii_lowercase(),
                s.scope.as_str().to_ascii_lowercase(),
                action.clone(),
            );
            if !used.contains(&key) {
                report
                    .unused
                    .push((s.principal_id.clone(), s.scope.as_str().into(), action));
            }
        }
    }
    report
}

/// Whether `narrower` allows nothing `wider` denies, and denies something it
/// allows: probed with every data action of the gate on every observed path and
/// on a path outside them.
pub fn narrower_than(
    suggestions: &[SuggestedAssignment],
    wider_assignments: &[RoleAssignment],
    definitions: &[RoleDefinition],
    observed: &[Observed],
) -> Narrowness {
    let now = OffsetDateTime::now_utc();
    let suggested = index_of(suggestions, now);
    let wider = Index::build(Snapshot {
        generation: 0,
        definitions: definitions.to_vec(),
        assignments: wider_assignments.to_vec(),
    });
    let mut result = Narrowness::default();
    let mut probes: BTreeSet<(String, String, Option<String>)> = BTreeSet::new();
    for o in observed {
        let scope = o.request.scope.as_str().to_owned();
        let principal = o.principal_id.to_ascii_lowercase();
        for path in [
            o.request.blob_path.clone(),
            Some("entraflow-probe/outside".into()),
        ] {
            probes.insert((principal.clone(), scope.clone(), path));
        }
    }
    for (principal, scope, path) in probes {
        let Ok(scope) = Scope::parse(&scope) else {
            continue;
        };
        for action in action::DATA_ACTIONS {
            let mut request = Request::data(*action, scope.clone());
            if let Some(p) = &path {
                request = request.with_blob(p.clone());
            }
            let who = Principal::new(&principal);
            let by_suggestion = suggested.authorize(&who, &request, now).is_allowed();
            let by_wider = wider.authorize(&who, &request, now).is_allowed();
            match (by_suggestion, by_wider) {
                (true, false) => result.wider_in_suggestion.push(describe(&request)),
                (false, true) => result.only_current.push(describe(&request)),
                _ => {}
            }
        }
    }
    result
}

/// The outcome of [`narrower_than`].
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Narrowness {
    /// Probes the current assignments allow and the suggestion denies.
    pub only_current: Vec<String>,
    /// Probes the suggestion allows and the current assignments deny (none, if it is narrower).
    pub wider_in_suggestion: Vec<String>,
}

impl Narrowness {
    /// Strictly narrower: denies something the current assignments allow, allows nothing they deny.
    pub fn is_narrower(&self) -> bool {
        self.wider_in_suggestion.is_empty() && !self.only_current.is_empty()
    }
}

/// [`crate::LintRule::WiderThanUsed`] findings: assignments whose role grants
/// data actions that `observed` (the principal's requests in `window`, e.g.
/// "the last 30 days") never used under the assignment's scope. An assignment
/// with no request at all in the window is not judged: there is no evidence.
pub fn lint_usage(
    assignments: &[RoleAssignment],
    definitions: &[RoleDefinition],
    observed: &[Observed],
    window: &str,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for a in assignments {
        let Some(def) = definitions
            .iter()
            .find(|d| d.id.eq_ignore_ascii_case(&a.role_definition_id))
        else {
            continue;
        };
        let role = CompiledRole::new(def.clone());
        let granted = granted_data_actions(&role);
        let used: BTreeSet<String> = observed
            .iter()
            .filter(|o| {
                o.principal_id.eq_ignore_ascii_case(&a.principal_id)
                    && o.request.kind == ActionKind::Data
                    && a.scope.contains(&o.request.scope)
            })
            .map(|o| o.request.action.to_ascii_lowercase())
            .collect();
        if granted.is_empty() || used.is_empty() {
            continue;
        }
        let unused: Vec<&str> = granted
            .iter()
            .filter(|g| !used.contains(*g))
            .map(|g| g.rsplit_once("containers/").map_or(g.as_str(), |(_, v)| v))
            .collect();
        if unused.is_empty() {
            continue;
        }
        findings.push(Finding {
            rule: crate::LintRule::WiderThanUsed,
            severity: crate::Severity::Warning,
            principal_id: Some(a.principal_id.clone()),
            assignment_ids: vec![a.id()],
            message: format!(
                "'{}' at {} grants {} to {}, which the audit log shows it did not use in {window}; `entraflow role suggest --assignee {} --since <when>` proposes the narrowest assignment",
                def.name,
                a.scope,
                unused.join(", "),
                a.principal_id,
                a.principal_id
            ),
        });
    }
    findings
}

fn index_of(suggestions: &[SuggestedAssignment], now: OffsetDateTime) -> Index {
    let mut definitions: Vec<RoleDefinition> = crate::builtin_roles();
    definitions.extend(
        suggestions
            .iter()
            .filter(|s| s.custom)
            .map(|s| s.role.clone()),
    );
    Index::build(Snapshot {
        generation: 0,
        definitions,
        assignments: suggestions.iter().map(|s| s.as_assignment(now)).collect(),
    })
}

fn describe(r: &Request) -> String {
    let verb = r
        .action
        .rsplit_once("containers/")
        .map_or(r.action.as_str(), |(_, v)| v);
    match (&r.blob_path, &r.list_prefix) {
        (Some(p), _) => format!("{verb} {}/blobs/{p}", r.scope.as_str()),
        (None, Some(prefix)) => format!("{verb} (list, prefix '{prefix}') {}", r.scope.as_str()),
        (None, None) => format!("{verb} {}", r.scope.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::blob;

    fn container(name: &str) -> Scope {
        Scope::storage_account("00000000-0000-0000-0000-000000000001", "ml", "acct")
            .container(name)
            .unwrap()
    }

    const JOB: &str = "11111111-1111-1111-1111-111111111111";

    fn seen(action: &str, path: &str) -> Observed {
        Observed {
            principal_id: JOB.into(),
            request: Request::data(action, container("project")).with_blob(path),
        }
    }

    fn listed(prefix: &str) -> Observed {
        Observed {
            principal_id: JOB.into(),
            request: Request::data(blob::READ, container("project"))
                .with_sub_operation(blob::SUB_OPERATION_LIST)
                .with_list_prefix(prefix),
        }
    }

    #[test]
    fn prefixes_stop_at_directory_boundaries_per_top_level_directory() {
        let paths: BTreeSet<String> = [
            "digits/train-0.tfrecord",
            "digits/train-1.tfrecord",
            "models/run-7/ckpt/1.index",
            "models/run-7/model.keras",
            "README",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(
            narrowest_prefixes(&paths),
            vec![
                PathMatch::Exact("README".into()),
                PathMatch::Prefix("digits/".into()),
                PathMatch::Prefix("models/run-7/".into()),
            ]
        );
    }

    #[test]
    fn reads_only_suggest_the_reader_role_limited_to_the_paths_read() {
        let observed = vec![
            seen(blob::READ, "digits/train-0.tfrecord"),
            seen(blob::READ, "digits/train-1.tfrecord"),
            listed("digits/train-"),
        ];
        let s = suggest(&observed, &crate::builtin_roles());
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].role.name, "Storage Blob Data Reader");
        assert!(!s[0].custom);
        let condition = s[0].condition.as_deref().unwrap();
        crate::Condition::parse(condition).expect("Azure's grammar");
        assert!(
            condition.contains("StringStartsWith 'digits/'"),
            "{condition}"
        );
        assert!(condition.contains("blobs:prefix] StringStartsWith 'digits/train-'"));
        // A prefix another one covers adds nothing.
        let covered = vec![
            listed("models/run/"),
            listed("models/run/ckpt-1_temp/"),
            listed("models/run/x"),
        ];
        let listing = suggest(&covered, &crate::builtin_roles())[0]
            .condition
            .clone()
            .unwrap();
        assert_eq!(listing.matches("StringStartsWith").count(), 1, "{listing}");
        let report = check(&s, &observed);
        assert!(report.passed(), "{report:?}");
        // Outside what was seen, the suggestion refuses.
        let elsewhere = vec![seen(blob::READ, "secrets/key"), listed("")];
        assert_eq!(check(&s, &elsewhere).denials.len(), 2);
    }

    #[test]
    fn a_mix_no_built_in_fits_becomes_a_custom_role_with_only_what_was_used() {
        let observed = vec![
            seen(blob::READ, "digits/train-0.tfrecord"),
            seen(blob::WRITE, "models/run-7/model.keras"),
            seen(blob::DELETE, "models/run-7/ckpt-1.index"),
        ];
        let s = suggest(&observed, &crate::builtin_roles());
        assert_eq!(s.len(), 1);
        assert!(s[0].custom);
        let data = &s[0].role.permissions[0].data_actions;
        assert_eq!(data.len(), 3, "{data:?}");
        s[0].role.check_actions().expect("actions the gate knows");
        let report = check(&s, &observed);
        assert!(report.passed(), "{report:?}");
        // A write to the data, or a read of the model directory, is not in it.
        assert_eq!(
            check(
                &s,
                &[
                    seen(blob::WRITE, "digits/x"),
                    seen(blob::READ, "models/run-7/model.keras")
                ]
            )
            .denials
            .len(),
            2
        );
    }

    #[test]
    fn a_database_connect_is_granted_without_a_path_condition() {
        let database = Scope::postgres_database(
            "00000000-0000-0000-0000-000000000001",
            "ml",
            "pg",
            "postgres",
        );
        let observed = vec![Observed {
            principal_id: JOB.into(),
            request: Request::data(crate::action::postgres::CONNECT, database),
        }];
        let s = suggest(&observed, &crate::builtin_roles());
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].condition, None);
        assert!(
            s[0].role.name.ends_with("on databases/postgres"),
            "{}",
            s[0].role.name
        );
        assert!(check(&s, &observed).passed());
    }

    #[test]
    fn check_names_what_the_suggestion_would_deny_and_what_it_grants_unused() {
        let observed = vec![seen(blob::READ, "digits/a")];
        let mut s = suggest(&observed, &crate::builtin_roles());
        s[0].role = crate::builtin_roles()
            .into_iter()
            .find(|r| r.name == "Storage Blob Data Contributor")
            .unwrap();
        let report = check(
            &s,
            &[seen(blob::READ, "digits/a"), seen(blob::READ, "other/b")],
        );
        assert_eq!(report.denials.len(), 1, "{report:?}");
        assert!(report.denials[0].2.ends_with("/blobs/other/b"));
        assert_eq!(
            report.unused.len(),
            4,
            "write, delete, add, move: {report:?}"
        );
    }

    #[test]
    fn lint_points_at_data_actions_the_log_shows_unused_and_only_with_evidence() {
        let definitions = crate::builtin_roles();
        let contributor = definitions
            .iter()
            .find(|r| r.name == "Storage Blob Data Contributor")
            .unwrap();
        let observed = vec![seen(blob::READ, "digits/a")];
        let s = suggest(&observed, &definitions);
        let wide = RoleAssignment {
            role_definition_id: contributor.id.clone(),
            condition: None,
            ..s[0].as_assignment(OffsetDateTime::now_utc())
        };
        let findings = lint_usage(
            std::slice::from_ref(&wide),
            &definitions,
            &observed,
            "the last 30 days",
        );
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].message.contains("blobs/write"),
            "{}",
            findings[0].message
        );
        assert!(!findings[0].message.contains("blobs/read,"));
        // No request in the window: no evidence, no finding.
        assert!(lint_usage(&[wide], &definitions, &[], "the last 30 days").is_empty());
    }

    #[test]
    fn the_suggestion_is_narrower_than_a_container_wide_contributor() {
        let observed = vec![seen(blob::READ, "digits/a"), seen(blob::WRITE, "models/m")];
        let s = suggest(&observed, &crate::builtin_roles());
        let definitions = crate::builtin_roles();
        let contributor = definitions
            .iter()
            .find(|r| r.name == "Storage Blob Data Contributor")
            .unwrap();
        let current = RoleAssignment {
            role_definition_id: contributor.id.clone(),
            condition: None,
            ..s[0].as_assignment(OffsetDateTime::now_utc())
        };
        let n = narrower_than(&s, std::slice::from_ref(&current), &definitions, &observed);
        assert!(n.is_narrower(), "{n:?}");
        // Against itself it is not narrower.
        let same = s[0].as_assignment(OffsetDateTime::now_utc());
        let mut with_custom = definitions.clone();
        with_custom.push(s[0].role.clone());
        assert!(!narrower_than(&s, &[same], &with_custom, &observed).is_narrower());
    }
}
