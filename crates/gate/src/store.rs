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
use entraflow_core::sqlite::{Migration, migrate};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, WriteMultipart};
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use crate::error::{GateError, StorageError};
use crate::files::{LocalFiles, OpenFile};
use crate::integrity::{Digests, Expected, Sums};
use crate::lease::Lease;
use crate::names::{self, Layout};
use crate::tags::Tags;
use crate::xml::BlockRef;

/// Bytes buffered per multipart part; with two parts in flight this bounds the
/// memory one upload can take.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Settable blob properties (the `x-ms-blob-*` headers) and user metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BlobProperties {
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
pub(crate) struct Container {
    /// Name.
    pub name: String,
    /// When it was created (also its Last-Modified: metadata changes bump it).
    pub last_modified: OffsetDateTime,
    /// Opaque ETag.
    pub etag: String,
    /// `x-ms-meta-*`.
    pub metadata: Vec<(String, String)>,
    /// The container's lease, in whatever state.
    pub lease: Option<Lease>,
}

/// The outcome of the Copy Blob that made a blob, as its properties report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct CopyState {
    /// `x-ms-copy-id`.
    pub id: String,
    /// `x-ms-copy-source`: the source URL as the client gave it.
    pub source: String,
    /// Bytes copied, of the source's size (`x-ms-copy-progress`).
    pub bytes: u64,
    /// `x-ms-copy-completion-time`.
    #[serde(with = "time::serde::rfc3339")]
    pub completed: OffsetDateTime,
}

/// A block of a committed block list: its id and size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct CommittedBlock {
    /// The raw block id.
    pub id: Vec<u8>,
    /// Its size in bytes.
    pub size: u64,
}

/// A blob's backend metadata plus what `gate.db` keeps of it.
#[derive(Debug, Clone)]
pub(crate) struct BlobInfo {
    /// Name within its container.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modified: the content's, or a later property or metadata change's.
    pub last_modified: OffsetDateTime,
    /// ETag as the client sees it (quoted); every property or metadata change makes
    /// a new one, as in Azure.
    pub etag: String,
    /// Stored properties.
    pub properties: BlobProperties,
    /// Set when a Copy Blob made this blob.
    pub copy: Option<CopyState>,
    /// The blob's lease, in whatever state.
    pub lease: Option<Lease>,
    /// The blob's index tags.
    pub tags: Tags,
}

/// What `gate.db` keeps of a blob besides its bytes.
#[derive(Debug, Clone, Default)]
struct BlobRecord {
    properties: BlobProperties,
    /// Property or metadata changes since the content was written.
    revision: i64,
    /// When the last of those changes happened.
    changed: Option<OffsetDateTime>,
    copy: Option<CopyState>,
}

/// `gate.db`'s schema, one step per version (`PRAGMA user_version`): a database is
/// brought forward step by step on open, and one from a newer entraflow is refused.
const MIGRATIONS: [Migration; 5] = [
    Migration::sql(
        "CREATE TABLE IF NOT EXISTS containers (
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
    ),
    Migration::sql(
        "ALTER TABLE blob_properties ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE blob_properties ADD COLUMN changed INTEGER;
     ALTER TABLE blob_properties ADD COLUMN copy TEXT;
     CREATE TABLE committed_blocks (
         container TEXT NOT NULL,
         name TEXT NOT NULL,
         blocks TEXT NOT NULL,
         PRIMARY KEY (container, name));",
    ),
    // name '' is the container's own lease.
    Migration::sql(
        "CREATE TABLE leases (
         container TEXT NOT NULL,
         name TEXT NOT NULL,
         id TEXT NOT NULL,
         duration INTEGER,
         expires INTEGER,
         broken_at INTEGER,
         PRIMARY KEY (container, name));",
    ),
    Migration::sql(
        "CREATE TABLE blob_tags (
         container TEXT NOT NULL,
         name TEXT NOT NULL,
         tags TEXT NOT NULL,
         PRIMARY KEY (container, name));",
    ),
    // Which names::Layout the backend's blobs follow; written by adopt_layout.
    Migration::sql("CREATE TABLE backend_layout (layout TEXT NOT NULL);"),
];

/// The gate's storage: a backend plus `gate.db`.
#[derive(Clone)]
pub(crate) struct BlobStore {
    backend: Arc<dyn ObjectStore>,
    /// Set when the backend is a local directory: its files are read directly.
    files: Option<LocalFiles>,
    layout: Layout,
    db: Arc<Mutex<Connection>>,
}

