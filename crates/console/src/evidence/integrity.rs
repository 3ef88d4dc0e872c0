//! Chain integrity: `verify_store` recomputes every chain and checks it against
//! every signed checkpoint; the page shows, per chain, how far the latest
//! checkpoint vouches for it and which key signed that checkpoint.

use std::path::Path;

use base64::Engine as _;
use entraflow_audit::checkpoint::{VERIFIER_KEY_FILE, open_checkpoint};
use entraflow_audit::{AnyStore, NoteVerifier, Problem, StoreBackend, VerifyOptions, verify_store};

use crate::error::PageError;

/// The latest signed checkpoint of a chain.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointView {
    pub(crate) size: u64,
    pub(crate) created: String,
    /// The signing key's name and id (`name+xxxxxxxx`), as the note's signature
    /// line names it.
    pub(crate) signer: String,
    /// Whether one of the trusted verifier keys checks its signature (else why not).
    pub(crate) signature: Result<(), String>,
}

/// One chain's result.
#[derive(Debug, Clone)]
pub(crate) struct ChainView {
    pub(crate) log_id: String,
    pub(crate) size: u64,
    pub(crate) signed_size: u64,
    pub(crate) checkpoints_checked: usize,
    pub(crate) root: String,
    pub(crate) latest: Option<CheckpointView>,
    pub(crate) problems: Vec<Problem>,
}

impl ChainView {
    /// No problem, and the latest checkpoint's signature checks.
    pub(crate) fn verified(&self) -> bool {
        self.problems.is_empty() && self.latest.as_ref().is_some_and(|c| c.signature.is_ok())
    }
}

/// The page's content.
#[derive(Debug, Clone)]
pub(crate) struct IntegrityView {
    pub(crate) chains: Vec<ChainView>,
    /// Problems not tied to a chain that exists (e.g. a deleted chain).
    pub(crate) other_problems: Vec<Problem>,
    pub(crate) problem_count: usize,
    pub(crate) cannot_detect: Vec<String>,
    /// The verifier keys checked against, in note-verifier form.
    pub(crate) keys: Vec<String>,
    /// Why no key could be read, when none could.
    pub(crate) key_error: Option<String>,
}

/// The data directory's `audit-key.pub` plus `extra` keys.
pub(crate) fn verifiers(data_dir: &Path, extra: &[String]) -> (Vec<NoteVerifier>, Option<String>) {
    let path = data_dir.join(VERIFIER_KEY_FILE);
    let mut texts: Vec<String> = extra.to_vec();
    let mut error = None;
    match std::fs::read_to_string(&path) {
        Ok(text) => texts.extend(text.lines().map(str::to_owned)),
        Err(e) => error = Some(format!("{} cannot be read: {e}", path.display())),
    }
    let mut keys = Vec::new();
    for line in texts.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        match NoteVerifier::parse(line) {
            Ok(k) if !keys.contains(&k) => keys.push(k),
            Ok(_) => {}
            Err(e) => error = Some(e.to_string()),
        }
    }
    let error = if keys.is_empty() { error } else { None };
    (keys, error)
}

/// The signature line's key name and id: `— <name> base64(key id || signature)`.
fn signer_of(note: &str) -> String {
    note.lines()
        .filter_map(|l| l.strip_prefix("\u{2014} "))
        .filter_map(|l| {
            let (name, blob) = l.split_once(' ')?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(blob.trim())
                .ok()?;
            let id: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
            Some(format!("{name}+{:08x}", u32::from_be_bytes(id)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) async fn load(
    store: &AnyStore,
    data_dir: &Path,
    extra_keys: &[String],
) -> Result<IntegrityView, PageError> {
    let (keys, key_error) = verifiers(data_dir, extra_keys);
    let report = verify_store(
        store,
        &VerifyOptions {
            verifiers: keys.clone(),
            ..VerifyOptions::default()
        },
    )
    .await?;
    let mut chains = Vec::new();
    for chain in &report.chains {
        let latest = store.checkpoints(&chain.log_id).await?.pop().map(|c| {
            let signature = open_checkpoint(&c.note, &keys)
                .map(|_| ())
                .map_err(|e| e.to_string());
            CheckpointView {
                size: c.size,
                created: c.created,
                signer: signer_of(&c.note),
                signature,
            }
        });
        chains.push(ChainView {
            log_id: chain.log_id.clone(),
            size: chain.size,
            signed_size: chain.signed_size,
            checkpoints_checked: chain.checkpoints_checked,
            root: chain.root.to_string(),
            latest,
            problems: report
                .problems
                .iter()
                .filter(|p| p.log_id == chain.log_id)
                .cloned()
                .collect(),
        });
    }
    let other_problems = report
        .problems
        .iter()
        .filter(|p| !report.chains.iter().any(|c| c.log_id == p.log_id))
        .cloned()
        .collect();
    Ok(IntegrityView {
        chains,
        other_problems,
        problem_count: report.problem_count,
        cannot_detect: report.cannot_detect,
        keys: keys.iter().map(|k| k.to_string()).collect(),
        key_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use entraflow_audit::{Checkpoint, CheckpointSigner};

    #[test]
    fn the_signer_is_read_from_the_notes_signature_line() {
        let signer = CheckpointSigner::generate("entraflow-audit").unwrap();
        let note = signer.sign(&Checkpoint {
            origin: "entraflow/gate".into(),
            size: 3,
            root: entraflow_audit::merkle::Hash([7; 32]),
        });
        let v = signer.verifier();
        assert_eq!(
            signer_of(&note),
            format!("entraflow-audit+{:08x}", v.key_id)
        );
    }
}
