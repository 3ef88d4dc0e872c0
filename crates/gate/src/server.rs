//! The request pipeline: address → operation → token → role check → storage →
//! audit, and the headers Azure puts on every response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use entraflow_audit::{Decision as AuditDecision, Event, EventType, Principal as AuditPrincipal};
use entraflow_rbac::{Decision, Principal, Request as RbacRequest, Scope};
use futures::TryStreamExt;
use object_store::{GetOptions, GetRange};
use time::OffsetDateTime;

use crate::audit::{AuditSink, count_and_audit};
use crate::batch;
use crate::error::StorageError;
use crate::names::{self, Target};
use crate::operation::{Operation, Query};
use crate::store::{BlobInfo, BlobProperties, BlobStore, Container};
use crate::verify::{AuthError, TokenVerifier, VerifiedToken};
use crate::xml::{escape, rfc1123};

/// Service version the gate answers with when the client names none it knows.
pub const SERVICE_VERSION: &str = "2025-11-05";
/// OAuth needs x-ms-version 2017-11-09 or later (Azure refuses older ones).
const OLDEST_OAUTH_VERSION: &str = "2017-11-09";
/// Largest Put Block List body accepted (50,000 block ids fit comfortably).
const MAX_BLOCK_LIST_BYTES: usize = 8 * 1024 * 1024;
/// Header with the denial explanation on 403s.
pub const DENIAL_HEADER: &str = "x-ms-entraflow-denial";
/// Header a client (the TensorFlow plugin) sets to name its training run.
pub const RUN_ID_HEADER: &str = "x-ms-entraflow-run-id";

/// Everything a request needs; shared by all connections.
pub(crate) struct AppState {
    pub(crate) account: String,
    pub(crate) account_url: String,
    pub(crate) account_scope: Scope,
    pub(crate) store: BlobStore,
    pub(crate) verifier: TokenVerifier,
    /// Verifies admin API tokens: ARM audiences, the same keys as `verifier`.
    pub(crate) admin_verifier: TokenVerifier,
    pub(crate) authorizer: Arc<entraflow_rbac::Authorizer>,
    pub(crate) audit: Arc<dyn AuditSink>,
    /// `WWW-Authenticate` value of 401s.
    pub(crate) challenge: String,
    /// `WWW-Authenticate` value of the admin API's 401s.
    pub(crate) admin_challenge: String,
}

/// The gate's router: every path goes through [`handle`].
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Per-request facts that end up in headers and the audit record.
struct Ctx {
    request_id: String,
    started: Instant,
    method: Method,
    event: Event,
    /// Set when a streamed body writes its own completion record.
    streaming: bool,
}

async fn handle(State(app): State<Arc<AppState>>, req: Request) -> Response {
    if crate::admin::is_admin_path(req.uri().path(), &app.account) {
        return crate::admin::handle(&app, req).await;
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let headers = req.headers().clone();
    let mut event = Event::new(EventType::Other("request".into()));
    event.request_id = Some(request_id.clone());
    event.client_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    event.user_agent = header(&headers, "user-agent").map(str::to_owned);
    event.run_id = run_id(&headers);
    let mut ctx = Ctx {
        request_id,
        started: Instant::now(),
        method: req.method().clone(),
        event,
        streaming: false,
    };

    let result = app.process(&mut ctx, req).await;
    let mut response = match result {
        Ok(response) => response,
        Err(err) => {
            if ctx.event.detail.is_none() && err.status.is_client_error() {
                ctx.event.detail = Some(format!("{}: {}", err.code, err.message));
            }
            err.into_response(&ctx.request_id, ctx.method == Method::HEAD)
        }
    };
    if !ctx.streaming {
        ctx.event.status = Some(response.status().as_u16());
        ctx.event.duration_ms = Some(ctx.started.elapsed().as_millis() as u64);
        if let Err(e) = app.audit.append(ctx.event).await {
            // Fail closed: a request that cannot be audited is not answered as done.
            tracing::error!(error = %e, request_id = %ctx.request_id, "audit log append failed");
            response = StorageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServerBusy",
                "The server is currently unable to receive requests. Please retry your request.",
            )
            .detail("Reason", "the audit log is unavailable")
            .into_response(&ctx.request_id, ctx.method == Method::HEAD);
        }
    }
    finish_headers(&mut response, &ctx.request_id, &headers);
    response
}

fn finish_headers(response: &mut Response, request_id: &str, request: &HeaderMap) {
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(h, "x-ms-request-id", request_id);
    if let Some(client_id) = header(request, "x-ms-client-request-id") {
        set(h, "x-ms-client-request-id", client_id);
    }
    let version = header(request, "x-ms-version")
        .filter(|v| *v >= OLDEST_OAUTH_VERSION)
        .unwrap_or(SERVICE_VERSION);
    set(h, "x-ms-version", version);
    set(
        h,
        "date",
        &httpdate::fmt_http_date(std::time::SystemTime::now()),
    );
    set(
        h,
        "server",
        concat!(
            "Windows-Azure-Blob/1.0 entraflow-gate/",
            env!("CARGO_PKG_VERSION")
        ),
    );
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

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

fn metadata(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut meta: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix("x-ms-meta-")?;
            Some((name.to_owned(), v.to_str().ok()?.to_owned()))
        })
        .collect();
    meta.sort();
    meta
}

