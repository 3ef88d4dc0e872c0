//! The storage side: blobs in an `object_store` backend, and what the backend cannot
//! keep — containers, blob properties and metadata — in the gate's SQLite `gate.db`.
//!
//! Bodies are streamed both ways through multipart uploads, so memory stays flat
//! whatever the blob size, and a blob becomes visible only when its upload
//! completes (the local backend writes a hidden staging file and renames it; cloud
//! backends complete a multipart upload): a reader never sees half a blob.

use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutResult, WriteMultipart};
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use crate::error::{GateError, StorageError};
use crate::names;

/// Bytes read per step when streaming a local file: object_store's own file stream
/// reads 8 KiB per blocking-pool hop, which caps a local read near 150 MiB/s.
const READ_CHUNK: u64 = 1024 * 1024;

/// Bytes buffered per multipart part; with two parts in flight this bounds the
/// memory one upload can take.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Settable blob properties (the `x-ms-blob-*` headers) and user metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobProperties {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// Base64 MD5 the client sent with the upload.
    pub content_md5: Option<String>,
    /// `x-ms-meta-*`, names lowercased.
    pub metadata: Vec<(String, String)>,
}

/// A container as List Containers and Get Container Properties show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Name.
    pub name: String,
    /// When it was created (also its Last-Modified: metadata changes bump it).
    pub last_modified: OffsetDateTime,
    /// Opaque ETag.
    pub etag: String,
    /// `x-ms-meta-*`.
    pub metadata: Vec<(String, String)>,
}

/// A blob's backend metadata plus its stored properties.
#[derive(Debug, Clone)]
pub struct BlobInfo {
    /// Name within its container.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modified.
    pub last_modified: OffsetDateTime,
    /// ETag as the client sees it (quoted).
    pub etag: String,
    /// Stored properties.
    pub properties: BlobProperties,
}

/// The gate's storage: a backend plus `gate.db`.
#[derive(Clone)]
pub struct BlobStore {
    backend: Arc<dyn ObjectStore>,
    db: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("backend", &self.backend.to_string())
            .finish()
    }
}

/// The client-visible ETag of backend metadata.
pub(crate) fn client_etag(meta: &ObjectMeta) -> String {
    // Backends differ: the local one already quotes its ETags, S3 and Azure too,
    // some do not. Clients get exactly one pair of quotes, as HTTP wants.
    let raw = meta.e_tag.clone().unwrap_or_else(|| {
        format!(
            "{:x}-{:x}",
            meta.last_modified.timestamp_micros(),
            meta.size
        )
    });
    format!("\"{}\"", raw.trim_matches('"'))
}

