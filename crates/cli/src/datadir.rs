//! The data directory as explicit state: only `entraflow init`, `up` and
//! `authority serve` create one, every other command refuses a directory that
//! holds no tenant (so a typo in `--data-dir` cannot create an empty tenant and
//! report success), and one server per role runs on a directory at a time.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context;
use entraflow_authority::Store;
use entraflow_rbac::RbacStore;

/// Refuses a directory without an authority database, naming how to make one.
pub(crate) fn require_tenant(dir: &Path) -> anyhow::Result<()> {
    if dir.join(entraflow_authority::DB_FILE).is_file() {
        return Ok(());
    }
    anyhow::bail!(
        "{} holds no entraflow tenant (no {}); create one with `entraflow --data-dir {} init` (or `entraflow up`), or point --data-dir / ENTRAFLOW_DATA_DIR at an existing one",
        dir.display(),
        entraflow_authority::DB_FILE,
        dir.display()
    )
}

/// Refuses a directory that does not exist (a server that keeps its own state
/// there, such as a gate trusting another authority, needs no tenant).
pub(crate) fn require_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    anyhow::bail!(
        "the data directory {} does not exist; create it with `entraflow --data-dir {} init` (or `entraflow up`)",
        dir.display(),
        dir.display()
    )
}

/// `entraflow init`: the directory (0700), the tenant and the role store.
pub(crate) fn init(dir: &Path) -> anyhow::Result<String> {
    let store = Store::open(dir).context("creating the authority's database")?;
    RbacStore::open(dir).context("creating the role store")?;
    Ok(store.default_tenant()?.id)
}

/// An advisory lock on `<dir>/<role>.lock`, held for the life of the process
/// that serves `role` on the directory; the file says who holds it.
#[derive(Debug)]
pub(crate) struct ServerLock {
    file: File,
    path: PathBuf,
}

impl ServerLock {
    /// Takes the lock, or refuses with what the holder wrote (pid and URLs).
    pub(crate) fn acquire(dir: &Path, role: &str) -> anyhow::Result<Self> {
        let path = dir.join(format!("{role}.lock"));
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                anyhow::bail!(
                    "another entraflow already serves the {role} on {} ({}); stop it first, or use another --data-dir",
                    dir.display(),
                    if holder.is_empty() {
                        "it is still starting".to_owned()
                    } else {
                        holder.replace('\n', ", ")
                    }
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        let mut lock = Self { file, path };
        lock.describe(&[])?;
        Ok(lock)
    }

    /// Records who holds the lock: this pid and what it serves.
    pub(crate) fn describe(&mut self, serving: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut text = format!("pid {}\n", std::process::id());
        for (what, url) in serving {
            text.push_str(&format!("{what} {url}\n"));
        }
        let file = &mut self.file;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = ServerLock::acquire(dir.path(), "authority").unwrap();
        first
            .describe(&[("authority", "https://127.0.0.1:8443")])
            .unwrap();
        let err = ServerLock::acquire(dir.path(), "authority")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id()))
                && err.contains("https://127.0.0.1:8443"),
            "{err}"
        );
        // Another role on the same directory is independent.
        ServerLock::acquire(dir.path(), "gate").unwrap();
        drop(first);
        ServerLock::acquire(dir.path(), "authority").unwrap();
    }

    #[test]
    fn a_directory_without_a_tenant_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("typo-dir");
        let err = require_tenant(&typo).unwrap_err().to_string();
        assert!(err.contains("typo-dir") && err.contains("init"), "{err}");
        assert!(!typo.exists());
        assert!(require_dir(&typo).is_err());
        init(&typo).unwrap();
        require_tenant(&typo).unwrap();
    }
}
