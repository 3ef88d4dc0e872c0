//! `entraflow role ...`: role assignments and definitions in the shape of
//! `az role`, over the store in `<data-dir>/rbac.db` that the gate reads.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use entraflow_authority::{AdminChange, PrincipalKind, Store};
use entraflow_rbac::{
    AssignmentFilter, DirectoryStatus, Error as RbacError, LintOptions, NewAssignment,
    PrincipalType, RbacStore, RoleAssignment, RoleDefinition, Scope, Severity,
};
use time::OffsetDateTime;

use crate::{Globals, Output};

/// Manage Azure RBAC role assignments and definitions (like `az role`).
#[derive(Debug, Args)]
pub(crate) struct RoleArgs {
    #[command(subcommand)]
    command: RoleCommand,
}

#[derive(Debug, Subcommand)]
enum RoleCommand {
    /// Role assignments: which principal holds which role at which scope.
    Assignment {
        #[command(subcommand)]
        command: AssignmentCommand,
    },
    /// Role definitions: the built-in Storage Blob Data roles, Owner, User Access
    /// Administrator, and custom roles.
    Definition {
        #[command(subcommand)]
        command: DefinitionCommand,
    },
    /// Flag assignments broader or longer-lived than needed: data roles at
    /// subscription or resource-group scope, wildcard custom roles, assignments
    /// without expiry older than --max-age-days, one principal shared by several
    /// projects (containers); and, where the data directory holds the directory,
    /// assignments whose principal is gone, was given as an appId, or is an empty
    /// group. Exits 1 when there is a warning or worse.
    Lint {
        /// Assignments without expiry older than this are flagged.
        #[arg(long, default_value_t = 90, value_name = "DAYS")]
        max_age_days: i64,
        /// How far back the audit log is read to find data actions granted but
        /// not used (an age such as 30d, or an RFC 3339 time).
        #[arg(long, default_value = "30d", value_name = "WHEN")]
        usage_since: String,
    },
    /// Propose the narrowest role assignments (a built-in role whose data actions
    /// are exactly those used, or a custom role with only them, and ABAC
    /// conditions on the paths and list prefixes used) that would have allowed
    /// what a run, or a principal over a window, did, as the audit log shows it.
    Suggest(crate::suggest::SuggestArgs),
}

