//! `entraflow role suggest`: least-privilege assignments from what the audit log
//! shows a run (or a principal over a window) did, and `--check`, the replay.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use entraflow_audit::event::container_and_blob;
use entraflow_audit::store::{Cursor, StoreBackend};
use entraflow_audit::{AnyStore, Filter, Record, StoreUrl};
use entraflow_rbac::{
    Observed, RbacStore, Request, Scope, SuggestedAssignment, action, builtin_roles,
};
use serde_json::json;

use crate::{Globals, Output};

/// Which requests to learn from.
#[derive(Debug, Args)]
pub(crate) struct SuggestArgs {
    /// The training run whose requests the suggestion must allow.
    #[arg(long, required_unless_present = "assignee")]
    run_id: Option<String>,
    /// A principal (object id, app id or name as the log records it) instead of, or
    /// beside, a run.
    #[arg(long)]
    assignee: Option<String>,
    /// At or after: RFC 3339 time, or an age such as 30m, 12h, 7d.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Before: RFC 3339 time, or an age such as 30m, 12h, 7d.
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// Replay the recorded requests against the suggestion alone: exits 1 unless
    /// none is denied and every suggested data action is used; also compares the
    /// suggestion with the principals' current assignments.
    #[arg(long)]
    check: bool,
}

/// The requests the log shows were allowed, one per request id, and how many
/// were denied (the suggestion does not grant those).
pub(crate) struct Seen {
    pub(crate) allowed: Vec<Observed>,
    pub(crate) denied: usize,
    pub(crate) names: BTreeMap<String, String>,
}

/// Reads the allowed requests matching `filter` from the audit store.
pub(crate) async fn observed(store: &AnyStore, filter: &Filter) -> anyhow::Result<Seen> {
    let mut seen = Seen {
        allowed: Vec::new(),
        denied: 0,
        names: BTreeMap::new(),
    };
    let mut requests: HashSet<String> = HashSet::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let rows = store.query(filter, cursor.as_ref(), 5000).await?;
        let Some(last) = rows.last() else { break };
        cursor = Some(Cursor::after(last));
        for row in &rows {
            let Ok(record) = Record::parse(row.record.as_bytes()) else {
                continue;
            };
            let e = &record.event;
            // Completion records repeat their request's decision; one per request.
            if e.event_type.as_str().ends_with(".completed") {
                continue;
            }
            if let Some(id) = &e.request_id
                && !requests.insert(format!("{}:{id}", row.log_id))
            {
                continue;
            }
            let (Some(principal), Some(action), Some(resource)) = (
                e.principal.as_ref().and_then(|p| p.oid.clone()),
                e.action.as_deref(),
                e.resource.as_deref(),
            ) else {
                continue;
            };
            match e.decision {
                Some(entraflow_audit::Decision::Allow) => {}
                Some(entraflow_audit::Decision::Deny) => {
                    seen.denied += 1;
                    continue;
                }
                None => continue,
            }
            if let Some(name) = e.principal.as_ref().and_then(|p| p.name.clone()) {
                seen.names.entry(principal.clone()).or_insert(name);
            }
            let Some(request) = rbac_request(e.event_type.as_str(), action, resource, e) else {
                continue;
            };
            seen.allowed.push(Observed {
                principal_id: principal,
                request,
            });
        }
    }
    Ok(seen)
}

/// The request as the gate put it to the authorizer, rebuilt from its record.
fn rbac_request(
    event_type: &str,
    action: &str,
    resource: &str,
    event: &entraflow_audit::Event,
) -> Option<Request> {
    let (scope, blob) = match container_and_blob(resource) {
        Some((_, Some(blob))) => (
            resource.rsplit_once(&format!("/blobs/{blob}"))?.0,
            Some(blob),
        ),
        _ => (resource, None),
    };
    let scope = Scope::parse(scope).ok()?;
    let data = action::DATA_ACTIONS
        .iter()
        .any(|a| a.eq_ignore_ascii_case(action));
    let mut request = if data {
        Request::data(action, scope)
    } else {
        Request::control(action, scope)
    };
    if let Some(blob) = blob {
        request = request.with_blob(blob);
    }
    if event_type == "blob.list" {
        request = request
            .with_sub_operation(action::blob::SUB_OPERATION_LIST)
            .with_list_prefix(event.prefix.clone().unwrap_or_default());
    }
    Some(request)
}

