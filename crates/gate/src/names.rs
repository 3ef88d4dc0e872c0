//! Names: path-style addressing (`/<account>/<container>/<blob>`), Azure's naming
//! rules, and the mapping of blob names onto `object_store` paths.
//!
//! Blobs live at `<container>/<blob name>` in the backend ([`Layout`]). Staged
//! (uncommitted) blocks live under [`STAGING_ROOT`], which no container name can
//! equal because container names never start with `$`... except Azure's own
//! `$root`/`$logs`, which the gate does not serve.

use object_store::path::{Path, PathPart};
use percent_encoding::percent_decode_str;

use crate::error::StorageError;

/// Backend prefix of staged blocks.
pub(crate) const STAGING_ROOT: &str = "$staging";

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `/<account>`: the blob service (List Containers).
    Service,
    /// `/<account>/<container>`.
    Container(String),
    /// `/<account>/<container>/<blob>`.
    Blob(String, String),
}

impl Target {
    /// The container, if any.
    pub(crate) fn container(&self) -> Option<&str> {
        match self {
            Target::Service => None,
            Target::Container(c) | Target::Blob(c, _) => Some(c),
        }
    }
}

/// Splits a request path (still percent-encoded) for `account`.
pub(crate) fn parse_target(raw_path: &str, account: &str) -> Result<Target, StorageError> {
    let path = percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| StorageError::invalid_uri("the path is not valid UTF-8"))?;
    let path = path.strip_prefix('/').unwrap_or(&path);
    let (first, rest) = match path.split_once('/') {
        Some((a, r)) => (a, r),
        None => (path, ""),
    };
    if first != account {
        return Err(StorageError::invalid_uri(format!(
            "this gate serves the account '{account}'; the path names '{first}'"
        )));
    }
    if rest.is_empty() {
        return Ok(Target::Service);
    }
    let (container, blob) = match rest.split_once('/') {
        Some((c, b)) => (c, b),
        None => (rest, ""),
    };
    validate_container(container)?;
    if blob.is_empty() {
        return Ok(Target::Container(container.to_owned()));
    }
    validate_blob(blob)?;
    Ok(Target::Blob(container.to_owned(), blob.to_owned()))
}

/// Azure's container rules, shared with role assignment scopes.
pub(crate) fn validate_container(name: &str) -> Result<(), StorageError> {
    if entraflow_rbac::valid_container_name(name) {
        Ok(())
    } else {
        Err(StorageError::invalid_resource_name())
    }
}

/// Blob names: 1–1024 characters. The backend cannot hold empty path segments
/// (`a//b`, a trailing `/`) or `.`/`..` segments, so those are refused.
pub(crate) fn validate_blob(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 1024
        && name
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid_resource_name())
    }
}

/// Suffix of a blob's file on a file-system backend.
const BLOB_FILE_SUFFIX: &str = ".$blob";

/// How blob names map onto backend paths.
///
/// Azure's namespace is flat: `a` and `a/b` are two blobs that can both exist. An
/// object store (S3, Azure, GCS) is flat too, so a blob is stored under its name.
/// A file system is not (`a` cannot be a file and a directory at once), so there
/// every blob's file carries [`BLOB_FILE_SUFFIX`]: `a` is the file `a.$blob`, and
/// `a/b` the file `b.$blob` in the directory `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Backend keys are blob names.
    Objects,
    /// Backend files are blob names plus the suffix.
    Files,
}

impl Layout {
    /// Backend path of a blob.
    pub(crate) fn blob_path(self, container: &str, blob: &str) -> Path {
        match self {
            Layout::Objects => dir_path(container, blob),
            Layout::Files => {
                let (dirs, file) = blob.rsplit_once('/').unwrap_or(("", blob));
                let dir = if dirs.is_empty() {
                    container_path(container)
                } else {
                    dir_path(container, dirs)
                };
                dir.join(format!("{file}{BLOB_FILE_SUFFIX}").as_str())
            }
        }
    }

    /// The blob name of a backend path under `container`, undoing percent-encoding
    /// (and the file suffix); `None` for paths that are not blobs.
    pub(crate) fn blob_name_of(self, container: &str, path: &Path) -> Option<String> {
        let mut parts = path.parts();
        let first = parts.next()?;
        if decode(first.as_ref()) != container {
            return None;
        }
        let mut segments: Vec<String> = parts.map(|p| decode(p.as_ref())).collect();
        if self == Layout::Files {
            let last = segments.pop()?;
            segments.push(last.strip_suffix(BLOB_FILE_SUFFIX)?.to_owned());
        }
        (!segments.is_empty()).then(|| segments.join("/"))
    }

