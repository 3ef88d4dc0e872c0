//! Lineage proof bundles (`entraflow-lineage-bundle/1`): a lineage's events, each
//! with an RFC 9162 inclusion proof against a signed checkpoint of its chain, and
//! the checkpoints' verifier keys, in one JSON file that [`verify_bundle`] checks
//! with no database: it re-hashes every record, checks every proof and every
//! checkpoint signature, and derives the lineage again from the proven events
//! (so the summary in the file is checked, not believed).
//!
//! ```text
//! {"format": "entraflow-lineage-bundle/1",
//!  "created": "2026-11-26T16:38:36.123Z",
//!  "keys": ["entraflow-audit+1a2b3c4d+AQ..."],
//!  "checkpoints": [{"log": "entraflow/gate", "size": 1042, "root": "<hex>",
//!                   "signer": "entraflow-audit", "key_id": "1a2b3c4d", "note": "<signed note>"}],
//!  "lineage": {...},
//!  "events": [
//!   {"role": "version", "log": "entraflow/gate", "index": 1040, "record": {...}, "proof": ["<hex>", ...]},
//!   ...]}
//! ```
//!
//! Each `record` is the event's stored canonical JSON, byte for byte, so its leaf
//! hash is SHA-256(0x00 || those bytes); a record that was re-formatted (a
//! pretty-printer) is canonicalised again before it is hashed. Proofs are made
//! from one pass over the chain's leaf hashes ([`Tree`]), not one query per
//! event, and checked with a [`ProofChecker`] that remembers verified paths.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::AuditError;
use crate::checkpoint::{CheckpointSigner, NoteVerifier, open_checkpoint};
use crate::event::{Record, Timestamp, canonical_json};
use crate::lineage::{Evidence, Found, Lineage, Role, blob_uri, derive};
use crate::merkle::{Hash, ProofChecker, Tree, leaf_hash};
use crate::store::{AnyStore, StoreBackend, StoreError};
use crate::verify::checkpoint_now;

/// The `format` of a bundle this version writes and reads.
pub const BUNDLE_FORMAT: &str = "entraflow-lineage-bundle/1";
/// Leaf hashes read per round trip.
const LEAF_CHUNK: u64 = 50_000;
/// Problems kept in a report; the rest are only counted.
const MAX_PROBLEMS: usize = 1_000;

/// A checkpoint as a bundle carries it. `note` is what counts; the other fields
/// repeat it for people and must agree with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleCheckpoint {
    /// The chain (the checkpoint's origin).
    pub log: String,
    /// Events it covers.
    pub size: u64,
    /// The tree head it signs.
    pub root: Hash,
    /// The signing key's name.
    pub signer: String,
    /// The signing key's id (8 hex digits).
    pub key_id: String,
    /// The signed note (C2SP signed-note, Ed25519).
    pub note: String,
}

/// What writing a bundle did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleWritten {
    /// Events in it.
    pub events: usize,
    /// Its checkpoints.
    pub checkpoints: Vec<BundleCheckpoint>,
    /// Checkpoints signed for it (the events were newer than every stored one).
    pub new_checkpoints: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Writes the bundle of `found` to `out`. Every chain its events are in needs a
