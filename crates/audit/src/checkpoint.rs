//! Signed checkpoints in the C2SP `tlog-checkpoint` format, wrapped in a C2SP
//! `signed-note` with Ed25519 signatures:
//!
//! ```text
//! entraflow/gate/host-1
//! 1042
//! 3q2+7w...base64 root...=
//!
//! — entraflow-audit Ab3x...base64(key id || signature)...
//! ```
//!
//! The verifier key is printed in the note-verifier format
//! `<name>+<hex key id>+<base64(0x01 || public key)>` so the security team can keep
//! it, and the checkpoints, outside the system.

use std::fmt;
use std::path::Path;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::merkle::Hash;

/// Signature type byte of Ed25519 in signed notes.
const ED25519_TYPE: u8 = 0x01;
/// Signed-note signature lines start with an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// File (in the data directory) holding the PKCS#8 signing key, mode 0600.
pub const SIGNING_KEY_FILE: &str = "audit-key.pk8";
/// File holding the verifier key, public.
pub const VERIFIER_KEY_FILE: &str = "audit-key.pub";
/// Key name used when none is configured.
pub const DEFAULT_KEY_NAME: &str = "entraflow-audit";

/// Why a key or a checkpoint was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The note or the checkpoint text breaks the format.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// No signature on the note is by a key we were given.
    #[error(
        "the checkpoint is not signed by a known key (signed by: {signers}); pass its verifier key with --key"
    )]
    UnknownKey {
        /// Names of the keys that did sign it.
        signers: String,
    },
    /// A signature by a known key name and id does not verify: forged or altered.
    #[error("the signature by key '{name}' does not verify: the checkpoint was forged or altered")]
    BadSignature {
        /// The key's name.
        name: String,
    },
    /// A key could not be read or made.
    #[error("audit signing key: {0}")]
    Key(String),
    /// A key file could not be read or written.
    #[error("audit key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// A checkpoint body: which log, how many leaves, which root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin (its chain id).
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Tree head.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text that gets signed (ends with a newline).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root.0)
        )
    }

    /// Parses a checkpoint body (extension lines after the root are allowed and ignored).
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed(why.to_owned());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text does not end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(bad("the origin line is empty"));
        }
        let size_text = lines.next().ok_or_else(|| bad("no tree size line"))?;
        if size_text.is_empty()
            || !size_text.bytes().all(|b| b.is_ascii_digit())
            || (size_text.len() > 1 && size_text.starts_with('0'))
        {
            return Err(bad("the tree size is not a decimal number"));
        }
        let size: u64 = size_text
            .parse()
            .map_err(|_| bad("the tree size does not fit in 64 bits"))?;
        let root_text = lines.next().ok_or_else(|| bad("no root hash line"))?;
        let root = B64
            .decode(root_text)
            .ok()
            .and_then(|b| Hash::from_slice(&b))
            .ok_or_else(|| bad("the root hash is not 32 bytes of base64"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// Key id of the signed-note spec: the first 4 bytes of
/// SHA-256(name || 0x0A || 0x01 || public key), big-endian.
pub fn key_id(name: &str, public_key: &[u8]) -> u32 {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ED25519_TYPE]);
    ctx.update(public_key);
    let hash = ctx.finish();
    u32::from_be_bytes(hash.as_ref()[..4].try_into().expect("4 bytes"))
}

fn check_key_name(name: &str) -> Result<(), CheckpointError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
    {
        return Err(CheckpointError::Key(format!(
            "'{name}' is not a valid key name: it must be non-empty, without spaces or '+'"
        )));
    }
    Ok(())
}