/// `role lint`'s usage rule: data actions granted but unused since `since`,
/// where the data directory has an audit log.
pub(crate) fn lint_usage(
    globals: &Globals,
    rbac: &RbacStore,
    since: &str,
) -> anyhow::Result<Vec<entraflow_rbac::Finding>> {
    let url = StoreUrl::default_for(&globals.data_dir);
    let filter = Filter {
        since: Some(crate::audit::parse_when(since)?),
        ..Filter::default()
    };
    let seen = block_on(async {
        match AnyStore::open_existing(&url).await {
            Ok(store) => observed(&store, &filter).await.map(Some),
            // No audit log yet: nothing was used, and nothing can be judged.
            Err(entraflow_audit::StoreError::Missing(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    })?;
    let Some(seen) = seen else {
        return Ok(Vec::new());
    };
    Ok(entraflow_rbac::lint_usage(
        &rbac.assignments()?,
        &rbac.definitions()?,
        &seen.allowed,
        &format!("the window since {since}"),
    ))
}

fn block_on<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(work)
}

pub(crate) fn run(
    args: SuggestArgs,
    globals: &Globals,
    rbac: &RbacStore,
) -> anyhow::Result<ExitCode> {
    let filter = Filter {
        principal: args.assignee.clone(),
        since: args
            .since
            .as_deref()
            .map(crate::audit::parse_when)
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(crate::audit::parse_when)
            .transpose()?,
        run_id: args.run_id.clone(),
        ..Filter::default()
    };
    let seen = block_on(async {
        let store = AnyStore::open_existing(&StoreUrl::default_for(&globals.data_dir)).await?;
        observed(&store, &filter).await
    })?;
    let what = match (&args.run_id, &args.assignee) {
        (Some(run), _) => format!("run {run}"),
        (None, Some(who)) => format!("principal {who}"),
        (None, None) => unreachable!("clap requires one"),
    };
    if seen.allowed.is_empty() {
        anyhow::bail!(
            "the audit log holds no allowed request of {what}{}; nothing to learn from (see `entraflow audit query`)",
            if seen.denied > 0 {
                format!(" ({} denied)", seen.denied)
            } else {
                String::new()
            }
        );
    }
    let suggestions = entraflow_rbac::suggest(&seen.allowed, &builtin_roles());
    let names = directory_names(
        &globals.data_dir,
        suggestions.iter().map(|s| s.principal_id.as_str()),
        seen.names,
    );
    let report = args
        .check
        .then(|| entraflow_rbac::check(&suggestions, &seen.allowed));
    let narrowness = if args.check {
        let principals: HashSet<String> = suggestions
            .iter()
            .map(|s| s.principal_id.to_ascii_lowercase())
            .collect();
        let current: Vec<_> = rbac
            .assignments()?
            .into_iter()
            .filter(|a| principals.contains(&a.principal_id.to_ascii_lowercase()))
            .collect();
        Some(entraflow_rbac::narrower_than(
            &suggestions,
            &current,
            &rbac.definitions()?,
            &seen.allowed,
        ))
    } else {
        None
    };
    match globals.output {
        Output::Json => crate::role::print_json(
            globals,
            &json!({
                "source": what,
                "requests": seen.allowed.len(),
                "denied": seen.denied,
                "suggestions": suggestions,
                "check": report,
                "comparedWithCurrent": narrowness,
            }),
        ),
        Output::Table => {
            println!(
                "{} allowed requests of {what} ({} denied, not granted below)",
                seen.allowed.len(),
                seen.denied
            );
            for s in &suggestions {
                print_suggestion(s, &names);
            }
            if let Some(r) = &report {
                println!(
                    "\ncheck: {} requests replayed against the suggestion alone: {} denied, {} unused data action(s)",
                    r.replayed,
                    r.denials.len(),
                    r.unused.len()
                );
                for (who, _, what) in r.denials.iter().take(20) {
                    println!("  denied  {who}  {what}");
                }
                for (who, scope, action) in &r.unused {
                    println!("  unused  {who}  {action} at {scope}");
                }
            }
            if let Some(n) = &narrowness {
                if n.is_narrower() {
                    println!(
                        "narrower than the current assignments: they allow {} probe request(s) the suggestion refuses, e.g. {}",
                        n.only_current.len(),
                        n.only_current[0]
                    );
                } else if !n.wider_in_suggestion.is_empty() {
                    println!(
                        "the suggestion allows {} probe request(s) the current assignments refuse, e.g. {}",
                        n.wider_in_suggestion.len(),
                        n.wider_in_suggestion[0]
                    );
                } else {
                    println!(
                        "the current assignments already allow exactly the same probe requests"
                    );
                }
            }
        }
    }
    Ok(match report {
        Some(r) if !r.passed() => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

/// `names` with the local directory's display names added for `ids` it lacks:
/// a workload identity's records carry its object id, not its name.
fn directory_names<'a>(
    data_dir: &std::path::Path,
    ids: impl Iterator<Item = &'a str>,
    mut names: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    if !data_dir.join(entraflow_authority::DB_FILE).is_file() {
        return names;
    }
    let Ok(store) = entraflow_authority::Store::open(data_dir) else {
        return names;
    };
    for id in ids {
        if !names.contains_key(id)
            && let Ok(Some(object)) = store.directory_object(id)
        {
            names.insert(id.to_owned(), object.display_name);
        }
    }
    names
}

fn print_suggestion(s: &SuggestedAssignment, names: &BTreeMap<String, String>) {
    let who = names
        .get(&s.principal_id)
        .map(|n| format!("{n} ({})", s.principal_id))
        .unwrap_or_else(|| s.principal_id.clone());
    let verbs: Vec<&str> = s
        .data_actions
        .iter()
        .chain(&s.actions)
        .map(|a| a.rsplit_once("containers/").map_or(a.as_str(), |(_, v)| v))
        .collect();
    println!("\n{who}: {} requests at {}", s.requests, s.scope.as_str());
    println!(
        "  {} role '{}': {}",
        if s.custom { "custom" } else { "built-in" },
        s.role.name,
        verbs.join(", ")
    );
    if s.custom {
        println!(
            "  entraflow role definition create --role-definition {}",
            sh_quote(&s.role.to_az_json().to_string())
        );
    }
    let mut create = format!(
        "  entraflow role assignment create --assignee {} --role {} --scope {}",
        s.principal_id,
        sh_quote(&s.role.name),
        sh_quote(s.scope.as_str())
    );
    if let Some(c) = &s.condition {
        create.push_str(&format!(
            " --condition-version 2.0 --condition {}",
            sh_quote(&c.replace('\n', " "))
        ));
    }
    println!("{create}");
}

/// One shell word, whatever it holds.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