#[derive(Debug, Subcommand)]
enum AssignmentCommand {
    /// Assign a role to a principal at a scope.
    ///
    /// --assignee is resolved as az resolves it (UPN, then service principal name
    /// such as an appId, then object id) and must exist in the directory;
    /// --assignee-object-id with --assignee-principal-type is stored as given (a
    /// principal of a directory that is not this data directory's). The same
    /// role at the same scope for the same principal again returns the existing
    /// assignment (as az does) when nothing else differs, else is refused
    /// (RoleAssignmentExists).
    Create {
        /// UPN, service principal name (appId, identifier URI) or object id.
        #[arg(
            long,
            required_unless_present = "assignee_object_id",
            conflicts_with = "assignee_object_id"
        )]
        assignee: Option<String>,
        /// Object id of the principal, used without looking it up when
        /// --assignee-principal-type is given.
        #[arg(long, value_name = "OBJECT_ID")]
        assignee_object_id: Option<String>,
        /// With --assignee-object-id: User, Group or ServicePrincipal (managed
        /// identities are ServicePrincipal, as in Azure).
        #[arg(long, requires = "assignee_object_id", value_name = "TYPE")]
        assignee_principal_type: Option<String>,
        /// Role name (e.g. "Storage Blob Data Reader") or id.
        #[arg(long)]
        role: String,
        /// Scope, e.g. /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Storage/storageAccounts/<account>/blobServices/default/containers/<container>.
        #[arg(long)]
        scope: String,
        /// ABAC condition (Azure condition language, version 2.0).
        #[arg(long)]
        condition: Option<String>,
        /// Condition version; only 2.0 is supported.
        #[arg(long, value_name = "VERSION")]
        condition_version: Option<String>,
        /// When the assignment stops granting: RFC 3339 time or a duration (30d, 12h, 90m, 2w).
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        /// Why the assignment exists.
        #[arg(long)]
        description: Option<String>,
    },
    /// List role assignments.
    List {
        /// Only this principal's assignments (UPN, service principal name or object id).
        #[arg(long)]
        assignee: Option<String>,
        /// Only assignments at this scope.
        #[arg(long)]
        scope: Option<String>,
        /// With --scope, also the assignments at scopes above it that apply there.
        #[arg(long)]
        include_inherited: bool,
        /// Only assignments of this role (name or id).
        #[arg(long)]
        role: Option<String>,
    },
    /// Change an assignment's condition, condition version or description, from
    /// its JSON as `role assignment list -o json` prints it (a file as @a.json, a
    /// path, or inline). As ARM's PUT, a field left out is cleared; the principal,
    /// role and scope are the assignment itself and cannot change (delete and
    /// create instead).
    Update {
        /// `{"id": ..., "condition": ..., "conditionVersion": "2.0", "description": ...}`
        #[arg(long, value_name = "JSON|@FILE")]
        role_assignment: String,
    },
    /// Delete role assignments by id (the ARM id or its final GUID), or those
    /// matching --assignee/--role/--scope. With --ids every id is tried and
    /// reported on stdout; the exit status is 1 when any id failed.
    Delete {
        /// Assignment ids.
        #[arg(long, num_args = 1.., conflicts_with_all = ["assignee", "role", "scope"],
              required_unless_present_any = ["assignee", "role", "scope"])]
        ids: Vec<String>,
        /// Only this principal's assignments (UPN, service principal name or object id).
        #[arg(long)]
        assignee: Option<String>,
        /// Only assignments of this role (name or id).
        #[arg(long)]
        role: Option<String>,
        /// Only assignments at exactly this scope.
        #[arg(long)]
        scope: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DefinitionCommand {
    /// Create a custom role from az's JSON (a file as @role.json, a path, or inline JSON).
    Create {
        /// `{"Name": ..., "Actions": [...], "DataActions": [...], "AssignableScopes": [...]}`
        /// or the ARM shape (`roleName`, `permissions`, `assignableScopes`).
        #[arg(long, value_name = "JSON|@FILE")]
        role_definition: String,
    },
    /// Replace a custom role's name, description, actions and assignable scopes
    /// from az's JSON; the role is found by its id, else by its name. Built-in
    /// roles cannot be changed.
    Update {
        /// The role as `role definition create` takes it, with its `Id` or `Name`.
        #[arg(long, value_name = "JSON|@FILE")]
        role_definition: String,
    },
    /// Delete a custom role (refused while assignments use it).
    Delete {
        /// The role's name or id.
        #[arg(long)]
        name: String,
    },
    /// List role definitions.
    List {
        /// Only custom roles.
        #[arg(long)]
        custom_role_only: bool,
        /// Only the role with this name.
        #[arg(long)]
        name: Option<String>,
    },
}

