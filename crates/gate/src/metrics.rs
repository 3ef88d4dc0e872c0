//! The gate's Prometheus metrics, served as text on the health listener's
//! `/metrics` (see [`crate::health`]).
//!
//! Labels are fixed, small vocabularies — an operation's name, a status class, a
//! decision, a denial's stage and kind, a direction — never a blob, container,
//! principal, token or anything a client chooses, so the number of series is
//! bounded whatever the traffic. Counting is an atomic add on the request path:
//! a request's counter is looked up in the registry once per (operation, status
//! class) and kept in a fixed table; denials (rarer, but what an attack produces)
//! take the crate's read lock on their family.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::audit::{AppendFuture, AuditSink};
use crate::operation::Operation;
use crate::verify::AuthError;

/// Prefix of every metric name.
pub const METRICS_PREFIX: &str = "entraflow_gate";

/// What a request counts as in `entraflow_gate_requests_total{operation=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpLabel {
    /// A Blob REST operation.
    Blob(Operation),
    /// An admin API read (GET).
    AdminRead,
    /// An admin API change (PUT, DELETE).
    AdminChange,
    /// A request refused before it was classified (a bad path or verb).
    Unclassified,
}

const OP_COUNT: usize = Operation::ALL.len() + 3;

impl OpLabel {
    fn index(self) -> usize {
        match self {
            OpLabel::Blob(op) => op as usize,
            OpLabel::AdminRead => Operation::ALL.len(),
            OpLabel::AdminChange => Operation::ALL.len() + 1,
            OpLabel::Unclassified => Operation::ALL.len() + 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            OpLabel::Blob(op) => op.name(),
            OpLabel::AdminRead => "AdminRead",
            OpLabel::AdminChange => "AdminChange",
            OpLabel::Unclassified => "Unclassified",
        }
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    stage: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

/// The gate's counters and histograms, and the registry that encodes them.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// `requests`' counters by (operation, status class), filled on first use.
    request_cells: Box<[[OnceLock<Counter>; 5]]>,
    allowed: Counter,
    denied: Counter,
    denials: Family<DenialLabels, Counter>,
    audit_append: Histogram,
    audit_failures: Counter,
    bytes_read: Counter,
    bytes_written: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Audit append latency buckets, in seconds: 100 µs to about 3 s (an fsync is
/// about a millisecond on a good disk; PostgreSQL commits a few).
fn append_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16)
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix(METRICS_PREFIX);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by operation (Azure's name, AdminRead, AdminChange or Unclassified) and status class",
            requests.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "authz_decisions",
            "RBAC decisions taken (a Copy Blob takes two, each Blob Batch part one), by decision",
            decisions.clone(),
        );
        let allowed = decisions
            .get_or_create(&DecisionLabels { decision: "allow" })
            .clone();
        let denied = decisions
            .get_or_create(&DecisionLabels { decision: "deny" })
            .clone();
        let denials = Family::<DenialLabels, Counter>::default();
        registry.register(
            "denials",
            "Requests refused, by stage (authn: the token; authz: RBAC) and reason (the token failure's kind; no_assignment, expired or condition_not_met)",
            denials.clone(),
        );
        let audit_append = Histogram::new(append_buckets());
        registry.register_with_unit(
            "audit_append",
            "Time until an audit record is durable (the gate waits for it before answering)",
            Unit::Seconds,
            audit_append.clone(),
        );
        let audit_failures = Counter::default();
        registry.register(
            "audit_append_failures",
            "Audit appends that failed (the request was then refused with 503, or only its outcome record was lost)",
            audit_failures.clone(),
        );
        let bytes = Family::<DirectionLabels, Counter>::default();
        registry.register_with_unit(
            "blob",
            "Blob body bytes sent to clients (read) and received and stored (written)",
            Unit::Bytes,
            bytes.clone(),
        );
        let bytes_read = bytes
            .get_or_create(&DirectionLabels { direction: "read" })
            .clone();
        let bytes_written = bytes
            .get_or_create(&DirectionLabels {
                direction: "written",
            })
            .clone();
        Self {
            registry,
            requests,
            request_cells: (0..OP_COUNT).map(|_| Default::default()).collect(),
            allowed,
            denied,
            denials,
            audit_append,
            audit_failures,
            bytes_read,
            bytes_written,
        }
    }

