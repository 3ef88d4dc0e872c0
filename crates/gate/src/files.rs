//! Blob files of a local-directory backend, read without `object_store`'s detours.
//!
//! `object_store`'s local backend runs every call on tokio's blocking pool: a small
//! GET opened and stat'ed the file twice (HEAD, then GET) and read it in another
//! hop, each a thread hand-off that cost more than the work. Here a GET opens the
//! file once, takes its metadata from that open file (so the ETag and the bytes
//! served are of the same file even if an upload replaces it meanwhile: uploads
//! rename a new file into place, the open one keeps its contents), and reads a
//! small body in place. Opening, `fstat` and a `pread` of at most [`SMALL_READ`]
//! bytes take microseconds from the page cache, less than one hop to the pool;
//! larger bodies are read in [`READ_CHUNK`] steps on the pool, from the same file.

use std::fs::{File, Metadata};
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::ObjectMeta;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

/// Bodies up to this size are read in place and leave with the response headers.
pub(crate) const SMALL_READ: u64 = 64 * 1024;

/// Bytes read per step when streaming a larger file: object_store's own file stream
/// reads 8 KiB per blocking-pool hop, which caps a local read near 150 MiB/s.
pub(crate) const READ_CHUNK: u64 = 1024 * 1024;

/// The local backend's files (the same store the backend writes through).
#[derive(Debug, Clone)]
pub(crate) struct LocalFiles {
    fs: Arc<LocalFileSystem>,
}

/// A blob file opened for reading.
#[derive(Debug)]
pub(crate) struct OpenFile {
    file: File,
    path: PathBuf,
}

impl LocalFiles {
    pub(crate) fn new(fs: Arc<LocalFileSystem>) -> Self {
        Self { fs }
    }

    /// The file's metadata as `object_store` describes it (same ETag and time).
    pub(crate) fn head(&self, location: &Path) -> object_store::Result<ObjectMeta> {
        let path = self.fs.path_to_filesystem(location)?;
        let metadata = std::fs::metadata(&path).map_err(|e| io_error(e, location, &path))?;
        meta(&metadata, location)
    }

    /// Opens the blob's file; its metadata comes from the open file.
    pub(crate) fn open(&self, location: &Path) -> object_store::Result<(OpenFile, ObjectMeta)> {
        let path = self.fs.path_to_filesystem(location)?;
        let file = File::open(&path).map_err(|e| io_error(e, location, &path))?;
        let metadata = file.metadata().map_err(|e| io_error(e, location, &path))?;
        Ok((OpenFile { file, path }, meta(&metadata, location)?))
    }
}

impl OpenFile {
    /// A file `object_store` opened (its GET of a local file).
    pub(crate) fn from_parts(file: File, path: PathBuf) -> Self {
        Self { file, path }
    }

    /// The bytes of `range`: read now when small, else streamed from the pool.
    pub(crate) fn read(self, range: Range<u64>) -> BoxStream<'static, object_store::Result<Bytes>> {
        if range.end - range.start <= SMALL_READ {
            let mut buf = vec![0; (range.end - range.start) as usize];
            let read = self
                .file
                .read_exact_at(&mut buf, range.start)
                .map(|()| Bytes::from(buf))
                .map_err(|e| read_error(e, &self.path));
            return futures::stream::once(std::future::ready(read)).boxed();
        }
        let Self { file, path } = self;
        let file = Arc::new(file);
        futures::stream::try_unfold(range.start, move |pos| {
            let (file, path) = (Arc::clone(&file), path.clone());
            let end = range.end;
            async move {
                if pos >= end {
                    return Ok(None);
                }
                let len = (end - pos).min(READ_CHUNK) as usize;
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, pos).map(|()| buf)
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
                match read {
                    Ok(buf) => Ok(Some((Bytes::from(buf), pos + len as u64))),
                    Err(e) => Err(read_error(e, &path)),
                }
            }
        })
        .boxed()
    }
}