/// The Ed25519 key that signs checkpoints. Its `Debug` never shows the key.
pub struct CheckpointSigner {
    name: String,
    key: Ed25519KeyPair,
    key_id: u32,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A fresh key, kept in memory only (tests, benchmarks).
    pub fn generate(name: &str) -> Result<CheckpointSigner, CheckpointError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| CheckpointError::Key("could not generate an Ed25519 key".into()))?;
        CheckpointSigner::from_pkcs8(name, pkcs8.as_ref())
    }

    /// A key from its PKCS#8 encoding.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<CheckpointSigner, CheckpointError> {
        check_key_name(name)?;
        let key = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| CheckpointError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        let key_id = key_id(name, key.public_key().as_ref());
        Ok(CheckpointSigner {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    /// Loads `audit-key.pk8` from `dir`, creating it (mode 0600) and `audit-key.pub`
    /// when absent. An existing key keeps the name recorded in `audit-key.pub`.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<CheckpointSigner, CheckpointError> {
        let key_path = dir.join(SIGNING_KEY_FILE);
        let pub_path = dir.join(VERIFIER_KEY_FILE);
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| CheckpointError::Io { path, source }
        };
        let signer = match std::fs::read(&key_path) {
            Ok(pkcs8) => {
                let name = match std::fs::read_to_string(&pub_path) {
                    Ok(text) => NoteVerifier::parse(text.trim())?.name,
                    Err(_) => name.to_owned(),
                };
                CheckpointSigner::from_pkcs8(&name, &pkcs8)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| {
                    CheckpointError::Key("could not generate an Ed25519 key".into())
                })?;
                let signer = CheckpointSigner::from_pkcs8(name, pkcs8.as_ref())?;
                entraflow_core::fsutil::write_private_file(&key_path, pkcs8.as_ref())
                    .map_err(io(&key_path))?;
                signer
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        let verifier = format!("{}\n", signer.verifier());
        if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(verifier.as_str()) {
            entraflow_core::fsutil::write_public_file(&pub_path, verifier.as_bytes())
                .map_err(io(&pub_path))?;
        }
        Ok(signer)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half, in note-verifier form.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key: self
                .key
                .public_key()
                .as_ref()
                .try_into()
                .expect("Ed25519 public keys are 32 bytes"),
        }
    }

    /// Signs `checkpoint`, returning the whole signed note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        self.sign_note(&checkpoint.body())
    }

    /// Signs any note text (ending with a newline).
    fn sign_note(&self, body: &str) -> String {
        let signature = self.key.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(signature.as_ref());
        format!("{body}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

/// A public key that checks checkpoint signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    /// Key name.
    pub name: String,
    /// Key id (derived from name and key).
    pub key_id: u32,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
}

impl NoteVerifier {
    /// Parses `<name>+<hex key id>+<base64(0x01 || key)>`, checking the key id.
    pub fn parse(text: &str) -> Result<NoteVerifier, CheckpointError> {
        let bad = |why: &str| CheckpointError::Key(format!("verifier key '{text}': {why}"));
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<key id>+<key>"));
        };
        check_key_name(name)?;
        if id.len() != 8 {
            return Err(bad("the key id must be 8 hex digits"));
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| bad("the key id is not hex"))?;
        let key = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let (&kind, public_key) = key.split_first().ok_or_else(|| bad("the key is empty"))?;
        if kind != ED25519_TYPE {
            return Err(bad("only Ed25519 keys (type 0x01) are supported"));
        }
        let public_key: [u8; 32] = public_key
            .try_into()
            .map_err(|_| bad("an Ed25519 key is 32 bytes"))?;
        if key_id(name, &public_key) != id {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_id: id,
            public_key,
        })
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Vec::with_capacity(33);
        key.push(ED25519_TYPE);
        key.extend_from_slice(&self.public_key);
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, B64.encode(key))
    }
}

/// Opens a signed checkpoint note: checks that it is well formed and that at least
/// one signature is by one of `verifiers` and verifies; a signature that claims a
/// known key but does not verify is refused outright. Returns the checkpoint and the
/// name of the key that vouched for it.
pub fn open_checkpoint(
    note: &str,
    verifiers: &[NoteVerifier],
) -> Result<(Checkpoint, String), CheckpointError> {
    let (body, signer) = open_note(note, verifiers)?;
    Ok((Checkpoint::parse_body(body)?, signer))
}

