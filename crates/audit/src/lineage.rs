//! Model lineage: from one blob version (a saved model, a checkpoint) back to the
//! write that produced it, the run and identity of that write, every blob version
//! that identity read in that run before it, and the role assignments that allowed
//! each read, with the admin changes that made them.
//!
//! Everything is read from the log itself: the gate records the ETag and MD5 a
//! write produced and the ETag a read served (schema 2 records), and the granting
//! assignment of every decision. [`lineage`] selects the events (the
//! [`Evidence`]); [`derive`] turns evidence into a [`Lineage`]. A proof bundle
//! ([`crate::bundle`]) carries the same evidence, and its verifier derives the
//! lineage again from the proven events, so the summary in a bundle is never
//! taken on trust.
//!
//! What counts as an input of a version: a Get Blob (`operation` `GetBlob`) that
//! was allowed and answered 2xx, by the principal (object id) of the write that
//! produced the content, carrying the same run id, and that began before that write
//! (earlier in the same chain; at or before its time on another chain). A
//! streamed read has two records (the decision, and `blob.read.completed` with the
//! bytes actually sent); both belong to its request, whose bytes are the
//! completion's. When the version asked for was made by Set Blob Metadata or Set
//! Blob Properties (a new ETag, the same content), the lineage follows the write
//! of its content, which is reported beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::event::{Decision, Principal, Record, Timestamp};
use crate::store::{AnyStore, ResourceMatch, Row, StoreBackend};

/// Event types of a read's records.
pub(crate) const READ_TYPES: [&str; 2] = ["blob.read", "blob.read.completed"];
/// Operations whose write produces a blob version with new content.
const CONTENT_WRITES: [&str; 3] = ["PutBlob", "PutBlockList", "CopyBlob"];
/// Operations whose write produces a new ETag with the same content.
const PROPERTY_WRITES: [&str; 2] = ["SetBlobMetadata", "SetBlobProperties"];
/// Writes of one blob looked at, newest first.
const MAX_WRITES: usize = 100_000;

/// A blob as a person names it: `az://account/container/path`, a Blob URL
/// (`https://host/account/container/path` as the gate and Azurite serve it, or
/// `https://account.blob.core.windows.net/container/path`), or its full Azure scope
/// (`/subscriptions/.../storageAccounts/a/blobServices/default/containers/c/blobs/path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobTarget {
    /// The storage account.
    pub account: String,
    /// The container.
    pub container: String,
    /// The blob's path in the container.
    pub blob: String,
    /// The full scope, when it was given.
    pub scope: Option<String>,
}

impl BlobTarget {
    /// Parses any of the forms above. A URL's query (a SAS, say) is dropped and
    /// never printed; its path is percent-decoded, as the gate decodes it.
    pub fn parse(text: &str) -> Result<BlobTarget, AuditError> {
        let bad = |why: &str| {
            AuditError::Lineage(format!(
                "'{}' is not a blob: {why}; give az://account/container/path, a Blob URL or a blob's Azure scope",
                redact_query(text)
            ))
        };
        if text.starts_with("/subscriptions/") {
            let (_, account, container, blob) =
                parse_scope(text).ok_or_else(|| bad("the scope does not name a blob"))?;
            return Ok(BlobTarget {
                account: account.to_owned(),
                container: container.to_owned(),
                blob: blob.to_owned(),
                scope: Some(text.to_owned()),
            });
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("it has no scheme"))?;
        let (account, path) = match scheme.to_ascii_lowercase().as_str() {
            "az" => rest
                .split_once('/')
                .ok_or_else(|| bad("no container after the account"))?,
            "https" | "http" => {
                let rest = rest.split(['?', '#']).next().unwrap_or_default();
                let (host, path) = rest
                    .split_once('/')
                    .ok_or_else(|| bad("no path after the host"))?;
                let host = host.rsplit('@').next().unwrap_or(host);
                let name = host.split(':').next().unwrap_or(host);
                match name.split_once(".blob.") {
                    // https://account.blob.core.windows.net/container/path
                    Some((account, _)) => (account, path),
                    // https://host:port/account/container/path
                    None => path
                        .split_once('/')
                        .ok_or_else(|| bad("no container after the account"))?,
                }
            }
            _ => return Err(bad("the scheme is neither az:// nor https://")),
        };
        let path = if scheme.eq_ignore_ascii_case("az") {
            path.to_owned()
        } else {
            percent_encoding::percent_decode_str(path)
                .decode_utf8()
                .map_err(|_| bad("the path is not valid UTF-8 once decoded"))?
                .into_owned()
        };
        let (container, blob) = path
            .split_once('/')
            .ok_or_else(|| bad("no blob path after the container"))?;
        if account.is_empty() || container.is_empty() || blob.is_empty() {
            return Err(bad("the account, container or path is empty"));
        }
        Ok(BlobTarget {
            account: account.to_owned(),
            container: container.to_owned(),
            blob: blob.to_owned(),
            scope: None,
        })
    }

