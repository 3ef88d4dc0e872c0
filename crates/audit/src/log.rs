//! The writer: [`AuditLog`] hands events to one writer task per chain, which commits
//! whatever has queued up as one transaction (group commit) and answers every waiter
//! once its batch is durable.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::checkpoint::{Checkpoint, CheckpointSigner};
use crate::event::{Event, Record, SCHEMA_VERSION, Timestamp};
use crate::merkle::{Frontier, leaf_hash};
use crate::store::{AnyStore, Row, StoreBackend, StoreError, StoreUrl, StoredCheckpoint};
use crate::{AuditError, IntoStoreUrl};

/// How a writer behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuditOptions {
    /// This writer's chain, also the checkpoint origin, e.g. `entraflow/gate/<instance>`.
    /// Two writers must never share one.
    pub log_id: String,
    /// How often to sign a checkpoint when new events arrived (`None`: only on
    /// request and at close).
    pub checkpoint_interval: Option<Duration>,
    /// Most events committed in one transaction.
    pub max_batch: usize,
    /// Events that may wait for the writer before `append` itself waits.
    pub queue_capacity: usize,
}

impl AuditOptions {
    /// Defaults for chain `log_id`: a checkpoint every minute, batches of up to 4096.
    pub fn new(log_id: impl Into<String>) -> AuditOptions {
        AuditOptions {
            log_id: log_id.into(),
            checkpoint_interval: Some(Duration::from_secs(60)),
            max_batch: 4096,
            queue_capacity: 65_536,
        }
    }

    /// Sets the periodic checkpoint interval.
    pub fn checkpoint_interval(mut self, interval: Option<Duration>) -> AuditOptions {
        self.checkpoint_interval = interval;
        self
    }

    /// Sets the largest batch.
    pub fn max_batch(mut self, max_batch: usize) -> AuditOptions {
        self.max_batch = max_batch.max(1);
        self
    }
}

/// The id of a durable event: its unique id and its position in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId {
    /// Unique id, stored in the record.
    pub id: Uuid,
    /// Position (Merkle leaf index).
    pub seq: u64,
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.id.fmt(f)
    }
}

/// A signed checkpoint: what it says and the note that says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// Origin, size, root.
    pub checkpoint: Checkpoint,
    /// The signed note text, ready to write to a file.
    pub note: String,
}

#[allow(
    clippy::large_enum_variant,
    reason = "appends are the hot path; the rare other commands may waste the slot"
)]
enum Command {
    Append(Event, oneshot::Sender<Result<EventId, AuditError>>),
    Checkpoint(oneshot::Sender<Result<SignedCheckpoint, AuditError>>),
    Close(oneshot::Sender<Result<Option<SignedCheckpoint>, AuditError>>),
}

/// The append side of the audit log. Clone it freely: clones share one writer.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::Sender<Command>,
    log_id: String,
    store: AnyStore,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
    health: Arc<Health>,
}

/// What the writer's last commit did, for health checks: one atomic load on every
/// commit, a lock only when the outcome changes from success to failure or back.
#[derive(Default)]
struct Health {
    failing: std::sync::atomic::AtomicBool,
    last_failure: std::sync::Mutex<Option<(String, std::time::Instant)>>,
}

impl Health {
    fn succeeded(&self) {
        use std::sync::atomic::Ordering;
        if self.failing.load(Ordering::Relaxed) {
            *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
            self.failing.store(false, Ordering::Relaxed);
        }
    }