fn to_time(meta: &ObjectMeta) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(meta.last_modified.timestamp())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl BlobStore {
    /// Opens (creating) `gate.db` at `db_path` in front of `backend`.
    pub fn open(backend: Arc<dyn ObjectStore>, db_path: &FsPath) -> Result<Self, GateError> {
        let db_err = |source| GateError::Database {
            path: db_path.to_owned(),
            source,
        };
        let conn = Connection::open(db_path).map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS containers (
                 name TEXT PRIMARY KEY,
                 modified INTEGER NOT NULL,
                 etag TEXT NOT NULL,
                 metadata TEXT NOT NULL DEFAULT '[]');
             CREATE TABLE IF NOT EXISTS blob_properties (
                 container TEXT NOT NULL,
                 name TEXT NOT NULL,
                 content_type TEXT, content_encoding TEXT, content_language TEXT,
                 content_disposition TEXT, cache_control TEXT, content_md5 TEXT,
                 metadata TEXT NOT NULL DEFAULT '[]',
                 PRIMARY KEY (container, name));",
        )
        .map_err(db_err)?;
        Ok(Self {
            backend,
            db: Arc::new(Mutex::new(conn)),
        })
    }

    /// The backend (for tests and diagnostics).
    pub fn backend(&self) -> &Arc<dyn ObjectStore> {
        &self.backend
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (statements are atomic).
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- containers ----

    /// Creates a container; `ContainerAlreadyExists` if it does.
    pub fn create_container(
        &self,
        name: &str,
        metadata: &[(String, String)],
    ) -> Result<Container, StorageError> {
        let now = OffsetDateTime::now_utc();
        let etag = new_etag();
        let meta = serde_json::to_string(metadata).map_err(StorageError::internal)?;
        let inserted = self
            .db()
            .execute(
                "INSERT OR IGNORE INTO containers (name, modified, etag, metadata) VALUES (?1, ?2, ?3, ?4)",
                params![name, now.unix_timestamp(), etag, meta],
            )
            .map_err(StorageError::internal)?;
        if inserted == 0 {
            return Err(StorageError::container_already_exists());
        }
        Ok(Container {
            name: name.to_owned(),
            last_modified: now,
            etag,
            metadata: metadata.to_vec(),
        })
    }

    /// A container, or `ContainerNotFound`.
    pub fn container(&self, name: &str) -> Result<Container, StorageError> {
        self.db()
            .query_row(
                "SELECT name, modified, etag, metadata FROM containers WHERE name = ?1",
                params![name],
                row_to_container,
            )
            .optional()
            .map_err(StorageError::internal)?
            .ok_or_else(StorageError::container_not_found)
    }

    /// Replaces a container's metadata.
    pub fn set_container_metadata(
        &self,
        name: &str,
        metadata: &[(String, String)],
    ) -> Result<Container, StorageError> {
        let meta = serde_json::to_string(metadata).map_err(StorageError::internal)?;
        let now = OffsetDateTime::now_utc();
        let changed = self
            .db()
            .execute(
                "UPDATE containers SET metadata = ?2, modified = ?3, etag = ?4 WHERE name = ?1",
                params![name, meta, now.unix_timestamp(), new_etag()],
            )
            .map_err(StorageError::internal)?;
        if changed == 0 {
            return Err(StorageError::container_not_found());
        }
        self.container(name)
    }

    /// Containers whose name starts with `prefix`, in name order, from `marker` on.
    pub fn list_containers(
        &self,
        prefix: &str,
        marker: &str,
        limit: usize,
    ) -> Result<(Vec<Container>, Option<String>), StorageError> {
        let db = self.db();
        let mut stmt = db
            .prepare(
                "SELECT name, modified, etag, metadata FROM containers
                 WHERE substr(name, 1, length(?1)) = ?1 AND name >= ?2 ORDER BY name LIMIT ?3",
            )
            .map_err(StorageError::internal)?;
        let mut rows: Vec<Container> = stmt
            .query_map(
                params![prefix, marker, (limit + 1) as i64],
                row_to_container,
            )
            .map_err(StorageError::internal)?
            .collect::<Result<_, _>>()
            .map_err(StorageError::internal)?;
        let next = (rows.len() > limit)
            .then(|| rows.pop().map(|c| c.name))
            .flatten();
        Ok((rows, next))
    }

    /// Deletes a container and every blob and staged block in it.
    pub async fn delete_container(&self, name: &str) -> Result<(), StorageError> {
        self.container(name)?;
        // Forget the container first so no new writes land while its blobs go.
        self.db()
            .execute("DELETE FROM containers WHERE name = ?1", params![name])
            .map_err(StorageError::internal)?;
        for prefix in [
            names::container_path(name),
            Path::from_iter([names::STAGING_ROOT, name]),
        ] {
            let locations = self
                .backend
                .list(Some(&prefix))
                .map_ok(|m| m.location)
                .boxed();
            self.backend
                .delete_stream(locations)
                .try_collect::<Vec<_>>()
                .await
                .map_err(StorageError::from)?;
        }
        self.db()
            .execute(
                "DELETE FROM blob_properties WHERE container = ?1",
                params![name],
            )
            .map_err(StorageError::internal)?;
        Ok(())
    }

    // ---- blobs ----

    /// Backend metadata plus stored properties of a blob.
    pub async fn blob_info(&self, container: &str, blob: &str) -> Result<BlobInfo, StorageError> {
        let meta = self
            .backend
            .head(&names::blob_path(container, blob))
            .await?;
        Ok(self.info_from_meta(container, blob, &meta))
    }

    /// Combines backend metadata with the stored properties.
    pub fn info_from_meta(&self, container: &str, blob: &str, meta: &ObjectMeta) -> BlobInfo {
        BlobInfo {
            name: blob.to_owned(),
            size: meta.size,
            last_modified: to_time(meta),
            etag: client_etag(meta),
            properties: self.properties(container, blob).unwrap_or_default(),
        }
    }

    /// Stored properties of a blob (defaults when none were stored).
    pub fn properties(&self, container: &str, blob: &str) -> Result<BlobProperties, StorageError> {
        let row = self
            .db()
            .query_row(
                "SELECT content_type, content_encoding, content_language, content_disposition,
                        cache_control, content_md5, metadata
                 FROM blob_properties WHERE container = ?1 AND name = ?2",
                params![container, blob],
                |r| {
                    Ok(BlobProperties {
                        content_type: r.get(0)?,
                        content_encoding: r.get(1)?,
                        content_language: r.get(2)?,
                        content_disposition: r.get(3)?,
                        cache_control: r.get(4)?,
                        content_md5: r.get(5)?,
                        metadata: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                    })
                },
            )
            .optional()
            .map_err(StorageError::internal)?;
        Ok(row.unwrap_or_default())
    }

    fn save_properties(
        &self,
        container: &str,
        blob: &str,
        p: &BlobProperties,
    ) -> Result<(), StorageError> {
        let meta = serde_json::to_string(&p.metadata).map_err(StorageError::internal)?;
        self.db()
            .execute(
                "INSERT OR REPLACE INTO blob_properties
                 (container, name, content_type, content_encoding, content_language,
                  content_disposition, cache_control, content_md5, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    container,
                    blob,
                    p.content_type,
                    p.content_encoding,
                    p.content_language,
                    p.content_disposition,
                    p.cache_control,
                    p.content_md5,
                    meta
                ],
            )
            .map_err(StorageError::internal)?;
        Ok(())
    }

    /// Streams `body` into a blob and records its properties. Returns the new
    /// metadata and the number of bytes written.
    pub async fn put_blob<S>(
        &self,
        container: &str,
        blob: &str,
        body: S,
        props: &BlobProperties,
    ) -> Result<(BlobInfo, u64), StorageError>
    where
        S: Stream<Item = Result<Bytes, StorageError>> + Unpin,
    {
        let path = names::blob_path(container, blob);
        let (_, written) = self.stream_to(&path, body).await?;
        self.save_properties(container, blob, props)?;
        let meta = self.backend.head(&path).await?;
        Ok((self.info_from_meta(container, blob, &meta), written))
    }

    /// Stages one block (Put Block). Returns the bytes written.
    pub async fn put_block<S>(
        &self,
        container: &str,
        blob: &str,
        block_id: &[u8],
        body: S,
    ) -> Result<u64, StorageError>
    where
        S: Stream<Item = Result<Bytes, StorageError>> + Unpin,
    {
        let path = names::staged_block_path(container, blob, block_id);
        Ok(self.stream_to(&path, body).await?.1)
    }

    /// Commits staged blocks, in order, as the blob (Put Block List). The blob's
    /// previous content stays readable until the new one replaces it whole.
    pub async fn commit_blocks(
        &self,
        container: &str,
        blob: &str,
        block_ids: &[Vec<u8>],
        props: &BlobProperties,
    ) -> Result<BlobInfo, StorageError> {
        let mut sources = Vec::with_capacity(block_ids.len());
        for id in block_ids {
            let path = names::staged_block_path(container, blob, id);
            match self.backend.head(&path).await {
                Ok(_) => sources.push(path),
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(StorageError::invalid_block_list());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let backend = self.backend.clone();
        let body = futures::stream::iter(sources)
            .then(move |path| {
                let backend = backend.clone();
                async move { backend.get(&path).await.map(body_stream) }
            })
            .try_flatten()
            .map_err(StorageError::from)
            .boxed();
        let dest = names::blob_path(container, blob);
        self.stream_to(&dest, body).await?;
        self.save_properties(container, blob, props)?;
        self.discard_staged(container, blob).await;
        let meta = self.backend.head(&dest).await?;
        Ok(self.info_from_meta(container, blob, &meta))
    }

    /// Drops every staged block of a blob (Azure discards uncommitted blocks on commit and delete).
    async fn discard_staged(&self, container: &str, blob: &str) {
        let dir = names::staging_dir(container, blob);
        let locations = self.backend.list(Some(&dir)).map_ok(|m| m.location).boxed();
        if let Err(e) = self
            .backend
            .delete_stream(locations)
            .try_collect::<Vec<_>>()
            .await
        {
            tracing::warn!(container, blob, error = %e, "could not discard staged blocks");
        }
    }

    /// Replaces a blob's user metadata (Set Blob Metadata); the content is untouched.
    pub async fn set_blob_metadata(
        &self,
        container: &str,
        blob: &str,
        metadata: Vec<(String, String)>,
    ) -> Result<BlobInfo, StorageError> {
        let mut info = self.blob_info(container, blob).await?;
        info.properties.metadata = metadata;
        self.save_properties(container, blob, &info.properties)?;
        Ok(info)
    }

    /// Deletes a blob.
    pub async fn delete_blob(&self, container: &str, blob: &str) -> Result<(), StorageError> {
        let path = names::blob_path(container, blob);
        // Local deletes of a missing file succeed silently; Azure says BlobNotFound.
        self.backend.head(&path).await?;
        self.backend.delete(&path).await?;
        self.db()
            .execute(
                "DELETE FROM blob_properties WHERE container = ?1 AND name = ?2",
                params![container, blob],
            )
            .map_err(StorageError::internal)?;
        self.discard_staged(container, blob).await;
        Ok(())
    }

    /// Copies a blob within the gate (Copy Blob); properties go with it unless
    /// `metadata` replaces the user metadata.
    pub async fn copy_blob(
        &self,
        from: (&str, &str),
        to: (&str, &str),
        metadata: Option<Vec<(String, String)>>,
    ) -> Result<BlobInfo, StorageError> {
        let src = names::blob_path(from.0, from.1);
        let dest = names::blob_path(to.0, to.1);
        self.backend.head(&src).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                StorageError::cannot_verify_copy_source("The specified blob does not exist.")
            }
            other => other.into(),
        })?;
        self.backend.copy(&src, &dest).await?;
        let mut props = self.properties(from.0, from.1)?;
        if let Some(metadata) = metadata {
            props.metadata = metadata;
        }
        self.save_properties(to.0, to.1, &props)?;
        let meta = self.backend.head(&dest).await?;
        Ok(self.info_from_meta(to.0, to.1, &meta))
    }

    /// Every blob of a container whose name starts with `prefix`, sorted by name.
    /// Listing starts at the deepest directory the prefix names, so a prefix like
    /// `train/shard-0` only walks `train/`.
    pub async fn list_blobs(
        &self,
        container: &str,
        prefix: &str,
    ) -> Result<Vec<(String, ObjectMeta)>, StorageError> {
        let dir = match prefix.rfind('/') {
            Some(i) if names::validate_blob(&prefix[..i]).is_ok() => {
                names::blob_path(container, &prefix[..i])
            }
            _ => names::container_path(container),
        };
        let mut blobs: Vec<(String, ObjectMeta)> = self
            .backend
            .list(Some(&dir))
            .map_err(StorageError::from)
            .try_filter_map(|meta| {
                let name = names::blob_name_of(container, &meta.location)
                    .filter(|n| n.starts_with(prefix));
                futures::future::ready(Ok(name.map(|n| (n, meta))))
            })
            .try_collect()
            .await?;
        blobs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(blobs)
    }

    /// Streams `body` to `path` through a multipart upload: the object appears
    /// only when the upload completes, and is aborted (nothing appears) on error.
    async fn stream_to<S>(&self, path: &Path, mut body: S) -> Result<(PutResult, u64), StorageError>
    where
        S: Stream<Item = Result<Bytes, StorageError>> + Unpin,
    {
        let upload = self.backend.put_multipart(path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            if let Err(e) = writer.wait_for_capacity(2).await {
                return Err(e.into());
            }
            written += chunk.len() as u64;
            writer.put(chunk);
        }
        let result = writer.finish().await?;
        Ok((result, written))
    }
}