/// Opens any signed note: returns its text and the name of the known key whose
/// signature verified.
fn open_note<'n>(
    note: &'n str,
    verifiers: &[NoteVerifier],
) -> Result<(&'n str, String), CheckpointError> {
    let bad = |why: &str| CheckpointError::Malformed(why.to_owned());
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(bad("the note contains control characters"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    let (body, sigs) = (&note[..=split], &note[split + 2..]);
    let sigs = sigs
        .strip_suffix('\n')
        .ok_or_else(|| bad("the signature block does not end with a newline"))?;
    let mut signers = Vec::new();
    let mut verified_by = None;
    for line in sigs.split('\n') {
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| bad("a signature line does not start with an em dash"))?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or_else(|| bad("a signature line has no signature"))?;
        let blob = B64
            .decode(sig)
            .map_err(|_| bad("a signature is not base64"))?;
        if blob.len() < 5 {
            return Err(bad("a signature is too short"));
        }
        let id = u32::from_be_bytes(blob[..4].try_into().expect("4 bytes"));
        signers.push(format!("{name}+{id:08x}"));
        for verifier in verifiers
            .iter()
            .filter(|v| v.name == name && v.key_id == id)
        {
            if !verifier.verifies(body.as_bytes(), &blob[4..]) {
                return Err(CheckpointError::BadSignature {
                    name: name.to_owned(),
                });
            }
            verified_by = Some(name.to_owned());
        }
    }
    match verified_by {
        Some(name) => Ok((body, name)),
        None => Err(CheckpointError::UnknownKey {
            signers: signers.join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "entraflow/gate/test".into(),
            size: 1042,
            root: crate::merkle::leaf_hash(b"x"),
        }
    }

    #[test]
    fn signed_checkpoints_open_with_the_verifier_key() {
        let signer = CheckpointSigner::generate("audit-test").unwrap();
        let note = signer.sign(&checkpoint());
        assert!(note.starts_with("entraflow/gate/test\n1042\n"));
        assert!(note.contains("\n\n\u{2014} audit-test "));
        let verifier = NoteVerifier::parse(&signer.verifier().to_string()).unwrap();
        assert_eq!(verifier, signer.verifier());
        let (opened, by) = open_checkpoint(&note, &[verifier]).unwrap();
        assert_eq!(opened, checkpoint());
        assert_eq!(by, "audit-test");
    }

    #[test]
    fn forged_or_altered_checkpoints_are_refused() {
        let signer = CheckpointSigner::generate("audit-test").unwrap();
        let verifier = signer.verifier();
        let note = signer.sign(&checkpoint());

        // Changed tree size, same signature.
        let altered = note.replacen("\n1042\n", "\n1041\n", 1);
        assert!(matches!(
            open_checkpoint(&altered, std::slice::from_ref(&verifier)),
            Err(CheckpointError::BadSignature { .. })
        ));
        // A different key that took the same name: its key id differs, so it is unknown.
        let impostor = CheckpointSigner::generate("audit-test").unwrap();
        let forged = impostor.sign(&checkpoint());
        assert!(matches!(
            open_checkpoint(&forged, std::slice::from_ref(&verifier)),
            Err(CheckpointError::UnknownKey { .. })
        ));
        // A forged signature that claims the right key id.
        let sig_line = note.lines().last().unwrap();
        let blob = B64.decode(sig_line.rsplit(' ').next().unwrap()).unwrap();
        let mut forged_blob = blob.clone();
        forged_blob[10] ^= 0x55;
        let forged = note.replace(&B64.encode(&blob), &B64.encode(&forged_blob));
        assert!(matches!(
            open_checkpoint(&forged, std::slice::from_ref(&verifier)),
            Err(CheckpointError::BadSignature { .. })
        ));
        // Truncated or unsigned notes.
        assert!(open_checkpoint(&checkpoint().body(), std::slice::from_ref(&verifier)).is_err());
        assert!(open_checkpoint("", std::slice::from_ref(&verifier)).is_err());
    }

    #[test]
    fn verifier_keys_are_checked() {
        let signer = CheckpointSigner::generate("k").unwrap();
        let text = signer.verifier().to_string();
        let (name, rest) = text.split_once('+').unwrap();
        assert_eq!(name, "k");
        let tampered_id = format!("k+00000000+{}", rest.split_once('+').unwrap().1);
        assert!(NoteVerifier::parse(&tampered_id).is_err());
        assert!(NoteVerifier::parse("k+zz").is_err());
        assert!(CheckpointSigner::generate("has space").is_err());
    }

    /// The signed-note reference example (golang.org/x/mod/sumdb/note): its verifier
    /// key parses with its key id, its signature verifies, and signing the same text
    /// with the same seed gives the same bytes (Ed25519 is deterministic).
    #[test]
    fn signed_note_reference_vector() {
        let verifier = NoteVerifier::parse(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        )
        .unwrap();
        assert_eq!(verifier.key_id, 0xc74f20a3);
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        let note = format!(
            "{text}\n\u{2014} PeterNeumann \
             x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        );
        let (body, by) = open_note(&note, std::slice::from_ref(&verifier)).unwrap();
        assert_eq!((body, by.as_str()), (text, "PeterNeumann"));

        let seed = B64
            .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
            .unwrap();
        let key = Ed25519KeyPair::from_seed_unchecked(&seed[1..]).unwrap();
        let pkcs8 = key.to_pkcs8().unwrap();
        let signer = CheckpointSigner::from_pkcs8("PeterNeumann", pkcs8.as_ref()).unwrap();
        assert_eq!(signer.verifier(), verifier);
        assert_eq!(signer.sign_note(text), note);
    }

    #[test]
    fn keys_persist_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let a = CheckpointSigner::load_or_create(dir.path(), "gate-key").unwrap();
        let b = CheckpointSigner::load_or_create(dir.path(), "ignored").unwrap();
        assert_eq!(a.verifier(), b.verifier());
        assert_eq!(b.name(), "gate-key");
        let pub_text = std::fs::read_to_string(dir.path().join(VERIFIER_KEY_FILE)).unwrap();
        assert_eq!(pub_text.trim(), a.verifier().to_string());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SIGNING_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
