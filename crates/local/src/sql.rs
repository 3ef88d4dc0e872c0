//! The demo's PostgreSQL side, behind the SQL gate: the platform team maps each
//! project's service principal to a database role named as its application (the
//! user name its jobs sign in with; `pgaadauth_create_principal` on Azure), lets
//! it connect through RBAC, and, as the database's administrator, creates the
//! shard manifest and GRANTs on it (every project sees the schema; only the stager
//! and project A get the table). The stager adds to the manifest and project
//! A's trainer reads it; project B's trainer may connect but holds no GRANT, so
//! PostgreSQL itself refuses it. Idempotent, like the rest of provisioning.

use std::path::Path;

use entraflow_authority::AdminChange;
use entraflow_gate::sql::{MappedPrincipal, PrincipalStore, PrincipalType};

use crate::error::LocalError;
use crate::provision::{Tenant, grant_sql_connect};

/// The table listing a run's staged shards (`run_id`, `path`, `examples`).
pub(crate) const MANIFEST: &str = "demo.shards";

/// Maps the stager and both trainers, allows them to connect to `database_scope`,
/// and sets up the manifest with its GRANTs on `backend` (an admin login URL).
pub(crate) async fn provision(
    backend: &str,
    data_dir: &Path,
    tenant: &Tenant,
    database_scope: &str,
    changes: &mut Vec<AdminChange>,
) -> Result<(), LocalError> {
    let principals = PrincipalStore::open(data_dir)?;
    for project in [&tenant.stager, &tenant.project_a, &tenant.project_b] {
        let mapped = MappedPrincipal {
            name: project.name.clone(),
            oid: project.principal_id.clone(),
            principal_type: PrincipalType::Service,
        };
        if principals.lookup(&project.name)?.as_ref() != Some(&mapped) {
            principals.create(backend, &mapped).await?;
        }
        grant_sql_connect(data_dir, changes, project, database_scope)?;
    }
    let failed = |e: &dyn std::fmt::Display| LocalError::Request {
        what: "setting up the demo's manifest table as the database administrator".into(),
        detail: e.to_string(),
    };
    let (client, connection) = entraflow_tls::postgres::connect(backend)
        .await
        .map_err(|e| failed(&e))?;
    let driver = tokio::spawn(connection);
    let (stager, trainer, other) = (
        &tenant.stager.name,
        &tenant.project_a.name,
        &tenant.project_b.name,
    );
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS demo;
             CREATE TABLE IF NOT EXISTS {MANIFEST} (
                 run_id text NOT NULL, path text NOT NULL, examples int NOT NULL,
                 PRIMARY KEY (run_id, path));
             GRANT USAGE ON SCHEMA demo TO \"{stager}\", \"{trainer}\", \"{other}\";
             GRANT INSERT ON {MANIFEST} TO \"{stager}\";
             GRANT SELECT ON {MANIFEST} TO \"{trainer}\";"
        ))
        .await
        .map_err(|e| failed(&e))?;
    drop(client);
    let _ = driver.await;
    Ok(())
}
