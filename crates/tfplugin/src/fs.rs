//! The filesystem TensorFlow sees, as safe blocking Rust: what each callback of the
//! ops tables does, in terms of Blob REST calls. The FFI layer only converts.
//!
//! **Directories** are virtual, as on any flat-namespace account: a directory exists
//! when a blob name has it as a prefix. `create_dir` writes no marker blob — the
//! gate, like Azure tooling on a file-backed store, cannot hold both a blob `d` and
//! blobs under `d/`, and refuses names ending in `/` — so an empty directory made by
//! `create_dir` is remembered by this process until something is written into it.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use bytes::Bytes;
use entraflow_credential::{DefaultCredential, TokenCredential};
use futures::{StreamExt, TryStreamExt};
use tokio::task::JoinHandle;

use crate::blob::{BlobClient, Properties};
use crate::config::{Config, WRITE_BLOCK};
use crate::glob;
use crate::path::BlobPath;
use crate::readahead::{Plan, Planner};
use crate::runtime;
use crate::status::FsError;

/// Requests in flight for bulk operations (delete/rename of a directory).
const BULK_CONCURRENCY: usize = 8;
/// Smallest first read-ahead GET of a scan (it grows to `ENTRAFLOW_READ_AHEAD`).
const READ_AHEAD_FIRST_MIN: u64 = 256 << 10;
/// Put Block calls in flight per writer.
const WRITE_CONCURRENCY: usize = 4;

/// What `stat` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Bytes (0 for directories).
    pub length: u64,
    /// Last modification, nanoseconds since the epoch (0 for directories).
    pub mtime_nsec: i64,
    /// Whether it is a (virtual) directory.
    pub is_directory: bool,
}

enum Kind {
    File(Properties),
    Dir,
    Missing,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `az://` filesystem. One per registration; thread-safe.
pub struct AzFilesystem {
    client: Mutex<Option<(u32, BlobClient)>>,
    factory: Box<dyn Fn() -> Result<BlobClient, FsError> + Send + Sync>,
    created_dirs: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for AzFilesystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzFilesystem").finish_non_exhaustive()
    }
}

impl AzFilesystem {
    /// A filesystem configured from the environment on first use: the endpoint, read
    /// ahead and run id from `ENTRAFLOW_*`, tokens from [`DefaultCredential`], TLS
    /// trust from the system roots plus `SSL_CERT_FILE`.
    pub fn from_env() -> AzFilesystem {
        AzFilesystem::with_factory(|| {
            entraflow_tls::install_crypto_provider();
            let config = Config::from_env()?;
            let credential: Arc<dyn TokenCredential> = Arc::new(DefaultCredential::from_env(
                &entraflow_core::fsutil::default_data_dir(),
            ));
            let http = http_client()?;
            Ok(BlobClient::new(config, credential, http))
        })
    }

    /// Like [`AzFilesystem::from_env`], but tokens come from `credential` (one the
    /// caller built, e.g. a Python `entraflow.identity` credential). Credentials are
    /// fork-safe, so the client is still rebuilt per process around the same one.
    pub fn with_credential(credential: Arc<dyn TokenCredential>) -> AzFilesystem {
        AzFilesystem::with_factory(move || {
            let config = Config::from_env()?;
            Ok(BlobClient::new(config, credential.clone(), http_client()?))
        })
    }

    /// A filesystem over a given client (tests, embedding).
    pub fn new(client: BlobClient) -> AzFilesystem {
        AzFilesystem::with_factory(move || Ok(client.clone()))
    }

    fn with_factory(
        factory: impl Fn() -> Result<BlobClient, FsError> + Send + Sync + 'static,
    ) -> AzFilesystem {
        AzFilesystem {
            client: Mutex::new(None),
            factory: Box::new(factory),
            created_dirs: Mutex::new(HashSet::new()),
        }
    }

    /// The client for this process (rebuilt after a fork: the parent's connections
    /// belong to a runtime that does not exist in the child).
    fn client(&self) -> Result<BlobClient, FsError> {
        let pid = std::process::id();
        let mut slot = lock(&self.client);
        if let Some((owner, client)) = slot.as_ref()
            && *owner == pid
        {
            return Ok(client.clone());
        }
        if let Some(inherited) = slot.take() {
            std::mem::forget(inherited);
        }
        let client = (self.factory)()?;
        *slot = Some((pid, client.clone()));
        Ok(client)
    }

