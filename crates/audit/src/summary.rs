//! The security team's view after a training run: per principal, which containers
//! and prefixes it read and wrote, how many bytes, which databases it queried
//! through the SQL gate, when, and what it was denied.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::event::{Decision, EventType, Record, Timestamp, container_and_blob};

/// Reads and writes under one container or prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Access {
    /// Requests.
    pub requests: u64,
    /// Bytes transferred.
    pub bytes: u64,
}

/// Statements through the SQL gate on one database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Queries {
    /// Statements run.
    pub statements: u64,
    /// Rows they returned or changed.
    pub rows: u64,
}

/// Event types of the SQL gate that the summary counts (the gate's `sql` module
/// writes them).
const SQL_STATEMENT: &str = "sql.statement";
const SQL_STATEMENT_COMPLETED: &str = "sql.statement.completed";
/// PostgreSQL's SQLSTATE for a missing privilege.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// Everything one principal did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrincipalSummary {
    /// oid, else appid, else name.
    pub principal: String,
    /// Application id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// Display name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `container/` or `container/top-level-dir/` → reads.
    pub read: BTreeMap<String, Access>,
    /// Same for writes (and deletes).
    pub written: BTreeMap<String, Access>,
    /// Database name → statements through the SQL gate.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub queried: BTreeMap<String, Queries>,
    /// Bytes read in all.
    pub bytes_read: u64,
    /// Bytes written in all.
    pub bytes_written: u64,
    /// Denied requests.
    pub denials: u64,
    /// Events in all.
    pub events: u64,
    /// First event.
    pub first: Timestamp,
    /// Last event.
    pub last: Timestamp,
}

/// The prefix a resource is grouped under: the container and the blob's first path
/// segment (`data/train/`), or the container alone (`data/`).
pub fn prefix_of(resource: &str) -> Option<String> {
    let (container, blob) = container_and_blob(resource)?;
    Some(match blob.and_then(|b| b.split_once('/')) {
        Some((dir, _)) => format!("{container}/{dir}/"),
        None => format!("{container}/"),
    })
}

/// Builds per-principal summaries, ordered by principal.
#[derive(Debug, Default)]
pub struct Summarizer {
    by_principal: BTreeMap<String, PrincipalSummary>,
}

impl Summarizer {
    /// An empty summary.
    pub fn new() -> Summarizer {
        Summarizer::default()
    }

    /// Adds one record.
    pub fn add(&mut self, record: &Record) {
        let event = &record.event;
        let Some(principal) = event.principal.as_ref() else {
            return;
        };
        let key = principal.label().to_owned();
        let entry = self
            .by_principal
            .entry(key.clone())
            .or_insert_with(|| PrincipalSummary {
                principal: key,
                appid: principal.appid.clone(),
                name: principal.name.clone(),
                read: BTreeMap::new(),
                written: BTreeMap::new(),
                queried: BTreeMap::new(),
                bytes_read: 0,
                bytes_written: 0,
                denials: 0,
                events: 0,
                first: event.time,
                last: event.time,
            });
        entry.events += 1;
        entry.first = entry.first.min(event.time);
        entry.last = entry.last.max(event.time);
        let denied = event.decision == Some(Decision::Deny)
            || matches!(
                event.event_type,
                EventType::AuthzDenied | EventType::AuthnFailed | EventType::TokenRefused
            );
        if denied {
            entry.denials += 1;
            return;
        }
        if let EventType::Other(kind) = &event.event_type
            && (kind == SQL_STATEMENT || kind == SQL_STATEMENT_COMPLETED)
        {
            let database = event
                .resource
                .as_deref()
                .and_then(|r| r.rsplit_once("/databases/"))
                .map_or("?", |(_, db)| db);
            let queries = entry.queried.entry(database.to_owned()).or_default();
            if kind == SQL_STATEMENT {
                queries.statements += 1;
            }
            // A read's outcome is in its statement record; a write's in its
            // completion record. Either way a statement has it once.
            queries.rows += event.rows.unwrap_or(0);
            // The session was allowed, but PostgreSQL refused the statement (a
            // missing GRANT): that is a denial too.
            if event.sqlstate.as_deref() == Some(INSUFFICIENT_PRIVILEGE) {
                entry.denials += 1;
            }
            return;
        }
        let Some(prefix) = event.resource.as_deref().and_then(prefix_of) else {
            return;
        };
        let bytes = event.bytes.unwrap_or(0);
        let (map, total) = if event.event_type.is_data_write() {
            (&mut entry.written, &mut entry.bytes_written)
        } else if matches!(
            event.event_type,
            EventType::BlobRead | EventType::BlobList | EventType::ContainerList
        ) {
            (&mut entry.read, &mut entry.bytes_read)
        } else {
            return;
        };
        let access = map.entry(prefix).or_default();
        access.requests += 1;
        access.bytes += bytes;
        *total += bytes;
    }

