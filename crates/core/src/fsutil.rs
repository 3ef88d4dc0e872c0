//! Files only their owner can read: keys, caches, the authority's database.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Creates `dir` (and parents) readable only by its owner (0700 on Unix).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `contents` to `path` atomically (temp file + rename), mode 0600.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_file_with_mode(path, contents, 0o600)
}

/// Writes `contents` to `path` atomically, mode 0644 (public material: CA certificates, env files).
pub fn write_public_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_file_with_mode(path, contents, 0o644)
}

fn write_file_with_mode(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    std::fs::rename(&tmp, path)
}

/// The default data directory: `$ENTRAFLOW_DATA_DIR`, else `~/.entraflow`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(crate::env::ENTRAFLOW_DATA_DIR) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".entraflow")
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("keys");
        create_private_dir(&sub).unwrap();
        let file = sub.join("k.pem");
        write_private_file(&file, b"secret").unwrap();
        assert_eq!(
            std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"secret");
    }
}

/// Why `err` (or an error it wraps) means there is no room to write: a full disk,
/// a file-size limit or a quota, from the file system or from SQLite. `None` for
/// every other failure. Servers turn this into a 503 that says so, since the
/// client (or its operator) can act on it.
pub fn no_room(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), StorageFull | FileTooLarge | QuotaExceeded)
        {
            return Some(io.kind().to_string());
        }
        if let Some(rusqlite::Error::SqliteFailure(f, _)) = e.downcast_ref::<rusqlite::Error>() {
            if f.code == rusqlite::ErrorCode::DiskFull {
                return Some("the database's disk is full".into());
            }
            // SQLite reports a write refused outright (EFBIG past a file-size limit,
            // EDQUOT) as a write error, only a short write as SQLITE_FULL.
            if f.extended_code == rusqlite::ffi::SQLITE_IOERR_WRITE {
                return Some(
                    "a database write failed (no room, a size limit or a failing disk)".into(),
                );
            }
        }
        current = e.source();
    }
    None
}
