//! The one guard every request the gate serves passes through, whatever its wire
//! format (Blob REST, its batch sub-requests, the ARM-shaped admin API, and later
//! other protocols):
//!
//! 1. [`Guard::begin`] starts the request's audit event (request id, client, run id);
//! 2. [`Guard::authenticate`] verifies the bearer token, or records the failure;
//! 3. [`Guard::authorize`] takes one RBAC decision, which *replaces* the decision,
//!    granting assignment and role on the event (a Copy Blob whose source read was
//!    allowed and whose destination write is denied records no granting
//!    assignment), and refuses before anything is touched when the audit log cannot
//!    take the record; only then does the handler get an [`Access`], the one way to
//!    reach the blob store or the role store;
//! 4. [`Guard::finish`] appends the event (durable before the response; a streamed
//!    read's event is appended by [`Access::stream`] before its first byte) and puts
//!    the wire's common headers on the response.
//!
//! A wire format supplies its error shapes through [`Wire`]: how it says
//! "unauthenticated", "forbidden" and "the audit log is unavailable"; an HTTP wire
//! also says, through [`HttpWire`], which headers every response carries. The
//! guard works over any front end's shared state that names its authorizer and
//! audit sink ([`Guarded`]): [`GateState`] for Blob REST and the admin API, the
//! SQL gate's state for PostgreSQL sessions.

use crate::groups::GroupDirectory;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode, request::Parts};
use axum::response::Response;
use bytes::Bytes;
use entraflow_audit::{Decision as AuditDecision, Event, EventType, Principal as AuditPrincipal};
use entraflow_rbac::{Decision, Denial, Principal, Request as RbacRequest, Scope};
use futures::Stream;
use time::OffsetDateTime;

use crate::audit::{AUTHORIZED_SUFFIX, AuditSink, count_and_audit};
use crate::metrics::{Metrics, OpLabel};
use crate::store::BlobStore;
use crate::verify::{AuthError, TokenVerifier, VerifiedToken};

/// Everything a request needs; shared by all connections. The blob store and the
/// role store are private to this module: handlers reach them only through an
/// [`Access`], which only [`Guard::authorize`] hands out.
pub(crate) struct GateState {
    pub(crate) account: String,
    pub(crate) account_url: String,
    pub(crate) account_scope: Scope,
    store: BlobStore,
    /// Verifies Blob tokens: Storage audiences.
    pub(crate) verifier: TokenVerifier,
    /// Verifies admin API tokens: ARM audiences, the same keys as `verifier`.
    pub(crate) admin_verifier: TokenVerifier,
    authorizer: Arc<entraflow_rbac::Authorizer>,
    audit: Arc<dyn AuditSink>,
    /// `WWW-Authenticate` value of Blob 401s.
    pub(crate) challenge: String,
    /// `WWW-Authenticate` value of the admin API's 401s.
    pub(crate) admin_challenge: String,
    /// Where group membership is looked up (Storage tokens carry no `groups`).
    groups: Option<GroupDirectory>,
    /// What `/metrics` reports.
    pub(crate) metrics: Arc<Metrics>,
}

/// The parts of [`GateState`] that only the guard may hold.
pub(crate) struct Protected {
    pub(crate) store: BlobStore,
    pub(crate) authorizer: Arc<entraflow_rbac::Authorizer>,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) groups: Option<GroupDirectory>,
}

impl GateState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        account: String,
        account_url: String,
        account_scope: Scope,
        verifier: TokenVerifier,
        admin_verifier: TokenVerifier,
        protected: Protected,
        challenge: String,
        admin_challenge: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            account,
            account_url,
            account_scope,
            store: protected.store,
            verifier,
            admin_verifier,
            authorizer: protected.authorizer,
            audit: protected.audit,
            challenge,
            admin_challenge,
            groups: protected.groups,
            metrics,
        }
    }

    /// The authorizer, for the readiness check.
    pub(crate) fn policy(&self) -> &Arc<entraflow_rbac::Authorizer> {
        &self.authorizer
    }
}