/// signed checkpoint covering them: the latest stored one, or, if that is older
/// than the events and `signer` is given, a new one (stored as `entraflow audit
/// checkpoint` stores it). Checkpoints must verify with `verifiers`. The store's
/// leaf hashes are checked against the checkpoint's root and each event's bytes
/// against its leaf before anything is written.
pub async fn write_bundle(
    store: &AnyStore,
    found: &Found,
    signer: Option<&CheckpointSigner>,
    verifiers: &[NoteVerifier],
    out: &mut (dyn Write + Send),
) -> Result<BundleWritten, AuditError> {
    let mut by_chain: BTreeMap<&str, Vec<(Role, &Record)>> = BTreeMap::new();
    for (role, record) in found.evidence.records() {
        by_chain
            .entry(&record.log)
            .or_default()
            .push((role, record));
    }
    let mut checkpoints = Vec::new();
    let mut keys = BTreeSet::new();
    let mut new_checkpoints = 0;
    let mut entries: Vec<(Role, &Record, Vec<Hash>)> = Vec::new();
    for (log, records) in &by_chain {
        let needed = records.iter().map(|(_, r)| r.seq).max().unwrap_or(0) + 1;
        let latest = store.checkpoints(log).await?.pop();
        let note = match latest {
            Some(cp) if cp.size >= needed => cp.note,
            _ => match signer {
                Some(signer) => {
                    new_checkpoints += 1;
                    checkpoint_now(store, signer, Some(log)).await?.note
                }
                None => {
                    return Err(AuditError::NoCheckpoint(format!(
                        "no signed checkpoint of chain '{log}' covers its event #{} yet, and the signing key is not here to make one; run `entraflow audit checkpoint --log {log}` where the key is",
                        needed - 1
                    )));
                }
            },
        };
        let (checkpoint, signed_by) = open_checkpoint(&note, verifiers)?;
        if checkpoint.origin != *log || checkpoint.size < needed {
            return Err(AuditError::NoCheckpoint(format!(
                "the latest checkpoint of chain '{log}' does not cover event #{}",
                needed - 1
            )));
        }
        let verifier = verifiers
            .iter()
            .find(|v| v.name == signed_by)
            .expect("open_checkpoint names a key it was given");
        keys.insert(verifier.to_string());
        let tree = Tree::new(leaves(store, log, checkpoint.size).await?);
        if tree.root() != checkpoint.root {
            return Err(StoreError::Corrupt(format!(
                "the stored events of chain '{log}' do not match its signed checkpoint at {} events",
                checkpoint.size
            ))
            .into());
        }
        for (role, record) in records {
            let bytes = found
                .stored
                .get(&(record.log.clone(), record.seq))
                .ok_or_else(|| {
                    AuditError::Lineage(format!(
                        "event #{} of chain '{log}' is evidence but its stored bytes were not kept",
                        record.seq
                    ))
                })?;
            if tree.leaf(record.seq) != Some(&leaf_hash(bytes.as_bytes())) {
                return Err(StoreError::Corrupt(format!(
                    "event #{} of chain '{log}' no longer matches its leaf in the signed tree",
                    record.seq
                ))
                .into());
            }
            entries.push((*role, record, tree.inclusion_proof(record.seq)?));
        }
        checkpoints.push(BundleCheckpoint {
            log: (*log).to_owned(),
            size: checkpoint.size,
            root: checkpoint.root,
            signer: verifier.name.clone(),
            key_id: format!("{:08x}", verifier.key_id),
            note,
        });
    }
    // The version first, then the content's write, the reads, the grants: the
    // order of the evidence, whatever the chains.
    entries.sort_by_key(|(role, r, _)| (*role, r.log.clone(), r.seq));

    let mut counted = Counting { out, bytes: 0 };
    let io = |e: std::io::Error| AuditError::Io(format!("writing the bundle: {e}"));
    let json = |e: serde_json::Error| AuditError::Io(format!("writing the bundle: {e}"));
    write!(
        counted,
        "{{\"format\":\"{BUNDLE_FORMAT}\",\n\"created\":\"{}\",\n\"keys\":",
        Timestamp::now()
    )
    .map_err(io)?;
    serde_json::to_writer(&mut counted, &keys).map_err(json)?;
    counted.write_all(b",\n\"checkpoints\":").map_err(io)?;
    serde_json::to_writer(&mut counted, &checkpoints).map_err(json)?;
    counted.write_all(b",\n\"lineage\":").map_err(io)?;
    serde_json::to_writer(&mut counted, &found.lineage).map_err(json)?;
    counted.write_all(b",\n\"events\":[").map_err(io)?;
    let mut line = String::with_capacity(4096);
    for (i, (role, record, proof)) in entries.iter().enumerate() {
        line.clear();
        if i > 0 {
            line.push(',');
        }
        line.push_str("\n{\"role\":\"");
        line.push_str(role.as_str());
        line.push_str("\",\"log\":");
        line.push_str(&serde_json::to_string(&record.log).map_err(json)?);
        line.push_str(",\"index\":");
        line.push_str(&record.seq.to_string());
        line.push_str(",\"record\":");
        // The stored canonical JSON, verbatim: the bytes that were hashed.
        line.push_str(&found.stored[&(record.log.clone(), record.seq)]);
        line.push_str(",\"proof\":[");
        for (j, hash) in proof.iter().enumerate() {
            if j > 0 {
                line.push(',');
            }
            line.push('"');
            line.push_str(&hash.to_hex());
            line.push('"');
        }
        line.push_str("]}");
        counted.write_all(line.as_bytes()).map_err(io)?;
    }
    counted.write_all(b"\n]}\n").map_err(io)?;
    counted.flush().map_err(io)?;
    Ok(BundleWritten {
        events: entries.len(),
        checkpoints,
        new_checkpoints,
        bytes: counted.bytes,
    })
}