fn parse_max_results(query: &Query) -> Result<usize, StorageError> {
    match query.get("maxresults") {
        None => Ok(5000),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=5000).contains(&n) => Ok(n),
            _ => Err(StorageError::invalid_query_parameter(
                "maxresults",
                v,
                "must be an integer from 1 to 5000",
            )),
        },
    }
}

impl AppState {
    async fn process(&self, ctx: &mut Ctx, req: Request) -> Result<Response, StorageError> {
        let (parts, body) = req.into_parts();
        let headers = &parts.headers;
        let target = names::parse_target(parts.uri.path(), &self.account)?;
        let query = Query::parse(parts.uri.query());
        let op = Operation::classify(&parts.method, &target, &query, headers)?;
        let (action, _) = op.action();
        ctx.event.event_type = op.event_type();
        ctx.event.action = Some(action.to_owned());
        ctx.event.resource = Some(self.resource_scope(&target));

        let token = match self
            .verifier
            .verify_header(header(headers, "authorization"))
            .await
        {
            Ok(token) => token,
            Err(err) => {
                ctx.event.event_type = EventType::AuthnFailed;
                ctx.event.decision = Some(AuditDecision::Deny);
                ctx.event.detail = Some(err.to_string());
                return Err(self.auth_error(&err));
            }
        };
        note_token(&mut ctx.event, &token);
        match header(headers, "x-ms-version") {
            None => return Err(StorageError::missing_header("x-ms-version")),
            Some(v) if v < OLDEST_OAUTH_VERSION => {
                return Err(
                    StorageError::invalid_header_value("x-ms-version", v).detail(
                        "Reason",
                        format!("Bearer tokens need x-ms-version {OLDEST_OAUTH_VERSION} or later"),
                    ),
                );
            }
            Some(_) => {}
        }

        if op == Operation::BlobBatch {
            return self.batch(ctx, headers, body).await;
        }
        if op == Operation::CopyBlob {
            // Copy reads its source: that needs read there. Checked first so the
            // audit record ends with the destination's write decision.
            let (src_container, src_blob) = self.copy_source(headers)?;
            let src = Target::Blob(src_container, src_blob);
            self.authorize(ctx, &token, Operation::GetBlob, &src, &Query::default())?;
        }
        self.authorize(ctx, &token, op, &target, &query)?;

        match (op, &target) {
            (Operation::ListContainers, _) => self.list_containers(&query),
            (Operation::CreateContainer, Target::Container(c)) => {
                let created = self.store.create_container(c, &metadata(headers))?;
                Ok(container_response(StatusCode::CREATED, &created, false))
            }
            (Operation::DeleteContainer, Target::Container(c)) => {
                self.store.delete_container(c).await?;
                Ok(empty(StatusCode::ACCEPTED))
            }
            (Operation::GetContainerProperties, Target::Container(c)) => Ok(container_response(
                StatusCode::OK,
                &self.store.container(c)?,
                true,
            )),
            (Operation::SetContainerMetadata, Target::Container(c)) => {
                let updated = self.store.set_container_metadata(c, &metadata(headers))?;
                Ok(container_response(StatusCode::OK, &updated, false))
            }
            (Operation::ListBlobs, Target::Container(c)) => self.list_blobs(c, &query).await,
            (Operation::GetBlob, Target::Blob(c, b)) => self.get_blob(ctx, c, b, headers).await,
            (Operation::GetBlobProperties, Target::Blob(c, b)) => {
                self.store.container(c)?;
                let info = self.store.blob_info(c, b).await?;
                check_conditions(headers, &info.etag)?;
                let mut response = empty(StatusCode::OK);
                blob_headers(response.headers_mut(), &info, true);
                set_len(&mut response, info.size);
                Ok(response)
            }
            (Operation::PutBlob, Target::Blob(c, b)) => {
                self.store.container(c)?;
                match header(headers, "x-ms-blob-type") {
                    None => return Err(StorageError::missing_header("x-ms-blob-type")),
                    Some("BlockBlob") => {}
                    Some(other) => {
                        return Err(StorageError::invalid_header_value("x-ms-blob-type", other)
                            .detail("Reason", "the gate stores block blobs only"));
                    }
                }
                self.check_write_conditions(headers, c, b).await?;
                let props = properties(headers, true);
                let body = body.into_data_stream().map_err(|e| {
                    StorageError::new(
                        StatusCode::BAD_REQUEST,
                        "InvalidInput",
                        format!("The request body could not be read: {e}"),
                    )
                });
                let (info, written) = self.store.put_blob(c, b, body, &props).await?;
                ctx.event.bytes = Some(written);
                Ok(write_response(&info, props.content_md5.as_deref()))
            }
            (Operation::PutBlock, Target::Blob(c, b)) => {
                self.store.container(c)?;
                let id_text = query.get("blockid").ok_or_else(|| {
                    StorageError::invalid_query_parameter(
                        "blockid",
                        "",
                        "a Put Block needs a blockid",
                    )
                })?;
                let id = B64
                    .decode(id_text)
                    .map_err(|_| StorageError::invalid_block_id())?;
                if id.is_empty() || id.len() > 64 {
                    return Err(StorageError::invalid_block_id());
                }
                let body = body.into_data_stream().map_err(|e| {
                    StorageError::new(
                        StatusCode::BAD_REQUEST,
                        "InvalidInput",
                        format!("The request body could not be read: {e}"),
                    )
                });
                let written = self.store.put_block(c, b, &id, body).await?;
                ctx.event.bytes = Some(written);
                ctx.event.detail = Some(format!("staged block {id_text}"));
                let mut response = empty(StatusCode::CREATED);
                response.headers_mut().insert(
                    "x-ms-request-server-encrypted",
                    HeaderValue::from_static("true"),
                );
                Ok(response)
            }
            (Operation::PutBlockList, Target::Blob(c, b)) => {
                self.store.container(c)?;
                self.check_write_conditions(headers, c, b).await?;
                let xml = axum::body::to_bytes(body, MAX_BLOCK_LIST_BYTES)
                    .await
                    .map_err(|_| StorageError::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum permissible limit."))?;
                let refs = crate::xml::parse_block_list(&xml)?;
                let mut ids = Vec::with_capacity(refs.len());
                for r in &refs {
                    if matches!(r, crate::xml::BlockRef::Committed(_)) {
                        // The gate keeps no per-blob block list: committed blocks are gone after commit.
                        return Err(StorageError::invalid_block_list().detail("Reason", "the gate does not keep committed blocks; re-stage them and commit them as Latest"));
                    }
                    ids.push(
                        B64.decode(r.id())
                            .map_err(|_| StorageError::invalid_block_id())?,
                    );
                }
                let props = properties(headers, false);
                let info = self.store.commit_blocks(c, b, &ids, &props).await?;
                ctx.event.bytes = Some(info.size);
                ctx.event.detail = Some(format!("committed {} blocks", ids.len()));
                Ok(write_response(&info, None))
            }
            (Operation::CopyBlob, Target::Blob(c, b)) => {
                self.store.container(c)?;
                let (sc, sb) = self.copy_source(headers)?;
                self.store.container(&sc)?;
                self.check_write_conditions(headers, c, b).await?;
                let meta = metadata(headers);
                let info = self
                    .store
                    .copy_blob((&sc, &sb), (c, b), (!meta.is_empty()).then_some(meta))
                    .await?;
                ctx.event.bytes = Some(info.size);
                ctx.event.detail = Some(format!("copied from {sc}/{sb}"));
                let mut response = empty(StatusCode::ACCEPTED);
                let h = response.headers_mut();
                set_header(h, "etag", &info.etag);
                set_header(h, "last-modified", &rfc1123(info.last_modified));
                set_header(h, "x-ms-copy-id", &uuid::Uuid::new_v4().to_string());
                set_header(h, "x-ms-copy-status", "success");
                Ok(response)
            }
            (Operation::SetBlobMetadata, Target::Blob(c, b)) => {
                self.store.container(c)?;
                if let Some(etag) = header(headers, "if-match") {
                    let info = self.store.blob_info(c, b).await?;
                    if etag != "*" && etag != info.etag {
                        return Err(StorageError::condition_not_met());
                    }
                }
                let info = self
                    .store
                    .set_blob_metadata(c, b, metadata(headers))
                    .await?;
                let mut response = write_response(&info, None);
                *response.status_mut() = StatusCode::OK;
                Ok(response)
            }
            (Operation::DeleteBlob, Target::Blob(c, b)) => {
                self.store.container(c)?;
                if let Some(etag) = header(headers, "if-match") {
                    let info = self.store.blob_info(c, b).await?;
                    if etag != "*" && etag != info.etag {
                        return Err(StorageError::condition_not_met());
                    }
                }
                self.store.delete_blob(c, b).await?;
                Ok(empty(StatusCode::ACCEPTED))
            }
            _ => Err(StorageError::unsupported("this operation on this resource")),
        }
    }

    /// Full Azure scope of a target, down to the blob (for the audit record).
    fn resource_scope(&self, target: &Target) -> String {
        match target {
            Target::Service => self.account_scope.as_str().to_owned(),
            Target::Container(c) => format!(
                "{}/blobServices/default/containers/{c}",
                self.account_scope.as_str()
            ),
            Target::Blob(c, b) => format!(
                "{}/blobServices/default/containers/{c}/blobs/{b}",
                self.account_scope.as_str()
            ),
        }
    }

    fn auth_error(&self, err: &AuthError) -> StorageError {
        match err {
            AuthError::Missing => StorageError::new(StatusCode::UNAUTHORIZED, "NoAuthenticationInformation", "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.")
                .header("www-authenticate", self.challenge.clone()),
            AuthError::KeyBasedNotPermitted => StorageError::new(StatusCode::FORBIDDEN, "KeyBasedAuthenticationNotPermitted", "Key based authentication is not permitted on this storage account."),
            other => StorageError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationInfo", "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.")
                .detail("AuthenticationErrorDetail", other.to_string())
                .header("www-authenticate", self.challenge.clone()),
        }
    }

    /// Checks the role assignments; a denial becomes Azure's 403 plus an explanation.
    fn authorize(
        &self,
        ctx: &mut Ctx,
        token: &VerifiedToken,
        op: Operation,
        target: &Target,
        query: &Query,
    ) -> Result<(), StorageError> {
        let (action, kind) = op.action();
        let scope = match target.container() {
            Some(c) => self
                .account_scope
                .container(c)
                .ok_or_else(StorageError::invalid_resource_name)?,
            None => self.account_scope.clone(),
        };
        let mut request = match kind {
            entraflow_rbac::ActionKind::Data => RbacRequest::data(action, scope),
            _ => RbacRequest::control(action, scope),
        };
        if let Target::Blob(_, b) = target {
            request = request.with_blob(b.clone());
        }
        if let Some(sub) = op.sub_operation() {
            request = request.with_sub_operation(sub);
            request = request.with_list_prefix(query.get("prefix").unwrap_or_default());
        }
        let principal = rbac_principal(token);
        match self
            .authorizer
            .authorize(&principal, &request, OffsetDateTime::now_utc())
        {
            Decision::Allow {
                assignment_id,
                role_name,
                ..
            } => {
                ctx.event.decision = Some(AuditDecision::Allow);
                ctx.event.assignment_id = Some(assignment_id.to_string());
                ctx.event.role_name = Some(role_name.to_string());
                Ok(())
            }
            Decision::Deny(denial) => {
                let explanation = denial.to_string();
                ctx.event.event_type = EventType::AuthzDenied;
                ctx.event.decision = Some(AuditDecision::Deny);
                ctx.event.action = Some(action.to_owned());
                ctx.event.detail = Some(explanation.clone());
                let header_text: String = explanation
                    .chars()
                    .map(|c| {
                        if c.is_ascii() && !c.is_ascii_control() {
                            c
                        } else {
                            '?'
                        }
                    })
                    .collect();
                Err(StorageError::new(StatusCode::FORBIDDEN, "AuthorizationPermissionMismatch", "This request is not authorized to perform this operation using this permission.")
                    .detail("AuthorizationDenialDetail", explanation)
                    .header(DENIAL_HEADER, header_text))
            }
        }
    }

    /// `x-ms-copy-source` must name a blob of this gate's account.
    fn copy_source(&self, headers: &HeaderMap) -> Result<(String, String), StorageError> {
        let raw = header(headers, "x-ms-copy-source")
            .ok_or_else(|| StorageError::missing_header("x-ms-copy-source"))?;
        let url = url::Url::parse(raw)
            .map_err(|_| StorageError::invalid_header_value("x-ms-copy-source", raw))?;
        match names::parse_target(url.path(), &self.account) {
            Ok(Target::Blob(c, b)) => Ok((c, b)),
            _ => Err(StorageError::cannot_verify_copy_source(
                "The gate copies only between blobs of its own account.",
            )),
        }
    }

    /// `If-None-Match: *` (no overwrite) and `If-Match` on writes.
    async fn check_write_conditions(
        &self,
        headers: &HeaderMap,
        c: &str,
        b: &str,
    ) -> Result<(), StorageError> {
        let if_none = header(headers, "if-none-match");
        let if_match = header(headers, "if-match");
        if if_none.is_none() && if_match.is_none() {
            return Ok(());
        }
        let current = match self.store.blob_info(c, b).await {
            Ok(info) => Some(info.etag),
            Err(e) if e.code == "BlobNotFound" => None,
            Err(e) => return Err(e),
        };
        if let Some(v) = if_none {
            if v == "*" && current.is_some() {
                return Err(StorageError::blob_already_exists());
            }
            if current.as_deref() == Some(v) {
                return Err(StorageError::condition_not_met());
            }
        }
        if let Some(v) = if_match
            && (current.is_none() || (v != "*" && current.as_deref() != Some(v)))
        {
            return Err(StorageError::condition_not_met());
        }
        Ok(())
    }

    fn list_containers(&self, query: &Query) -> Result<Response, StorageError> {
        let prefix = query.get("prefix").unwrap_or_default();
        let marker = query.get("marker").unwrap_or_default();
        let max = parse_max_results(query)?;
        let with_meta = query
            .get("include")
            .is_some_and(|i| i.split(',').any(|x| x == "metadata"));
        let (containers, next) = self.store.list_containers(prefix, marker, max)?;
        let mut xml = format!(
            "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}/\">",
            escape(&self.account_url)
        );
        push_opt(&mut xml, "Prefix", query.get("prefix"));
        push_opt(&mut xml, "Marker", query.get("marker"));
        push_opt(&mut xml, "MaxResults", query.get("maxresults"));
        xml.push_str("<Containers>");
        for c in &containers {
            xml.push_str(&format!(
                "<Container><Name>{}</Name><Properties><Last-Modified>{}</Last-Modified><Etag>{}</Etag><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState><DefaultEncryptionScope>$account-encryption-key</DefaultEncryptionScope><DenyEncryptionScopeOverride>false</DenyEncryptionScopeOverride><HasImmutabilityPolicy>false</HasImmutabilityPolicy><HasLegalHold>false</HasLegalHold></Properties>",
                escape(&c.name),
                rfc1123(c.last_modified),
                escape(&c.etag)
            ));
            if with_meta {
                push_metadata(&mut xml, &c.metadata);
            }
            xml.push_str("</Container>");
        }
        xml.push_str("</Containers>");
        push_next_marker(&mut xml, next.as_deref());
        xml.push_str("</EnumerationResults>");
        Ok(xml_response(xml))
    }

    async fn list_blobs(&self, container: &str, query: &Query) -> Result<Response, StorageError> {
        self.store.container(container)?;
        let prefix = query.get("prefix").unwrap_or_default();
        let delimiter = query.get("delimiter").filter(|d| !d.is_empty());
        let marker = query.get("marker").unwrap_or_default();
        let max = parse_max_results(query)?;
        let include: Vec<&str> = query
            .get("include")
            .map(|i| i.split(',').collect())
            .unwrap_or_default();
        let with_meta = include.contains(&"metadata");

        let all = self.store.list_blobs(container, prefix).await?;
        // Entries in name order; names sharing a prefix are contiguous, so each
        // common prefix (`BlobPrefix`) is emitted once.
        enum Entry {
            Blob(String, object_store::ObjectMeta),
            Prefix(String),
        }
        let mut entries: Vec<Entry> = Vec::new();
        for (name, meta) in all {
            if let Some(d) = delimiter
                && let Some(i) = name[prefix.len()..].find(d)
            {
                let p = name[..prefix.len() + i + d.len()].to_owned();
                if !matches!(entries.last(), Some(Entry::Prefix(last)) if *last == p) {
                    entries.push(Entry::Prefix(p));
                }
                continue;
            }
            entries.push(Entry::Blob(name, meta));
        }
        let key = |e: &Entry| match e {
            Entry::Blob(n, _) | Entry::Prefix(n) => n.clone(),
        };
        let start = entries.partition_point(|e| key(e).as_str() < marker);
        let page_end = (start + max).min(entries.len());
        let next = entries.get(page_end).map(key);

        let mut xml = format!(
            "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}/\" ContainerName=\"{}\">",
            escape(&self.account_url),
            escape(container)
        );
        push_opt(&mut xml, "Prefix", query.get("prefix"));
        push_opt(&mut xml, "Marker", query.get("marker"));
        push_opt(&mut xml, "MaxResults", query.get("maxresults"));
        push_opt(&mut xml, "Delimiter", delimiter);
        xml.push_str("<Blobs>");
        for entry in &entries[start..page_end] {
            match entry {
                Entry::Prefix(p) => xml.push_str(&format!(
                    "<BlobPrefix><Name>{}</Name></BlobPrefix>",
                    escape(p)
                )),
                Entry::Blob(name, meta) => {
                    let info = self.store.info_from_meta(container, name, meta);
                    push_blob(&mut xml, &info, with_meta);
                }
            }
        }
        xml.push_str("</Blobs>");
        push_next_marker(&mut xml, next.as_deref());
        xml.push_str("</EnumerationResults>");
        Ok(xml_response(xml))
    }

    /// Blob Batch: each Delete Blob sub-request is verified, authorized, executed
    /// and audited on its own; the batch itself is audited as one more event.
    async fn batch(
        &self,
        ctx: &mut Ctx,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response, StorageError> {
        let boundary = batch::boundary(header(headers, "content-type"))?;
        let bytes = axum::body::to_bytes(body, MAX_BLOCK_LIST_BYTES)
            .await
            .map_err(|_| {
                StorageError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestBodyTooLarge",
                    "The request body is too large and exceeds the maximum permissible limit.",
                )
            })?;
        let subs = batch::parse(&bytes, &boundary)?;
        let mut responses = Vec::with_capacity(subs.len());
        for sub in subs {
            responses.push(self.batch_delete(ctx, sub).await);
        }
        let failed = responses.iter().filter(|r| !r.status.is_success()).count();
        ctx.event.detail = Some(format!(
            "batch of {} deletes, {failed} failed",
            responses.len()
        ));
        let response_boundary = format!("batchresponse_{}", uuid::Uuid::new_v4());
        let mut response = Response::new(Body::from(batch::render(&response_boundary, &responses)));
        *response.status_mut() = StatusCode::ACCEPTED;
        set_header(
            response.headers_mut(),
            "content-type",
            &format!("multipart/mixed; boundary={response_boundary}"),
        );
        Ok(response)
    }

    async fn batch_delete(&self, outer: &Ctx, sub: batch::SubRequest) -> batch::SubResponse {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut event = Event::new(EventType::BlobDelete);
        event.request_id = Some(request_id.clone());
        event.client_addr = outer.event.client_addr.clone();
        event.user_agent = outer.event.user_agent.clone();
        event.run_id = outer.event.run_id.clone();
        let mut ctx = Ctx {
            request_id: request_id.clone(),
            started: Instant::now(),
            method: sub.method.clone(),
            event,
            streaming: false,
        };
        let result = self.batch_delete_inner(&mut ctx, &sub).await;
        let mut headers = vec![
            ("x-ms-request-id".to_owned(), request_id.clone()),
            ("x-ms-version".to_owned(), SERVICE_VERSION.to_owned()),
        ];
        let (status, body) = match result {
            Ok(()) => {
                headers.push(("x-ms-delete-type-permanent".to_owned(), "true".to_owned()));
                (StatusCode::ACCEPTED, String::new())
            }
            Err(err) => {
                if ctx.event.detail.is_none() {
                    ctx.event.detail = Some(format!("{}: {}", err.code, err.message));
                }
                headers.push(("x-ms-error-code".to_owned(), err.code.to_owned()));
                headers.push(("Content-Type".to_owned(), "application/xml".to_owned()));
                headers.extend(
                    err.headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone())),
                );
                (err.status, err.body(&request_id))
            }
        };
        ctx.event.status = Some(status.as_u16());
        ctx.event.duration_ms = Some(ctx.started.elapsed().as_millis() as u64);
        if let Err(e) = self.audit.append(ctx.event).await {
            tracing::error!(error = %e, "audit log append failed");
            let err = StorageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServerBusy",
                "The server is currently unable to receive requests. Please retry your request.",
            );
            return batch::SubResponse {
                content_id: sub.content_id,
                status: err.status,
                headers: vec![("x-ms-error-code".into(), err.code.into())],
                body: err.body(&request_id),
            };
        }
        batch::SubResponse {
            content_id: sub.content_id,
            status,
            headers,
            body,
        }
    }

    async fn batch_delete_inner(
        &self,
        ctx: &mut Ctx,
        sub: &batch::SubRequest,
    ) -> Result<(), StorageError> {
        if sub.method != Method::DELETE {
            return Err(StorageError::unsupported(
                "batch sub-requests other than Delete Blob",
            ));
        }
        let path = sub.path.split('?').next().unwrap_or_default();
        let account_prefix = format!("/{}/", self.account);
        let full = if path.starts_with(&account_prefix) {
            path.to_owned()
        } else {
            format!("/{}{path}", self.account)
        };
        let target = names::parse_target(&full, &self.account)?;
        ctx.event.action = Some(Operation::DeleteBlob.action().0.to_owned());
        ctx.event.resource = Some(self.resource_scope(&target));
        let Target::Blob(c, b) = &target else {
            return Err(StorageError::unsupported(
                "batch sub-requests that do not name a blob",
            ));
        };
        let token = match self
            .verifier
            .verify_header(header(&sub.headers, "authorization"))
            .await
        {
            Ok(token) => token,
            Err(err) => {
                ctx.event.event_type = EventType::AuthnFailed;
                ctx.event.decision = Some(AuditDecision::Deny);
                ctx.event.detail = Some(err.to_string());
                return Err(self.auth_error(&err));
            }
        };
        note_token(&mut ctx.event, &token);
        self.authorize(
            ctx,
            &token,
            Operation::DeleteBlob,
            &target,
            &Query::default(),
        )?;
        self.store.container(c)?;
        self.store.delete_blob(c, b).await
    }

    async fn get_blob(
        &self,
        ctx: &mut Ctx,
        container: &str,
        blob: &str,
        headers: &HeaderMap,
    ) -> Result<Response, StorageError> {
        self.store.container(container)?;
        let path = names::blob_path(container, blob);
        let info = self.store.blob_info(container, blob).await?;
        if let Some(v) = header(headers, "if-none-match")
            && (v == "*" || v == info.etag)
        {
            let mut response = empty(StatusCode::NOT_MODIFIED);
            set_header(response.headers_mut(), "etag", &info.etag);
            return Ok(response);
        }
        check_conditions(headers, &info.etag)?;
        let requested = parse_range(headers)?;
        let range = match requested {
            None => None,
            Some((start, _)) if start >= info.size => {
                return Err(StorageError::invalid_range(info.size));
            }
            Some((start, end)) => Some(start..end.map_or(info.size, |e| (e + 1).min(info.size))),
        };
        let options = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self.store.backend().get_opts(&path, options).await?;
        let size = result.meta.size;
        let served = result.range.clone();

        // The decision record is durable before the first byte goes out; the
        // stream appends a completion record with the bytes actually sent.
        ctx.event.detail = Some(match &range {
            Some(r) => format!("range bytes={}-{}", r.start, r.end.saturating_sub(1)),
            None => "full blob".to_owned(),
        });
        ctx.event.bytes = Some(served.end - served.start);
        let status = if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        ctx.event.status = Some(status.as_u16());
        ctx.event.duration_ms = Some(ctx.started.elapsed().as_millis() as u64);
        self.audit.append(ctx.event.clone()).await.map_err(|e| {
            tracing::error!(error = %e, "audit log append failed");
            StorageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServerBusy",
                "The server is currently unable to receive requests. Please retry your request.",
            )
            .detail("Reason", "the audit log is unavailable")
        })?;
        ctx.streaming = true;

        let expected = served.end - served.start;
        let body = count_and_audit(
            crate::store::body_stream(result),
            self.audit.clone(),
            ctx.event.clone(),
            expected,
        );
        let mut response = Response::new(Body::from_stream(body));
        *response.status_mut() = status;
        let h = response.headers_mut();
        blob_headers(h, &info, range.is_none());
        if range.is_some() {
            set_header(
                h,
                "content-range",
                &format!(
                    "bytes {}-{}/{}",
                    served.start,
                    served.end.saturating_sub(1),
                    size
                ),
            );
        }
        set_len(&mut response, served.end - served.start);
        Ok(response)
    }
}