/// What the guard needs from a front end's shared state: the authorizer that
/// decides and the sink that records.
pub(crate) trait Guarded: Send + Sync + 'static {
    fn authorizer(&self) -> &entraflow_rbac::Authorizer;
    fn audit(&self) -> &Arc<dyn AuditSink>;
    /// Where group membership is looked up, if the front end has a directory.
    fn groups(&self) -> Option<&GroupDirectory> {
        None
    }
    /// Where decisions and denials are counted, if the front end keeps metrics.
    fn metrics(&self) -> Option<&Metrics> {
        None
    }
}

impl Guarded for GateState {
    fn authorizer(&self) -> &entraflow_rbac::Authorizer {
        &self.authorizer
    }

    fn audit(&self) -> &Arc<dyn AuditSink> {
        &self.audit
    }

    fn groups(&self) -> Option<&GroupDirectory> {
        self.groups.as_ref()
    }

    fn metrics(&self) -> Option<&Metrics> {
        Some(&self.metrics)
    }
}

impl GateState {
    /// A blob's index tags, read *before* the decision because ABAC conditions
    /// test them (`@Resource[...blobs/tags:...]`), as Azure Storage reads them
    /// server-side. The only storage read that does not need an [`Access`].
    pub(crate) fn tags_for_conditions(&self, container: &str, blob: &str) -> crate::tags::Tags {
        self.store.tags(container, blob).unwrap_or_default()
    }
}

/// How one wire format refuses: its error type, over the front end's state `S`.
pub(crate) trait Wire<S = GateState>: Sized {
    /// The verifier for this wire's audiences.
    fn verifier(state: &S) -> &TokenVerifier;
    /// The token was missing or not accepted.
    fn unauthenticated(err: &AuthError, state: &S) -> Self;
    /// RBAC said no.
    fn forbidden(denial: &Denial) -> Self;
    /// The audit log cannot take the record, so the request is not served.
    fn audit_unavailable() -> Self;
    /// `Code: message`, for the audit record of a failed request.
    fn summary(&self) -> String;
}

/// An HTTP wire: its error as a response and the headers every response carries.
pub(crate) trait HttpWire: Wire {
    /// The error as this wire's response.
    fn into_response(self, request_id: &str, head: bool) -> Response;
    /// Headers every response of this wire carries.
    fn stamp(response: &mut Response, request_id: &str, request: &HeaderMap);
}

/// One request's (or one SQL session's) passage through authentication,
/// authorization and audit.
pub(crate) struct Guard<S = GateState> {
    state: Arc<S>,
    request_id: String,
    started: Instant,
    event: Event,
    token: Option<Arc<VerifiedToken>>,
    /// Set once a streamed body carries the record (see [`Access::stream`]).
    streamed: bool,
    /// Set once a change's decision record is durable (see [`Access::record_decision`]).
    decided: bool,
    /// What the request counts as in the request metrics.
    operation: OpLabel,
    /// Body bytes that leave with the response if its record is durable.
    read_on_answer: u64,
}

impl Guard {
    /// Starts the audit event of an HTTP request.
    pub(crate) fn begin(state: &Arc<GateState>, event_type: EventType, parts: &Parts) -> Self {
        let mut guard = Self::new(state, event_type);
        guard.event.client_addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.to_string());
        guard.event.user_agent = header(&parts.headers, "user-agent").map(str::to_owned);
        guard.event.run_id = run_id(&parts.headers);
        guard
    }

    /// Ends the request: the audit record is made durable (unless a streamed body
    /// carries it), then the wire's common headers are set. A request whose record
    /// cannot be written is answered with the wire's "unavailable", never as done
    /// (a change is only made once its decision record is durable: see
    /// [`Access::record_decision`]).
    pub(crate) async fn finish<W: HttpWire>(
        mut self,
        result: Result<Response, W>,
        head: bool,
        request: &HeaderMap,
    ) -> Response {
        let mut response = match result {
            Ok(response) => response,
            Err(err) => {
                if self.event.detail.is_none() {
                    self.event.detail = Some(err.summary());
                }
                err.into_response(&self.request_id, head)
            }
        };
        if !self.streamed && self.complete(response.status()).await.is_err() {
            response = W::audit_unavailable().into_response(&self.request_id, head);
        } else if response.status().is_success() {
            self.state.metrics.read(self.read_on_answer);
        }
        self.state
            .metrics
            .request(self.operation, response.status().as_u16());
        W::stamp(&mut response, &self.request_id, request);
        response
    }

    /// What the request counts as in the request metrics (until set:
    /// `Unclassified`).
    pub(crate) fn set_operation(&mut self, operation: OpLabel) {
        self.operation = operation;
    }

    /// Appends the record with its final status (for wires that render their own
    /// answers, like batch parts). An error means the answer must be the wire's
    /// "unavailable", unless the request's change was already decided on the record
    /// (then the answer tells what happened; only the outcome record is missing).
    pub(crate) async fn complete(&mut self, status: StatusCode) -> Result<(), ()> {
        self.event.status = Some(status.as_u16());
        let appended = self.append().await;
        if appended.is_err() && self.decided {
            tracing::error!(request_id = %self.request_id, "the change was made and its decision record is durable, but its outcome record was lost");
            return Ok(());
        }
        appended
    }
}