struct Counting<'a> {
    out: &'a mut (dyn Write + Send),
    bytes: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The stored leaf hashes of the first `size` events of a chain, all present.
async fn leaves(store: &AnyStore, log: &str, size: u64) -> Result<Vec<Hash>, AuditError> {
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let from = out.len() as u64;
        let rows = store
            .leaf_hashes(log, from, (from + LEAF_CHUNK).min(size))
            .await?;
        if rows.is_empty() {
            break;
        }
        for (seq, hash) in rows {
            let hash = Hash::from_slice(&hash).filter(|_| seq == out.len() as u64);
            match hash {
                Some(hash) => out.push(hash),
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "chain '{log}': event #{} is missing or its leaf hash is malformed",
                        out.len()
                    ))
                    .into());
                }
            }
        }
    }
    if (out.len() as u64) < size {
        return Err(StoreError::Corrupt(format!(
            "chain '{log}' has {} events, fewer than its checkpoint's {size}",
            out.len()
        ))
        .into());
    }
    Ok(out)
}

#[derive(Deserialize)]
struct BundleFile<'a> {
    format: String,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    checkpoints: Vec<BundleCheckpoint>,
    #[serde(borrow)]
    lineage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    events: Vec<BundleEvent<'a>>,
}

#[derive(Deserialize)]
struct BundleEvent<'a> {
    role: String,
    log: String,
    index: u64,
    #[serde(borrow)]
    record: &'a RawValue,
    #[serde(default)]
    proof: Vec<Hash>,
}

/// A checkpoint that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckedCheckpoint {
    /// The chain.
    pub log: String,
    /// Events it covers.
    pub size: u64,
    /// Its root.
    pub root: Hash,
    /// The key that signed it, as `name+keyid`.
    pub signed_by: String,
}

/// The outcome of [`verify_bundle`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct BundleReport {
    /// When the bundle says it was made.
    pub created: Option<String>,
    /// Events in the bundle.
    pub events: usize,
    /// Events whose proof verified.
    pub proven: usize,
    /// The checkpoints that verified.
    pub checkpoints: Vec<CheckedCheckpoint>,
    /// Whether the checkpoints were checked against keys the caller trusts (else
    /// against the keys the bundle itself carries).
    pub key_pinned: bool,
    /// The lineage derived from the proven events.
    pub lineage: Option<Lineage>,
    /// Everything wrong, each naming the event (at most 1000 kept).
    pub problems: Vec<String>,
    /// Problems found in all.
    pub problem_count: usize,
    /// What this verification cannot detect.
    pub cannot_detect: Vec<String>,
}

impl BundleReport {
    /// No problem found.
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }

    fn push(&mut self, problem: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        }
    }
}

/// How a problem names an event: its place in the bundle, its part, chain,
/// position, id and blob when the record says them.
fn name_event(i: usize, event: &BundleEvent<'_>, record: Option<&Record>) -> String {
    let mut name = format!(
        "event {} of the bundle ({} event #{} of chain '{}'",
        i + 1,
        event.role,
        event.index,
        event.log
    );
    if let Some(r) = record {
        name.push_str(&format!(", id {}", r.id));
        if let Some(resource) = &r.event.resource {
            name.push_str(&format!(", {}", blob_uri(resource)));
        }
    }
    name.push(')');
    name
}

