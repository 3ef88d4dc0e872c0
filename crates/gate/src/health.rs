//! The health and metrics listener: plain HTTP on its own port (127.0.0.1 unless
//! configured otherwise), apart from the Blob HTTPS port, for Kubernetes probes
//! and Prometheus scrapes. It serves nothing but these three paths and never a
//! token, principal or blob name:
//!
//! - `GET /livez`: 200 while the process serves.
//! - `GET /readyz`: 200 when every check passes, else 503; either way a JSON body
//!   `{"status": "ready"|"not ready", "checks": {NAME: {"ok": …, "detail": …}}}`
//!   naming each check and why it failed:
//!   - `jwks`: every trusted tenant has signing keys from a successful fetch no
//!     older than the verifier's maximum key age (24 h). A probe fetches them when
//!     they are missing or stale, within the verifier's own refetch throttle, so a
//!     gate that has not yet seen a token still becomes ready.
//!   - `policy`: the role store answers and the authorizer's index is at its
//!     generation (the probe reloads it, as a request would).
//!   - `audit`: the audit log's writer is open and its last append did not fail
//!     in the last [`AUDIT_FAILURE_HOLD`] (a failed append is followed by 503s
//!     until one succeeds; after the hold the gate reports ready again so that
//!     traffic can find out whether the store recovered, as requests whose
//!     record cannot be written are refused anyway).
//! - `GET /metrics`: [`crate::metrics`] in the Prometheus text format (0.0.4).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::guard::{GateState, Guarded as _};

/// After a failed audit append, how long `/readyz` says "not ready" unless a later
/// append succeeds.
pub const AUDIT_FAILURE_HOLD: Duration = Duration::from_secs(30);

/// Longest `/readyz` waits for a JWKS fetch it started (the fetch goes on; the
/// next probe sees its outcome). Under Kubernetes' default 1 s probe timeout.
const JWKS_WAIT: Duration = Duration::from_millis(500);

/// Longest `/readyz` waits for the role store.
const POLICY_WAIT: Duration = Duration::from_millis(800);

/// One readiness check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) ok: bool,
    pub(crate) detail: String,
}

impl Check {
    fn pass(name: &'static str, detail: String) -> Self {
        Self {
            name,
            ok: true,
            detail,
        }
    }

    fn fail(name: &'static str, detail: String) -> Self {
        Self {
            name,
            ok: false,
            detail,
        }
    }
}

/// The router of the health listener.
pub(crate) fn router(state: Arc<GateState>) -> axum::Router {
    use axum::extract::State;
    use axum::routing::get;
    axum::Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(state): State<Arc<GateState>>| async move {
                let checks = readiness(&state).await;
                ready_response(&checks)
            }),
        )
        .route(
            "/metrics",
            get(|State(state): State<Arc<GateState>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    )],
                    state.metrics.encode(),
                )
            }),
        )
        .with_state(state)
}

fn ready_response(checks: &[Check]) -> Response {
    let ready = checks.iter().all(|c| c.ok);
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": checks
            .iter()
            .map(|c| (c.name.to_owned(), json!({"ok": c.ok, "detail": c.detail})))
            .collect::<serde_json::Map<_, _>>(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Runs every check.
pub(crate) async fn readiness(state: &Arc<GateState>) -> Vec<Check> {
    let (jwks, policy) = tokio::join!(jwks(state), policy(state));
    vec![jwks, policy, audit(state.audit().as_ref())]
}

async fn jwks(state: &GateState) -> Check {
    const NAME: &str = "jwks";
    let verifier = state.verifier.clone();
    let config = verifier.config().clone();
    let fetch = tokio::spawn({
        let verifier = verifier.clone();
        async move { verifier.refresh_stale_keys().await }
    });
    let _ = tokio::time::timeout(JWKS_WAIT, fetch).await;
    let mut problems = Vec::new();
    let mut fine = Vec::new();
    for s in verifier.key_status() {
        let why = s
            .last_error
            .as_deref()
            .map(|e| format!("; the last fetch failed: {e}"))
            .unwrap_or_default();
        match s.fetched_ago {
            None => problems.push(format!(
                "tenant {}: no JWKS fetched yet from {}{why}",
                s.tenant, config.authority_host
            )),
            Some(age) if age >= config.max_key_age => problems.push(format!(
                "tenant {}: the JWKS was fetched {} s ago, more than the {} s keys may be used{why}",
                s.tenant,
                age.as_secs(),
                config.max_key_age.as_secs()
            )),
            Some(_) if s.keys == 0 => problems.push(format!(
                "tenant {}: the JWKS of {} has no usable RS256 signing key",
                s.tenant, config.authority_host
            )),
            Some(age) => fine.push(format!(
                "tenant {}: {} keys fetched {} s ago",
                s.tenant,
                s.keys,
                age.as_secs()
            )),
        }
    }
    if problems.is_empty() {
        Check::pass(NAME, fine.join("; "))
    } else {
        Check::fail(NAME, problems.join("; "))
    }
}

async fn policy(state: &GateState) -> Check {
    const NAME: &str = "policy";
    let authorizer = Arc::clone(state.policy());
    let reload = tokio::task::spawn_blocking(move || {
        authorizer
            .refresh()
            .map(|_| authorizer.generation())
            .map_err(|e| e.to_string())
    });
    match tokio::time::timeout(POLICY_WAIT, reload).await {
        Ok(Ok(Ok(generation))) => Check::pass(
            NAME,
            format!("role store read; deciding with generation {generation}"),
        ),
        Ok(Ok(Err(e))) => Check::fail(
            NAME,
            format!(
                "the role store cannot be read, so the authorizer may be deciding with stale assignments: {e}"
            ),
        ),
        Ok(Err(e)) => Check::fail(NAME, format!("reloading the role store failed: {e}")),
        Err(_) => Check::fail(
            NAME,
            format!(
                "the role store did not answer within {} ms",
                POLICY_WAIT.as_millis()
            ),
        ),
    }
}

fn audit(sink: &dyn crate::audit::AuditSink) -> Check {
    const NAME: &str = "audit";
    if let Err(e) = sink.ready() {
        return Check::fail(NAME, format!("the audit log takes no records: {e}"));
    }
    match sink.last_append_error() {
        Some((error, ago)) if ago < AUDIT_FAILURE_HOLD => Check::fail(
            NAME,
            format!(
                "the last audit append failed {} s ago (requests are refused with 503 while appends fail): {error}",
                ago.as_secs()
            ),
        ),
        Some((error, ago)) => Check::pass(
            NAME,
            format!(
                "the audit log is open; its last append failed {} s ago ({error}), longer than {} s, so traffic may test it again",
                ago.as_secs(),
                AUDIT_FAILURE_HOLD.as_secs()
            ),
        ),
        None => Check::pass(
            NAME,
            "the audit log is open and its last append succeeded".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_audit_log_fails_the_audit_check() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::audit::open_log(
            dir.path(),
            entraflow_audit::StoreUrl::default_for(dir.path()),
            "entraflow/test",
        )
        .await
        .unwrap();
        let check = audit(&log);
        assert!(check.ok, "{check:?}");
        log.close().await.unwrap();
        let check = audit(&log);
        assert!(!check.ok);
        assert!(check.detail.contains("closed"), "{check:?}");
    }

    #[test]
    fn the_body_names_each_failing_check() {
        let response = ready_response(&[
            Check::pass("jwks", "fine".into()),
            Check::fail("audit", "broken".into()),
        ]);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            ready_response(&[Check::pass("jwks", "fine".into())])
                .status()
                .is_success()
        );
    }
}
