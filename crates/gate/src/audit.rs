//! Where the gate's audit events go: the [`AuditSink`] seam, implemented by the
//! real audit log (`entraflow-audit`), plus a stream wrapper that records how many
//! bytes a streamed read actually delivered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use entraflow_audit::{Event, EventType};
use futures::{Stream, StreamExt};

/// A future returned by [`AuditSink::append`].
/// Opens the audit log a gate writes: its chain `log_id` in `store`, checkpoints
/// signed with the data directory's key. The Blob and SQL gates start the same way.
pub(crate) async fn open_log(
    data_dir: &std::path::Path,
    store: entraflow_audit::StoreUrl,
    log_id: &str,
) -> Result<entraflow_audit::AuditLog, String> {
    let signer = entraflow_audit::CheckpointSigner::load_or_create(data_dir, log_id)
        .map_err(|e| e.to_string())?;
    entraflow_audit::AuditLog::open(
        store,
        signer,
        entraflow_audit::AuditOptions::new(log_id.to_owned()),
    )
    .await
    .map_err(|e| e.to_string())
}

pub type AppendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Receives one event per request. `append` returns once the event is durable;
/// the gate does not complete a response before that.
pub trait AuditSink: Send + Sync + 'static {
    /// Appends an event.
    fn append(&self, event: Event) -> AppendFuture<'_>;

    /// Whether the sink can take records now; a request is refused before it is
    /// served when it cannot.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    /// Why the sink's last append failed and how long ago, unless a later one
    /// succeeded: what the gate's readiness check reports.
    fn last_append_error(&self) -> Option<(String, std::time::Duration)> {
        None
    }
}

/// A change's decision record (durable before the change is made) has its
/// operation's event type with this suffix (`blob.write.authorized`); the outcome's
/// record, with status and bytes, follows under the same request id.
pub const AUTHORIZED_SUFFIX: &str = ".authorized";

/// Event type of the record written when a streamed read ends: it carries the
/// bytes actually sent, under the same request id as the decision record.
pub const READ_COMPLETED: &str = "blob.read.completed";

struct Completion {
    sink: Arc<dyn AuditSink>,
    event: Option<Event>,
    started: std::time::Instant,
    bytes: u64,
    /// The response's length: hyper stops polling a body once that many bytes are
    /// out, so a complete read can end in a drop rather than in the stream's end.
    expected: u64,
}

impl Completion {
    fn finish(&mut self, detail: &str) -> Option<Event> {
        let mut event = self.event.take()?;
        event.time = entraflow_audit::Timestamp::now();
        event.bytes = Some(self.bytes);
        event.duration_ms = Some(self.started.elapsed().as_millis() as u64);
        event.detail = Some(match event.detail.take() {
            Some(d) => format!("{d}; {detail}"),
            None => detail.to_owned(),
        });
        Some(event)
    }
}

impl Drop for Completion {
    // Dropped before the stream's end: either every byte went out (hyper stops at
    // Content-Length) or the client went away mid-body. The record is written from
    // a task instead.
    fn drop(&mut self) {
        let detail = if self.bytes >= self.expected {
            "body complete"
        } else {
            "client disconnected before the end of the body"
        };
        if let Some(event) = self.finish(detail) {
            let sink = self.sink.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = sink.append(event).await {
                        tracing::error!(error = %e, "could not audit the end of a streamed read");
                    }
                });
            }
        }
    }
}

/// Wraps a body stream so that, when it ends (or the client goes away), a
/// [`READ_COMPLETED`] record with the bytes actually sent is appended.
pub(crate) fn count_and_audit<S>(
    body: S,
    sink: Arc<dyn AuditSink>,
    template: Event,
    expected: u64,
    sent: prometheus_client::metrics::counter::Counter,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send
where
    S: Stream<Item = Result<Bytes, object_store::Error>> + Send + Unpin + 'static,
{
    let mut event = template;
    event.event_type = EventType::Other(READ_COMPLETED.to_owned());
    let completion = Completion {
        sink,
        event: Some(event),
        started: std::time::Instant::now(),
        bytes: 0,
        expected,
    };
    futures::stream::unfold(
        (body, completion, sent),
        |(mut body, mut completion, sent)| async move {
            match body.next().await {
                Some(Ok(chunk)) => {
                    completion.bytes += chunk.len() as u64;
                    sent.inc_by(chunk.len() as u64);
                    Some((Ok(chunk), (body, completion, sent)))
                }
                Some(Err(e)) => {
                    let note = format!("backend error after {} bytes: {e}", completion.bytes);
                    if let Some(event) = completion.finish(&note) {
                        let sink = completion.sink.clone();
                        tokio::spawn(async move {
                            if let Err(e) = sink.append(event).await {
                                tracing::error!(error = %e, "could not audit a failed streamed read");
                            }
                        });
                    }
                    Some((Err(std::io::Error::other(e)), (body, completion, sent)))
                }
                None => {
                    // The decision record was durable before the first byte; this
                    // supplementary record is written off the response path.
                    if let Some(event) = completion.finish("body complete") {
                        let sink = completion.sink.clone();
                        tokio::spawn(async move {
                            if let Err(e) = sink.append(event).await {
                                tracing::error!(error = %e, "could not audit the end of a streamed read");
                            }
                        });
                    }
                    None
                }
            }
        },
    )
}