/// Verifies a bundle offline. `trusted`: the verifier keys the caller keeps; when
/// empty, the keys the bundle carries are used (which shows the events are in the
/// log those keys signed, not that the keys are the right ones: the report says
/// so). An `Err` means the file is not a bundle at all; every other failure is a
/// problem in the report, naming the event.
pub fn verify_bundle(bytes: &[u8], trusted: &[NoteVerifier]) -> Result<BundleReport, AuditError> {
    let file: BundleFile<'_> = serde_json::from_slice(bytes)
        .map_err(|e| AuditError::Bundle(format!("not a lineage bundle: {e}")))?;
    if file.format != BUNDLE_FORMAT {
        return Err(AuditError::Bundle(format!(
            "the format is '{}', not {BUNDLE_FORMAT}; this entraflow reads only that one",
            file.format
        )));
    }
    let mut report = BundleReport {
        created: file.created.clone(),
        events: file.events.len(),
        key_pinned: !trusted.is_empty(),
        ..BundleReport::default()
    };
    let mut carried = Vec::new();
    for key in &file.keys {
        match NoteVerifier::parse(key) {
            Ok(v) => carried.push(v),
            Err(e) => report.push(format!("the bundle's key '{key}' is unusable: {e}")),
        }
    }
    let keys: &[NoteVerifier] = if trusted.is_empty() {
        &carried
    } else {
        trusted
    };

    let mut chains: HashMap<String, ProofChecker> = HashMap::new();
    for cp in &file.checkpoints {
        match open_checkpoint(&cp.note, keys) {
            Err(e) => report.push(format!(
                "the checkpoint of chain '{}' is refused: {e}",
                cp.log
            )),
            Ok((checkpoint, signer)) => {
                if checkpoint.origin != cp.log
                    || checkpoint.size != cp.size
                    || checkpoint.root != cp.root
                {
                    report.push(format!(
                        "the checkpoint of chain '{}' was altered: its fields do not match its signed note",
                        cp.log
                    ));
                    continue;
                }
                if chains.contains_key(&checkpoint.origin) {
                    report.push(format!(
                        "chain '{}' has two checkpoints in the bundle",
                        cp.log
                    ));
                    continue;
                }
                let key = keys
                    .iter()
                    .find(|k| k.name == signer)
                    .map_or(signer.clone(), |k| format!("{}+{:08x}", k.name, k.key_id));
                report.checkpoints.push(CheckedCheckpoint {
                    log: checkpoint.origin.clone(),
                    size: checkpoint.size,
                    root: checkpoint.root,
                    signed_by: key,
                });
                chains.insert(
                    checkpoint.origin.clone(),
                    ProofChecker::new(checkpoint.size, checkpoint.root),
                );
            }
        }
    }

    let mut evidence = Evidence::default();
    // The bundle index of each evidence record, in `Evidence::records()` order.
    let (mut version_at, mut content_at) = (None, None);
    let (mut reads_at, mut grants_at) = (Vec::new(), Vec::new());
    let mut seen = BTreeSet::new();
    for (i, event) in file.events.iter().enumerate() {
        let raw = event.record.get().as_bytes();
        let record = match Record::parse(raw) {
            Ok(r) => r,
            Err(e) => {
                report.push(format!(
                    "{}: the record is not an audit event: {e}",
                    name_event(i, event, None)
                ));
                continue;
            }
        };
        let name = || name_event(i, event, Some(&record));
        if record.log != event.log || record.seq != event.index {
            report.push(format!(
                "{}: the record says it is event #{} of chain '{}'",
                name(),
                record.seq,
                record.log
            ));
            continue;
        }
        if !seen.insert((event.log.clone(), event.index)) {
            report.push(format!("{}: the event is in the bundle twice", name()));
            continue;
        }
        let Some(checker) = chains.get_mut(&event.log) else {
            report.push(format!(
                "{}: the bundle has no valid checkpoint of chain '{}'",
                name(),
                event.log
            ));
            continue;
        };
        let mut outcome = checker.verify(event.index, &leaf_hash(raw), &event.proof);
        if outcome.is_err() {
            // Re-formatted (pretty-printed) records hash as their canonical form.
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(raw) {
                let canonical = canonical_json(&value);
                if canonical != raw {
                    outcome = checker.verify(event.index, &leaf_hash(&canonical), &event.proof);
                }
            }
        }
        if let Err(e) = outcome {
            report.push(format!(
                "{}: its inclusion proof does not verify against the signed checkpoint of chain '{}' ({e}): the record or its proof was altered",
                name(),
                event.log
            ));
            continue;
        }
        report.proven += 1;
        match event.role.as_str() {
            "version" if evidence.version.is_none() => {
                evidence.version = Some(record);
                version_at = Some(i);
            }
            "content" if evidence.content.is_none() => {
                evidence.content = Some(record);
                content_at = Some(i);
            }
            "read" => {
                evidence.reads.push(record);
                reads_at.push(i);
            }
            "grant" => {
                evidence.grants.push(record);
                grants_at.push(i);
            }
            other => report.push(format!(
                "{}: role '{other}' is unknown or given twice",
                name_event(i, event, None)
            )),
        }
    }
    let at: Vec<usize> = version_at
        .into_iter()
        .chain(content_at)
        .chain(reads_at)
        .chain(grants_at)
        .collect();

    if evidence.version.is_none() {
        report.push("the bundle holds no proven write of the version (role 'version')".into());
    } else {
        let (lineage, problems) = derive(&evidence)?;
        for (k, why) in problems {
            let i = at[k];
            let event = &file.events[i];
            let record = Record::parse(event.record.get().as_bytes()).ok();
            report.push(format!("{}: {why}", name_event(i, event, record.as_ref())));
        }
        let stated = file
            .lineage
            .map(|raw| serde_json::from_str::<serde_json::Value>(raw.get()));
        let derived = serde_json::to_value(&lineage).expect("a lineage serializes");
        match stated {
            None => report.push("the bundle states no lineage".into()),
            Some(Err(e)) => report.push(format!("the bundle's lineage is unreadable: {e}")),
            Some(Ok(stated)) => {
                if let Some(difference) = first_difference("lineage", &stated, &derived) {
                    report.push(format!(
                        "the bundle's lineage does not follow from its proven events: {difference}"
                    ));
                }
            }
        }
        report.lineage = Some(lineage);
    }
    report.cannot_detect.push(
        "a bundle proves that each event in it is in its chain's signed log, not that no event was left out: \
         a read dropped from the bundle together with its share of the lineage goes unseen; \
         run `entraflow audit lineage` against the log itself for that"
            .into(),
    );
    if !report.key_pinned {
        report.cannot_detect.push(
            "the checkpoints were checked against the keys the bundle carries: that shows the events are in a log those keys signed, \
             not whose keys they are; pass --key with the verifier key you keep (`entraflow audit key`)"
                .into(),
        );
    }
    Ok(report)
}

