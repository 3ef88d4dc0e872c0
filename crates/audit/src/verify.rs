//! `verify`: recompute every chain from the stored records and hold the result
//! against every signed checkpoint, stored or exported. Also the JSON-lines export
//! (which `verify` reads back), proofs for a single event or between two sizes, and
//! exporting the latest checkpoint.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::Serialize;

use crate::AuditError;
use crate::checkpoint::{CheckpointSigner, NoteVerifier, open_checkpoint};
use crate::event::Record;
use crate::log::{SignedCheckpoint, sign_and_store};
use crate::merkle::{self, Frontier, Hash, leaf_hash};
use crate::store::{AnyStore, LogHead, Row, StoreBackend, StoreError};

/// Rows read per round trip.
const CHUNK: usize = 10_000;
/// Problems kept in a report; the rest are only counted.
const MAX_PROBLEMS: usize = 1_000;

/// A checkpoint kept outside the store (an exported file).
#[derive(Debug, Clone)]
pub struct ExternalCheckpoint {
    /// Where it came from (a file name), for messages.
    pub source: String,
    /// The signed note.
    pub note: String,
}

/// What `verify` checks against.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Keys whose checkpoint signatures are accepted.
    pub verifiers: Vec<NoteVerifier>,
    /// Exported checkpoints: each must be consistent with the log (no rollback).
    pub external: Vec<ExternalCheckpoint>,
    /// Only this chain.
    pub log_id: Option<String>,
}

/// What kind of damage a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// Events are missing from the middle of a chain (deleted).
    Missing,
    /// An event's bytes no longer hash to its stored leaf hash (modified).
    RecordAltered,
    /// An event's bytes are not a valid record.
    RecordUnreadable,
    /// A record sits at a position (or chain) other than the one it names (reordered or moved).
    Misplaced,
    /// A query column disagrees with the record.
    ColumnAltered,
    /// A checkpoint's signature or contents do not check out.
    CheckpointInvalid,
    /// The recomputed tree differs from a signed checkpoint (history rewritten).
    CheckpointMismatch,
    /// A signed checkpoint covers more events than the chain has (truncation/rollback).
    Truncated,
    /// The stored head disagrees with the events.
    HeadMismatch,
    /// A checkpoint names a chain the store does not have.
    UnknownChain,
    /// Events or checkpoints of a chain are stored, but its head row is gone.
    HeadMissing,
}

/// One thing wrong, as precisely as it can be said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The chain.
    pub log_id: String,
    /// The event position, when the problem is one event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// The event id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The kind.
    pub kind: ProblemKind,
    /// What exactly is wrong.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chain '{}'", self.log_id)?;
        if let Some(index) = self.index {
            write!(f, ", event #{index}")?;
        }
        if let Some(id) = &self.event_id {
            write!(f, " (id {id})")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// One chain's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// The chain.
    pub log_id: String,
    /// Events read.
    pub size: u64,
    /// Recomputed tree head.
    pub root: Hash,
    /// Signed checkpoints (stored and external) the tree was checked against.
    pub checkpoints_checked: usize,
    /// Events covered by the largest checkpoint that matched; later events are not
    /// yet vouched for by a signature.
    pub signed_size: u64,
}

/// The outcome of `verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Per chain.
    pub chains: Vec<ChainReport>,
    /// Every problem found, first (lowest position) first per chain; at most 1000.
    pub problems: Vec<Problem>,
    /// Problems found in all, including those not kept.
    pub problem_count: usize,
    /// What this verification could not detect, given what it was checked against.
    pub cannot_detect: Vec<String>,
}

impl VerifyReport {
    /// No problem found.
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }

    fn push(&mut self, problem: Problem) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        }
    }
}

/// A root the recomputed tree must have when it reaches `size`.
struct Mark {
    size: u64,
    root: Hash,
    source: String,
}