    /// `az://account/container/path`.
    pub fn uri(&self) -> String {
        format!("az://{}/{}/{}", self.account, self.container, self.blob)
    }

    /// The end of every scope of this blob, whatever its subscription.
    fn suffix(&self) -> String {
        format!(
            "/storageAccounts/{}/blobServices/default/containers/{}/blobs/{}",
            self.account, self.container, self.blob
        )
    }

    fn matcher(&self) -> ResourceMatch {
        match &self.scope {
            Some(scope) => ResourceMatch::Exact(scope.clone()),
            None => ResourceMatch::Suffix(self.suffix()),
        }
    }

    /// Whether `resource` is this blob's scope (not merely a scope ending like it).
    fn is_scope_of(&self, resource: &str) -> bool {
        match &self.scope {
            Some(scope) => scope == resource,
            None => parse_scope(resource).is_some_and(|(_, a, c, b)| {
                a == self.account && c == self.container && b == self.blob
            }),
        }
    }
}

impl FromStr for BlobTarget {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BlobTarget::parse(s)
    }
}

impl fmt::Display for BlobTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

fn redact_query(text: &str) -> String {
    match text.split_once('?') {
        Some((head, _)) => format!("{head}?REDACTED"),
        None => text.to_owned(),
    }
}

/// Splits a blob's scope into (the part before `/storageAccounts/`, account,
/// container, blob), if it is one: `/subscriptions/S/resourceGroups/G/providers/
/// Microsoft.Storage/storageAccounts/A/blobServices/default/containers/C/blobs/B`.
pub fn parse_scope(resource: &str) -> Option<(&str, &str, &str, &str)> {
    let (head, rest) = resource.split_once("/storageAccounts/")?;
    let parts: Vec<&str> = head.split('/').collect();
    let well_formed = matches!(
        parts.as_slice(),
        ["", subscriptions, s, groups, g, providers, storage]
            if subscriptions.eq_ignore_ascii_case("subscriptions")
                && groups.eq_ignore_ascii_case("resourceGroups")
                && providers.eq_ignore_ascii_case("providers")
                && storage.eq_ignore_ascii_case("Microsoft.Storage")
                && !s.is_empty() && !g.is_empty()
    );
    if !well_formed {
        return None;
    }
    let (account, rest) = rest.split_once("/blobServices/default/containers/")?;
    let (container, blob) = rest.split_once("/blobs/")?;
    if account.is_empty() || account.contains('/') || container.is_empty() {
        return None;
    }
    if container.contains('/') || blob.is_empty() {
        return None;
    }
    Some((head, account, container, blob))
}

/// `az://account/container/path` of a blob scope, else the scope itself.
pub fn blob_uri(resource: &str) -> String {
    match parse_scope(resource) {
        Some((_, a, c, b)) => format!("az://{a}/{c}/{b}"),
        None => resource.to_owned(),
    }
}

/// Where an event is: its chain, position and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventRef {
    /// The chain.
    pub log: String,
    /// Its position in the chain (the Merkle leaf index).
    pub seq: u64,
    /// The event id.
    pub id: String,
}

impl EventRef {
    fn of(record: &Record) -> EventRef {
        EventRef {
            log: record.log.clone(),
            seq: record.seq,
            id: record.id.to_string(),
        }
    }
}

