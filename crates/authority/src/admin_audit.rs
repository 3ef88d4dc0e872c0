//! Admin changes in the audit log. Every mutating [`Store`] method notes what it
//! changed (operation and object ids, never a secret or password) in the handle's
//! journal; [`AdminAudit::record`] turns the journal into `admin.change` events on
//! chain [`ADMIN_LOG_ID`]. Noting in the store rather than in each CLI command means
//! no admin operation can be added without being audited.

use std::path::Path;

use entraflow_audit::{
    AuditLog, AuditOptions, CheckpointSigner, Event, EventType, StoreError, StoreUrl,
};

use crate::error::AuthorityError;
use crate::store::Store;

/// The audit chain admin changes are appended to.
pub const ADMIN_LOG_ID: &str = "entraflow/admin";

/// How often an append is retried after another admin command's append won.
const CONFLICT_RETRIES: usize = 8;

/// One admin change (to the tenant directory, or to role assignments).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminChange {
    /// What was done, e.g. `application.create`, `signing_key.rotate`.
    pub operation: &'static str,
    /// The objects it touched, as (kind, id), e.g. `("application", "<appId>")`.
    pub objects: Vec<(&'static str, String)>,
}

impl AdminChange {
    /// A change made outside the directory (e.g. `role_assignment.create`).
    pub fn new(operation: &'static str, objects: Vec<(&'static str, String)>) -> AdminChange {
        AdminChange { operation, objects }
    }
}