/// Recomputes one chain from its records, in order.
struct ChainCheck {
    log_id: String,
    frontier: Frontier,
    /// The position the next record should have (ahead of the tree after a gap).
    next_seq: u64,
    marks: Vec<Mark>,
    next_mark: usize,
    checked: usize,
    signed_size: u64,
}

impl ChainCheck {
    fn new(log_id: &str, mut marks: Vec<Mark>, report: &mut VerifyReport) -> ChainCheck {
        marks.sort_by_key(|m| m.size);
        let mut check = ChainCheck {
            log_id: log_id.to_owned(),
            frontier: Frontier::new(),
            next_seq: 0,
            marks,
            next_mark: 0,
            checked: 0,
            signed_size: 0,
        };
        check.check_marks(report);
        check
    }

    fn problem(
        &self,
        index: Option<u64>,
        event_id: Option<String>,
        kind: ProblemKind,
        detail: String,
    ) -> Problem {
        Problem {
            log_id: self.log_id.clone(),
            index,
            event_id,
            kind,
            detail,
        }
    }

    /// Feeds the record stored at position `seq` (for the store, the row's `seq`;
    /// for an export, its place in the file).
    fn feed(&mut self, seq: u64, bytes: &[u8], row: Option<&Row>, report: &mut VerifyReport) {
        let expected = self.next_seq;
        self.next_seq = seq.max(expected) + 1;
        let row_id = row.map(|r| r.event_id.clone());
        if seq > expected {
            let range = if seq == expected + 1 {
                format!("event #{expected} is missing")
            } else {
                format!("events #{expected} to #{} are missing", seq - 1)
            };
            report.push(self.problem(
                Some(expected),
                None,
                ProblemKind::Missing,
                format!("{range} (deleted): the next stored event is #{seq}"),
            ));
        } else if seq < expected {
            report.push(self.problem(
                Some(seq),
                row_id.clone(),
                ProblemKind::Misplaced,
                format!("a second event at position #{seq}"),
            ));
        }
        let leaf = leaf_hash(bytes);
        if let Some(row) = row
            && row.leaf_hash != leaf.0
        {
            report.push(self.problem(
                Some(seq),
                row_id.clone(),
                ProblemKind::RecordAltered,
                "the record was modified: its bytes no longer hash to the leaf hash stored with it"
                    .into(),
            ));
        }
        match Record::parse(bytes) {
            Err(e) => report.push(self.problem(
                Some(seq),
                row_id,
                ProblemKind::RecordUnreadable,
                format!("the record is not a valid audit event: {e}"),
            )),
            Ok(record) => {
                let id = Some(record.id.to_string());
                if record.log != self.log_id {
                    report.push(self.problem(
                        Some(seq),
                        id,
                        ProblemKind::Misplaced,
                        format!(
                            "the record belongs to chain '{}' (moved between chains)",
                            record.log
                        ),
                    ));
                } else if record.seq != seq {
                    report.push(self.problem(
                        Some(seq),
                        id,
                        ProblemKind::Misplaced,
                        format!(
                            "the record says it is event #{} but is stored at #{seq} (reordered)",
                            record.seq
                        ),
                    ));
                } else if let Some(column) = row.and_then(|r| r.mismatched_column(&record)) {
                    report.push(self.problem(
                        Some(seq),
                        id,
                        ProblemKind::ColumnAltered,
                        format!(
                            "column '{column}' was changed: it no longer matches the signed record"
                        ),
                    ));
                }
            }
        }
        self.frontier.push(leaf);
        self.check_marks(report);
    }

    fn check_marks(&mut self, report: &mut VerifyReport) {
        while let Some(mark) = self.marks.get(self.next_mark) {
            if mark.size != self.frontier.size() {
                break;
            }
            self.checked += 1;
            let root = self.frontier.root();
            if root != mark.root {
                report.push(self.problem(
                    mark.size.checked_sub(1),
                    None,
                    ProblemKind::CheckpointMismatch,
                    format!(
                        "the first {} events no longer match the {}: history before event #{} was altered, removed or reordered (recomputed root {}, signed root {})",
                        mark.size, mark.source, mark.size, root, mark.root
                    ),
                ));
            } else {
                self.signed_size = mark.size;
            }
            self.next_mark += 1;
        }
    }

