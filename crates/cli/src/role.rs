//! `entraflow role ...`: role assignments and definitions in the shape of
//! `az role`, over the store in `<data-dir>/rbac.db` that the gate reads.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use entraflow_authority::AdminChange;
use entraflow_rbac::{
    AssignmentFilter, Error as RbacError, LintOptions, NewAssignment, PrincipalType, RbacStore,
    RoleAssignment, RoleDefinition, Scope, Severity,
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
    /// projects (containers). Exits 1 when there is a warning or worse.
    Lint {
        /// Assignments without expiry older than this are flagged.
        #[arg(long, default_value_t = 90, value_name = "DAYS")]
        max_age_days: i64,
    },
}

#[derive(Debug, Subcommand)]
enum AssignmentCommand {
    /// Assign a role to a principal at a scope.
    Create {
        /// Object id of the service principal, user, managed identity or group.
        #[arg(long, visible_alias = "assignee-object-id", value_name = "OBJECT_ID")]
        assignee: String,
        /// What the assignee is: ServicePrincipal, User, Group or ManagedIdentity.
        #[arg(long, default_value = "ServicePrincipal", value_name = "TYPE")]
        assignee_principal_type: String,
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
        /// Only this principal's assignments (object id).
        #[arg(long, value_name = "OBJECT_ID")]
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
    /// Delete role assignments by id (the ARM id or its final GUID).
    Delete {
        /// Assignment ids.
        #[arg(long, required = true, num_args = 1..)]
        ids: Vec<String>,
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
        RoleCommand::Lint { max_age_days } => {
            let findings =
                entraflow_rbac::lint(&store, now, LintOptions { max_age_days }).map_err(explain)?;
            match globals.output {
                Output::Json => print_json(&serde_json::to_value(&findings)?),
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
            assignee_principal_type,
            role,
            scope,
            condition,
            condition_version,
            expires,
            description,
        } => {
            let principal_type = PrincipalType::parse(&assignee_principal_type).with_context(|| {
                format!(
                    "unknown --assignee-principal-type '{assignee_principal_type}'; use ServicePrincipal, User, Group or ManagedIdentity"
                )
            })?;
            let expires_at = expires
                .map(|e| entraflow_rbac::parse_expiry(&e, now))
                .transpose()
                .map_err(explain)?;
            let new = NewAssignment {
                principal_id: assignee,
                principal_type,
                role,
                scope,
                condition,
                condition_version,
                expires_at,
                description,
            };
            let created = crate::admin_log::audited(
                globals,
                None,
                "role assignment create",
                || store.create_assignment(new, now).map_err(explain),
                |created| {
                    Ok((
                        None,
                        created
                            .iter()
                            .map(|a| change("role_assignment.create", a))
                            .collect(),
                    ))
                },
            )?;
            let name = role_name(&created);
            match output {
                Output::Json => print_json(&created.to_az_json(name.as_deref())),
                Output::Table => print_assignments(&[created], &role_name),
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
                principal_id: assignee,
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
                Output::Json => print_json(&serde_json::Value::Array(
                    list.iter()
                        .map(|a| a.to_az_json(role_name(a).as_deref()))
                        .collect(),
                )),
                Output::Table => print_assignments(&list, &role_name),
            }
        }
        AssignmentCommand::Delete { ids } => {
            let deleted = crate::admin_log::audited(
                globals,
                None,
                "role assignment delete",
                || {
                    ids.iter()
                        .map(|id| store.delete_assignment(id).map_err(explain))
                        .collect::<anyhow::Result<Vec<_>>>()
                },
                |deleted| {
                    let deleted = deleted.iter().flatten();
                    Ok((
                        None,
                        deleted
                            .map(|a| change("role_assignment.delete", a))
                            .collect(),
                    ))
                },
            )?;
            match output {
                Output::Json => print_json(&serde_json::Value::Array(
                    deleted
                        .iter()
                        .map(|a| a.to_az_json(role_name(a).as_deref()))
                        .collect(),
                )),
                Output::Table => {
                    for a in &deleted {
                        println!("deleted {}", a.id());
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
                Output::Json => print_json(&created.to_az_json()),
                Output::Table => print_definitions(&[created]),
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
                Output::Json => print_json(&serde_json::Value::Array(
                    defs.iter().map(RoleDefinition::to_az_json).collect(),
                )),
                Output::Table => print_definitions(&defs),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `@file`, a path to an existing file, or inline JSON, as az accepts.
fn read_json_argument(value: &str) -> anyhow::Result<String> {
    let path = match value.strip_prefix('@') {
        Some(path) => Some(path),
        None if !value.trim_start().starts_with('{') => Some(value),
        None => None,
    };
    match path {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the role definition file '{path}'")),
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

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
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
        dir
    }

    fn role(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<ExitCode> {
        let argv = ["entraflow", "role"].iter().chain(args).copied();
        let Wrapped::Role(args) = TestCli::try_parse_from(argv)?.command;
        let globals = Globals {
            data_dir: dir.to_owned(),
            output: Output::Json,
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
                "assignment", "create", "--assignee", JOB, "--role", "Storage Blob Data Reader",
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
                "--assignee",
                JOB,
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