    async fn kind(&self, client: &BlobClient, p: &BlobPath) -> Result<Kind, FsError> {
        if p.container.is_empty() {
            return Ok(Kind::Dir);
        }
        if p.blob.is_empty() {
            return Ok(if client.container_exists(p).await? {
                Kind::Dir
            } else {
                Kind::Missing
            });
        }
        match client.properties(p).await {
            Ok(props) => return Ok(Kind::File(props)),
            Err(FsError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let listing = client.list(p, &p.dir_prefix(), true, Some(1)).await?;
        if !listing.blobs.is_empty()
            || !listing.prefixes.is_empty()
            || lock(&self.created_dirs).contains(&p.to_string())
        {
            Ok(Kind::Dir)
        } else {
            Ok(Kind::Missing)
        }
    }

    /// `stat`: a blob's size and time, or a directory.
    pub fn stat(&self, uri: &str) -> Result<FileStat, FsError> {
        let p = BlobPath::parse(uri)?;
        let client = self.client()?;
        match runtime::block_on(self.kind(&client, &p))?? {
            Kind::File(props) => Ok(FileStat {
                length: props.size,
                mtime_nsec: props.mtime_nsec,
                is_directory: false,
            }),
            Kind::Dir => Ok(FileStat {
                length: 0,
                mtime_nsec: 0,
                is_directory: true,
            }),
            Kind::Missing => Err(FsError::NotFound(p.to_string())),
        }
    }

    /// `is_directory`: `Ok` for a directory, `FailedPrecondition` for a file.
    pub fn is_directory(&self, uri: &str) -> Result<(), FsError> {
        if self.stat(uri)?.is_directory {
            Ok(())
        } else {
            Err(FsError::FailedPrecondition(format!(
                "{uri} is a file, not a directory"
            )))
        }
    }

    /// `get_children`: names directly inside a directory, relative to it.
    pub fn children(&self, uri: &str) -> Result<Vec<String>, FsError> {
        Ok(self.list_dir(uri)?.into_iter().map(|(n, _)| n).collect())
    }

    /// What is directly inside a directory, relative to it and sorted, with each
    /// entry's stat from the same List Blobs query (no request per entry; fsspec's
    /// `ls(detail=True)` needs sizes).
    pub fn list_dir(&self, uri: &str) -> Result<Vec<(String, FileStat)>, FsError> {
        let p = BlobPath::parse(uri)?;
        if p.container.is_empty() {
            return Err(FsError::Unimplemented(format!(
                "listing the containers of account '{}' is not supported; list {}/<container> instead",
                p.account, p
            )));
        }
        let client = self.client()?;
        runtime::block_on(async {
            match self.kind(&client, &p).await? {
                Kind::Dir => {}
                Kind::File(_) => {
                    return Err(FsError::FailedPrecondition(format!(
                        "{p} is a file, not a directory"
                    )));
                }
                Kind::Missing => return Err(FsError::NotFound(p.to_string())),
            }
            let prefix = p.dir_prefix();
            let listing = client.list(&p, &prefix, true, None).await?;
            let dir = FileStat {
                length: 0,
                mtime_nsec: 0,
                is_directory: true,
            };
            let files = listing.blobs.iter().map(|(n, props)| {
                let stat = FileStat {
                    length: props.size,
                    mtime_nsec: props.mtime_nsec,
                    is_directory: false,
                };
                (n.as_str(), stat)
            });
            let dirs = listing
                .prefixes
                .iter()
                .map(|n| (n.trim_end_matches('/'), dir));
            let mut entries: BTreeMap<String, FileStat> = files
                .chain(dirs)
                .filter_map(|(n, stat)| Some((n.strip_prefix(&prefix)?, stat)))
                .filter(|(n, _)| !n.is_empty())
                .map(|(n, stat)| (n.to_owned(), stat))
                .collect();
            let parent = format!("{p}/");
            for created in lock(&self.created_dirs).iter() {
                if let Some(rest) = created.strip_prefix(&parent)
                    && !rest.contains('/')
                {
                    entries.entry(rest.to_owned()).or_insert(dir);
                }
            }
            Ok(entries.into_iter().collect())
        })?
    }

    /// `get_matching_paths`: one List Blobs query for the glob's literal prefix, then
    /// TensorFlow's matching rules over the blob names and their directories.
    pub fn matching_paths(&self, pattern: &str) -> Result<Vec<String>, FsError> {
        let p = BlobPath::parse(pattern)?;
        if glob::is_glob(&p.account) || glob::is_glob(&p.container) {
            return Err(FsError::Unimplemented(format!(
                "{pattern}: wildcards in the account or container name are not supported; put them in the blob path"
            )));
        }
        if !glob::is_glob(&p.blob) {
            return Ok(match self.stat(pattern) {
                Ok(_) => vec![p.to_string()],
                Err(FsError::NotFound(_)) => Vec::new(),
                Err(e) => return Err(e),
            });
        }
        let client = self.client()?;
        let listing =
            runtime::block_on(client.list(&p, glob::literal_prefix(&p.blob), false, None))??;
        let mut candidates = BTreeSet::new();
        for (name, _) in &listing.blobs {
            candidates.insert(name.as_str());
            let mut dir = name.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                candidates.insert(parent);
                dir = parent;
            }
        }
        Ok(candidates
            .into_iter()
            .filter(|c| glob::matches(&p.blob, c))
            .map(|c| p.with_blob(c).to_string())
            .collect())
    }

    /// `create_dir` / `recursively_create_dir`.
    pub fn create_dir(&self, uri: &str, recursive: bool) -> Result<(), FsError> {
        let p = BlobPath::parse(uri)?;
        let client = self.client()?;
        runtime::block_on(async {
            if p.container.is_empty() {
                return if recursive {
                    Ok(())
                } else {
                    Err(FsError::AlreadyExists(p.to_string()))
                };
            }
            let container = p.with_blob("");
            if !client.container_exists(&container).await? {
                return Err(FsError::NotFound(format!(
                    "container '{}' does not exist in account '{}'; create the container first (az storage container create --name {})",
                    p.container, p.account, p.container
                )));
            }
            match self.kind(&client, &p).await? {
                Kind::Dir if recursive => Ok(()),
                Kind::Dir => Err(FsError::AlreadyExists(p.to_string())),
                Kind::File(_) => Err(FsError::FailedPrecondition(format!(
                    "{p} is a file; cannot make it a directory"
                ))),
                Kind::Missing => {
                    let mut created = lock(&self.created_dirs);
                    // The parents exist too (virtually), as `mkdir -p` would make them.
                    let mut dir = p.blob.as_str();
                    loop {
                        created.insert(p.with_blob(dir).to_string());
                        match dir.rsplit_once('/') {
                            Some((parent, _)) => dir = parent,
                            None => break,
                        }
                    }
                    Ok(())
                }
            }
        })?
    }

    /// `delete_file`.
    pub fn delete_file(&self, uri: &str) -> Result<(), FsError> {
        let p = BlobPath::parse(uri)?;
        p.require_blob()?;
        let client = self.client()?;
        runtime::block_on(client.delete(&p))?
    }

    /// `delete_dir`: only an empty directory.
    pub fn delete_dir(&self, uri: &str) -> Result<(), FsError> {
        let p = BlobPath::parse(uri)?;
        let client = self.client()?;
        runtime::block_on(async {
            match self.kind(&client, &p).await? {
                Kind::Missing => return Err(FsError::NotFound(p.to_string())),
                Kind::File(_) => {
                    return Err(FsError::FailedPrecondition(format!(
                        "{p} is a file, not a directory"
                    )));
                }
                Kind::Dir => {}
            }
            if !p.container.is_empty() {
                let listing = client.list(&p, &p.dir_prefix(), true, Some(1)).await?;
                if !listing.blobs.is_empty() || !listing.prefixes.is_empty() {
                    return Err(FsError::FailedPrecondition(format!("{p} is not empty")));
                }
            }
            lock(&self.created_dirs).remove(&p.to_string());
            Ok(())
        })?
    }

    /// `delete_recursively`: every blob under the directory. Returns how many files
    /// could not be deleted (directories are virtual: they vanish with their files).
    pub fn delete_recursively(&self, uri: &str) -> Result<u64, FsError> {
        let p = BlobPath::parse(uri)?;
        if p.container.is_empty() {
            return Err(FsError::Unimplemented(format!(
                "refusing to delete every container of account '{}'",
                p.account
            )));
        }
        let client = self.client()?;
        runtime::block_on(async {
            let names: Vec<String> = match self.kind(&client, &p).await? {
                Kind::Missing => return Err(FsError::NotFound(p.to_string())),
                Kind::File(_) => vec![p.blob.clone()],
                Kind::Dir => client
                    .list(&p, &p.dir_prefix(), false, None)
                    .await?
                    .blobs
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect(),
            };
            let failures = futures::stream::iter(names)
                .map(|n| {
                    let client = client.clone();
                    let target = p.with_blob(&n);
                    async move { client.delete(&target).await }
                })
                .buffer_unordered(BULK_CONCURRENCY)
                .filter(|r| {
                    std::future::ready(matches!(r, Err(e) if !matches!(e, FsError::NotFound(_))))
                })
                .count()
                .await;
            let below = format!("{p}/");
            lock(&self.created_dirs).retain(|d| *d != p.to_string() && !d.starts_with(&below));
            Ok(failures as u64)
        })?
    }

    /// `copy_file`: Copy Blob.
    pub fn copy_file(&self, src: &str, dst: &str) -> Result<(), FsError> {
        let (s, d) = (BlobPath::parse(src)?, BlobPath::parse(dst)?);
        s.require_blob()?;
        d.require_blob()?;
        same_account(&s, &d)?;
        let client = self.client()?;
        runtime::block_on(client.copy(&s, &d))?
    }

    /// `rename_file`: Copy Blob then Delete Blob, for a file or every file of a
    /// directory. Not atomic (Blob storage has no rename on flat namespaces).
    pub fn rename_file(&self, src: &str, dst: &str) -> Result<(), FsError> {
        let (s, d) = (BlobPath::parse(src)?, BlobPath::parse(dst)?);
        s.require_blob()?;
        d.require_blob()?;
        same_account(&s, &d)?;
        let client = self.client()?;
        runtime::block_on(async {
            let moves: Vec<(BlobPath, BlobPath)> = match self.kind(&client, &s).await? {
                Kind::Missing => return Err(FsError::NotFound(s.to_string())),
                Kind::File(_) => vec![(s.clone(), d.clone())],
                Kind::Dir => {
                    let prefix = s.dir_prefix();
                    client
                        .list(&s, &prefix, false, None)
                        .await?
                        .blobs
                        .into_iter()
                        .map(|(n, _)| {
                            let rest = n.strip_prefix(&prefix).unwrap_or(&n).to_owned();
                            (s.with_blob(&n), d.with_blob(&format!("{}/{rest}", d.blob)))
                        })
                        .collect()
                }
            };
            futures::stream::iter(moves)
                .map(|(from, to)| {
                    let client = client.clone();
                    async move {
                        client.copy(&from, &to).await?;
                        client.delete(&from).await
                    }
                })
                .buffer_unordered(BULK_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
            Ok(())
        })?
    }

    /// `new_random_access_file`: checks the blob exists and learns its size (one
    /// request per open, none per read).
    pub fn open_read(&self, uri: &str) -> Result<Reader, FsError> {
        let p = BlobPath::parse(uri)?;
        p.require_blob()?;
        let client = self.client()?;
        let props = runtime::block_on(client.properties(&p))??;
        let config = client.config();
        let first = (config.read_ahead / 8).max(READ_AHEAD_FIRST_MIN);
        let planner = Planner::with_ramp(
            props.size,
            first,
            config.read_ahead,
            config.read_concurrency,
        );
        Ok(Reader {
            client,
            path: p,
            state: Mutex::new(ReadState {
                planner,
                chunks: BTreeMap::new(),
            }),
        })
    }

    /// `new_read_only_memory_region_from_file`: the whole blob.
    pub fn read_all(&self, uri: &str) -> Result<Bytes, FsError> {
        let p = BlobPath::parse(uri)?;
        p.require_blob()?;
        let client = self.client()?;
        runtime::block_on(client.get_all(&p))?
    }

    /// The bytes in `range` in one ranged GET, without opening a file or reading
    /// ahead (fsspec's `cat_file(path, start, end)`).
    pub fn read_range(&self, uri: &str, range: std::ops::Range<u64>) -> Result<Bytes, FsError> {
        let p = BlobPath::parse(uri)?;
        p.require_blob()?;
        let client = self.client()?;
        runtime::block_on(client.get_range(&p, range))?
    }

    /// `new_writable_file` (`append == false`) / `new_appendable_file`. Appending
    /// starts from the blob's current content, re-staged as the first blocks.
    pub fn open_write(&self, uri: &str, append: bool) -> Result<Writer, FsError> {
        let p = BlobPath::parse(uri)?;
        p.require_blob()?;
        let client = self.client()?;
        let existing = if append {
            match runtime::block_on(client.get_all(&p))? {
                Ok(b) => b.to_vec(),
                Err(FsError::NotFound(_)) => Vec::new(),
                Err(e) => return Err(e),
            }
        } else {
            Vec::new()
        };
        let writer = Writer {
            client,
            path: p,
            state: Mutex::new(WriteState {
                position: 0,
                buf: Vec::new(),
                blocks: Vec::new(),
                in_flight: VecDeque::new(),
                block_prefix: uuid::Uuid::new_v4().simple().to_string(),
                closed: false,
            }),
        };
        writer.append(&existing)?;
        Ok(writer)
    }
}

/// The shared HTTP client: trust as `entraflow_tls::https_client` (system roots and
/// `SSL_CERT_FILE`), but HTTP/1.1 with a pool instead of HTTP/2. Read-ahead keeps
/// several multi-MiB GETs in flight; over one HTTP/2 connection they would share
/// one TLS stream, i.e. one core on each side, while separate connections spread
/// them over the server's workers (measured with `benches/tf_pipeline.py`).
fn http_client() -> Result<reqwest::Client, FsError> {
    entraflow_tls::install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("entraflow-tfplugin/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .http1_only()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| FsError::Misconfigured(format!("cannot build the HTTPS client: {e}")))
}

fn same_account(s: &BlobPath, d: &BlobPath) -> Result<(), FsError> {
    if s.account != d.account {
        return Err(FsError::Unimplemented(format!(
            "{s} → {d}: copying between storage accounts is not supported"
        )));
    }
    Ok(())
}

enum Slot {
    Pending(JoinHandle<Result<Bytes, FsError>>),
    Ready(Bytes),
}

struct ReadState {
    planner: Planner,
    chunks: BTreeMap<u64, Slot>,
}

impl Drop for ReadState {
    /// A file closed before its end stops its read-ahead instead of downloading on.
    fn drop(&mut self) {
        for slot in self.chunks.values() {
            if let Slot::Pending(task) = slot {
                task.abort();
            }
        }
    }
}

/// An open blob for reading, with read-ahead (see [`crate::readahead`]).
pub struct Reader {
    client: BlobClient,
    path: BlobPath,
    state: Mutex<ReadState>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("path", &self.path.to_string())
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// The blob's size when it was opened.
    pub fn size(&self) -> u64 {
        lock(&self.state).planner.size()
    }

    /// Reads up to `buf.len()` bytes at `offset`. Fewer bytes means the end of the
    /// blob was reached (TensorFlow's `OUT_OF_RANGE`).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let mut state = lock(&self.state);
        let plan = state.planner.plan(offset, buf.len() as u64);
        match plan {
            Plan::Nothing => Ok(0),
            Plan::Exact(range) => {
                let bytes = runtime::block_on(self.client.get_range(&self.path, range))??;
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                Ok(n)
            }
            Plan::Chunks { needed, prefetch } => {
                let keep = needed.start..prefetch.end.max(needed.end);
                state.chunks.retain(|index, slot| {
                    let kept = keep.contains(index);
                    if let (false, Slot::Pending(task)) = (kept, &slot) {
                        task.abort();
                    }
                    kept
                });
                let rt = runtime::handle()?;
                for index in keep.clone() {
                    if !state.chunks.contains_key(&index) {
                        let range = state.planner.chunk_range(index);
                        let (client, path) = (self.client.clone(), self.path.clone());
                        let task = rt.spawn(async move { client.get_range(&path, range).await });
                        state.chunks.insert(index, Slot::Pending(task));
                    }
                }
                let mut copied = 0;
                for index in needed {
                    let chunk_start = state.planner.chunk_range(index).start;
                    let data = match state.chunks.remove(&index) {
                        Some(Slot::Ready(b)) => b,
                        Some(Slot::Pending(task)) => match rt.block_on(task) {
                            Ok(Ok(b)) => b,
                            Ok(Err(e)) => return Err(e),
                            Err(join) => {
                                return Err(FsError::Unavailable {
                                    url: self.path.to_string(),
                                    attempts: 1,
                                    reason: format!("read-ahead task failed: {join}"),
                                });
                            }
                        },
                        None => unreachable!("every needed chunk was just scheduled"),
                    };
                    let at = offset + copied as u64;
                    if at < chunk_start {
                        // The previous chunk came back short: the blob shrank since open.
                        break;
                    }
                    let from = (at - chunk_start) as usize;
                    if from < data.len() {
                        let n = (data.len() - from).min(buf.len() - copied);
                        buf[copied..copied + n].copy_from_slice(&data[from..from + n]);
                        copied += n;
                    }
                    state.chunks.insert(index, Slot::Ready(data));
                    if copied == buf.len() {
                        break;
                    }
                }
                Ok(copied)
            }
        }
    }
}

struct WriteState {
    position: u64,
    buf: Vec<u8>,
    blocks: Vec<String>,
    in_flight: VecDeque<JoinHandle<Result<(), FsError>>>,
    block_prefix: String,
    closed: bool,
}

/// An open blob for writing: data is staged as blocks while it is written and
/// becomes visible, all at once, when the file is closed (Put Block List). A writer
/// dropped without `close` leaves the previous blob (or none) in place.
pub struct Writer {
    client: BlobClient,
    path: BlobPath,
    state: Mutex<WriteState>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.path.to_string())
            .finish_non_exhaustive()
    }
}