    fn failed(&self, error: &AuditError) {
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((error.to_string(), std::time::Instant::now()));
        self.failing
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("log_id", &self.inner.log_id)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the store, registers (or resumes) chain `options.log_id` and starts its
    /// writer task on the current Tokio runtime.
    pub async fn open(
        store: impl IntoStoreUrl,
        signer: CheckpointSigner,
        options: AuditOptions,
    ) -> Result<AuditLog, AuditError> {
        let url: StoreUrl = store.into_store_url()?;
        let store = AnyStore::open(&url).await?;
        AuditLog::with_store(store, signer, options).await
    }

    /// Like [`AuditLog::open`] on an already opened store.
    pub async fn with_store(
        store: AnyStore,
        signer: CheckpointSigner,
        options: AuditOptions,
    ) -> Result<AuditLog, AuditError> {
        if options.log_id.is_empty() || options.log_id.contains('\n') {
            return Err(AuditError::InvalidLogId(options.log_id));
        }
        let head = store.open_log(&options.log_id).await?;
        let frontier = head.frontier()?;
        let last_checkpoint = store
            .checkpoints(&options.log_id)
            .await?
            .last()
            .map(|c| c.size);
        let (commands, queue) = mpsc::channel(options.queue_capacity.max(1));
        let health = Arc::new(Health::default());
        let writer = Writer {
            health: Arc::clone(&health),
            store: store.clone(),
            signer,
            log_id: options.log_id.clone(),
            frontier,
            stale: false,
            last_checkpoint,
            max_batch: options.max_batch.max(1),
        };
        let task = tokio::spawn(writer.run(queue, options.checkpoint_interval));
        Ok(AuditLog {
            inner: Arc::new(Inner {
                commands,
                log_id: options.log_id,
                store,
                writer: std::sync::Mutex::new(Some(task)),
                health,
            }),
        })
    }

    /// This writer's chain.
    pub fn log_id(&self) -> &str {
        &self.inner.log_id
    }

    /// Whether the writer still takes appends (false once closed or stopped).
    pub fn is_open(&self) -> bool {
        !self.inner.commands.is_closed()
    }

    /// Why the writer's last commit failed and how long ago, if it did; `None`
    /// once a later commit succeeds (or none ever failed). A failed commit is one
    /// whose waiters got an error: the store refused the transaction, or the chain's
    /// head could not be reloaded after an earlier failure. Cheap (an atomic load
    /// while commits succeed), for health checks.
    pub fn last_append_error(&self) -> Option<(String, std::time::Duration)> {
        if !self
            .inner
            .health
            .failing
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        let failure = self
            .inner
            .health
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        failure
            .as_ref()
            .map(|(error, at)| (error.clone(), at.elapsed()))
    }

    /// The store, for reading.
    pub fn store(&self) -> &AnyStore {
        &self.inner.store
    }

    /// Appends `event`; returns once it is committed to disk (SQLite: WAL fsync'd;
    /// PostgreSQL: commit acknowledged). Concurrent calls share one transaction.
    pub async fn append(&self, event: Event) -> Result<EventId, AuditError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Append(event, reply)).await?;
        answer.await.map_err(|_| AuditError::Closed)?
    }

    /// Signs and stores a checkpoint of everything durable so far.
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, AuditError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Checkpoint(reply)).await?;
        answer.await.map_err(|_| AuditError::Closed)?
    }

    /// Commits what is queued, writes a final checkpoint (if anything changed since
    /// the last one) and stops the writer. Later appends fail with
    /// [`AuditError::Closed`].
    pub async fn close(&self) -> Result<Option<SignedCheckpoint>, AuditError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Close(reply)).await?;
        let result = answer.await.map_err(|_| AuditError::Closed)?;
        let task = self.inner.writer.lock().expect("not poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
        result
    }

    async fn send(&self, command: Command) -> Result<(), AuditError> {
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| AuditError::Closed)
    }
}