/// Where a GET's bytes come from once the blob is found.
pub(crate) enum BlobSource {
    /// The local file, already open.
    File(OpenFile),
    /// The backend, asked for the range.
    Backend(Path),
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
    pub(crate) fn open(
        backend: Arc<dyn ObjectStore>,
        layout: Layout,
        db_path: &FsPath,
    ) -> Result<Self, GateError> {
        let db_err = |source| GateError::Database {
            path: db_path.to_owned(),
            source,
        };
        let mut conn = Connection::open(db_path).map_err(db_err)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(db_err)?;
        migrate(&mut conn, &MIGRATIONS).map_err(|detail| GateError::Schema {
            path: db_path.to_owned(),
            detail,
        })?;
        Ok(Self {
            backend,
            files: None,
            layout,
            db: Arc::new(Mutex::new(conn)),
        })
    }

    /// Reads blobs from `local`'s files directly; `local` must be the backend.
    pub(crate) fn reading_files_of(mut self, local: Arc<LocalFileSystem>) -> Self {
        self.files = Some(LocalFiles::new(local));
        self
    }

    /// Records the backend's layout on first use, moving the blob files of a data
    /// directory written before file-system backends had one (each file gets its
    /// suffix), and refuses a `gate.db` recorded with another layout.
    pub(crate) async fn adopt_layout(&self) -> Result<(), GateError> {
        let backend_err = |source| GateError::Backend {
            backend: self.backend.to_string(),
            source,
        };
        let db_err = |e: rusqlite::Error| GateError::Config(format!("gate.db: {e}"));
        let want = match self.layout {
            Layout::Objects => "objects",
            Layout::Files => "files",
        };
        let recorded: Option<String> = self
            .query_row("SELECT layout FROM backend_layout", [], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        match recorded {
            Some(r) if r == want => return Ok(()),
            Some(r) => {
                return Err(GateError::Config(format!(
                    "gate.db describes a backend whose blobs are laid out as '{r}', but this backend's are '{want}': the data directory belongs to another kind of backend; use that one, or a new data directory"
                )));
            }
            None => {}
        }
        let legacy: Vec<(Path, Path)> = self
            .backend
            .list(None)
            .try_filter_map(|meta| {
                let staged = meta
                    .location
                    .parts()
                    .next()
                    .is_some_and(|p| p.as_ref() == names::STAGING_ROOT);
                let moved = (!staged)
                    .then(|| self.layout.legacy_file(&meta.location))
                    .flatten()
                    .map(|to| (meta.location, to));
                futures::future::ready(Ok(moved))
            })
            .try_collect()
            .await
            .map_err(backend_err)?;
        if !legacy.is_empty() {
            tracing::info!(
                files = legacy.len(),
                "giving blob files of an older data directory their suffix"
            );
        }
        for (from, to) in legacy {
            self.backend.rename(&from, &to).await.map_err(backend_err)?;
        }
        self.db()
            .execute(
                "INSERT INTO backend_layout (layout) VALUES (?1)",
                params![want],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (statements are atomic).
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One row, through the connection's statement cache: the reads every request
    /// makes (container, properties, lease, tags) cost more to parse than to run.
    fn query_row<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let db = self.db();
        let mut statement = db.prepare_cached(sql)?;
        statement.query_row(params, row)
    }

    // ---- containers ----

    /// Creates a container; `ContainerAlreadyExists` if it does.
    pub(crate) fn create_container(
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
            lease: None,
        })
    }

    /// A container, or `ContainerNotFound`.
    pub(crate) fn container(&self, name: &str) -> Result<Container, StorageError> {
        self.query_row(
            &format!("{CONTAINER_SELECT} WHERE c.name = ?1"),
            params![name],
            row_to_container,
        )
        .optional()
        .map_err(StorageError::internal)?
        .ok_or_else(StorageError::container_not_found)
    }

