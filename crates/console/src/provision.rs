//! Setting the console up in the data directory, as a platform team would in a
//! tenant: the console's app registration in the local tenant (a web app whose
//! one redirect URI is the console's own callback, exactly, with a fresh client
//! secret), and the custom role "Audit Log Reader" that governs reading the
//! evidence. Every change is an `admin.change` record on `entraflow/admin`,
//! like any `entraflow ad`/`role` command's.

use std::path::Path;

use entraflow_audit::StoreUrl;
use entraflow_authority::{AdminAudit, AdminChange, NewApplication, SecretExpiry, Store};
use entraflow_core::Secret;
use entraflow_rbac::{Permission, RbacStore, RoleDefinition, RoleType, Scope, action};

use crate::error::ConsoleError;

/// Display name of the console's app registration in the local tenant.
pub const APP_DISPLAY_NAME: &str = "entraflow console";
/// The application id URI that marks the console's registration, so that a
/// restart finds (and refreshes) it instead of registering another.
pub const APP_IDENTIFIER_URI: &str = "api://entraflow-console";
/// The custom role that grants [`action::audit::READ`].
pub const READER_ROLE: &str = "Audit Log Reader";
const READER_ROLE_DESCRIPTION: &str = "Read the entraflow audit log: who read and wrote which data in which run, role changes, token exchanges, and the log's chain integrity (the console's pages).";

/// The app the console signs people in as.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
}

/// What the admin log calls the console's own set-up.
const COMMAND: &str = "console (set-up)";

/// Registers the console in the local tenant of `data_dir` (or refreshes its
/// registration): its redirect URIs become exactly `redirect_uri` and
/// `signed_out_uri` (where sign-out returns), and its
/// client secret is replaced by a new one, returned and kept nowhere else.
pub(crate) async fn register_locally(
    data_dir: &Path,
    tenant: &str,
    redirect_uri: &str,
    signed_out_uri: &str,
    audit_store: &StoreUrl,
) -> Result<Registration, ConsoleError> {
    let fail = |e: &dyn std::fmt::Display| ConsoleError::Provision(e.to_string());
    if !data_dir.join(entraflow_authority::DB_FILE).is_file() {
        return Err(ConsoleError::Config(format!(
            "{} holds no local tenant to register the console in; start `entraflow up` (or `entraflow authority serve`) on it, or give the console a registered app with --client-id and --client-secret-file",
            data_dir.display()
        )));
    }
    // Opened first, so that an audit store that cannot take the records stops
    // the change instead of leaving it unrecorded.
    let audit = AdminAudit::open(data_dir, Some(audit_store.clone()))
        .await
        .map_err(|e| fail(&e))?;
    let store = Store::open(data_dir).map_err(|e| fail(&e))?;
    let local = store.default_tenant().map_err(|e| fail(&e))?.id;
    if !local.eq_ignore_ascii_case(tenant) {
        return Err(ConsoleError::Config(format!(
            "the console is to sign people in with tenant {tenant}, but the local tenant of {} is {local}; register the console in tenant {tenant} yourself and pass --client-id and --client-secret-file",
            data_dir.display()
        )));
    }
    let existing = store
        .list_applications()
        .map_err(|e| fail(&e))?
        .into_iter()
        .find(|a| a.identifier_uris.iter().any(|u| u == APP_IDENTIFIER_URI));
    let app = match existing {
        Some(app) => app,
        None => {
            let app = store
                .create_application(&NewApplication {
                    display_name: APP_DISPLAY_NAME.to_owned(),
                    token_version: Some(2),
                    identifier_uris: vec![APP_IDENTIFIER_URI.to_owned()],
                    ..NewApplication::default()
                })
                .map_err(|e| fail(&e))?;
            store
                .create_service_principal(&app.app_id)
                .map_err(|e| fail(&e))?;
            app
        }
    };
    let wanted = [redirect_uri.to_owned(), signed_out_uri.to_owned()];
    if app.web.redirect_uris != wanted {
        store
            .update_redirect_uris(&app.app_id, None, Some(&wanted))
            .map_err(|e| fail(&e))?;
    }
    let secret = store
        .reset_secret(&app.app_id, SecretExpiry::Years(1), false)
        .map_err(|e| fail(&e))?;
    audit.record(&store, COMMAND).await.map_err(|e| fail(&e))?;
    audit.close().await.map_err(|e| fail(&e))?;
    tracing::info!(client_id = %app.app_id, redirect_uri, "console registered in the local tenant");
    Ok(Registration {
        client_id: app.app_id,
        client_secret: Secret::new(secret.password),
    })
}

/// Creates the custom role [`READER_ROLE`] in the role store when no role of
/// that name exists, assignable in the audit scope's subscription. Returns the
/// role that is in the store.
pub(crate) async fn ensure_reader_role(
    data_dir: &Path,
    audit_scope: &Scope,
    audit_store: &StoreUrl,
) -> Result<RoleDefinition, ConsoleError> {
    let rbac = RbacStore::open(data_dir)?;
    match rbac.find_definition(READER_ROLE) {
        Ok(role) => return Ok(role),
        Err(entraflow_rbac::Error::UnknownRole { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let subscription = audit_scope
        .as_str()
        .split('/')
        .take(3)
        .collect::<Vec<_>>()
        .join("/");
    let assignable = Scope::parse(&subscription).map_err(|e| {
        ConsoleError::Config(format!(
            "the audit scope {audit_scope} is not under a subscription: {e}"
        ))
    })?;
    let audit = AdminAudit::open(data_dir, Some(audit_store.clone()))
        .await
        .map_err(|e| ConsoleError::Provision(e.to_string()))?;
    let role = rbac.create_definition(RoleDefinition {
        id: uuid::Uuid::new_v4().to_string(),
        name: READER_ROLE.to_owned(),
        description: READER_ROLE_DESCRIPTION.to_owned(),
        role_type: RoleType::Custom,
        permissions: vec![Permission {
            data_actions: vec![action::audit::READ.to_owned()],
            ..Permission::default()
        }],
        assignable_scopes: vec![assignable],
    })?;
    let change = AdminChange::new(
        "role_definition.create",
        vec![
            ("role_definition", role.id.clone()),
            ("name", role.name.clone()),
        ],
    );
    audit
        .record_changes(None, COMMAND, &[change])
        .await
        .map_err(|e| ConsoleError::Provision(e.to_string()))?;
    audit
        .close()
        .await
        .map_err(|e| ConsoleError::Provision(e.to_string()))?;
    Ok(role)
}