    /// The file a blob had before the layout gave it a suffix (older data
    /// directories), for the one-time move.
    pub(crate) fn legacy_file(self, path: &Path) -> Option<Path> {
        let name = path.filename()?;
        (self == Layout::Files && !name.ends_with(BLOB_FILE_SUFFIX)).then(|| {
            let dir: Path = path.parts().take(path.parts().count() - 1).collect();
            dir.join(format!("{}{BLOB_FILE_SUFFIX}", decode(name)).as_str())
        })
    }
}

/// Backend path of a directory (a blob-name prefix without its last `/`).
pub(crate) fn dir_path(container: &str, dirs: &str) -> Path {
    Path::from_iter(
        std::iter::once(container)
            .chain(dirs.split('/'))
            .map(PathPart::from),
    )
}

/// Backend path of a container's directory.
pub(crate) fn container_path(container: &str) -> Path {
    Path::from_iter([PathPart::from(container)])
}

/// Backend directory of a blob's staged blocks: the blob name is hashed so that any
/// name maps to one flat, fixed-length segment.
pub(crate) fn staging_dir(container: &str, blob: &str) -> Path {
    let digest = entraflow_core::secret::sha256_hex(blob.as_bytes());
    Path::from_iter([STAGING_ROOT, container, &digest].map(PathPart::from))
}

/// Backend path of one staged block; the id is hex-encoded so any bytes are safe.
pub(crate) fn staged_block_path(container: &str, blob: &str, block_id_raw: &[u8]) -> Path {
    staging_dir(container, blob).join(hex::encode(block_id_raw).as_str())
}

fn decode(part: &str) -> String {
    percent_decode_str(part).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_path_style() {
        assert_eq!(parse_target("/acct", "acct").unwrap(), Target::Service);
        assert_eq!(parse_target("/acct/", "acct").unwrap(), Target::Service);
        assert_eq!(
            parse_target("/acct/data", "acct").unwrap(),
            Target::Container("data".into())
        );
        assert_eq!(
            parse_target("/acct/data/train/shard%20001.tfrecord", "acct").unwrap(),
            Target::Blob("data".into(), "train/shard 001.tfrecord".into())
        );
        assert_eq!(
            parse_target("/other/data", "acct").unwrap_err().code,
            "InvalidUri"
        );
        assert_eq!(
            parse_target("/acct/Data", "acct").unwrap_err().code,
            "InvalidResourceName"
        );
        assert_eq!(
            parse_target("/acct/data/a//b", "acct").unwrap_err().code,
            "InvalidResourceName"
        );
    }

    #[test]
    fn container_rules() {
        assert!(validate_container("abc").is_ok());
        assert!(validate_container("a-b-1").is_ok());
        for bad in ["ab", "-ab", "ab-", "a--b", "ABC", "a_b", "$staging"] {
            assert!(validate_container(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blob_names_round_trip_through_backend_paths() {
        for layout in [Layout::Objects, Layout::Files] {
            for name in ["x", "train/a b#1%.rec", "deep/er/ünïcode", "odd.$blob"] {
                let p = layout.blob_path("data", name);
                assert_eq!(
                    layout.blob_name_of("data", &p).as_deref(),
                    Some(name),
                    "{layout:?}"
                );
                assert_eq!(layout.blob_name_of("other", &p), None);
            }
        }
        assert_ne!(staging_dir("data", "a"), staging_dir("data", "b"));
        // On files, `a` and `a/b` are a file and a directory that do not collide.
        let a = Layout::Files.blob_path("data", "a");
        let ab = Layout::Files.blob_path("data", "a/b");
        assert_eq!(a.to_string(), "data/a.$blob");
        assert_eq!(ab.to_string(), "data/a/b.$blob");
        assert_eq!(
            Layout::Files
                .legacy_file(&Path::from("data/a/b"))
                .map(|p| p.to_string()),
            Some("data/a/b.$blob".into())
        );
        assert_eq!(Layout::Files.legacy_file(&ab), None);
        assert_eq!(Layout::Objects.legacy_file(&Path::from("data/a")), None);
    }
}
