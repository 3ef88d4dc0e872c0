//! The node-local shared token cache: every process of one OS user on a host that
//! opts in (`ENTRAFLOW_SHARED_TOKEN_CACHE`) shares one refresh per cache key, so 64
//! DataLoader workers make the token requests of one process, not 64 times as many
//! (with managed identity, that multiplication is how IMDS answers 429).
//!
//! It is a layer *under* [`crate::TokenCache`], not a second cache: each process keeps
//! its in-memory cache and its rules; only the fetch goes through here. A fetch first
//! looks for a token another process stored that is not yet due for refresh; failing
//! that it takes an exclusive `flock` on the key's lock file, looks again (someone
//! may have refreshed while it waited), and only then asks the authority and stores
//! the answer. The stored entry keeps the fetching process's `refresh_at` and
//! `usable_until`, so every process refreshes on one schedule.
//!
//! **Owner only.** The directory is 0700 and must be owned by this user (checked on
//! open; a directory someone else made is refused); entries are 0600, written
//! atomically. Tokens live here as MSAL's persistent cache keeps them on Linux: in
//! files only their owner can read; the default directory is under
//! `$XDG_RUNTIME_DIR` (memory-backed) when there is one. File names are hashes of
//! the key; nothing here logs a token.
//!
//! **Fork.** Nothing is held between calls but the directory's path. A lock is
//! released explicitly (`LOCK_UN`), not only by closing: a child forked while a
//! lock was held shares the open file, and closing alone would leave it locked.
//!
//! **Fallback.** When the directory cannot be used, or a lock cannot be taken, the
//! process fetches on its own, exactly as without the shared cache.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use entraflow_core::{Secret, env, fsutil};
use serde::{Deserialize, Serialize};

use crate::cache::{CacheKey, Cached};
use crate::token::AccessToken;

/// The shared cache's directory. Cheap to clone; holds no open files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedTokenStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    tenant: String,
    client: String,
    scopes: String,
    claims: Option<String>,
    token: String,
    token_type: String,
    expires_on: i64,
    refresh_at_ms: i64,
    usable_until_ms: i64,
}

/// An exclusive lock on one key, released on drop.
pub(crate) struct KeyLock(File);

impl Drop for KeyLock {
    fn drop(&mut self) {
        // Explicitly: a forked child may hold a duplicate of this open file.
        let _ = self.0.unlock();
    }
}

impl SharedTokenStore {
    /// The store `ENTRAFLOW_SHARED_TOKEN_CACHE` asks for: unset, empty, `0`, `off` or
    /// `false` mean none; `1`, `on` or `true` mean [`Self::default_dir`]; anything
    /// else is a directory. A directory that cannot be used is logged and ignored.
    /// The outcome is remembered per value, so the credentials a process builds do
    /// not each re-check the directory (or log the same warning).
    pub fn from_process_env() -> Option<Self> {
        static OPENED: Mutex<Option<(String, Option<SharedTokenStore>)>> = Mutex::new(None);
        let value = std::env::var(env::ENTRAFLOW_SHARED_TOKEN_CACHE).unwrap_or_default();
        let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, store)) = opened.as_ref()
            && *seen == value
        {
            return store.clone();
        }
        let store = Self::from_setting(&value);
        *opened = Some((value, store.clone()));
        store
    }

    fn from_setting(value: &str) -> Option<Self> {
        let dir = match value.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "off" | "false" | "no" => return None,
            "1" | "on" | "true" | "yes" => Self::default_dir(),
            _ => PathBuf::from(value.trim()),
        };
        match Self::open(&dir) {
            Ok(store) => Some(store),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e,
                    "the shared token cache is unusable; this process caches its own tokens");
                None
            }
        }
    }

    /// `$XDG_RUNTIME_DIR/entraflow/tokens` (per user, in memory), else
    /// `<temp dir>/entraflow-tokens-<uid>`. (Another user's directory of that name is
    /// refused by [`Self::open`], so a squatter only costs the sharing.)
    pub fn default_dir() -> PathBuf {
        if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(runtime).join("entraflow").join("tokens");
        }
        std::env::temp_dir().join(format!("entraflow-tokens-{}", current_user()))
    }

    /// Opens (creating, 0700) `dir`; refuses one that is a symlink, is not owned by
    /// this user, or that others can read or enter.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        fsutil::create_private_dir(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let meta = std::fs::symlink_metadata(dir)?;
            let refuse = |why: String| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    why,
                ))
            };
            if !meta.is_dir() {
                return refuse(format!("{} is not a directory", dir.display()));
            }
            if meta.permissions().mode() & 0o077 != 0 {
                return refuse(format!("{} is open to other users", dir.display()));
            }
            // Who "this user" is, without unsafe code: the owner of a file we create.
            let probe = dir.join(format!(".owner-{}", std::process::id()));
            fsutil::write_private_file(&probe, b"")?;
            let me = std::fs::metadata(&probe).map(|m| m.uid());
            let _ = std::fs::remove_file(&probe);
            if meta.uid() != me? {
                return refuse(format!("{} belongs to another user", dir.display()));
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry for `key`, if one is stored for exactly that key.
    pub(crate) fn read(&self, key: &CacheKey) -> Option<Cached> {
        let bytes = std::fs::read(self.entry_path(key)).ok()?;
        let stored: Stored = serde_json::from_slice(&bytes).ok()?;
        let same_key = stored.tenant == key.tenant
            && stored.client == key.client
            && stored.scopes == key.scopes
            && stored.claims == key.claims;
        same_key.then(|| Cached {
            token: AccessToken {
                token: Secret::new(stored.token),
                expires_on: stored.expires_on,
                refresh_on: stored.refresh_at_ms.div_euclid(1000),
                token_type: stored.token_type,
            },
            refresh_at: stored.refresh_at_ms,
            usable_until: stored.usable_until_ms,
        })
    }

    /// Stores `entry` for `key` (0600, atomically).
    pub(crate) fn write(&self, key: &CacheKey, entry: &Cached) -> std::io::Result<()> {
        let stored = Stored {
            tenant: key.tenant.clone(),
            client: key.client.clone(),
            scopes: key.scopes.clone(),
            claims: key.claims.clone(),
            token: entry.token.token.expose().to_owned(),
            token_type: entry.token.token_type.clone(),
            expires_on: entry.token.expires_on,
            refresh_at_ms: entry.refresh_at,
            usable_until_ms: entry.usable_until,
        };
        let json = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        fsutil::write_private_file(&self.entry_path(key), &json)
    }

    /// Blocks until this process holds `key`'s lock.
    pub(crate) fn lock(&self, key: &CacheKey) -> std::io::Result<KeyLock> {
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(self.dir.join(format!("{}.lock", key_hash(key))))?;
        file.lock()?;
        Ok(KeyLock(file))
    }

    fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key_hash(key)))
    }
}