    /// One answered request.
    pub(crate) fn request(&self, operation: OpLabel, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.request_cells[operation.index()][class]
            .get_or_init(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        operation: operation.name(),
                        status_class: STATUS_CLASSES[class],
                    })
                    .clone()
            })
            .inc();
    }

    /// One RBAC decision; a denial is also counted by its reason.
    pub(crate) fn decision(&self, denial: Option<&entraflow_rbac::Denial>) {
        match denial {
            None => {
                self.allowed.inc();
            }
            Some(denial) => {
                self.denied.inc();
                use entraflow_rbac::DenialReason as R;
                let reason = match denial.reason {
                    R::NoAssignment => "no_assignment",
                    R::Expired { .. } => "expired",
                    R::ConditionNotMet { .. } => "condition_not_met",
                    _ => "other",
                };
                self.denial("authz", reason);
            }
        }
    }

    /// A token that was missing or not accepted.
    pub(crate) fn authn_failure(&self, err: &AuthError) {
        self.denial("authn", err.kind());
    }

    fn denial(&self, stage: &'static str, reason: &'static str) {
        self.denials
            .get_or_create(&DenialLabels { stage, reason })
            .inc();
    }

    /// Body bytes sent to a client.
    pub(crate) fn read(&self, bytes: u64) {
        self.bytes_read.inc_by(bytes);
    }

    /// Body bytes received and stored.
    pub(crate) fn written(&self, bytes: u64) {
        self.bytes_written.inc_by(bytes);
    }

    /// The read-bytes counter, for a streamed body to add to as chunks leave.
    pub(crate) fn read_counter(&self) -> Counter {
        self.bytes_read.clone()
    }

    /// The registry in the Prometheus text format (0.0.4).
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The gate's audit sink with its latency and failures measured.
pub(crate) struct MeteredSink {
    inner: Arc<dyn AuditSink>,
    metrics: Arc<Metrics>,
}

impl MeteredSink {
    pub(crate) fn new(inner: Arc<dyn AuditSink>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl AuditSink for MeteredSink {
    fn append(&self, event: entraflow_audit::Event) -> AppendFuture<'_> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.append(event).await;
            self.metrics
                .audit_append
                .observe(started.elapsed().as_secs_f64());
            if result.is_err() {
                self.metrics.audit_failures.inc();
            }
            result
        })
    }

    fn ready(&self) -> Result<(), String> {
        self.inner.ready()
    }

    fn last_append_error(&self) -> Option<(String, std::time::Duration)> {
        self.inner.last_append_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_named_and_labelled_as_documented() {
        let m = Metrics::new();
        m.request(OpLabel::Blob(Operation::GetBlob), 200);
        m.request(OpLabel::Blob(Operation::GetBlob), 206);
        m.request(OpLabel::AdminChange, 403);
        m.request(OpLabel::Unclassified, 999);
        m.decision(None);
        m.authn_failure(&AuthError::Expired);
        m.read(10);
        m.written(7);
        m.audit_append.observe(0.002);
        let text = m.encode();
        for line in [
            "entraflow_gate_requests_total{operation=\"GetBlob\",status_class=\"2xx\"} 2",
            "entraflow_gate_requests_total{operation=\"AdminChange\",status_class=\"4xx\"} 1",
            "entraflow_gate_requests_total{operation=\"Unclassified\",status_class=\"5xx\"} 1",
            "entraflow_gate_authz_decisions_total{decision=\"allow\"} 1",
            "entraflow_gate_authz_decisions_total{decision=\"deny\"} 0",
            "entraflow_gate_denials_total{stage=\"authn\",reason=\"expired\"} 1",
            "entraflow_gate_blob_bytes_total{direction=\"read\"} 10",
            "entraflow_gate_blob_bytes_total{direction=\"written\"} 7",
            "entraflow_gate_audit_append_seconds_count 1",
            "entraflow_gate_audit_append_failures_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }
}