    fn finish(self, head: Option<&LogHead>, report: &mut VerifyReport) {
        let size = self.frontier.size();
        // Positions seen: more than `size` when records are missing in the middle.
        let end = self.next_seq;
        for mark in &self.marks[self.next_mark..] {
            let problem = if mark.size > end {
                self.problem(
                    Some(end),
                    None,
                    ProblemKind::Truncated,
                    format!(
                        "the {} covers {} events but the chain ends at #{}: events #{end} to #{} were removed (truncation or rollback)",
                        mark.source,
                        mark.size,
                        end.saturating_sub(1),
                        mark.size - 1
                    ),
                )
            } else {
                self.problem(
                    None,
                    None,
                    ProblemKind::CheckpointMismatch,
                    format!(
                        "the {} cannot match: {} event(s) are missing before it",
                        mark.source,
                        end - size
                    ),
                )
            };
            report.push(problem);
        }
        if let Some(head) = head {
            if head.size > end {
                report.push(self.problem(
                    Some(end),
                    None,
                    ProblemKind::Truncated,
                    format!(
                        "the chain's head records {} events but the stored ones end at #{}: the last {} were deleted",
                        head.size,
                        end.saturating_sub(1),
                        head.size - end
                    ),
                ));
            } else if end == size && (head.size < size || head.frontier != self.frontier.to_bytes())
            {
                report.push(self.problem(
                    None,
                    None,
                    ProblemKind::HeadMismatch,
                    format!(
                        "the stored head ({} events) does not match the {size} stored events",
                        head.size
                    ),
                ));
            }
        }
        report.chains.push(ChainReport {
            log_id: self.log_id,
            size,
            root: self.frontier.root(),
            checkpoints_checked: self.checked,
            signed_size: self.signed_size,
        });
    }
}

/// Opens checkpoint notes; adds the valid ones as marks of their chain, reports the
/// others. `expect` is (chain, size, root) when the note comes with stored columns.
fn add_mark(
    note: &str,
    source: String,
    expect: Option<(&str, u64, &[u8])>,
    verifiers: &[NoteVerifier],
    marks: &mut BTreeMap<String, Vec<Mark>>,
    report: &mut VerifyReport,
) {
    let chain = expect.map(|(log, _, _)| log.to_owned());
    let invalid = |detail: String| Problem {
        log_id: chain.clone().unwrap_or_else(|| "?".into()),
        index: None,
        event_id: None,
        kind: ProblemKind::CheckpointInvalid,
        detail,
    };
    match open_checkpoint(note, verifiers) {
        Err(e) => report.push(invalid(format!("the {source} is refused: {e}"))),
        Ok((checkpoint, _)) => {
            if let Some((log, size, root)) = expect
                && (checkpoint.origin != log
                    || checkpoint.size != size
                    || checkpoint.root.0 != root)
            {
                report.push(invalid(format!(
                    "the {source} was altered: its stored columns do not match the signed note"
                )));
                return;
            }
            marks.entry(checkpoint.origin).or_default().push(Mark {
                size: checkpoint.size,
                root: checkpoint.root,
                source,
            });
        }
    }
}

fn external_marks(
    options: &VerifyOptions,
    marks: &mut BTreeMap<String, Vec<Mark>>,
    report: &mut VerifyReport,
) {
    for external in &options.external {
        add_mark(
            &external.note,
            format!("checkpoint in {}", external.source),
            None,
            &options.verifiers,
            marks,
            report,
        );
    }
}