/// The body of a Get: local files are read in [`READ_CHUNK`] steps on the blocking
/// pool (memory per stream: one chunk); other backends' streams pass through.
pub(crate) fn body_stream(
    result: object_store::GetResult,
) -> futures::stream::BoxStream<'static, object_store::Result<Bytes>> {
    let range = result.range.clone();
    match result.payload {
        object_store::GetResultPayload::File(file, path) => {
            futures::stream::try_unfold((file, range.start), move |(mut file, pos)| {
                let path = path.clone();
                let end = range.end;
                async move {
                    if pos >= end {
                        return Ok(None);
                    }
                    let len = (end - pos).min(READ_CHUNK) as usize;
                    let read = tokio::task::spawn_blocking(move || {
                        use std::io::{Read, Seek, SeekFrom};
                        let mut buf = vec![0u8; len];
                        file.seek(SeekFrom::Start(pos))?;
                        file.read_exact(&mut buf)?;
                        Ok::<_, std::io::Error>((file, buf))
                    })
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r);
                    match read {
                        Ok((file, buf)) => Ok(Some((Bytes::from(buf), (file, pos + len as u64)))),
                        Err(e) => Err(object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: format!("reading {}: {e}", path.display()).into(),
                        }),
                    }
                }
            })
            .boxed()
        }
        object_store::GetResultPayload::Stream(stream) => stream,
    }
}

fn row_to_container(r: &rusqlite::Row<'_>) -> rusqlite::Result<Container> {
    Ok(Container {
        name: r.get(0)?,
        last_modified: OffsetDateTime::from_unix_timestamp(r.get(1)?)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        etag: r.get(2)?,
        metadata: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
    })
}

fn new_etag() -> String {
    format!(
        "\"0x{}\"",
        uuid::Uuid::new_v4().simple().to_string()[..15].to_uppercase()
    )
}