/// Where two JSON values first differ, said as `path: the bundle says X, the events say Y`.
fn first_difference(
    path: &str,
    stated: &serde_json::Value,
    derived: &serde_json::Value,
) -> Option<String> {
    use serde_json::Value;
    match (stated, derived) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                first_difference(&format!("{path}.{k}"), x, y)
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(&format!("{path}[{i}]"), x, y)),
        (a, b) if a == b => None,
        (a, b) => Some(format!(
            "at {path}, the bundle says {}, the events say {}",
            short(a),
            short(b)
        )),
    }
}

fn short(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 200 {
        let head: String = text.chars().take(200).collect();
        format!("{head}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_located() {
        let a = serde_json::json!({"reads": [{"bytes": 1}, {"bytes": 2}], "x": 1});
        let mut b = a.clone();
        assert_eq!(first_difference("lineage", &a, &b), None);
        b["reads"][1]["bytes"] = 3.into();
        assert_eq!(
            first_difference("lineage", &a, &b).unwrap(),
            "at lineage.reads[1].bytes, the bundle says 2, the events say 3"
        );
        b["reads"].as_array_mut().unwrap().pop();
        assert!(
            first_difference("lineage", &a, &b)
                .unwrap()
                .starts_with("at lineage.reads,")
        );
    }
}