/// A write that produced a blob version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Write {
    /// The event.
    pub event: EventRef,
    /// When.
    pub time: Timestamp,
    /// `PutBlob`, `PutBlockList`, `CopyBlob`, `SetBlobMetadata`, `SetBlobProperties`.
    pub operation: Option<String>,
    /// The version's ETag.
    pub etag: Option<String>,
    /// The version's content MD5 (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<String>,
    /// Bytes written (a copy: the bytes copied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Who.
    pub principal: Option<Principal>,
    /// The run id the writer sent.
    pub run_id: Option<String>,
    /// The writer's token (`uti`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_uti: Option<String>,
    /// The assignment that allowed the write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_id: Option<String>,
    /// Its role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// Copy Blob: the source, as `az://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_source: Option<String>,
    /// Copy Blob: the source version's ETag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_source_etag: Option<String>,
}

impl Write {
    fn of(record: &Record) -> Write {
        let e = &record.event;
        Write {
            event: EventRef::of(record),
            time: e.time,
            operation: e.operation.clone(),
            etag: e.etag.clone(),
            content_md5: e.content_md5.clone(),
            bytes: e.bytes,
            principal: e.principal.clone(),
            run_id: e.run_id.clone(),
            token_uti: e.token_uti.clone(),
            assignment_id: e.assignment_id.clone(),
            role_name: e.role_name.clone(),
            copy_source: e.copy_source.as_deref().map(blob_uri),
            copy_source_etag: e.copy_source_etag.clone(),
        }
    }
}

/// One blob version the writer read in the run, before the write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobRead {
    /// The blob, as `az://`.
    pub blob: String,
    /// Its full scope.
    pub resource: String,
    /// The ETag served (absent for reads recorded before schema 2).
    pub etag: Option<String>,
    /// The version's Content-MD5, when the blob has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<String>,
    /// Get Blob requests of this version.
    pub requests: u64,
    /// Body bytes they delivered.
    pub bytes: u64,
    /// First request.
    pub first: Timestamp,
    /// Last request.
    pub last: Timestamp,
    /// The role assignments that allowed them (ids).
    pub assignments: Vec<String>,
}

/// A role assignment that allowed reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// The assignment id, as the gate records it.
    pub assignment_id: String,
    /// The role it assigns.
    pub role_name: Option<String>,
    /// Read requests it allowed.
    pub reads: u64,
    /// Admin changes of it up to the write: who created (or changed) it, when.
    pub changes: Vec<GrantChange>,
}

/// An `admin.change` event of a role assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantChange {
    /// The event.
    pub event: EventRef,
    /// When.
    pub time: Timestamp,
    /// What was done (`role_assignment.create`, ...).
    pub operation: Option<String>,
    /// Who did it (the OS user for `entraflow role`, the caller for the admin API).
    pub actor: Option<String>,
    /// The change as recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The lineage of one blob version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The blob, as `az://`.
    pub blob: String,
    /// Its full scope.
    pub resource: String,
    /// The write that produced the version asked for.
    pub version: Write,
    /// When that write only changed properties or metadata: the write of the
    /// content, whose run and principal the lineage follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Write>,
    /// The run.
    pub run_id: Option<String>,
    /// The identity that wrote the content.
    pub principal: Option<Principal>,
    /// Every blob version it read in the run before the write, by blob then ETag.
    pub reads: Vec<BlobRead>,
    /// The role assignments that allowed those reads, by id.
    pub grants: Vec<Grant>,
    /// What the lineage cannot say, plainly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Lineage {
    /// The write whose run and principal the lineage follows.
    pub fn source(&self) -> &Write {
        self.content.as_ref().unwrap_or(&self.version)
    }

    /// Read requests in all.
    pub fn read_requests(&self) -> u64 {
        self.reads.iter().map(|r| r.requests).sum()
    }

    /// Bytes read in all.
    pub fn read_bytes(&self) -> u64 {
        self.reads.iter().map(|r| r.bytes).sum()
    }
}

/// What a lineage rests on: the events themselves.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The write that produced the version asked for.
    pub version: Option<Record>,
    /// The write of its content, when the version was a properties change.
    pub content: Option<Record>,
    /// Every record of every input read.
    pub reads: Vec<Record>,
    /// `admin.change` events of the granting assignments.
    pub grants: Vec<Record>,
}

impl Evidence {
    /// Every record, with its part in the lineage (`version`, `content`, `read`,
    /// `grant`).
    pub fn records(&self) -> impl Iterator<Item = (Role, &Record)> {
        self.version
            .iter()
            .map(|r| (Role::Version, r))
            .chain(self.content.iter().map(|r| (Role::Content, r)))
            .chain(self.reads.iter().map(|r| (Role::Read, r)))
            .chain(self.grants.iter().map(|r| (Role::Grant, r)))
    }
}

