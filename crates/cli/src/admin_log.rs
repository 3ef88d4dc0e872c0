//! Admin commands record what they changed on the audit log's `entraflow/admin`
//! chain: the log is opened before anything changes (an unreachable store stops the
//! change), and every change is durable before the command exits.

use anyhow::Context;
use entraflow_audit::StoreUrl;
use entraflow_authority::{AdminAudit, AdminChange};

use crate::Globals;

/// The tenant the changes belong to (if known) and the changes themselves.
pub(crate) type Changes = (Option<String>, Vec<AdminChange>);

/// Runs `change`, then records what `changes` reports from its result, as
/// `entraflow <command>`. `audit_store` defaults to `$ENTRAFLOW_AUDIT_STORE`, else the
/// data directory's `audit.db`.
pub(crate) fn audited<T>(
    globals: &Globals,
    audit_store: Option<StoreUrl>,
    command: &str,
    change: impl FnOnce() -> anyhow::Result<T>,
    changes: impl FnOnce(&anyhow::Result<T>) -> anyhow::Result<Changes>,
) -> anyhow::Result<T> {
    let audit_store = match audit_store {
        Some(url) => Some(url),
        None => match std::env::var("ENTRAFLOW_AUDIT_STORE") {
            Ok(url) if !url.is_empty() => Some(
                StoreUrl::parse(&url).with_context(|| format!("ENTRAFLOW_AUDIT_STORE={url}"))?,
            ),
            _ => None,
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let audit = rt
        .block_on(AdminAudit::open(&globals.data_dir, audit_store))
        .context("opening the audit log before changing anything")?;
    let result = change();
    // Whatever was changed is recorded, even if printing the result failed.
    let recorded = changes(&result).and_then(|(tenant, changes)| {
        rt.block_on(async {
            audit
                .record_changes(tenant.as_deref(), command, &changes)
                .await?;
            audit.close().await
        })
        .map_err(anyhow::Error::from)
    });
    let value = result?;
    recorded.context("recording the change in the audit log")?;
    Ok(value)
}