struct Writer {
    store: AnyStore,
    health: Arc<Health>,
    signer: CheckpointSigner,
    log_id: String,
    /// The committed tree.
    frontier: Frontier,
    /// A commit failed in a way that leaves its outcome unknown: reload the head.
    stale: bool,
    last_checkpoint: Option<u64>,
    max_batch: usize,
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::Receiver<Command>, interval: Option<Duration>) {
        let mut ticker = interval.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut held: Option<Command> = None;
        loop {
            let command = match held.take() {
                Some(command) => command,
                None => {
                    let tick = async {
                        match ticker.as_mut() {
                            Some(t) => {
                                t.tick().await;
                            }
                            None => std::future::pending::<()>().await,
                        }
                    };
                    tokio::select! {
                        command = queue.recv() => match command {
                            Some(command) => command,
                            None => {
                                // Every handle is gone: finish like close().
                                if let Err(e) = self.checkpoint_if_changed().await {
                                    tracing::error!(log = %self.log_id, error = %e, "final audit checkpoint failed");
                                }
                                return;
                            }
                        },
                        () = tick => {
                            if let Err(e) = self.checkpoint_if_changed().await {
                                tracing::error!(log = %self.log_id, error = %e, "periodic audit checkpoint failed");
                            }
                            continue;
                        }
                    }
                }
            };
            match command {
                Command::Append(event, reply) => {
                    let mut batch = vec![(event, reply)];
                    while batch.len() < self.max_batch {
                        match queue.try_recv() {
                            Ok(Command::Append(event, reply)) => batch.push((event, reply)),
                            Ok(other) => {
                                held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit(batch).await;
                }
                Command::Checkpoint(reply) => {
                    let _ = reply.send(self.checkpoint().await);
                }
                Command::Close(reply) => {
                    let result = self.checkpoint_if_changed().await;
                    queue.close();
                    while let Ok(command) = queue.try_recv() {
                        refuse(command);
                    }
                    let _ = reply.send(result);
                    return;
                }
            }
        }
    }

    async fn commit(&mut self, batch: Vec<(Event, oneshot::Sender<Result<EventId, AuditError>>)>) {
        if self.stale
            && let Err(e) = self.reload().await
        {
            self.health.failed(&e);
            for (_, reply) in batch {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        let start = self.frontier.size();
        let mut next = self.frontier.clone();
        let mut rows = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for (mut event, reply) in batch {
            event.normalize();
            let record = Record {
                schema: SCHEMA_VERSION,
                log: self.log_id.clone(),
                seq: next.size(),
                // Time-ordered, so that the event-id index grows at its end
                // instead of dirtying a random page per event (measured: WAL per
                // 16-event commit 146 KiB with random ids, 77 KiB with these).
                id: Uuid::now_v7(),
                event,
            };
            let bytes = record.canonical_bytes();
            let leaf = leaf_hash(&bytes);
            next.push(leaf);
            replies.push((
                EventId {
                    id: record.id,
                    seq: record.seq,
                },
                reply,
            ));
            rows.push(Row::new(&record, bytes, &leaf));
        }
        match self.store.append(&self.log_id, start, rows, &next).await {
            Ok(()) => {
                self.frontier = next;
                self.health.succeeded();
                for (id, reply) in replies {
                    let _ = reply.send(Ok(id));
                }
            }
            Err(e) => {
                tracing::error!(log = %self.log_id, error = %e, "audit append failed");
                // The transaction may or may not have committed (a lost connection
                // during COMMIT): trust only what the store says next time.
                self.stale = true;
                let e = AuditError::from(e);
                self.health.failed(&e);
                for (_, reply) in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    async fn reload(&mut self) -> Result<(), AuditError> {
        let head = self.store.open_log(&self.log_id).await?;
        self.frontier = head.frontier()?;
        self.stale = false;
        Ok(())
    }

    async fn checkpoint_if_changed(&mut self) -> Result<Option<SignedCheckpoint>, AuditError> {
        if self.stale {
            self.reload().await?;
        }
        if self.last_checkpoint == Some(self.frontier.size()) {
            return Ok(None);
        }
        self.checkpoint().await.map(Some)
    }

    async fn checkpoint(&mut self) -> Result<SignedCheckpoint, AuditError> {
        if self.stale {
            self.reload().await?;
        }
        let signed =
            sign_and_store(&self.store, &self.signer, &self.log_id, &self.frontier).await?;
        self.last_checkpoint = Some(signed.checkpoint.size);
        Ok(signed)
    }
}

fn refuse(command: Command) {
    match command {
        Command::Append(_, reply) => {
            let _ = reply.send(Err(AuditError::Closed));
        }
        Command::Checkpoint(reply) => {
            let _ = reply.send(Err(AuditError::Closed));
        }
        Command::Close(reply) => {
            let _ = reply.send(Ok(None));
        }
    }
}

/// Signs a checkpoint of `frontier` for chain `log_id` and stores it.
pub(crate) async fn sign_and_store(
    store: &AnyStore,
    signer: &CheckpointSigner,
    log_id: &str,
    frontier: &Frontier,
) -> Result<SignedCheckpoint, StoreError> {
    let checkpoint = Checkpoint {
        origin: log_id.to_owned(),
        size: frontier.size(),
        root: frontier.root(),
    };
    let note = signer.sign(&checkpoint);
    store
        .add_checkpoint(StoredCheckpoint {
            log_id: log_id.to_owned(),
            size: checkpoint.size,
            root: checkpoint.root.0.to_vec(),
            note: note.clone(),
            created: Timestamp::now().to_string(),
        })
        .await?;
    Ok(SignedCheckpoint { checkpoint, note })
}
