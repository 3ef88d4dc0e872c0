//! What the pages show, read from the audit store through the audit crate's own
//! APIs (`StoreBackend::rows`/`query`, `Summarizer`, `verify_store`): no SQL of
//! the console's own. Read-only, except for the page-view records the console
//! appends on its own chain.
//!
//! - [`index`]: runs and principals, kept up to date incrementally (each chain
//!   is read from where the last page view left it, so a page costs the new
//!   events, not the whole log);
//! - [`run`]: one run: principals, what each read and wrote, denials, token
//!   exchanges;
//! - [`principal`]: one principal: accesses, role assignments in effect, and
//!   the admin changes that named it;
//! - [`timeline`]: events per time bucket, for the charts;
//! - [`integrity`]: every chain recomputed and held against its signed
//!   checkpoints.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use entraflow_audit::store::Cursor;
use entraflow_audit::{AnyStore, Filter, Record, StoreBackend, StoreError};

pub(crate) mod index;
pub(crate) mod integrity;
pub(crate) mod principal;
pub(crate) mod run;
pub(crate) mod timeline;

/// Rows read per round trip.
const PAGE: usize = 5000;

/// A stored record, and the fields of newer record layouts this build may not
/// have in [`entraflow_audit::Event`] (read from the record's JSON, so they show
/// whenever the writer put them there).
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) record: Record,
    /// The blob version acted on (the `ETag` served or produced).
    pub(crate) etag: Option<String>,
    /// Base64 MD5 of that version's content.
    pub(crate) content_md5: Option<String>,
    /// The Blob REST operation (`GetBlob`, `PutBlockList`, ...).
    pub(crate) operation: Option<String>,
    /// The stored bytes (canonical JSON), as hashed.
    pub(crate) raw: String,
}

impl Item {
    pub(crate) fn parse(bytes: &str) -> Option<Item> {
        let record = Record::parse(bytes.as_bytes()).ok()?;
        let raw: serde_json::Value = serde_json::from_str(bytes).ok()?;
        let text = |k: &str| raw.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        Some(Item {
            etag: text("etag"),
            content_md5: text("content_md5"),
            operation: text("operation"),
            raw: bytes.to_owned(),
            record,
        })
    }
}

/// Every record matching `filter`, in time order.
pub(crate) async fn query_all(store: &AnyStore, filter: &Filter) -> Result<Vec<Item>, StoreError> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let rows = store.query(filter, cursor.as_ref(), PAGE).await?;
        let Some(last) = rows.last() else { break };
        cursor = Some(Cursor::after(last));
        out.extend(rows.iter().filter_map(|r| Item::parse(&r.record)));
    }
    Ok(out)
}

/// The roles a denial's detail names as the ones that would have granted it
/// (the gate's text: `…; assign 'Storage Blob Data Reader' (<id>) or '…' (<id>)
/// at this scope or above`).
pub(crate) fn missing_roles(detail: &str) -> Vec<String> {
    let Some((_, rest)) = detail.split_once("; assign ") else {
        return Vec::new();
    };
    let rest = rest.split(" at this scope").next().unwrap_or(rest);
    rest.split(" or ")
        .filter_map(|part| {
            let part = part.trim().strip_prefix('\'')?;
            part.split_once('\'').map(|(name, _)| name.to_owned())
        })
        .collect()
}

/// `container/blob` (or `container/`) of a Blob scope; other scopes as they are.
pub(crate) fn short_resource(resource: &str) -> String {
    match entraflow_audit::event::container_and_blob(resource) {
        Some((c, Some(b))) => format!("{c}/{b}"),
        Some((c, None)) => format!("{c}/"),
        None => resource.to_owned(),
    }
}

/// Display names from the local directory (`authority.db`), when there is one:
/// the audit records of workload identities carry ids, not names.
pub(crate) struct Directory {
    store: Option<Mutex<entraflow_authority::Store>>,
    cache: Mutex<HashMap<String, Option<(String, &'static str)>>>,
}

impl Directory {
    pub(crate) fn open(data_dir: &Path) -> Directory {
        let store = data_dir
            .join(entraflow_authority::DB_FILE)
            .is_file()
            .then(|| entraflow_authority::Store::open(data_dir))
            .and_then(|r| {
                r.map_err(|e| tracing::warn!(error = %e, "cannot read the local directory; principals show by id"))
                    .ok()
            })
            .map(Mutex::new);
        Directory {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The display name and kind (`User`, `ServicePrincipal`, `Group`) of an
    /// object id, if the directory knows it.
    pub(crate) fn lookup(&self, oid: &str) -> Option<(String, &'static str)> {
        let store = self.store.as_ref()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cache.get(oid) {
            return hit.clone();
        }
        let found = store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .directory_object(oid)
            .ok()
            .flatten()
            .map(|o| (o.display_name, o.kind.as_str()));
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(oid.to_owned(), found.clone());
        found
    }

    /// What to call a principal: the directory's name, else the record's.
    pub(crate) fn name_of(&self, oid: Option<&str>, recorded: Option<&str>) -> Option<String> {
        oid.and_then(|o| self.lookup(o))
            .map(|(n, _)| n)
            .or_else(|| recorded.map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denials_missing_roles_come_from_its_detail() {
        let detail = "principal 1b2 (appid 9f) has no role assignment granting Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read on /subscriptions/s/x; assign 'Storage Blob Data Reader' (2a2b9908-6ea1-4ae2-8e65-a410df84e7d1) or 'Storage Blob Data Contributor' (ba92f5b4-2d11-453d-a403-e96b0029c9fe) at this scope or above";
        assert_eq!(
            missing_roles(detail),
            ["Storage Blob Data Reader", "Storage Blob Data Contributor"]
        );
        assert!(missing_roles("no role grants this action").is_empty());
    }
}