/// Marks of chains that were never seen: the whole chain is gone.
fn report_unknown_chains(
    marks: BTreeMap<String, Vec<Mark>>,
    seen: &[String],
    wanted: Option<&str>,
    report: &mut VerifyReport,
) {
    for (log_id, marks) in marks {
        if seen.contains(&log_id) || wanted.is_some_and(|w| w != log_id) {
            continue;
        }
        for mark in marks {
            report.push(Problem {
                log_id: log_id.clone(),
                index: None,
                event_id: None,
                kind: ProblemKind::UnknownChain,
                detail: format!(
                    "the {} covers {} events of this chain, but the log has no such chain (deleted or rolled back)",
                    mark.source, mark.size
                ),
            });
        }
    }
}

/// How many times verification follows a log that grows while it is read.
const LIVE_ROUNDS: usize = 100;

/// Verifies every chain in `store` (or `options.log_id` only). A log that writers
/// append to meanwhile verifies up to where it stood when the reading ended.
pub async fn verify_store(
    store: &AnyStore,
    options: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport::default();
    let mut marks: BTreeMap<String, Vec<Mark>> = BTreeMap::new();
    external_marks(options, &mut marks, &mut report);
    // Chains come from every table that holds chain data, so deleting one table's
    // row (the head) cannot hide a chain whose events or checkpoints remain.
    let wanted = |id: &String| options.log_id.as_ref().is_none_or(|l| l == id);
    let mut heads: BTreeMap<String, LogHead> = store
        .heads()
        .await?
        .into_iter()
        .filter(|h| wanted(&h.log_id))
        .map(|h| (h.log_id.clone(), h))
        .collect();
    let seen: Vec<String> = store
        .chain_ids()
        .await?
        .into_iter()
        .filter(wanted)
        .collect();
    for log_id in &seen {
        for stored in store.checkpoints(log_id).await? {
            add_mark(
                &stored.note,
                format!("stored checkpoint at size {}", stored.size),
                Some((log_id, stored.size, &stored.root)),
                &options.verifiers,
                &mut marks,
                &mut report,
            );
        }
    }
    for log_id in &seen {
        let mut check = ChainCheck::new(
            log_id,
            marks.remove(log_id).unwrap_or_default(),
            &mut report,
        );
        let Some(mut head) = heads.remove(log_id) else {
            report.push(check.problem(
                None,
                None,
                ProblemKind::HeadMissing,
                "the chain's events or checkpoints are stored but its head row (audit_logs) is gone: the chain was hidden or partly deleted".into(),
            ));
            let mut from = 0;
            loop {
                let rows = store.rows(log_id, from, CHUNK).await?;
                let Some(last) = rows.last() else { break };
                from = last.seq + 1;
                for row in &rows {
                    check.feed(row.seq, row.record.as_bytes(), Some(row), &mut report);
                }
            }
            check.finish(None, &mut report);
            continue;
        };
        // Read the next chunk while this one is checked.
        let fetch = |from: u64| {
            let (store, log_id) = (store.clone(), log_id.clone());
            tokio::spawn(async move { store.rows(&log_id, from, CHUNK).await })
        };
        // A live log keeps growing while it is read: read the rows, then the head
        // (which a writer updates in the same transaction as its rows, so it is never
        // behind the rows read before it), and go on until the head is reached.
        let mut from = 0;
        for _ in 0..LIVE_ROUNDS {
            let mut next = fetch(from);
            loop {
                let rows = next
                    .await
                    .map_err(|e| AuditError::Io(format!("reading the log: {e}")))??;
                let Some(last) = rows.last() else { break };
                from = last.seq + 1;
                next = fetch(from);
                for row in &rows {
                    check.feed(row.seq, row.record.as_bytes(), Some(row), &mut report);
                }
            }
            match store.head(&head.log_id).await? {
                Some(now) => head = now,
                None => break,
            }
            if head.size <= from {
                break;
            }
        }
        check.finish(Some(&head), &mut report);
    }
    report_unknown_chains(marks, &seen, options.log_id.as_deref(), &mut report);
    report.cannot_detect = blind_spots(options);
    Ok(report)
}