impl<S: Guarded> Guard<S> {
    /// Starts an audit event whose context (client, run id) the caller fills in.
    pub(crate) fn new(state: &Arc<S>, event_type: EventType) -> Self {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut event = Event::new(event_type);
        event.request_id = Some(request_id.clone());
        Self {
            state: Arc::clone(state),
            request_id,
            started: Instant::now(),
            event,
            token: None,
            streamed: false,
            decided: false,
            operation: OpLabel::Unclassified,
            read_on_answer: 0,
        }
    }

    /// A sub-request (a batch part): its own request id and record, the same client.
    pub(crate) fn sub_request(&self, event_type: EventType) -> Self {
        let mut sub = Self::new(&self.state, event_type);
        sub.event.client_addr = self.event.client_addr.clone();
        sub.event.user_agent = self.event.user_agent.clone();
        sub.event.run_id = self.event.run_id.clone();
        sub
    }

    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The request's audit event, for what a handler knows (resource, bytes, detail).
    pub(crate) fn event(&mut self) -> &mut Event {
        &mut self.event
    }

    /// Verifies the `Authorization` header with the wire's verifier; a failure is an
    /// `authn.failed` record and the wire's 401.
    pub(crate) async fn authenticate<W: Wire<S>>(
        &mut self,
        authorization: Option<&str>,
    ) -> Result<(), W> {
        let result = W::verifier(&self.state).verify_header(authorization).await;
        self.accept(result)
    }

    /// Verifies a bare token (the SQL gate's password) with the wire's verifier.
    pub(crate) async fn authenticate_token<W: Wire<S>>(&mut self, token: &str) -> Result<(), W> {
        let result = W::verifier(&self.state).verify(token).await;
        self.accept(result)
    }

    /// The token that authenticated this guard, once one has.
    pub(crate) fn token(&self) -> Option<&VerifiedToken> {
        self.token.as_deref()
    }

    fn accept<W: Wire<S>>(
        &mut self,
        result: Result<Arc<VerifiedToken>, AuthError>,
    ) -> Result<(), W> {
        match result {
            Ok(token) => {
                note_token(&mut self.event, &token);
                self.token = Some(token);
                Ok(())
            }
            Err(err) => {
                if let Some(metrics) = self.state.metrics() {
                    metrics.authn_failure(&err);
                }
                self.event.event_type = EventType::AuthnFailed;
                self.event.decision = Some(AuditDecision::Deny);
                self.event.detail = Some(err.to_string());
                Err(W::unauthenticated(&err, &self.state))
            }
        }
    }