/// Records who the token names in the request's audit event.
pub(crate) fn note_token(event: &mut Event, token: &VerifiedToken) {
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

/// The RBAC principal a token names: its `oid`, its groups, and its client app.
pub(crate) fn rbac_principal(token: &VerifiedToken) -> Principal {
    let claims = &token.claims;
    let mut principal =
        Principal::new(claims.oid.clone()).with_groups(claims.groups.clone().unwrap_or_default());
    if let Some(app) = claims.client_app_id() {
        principal = principal.with_app_id(app);
    }
    principal
}

/// `x-ms-range` (preferred) or `Range`: `bytes=start-[end]`, inclusive.
fn parse_range(headers: &HeaderMap) -> Result<Option<(u64, Option<u64>)>, StorageError> {
    let (name, value) = match (header(headers, "x-ms-range"), header(headers, "range")) {
        (Some(v), _) => ("x-ms-range", v),
        (None, Some(v)) => ("range", v),
        (None, None) => return Ok(None),
    };
    let parsed = value.strip_prefix("bytes=").and_then(|spec| {
        let (s, e) = spec.split_once('-')?;
        let start = s.trim().parse::<u64>().ok()?;
        let end = match e.trim() {
            "" => None,
            e => Some(e.parse::<u64>().ok()?),
        };
        (end.is_none_or(|e| e >= start)).then_some((start, end))
    });
    match parsed {
        Some(r) => Ok(Some(r)),
        // Azure ignores a malformed standard Range header but refuses a malformed x-ms-range.
        None if name == "range" => Ok(None),
        None => Err(StorageError::invalid_header_value(name, value)),
    }
}

/// `If-Match` on reads and property requests.
fn check_conditions(headers: &HeaderMap, etag: &str) -> Result<(), StorageError> {
    match header(headers, "if-match") {
        Some(v) if v != "*" && v != etag => Err(StorageError::condition_not_met()),
        _ => Ok(()),
    }
}

fn properties(headers: &HeaderMap, put_blob: bool) -> BlobProperties {
    let get = |blob_header: &str, plain: &str| {
        header(headers, blob_header)
            .or_else(|| {
                if put_blob {
                    header(headers, plain)
                } else {
                    None
                }
            })
            .map(str::to_owned)
    };
    BlobProperties {
        content_type: get("x-ms-blob-content-type", "content-type"),
        content_encoding: get("x-ms-blob-content-encoding", "content-encoding"),
        content_language: get("x-ms-blob-content-language", "content-language"),
        content_disposition: get("x-ms-blob-content-disposition", "content-disposition"),
        cache_control: get("x-ms-blob-cache-control", "cache-control"),
        content_md5: get("x-ms-blob-content-md5", "content-md5"),
        metadata: metadata(headers),
    }
}

fn set_header(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn set_len(response: &mut Response, len: u64) {
    response
        .headers_mut()
        .insert("content-length", HeaderValue::from(len));
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

fn xml_response(xml: String) -> Response {
    let mut response = Response::new(Body::from(xml));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/xml"));
    response
}

fn write_response(info: &BlobInfo, md5: Option<&str>) -> Response {
    let mut response = empty(StatusCode::CREATED);
    let h = response.headers_mut();
    set_header(h, "etag", &info.etag);
    set_header(h, "last-modified", &rfc1123(info.last_modified));
    if let Some(md5) = md5 {
        set_header(h, "content-md5", md5);
    }
    set_header(h, "x-ms-request-server-encrypted", "true");
    response
}

fn container_response(status: StatusCode, c: &Container, properties: bool) -> Response {
    let mut response = empty(status);
    let h = response.headers_mut();
    set_header(h, "etag", &c.etag);
    set_header(h, "last-modified", &rfc1123(c.last_modified));
    if properties {
        set_metadata_headers(h, &c.metadata);
        set_header(h, "x-ms-lease-status", "unlocked");
        set_header(h, "x-ms-lease-state", "available");
        set_header(h, "x-ms-has-immutability-policy", "false");
        set_header(h, "x-ms-has-legal-hold", "false");
        set_header(
            h,
            "x-ms-default-encryption-scope",
            "$account-encryption-key",
        );
        set_header(h, "x-ms-deny-encryption-scope-override", "false");
    }
    response
}

/// Headers of Get Blob and Get Blob Properties. `Content-MD5` is the whole blob's,
/// so it is sent only when the whole blob is.
fn blob_headers(h: &mut HeaderMap, info: &BlobInfo, whole: bool) {
    let p = &info.properties;
    set_header(h, "etag", &info.etag);
    set_header(h, "last-modified", &rfc1123(info.last_modified));
    set_header(
        h,
        "content-type",
        p.content_type
            .as_deref()
            .unwrap_or("application/octet-stream"),
    );
    for (name, value) in [
        ("content-encoding", &p.content_encoding),
        ("content-language", &p.content_language),
        ("content-disposition", &p.content_disposition),
        ("cache-control", &p.cache_control),
    ] {
        if let Some(v) = value {
            set_header(h, name, v);
        }
    }
    match (&p.content_md5, whole) {
        (Some(md5), true) => set_header(h, "content-md5", md5),
        (Some(md5), false) => set_header(h, "x-ms-blob-content-md5", md5),
        _ => {}
    }
    set_metadata_headers(h, &p.metadata);
    set_header(h, "accept-ranges", "bytes");
    set_header(h, "x-ms-blob-type", "BlockBlob");
    set_header(h, "x-ms-creation-time", &rfc1123(info.last_modified));
    set_header(h, "x-ms-lease-status", "unlocked");
    set_header(h, "x-ms-lease-state", "available");
    set_header(h, "x-ms-server-encrypted", "true");
    set_header(h, "x-ms-access-tier", "Hot");
    set_header(h, "x-ms-access-tier-inferred", "true");
}

fn set_metadata_headers(h: &mut HeaderMap, metadata: &[(String, String)]) {
    for (k, v) in metadata {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(format!("x-ms-meta-{k}").as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(name, value);
        }
    }
}

fn push_opt(xml: &mut String, element: &str, value: Option<&str>) {
    if let Some(v) = value {
        xml.push_str(&format!("<{element}>{}</{element}>", escape(v)));
    }
}

fn push_next_marker(xml: &mut String, next: Option<&str>) {
    match next {
        Some(m) => xml.push_str(&format!("<NextMarker>{}</NextMarker>", escape(m))),
        None => xml.push_str("<NextMarker />"),
    }
}

fn push_metadata(xml: &mut String, metadata: &[(String, String)]) {
    xml.push_str("<Metadata>");
    for (k, v) in metadata {
        xml.push_str(&format!("<{k}>{}</{k}>", escape(v)));
    }
    xml.push_str("</Metadata>");
}

fn push_blob(xml: &mut String, info: &BlobInfo, with_meta: bool) {
    let p = &info.properties;
    let opt = |v: &Option<String>| v.as_deref().map(escape).unwrap_or_default();
    xml.push_str(&format!(
        "<Blob><Name>{}</Name><Properties><Creation-Time>{lm}</Creation-Time><Last-Modified>{lm}</Last-Modified><Etag>{}</Etag><Content-Length>{}</Content-Length><Content-Type>{}</Content-Type><Content-Encoding>{}</Content-Encoding><Content-Language>{}</Content-Language><Content-CRC64 /><Content-MD5>{}</Content-MD5><Cache-Control>{}</Cache-Control><Content-Disposition>{}</Content-Disposition><BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted></Properties>",
        escape(&info.name),
        escape(&info.etag),
        info.size,
        escape(p.content_type.as_deref().unwrap_or("application/octet-stream")),
        opt(&p.content_encoding),
        opt(&p.content_language),
        opt(&p.content_md5),
        opt(&p.cache_control),
        opt(&p.content_disposition),
        lm = rfc1123(info.last_modified),
    ));
    if with_meta {
        push_metadata(xml, &p.metadata);
    }
    xml.push_str("</Blob>");
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
    fn ranges_parse_like_azure() {
        assert_eq!(parse_range(&headers(&[])).unwrap(), None);
        assert_eq!(
            parse_range(&headers(&[("x-ms-range", "bytes=0-99")])).unwrap(),
            Some((0, Some(99)))
        );
        assert_eq!(
            parse_range(&headers(&[("range", "bytes=100-")])).unwrap(),
            Some((100, None))
        );
        // x-ms-range wins over Range.
        assert_eq!(
            parse_range(&headers(&[
                ("range", "bytes=1-2"),
                ("x-ms-range", "bytes=5-9")
            ]))
            .unwrap(),
            Some((5, Some(9)))
        );
        assert_eq!(
            parse_range(&headers(&[("range", "pages=1")])).unwrap(),
            None
        );
        assert_eq!(
            parse_range(&headers(&[("x-ms-range", "bytes=9-5")]))
                .unwrap_err()
                .code,
            "InvalidHeaderValue"
        );
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

    #[test]
    fn metadata_headers_are_collected() {
        let h = headers(&[
            ("x-ms-meta-b", "2"),
            ("x-ms-meta-a", "1"),
            ("x-ms-version", "x"),
        ]);
        assert_eq!(
            metadata(&h),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
    }
}
