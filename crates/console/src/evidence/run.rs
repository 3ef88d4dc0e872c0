//! One run: who took part, what each read and wrote (bytes, and the blob
//! versions the records name), what was denied and why, and the token
//! exchanges of those principals at the authority while the run went on.

use std::collections::{BTreeMap, BTreeSet};

use entraflow_audit::{
    AnyStore, EventType, Filter, PrincipalSummary, StoreError, Summarizer, Timestamp,
};

use super::index::is_denial;
use super::timeline::Timeline;
use super::{Directory, Item, missing_roles, query_all, short_resource};

/// Token exchanges this long before the run's first record still belong to it
/// (a job gets its first token before its first request).
const TOKEN_LEAD: time::Duration = time::Duration::minutes(10);

/// Reads or writes of one blob by one principal.
#[derive(Debug, Clone, Default)]
pub(crate) struct BlobAccess {
    pub(crate) requests: u64,
    pub(crate) bytes: u64,
    /// Blob versions (ETags) the records name.
    pub(crate) etags: BTreeSet<String>,
    pub(crate) md5s: BTreeSet<String>,
}

/// One principal's part in the run.
#[derive(Debug, Clone)]
pub(crate) struct RunPrincipal {
    pub(crate) label: String,
    pub(crate) name: Option<String>,
    pub(crate) kind: Option<&'static str>,
    pub(crate) summary: PrincipalSummary,
    /// `container/blob` → reads.
    pub(crate) read: BTreeMap<String, BlobAccess>,
    /// `container/blob` → writes and deletes.
    pub(crate) written: BTreeMap<String, BlobAccess>,
    /// Token exchanges during the run.
    pub(crate) tokens: u64,
}

/// One principal's reads and writes, per blob.
type BlobMaps = (BTreeMap<String, BlobAccess>, BTreeMap<String, BlobAccess>);

/// A refused request.
#[derive(Debug, Clone)]
pub(crate) struct DenialView {
    pub(crate) log: String,
    pub(crate) seq: u64,
    pub(crate) time: Timestamp,
    pub(crate) label: String,
    pub(crate) name: Option<String>,
    pub(crate) event_type: String,
    pub(crate) action: Option<String>,
    pub(crate) resource: Option<String>,
    pub(crate) missing_roles: Vec<String>,
    pub(crate) status: Option<u16>,
    /// A refused SQL statement (literals redacted), and its SQLSTATE.
    pub(crate) statement: Option<String>,
    pub(crate) sqlstate: Option<String>,
}

impl DenialView {
    /// What would have allowed it: the Azure roles the gate named, or, for a
    /// statement PostgreSQL refused (`42501`), the privilege its GRANTs lack.
    pub(crate) fn missing(&self) -> String {
        if !self.missing_roles.is_empty() {
            return self.missing_roles.join(" or ");
        }
        match (&self.statement, self.sqlstate.as_deref()) {
            (Some(statement), Some("42501")) => match sql_privilege(statement) {
                Some((privilege, table)) => format!("PostgreSQL GRANT {privilege} ON {table}"),
                None => "a PostgreSQL GRANT for this statement".to_owned(),
            },
            _ => "-".to_owned(),
        }
    }
}

/// The privilege a simple statement needs and the table it names
/// (`SELECT … FROM t` → `SELECT`, `t`), for naming what a `42501` lacked; `None`
/// for anything less plain, which is then described, not guessed.
fn sql_privilege(statement: &str) -> Option<(String, String)> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    let verb = words.first()?.to_ascii_uppercase();
    let after = match verb.as_str() {
        "SELECT" | "DELETE" => "FROM",
        "INSERT" => "INTO",
        "UPDATE" => "UPDATE",
        _ => return None,
    };
    let at = words.iter().position(|w| w.eq_ignore_ascii_case(after))?;
    let table = words
        .get(at + 1)?
        .trim_end_matches([';', ',', ')'])
        .split('(')
        .next()?;
    (!table.is_empty()).then(|| (verb, table.to_owned()))
}