/// An event's part in a lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The write that produced the version asked for.
    Version,
    /// The write of its content (when the version was a properties change).
    Content,
    /// A record of an input read.
    Read,
    /// An admin change of a granting assignment.
    Grant,
}

impl Role {
    /// `version`, `content`, `read` or `grant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Version => "version",
            Role::Content => "content",
            Role::Read => "read",
            Role::Grant => "grant",
        }
    }
}

/// A lineage found in a store: the lineage, the events it rests on, and what was
/// left out.
#[derive(Debug, Clone)]
pub struct Found {
    /// The lineage.
    pub lineage: Lineage,
    /// Its events.
    pub evidence: Evidence,
    /// Each evidence event's stored bytes (what was hashed), by (chain, position).
    pub stored: BTreeMap<(String, u64), String>,
    /// Read requests of the run by the same principal that began after the write:
    /// not inputs of this version.
    pub later_reads: u64,
}

/// Does `a` come before `b` in the log? In one chain by position; across chains
/// (several gates) by time, a tie counting as before.
fn precedes(a: &Record, b: &Record) -> bool {
    if a.log == b.log {
        a.seq < b.seq
    } else {
        a.event.time <= b.event.time
    }
}

fn is_success(record: &Record) -> bool {
    record.event.status.is_some_and(|s| (200..300).contains(&s))
}

fn operation_is(record: &Record, ops: &[&str]) -> bool {
    record
        .event
        .operation
        .as_deref()
        .is_some_and(|op| ops.contains(&op))
}

fn oid(record: &Record) -> Option<&str> {
    record
        .event
        .principal
        .as_ref()
        .and_then(|p| p.oid.as_deref())
}

/// Why a record cannot be a record of an input read of `source`, if it cannot
/// (whether it began before the write is decided per request, in [`derive`]).
pub(crate) fn not_an_input(source: &Record, read: &Record) -> Option<String> {
    let e = &read.event;
    if !READ_TYPES.contains(&e.event_type.as_str()) {
        return Some(format!("it is a {} event, not a read", e.event_type));
    }
    if !operation_is(read, &["GetBlob"]) {
        return Some(format!(
            "it is not a Get Blob (operation {})",
            e.operation.as_deref().unwrap_or("not recorded")
        ));
    }
    if e.decision != Some(Decision::Allow) || !is_success(read) {
        return Some("it was not an allowed, successful read".into());
    }
    if oid(read).is_none() || oid(read) != oid(source) {
        return Some("it is another principal's read".into());
    }
    if e.run_id.is_none() || e.run_id != source.event.run_id {
        return Some("it belongs to another run".into());
    }
    None
}

/// Why `content` cannot be the write of `version`'s content, if it cannot.
pub(crate) fn not_the_content(version: &Record, content: &Record) -> Option<String> {
    if !operation_is(version, &PROPERTY_WRITES) {
        return Some("the version's own write wrote its content".into());
    }
    if content.event.resource != version.event.resource {
        return Some("it is a write of another blob".into());
    }
    if !operation_is(content, &CONTENT_WRITES) || !is_success(content) {
        return Some("it is not a successful Put Blob, Put Block List or Copy Blob".into());
    }
    if !precedes(content, version) {
        return Some("it comes after the version's write".into());
    }
    None
}

/// The request a read record belongs to: its request id, else its event id.
fn request_key(record: &Record) -> String {
    record
        .event
        .request_id
        .clone()
        .unwrap_or_else(|| record.id.to_string())
}