    /// Takes one RBAC decision for the authenticated caller. It replaces whatever an
    /// earlier decision recorded: the record always states the last decision taken.
    /// On allow, the handler gets an [`Access`], unless the audit log cannot take the
    /// record, in which case nothing is served.
    pub(crate) fn authorize<W: Wire<S>>(
        &mut self,
        request: RbacRequest,
    ) -> Result<Access<'_, S>, W> {
        let Some(token) = &self.token else {
            // A handler that authorizes before authenticating is a bug; fail closed.
            tracing::error!(request_id = %self.request_id, "authorization before authentication");
            return Err(W::unauthenticated(&AuthError::Missing, &self.state));
        };
        let principal = rbac_principal(token, self.state.groups());
        let decision =
            self.state
                .authorizer()
                .authorize(&principal, &request, OffsetDateTime::now_utc());
        self.event.action = Some(request.action.clone());
        if let Some(metrics) = self.state.metrics() {
            metrics.decision(match &decision {
                Decision::Deny(denial) => Some(denial),
                Decision::Allow { .. } => None,
            });
        }
        match decision {
            Decision::Allow {
                assignment_id,
                role_name,
                ..
            } => {
                self.event.decision = Some(AuditDecision::Allow);
                self.event.assignment_id = Some(assignment_id.to_string());
                self.event.role_name = Some(role_name.to_string());
            }
            Decision::Deny(denial) => {
                self.event.event_type = EventType::AuthzDenied;
                self.event.decision = Some(AuditDecision::Deny);
                self.event.assignment_id = None;
                self.event.role_name = None;
                self.event.detail = Some(denial.to_string());
                return Err(W::forbidden(&denial));
            }
        }
        if let Err(e) = self.state.audit().ready() {
            tracing::error!(error = %e, request_id = %self.request_id, "audit log cannot take records; refusing");
            return Err(W::audit_unavailable());
        }
        Ok(Access { guard: self })
    }

    /// Appends the record as it stands (durable when this returns `Ok`).
    pub(crate) async fn append(&mut self) -> Result<(), ()> {
        self.event.duration_ms = Some(self.started.elapsed().as_millis() as u64);
        let event = std::mem::replace(&mut self.event, Event::new(EventType::Other(String::new())));
        self.state.audit().append(event).await.map_err(|e| {
            tracing::error!(error = %e, request_id = %self.request_id, "audit log append failed");
        })
    }
}

/// What an allowed request may touch. Only [`Guard::authorize`] makes one.
pub(crate) struct Access<'g, S = GateState> {
    guard: &'g mut Guard<S>,
}

impl<S: Guarded> Access<'_, S> {
    /// The request's audit event.
    pub(crate) fn event(&mut self) -> &mut Event {
        &mut self.guard.event
    }

    /// The front end's state.
    pub(crate) fn state(&self) -> &S {
        &self.guard.state
    }

    /// Makes the decision durable before a change is made: a copy of the record as
    /// it stands (principal, action, resource, granting assignment and role; `intent`
    /// as its detail) under the event type with [`AUTHORIZED_SUFFIX`]. Nothing may
    /// change before this returns `Ok`; afterwards the answer tells the outcome even
    /// if the outcome's own record (same request id) cannot be written.
    pub(crate) async fn record_decision<W: Wire<S>>(
        &mut self,
        intent: Option<String>,
    ) -> Result<(), W> {
        let guard = &mut *self.guard;
        let mut record = guard.event.clone();
        record.event_type =
            EventType::Other(format!("{}{AUTHORIZED_SUFFIX}", record.event_type.as_str()));
        if intent.is_some() {
            record.detail = intent;
        }
        record.duration_ms = Some(guard.started.elapsed().as_millis() as u64);
        guard.state.audit().append(record).await.map_err(|e| {
            tracing::error!(error = %e, request_id = %guard.request_id, "audit log append failed; the change is not made");
            W::audit_unavailable()
        })?;
        guard.decided = true;
        Ok(())
    }
}