/// A token the authority issued to one of the run's principals.
#[derive(Debug, Clone)]
pub(crate) struct TokenView {
    pub(crate) time: Timestamp,
    pub(crate) label: String,
    pub(crate) name: Option<String>,
    /// `token.issued` or `token.refused`.
    pub(crate) event_type: String,
    /// Endpoint and grant (`v2.0:client_credentials`, ...).
    pub(crate) grant: Option<String>,
    /// The resource (audience) the token is for.
    pub(crate) resource: Option<String>,
    pub(crate) detail: Option<String>,
}

/// The run page's content.
#[derive(Debug, Clone)]
pub(crate) struct RunView {
    pub(crate) run_id: String,
    pub(crate) first: Option<Timestamp>,
    pub(crate) last: Option<Timestamp>,
    pub(crate) events: usize,
    pub(crate) principals: Vec<RunPrincipal>,
    pub(crate) denials: Vec<DenialView>,
    pub(crate) tokens: Vec<TokenView>,
    /// Reads, writes and denials of the run over time.
    pub(crate) timeline: Timeline,
    /// Token exchanges per principal over the same buckets.
    pub(crate) token_timeline: Timeline,
    /// Blobs the run wrote and did not delete, for the lineage pointer
    /// (`entraflow audit lineage az://…`).
    pub(crate) written_blobs: Vec<String>,
}

pub(crate) async fn load(
    store: &AnyStore,
    directory: &Directory,
    run_id: &str,
) -> Result<RunView, StoreError> {
    let items = query_all(
        store,
        &Filter {
            run_id: Some(run_id.to_owned()),
            ..Filter::default()
        },
    )
    .await?;
    let first = items.iter().map(|i| i.record.event.time).min();
    let last = items.iter().map(|i| i.record.event.time).max();
    let mut summarizer = Summarizer::new();
    let mut per: BTreeMap<String, BlobMaps> = BTreeMap::new();
    let mut denials = Vec::new();
    let mut written_blobs = BTreeSet::new();
    for item in &items {
        summarizer.add(&item.record);
        let e = &item.record.event;
        let Some(p) = &e.principal else { continue };
        let label = p.label().to_owned();
        if is_denial(item) {
            denials.push(DenialView {
                log: item.record.log.clone(),
                seq: item.record.seq,
                time: e.time,
                name: directory.name_of(p.oid.as_deref(), p.name.as_deref()),
                label,
                event_type: e.event_type.to_string(),
                action: e.action.clone(),
                resource: e.resource.clone(),
                missing_roles: e.detail.as_deref().map(missing_roles).unwrap_or_default(),
                status: e.status,
                statement: e.statement.clone(),
                sqlstate: e.sqlstate.clone(),
            });
            continue;
        }
        let Some(resource) = e.resource.as_deref() else {
            continue;
        };
        let Some((_, Some(_))) = entraflow_audit::event::container_and_blob(resource) else {
            continue;
        };
        let blob = short_resource(resource);
        let (reads, writes) = per.entry(label).or_default();
        let map = if e.event_type.is_data_write() {
            match e.event_type {
                EventType::BlobWrite => {
                    written_blobs.insert(az_path(resource));
                }
                // A temporary file renamed into place: nothing left to trace.
                EventType::BlobDelete => {
                    written_blobs.remove(&az_path(resource));
                }
                _ => {}
            }
            writes
        } else if e.event_type == EventType::BlobRead {
            reads
        } else {
            continue;
        };
        let access = map.entry(blob).or_default();
        access.requests += 1;
        access.bytes += e.bytes.unwrap_or(0);
        access.etags.extend(item.etag.clone());
        access.md5s.extend(item.content_md5.clone());
    }
    let summaries = summarizer.finish();
    let tokens = match (first, last) {
        (Some(first), Some(last)) => {
            let labels: Vec<&str> = summaries.iter().map(|s| s.principal.as_str()).collect();
            token_exchanges(store, directory, &labels, first, last).await?
        }
        _ => Vec::new(),
    };
    let principals = summaries
        .into_iter()
        .map(|summary| {
            let (read, written) = per.remove(&summary.principal).unwrap_or_default();
            let kind = directory.lookup(&summary.principal).map(|(_, k)| k);
            RunPrincipal {
                label: summary.principal.clone(),
                name: directory.name_of(Some(&summary.principal), summary.name.as_deref()),
                kind,
                tokens: tokens
                    .iter()
                    .filter(|t| t.label == summary.principal && t.event_type == "token.issued")
                    .count() as u64,
                summary,
                read,
                written,
            }
        })
        .collect::<Vec<_>>();
    let timeline = Timeline::of_accesses(&items);
    let token_timeline = Timeline::of_tokens(&tokens, &principals);
    let written_blobs = written_blobs.into_iter().collect();
    Ok(RunView {
        run_id: run_id.to_owned(),
        first,
        last,
        events: items.len(),
        principals,
        denials,
        tokens,
        timeline,
        token_timeline,
        written_blobs,
    })
}

