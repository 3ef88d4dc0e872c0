//! Runs and principals across the whole log, read once: the index remembers how
//! far it has read each chain and reads only what was appended since.

use std::collections::{BTreeMap, BTreeSet};

use entraflow_audit::{AnyStore, Decision, EventType, StoreBackend, StoreError, Timestamp};

use super::{Item, PAGE};

/// One training run, as far as the log shows it.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    pub(crate) run_id: String,
    pub(crate) first: Timestamp,
    pub(crate) last: Timestamp,
    pub(crate) events: u64,
    pub(crate) denials: u64,
    pub(crate) bytes_read: u64,
    pub(crate) bytes_written: u64,
    /// Principal labels (oid, else appid, else name).
    pub(crate) principals: BTreeSet<String>,
}

/// One principal, across every chain.
#[derive(Debug, Clone)]
pub(crate) struct PrincipalInfo {
    /// oid, else appid, else name: what links to its page.
    pub(crate) label: String,
    pub(crate) oid: Option<String>,
    pub(crate) appid: Option<String>,
    /// The name a record gave it (the directory's is looked up when shown).
    pub(crate) recorded_name: Option<String>,
    pub(crate) events: u64,
    pub(crate) denials: u64,
    pub(crate) tokens: u64,
    pub(crate) first: Timestamp,
    pub(crate) last: Timestamp,
    pub(crate) runs: BTreeSet<String>,
}

/// Whether a record is a refusal (by RBAC, authentication, the authority, or
/// PostgreSQL's own GRANTs), as `audit summary` counts them.
pub(crate) fn is_denial(item: &Item) -> bool {
    let e = &item.record.event;
    e.decision == Some(Decision::Deny)
        || matches!(
            e.event_type,
            EventType::AuthzDenied | EventType::AuthnFailed | EventType::TokenRefused
        )
        || e.sqlstate.as_deref() == Some("42501")
}

/// The index.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Per chain, the next position to read.
    next: BTreeMap<String, u64>,
    pub(crate) runs: BTreeMap<String, RunInfo>,
    pub(crate) principals: BTreeMap<String, PrincipalInfo>,
}

impl Index {
    /// Reads every event appended since the last call.
    pub(crate) async fn catch_up(&mut self, store: &AnyStore) -> Result<(), StoreError> {
        for head in store.heads().await? {
            let mut from = self.next.get(&head.log_id).copied().unwrap_or(0);
            while from < head.size {
                let rows = store.rows(&head.log_id, from, PAGE).await?;
                let Some(last) = rows.last() else { break };
                from = last.seq + 1;
                for row in &rows {
                    if let Some(item) = Item::parse(&row.record) {
                        self.add(&item);
                    }
                }
            }
            self.next.insert(head.log_id.clone(), from);
        }
        Ok(())
    }

    fn add(&mut self, item: &Item) {
        let e = &item.record.event;
        let denied = is_denial(item);
        if let Some(run_id) = &e.run_id {
            let run = self.runs.entry(run_id.clone()).or_insert_with(|| RunInfo {
                run_id: run_id.clone(),
                first: e.time,
                last: e.time,
                events: 0,
                denials: 0,
                bytes_read: 0,
                bytes_written: 0,
                principals: BTreeSet::new(),
            });
            run.events += 1;
            run.first = run.first.min(e.time);
            run.last = run.last.max(e.time);
            if denied {
                run.denials += 1;
            } else if e.event_type.is_data_write() {
                run.bytes_written += e.bytes.unwrap_or(0);
            } else if e.event_type == EventType::BlobRead {
                run.bytes_read += e.bytes.unwrap_or(0);
            }
            if let Some(p) = &e.principal {
                run.principals.insert(p.label().to_owned());
            }
        }
        let Some(p) = &e.principal else { return };
        let label = p.label().to_owned();
        let entry = self
            .principals
            .entry(label.clone())
            .or_insert_with(|| PrincipalInfo {
                label,
                oid: p.oid.clone(),
                appid: p.appid.clone(),
                recorded_name: p.name.clone(),
                events: 0,
                denials: 0,
                tokens: 0,
                first: e.time,
                last: e.time,
                runs: BTreeSet::new(),
            });
        entry.events += 1;
        entry.first = entry.first.min(e.time);
        entry.last = entry.last.max(e.time);
        if entry.recorded_name.is_none() {
            entry.recorded_name = p.name.clone();
        }
        if entry.appid.is_none() {
            entry.appid = p.appid.clone();
        }
        if denied {
            entry.denials += 1;
        }
        if e.event_type == EventType::TokenIssued {
            entry.tokens += 1;
        }
        if let Some(run) = &e.run_id {
            entry.runs.insert(run.clone());
        }
    }
}