/// `object_store`'s `ObjectMeta` of a local file: its ETag scheme is
/// `"{inode:x}-{mtime µs:x}-{size:x}"` (tested against it below).
fn meta(metadata: &Metadata, location: &Path) -> object_store::Result<ObjectMeta> {
    if metadata.is_dir() {
        return Err(object_store::Error::NotFound {
            path: location.to_string(),
            source: "is a directory".into(),
        });
    }
    let modified = metadata
        .modified()
        .map_err(|e| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        })?;
    let micros = modified
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let inode = std::os::unix::fs::MetadataExt::ino(metadata);
    Ok(ObjectMeta {
        location: location.clone(),
        last_modified: modified.into(),
        size: metadata.len(),
        e_tag: Some(format!("\"{inode:x}-{micros:x}-{:x}\"", metadata.len())),
        version: None,
    })
}

fn io_error(e: std::io::Error, location: &Path, path: &std::path::Path) -> object_store::Error {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => {
            object_store::Error::NotFound {
                path: location.to_string(),
                source: Box::new(e),
            }
        }
        _ => object_store::Error::Generic {
            store: "LocalFileSystem",
            source: format!("{}: {e}", path.display()).into(),
        },
    }
}

fn read_error(e: std::io::Error, path: &std::path::Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("reading {}: {e}", path.display()).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;

    async fn fixture(data: &[u8]) -> (tempfile::TempDir, Arc<LocalFileSystem>, Path) {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let location = Path::from("c/blob.bin");
        fs.put(&location, Bytes::copy_from_slice(data).into())
            .await
            .unwrap();
        (dir, fs, location)
    }

    #[tokio::test]
    async fn metadata_is_what_object_store_reports() {
        let (_dir, fs, location) = fixture(b"hello").await;
        let files = LocalFiles::new(Arc::clone(&fs));
        let theirs = fs.head(&location).await.unwrap();
        assert_eq!(files.head(&location).unwrap(), theirs);
        assert_eq!(files.open(&location).unwrap().1, theirs);
    }

    #[tokio::test]
    async fn a_missing_blob_or_a_directory_is_not_found() {
        let (_dir, fs, _) = fixture(b"x").await;
        let files = LocalFiles::new(fs);
        for missing in ["c/nope", "c", "c/blob.bin/below"] {
            let err = files.open(&Path::from(missing)).unwrap_err();
            assert!(
                matches!(err, object_store::Error::NotFound { .. }),
                "{missing}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn small_and_large_ranges_read_the_same_bytes() {
        let data: Vec<u8> = (0..3 * READ_CHUNK as usize + 5)
            .map(|i| (i % 251) as u8)
            .collect();
        let (_dir, fs, location) = fixture(&data).await;
        let files = LocalFiles::new(fs);
        for range in [
            0..10,
            5..SMALL_READ + 5,
            0..data.len() as u64,
            7..2 * READ_CHUNK + 3,
        ] {
            let (file, _) = files.open(&location).unwrap();
            let chunks: Vec<Bytes> = file.read(range.clone()).try_collect().await.unwrap();
            if range.end - range.start <= SMALL_READ {
                assert_eq!(chunks.len(), 1, "a small body is one chunk, ready at once");
            }
            assert_eq!(
                chunks.concat(),
                &data[range.start as usize..range.end as usize]
            );
        }
    }

    #[tokio::test]
    async fn an_open_blob_keeps_its_bytes_when_an_upload_replaces_it() {
        let (_dir, fs, location) = fixture(b"old bytes").await;
        let files = LocalFiles::new(Arc::clone(&fs));
        let (file, meta) = files.open(&location).unwrap();
        fs.put(&location, Bytes::from_static(b"new!").into())
            .await
            .unwrap();
        let chunks: Vec<Bytes> = file.read(0..meta.size).try_collect().await.unwrap();
        assert_eq!(chunks.concat(), b"old bytes");
    }
}