    /// Replaces a container's metadata.
    pub(crate) fn set_container_metadata(
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
    pub(crate) fn list_containers(
        &self,
        prefix: &str,
        marker: &str,
        limit: usize,
    ) -> Result<(Vec<Container>, Option<String>), StorageError> {
        let db = self.db();
        let mut stmt = db
            .prepare(&format!(
                "{CONTAINER_SELECT} WHERE substr(c.name, 1, length(?1)) = ?1 AND c.name >= ?2 \
                     ORDER BY c.name LIMIT ?3"
            ))
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
    pub(crate) async fn delete_container(&self, name: &str) -> Result<(), StorageError> {
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
        for table in ["blob_properties", "committed_blocks", "leases", "blob_tags"] {
            self.db()
                .execute(
                    &format!("DELETE FROM {table} WHERE container = ?1"),
                    params![name],
                )
                .map_err(StorageError::internal)?;
        }
        Ok(())
    }

    // ---- blobs ----

    /// Backend metadata plus stored properties of a blob.
    pub(crate) async fn blob_info(
        &self,
        container: &str,
        blob: &str,
    ) -> Result<BlobInfo, StorageError> {
        let location = self.layout.blob_path(container, blob);
        let meta = match &self.files {
            Some(files) => files.head(&location)?,
            None => self.backend.head(&location).await?,
        };
        Ok(self.info_from_meta(container, blob, &meta))
    }

    /// A blob found for reading: its properties and where its bytes are. A local
    /// file is opened once, and its properties are those of the open file.
    pub(crate) async fn open_blob(
        &self,
        container: &str,
        blob: &str,
    ) -> Result<(BlobInfo, BlobSource), StorageError> {
        let location = self.layout.blob_path(container, blob);
        let (meta, source) = match &self.files {
            Some(files) => {
                let (file, meta) = files.open(&location)?;
                (meta, BlobSource::File(file))
            }
            None => {
                let meta = self.backend.head(&location).await?;
                (meta, BlobSource::Backend(location))
            }
        };
        Ok((self.info_from_meta(container, blob, &meta), source))
    }

    /// The bytes of `range` of a blob [`open_blob`](Self::open_blob) found.
    pub(crate) async fn read(
        &self,
        source: BlobSource,
        range: std::ops::Range<u64>,
    ) -> Result<BoxStream<'static, object_store::Result<Bytes>>, StorageError> {
        match source {
            BlobSource::File(file) => Ok(file.read(range)),
            BlobSource::Backend(location) => {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(range)),
                    ..GetOptions::default()
                };
                Ok(body_stream(
                    self.backend.get_opts(&location, options).await?,
                ))
            }
        }
    }

    /// Combines backend metadata with what `gate.db` keeps.
    pub(crate) fn info_from_meta(
        &self,
        container: &str,
        blob: &str,
        meta: &ObjectMeta,
    ) -> BlobInfo {
        let record = self.record(container, blob).unwrap_or_default();
        let etag = match record.revision {
            0 => client_etag(meta),
            n => format!("\"{}-{n}\"", client_etag(meta).trim_matches('"')),
        };
        let content_time = to_time(meta);
        BlobInfo {
            name: blob.to_owned(),
            size: meta.size,
            last_modified: record.changed.map_or(content_time, |c| c.max(content_time)),
            etag,
            properties: record.properties,
            copy: record.copy,
            lease: self.lease(container, blob).unwrap_or_default(),
            tags: self.tags(container, blob).unwrap_or_default(),
        }
    }

    // ---- tags ----

    /// A blob's index tags (none when it has none).
    pub(crate) fn tags(&self, container: &str, blob: &str) -> Result<Tags, StorageError> {
        let row: Option<String> = self
            .query_row(
                "SELECT tags FROM blob_tags WHERE container = ?1 AND name = ?2",
                params![container, blob],
                |r| r.get(0),
            )
            .optional()
            .map_err(StorageError::internal)?;
        Ok(row
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    /// Replaces a blob's index tags (Set Blob Tags, or `x-ms-tags` on a write);
    /// the blob's ETag and Last-Modified stay as they are, as in Azure.
    pub(crate) fn set_tags(
        &self,
        container: &str,
        blob: &str,
        tags: &Tags,
    ) -> Result<(), StorageError> {
        let db = self.db();
        if tags.is_empty() {
            db.execute(
                "DELETE FROM blob_tags WHERE container = ?1 AND name = ?2",
                params![container, blob],
            )
        } else {
            let text = serde_json::to_string(tags).map_err(StorageError::internal)?;
            db.execute(
                "INSERT OR REPLACE INTO blob_tags (container, name, tags) VALUES (?1, ?2, ?3)",
                params![container, blob, text],
            )
        }
        .map(drop)
        .map_err(StorageError::internal)
    }

    /// Every tagged blob (of one container, or all), sorted by container and name.
    pub(crate) fn tagged_blobs(
        &self,
        container: Option<&str>,
    ) -> Result<Vec<(String, String, Tags)>, StorageError> {
        let db = self.db();
        let mut stmt = db
            .prepare(
                "SELECT container, name, tags FROM blob_tags
                 WHERE ?1 IS NULL OR container = ?1 ORDER BY container, name",
            )
            .map_err(StorageError::internal)?;
        let rows = stmt
            .query_map(params![container], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?))
            })
            .map_err(StorageError::internal)?
            .collect::<Result<Vec<(String, String, String)>, _>>()
            .map_err(StorageError::internal)?;
        Ok(rows
            .into_iter()
            .map(|(c, n, t)| (c, n, serde_json::from_str(&t).unwrap_or_default()))
            .collect())
    }

    // ---- leases ----

    /// The lease on a blob, or with `blob` empty on the container itself.
    pub(crate) fn lease(&self, container: &str, blob: &str) -> Result<Option<Lease>, StorageError> {
        self.query_row(
                "SELECT id, duration, expires, broken_at FROM leases WHERE container = ?1 AND name = ?2",
                params![container, blob],
                |r| row_to_lease(r, 0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(StorageError::internal)
    }

    /// Stores (or with `None` removes) the lease on a blob or container.
    pub(crate) fn set_lease(
        &self,
        container: &str,
        blob: &str,
        lease: Option<&Lease>,
    ) -> Result<(), StorageError> {
        let ms =
            |t: Option<OffsetDateTime>| t.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
        let db = self.db();
        match lease {
            None => db.execute(
                "DELETE FROM leases WHERE container = ?1 AND name = ?2",
                params![container, blob],
            ),
            Some(l) => db.execute(
                "INSERT OR REPLACE INTO leases (container, name, id, duration, expires, broken_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    container,
                    blob,
                    l.id,
                    l.duration.map(|d| d.whole_seconds()),
                    ms(l.expires),
                    ms(l.broken_at)
                ],
            ),
        }
        .map(drop)
        .map_err(StorageError::internal)
    }

    fn record(&self, container: &str, blob: &str) -> Result<BlobRecord, StorageError> {
        Ok(self.stored_record(container, blob)?.unwrap_or_default())
    }

    /// The row `gate.db` holds for a blob, if it holds one.
    fn stored_record(
        &self,
        container: &str,
        blob: &str,
    ) -> Result<Option<BlobRecord>, StorageError> {
        let row = self
            .query_row(
                "SELECT content_type, content_encoding, content_language, content_disposition,
                        cache_control, content_md5, metadata, revision, changed, copy
                 FROM blob_properties WHERE container = ?1 AND name = ?2",
                params![container, blob],
                |r| {
                    Ok(BlobRecord {
                        properties: BlobProperties {
                            content_type: r.get(0)?,
                            content_encoding: r.get(1)?,
                            content_language: r.get(2)?,
                            content_disposition: r.get(3)?,
                            cache_control: r.get(4)?,
                            content_md5: r.get(5)?,
                            metadata: serde_json::from_str(&r.get::<_, String>(6)?)
                                .unwrap_or_default(),
                        },
                        revision: r.get(7)?,
                        changed: r
                            .get::<_, Option<i64>>(8)?
                            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()),
                        copy: r
                            .get::<_, Option<String>>(9)?
                            .and_then(|c| serde_json::from_str(&c).ok()),
                    })
                },
            )
            .optional()
            .map_err(StorageError::internal)?;
        Ok(row)
    }

    /// Stores what `gate.db` keeps of a blob whose content was just written, and
    /// its committed block list (empty for a single-shot upload or a copy).
    fn save_record(
        &self,
        container: &str,
        blob: &str,
        record: &BlobRecord,
        blocks: &[CommittedBlock],
    ) -> Result<(), StorageError> {
        let p = &record.properties;
        let meta = serde_json::to_string(&p.metadata).map_err(StorageError::internal)?;
        let copy = record
            .copy
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(StorageError::internal)?;
        let blocks = serde_json::to_string(blocks).map_err(StorageError::internal)?;
        let mut db = self.db();
        let tx = db.transaction().map_err(StorageError::internal)?;
        tx.execute(
            "INSERT OR REPLACE INTO blob_properties
             (container, name, content_type, content_encoding, content_language,
              content_disposition, cache_control, content_md5, metadata, revision, changed, copy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                container,
                blob,
                p.content_type,
                p.content_encoding,
                p.content_language,
                p.content_disposition,
                p.cache_control,
                p.content_md5,
                meta,
                record.revision,
                record.changed.map(|t| t.unix_timestamp()),
                copy
            ],
        )
        .and_then(|_| {
            tx.execute(
                "INSERT OR REPLACE INTO committed_blocks (container, name, blocks) VALUES (?1, ?2, ?3)",
                params![container, blob, blocks],
            )
        })
        .map_err(StorageError::internal)?;
        tx.commit().map_err(StorageError::internal)
    }

    /// Changes a blob's properties or metadata (the content is untouched): a new
    /// ETag and Last-Modified, as Azure gives.
    pub(crate) async fn update_properties(
        &self,
        container: &str,
        blob: &str,
        change: impl FnOnce(&mut BlobProperties),
    ) -> Result<BlobInfo, StorageError> {
        let path = self.layout.blob_path(container, blob);
        self.backend.head(&path).await?;
        let mut record = self.record(container, blob)?;
        change(&mut record.properties);
        record.revision += 1;
        record.changed = Some(OffsetDateTime::now_utc());
        let blocks = self.committed_blocks(container, blob)?;
        self.save_record(container, blob, &record, &blocks)?;
        let meta = self.backend.head(&path).await?;
        Ok(self.info_from_meta(container, blob, &meta))
    }

    /// Streams `body` into a blob and records its properties; the body's MD5 is
    /// checked against `expected` before anything is committed, and becomes the
    /// blob's `Content-MD5` unless `props` sets one (`x-ms-blob-content-md5`).
    /// Returns the new metadata, the bytes written and the body's checksums.
    pub(crate) async fn put_blob<S>(
        &self,
        container: &str,
        blob: &str,
        body: S,
        props: &BlobProperties,
        expected: &Expected,
    ) -> Result<(BlobInfo, u64, Sums), StorageError>
    where
        S: Stream<Item = Result<Bytes, StorageError>> + Unpin,
    {
        let path = self.layout.blob_path(container, blob);
        let mut digests = Digests::default();
        let (upload, written) = self
            .stage(&path, body, Some((&mut digests, expected)))
            .await?;
        let sums = digests.sums();
        let mut properties = props.clone();
        properties
            .content_md5
            .get_or_insert_with(|| sums.md5_base64());
        let record = BlobRecord {
            properties,
            ..BlobRecord::default()
        };
        self.publish((container, blob), &record, &[], finish(upload))
            .await?;
        let meta = self.backend.head(&path).await?;
        Ok((self.info_from_meta(container, blob, &meta), written, sums))
    }

    /// Stages one block (Put Block), checked against `expected`. Returns the bytes
    /// written and the block's checksums.
    pub(crate) async fn put_block<S>(
        &self,
        container: &str,
        blob: &str,
        block_id: &[u8],
        body: S,
        expected: &Expected,
    ) -> Result<(u64, Sums), StorageError>
    where
        S: Stream<Item = Result<Bytes, StorageError>> + Unpin,
    {
        let path = names::staged_block_path(container, blob, block_id);
        let mut digests = Digests::default();
        let (upload, written) = self
            .stage(&path, body, Some((&mut digests, expected)))
            .await?;
        finish(upload).await?;
        Ok((written, digests.sums()))
    }

    /// The committed block list of a blob (empty when it was written in one shot
    /// or does not exist).
    pub(crate) fn committed_blocks(
        &self,
        container: &str,
        blob: &str,
    ) -> Result<Vec<CommittedBlock>, StorageError> {
        let row: Option<String> = self
            .query_row(
                "SELECT blocks FROM committed_blocks WHERE container = ?1 AND name = ?2",
                params![container, blob],
                |r| r.get(0),
            )
            .optional()
            .map_err(StorageError::internal)?;
        Ok(row
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default())
    }

    /// The staged (uncommitted) blocks of a blob, by id.
    pub(crate) async fn staged_blocks(
        &self,
        container: &str,
        blob: &str,
    ) -> Result<Vec<CommittedBlock>, StorageError> {
        let dir = names::staging_dir(container, blob);
        let mut blocks: Vec<CommittedBlock> = self
            .backend
            .list(Some(&dir))
            .map_err(StorageError::from)
            .try_filter_map(|meta| {
                let id = meta
                    .location
                    .filename()
                    .and_then(|f| hex::decode(f).ok())
                    .map(|id| CommittedBlock {
                        id,
                        size: meta.size,
                    });
                futures::future::ready(Ok(id))
            })
            .try_collect()
            .await?;
        blocks.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(blocks)
    }

    /// Commits a block list as the blob (Put Block List): each entry is a staged
    /// block or one of the blob's committed blocks, read from its place in the
    /// current content. The previous content stays readable until the new one
    /// replaces it whole. Returns the new metadata and the checksums of the
    /// committed content (for the audit record: as in Azure, the blob's
    /// `Content-MD5` property stays what the client set).
    pub(crate) async fn commit_blocks(
        &self,
        container: &str,
        blob: &str,
        refs: &[BlockRef],
        props: &BlobProperties,
    ) -> Result<(BlobInfo, Sums), StorageError> {
        let dest = self.layout.blob_path(container, blob);
        let committed = self.committed_blocks(container, blob)?;
        let mut offsets = std::collections::HashMap::new();
        let mut offset = 0u64;
        for block in &committed {
            offsets.insert(block.id.as_slice(), (offset, block.size));
            offset += block.size;
        }
        enum Source {
            Staged(Path),
            Committed(std::ops::Range<u64>),
        }
        let mut sources = Vec::with_capacity(refs.len());
        let mut blocks = Vec::with_capacity(refs.len());
        for r in refs {
            let staged = names::staged_block_path(container, blob, r.id());
            let staged_size = match r {
                BlockRef::Committed(_) => None,
                _ => match self.backend.head(&staged).await {
                    Ok(meta) => Some(meta.size),
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => return Err(e.into()),
                },
            };
            let (source, size) = match (r, staged_size, offsets.get(r.id())) {
                (BlockRef::Uncommitted(_) | BlockRef::Latest(_), Some(size), _) => {
                    (Source::Staged(staged), size)
                }
                (BlockRef::Committed(_) | BlockRef::Latest(_), None, Some(&(start, size))) => {
                    (Source::Committed(start..start + size), size)
                }
                _ => return Err(StorageError::invalid_block_list()),
            };
            sources.push(source);
            blocks.push(CommittedBlock {
                id: r.id().to_vec(),
                size,
            });
        }
        let backend = self.backend.clone();
        let current = dest.clone();
        let body = futures::stream::iter(sources)
            .then(move |source| {
                let backend = backend.clone();
                let current = current.clone();
                async move {
                    match source {
                        Source::Staged(path) => backend.get(&path).await.map(body_stream),
                        Source::Committed(range) => {
                            let options = GetOptions {
                                range: Some(GetRange::Bounded(range)),
                                ..GetOptions::default()
                            };
                            backend.get_opts(&current, options).await.map(body_stream)
                        }
                    }
                }
            })
            .try_flatten()
            .map_err(StorageError::from)
            .boxed();
        let mut digests = Digests::default();
        let (upload, _) = self
            .stage(&dest, body, Some((&mut digests, &Expected::default())))
            .await?;
        let record = BlobRecord {
            properties: props.clone(),
            ..BlobRecord::default()
        };
        self.publish((container, blob), &record, &blocks, finish(upload))
            .await?;
        self.discard_staged(container, blob).await;
        let meta = self.backend.head(&dest).await?;
        Ok((self.info_from_meta(container, blob, &meta), digests.sums()))
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

    /// Deletes a blob.
    pub(crate) async fn delete_blob(
        &self,
        container: &str,
        blob: &str,
    ) -> Result<(), StorageError> {
        let path = self.layout.blob_path(container, blob);
        // Local deletes of a missing file succeed silently; Azure says BlobNotFound.
        self.backend.head(&path).await?;
        self.backend.delete(&path).await?;
        self.forget(container, blob)?;
        self.discard_staged(container, blob).await;
        Ok(())
    }

    /// Drops what `gate.db` keeps of a deleted blob.
    fn forget(&self, container: &str, blob: &str) -> Result<(), StorageError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(StorageError::internal)?;
        for table in ["blob_properties", "committed_blocks", "leases", "blob_tags"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE container = ?1 AND name = ?2"),
                params![container, blob],
            )
            .map_err(StorageError::internal)?;
        }
        tx.commit().map_err(StorageError::internal)
    }

    /// Copies a blob within the gate (Copy Blob, synchronous: it completes before
    /// the answer); properties go with it unless `metadata` replaces the user
    /// metadata, and the destination records the copy (`source_url` as the client
    /// named it).
    pub(crate) async fn copy_blob(
        &self,
        from: (&str, &str),
        to: (&str, &str),
        source_url: &str,
        metadata: Option<Vec<(String, String)>>,
    ) -> Result<BlobInfo, StorageError> {
        let src = self.layout.blob_path(from.0, from.1);
        let dest = self.layout.blob_path(to.0, to.1);
        let source = self.backend.head(&src).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                StorageError::cannot_verify_copy_source("The specified blob does not exist.")
            }
            other => other.into(),
        })?;
        let mut properties = self.record(from.0, from.1)?.properties;
        if let Some(metadata) = metadata {
            properties.metadata = metadata;
        }
        let record = BlobRecord {
            properties,
            copy: Some(CopyState {
                id: uuid::Uuid::new_v4().to_string(),
                source: source_url.to_owned(),
                bytes: source.size,
                completed: OffsetDateTime::now_utc(),
            }),
            ..BlobRecord::default()
        };
        let copied = async { Ok(self.backend.copy(&src, &dest).await?) };
        self.publish(to, &record, &[], copied).await?;
        let meta = self.backend.head(&dest).await?;
        Ok(self.info_from_meta(to.0, to.1, &meta))
    }

    /// Every blob of a container whose name starts with `prefix`, sorted by name.
    /// Listing starts at the deepest directory the prefix names, so a prefix like
    /// `train/shard-0` only walks `train/`.
    pub(crate) async fn list_blobs(
        &self,
        container: &str,
        prefix: &str,
    ) -> Result<Vec<(String, ObjectMeta)>, StorageError> {
        let dir = match prefix.rfind('/') {
            Some(i) if names::validate_blob(&prefix[..i]).is_ok() => {
                names::dir_path(container, &prefix[..i])
            }
            _ => names::container_path(container),
        };
        let mut blobs: Vec<(String, ObjectMeta)> = self
            .backend
            .list(Some(&dir))
            .map_err(StorageError::from)
            .try_filter_map(|meta| {
                let name = self
                    .layout
                    .blob_name_of(container, &meta.location)
                    .filter(|n| n.starts_with(prefix));
                futures::future::ready(Ok(name.map(|n| (n, meta))))
            })
            .try_collect()
            .await?;
        blobs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(blobs)
    }

    /// Streams `body` to `path` through a multipart upload: the object appears
    /// only when the upload completes, and is aborted (nothing appears) on error or,
    /// with `check`, when the body's checksums differ from the client's.
    async fn stage<S>(
        &self,
        path: &Path,
        mut body: S,
        mut check: Option<(&mut Digests, &Expected)>,
    ) -> Result<(WriteMultipart, u64), StorageError>
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
            if let Some((digests, _)) = &mut check {
                digests.update(&chunk);
            }
            writer.put(chunk);
        }
        if let Some((digests, expected)) = &check
            && let Err(e) = digests.sums().check(expected)
        {
            let _ = writer.abort().await;
            return Err(e);
        }
        Ok((writer, written))
    }

    /// Makes new content visible together with its record. The record is committed
    /// first, so a `gate.db` that cannot take it fails the request before anything
    /// changed; then `place` puts the bytes in (a finished upload, a copy), and if
    /// that fails the blob's earlier record is put back. Either way the bytes and
    /// the record agree.
    async fn publish<T>(
        &self,
        (container, blob): (&str, &str),
        record: &BlobRecord,
        blocks: &[CommittedBlock],
        place: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let prior = self.saved_record(container, blob)?;
        self.save_record(container, blob, record, blocks)?;
        let placed = place.await;
        if placed.is_err() {
            let restored = match &prior {
                Some((record, blocks)) => self.save_record(container, blob, record, blocks),
                None => self.forget(container, blob),
            };
            if let Err(e) = restored {
                tracing::error!(container, blob, error = %e.message, "could not put back the record of a blob whose new content failed");
            }
        }
        placed
    }

    /// The record and committed block list `gate.db` holds for a blob, if any.
    fn saved_record(
        &self,
        container: &str,
        blob: &str,
    ) -> Result<Option<(BlobRecord, Vec<CommittedBlock>)>, StorageError> {
        self.stored_record(container, blob)?
            .map(|record| Ok((record, self.committed_blocks(container, blob)?)))
            .transpose()
    }
}