    /// The summaries.
    pub fn finish(self) -> Vec<PrincipalSummary> {
        self.by_principal.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Principal, SCHEMA_VERSION};

    fn record(t: EventType, who: &str, resource: &str, bytes: u64, decision: Decision) -> Record {
        let mut event = Event::new(t);
        event.principal = Some(Principal {
            oid: Some(who.into()),
            ..Principal::default()
        });
        event.resource = Some(resource.into());
        event.bytes = Some(bytes);
        event.decision = Some(decision);
        Record {
            schema: SCHEMA_VERSION,
            log: "l".into(),
            seq: 0,
            id: uuid::Uuid::new_v4(),
            event,
        }
    }

    #[test]
    fn summaries_group_by_principal_and_prefix() {
        let base = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a/blobServices/default/containers";
        let mut s = Summarizer::new();
        s.add(&record(
            EventType::BlobRead,
            "job",
            &format!("{base}/data/blobs/train/0.tfrecord"),
            100,
            Decision::Allow,
        ));
        s.add(&record(
            EventType::BlobRead,
            "job",
            &format!("{base}/data/blobs/train/1.tfrecord"),
            50,
            Decision::Allow,
        ));
        s.add(&record(
            EventType::BlobWrite,
            "job",
            &format!("{base}/models/blobs/m.keras"),
            7,
            Decision::Allow,
        ));
        s.add(&record(
            EventType::BlobRead,
            "job",
            &format!("{base}/secret/blobs/x"),
            0,
            Decision::Deny,
        ));
        s.add(&record(
            EventType::BlobRead,
            "other",
            &format!("{base}/data/blobs/eval/x"),
            1,
            Decision::Allow,
        ));
        let out = s.finish();
        assert_eq!(out.len(), 2);
        let job = &out[0];
        assert_eq!(job.principal, "job");
        assert_eq!(
            job.read["data/train/"],
            Access {
                requests: 2,
                bytes: 150
            }
        );
        assert_eq!(
            job.written["models/"],
            Access {
                requests: 1,
                bytes: 7
            }
        );
        assert_eq!(
            (job.bytes_read, job.bytes_written, job.denials, job.events),
            (150, 7, 1, 4)
        );
        assert!(!job.read.contains_key("secret/"));
    }

    #[test]
    fn sql_statements_count_per_database_with_their_rows() {
        let db = "/subscriptions/s/resourceGroups/r/providers/Microsoft.DBforPostgreSQL/flexibleServers/f/databases/labels";
        let mut s = Summarizer::new();
        for _ in 0..2 {
            s.add(&record(
                EventType::Other(SQL_STATEMENT.into()),
                "job",
                db,
                0,
                Decision::Allow,
            ));
            let mut done = record(
                EventType::Other(SQL_STATEMENT_COMPLETED.into()),
                "job",
                db,
                0,
                Decision::Allow,
            );
            done.event.rows = Some(40);
            s.add(&done);
        }
        s.add(&record(
            EventType::Other(SQL_STATEMENT.into()),
            "job",
            db,
            0,
            Decision::Deny,
        ));
        // A read: one record with its outcome.
        let mut read = record(
            EventType::Other(SQL_STATEMENT.into()),
            "job",
            db,
            0,
            Decision::Allow,
        );
        read.event.rows = Some(5);
        s.add(&read);
        let mut refused = record(
            EventType::Other(SQL_STATEMENT.into()),
            "job",
            db,
            0,
            Decision::Allow,
        );
        refused.event.sqlstate = Some(INSUFFICIENT_PRIVILEGE.into());
        s.add(&refused);
        let job = &s.finish()[0];
        assert_eq!(
            job.queried["labels"],
            Queries {
                statements: 4,
                rows: 85
            }
        );
        assert_eq!(job.denials, 2, "the RBAC denial and PostgreSQL's 42501");
        assert!(job.read.is_empty() && job.written.is_empty());
    }
}