/// Turns evidence into a lineage. Records that cannot be part of it are left out
/// and reported as (index in `evidence.records()`, why); a lineage found in a
/// store has none, a tampered bundle may.
pub fn derive(evidence: &Evidence) -> Result<(Lineage, Vec<(usize, String)>), AuditError> {
    let version = evidence
        .version
        .as_ref()
        .ok_or_else(|| AuditError::Lineage("the evidence holds no write of the version".into()))?;
    let mut problems = Vec::new();
    let resource = version.event.resource.clone().unwrap_or_default();
    let mut notes = Vec::new();
    let content = match &evidence.content {
        Some(c) => match not_the_content(version, c) {
            None => Some(c),
            Some(why) => {
                problems.push((1, format!("it cannot be the write of the content: {why}")));
                None
            }
        },
        None => {
            if operation_is(version, &PROPERTY_WRITES) {
                notes.push(format!(
                    "this version was made by {} (a new ETag, the same content), and no write of its content is in the log: its inputs are unknown",
                    version.event.operation.as_deref().unwrap_or("a properties change")
                ));
            }
            None
        }
    };
    let source = content.unwrap_or(version);
    let offset = 1 + usize::from(evidence.content.is_some());
    if source.event.run_id.is_none() {
        notes.push(
            "the write carries no run id (its client sent no x-ms-entraflow-run-id), so its reads cannot be told from the principal's other reads: none are listed".into(),
        );
    }

    // Reads, by request: the request's first record says when it began, a
    // completion record how many bytes it delivered.
    struct Request<'r> {
        first: &'r Record,
        completion: Option<&'r Record>,
        records: Vec<usize>,
    }
    let mut requests: BTreeMap<String, Request<'_>> = BTreeMap::new();
    for (i, read) in evidence.reads.iter().enumerate() {
        if let Some(why) = not_an_input(source, read) {
            problems.push((
                offset + i,
                format!("it is not an input of this version: {why}"),
            ));
            continue;
        }
        let request = requests.entry(request_key(read)).or_insert(Request {
            first: read,
            completion: None,
            records: Vec::new(),
        });
        if (read.log.as_str(), read.seq) < (request.first.log.as_str(), request.first.seq) {
            request.first = read;
        }
        if read.event.event_type.as_str() == READ_TYPES[1] {
            request.completion = Some(read);
        }
        request.records.push(offset + i);
    }
    let mut versions: BTreeMap<(String, Option<String>), BlobRead> = BTreeMap::new();
    let mut grants: BTreeMap<String, Grant> = BTreeMap::new();
    for request in requests.values() {
        if !precedes(request.first, source) {
            for &i in &request.records {
                problems.push((
                    i,
                    "it is not an input of this version: the read began after the write".into(),
                ));
            }
            continue;
        }
        let e = &request.first.event;
        let bytes = request
            .completion
            .and_then(|c| c.event.bytes)
            .or(e.bytes)
            .unwrap_or(0);
        let resource = e.resource.clone().unwrap_or_default();
        let entry = versions
            .entry((resource.clone(), e.etag.clone()))
            .or_insert_with(|| BlobRead {
                blob: blob_uri(&resource),
                resource,
                etag: e.etag.clone(),
                content_md5: None,
                requests: 0,
                bytes: 0,
                first: e.time,
                last: e.time,
                assignments: Vec::new(),
            });
        entry.requests += 1;
        entry.bytes += bytes;
        entry.first = entry.first.min(e.time);
        entry.last = entry.last.max(e.time);
        if entry.content_md5.is_none() {
            entry.content_md5 = e.content_md5.clone();
        }
        if let Some(id) = &e.assignment_id {
            if !entry.assignments.contains(id) {
                entry.assignments.push(id.clone());
                entry.assignments.sort();
            }
            let grant = grants.entry(id.clone()).or_insert_with(|| Grant {
                assignment_id: id.clone(),
                role_name: e.role_name.clone(),
                reads: 0,
                changes: Vec::new(),
            });
            grant.reads += 1;
        }
    }
    let offset = offset + evidence.reads.len();
    let mut seen_changes = BTreeSet::new();
    for (i, change) in evidence.grants.iter().enumerate() {
        let e = &change.event;
        let grant = e.resource.as_deref().and_then(|id| grants.get_mut(id));
        match grant {
            Some(grant) if e.event_type.as_str() == "admin.change" && precedes(change, source) => {
                if seen_changes.insert((change.log.clone(), change.seq)) {
                    grant.changes.push(GrantChange {
                        event: EventRef::of(change),
                        time: e.time,
                        operation: e.action.clone(),
                        actor: e.principal.as_ref().map(|p| p.label().to_owned()),
                        detail: e.detail.clone(),
                    });
                }
            }
            _ => problems.push((
                offset + i,
                "it is not an admin change, before the write, of an assignment that allowed a read"
                    .into(),
            )),
        }
    }
    for grant in grants.values_mut() {
        grant
            .changes
            .sort_by(|a, b| (a.time, &a.event).cmp(&(b.time, &b.event)));
        if grant.changes.is_empty() {
            notes.push(format!(
                "no admin change of role assignment {} is in the audit log: it was made before changes were audited, or recorded elsewhere",
                grant.assignment_id
            ));
        }
    }
    let reads: Vec<BlobRead> = versions.into_values().collect();
    if reads.iter().any(|r| r.etag.is_none()) {
        notes.push(
            "some reads were recorded before the gate recorded ETags (audit schema 1): their versions are unknown".into(),
        );
    }
    let lineage = Lineage {
        blob: blob_uri(&resource),
        resource,
        version: Write::of(version),
        content: content.map(Write::of),
        run_id: source.event.run_id.clone(),
        principal: source.event.principal.clone(),
        reads,
        grants: grants.into_values().collect(),
        notes,
    };
    Ok((lineage, problems))
}