/// `az://<account>/<container>/<blob>` of a blob's scope.
fn az_path(resource: &str) -> String {
    let account = resource
        .split_once("/storageAccounts/")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or("<account>");
    format!("az://{account}/{}", short_resource(resource))
}

/// `token.issued`/`token.refused` records of the authority for `labels` from
/// [`TOKEN_LEAD`] before the run's first record to its last.
async fn token_exchanges(
    store: &AnyStore,
    directory: &Directory,
    labels: &[&str],
    first: Timestamp,
    last: Timestamp,
) -> Result<Vec<TokenView>, StoreError> {
    let since = Timestamp::from(first.as_offset_date_time() - TOKEN_LEAD);
    let until = Timestamp::from(last.as_offset_date_time() + time::Duration::milliseconds(1));
    let mut out = Vec::new();
    for label in labels {
        for kind in ["token.issued", "token.refused"] {
            let items: Vec<Item> = query_all(
                store,
                &Filter {
                    log_id: Some(entraflow_authority::AUDIT_LOG_ID.to_owned()),
                    principal: Some((*label).to_owned()),
                    event_type: Some(kind.to_owned()),
                    since: Some(since),
                    until: Some(until),
                    ..Filter::default()
                },
            )
            .await?;
            out.extend(items.into_iter().map(|i| {
                let e = i.record.event;
                let p = e.principal.unwrap_or_default();
                TokenView {
                    time: e.time,
                    label: (*label).to_owned(),
                    name: directory.name_of(p.oid.as_deref(), p.name.as_deref()),
                    event_type: e.event_type.to_string(),
                    grant: e.action,
                    resource: e.resource,
                    detail: e.detail,
                }
            }));
        }
    }
    out.sort_by_key(|t| t.time);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_statement_names_the_privilege_it_lacks() {
        let denial = |statement: &str| DenialView {
            log: "entraflow/sql-gate".into(),
            seq: 1,
            time: Timestamp::now(),
            label: "b".into(),
            name: None,
            event_type: "sql.statement".into(),
            action: None,
            resource: None,
            missing_roles: Vec::new(),
            status: None,
            statement: Some(statement.into()),
            sqlstate: Some("42501".into()),
        };
        assert_eq!(
            denial("SELECT path FROM demo.shards WHERE run_id = ?").missing(),
            "PostgreSQL GRANT SELECT ON demo.shards"
        );
        assert_eq!(
            denial("insert into demo.shards(run_id, path) values (?, ?)").missing(),
            "PostgreSQL GRANT INSERT ON demo.shards"
        );
        assert_eq!(
            denial("WITH x AS (SELECT 1) SELECT * FROM x").missing(),
            "a PostgreSQL GRANT for this statement"
        );
    }
}