impl Store {
    /// Notes an admin change for [`AdminAudit::record`].
    pub(crate) fn changed(&self, operation: &'static str, objects: &[(&'static str, &str)]) {
        let change = AdminChange {
            operation,
            objects: objects
                .iter()
                .map(|(kind, id)| (*kind, (*id).to_owned()))
                .collect(),
        };
        self.admin_changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(change);
    }

    /// Takes the admin changes made through this handle that are not yet audited.
    pub fn take_admin_changes(&self) -> Vec<AdminChange> {
        std::mem::take(&mut *self.admin_changes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The writer of chain [`ADMIN_LOG_ID`], for one administrative session (a CLI
/// command). Open it before changing anything, so that an unreachable audit store
/// stops the change instead of leaving it unrecorded.
#[derive(Debug)]
pub struct AdminAudit {
    log: AuditLog,
    actor: String,
}

impl AdminAudit {
    /// Opens chain [`ADMIN_LOG_ID`] in `store` (default `<data_dir>/audit.db`), signing
    /// checkpoints with the data directory's audit key. The actor is the local OS
    /// user ([`os_user`]).
    pub async fn open(
        data_dir: &Path,
        store: Option<StoreUrl>,
    ) -> Result<AdminAudit, AuthorityError> {
        let url = store.unwrap_or_else(|| StoreUrl::default_for(data_dir));
        let signer = CheckpointSigner::load_or_create(
            data_dir,
            entraflow_audit::checkpoint::DEFAULT_KEY_NAME,
        )
        .map_err(|e| AuthorityError::Audit(format!("audit signing key: {e}")))?;
        let log = AuditLog::open(
            &url,
            signer,
            AuditOptions::new(ADMIN_LOG_ID).checkpoint_interval(None),
        )
        .await
        .map_err(|e| AuthorityError::Audit(format!("opening {url}: {e}")))?;
        Ok(AdminAudit {
            log,
            actor: os_user(),
        })
    }

    /// Appends one `admin.change` event per change noted in `store` (see
    /// [`Store::take_admin_changes`]), each durable on return. `command` names what
    /// the administrator ran (e.g. `ad app create`); it must not carry secrets.
    /// Returns how many events were written.
    pub async fn record(&self, store: &Store, command: &str) -> Result<usize, AuthorityError> {
        let changes = store.take_admin_changes();
        if changes.is_empty() {
            return Ok(0);
        }
        let tenant = store.default_tenant()?.id;
        self.record_changes(Some(&tenant), command, &changes).await
    }

    /// Appends one `admin.change` event per change made outside the directory (role
    /// assignments and definitions), each durable on return.
    pub async fn record_changes(
        &self,
        tenant: Option<&str>,
        command: &str,
        changes: &[AdminChange],
    ) -> Result<usize, AuthorityError> {
        for change in changes {
            let event = self.event(tenant, command, change);
            self.append(event).await.map_err(|e| {
                AuthorityError::Audit(format!(
                    "'{command}' was applied but its audit record could not be written ({e}); record it by hand"
                ))
            })?;
        }
        Ok(changes.len())
    }

    /// Appends, retrying when another admin command appended to the chain in
    /// between: two `entraflow ad` commands may run at once, and after a conflict
    /// the writer reloads the chain's head, so the retry lands behind the other's.
    async fn append(&self, event: Event) -> Result<(), entraflow_audit::AuditError> {
        let mut attempts = 0;
        loop {
            match self.log.append(event.clone()).await {
                Ok(_) => return Ok(()),
                Err(entraflow_audit::AuditError::Store(StoreError::Conflict { .. }))
                    if attempts < CONFLICT_RETRIES =>
                {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn event(&self, tenant: Option<&str>, command: &str, change: &AdminChange) -> Event {
        let mut event = Event::new(EventType::AdminChange);
        event.tenant = tenant.map(str::to_owned);
        event.principal = Some(entraflow_audit::Principal {
            name: Some(self.actor.clone()),
            ..Default::default()
        });
        event.action = Some(change.operation.to_owned());
        event.resource = change.objects.first().map(|(_, id)| id.clone());
        event.decision = Some(entraflow_audit::Decision::Allow);
        let objects: Vec<String> = change
            .objects
            .iter()
            .map(|(kind, id)| format!("{kind}={id}"))
            .collect();
        event.detail = Some(format!("entraflow {command}: {}", objects.join(", ")));
        event
    }

    /// Writes the final signed checkpoint and closes the log.
    pub async fn close(self) -> Result<(), AuthorityError> {
        self.log
            .close()
            .await
            .map(|_| ())
            .map_err(|e| AuthorityError::Audit(format!("closing the audit log: {e}")))
    }
}

/// Who is administering: `$USER` (or `$LOGNAME`) and the numeric uid, e.g.
/// `alice (uid 1000)`. The uid comes from the kernel, so it holds even when the
/// environment lies.
pub fn os_user() -> String {
    let name = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|n| !n.is_empty());
    match (name, uid()) {
        (Some(name), Some(uid)) => format!("{name} (uid {uid})"),
        (Some(name), None) => name,
        (None, Some(uid)) => format!("uid {uid}"),
        (None, None) => "unknown".to_owned(),
    }
}

#[cfg(unix)]
fn uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    // The process's own /proc entry is owned by its real uid.
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(not(unix))]
fn uid() -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewApplication, SecretExpiry};

    #[test]
    fn every_admin_operation_notes_its_change_and_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(
            store.take_admin_changes().is_empty(),
            "opening is not a change"
        );
        let app = store
            .create_application(&NewApplication {
                display_name: "trainer".into(),
                ..Default::default()
            })
            .unwrap();
        let sp = store.create_service_principal(&app.app_id).unwrap();
        let secret = store
            .reset_secret(&app.app_id, SecretExpiry::Years(1), false)
            .unwrap();
        store
            .create_app_role(&app.app_id, "Data.Read", None)
            .unwrap();
        store
            .assign_app_role(&sp.id, &app.app_id, "Data.Read")
            .unwrap();
        let user = store
            .create_user("ada@example.com", "Ada", Some("correct horse"))
            .unwrap();
        let group = store.create_group("trainers").unwrap();
        store.add_group_member(&group.id, &user.id).unwrap();
        store
            .create_managed_identity(Some("mi"), "vm1", false)
            .unwrap();
        store.set_token_lifetime("60".parse().unwrap()).unwrap();
        store.rotate_keys(0, 0).unwrap();
        let changes = store.take_admin_changes();
        let ops: Vec<&str> = changes.iter().map(|c| c.operation).collect();
        assert_eq!(
            ops,
            [
                "application.create",
                "service_principal.create",
                "application.secret.reset",
                "application.app_role.create",
                "app_role_assignment.create",
                "user.create",
                "group.create",
                "group.member.add",
                "managed_identity.create",
                "tenant.update",
                "signing_key.rotate",
            ]
        );
        assert_eq!(changes[0].objects[0], ("application", app.app_id.clone()));
        let text = format!("{changes:?}");
        assert!(!text.contains(&secret.password));
        assert!(!text.contains("correct horse"));
        assert!(store.take_admin_changes().is_empty(), "taken once");
        // Reads note nothing.
        store.list_applications().unwrap();
        assert!(store.take_admin_changes().is_empty());
    }

    #[test]
    fn the_actor_names_the_uid() {
        #[cfg(unix)]
        assert!(os_user().contains("uid "), "{}", os_user());
    }
}