impl Access<'_> {
    /// The blob store.
    pub(crate) fn store(&self) -> &BlobStore {
        &self.guard.state.store
    }

    /// The role store.
    pub(crate) fn rbac(&self) -> &entraflow_rbac::RbacStore {
        self.guard.state.authorizer.store()
    }

    /// Counts body bytes received and stored.
    pub(crate) fn count_written(&self, bytes: u64) {
        self.guard.state.metrics.written(bytes);
    }

    /// Counts body bytes sent with the response (not streamed), once its record
    /// is durable and the answer is a success.
    pub(crate) fn count_read_on_answer(&mut self, bytes: u64) {
        self.guard.read_on_answer = bytes;
    }

    /// Makes a role change visible to the next decision at once (not after the poll).
    pub(crate) fn refresh_policy(&self) {
        if let Err(e) = self.guard.state.authorizer.refresh() {
            tracing::warn!(error = %e, "role change stored but the authorizer could not reload yet; it will on its next poll");
        }
    }

    /// Another decision within the same request (an admin change that must be
    /// allowed at several scopes); it replaces the recorded one, as every decision
    /// does.
    pub(crate) fn authorize<W: Wire>(&mut self, request: RbacRequest) -> Result<(), W> {
        self.guard.authorize::<W>(request).map(drop)
    }

    /// A streamed response body of `expected` bytes with `status`: the record is
    /// made durable now, before the first byte; when the body ends (or the client
    /// goes away) a completion record carries the bytes actually sent.
    pub(crate) async fn stream<W: Wire, S>(
        self,
        status: StatusCode,
        body: S,
        expected: u64,
    ) -> Result<Body, W>
    where
        S: Stream<Item = Result<Bytes, object_store::Error>> + Send + Unpin + 'static,
    {
        let guard = self.guard;
        guard.event.status = Some(status.as_u16());
        guard.event.duration_ms = Some(guard.started.elapsed().as_millis() as u64);
        let template = guard.event.clone();
        guard.state.audit.append(guard.event.clone()).await.map_err(|e| {
            tracing::error!(error = %e, request_id = %guard.request_id, "audit log append failed");
            W::audit_unavailable()
        })?;
        guard.streamed = true;
        let audit = Arc::clone(&guard.state.audit);
        let sent = guard.state.metrics.read_counter();
        Ok(Body::from_stream(count_and_audit(
            body, audit, template, expected, sent,
        )))
    }
}

/// Records who the token names in the request's audit event.
fn note_token(event: &mut Event, token: &VerifiedToken) {
    let claims = &token.claims;
    event.tenant = Some(claims.tid.clone());
    event.token_uti = Some(claims.uti.clone());
    event.principal = Some(AuditPrincipal {
        oid: Some(claims.oid.clone()),
        appid: claims.client_app_id().map(str::to_owned),
        name: claims
            .name
            .clone()
            .or_else(|| claims.upn.clone())
            .or_else(|| claims.preferred_username.clone()),
    });
}

/// The RBAC principal a token names: its `oid`, its client app, and its groups.
fn rbac_principal(token: &VerifiedToken, directory: Option<&GroupDirectory>) -> Principal {
    let claims = &token.claims;
    let token_groups = claims.groups.as_deref().unwrap_or_default();
    let mut principal = crate::groups::principal_with_groups(&claims.oid, token_groups, directory);
    if let Some(app) = claims.client_app_id() {
        principal = principal.with_app_id(app);
    }
    principal
}

/// A header's value, when it is text.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Header a client (the TensorFlow plugin) sets to name its training run.
pub const RUN_ID_HEADER: &str = "x-ms-entraflow-run-id";

/// The training run: `x-ms-entraflow-run-id`, else the part of
/// `x-ms-client-request-id` before its first `:` (clients send `<run>:<uuid>`).
fn run_id(headers: &HeaderMap) -> Option<String> {
    if let Some(run) = header(headers, RUN_ID_HEADER) {
        return Some(run.to_owned());
    }
    let client_id = header(headers, "x-ms-client-request-id")?;
    client_id
        .split_once(':')
        .map(|(run, _)| run.to_owned())
        .filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn run_id_comes_from_the_header_or_the_client_request_id() {
        assert_eq!(
            run_id(&headers(&[(RUN_ID_HEADER, "run-7")])).as_deref(),
            Some("run-7")
        );
        assert_eq!(
            run_id(&headers(&[("x-ms-client-request-id", "run-8:1234")])).as_deref(),
            Some("run-8")
        );
        assert_eq!(
            run_id(&headers(&[("x-ms-client-request-id", "1234-5678")])),
            None
        );
    }
}