pub(crate) fn run(args: RoleArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = RbacStore::open(&globals.data_dir).map_err(explain)?;
    let now = OffsetDateTime::now_utc();
    match args.command {
        RoleCommand::Assignment { command } => assignment(command, &store, globals, now),
        RoleCommand::Definition { command } => definition(command, &store, globals),
        RoleCommand::Suggest(args) => crate::suggest::run(args, globals, &store),
        RoleCommand::Lint {
            max_age_days,
            usage_since,
        } => {
            let mut findings =
                entraflow_rbac::lint(&store, now, LintOptions { max_age_days }).map_err(explain)?;
            findings.extend(crate::suggest::lint_usage(globals, &store, &usage_since)?);
            // Principals are checked where the data directory holds their directory.
            if has_directory(globals) {
                let assignments = store.assignments().map_err(explain)?;
                let statuses = directory_statuses(&directory(globals)?, &assignments)?;
                findings.extend(entraflow_rbac::lint_principals(&assignments, |p| {
                    statuses.get(p).cloned().unwrap_or(DirectoryStatus::Present)
                }));
            }
            match globals.output {
                Output::Json => print_json(globals, &serde_json::to_value(&findings)?),
                Output::Table if findings.is_empty() => println!("no findings"),
                Output::Table => {
                    for f in &findings {
                        let severity = format!("{:?}", f.severity).to_uppercase();
                        let rule = serde_json::to_value(f.rule)?;
                        println!(
                            "{severity:<7} {:<26} {}",
                            rule.as_str().unwrap_or(""),
                            f.message
                        );
                    }
                }
            }
            let failing = findings.iter().any(|f| f.severity >= Severity::Warning);
            Ok(if failing {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn assignment(
    command: AssignmentCommand,
    store: &RbacStore,
    globals: &Globals,
    now: OffsetDateTime,
) -> anyhow::Result<ExitCode> {
    let output = globals.output;
    let definitions = store.definitions().map_err(explain)?;
    let role_name = |a: &RoleAssignment| {
        definitions
            .iter()
            .find(|d| d.id.eq_ignore_ascii_case(&a.role_definition_id))
            .map(|d| d.name.clone())
    };
    match command {
        AssignmentCommand::Create {
            assignee,
            assignee_object_id,
            assignee_principal_type,
            role,
            scope,
            condition,
            condition_version,
            expires,
            description,
        } => {
            let (principal_id, principal_type) = resolve_assignee(
                globals,
                assignee.as_deref(),
                assignee_object_id.as_deref(),
                assignee_principal_type.as_deref(),
            )?;
            let expires_at = expires
                .map(|e| entraflow_rbac::parse_expiry(&e, now))
                .transpose()
                .map_err(explain)?;
            let new = NewAssignment {
                principal_id,
                principal_type,
                role,
                scope,
                condition,
                condition_version,
                expires_at,
                description,
            };
            let wanted = new.clone();
            let created = crate::admin_log::audited(
                globals,
                None,
                "role assignment create",
                || match store.create_assignment(new, now) {
                    Err(RbacError::DuplicateAssignment { existing })
                        if same_request(&existing, &wanted) =>
                    {
                        // az answers RoleAssignmentExists with the existing assignment.
                        if !globals.only_show_errors {
                            eprintln!(
                                "warning: RoleAssignmentExists: {} already grants this; nothing was created",
                                existing.id()
                            );
                        }
                        Ok((*existing, false))
                    }
                    Err(err @ RbacError::DuplicateAssignment { .. }) => Err(anyhow::anyhow!(
                        "{err} It differs from this request (principal type, condition, description or expiry); delete it first to change those"
                    )),
                    other => other.map(|a| (a, true)).map_err(explain),
                },
                |created| {
                    Ok((
                        None,
                        created
                            .iter()
                            .filter(|(_, new)| *new)
                            .map(|(a, _)| change("role_assignment.create", a))
                            .collect(),
                    ))
                },
            )?
            .0;
            let name = role_name(&created);
            match output {
                Output::Json => print_json(globals, &created.to_az_json(name.as_deref())),
                Output::Table => print_assignments(&[created], &role_name),
            }
        }
        AssignmentCommand::Update { role_assignment } => {
            let text = read_json_argument(&role_assignment)?;
            let wanted: serde_json::Value =
                serde_json::from_str(&text).context("--role-assignment is not JSON")?;
            let field = |key: &str| wanted.get(key).and_then(|v| v.as_str()).map(str::to_owned);
            let id = field("id").or_else(|| field("name")).context(
                "--role-assignment names no assignment: give its \"id\" (or \"name\") as `role assignment list -o json` prints it",
            )?;
            let current = store
                .assignments()
                .map_err(explain)?
                .into_iter()
                .find(|a| a.name.eq_ignore_ascii_case(&id) || a.id().eq_ignore_ascii_case(&id))
                .ok_or_else(|| explain(RbacError::AssignmentNotFound { id: id.clone() }))?;
            let fixed = [
                ("principalId", current.principal_id.clone()),
                ("roleDefinitionId", current.role_definition_id.clone()),
                ("scope", current.scope.to_string()),
            ];
            for (key, value) in fixed {
                if let Some(given) = field(key) {
                    // A role may be given as its GUID or its ARM id.
                    let given_tail = given.rsplit('/').next().unwrap_or_default();
                    if !given.eq_ignore_ascii_case(&value)
                        && !given_tail.eq_ignore_ascii_case(&value)
                    {
                        anyhow::bail!(
                            "RoleAssignmentUpdateNotPermitted: {key} of {} is '{value}', not '{given}'; an assignment's principal, role and scope cannot change: delete it and create another",
                            current.id()
                        );
                    }
                }
            }
            let updated = crate::admin_log::audited(
                globals,
                None,
                "role assignment update",
                || {
                    store
                        .update_assignment(
                            &current.name,
                            field("condition"),
                            field("conditionVersion"),
                            field("description"),
                        )
                        .map_err(explain)
                },
                |updated| {
                    Ok((
                        None,
                        updated
                            .iter()
                            .map(|a| change("role_assignment.update", a))
                            .collect(),
                    ))
                },
            )?;
            match output {
                Output::Json => {
                    print_json(globals, &updated.to_az_json(role_name(&updated).as_deref()))
                }
                Output::Table => print_assignments(&[updated], &role_name),
            }
        }
        AssignmentCommand::List {
            assignee,
            scope,
            include_inherited,
            role,
        } => {
            let role_id = role
                .map(|r| store.find_definition(&r))
                .transpose()
                .map_err(explain)?
                .map(|d| d.id);
            let scope = scope
                .map(|s| Scope::parse(&s))
                .transpose()
                .map_err(|e| explain(e.into()))?;
            let filter = AssignmentFilter {
                principal_id: assignee
                    .map(|a| principal_filter(globals, &a))
                    .transpose()?,
                scope,
                include_inherited,
            };
            let list: Vec<RoleAssignment> = store
                .list_assignments(&filter)
                .map_err(explain)?
                .into_iter()
                .filter(|a| {
                    role_id
                        .as_ref()
                        .is_none_or(|id| a.role_definition_id.eq_ignore_ascii_case(id))
                })
                .collect();
            match output {
                Output::Json => print_json(
                    globals,
                    &serde_json::Value::Array(
                        list.iter()
                            .map(|a| a.to_az_json(role_name(a).as_deref()))
                            .collect(),
                    ),
                ),
                Output::Table => print_assignments(&list, &role_name),
            }
        }
        AssignmentCommand::Delete {
            ids,
            assignee,
            role,
            scope,
        } if ids.is_empty() => {
            let role_id = role
                .map(|r| store.find_definition(&r))
                .transpose()
                .map_err(explain)?
                .map(|d| d.id);
            let filter = AssignmentFilter {
                principal_id: assignee
                    .map(|a| principal_filter(globals, &a))
                    .transpose()?,
                scope: scope
                    .map(|s| Scope::parse(&s))
                    .transpose()
                    .map_err(|e| explain(e.into()))?,
                include_inherited: false,
            };
            let matched: Vec<String> = store
                .list_assignments(&filter)
                .map_err(explain)?
                .into_iter()
                .filter(|a| {
                    role_id
                        .as_ref()
                        .is_none_or(|id| a.role_definition_id.eq_ignore_ascii_case(id))
                })
                .map(|a| a.id())
                .collect();
            if matched.is_empty() {
                anyhow::bail!("no matched assignments were found to delete");
            }
            return delete_assignments(store, globals, &matched, &role_name);
        }
        AssignmentCommand::Delete { ids, .. } => {
            return delete_assignments(store, globals, &ids, &role_name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes each id, reporting per id on stdout (JSON: `[{id, deleted, error}]`);
/// exit 1 when any failed, so a partial success is never reported as success.
fn delete_assignments(
    store: &RbacStore,
    globals: &Globals,
    ids: &[String],
    role_name: &dyn Fn(&RoleAssignment) -> Option<String>,
) -> anyhow::Result<ExitCode> {
    let outcomes = crate::admin_log::audited(
        globals,
        None,
        "role assignment delete",
        || {
            Ok(ids
                .iter()
                .map(|id| store.delete_assignment(id))
                .collect::<Vec<_>>())
        },
        |outcomes| {
            let deleted = outcomes.iter().flatten().filter_map(|o| o.as_ref().ok());
            Ok((
                None,
                deleted
                    .map(|a| change("role_assignment.delete", a))
                    .collect(),
            ))
        },
    )?;
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    match globals.output {
        Output::Json => print_json(
            globals,
            &serde_json::Value::Array(
                ids.iter()
                    .zip(&outcomes)
                    .map(|(id, o)| match o {
                        Ok(a) => serde_json::json!({
                            "id": id, "deleted": true, "error": null,
                            "assignment": a.to_az_json(role_name(a).as_deref()),
                        }),
                        Err(e) => {
                            serde_json::json!({"id": id, "deleted": false, "error": e.to_string()})
                        }
                    })
                    .collect(),
            ),
        ),
        Output::Table => {
            for (id, o) in ids.iter().zip(&outcomes) {
                match o {
                    Ok(a) => println!("deleted  {}", a.id()),
                    Err(e) => println!("failed   {id}: {e}"),
                }
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} role assignment(s) could not be deleted",
            ids.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether an existing assignment is exactly what was asked for (then az's
/// answer, the existing assignment, is right; otherwise it is a conflict).
fn same_request(existing: &RoleAssignment, wanted: &NewAssignment) -> bool {
    existing.condition == wanted.condition
        && existing.description == wanted.description
        && (wanted.expires_at.is_none() || existing.expires_at == wanted.expires_at)
        && existing.principal_type == wanted.principal_type
}

/// The directory of the data directory (the authority's), which must exist.
fn directory(globals: &Globals) -> anyhow::Result<Store> {
    crate::datadir::require_tenant(&globals.data_dir)?;
    Store::open(&globals.data_dir).context("opening the authority's database")
}

/// What the directory says each assigned principal is.
fn directory_statuses(
    directory: &Store,
    assignments: &[RoleAssignment],
) -> anyhow::Result<std::collections::HashMap<String, DirectoryStatus>> {
    let mut statuses = std::collections::HashMap::new();
    for a in assignments {
        if statuses.contains_key(&a.principal_id) {
            continue;
        }
        let status = match directory.directory_object(&a.principal_id)? {
            Some(o) if o.kind == PrincipalKind::Group => {
                if directory.list_group_members(&o.id)?.is_empty() {
                    DirectoryStatus::EmptyGroup
                } else {
                    DirectoryStatus::Present
                }
            }
            Some(_) => DirectoryStatus::Present,
            None if directory.resolve_app_id(&a.principal_id).is_ok() => DirectoryStatus::AppId(
                directory
                    .resolve_assignee(&a.principal_id)
                    .ok()
                    .map(|sp| sp.id),
            ),
            None => DirectoryStatus::Missing,
        };
        statuses.insert(a.principal_id.clone(), status);
    }
    Ok(statuses)
}

fn has_directory(globals: &Globals) -> bool {
    crate::datadir::require_tenant(&globals.data_dir).is_ok()
}

/// `--assignee`, `--assignee-object-id`, `--assignee-principal-type` as az takes them.
fn resolve_assignee(
    globals: &Globals,
    assignee: Option<&str>,
    object_id: Option<&str>,
    principal_type: Option<&str>,
) -> anyhow::Result<(String, PrincipalType)> {
    let kind = |k: PrincipalKind| match k {
        PrincipalKind::User => PrincipalType::User,
        PrincipalKind::Group => PrincipalType::Group,
        PrincipalKind::ServicePrincipal => PrincipalType::ServicePrincipal,
    };
    if let Some(name) = assignee {
        let found = directory(globals)?.resolve_assignee(name)?;
        if found.matched_by == "servicePrincipalNames"
            && !found.id.eq_ignore_ascii_case(name)
            && !globals.only_show_errors
        {
            eprintln!(
                "note: '{name}' names service principal {} ({}); the assignment is for that object id, which its tokens carry",
                found.id, found.display_name
            );
        }
        return Ok((found.id, kind(found.kind)));
    }
    let object_id = object_id.unwrap_or_default().trim().to_ascii_lowercase();
    // With a type given and no directory here, nothing is looked up (as az).
    let known = match (principal_type, has_directory(globals)) {
        (Some(_), false) => None,
        _ => directory(globals)?.directory_object(&object_id)?,
    };
    match (principal_type, known) {
        (Some(given), known) => {
            let given = match PrincipalType::parse(given) {
                Some(PrincipalType::ManagedIdentity) => anyhow::bail!(
                    "--assignee-principal-type ManagedIdentity is not an Azure principal type; Azure records managed identities as ServicePrincipal"
                ),
                Some(t) => t,
                None => anyhow::bail!(
                    "unknown --assignee-principal-type '{given}'; use User, Group or ServicePrincipal"
                ),
            };
            if let Some(k) = known
                && kind(k.kind) != given
            {
                anyhow::bail!(
                    "object {object_id} is a {} in this directory, not a {given}",
                    kind(k.kind)
                );
            }
            Ok((object_id, given))
        }
        (None, Some(k)) => Ok((object_id, kind(k.kind))),
        (None, None) => anyhow::bail!(
            "object id '{object_id}' is not in the directory {}; give --assignee-principal-type too if it belongs to another directory",
            globals.data_dir.display()
        ),
    }
}

/// The object id an `--assignee` filter means: resolved in the directory, or
/// the GUID itself (az's fallback, which finds assignments of deleted principals).
fn principal_filter(globals: &Globals, assignee: &str) -> anyhow::Result<String> {
    if !has_directory(globals) && uuid_like(assignee) {
        return Ok(assignee.trim().to_ascii_lowercase());
    }
    match directory(globals)?.resolve_assignee(assignee) {
        Ok(found) => Ok(found.id),
        Err(_) if uuid_like(assignee) => Ok(assignee.trim().to_ascii_lowercase()),
        Err(e) => Err(e.into()),
    }
}

fn uuid_like(s: &str) -> bool {
    let s = s.trim();
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

fn definition(
    command: DefinitionCommand,
    store: &RbacStore,
    globals: &Globals,
) -> anyhow::Result<ExitCode> {
    let output = globals.output;
    match command {
        DefinitionCommand::Create { role_definition } => {
            let text = read_json_argument(&role_definition)?;
            let def = RoleDefinition::from_json(&text).map_err(|e| explain(e.into()))?;
            let created = crate::admin_log::audited(
                globals,
                None,
                "role definition create",
                || store.create_definition(def).map_err(explain),
                |created| {
                    let changes = created.iter().map(|d| {
                        AdminChange::new(
                            "role_definition.create",
                            vec![("role_definition", d.id.clone()), ("name", d.name.clone())],
                        )
                    });
                    Ok((None, changes.collect()))
                },
            )?;
            match output {
                Output::Json => print_json(globals, &created.to_az_json()),
                Output::Table => print_definitions(&[created]),
            }
        }
        DefinitionCommand::Update { role_definition } => {
            let text = read_json_argument(&role_definition)?;
            let mut def = RoleDefinition::from_json(&text).map_err(|e| explain(e.into()))?;
            let definitions = store.definitions().map_err(explain)?;
            // az finds the role by id, else by name (a missing id parses as a fresh one).
            let prior = definitions
                .iter()
                .find(|d| d.id.eq_ignore_ascii_case(&def.id))
                .or_else(|| definitions.iter().find(|d| d.name.eq_ignore_ascii_case(&def.name)))
                .cloned()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no role with id {} or name '{}'; create it with `entraflow role definition create`",
                        def.id,
                        def.name
                    )
                })?;
            def.id = prior.id.clone();
            let updated = crate::admin_log::audited(
                globals,
                None,
                "role definition update",
                || store.update_definition(&prior, def).map_err(explain),
                |updated| {
                    let changes = updated.iter().map(|d| {
                        AdminChange::new(
                            "role_definition.update",
                            vec![("role_definition", d.id.clone()), ("name", d.name.clone())],
                        )
                    });
                    Ok((None, changes.collect()))
                },
            )?;
            match output {
                Output::Json => print_json(globals, &updated.to_az_json()),
                Output::Table => print_definitions(&[updated]),
            }
        }
        DefinitionCommand::Delete { name } => {
            let deleted = crate::admin_log::audited(
                globals,
                None,
                "role definition delete",
                || store.delete_definition(&name).map_err(explain),
                |deleted| {
                    let changes = deleted.iter().map(|d| {
                        AdminChange::new(
                            "role_definition.delete",
                            vec![("role_definition", d.id.clone()), ("name", d.name.clone())],
                        )
                    });
                    Ok((None, changes.collect()))
                },
            )?;
            match output {
                Output::Json => print_json(globals, &deleted.to_az_json()),
                Output::Table => println!("deleted {} ({})", deleted.name, deleted.id),
            }
        }
        DefinitionCommand::List {
            custom_role_only,
            name,
        } => {
            let defs: Vec<RoleDefinition> = store
                .definitions()
                .map_err(explain)?
                .into_iter()
                .filter(|d| !custom_role_only || d.role_type == entraflow_rbac::RoleType::Custom)
                .filter(|d| name.as_ref().is_none_or(|n| d.name.eq_ignore_ascii_case(n)))
                .collect();
            match output {
                Output::Json => print_json(
                    globals,
                    &serde_json::Value::Array(
                        defs.iter().map(RoleDefinition::to_az_json).collect(),
                    ),
                ),
                Output::Table => print_definitions(&defs),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `@file`, a path to an existing file, or inline JSON, as az accepts.
pub(crate) fn read_json_argument(value: &str) -> anyhow::Result<String> {
    let path = match value.strip_prefix('@') {
        Some(path) => Some(path),
        None if !value.trim_start().starts_with('{') => Some(value),
        None => None,
    };
    match path {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the JSON file '{path}'")),
        None => Ok(value.to_owned()),
    }
}

/// Turns a library error into a report; a bad condition also shows where.
fn explain(err: RbacError) -> anyhow::Error {
    match &err {
        RbacError::InvalidCondition(c) => anyhow::anyhow!("{err}\n{}", indent(c.excerpt())),
        _ => anyhow::Error::new(err),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The structured record in the chosen format; a query that fails on this
/// record (e.g. a function given the wrong type) fails the command.
pub(crate) fn print_json(globals: &Globals, value: &serde_json::Value) {
    if let Err(err) = crate::output::emit(globals, value, None) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn print_assignments(
    list: &[RoleAssignment],
    role_name: &dyn Fn(&RoleAssignment) -> Option<String>,
) {
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|a| {
            [
                a.principal_id.clone(),
                role_name(a).unwrap_or_else(|| a.role_definition_id.clone()),
                a.expires_at.map(rfc3339).unwrap_or_else(|| "never".into()),
                if a.condition.is_some() { "yes" } else { "no" }.into(),
                a.scope.to_string(),
            ]
        })
        .collect();
    print_table(
        ["Principal", "Role", "Expires", "Condition", "Scope"],
        &rows,
    );
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn print_definitions(defs: &[RoleDefinition]) {
    let rows: Vec<[String; 3]> = defs
        .iter()
        .map(|d| {
            [
                d.name.clone(),
                d.id.clone(),
                d.to_az_json()["roleType"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ]
        })
        .collect();
    print_table(["Name", "Id", "Type"], &rows);
}

fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(header.to_vec()));
    println!(
        "{}",
        line(
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect()
        )
    );
    for row in rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// The audit record of an assignment change: its id, principal, role and scope.
fn change(operation: &'static str, assignment: &RoleAssignment) -> AdminChange {
    AdminChange::new(
        operation,
        vec![
            ("role_assignment", assignment.id()),
            ("principal", assignment.principal_id.clone()),
            ("role_definition", assignment.role_definition_id.clone()),
            ("scope", assignment.scope.to_string()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use entraflow_rbac::{Authorizer, Principal, Request, action};

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: Wrapped,
    }

    #[derive(Debug, Subcommand)]
    enum Wrapped {
        Role(RoleArgs),
    }

    const ACCOUNT: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ml/providers/Microsoft.Storage/storageAccounts/data";
    const JOB: &str = "11111111-1111-1111-1111-111111111111";

    fn data_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("entraflow-role-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::datadir::init(&dir).unwrap();
        dir
    }

    fn role(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<ExitCode> {
        let argv = ["entraflow", "role"].iter().chain(args).copied();
        let Wrapped::Role(args) = TestCli::try_parse_from(argv)?.command;
        let globals = Globals {
            data_dir: dir.to_owned(),
            output: Output::Json,
            format: crate::output::Format::Json,
            query: None,
            only_show_errors: false,
        };
        run(args, &globals)
    }

    #[test]
    fn an_assignment_made_by_the_cli_is_what_the_gate_decides_on() {
        let dir = data_dir("create");
        let scope = format!("{ACCOUNT}/blobServices/default/containers/data");
        role(
            &dir,
            &[
                "assignment", "create", "--assignee-object-id", JOB,
                "--assignee-principal-type", "ServicePrincipal", "--role", "Storage Blob Data Reader",
                "--scope", &scope, "--condition",
                "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringStartsWith 'train/'",
                "--condition-version", "2.0", "--expires", "30d",
            ],
        )
        .unwrap();
        let gate = Authorizer::open(&dir).unwrap();
        let now = OffsetDateTime::now_utc();
        let read = |blob: &str| {
            Request::data(action::blob::READ, Scope::parse(&scope).unwrap()).with_blob(blob)
        };
        assert!(
            gate.authorize(&Principal::new(JOB), &read("train/a"), now)
                .is_allowed()
        );
        assert!(
            !gate
                .authorize(&Principal::new(JOB), &read("train-secret/a"), now)
                .is_allowed()
        );
        assert!(
            !gate
                .authorize(
                    &Principal::new(JOB),
                    &read("train/a"),
                    now + time::Duration::days(31)
                )
                .is_allowed()
        );

        let id = gate.store().assignments().unwrap()[0].id();
        role(&dir, &["assignment", "delete", "--ids", &id]).unwrap();
        assert!(gate.store().assignments().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_input_fails_with_a_message_that_says_what_to_fix() {
        let dir = data_dir("bad");
        let create = |role_name: &str, scope: &str, condition: &str| {
            let mut args = vec![
                "assignment",
                "create",
                "--assignee-object-id",
                JOB,
                "--assignee-principal-type",
                "User",
                "--role",
                role_name,
                "--scope",
                scope,
            ];
            if !condition.is_empty() {
                args.extend(["--condition", condition]);
            }
            format!("{:#}", role(&dir, &args).unwrap_err())
        };
        let e = create(
            "Storage Blob Data Reader",
            ACCOUNT,
            "ActionMatches{'x'} AND",
        );
        assert!(e.contains("column 23") && e.contains('^'), "{e}");
        let e = create("Storage Blob Data Raeder", ACCOUNT, "");
        assert!(
            e.contains("no role named or with id 'Storage Blob Data Raeder'"),
            "{e}"
        );
        let e = create("Owner", "/subscriptions/s/resourcegroup/rg", "");
        assert!(e.contains("expected 'resourceGroups' at segment 3"), "{e}");
        let e = format!(
            "{:#}",
            role(
                &dir,
                &[
                    "definition",
                    "create",
                    "--role-definition",
                    "{\"Name\":\"x\"}"
                ]
            )
            .unwrap_err()
        );
        assert!(e.contains("grants no Actions"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn role_definitions_come_from_a_file_or_inline_json() {
        let dir = data_dir("def");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("role.json");
        std::fs::write(
            &file,
            r#"{"Name":"Lister","DataActions":["*/read"],"AssignableScopes":["/"]}"#,
        )
        .unwrap();
        role(
            &dir,
            &[
                "definition",
                "create",
                "--role-definition",
                &format!("@{}", file.display()),
            ],
        )
        .unwrap();
        role(
            &dir,
            &[
                "definition",
                "create",
                "--role-definition",
                r#"{"Name":"Writer","DataActions":["*/write"],"AssignableScopes":["/"]}"#,
            ],
        )
        .unwrap();
        let names: Vec<String> = RbacStore::open(&dir)
            .unwrap()
            .definitions()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert!(
            names.contains(&"Lister".to_owned()) && names.contains(&"Writer".to_owned()),
            "{names:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