fn parse(row: &Row) -> Result<Record, AuditError> {
    // Cheap enough to do for every row read (the SHA-256 of ~1 KiB); a record
    // edited in the store must not reach a lineage or a bundle.
    if crate::merkle::leaf_hash(row.record.as_bytes()).0.as_slice() != row.leaf_hash.as_slice() {
        return Err(AuditError::Lineage(format!(
            "event #{} of chain '{}' was modified in the store (its bytes no longer hash to its leaf hash); run `entraflow audit verify`",
            row.seq, row.log_id
        )));
    }
    Record::parse(row.record.as_bytes()).map_err(|e| {
        AuditError::Lineage(format!(
            "event #{} of chain '{}' is not a valid record ({e}); run `entraflow audit verify`",
            row.seq, row.log_id
        ))
    })
}

/// Strips the quotes of an ETag, so `"0x8D"` and `0x8D` name the same version.
fn bare(etag: &str) -> &str {
    etag.trim().trim_start_matches("W/").trim_matches('"')
}

/// Finds the lineage of `target`'s version `etag` (the latest version when
/// `None`) in `store`.
pub async fn lineage(
    store: &AnyStore,
    target: &BlobTarget,
    etag: Option<&str>,
) -> Result<Found, AuditError> {
    let rows = store.blob_writes(&target.matcher(), MAX_WRITES).await?;
    let mut stored = BTreeMap::new();
    let mut keep = |row: &Row| {
        stored.insert((row.log_id.clone(), row.seq), row.record.clone());
    };
    let mut writes = Vec::with_capacity(rows.len());
    let mut scopes = BTreeSet::new();
    for row in &rows {
        let resource = row.resource.as_deref().unwrap_or_default();
        if !target.is_scope_of(resource) {
            continue;
        }
        let record = parse(row)?;
        if !is_success(&record)
            || !operation_is(&record, &CONTENT_WRITES) && !operation_is(&record, &PROPERTY_WRITES)
        {
            continue;
        }
        scopes.insert(resource.to_owned());
        keep(row);
        writes.push(record);
    }
    if scopes.len() > 1 {
        return Err(AuditError::Lineage(format!(
            "several storage accounts named '{}' have a blob {}/{} in the audit log ({}); give the blob's full scope instead",
            target.account,
            target.container,
            target.blob,
            scopes.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    // Newest first (the store's order).
    let version = match etag {
        Some(want) => writes
            .iter()
            .find(|w| w.event.etag.as_deref().map(bare) == Some(bare(want)))
            .ok_or_else(|| {
                let known: Vec<&str> = writes
                    .iter()
                    .filter_map(|w| w.event.etag.as_deref())
                    .take(5)
                    .collect();
                AuditError::Lineage(if known.is_empty() {
                    no_write(target)
                } else {
                    format!(
                        "no write of {target} produced ETag {want}; the audit log has writes of it with ETags {}",
                        known.join(", ")
                    )
                })
            })?,
        None => writes
            .first()
            .ok_or_else(|| AuditError::Lineage(no_write(target)))?,
    };
    let content = if operation_is(version, &PROPERTY_WRITES) {
        writes
            .iter()
            .find(|w| not_the_content(version, w).is_none())
            .cloned()
    } else {
        None
    };
    let source = content.as_ref().unwrap_or(version).clone();
    let mut evidence = Evidence {
        version: Some(version.clone()),
        content,
        ..Evidence::default()
    };
    let mut later_reads = 0;
    if let (Some(run), Some(who)) = (source.event.run_id.as_deref(), oid(&source)) {
        let rows = store.run_events(run, who, &READ_TYPES).await?;
        let mut by_request: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        for row in &rows {
            let record = parse(row)?;
            if not_an_input(&source, &record).is_none() {
                keep(row);
                by_request
                    .entry(request_key(&record))
                    .or_default()
                    .push(record);
            }
        }
        for (_, mut records) in by_request {
            records.sort_by(|a, b| (a.log.as_str(), a.seq).cmp(&(b.log.as_str(), b.seq)));
            if precedes(&records[0], &source) {
                evidence.reads.extend(records);
            } else {
                later_reads += 1;
            }
        }
        evidence
            .reads
            .sort_by(|a, b| (a.log.as_str(), a.seq).cmp(&(b.log.as_str(), b.seq)));
        let assignments: BTreeSet<&str> = evidence
            .reads
            .iter()
            .filter_map(|r| r.event.assignment_id.as_deref())
            .collect();
        for id in assignments {
            for row in store.admin_changes(id).await? {
                let record = parse(&row)?;
                if precedes(&record, &source) {
                    keep(&row);
                    evidence.grants.push(record);
                }
            }
        }
    }
    let (lineage, problems) = derive(&evidence)?;
    if let Some((_, why)) = problems.first() {
        // The selection above keeps only what derive accepts.
        return Err(AuditError::Lineage(format!(
            "internal inconsistency in the lineage of {target}: {why}"
        )));
    }
    // Only the evidence's bytes go into a bundle.
    let wanted: BTreeSet<(String, u64)> = evidence
        .records()
        .map(|(_, r)| (r.log.clone(), r.seq))
        .collect();
    stored.retain(|key, _| wanted.contains(key));
    Ok(Found {
        lineage,
        evidence,
        stored,
        later_reads,
    })
}

fn no_write(target: &BlobTarget) -> String {
    format!(
        "no write of {target} is in the audit log; was it written through the gate? (writes by a gate older than audit schema 2 record no blob version)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: &str = "/subscriptions/s-1/resourceGroups/ml/providers/Microsoft.Storage/storageAccounts/acct/blobServices/default/containers/models/blobs/run-1/model.keras";

    #[test]
    fn targets_parse_from_every_form_a_person_has() {
        let want = BlobTarget {
            account: "acct".into(),
            container: "models".into(),
            blob: "run-1/model.keras".into(),
            scope: None,
        };
        for text in [
            "az://acct/models/run-1/model.keras",
            "https://127.0.0.1:10000/acct/models/run-1/model.keras",
            "https://acct.blob.core.windows.net/models/run-1/model.keras?sv=1&sig=secret",
            "https://127.0.0.1:10000/acct/models/run%2D1/model.keras",
        ] {
            assert_eq!(BlobTarget::parse(text).unwrap(), want, "{text}");
        }
        let scoped = BlobTarget::parse(SCOPE).unwrap();
        assert_eq!(scoped.uri(), "az://acct/models/run-1/model.keras");
        assert_eq!(scoped.scope.as_deref(), Some(SCOPE));
        for bad in [
            "az://acct/models",
            "s3://b/k",
            "models/x",
            "/subscriptions/s/x",
        ] {
            assert!(BlobTarget::parse(bad).is_err(), "{bad}");
        }
        let err = BlobTarget::parse("https://acct.blob.core.windows.net/c?sig=secret")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn a_scope_is_recognised_only_when_well_formed() {
        let target = BlobTarget::parse("az://acct/models/run-1/model.keras").unwrap();
        assert!(target.is_scope_of(SCOPE));
        // Ends the same way, but the blob is nested in another blob's name.
        let nested = format!(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/x/blobServices/default/containers/k/blobs/a{}",
            target.suffix()
        );
        assert!(nested.ends_with(&target.suffix()));
        assert!(!target.is_scope_of(&nested));
        assert_eq!(blob_uri(SCOPE), "az://acct/models/run-1/model.keras");
        assert_eq!(blob_uri("/subscriptions/s"), "/subscriptions/s");
    }

    #[test]
    fn etags_compare_without_their_quotes() {
        assert_eq!(bare("\"0x8D1\""), "0x8D1");
        assert_eq!(bare("0x8D1"), "0x8D1");
        assert_eq!(bare("W/\"0x8D1\""), "0x8D1");
    }
}