/// What a verification against these options cannot see, said plainly.
fn blind_spots(options: &VerifyOptions) -> Vec<String> {
    let mut blind = Vec::new();
    if options.external.is_empty() {
        blind.push(
            "without an exported checkpoint (--checkpoint FILE), a store rolled back or truncated as a whole \
             (events, heads and stored checkpoints removed together), or a chain deleted from every table, \
             looks like a smaller, intact log; export checkpoints with `entraflow audit checkpoint --out FILE` \
             and keep them outside the system"
                .into(),
        );
    }
    blind.push(
        "anyone holding the checkpoint signing key (audit-key.pk8) can rewrite history and sign it anew; \
         only checkpoints exported before the rewrite, checked against a verifier key kept elsewhere, expose that"
            .into(),
    );
    blind
}

/// A checkpoint line of the JSON-lines export.
#[derive(Debug, Serialize, serde::Deserialize)]
struct CheckpointLine {
    checkpoint: String,
    log: String,
}

/// Writes every chain (or `log_id` only) as JSON lines: for each chain its stored
/// checkpoints (`{"checkpoint": note, "log": id}`), then its records, each line
/// exactly the stored canonical bytes. Returns the number of events written.
pub async fn export_jsonl(
    store: &AnyStore,
    log_id: Option<&str>,
    out: &mut (dyn Write + Send),
) -> Result<u64, AuditError> {
    let mut written = 0;
    let io = |e: std::io::Error| AuditError::Io(format!("writing the export: {e}"));
    // Every chain any table holds, as `verify_store` enumerates them: a chain whose
    // head row was deleted is still exported, and its verification then fails.
    for chain in store.chain_ids().await? {
        if log_id.is_some_and(|l| l != chain) {
            continue;
        }
        for cp in store.checkpoints(&chain).await? {
            let line = CheckpointLine {
                checkpoint: cp.note,
                log: cp.log_id,
            };
            serde_json::to_writer(&mut *out, &line).map_err(|e| AuditError::Io(e.to_string()))?;
            out.write_all(b"\n").map_err(io)?;
        }
        let mut from = 0;
        loop {
            let rows = store.rows(&chain, from, CHUNK).await?;
            let Some(last) = rows.last() else { break };
            from = last.seq + 1;
            for row in rows {
                out.write_all(row.record.as_bytes()).map_err(io)?;
                out.write_all(b"\n").map_err(io)?;
                written += 1;
            }
        }
    }
    out.flush().map_err(io)?;
    Ok(written)
}

/// Verifies a JSON-lines export (see [`export_jsonl`]) the way [`verify_store`]
/// verifies a store: every record re-hashed, every chain recomputed, every checkpoint
/// in the file and in `options.external` checked.
pub fn verify_jsonl(path: &Path, options: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    let open = || {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| AuditError::Io(format!("{}: {e}", path.display())))
    };
    let mut report = VerifyReport::default();
    let mut marks: BTreeMap<String, Vec<Mark>> = BTreeMap::new();
    external_marks(options, &mut marks, &mut report);
    // Pass 1: the checkpoints.
    let read_err = |e: std::io::Error| AuditError::Io(format!("{}: {e}", path.display()));
    for (n, line) in open()?.lines().enumerate() {
        let line = line.map_err(read_err)?;
        if line.starts_with("{\"checkpoint\":") {
            match serde_json::from_str::<CheckpointLine>(&line) {
                Ok(cp) => add_mark(
                    &cp.checkpoint,
                    format!("checkpoint on line {} of the export", n + 1),
                    None,
                    &options.verifiers,
                    &mut marks,
                    &mut report,
                ),
                Err(e) => report.push(Problem {
                    log_id: "?".into(),
                    index: None,
                    event_id: None,
                    kind: ProblemKind::CheckpointInvalid,
                    detail: format!("line {} is not a checkpoint line: {e}", n + 1),
                }),
            }
        }
    }
    // Pass 2: the events, chain by chain in file order.
    let mut chains: BTreeMap<String, ChainCheck> = BTreeMap::new();
    let mut seen = Vec::new();
    for (n, line) in open()?.lines().enumerate() {
        let line = line.map_err(read_err)?;
        if line.is_empty() || line.starts_with("{\"checkpoint\":") {
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Chain {
            log: String,
        }
        let log_id = match serde_json::from_str::<Chain>(&line) {
            Ok(c) => c.log,
            Err(e) => {
                report.push(Problem {
                    log_id: "?".into(),
                    index: None,
                    event_id: None,
                    kind: ProblemKind::RecordUnreadable,
                    detail: format!("line {} is not an audit record: {e}", n + 1),
                });
                continue;
            }
        };
        if options.log_id.as_ref().is_some_and(|l| *l != log_id) {
            continue;
        }
        if !chains.contains_key(&log_id) {
            let check = ChainCheck::new(
                &log_id,
                marks.remove(&log_id).unwrap_or_default(),
                &mut report,
            );
            seen.push(log_id.clone());
            chains.insert(log_id.clone(), check);
        }
        let check = chains.get_mut(&log_id).expect("inserted above");
        // An export has no positions of its own: a record's place is its position.
        let seq = check.frontier.size();
        check.next_seq = seq;
        check.feed(seq, line.as_bytes(), None, &mut report);
    }
    for (_, check) in chains {
        check.finish(None, &mut report);
    }
    report_unknown_chains(marks, &seen, options.log_id.as_deref(), &mut report);
    report.cannot_detect = blind_spots(options);
    Ok(report)
}

