//! The tenant a platform team would set up for two projects sharing one runtime:
//! one application per project (separate identities keep audit trails clean), each
//! trusted through a federated identity credential from the cluster issuer, and role
//! assignments scoped to the project's own container and prefix, with an expiry.
//! Provisioning is idempotent: running it again on the same data directory reuses
//! what exists.

use std::path::Path;

use entraflow_authority::{AdminChange, NewApplication, Store};
use entraflow_core::FEDERATION_AUDIENCE;
use entraflow_rbac::{AssignmentFilter, NewAssignment, PrincipalType, RbacStore, Scope};
use time::{Duration, OffsetDateTime};

use crate::cluster::{ClusterIssuer, subject};
use crate::error::LocalError;

const READER: &str = "Storage Blob Data Reader";
const CONTRIBUTOR: &str = "Storage Blob Data Contributor";
const OWNER: &str = "Storage Blob Data Owner";
/// How long the demo's role assignments last: access that rotates, not forever.
const ASSIGNMENT_LIFETIME: Duration = Duration::days(30);

/// One workload identity: a Kubernetes service account mapped to an application.
#[derive(Debug, Clone)]
pub struct Project {
    /// Display name of the application, e.g. `project-a-trainer`.
    pub name: String,
    /// The Kubernetes namespace of its service account.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
    /// The application (client) id: `AZURE_CLIENT_ID` in its pods.
    pub app_id: String,
    /// The service principal's object id: the `oid` the gate and the audit log see.
    pub principal_id: String,
}

/// Everything the demo provisioned.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The platform team's provisioning identity (creates containers).
    pub platform: Project,
    /// The platform team's data-staging identity (writes project A's dataset).
    pub stager: Project,
    /// Project A's trainer.
    pub project_a: Project,
    /// Project B's trainer.
    pub project_b: Project,
}

/// Writes and deletes only under `prefix`; reads anywhere the role allows.
fn writes_only_under(prefix: &str) -> String {
    let action = |a: &str| {
        format!(
            "ActionMatches{{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/{a}'}}"
        )
    };
    format!(
        "((!({}) AND !({}) AND !({})) OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike '{prefix}*'))",
        action("write"),
        action("add/action"),
        action("delete"),
    )
}

/// Provisions the demo tenant in `store` (directory) and `data_dir`'s role
/// assignments, and trusts `issuer`. Returns the role assignments it made, for the
/// audit log (the directory's own changes are noted by `store`).
pub fn provision(
    store: &Store,
    data_dir: &Path,
    issuer: &ClusterIssuer,
    storage_scope: &str,
) -> Result<(Tenant, Vec<AdminChange>), LocalError> {
    store.add_trusted_issuer(issuer.issuer(), &issuer.jwks_path())?;
    let rbac = RbacStore::open(data_dir)?;
    let mut changes = Vec::new();
    let container = |name: &str| format!("{storage_scope}/blobServices/default/containers/{name}");

    let platform = workload(store, issuer, "platform-admin", "platform", "provisioner")?;
    grant(&rbac, &mut changes, &platform, OWNER, storage_scope, None)?;

    let stager = workload(
        store,
        issuer,
        "platform-data-stager",
        "platform",
        "data-stager",
    )?;
    grant(
        &rbac,
        &mut changes,
        &stager,
        CONTRIBUTOR,
        &container("project-a"),
        Some(writes_only_under("digits/")),
    )?;

    let mut projects = Vec::new();
    for name in ["project-a", "project-b"] {
        let project = workload(store, issuer, &format!("{name}-trainer"), name, "trainer")?;
        grant(
            &rbac,
            &mut changes,
            &project,
            READER,
            &container(name),
            None,
        )?;
        grant(
            &rbac,
            &mut changes,
            &project,
            CONTRIBUTOR,
            &container(name),
            Some(writes_only_under("models/")),
        )?;
        projects.push(project);
    }
    let project_b = projects.pop().expect("two projects");
    let project_a = projects.pop().expect("two projects");
    Ok((
        Tenant {
            platform,
            stager,
            project_a,
            project_b,
        },
        changes,
    ))
}