/// This process's uid (Linux: the owner of `/proc/self`), else the login name.
fn current_user() -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata("/proc/self") {
            return meta.uid().to_string();
        }
    }
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "user".into())
}

/// A file name for `key` that reveals nothing about it.
fn key_hash(key: &CacheKey) -> String {
    let material = serde_json::to_vec(&(&key.tenant, &key.client, &key.scopes, &key.claims))
        .unwrap_or_default();
    hex::encode(&aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material).as_ref()[..16])
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key(scopes: &str) -> CacheKey {
        CacheKey {
            tenant: "t".into(),
            client: "c".into(),
            scopes: scopes.into(),
            claims: None,
        }
    }

    fn entry(token: &str) -> Cached {
        Cached {
            token: AccessToken {
                token: Secret::new(token),
                expires_on: 2_000_000_000,
                refresh_on: 1_999_999_000,
                token_type: "Bearer".into(),
            },
            refresh_at: 1_999_999_000_000,
            usable_until: 1_999_999_500_000,
        }
    }

    #[test]
    fn entries_round_trip_per_key_and_are_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let store = SharedTokenStore::open(&root.path().join("tokens")).unwrap();
        store.write(&key("a"), &entry("token-a")).unwrap();
        assert_eq!(store.read(&key("a")), Some(entry("token-a")));
        assert_eq!(store.read(&key("b")), None);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.dir()), 0o700);
        let files: Vec<_> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(mode(&files[0]), 0o600);
        // The name is a hash: neither the token nor the key shows.
        let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.len() == 37 && name.ends_with(".json"), "{name}");
    }

    #[test]
    fn an_open_directory_is_tightened_and_a_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("tokens");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let store = SharedTokenStore::open(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // A symlink in its place could point anywhere: refused, so the caller falls back.
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = SharedTokenStore::open(&link).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    }

    #[test]
    fn a_lock_excludes_other_holders_until_dropped() {
        let root = tempfile::tempdir().unwrap();
        let store = SharedTokenStore::open(root.path()).unwrap();
        let held = store.lock(&key("a")).unwrap();
        let path = store.dir.join(format!("{}.lock", key_hash(&key("a"))));
        let other = File::options().write(true).open(&path).unwrap();
        assert!(
            other.try_lock().is_err(),
            "a second open file must not get the lock"
        );
        drop(held);
        other.try_lock().expect("free once the holder dropped it");
    }
}