/// Picks the chain to act on: `log_id` if given, else the store's only chain.
pub async fn pick_chain(store: &AnyStore, log_id: Option<&str>) -> Result<LogHead, AuditError> {
    let heads = store.heads().await?;
    match log_id {
        Some(id) => heads
            .into_iter()
            .find(|h| h.log_id == id)
            .ok_or_else(|| AuditError::NoSuchChain(id.to_owned())),
        None => match heads.len() {
            1 => Ok(heads.into_iter().next().expect("one")),
            0 => Err(AuditError::NoSuchChain("(the log is empty)".into())),
            _ => Err(AuditError::AmbiguousChain(
                heads.into_iter().map(|h| h.log_id).collect(),
            )),
        },
    }
}

/// Signs and stores a checkpoint of a chain's current head (computed from the
/// stored frontier) and returns it: what `entraflow audit checkpoint` exports.
pub async fn checkpoint_now(
    store: &AnyStore,
    signer: &CheckpointSigner,
    log_id: Option<&str>,
) -> Result<SignedCheckpoint, AuditError> {
    let head = pick_chain(store, log_id).await?;
    let frontier = head.frontier()?;
    Ok(sign_and_store(store, signer, &head.log_id, &frontier).await?)
}

/// Recomputed leaf hashes of the first `size` events of a chain.
async fn leaves(store: &AnyStore, log_id: &str, size: u64) -> Result<Vec<(Hash, Row)>, AuditError> {
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let want = (size - out.len() as u64).min(CHUNK as u64) as usize;
        let rows = store.rows(log_id, out.len() as u64, want).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            if row.seq != out.len() as u64 {
                return Err(StoreError::Corrupt(format!(
                    "chain '{log_id}': event #{} is missing",
                    out.len()
                ))
                .into());
            }
            out.push((leaf_hash(row.record.as_bytes()), row));
        }
    }
    if (out.len() as u64) < size {
        return Err(StoreError::Corrupt(format!(
            "chain '{log_id}' has {} events, fewer than the checkpoint's {size}",
            out.len()
        ))
        .into());
    }
    Ok(out)
}