/// Completes a staged upload: the new content becomes visible at once.
async fn finish(upload: WriteMultipart) -> Result<(), StorageError> {
    upload.finish().await?;
    Ok(())
}

/// The body of a backend Get: a local file is read as [`OpenFile::read`] reads
/// (memory per stream: one chunk); other backends' streams pass through.
pub(crate) fn body_stream(
    result: object_store::GetResult,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    match result.payload {
        object_store::GetResultPayload::File(file, path) => {
            OpenFile::from_parts(file, path).read(result.range)
        }
        object_store::GetResultPayload::Stream(stream) => stream,
    }
}

/// A container with its own lease (stored under the blob name '').
const CONTAINER_SELECT: &str = "SELECT c.name, c.modified, c.etag, c.metadata, \
     l.id, l.duration, l.expires, l.broken_at FROM containers c \
     LEFT JOIN leases l ON l.container = c.name AND l.name = ''";

fn row_to_container(r: &rusqlite::Row<'_>) -> rusqlite::Result<Container> {
    Ok(Container {
        name: r.get(0)?,
        last_modified: OffsetDateTime::from_unix_timestamp(r.get(1)?)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        etag: r.get(2)?,
        metadata: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
        lease: row_to_lease(r, 4)?,
    })
}

/// The lease columns `id, duration, expires, broken_at` from `first` on.
fn row_to_lease(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Option<Lease>> {
    let at = |ms: Option<i64>| {
        ms.and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
    };
    let Some(id) = r.get::<_, Option<String>>(first)? else {
        return Ok(None);
    };
    Ok(Some(Lease {
        id,
        duration: r
            .get::<_, Option<i64>>(first + 1)?
            .map(time::Duration::seconds),
        expires: at(r.get(first + 2)?),
        broken_at: at(r.get(first + 3)?),
    }))
}

fn new_etag() -> String {
    format!(
        "\"0x{}\"",
        uuid::Uuid::new_v4().simple().to_string()[..15].to_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &FsPath) -> Arc<dyn ObjectStore> {
        std::fs::create_dir_all(dir).unwrap();
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap())
    }

    async fn put(store: &BlobStore, name: &str, body: &'static [u8]) {
        let body = futures::stream::iter([Ok(Bytes::from_static(body))]);
        store
            .put_blob(
                "data",
                name,
                body,
                &BlobProperties::default(),
                &Expected::default(),
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_blob_and_a_blob_below_its_name_coexist_on_a_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(
            local(&dir.path().join("blobs")),
            Layout::Files,
            &dir.path().join("gate.db"),
        )
        .unwrap();
        store.adopt_layout().await.unwrap();
        store.create_container("data", &[]).unwrap();
        put(&store, "a", b"parent").await;
        put(&store, "a/b", b"child").await;
        put(&store, "a/b/c", b"grandchild").await;
        let names: Vec<String> = store
            .list_blobs("data", "")
            .await
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a", "a/b", "a/b/c"]);
        assert_eq!(store.blob_info("data", "a").await.unwrap().size, 6);
        assert_eq!(store.blob_info("data", "a/b").await.unwrap().size, 5);
        store.delete_blob("data", "a").await.unwrap();
        assert_eq!(store.blob_info("data", "a/b").await.unwrap().size, 5);
    }

    #[tokio::test]
    async fn an_older_data_directory_is_moved_to_the_file_layout_once() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        // As written before the layout had suffixes: the blob is the bare file.
        std::fs::create_dir_all(blobs.join("data/train")).unwrap();
        std::fs::write(blobs.join("data/train/shard-0"), b"old").unwrap();
        std::fs::create_dir_all(blobs.join("$staging/data/x")).unwrap();
        std::fs::write(blobs.join("$staging/data/x/00"), b"staged").unwrap();
        let db = dir.path().join("gate.db");
        let store = BlobStore::open(local(&blobs), Layout::Files, &db).unwrap();
        store.adopt_layout().await.unwrap();
        assert_eq!(
            store.blob_info("data", "train/shard-0").await.unwrap().size,
            3
        );
        assert!(
            blobs.join("$staging/data/x/00").exists(),
            "staged blocks stay"
        );
        // Once recorded, nothing moves again, and another layout is refused.
        store.adopt_layout().await.unwrap();
        drop(store);
        let other = BlobStore::open(local(&blobs), Layout::Objects, &db).unwrap();
        let err = other.adopt_layout().await.unwrap_err();
        assert!(err.to_string().contains("another kind of backend"), "{err}");
    }
}