impl Writer {
    fn open_state(&self) -> Result<MutexGuard<'_, WriteState>, FsError> {
        let state = lock(&self.state);
        if state.closed {
            return Err(FsError::FailedPrecondition(format!(
                "{} is already closed",
                self.path
            )));
        }
        Ok(state)
    }

    /// Appends `data`, staging a block whenever a full one is buffered.
    pub fn append(&self, data: &[u8]) -> Result<(), FsError> {
        let mut state = self.open_state()?;
        state.buf.extend_from_slice(data);
        state.position += data.len() as u64;
        while state.buf.len() >= WRITE_BLOCK {
            let block: Vec<u8> = state.buf.drain(..WRITE_BLOCK).collect();
            self.stage(&mut state, Bytes::from(block))?;
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn tell(&self) -> Result<u64, FsError> {
        Ok(self.open_state()?.position)
    }

    fn stage(&self, state: &mut WriteState, block: Bytes) -> Result<(), FsError> {
        let id = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}-{:08}",
            state.block_prefix,
            state.blocks.len()
        ));
        state.blocks.push(id.clone());
        let (client, path) = (self.client.clone(), self.path.clone());
        let task =
            runtime::handle()?.spawn(async move { client.put_block(&path, &id, block).await });
        state.in_flight.push_back(task);
        while state.in_flight.len() > WRITE_CONCURRENCY {
            let oldest = state.in_flight.pop_front().expect("non-empty");
            join_block(&self.path, oldest)?;
        }
        Ok(())
    }

    fn stage_rest_and_wait(&self, state: &mut WriteState) -> Result<(), FsError> {
        if !state.buf.is_empty() {
            let rest = std::mem::take(&mut state.buf);
            self.stage(state, Bytes::from(rest))?;
        }
        while let Some(task) = state.in_flight.pop_front() {
            join_block(&self.path, task)?;
        }
        Ok(())
    }

    /// `flush` and `sync`: everything written so far is staged on the service (durable,
    /// not yet visible). Visibility comes with `close`, so a reader never sees half a
    /// checkpoint.
    pub fn sync(&self) -> Result<(), FsError> {
        let mut state = self.open_state()?;
        self.stage_rest_and_wait(&mut state)
    }

    /// Commits: one Put Blob for a small file, else Put Block List of every block.
    pub fn close(&self) -> Result<(), FsError> {
        let mut state = self.open_state()?;
        state.closed = true;
        if state.blocks.is_empty() {
            let body = Bytes::from(std::mem::take(&mut state.buf));
            return runtime::block_on(self.client.put_blob(&self.path, body))?;
        }
        self.stage_rest_and_wait(&mut state)?;
        runtime::block_on(self.client.put_block_list(&self.path, &state.blocks))?
    }
}

fn join_block(path: &BlobPath, task: JoinHandle<Result<(), FsError>>) -> Result<(), FsError> {
    match runtime::block_on(task)? {
        Ok(result) => result,
        Err(join) => Err(FsError::Unavailable {
            url: path.to_string(),
            attempts: 1,
            reason: format!("block upload task failed: {join}"),
        }),
    }
}