/// An application + service principal trusting `system:serviceaccount:<ns>:<sa>`.
fn workload(
    store: &Store,
    issuer: &ClusterIssuer,
    name: &str,
    namespace: &str,
    service_account: &str,
) -> Result<Project, LocalError> {
    let existing = store
        .list_applications()?
        .into_iter()
        .find(|a| a.display_name == name);
    let app = match existing {
        Some(app) => app,
        None => store.create_application(&NewApplication {
            display_name: name.to_owned(),
            token_version: None,
            public_client: false,
            identifier_uris: Vec::new(),
            group_membership_claims: None,
        })?,
    };
    let sp = match store
        .list_service_principals()?
        .into_iter()
        .find(|sp| sp.app_id == app.app_id)
    {
        Some(sp) => sp,
        None => store.create_service_principal(&app.app_id)?,
    };
    if !store
        .list_federated_credentials(&app.app_id)?
        .iter()
        .any(|f| f.name == "cluster")
    {
        store.create_federated_credential(
            &app.app_id,
            "cluster",
            issuer.issuer(),
            &subject(namespace, service_account),
            &[FEDERATION_AUDIENCE.to_owned()],
        )?;
    }
    Ok(Project {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
        app_id: app.app_id,
        principal_id: sp.id,
    })
}

/// The custom role that lets a principal open sessions through the SQL gate
/// (Azure's flexible servers have no data action for it; the gate does).
const SQL_CONNECTOR: &str = "PostgreSQL Database Connector";

/// Lets `project` connect to the database at `database_scope` through the SQL gate,
/// creating the connector role on first use.
pub(crate) fn grant_sql_connect(
    data_dir: &Path,
    changes: &mut Vec<AdminChange>,
    project: &Project,
    database_scope: &str,
) -> Result<(), LocalError> {
    let rbac = RbacStore::open(data_dir)?;
    if rbac.find_definition(SQL_CONNECTOR).is_err() {
        let role = entraflow_rbac::RoleDefinition::from_json(
            &serde_json::json!({
                "Name": SQL_CONNECTOR,
                "Description": "Open sessions on a database through entraflow's SQL gate; what they may read stays PostgreSQL GRANTs.",
                "DataActions": [entraflow_rbac::action::postgres::CONNECT],
                "AssignableScopes": ["/"],
            })
            .to_string(),
        )
        .map_err(|e| LocalError::Check(format!("the connector role: {e}")))?;
        let created = rbac.create_definition(role)?;
        changes.push(AdminChange::new(
            "role_definition.create",
            vec![
                ("role_definition", created.id.clone()),
                ("name", created.name),
            ],
        ));
    }
    grant(&rbac, changes, project, SQL_CONNECTOR, database_scope, None)
}

fn grant(
    rbac: &RbacStore,
    changes: &mut Vec<AdminChange>,
    project: &Project,
    role: &str,
    scope: &str,
    condition: Option<String>,
) -> Result<(), LocalError> {
    let now = OffsetDateTime::now_utc();
    let definition = rbac.find_definition(role)?;
    let filter = AssignmentFilter {
        principal_id: Some(project.principal_id.clone()),
        scope: Some(Scope::parse(scope)?),
        include_inherited: false,
    };
    let exists = rbac.list_assignments(&filter)?.iter().any(|a| {
        a.role_definition_id == definition.id && a.condition == condition && !a.is_expired(now)
    });
    if !exists {
        let created = rbac.create_assignment(
            NewAssignment {
                principal_id: project.principal_id.clone(),
                principal_type: PrincipalType::ServicePrincipal,
                role: role.to_owned(),
                scope: scope.to_owned(),
                condition_version: condition.as_ref().map(|_| "2.0".to_owned()),
                condition,
                expires_at: Some(now + ASSIGNMENT_LIFETIME),
                description: Some(format!("entraflow demo: {} for {}", role, project.name)),
            },
            now,
        )?;
        changes.push(AdminChange::new(
            "role_assignment.create",
            vec![
                ("role_assignment", created.id()),
                ("principal", created.principal_id.clone()),
                ("role_definition", created.role_definition_id.clone()),
                ("scope", created.scope.to_string()),
            ],
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_condition_parses_and_names_the_prefix() {
        let text = writes_only_under("models/");
        entraflow_rbac::Condition::parse(&text).unwrap();
        assert!(text.contains("StringLike 'models/*'"));
    }
}