/// The latest stored checkpoint of a chain that verifies and covers `min_size` events.
async fn covering_checkpoint(
    store: &AnyStore,
    log_id: &str,
    min_size: u64,
    verifiers: &[NoteVerifier],
) -> Result<(crate::checkpoint::Checkpoint, String), AuditError> {
    let stored = store.checkpoints(log_id).await?;
    let latest = stored
        .iter()
        .rev()
        .find(|c| c.size >= min_size)
        .ok_or_else(|| {
            AuditError::NoCheckpoint(format!(
                "chain '{log_id}' has no checkpoint covering {min_size} events yet; run `entraflow audit checkpoint` first"
            ))
        })?;
    let (checkpoint, _) = open_checkpoint(&latest.note, verifiers)?;
    Ok((checkpoint, latest.note.clone()))
}

/// An inclusion proof of one event in a signed checkpoint, as `audit prove` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct InclusionProof {
    /// The chain.
    pub log_id: String,
    /// The event's position (leaf index).
    pub index: u64,
    /// The event id.
    pub event_id: String,
    /// The record, parsed.
    pub record: serde_json::Value,
    /// SHA-256(0x00 || record bytes).
    pub leaf_hash: Hash,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// Its root, as the checkpoint signs it.
    pub root: Hash,
    /// The audit path (RFC 9162 §2.1.3), bottom up.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

/// Proves that event `index` of a chain is in its latest stored checkpoint (which
/// must verify with `verifiers`); the proof is checked before it is returned.
pub async fn prove_inclusion(
    store: &AnyStore,
    log_id: Option<&str>,
    index: u64,
    verifiers: &[NoteVerifier],
) -> Result<InclusionProof, AuditError> {
    let head = pick_chain(store, log_id).await?;
    let (checkpoint, note) = covering_checkpoint(store, &head.log_id, index + 1, verifiers).await?;
    let leaves = leaves(store, &head.log_id, checkpoint.size).await?;
    let hashes: Vec<Hash> = leaves.iter().map(|(h, _)| *h).collect();
    let proof = merkle::inclusion_proof(&hashes, index)?;
    let (leaf, row) = &leaves[index as usize];
    merkle::verify_inclusion(index, checkpoint.size, leaf, &proof, &checkpoint.root)?;
    Ok(InclusionProof {
        log_id: head.log_id,
        index,
        event_id: row.event_id.clone(),
        record: serde_json::from_str(&row.record).unwrap_or(serde_json::Value::Null),
        leaf_hash: *leaf,
        tree_size: checkpoint.size,
        root: checkpoint.root,
        proof,
        checkpoint: note,
    })
}

/// A consistency proof between two sizes of a chain.
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyProof {
    /// The chain.
    pub log_id: String,
    /// The earlier size.
    pub old_size: u64,
    /// The earlier root (recomputed).
    pub old_root: Hash,
    /// The later size (the latest checkpoint's).
    pub new_size: u64,
    /// The later root, as the checkpoint signs it.
    pub new_root: Hash,
    /// The proof (RFC 9162 §2.1.4).
    pub proof: Vec<Hash>,
    /// The later signed checkpoint note.
    pub checkpoint: String,
}

/// Proves that the chain's first `old_size` events are a prefix of its latest stored
/// checkpoint; checked before it is returned.
pub async fn prove_consistency(
    store: &AnyStore,
    log_id: Option<&str>,
    old_size: u64,
    verifiers: &[NoteVerifier],
) -> Result<ConsistencyProof, AuditError> {
    let head = pick_chain(store, log_id).await?;
    let (checkpoint, note) = covering_checkpoint(store, &head.log_id, old_size, verifiers).await?;
    let leaves = leaves(store, &head.log_id, checkpoint.size).await?;
    let hashes: Vec<Hash> = leaves.iter().map(|(h, _)| *h).collect();
    let proof = merkle::consistency_proof(&hashes, old_size)?;
    let old_root = merkle::root_of(&hashes[..old_size as usize]);
    merkle::verify_consistency(
        old_size,
        checkpoint.size,
        &old_root,
        &checkpoint.root,
        &proof,
    )?;
    Ok(ConsistencyProof {
        log_id: head.log_id,
        old_size,
        old_root,
        new_size: checkpoint.size,
        new_root: checkpoint.root,
        proof,
        checkpoint: note,
    })
}
