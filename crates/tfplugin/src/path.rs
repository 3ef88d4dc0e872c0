//! `scheme://account/container/blob` paths.

use crate::status::FsError;

/// A parsed `az://` path. `container` and `blob` may be empty: the account root and a
/// container's root are directories.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobPath {
    /// The URI scheme it was written with (`az`, or the alternative name).
    pub scheme: String,
    /// The storage account.
    pub account: String,
    /// The container, or empty for the account root.
    pub container: String,
    /// The blob name (or virtual directory), without a trailing `/`; empty for the
    /// container root.
    pub blob: String,
}

impl BlobPath {
    /// Parses a full URI. Repeated and trailing `/` in the blob part are dropped, as a
    /// POSIX path would treat them.
    pub fn parse(uri: &str) -> Result<BlobPath, FsError> {
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
            FsError::InvalidPath(format!(
                "'{uri}' is not a URI of the form az://<account>/<container>/<path>"
            ))
        })?;
        let mut parts = rest.split('/').filter(|s| !s.is_empty());
        let account = parts.next().unwrap_or_default().to_owned();
        if account.is_empty() {
            return Err(FsError::InvalidPath(format!(
                "'{uri}' names no storage account; write {scheme}://<account>/<container>/<path>"
            )));
        }
        let container = parts.next().unwrap_or_default().to_owned();
        let blob = parts.collect::<Vec<_>>().join("/");
        Ok(BlobPath {
            scheme: scheme.to_owned(),
            account,
            container,
            blob,
        })
    }

    /// The path of `name` inside this container (`name` relative to the container).
    pub fn with_blob(&self, name: &str) -> BlobPath {
        BlobPath {
            blob: name.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    /// The prefix that lists this directory's contents: `dir/`, or empty at the root.
    pub fn dir_prefix(&self) -> String {
        if self.blob.is_empty() {
            String::new()
        } else {
            format!("{}/", self.blob)
        }
    }

    /// Fails unless the path names a blob (not the account or a container root).
    pub fn require_blob(&self) -> Result<(), FsError> {
        if self.container.is_empty() || self.blob.is_empty() {
            return Err(FsError::FailedPrecondition(format!(
                "{self} is a directory (account or container root), not a file"
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for BlobPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.account)?;
        if !self.container.is_empty() {
            write!(f, "/{}", self.container)?;
        }
        if !self.blob.is_empty() {
            write!(f, "/{}", self.blob)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_account_container_and_blob() {
        let p = BlobPath::parse("az://acct/data/train/shard-0.tfrecord").unwrap();
        assert_eq!(
            (p.account.as_str(), p.container.as_str(), p.blob.as_str()),
            ("acct", "data", "train/shard-0.tfrecord")
        );
        assert_eq!(p.to_string(), "az://acct/data/train/shard-0.tfrecord");
        assert_eq!(p.dir_prefix(), "train/shard-0.tfrecord/");
    }

    #[test]
    fn roots_and_trailing_slashes() {
        let c = BlobPath::parse("azent://acct/data/").unwrap();
        assert_eq!((c.container.as_str(), c.blob.as_str()), ("data", ""));
        assert_eq!(c.dir_prefix(), "");
        assert!(c.require_blob().is_err());
        let d = BlobPath::parse("az://acct/data//a//b/").unwrap();
        assert_eq!(d.blob, "a/b");
        let a = BlobPath::parse("az://acct").unwrap();
        assert_eq!(a.container, "");
    }

    #[test]
    fn refuses_paths_without_an_account() {
        assert!(BlobPath::parse("az://").is_err());
        assert!(BlobPath::parse("/local/file").is_err());
    }
}
