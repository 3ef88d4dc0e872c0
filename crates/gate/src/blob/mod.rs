//! Azure Blob REST: a request is classified into an [`Operation`], passes the
//! [`Guard`] (token, role check, audit), and is served by the operation's module:
//! `container` (create, delete, properties, metadata), `list` (List Containers,
//! List Blobs), `object` (one blob: get, properties, put, metadata, copy, delete), `block`
//! (Put Block, Put Block List) and `batch` (Blob Batch deletes, each part guarded
//! on its own).

mod batch;
mod block;
mod container;
mod list;
pub(crate) mod multipart;
pub(crate) mod object;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use entraflow_audit::EventType;
use entraflow_rbac::{Request as RbacRequest, Scope};

use crate::error::StorageError;
use crate::guard::{GateState, Guard, HttpWire, Wire, header};
use crate::names::{self, Target};
use crate::operation::{Operation, Query};
use crate::tags;
use crate::verify::{AuthError, TokenVerifier};

/// Service version the gate answers with when the client names none it knows.
pub const SERVICE_VERSION: &str = "2025-11-05";
/// OAuth needs x-ms-version 2017-11-09 or later (Azure refuses older ones).
const OLDEST_OAUTH_VERSION: &str = "2017-11-09";
/// Largest XML or batch body accepted (50,000 block ids fit comfortably).
const MAX_XML_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Header with the denial explanation on 403s.
pub const DENIAL_HEADER: &str = "x-ms-entraflow-denial";

impl Wire for StorageError {
    fn verifier(state: &GateState) -> &TokenVerifier {
        &state.verifier
    }

    fn unauthenticated(err: &AuthError, state: &GateState) -> Self {
        const MESSAGE: &str = "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.";
        match err {
            AuthError::Missing => StorageError::new(
                StatusCode::UNAUTHORIZED,
                "NoAuthenticationInformation",
                MESSAGE,
            )
            .header("www-authenticate", state.challenge.clone()),
            AuthError::KeyBasedNotPermitted => StorageError::new(
                StatusCode::FORBIDDEN,
                "KeyBasedAuthenticationNotPermitted",
                "Key based authentication is not permitted on this storage account.",
            ),
            other => StorageError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationInfo",
                MESSAGE,
            )
            .detail("AuthenticationErrorDetail", other.to_string())
            .header("www-authenticate", state.challenge.clone()),
        }
    }

    fn forbidden(denial: &entraflow_rbac::Denial) -> Self {
        let explanation = denial.to_string();
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
        StorageError::new(
            StatusCode::FORBIDDEN,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        )
        .detail("AuthorizationDenialDetail", explanation)
        .header(DENIAL_HEADER, header_text)
    }

    fn audit_unavailable() -> Self {
        StorageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServerBusy",
            "The server is currently unable to receive requests. Please retry your request.",
        )
        .detail("Reason", "the audit log is unavailable")
    }

    fn summary(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

impl HttpWire for StorageError {
    fn into_response(self, request_id: &str, head: bool) -> Response {
        StorageError::into_response(self, request_id, head)
    }

    fn stamp(response: &mut Response, request_id: &str, request: &HeaderMap) {
        let h = response.headers_mut();
        set_header(h, "x-ms-request-id", request_id);
        if let Some(client_id) = header(request, "x-ms-client-request-id") {
            set_header(h, "x-ms-client-request-id", client_id);
        }
        let version = header(request, "x-ms-version")
            .filter(|v| *v >= OLDEST_OAUTH_VERSION)
            .unwrap_or(SERVICE_VERSION);
        set_header(h, "x-ms-version", version);
        set_header(
            h,
            "date",
            &httpdate::fmt_http_date(std::time::SystemTime::now()),
        );
        set_header(
            h,
            "server",
            concat!(
                "Windows-Azure-Blob/1.0 entraflow-gate/",
                env!("CARGO_PKG_VERSION")
            ),
        );
    }
}

/// Serves one Blob REST request through the guard.
pub(crate) async fn handle(state: Arc<GateState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut guard = Guard::begin(&state, EventType::Other("request".into()), &parts);
    let result = serve(&state, &mut guard, &parts, body).await;
    guard
        .finish(result, parts.method == Method::HEAD, &parts.headers)
        .await
}

async fn serve(
    state: &GateState,
    guard: &mut Guard,
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<Response, StorageError> {
    let headers = &parts.headers;
    let target = names::parse_target(parts.uri.path(), &state.account)?;
    let query = Query::parse(parts.uri.query());
    let op = Operation::classify(&parts.method, &target, &query, headers)?;
    guard.set_operation(crate::metrics::OpLabel::Blob(op));
    let event = guard.event();
    event.event_type = op.event_type();
    event.operation = Some(op.name().to_owned());
    event.action = Some(op.action().0.to_owned());
    event.resource = Some(resource_scope(&state.account_scope, &target));

    guard
        .authenticate::<StorageError>(header(headers, "authorization"))
        .await?;
    check_version(headers)?;

    if op == Operation::BlobBatch {
        return batch::serve(state, guard, headers, body).await;
    }
    if op == Operation::CopyBlob {
        // Copy reads its source: that needs read there. Checked first, so that the
        // record ends with the destination's write decision, which replaces it.
        let (c, b) = object::copy_source(state, headers)?;
        let source = Target::Blob(c, b);
        let read = rbac_request(state, Operation::GetBlob, &source, &Query::default())?;
        guard.authorize::<StorageError>(read)?;
    }
    let mut request = rbac_request(state, op, &target, &query)?;
    if matches!(
        op,
        Operation::PutBlob | Operation::PutBlockList | Operation::CopyBlob
    ) && let Some(tags) = tags::upload_tags(headers)?
    {
        request = request
            .with_sub_operation(entraflow_rbac::action::blob::SUB_OPERATION_WITH_TAG_HEADERS)
            .with_request_tags(tags);
    }
    let mut access = guard.authorize::<StorageError>(request)?;
    if op.mutates() {
        access.record_decision::<StorageError>(None).await?;
    }

    match (op, &target) {
        (Operation::ListContainers, _) => list::containers(access, &query),
        (Operation::CreateContainer, Target::Container(c)) => container::create(access, c, headers),
        (Operation::DeleteContainer, Target::Container(c)) => {
            container::delete(access, c, headers).await
        }
        (Operation::GetContainerProperties, Target::Container(c)) => {
            container::properties(access, c, headers)
        }
        (Operation::SetContainerMetadata, Target::Container(c)) => {
            container::set_metadata(access, c, headers)
        }
        (Operation::ListBlobs, Target::Container(c)) => list::blobs(access, c, &query).await,
        (Operation::GetBlob, Target::Blob(c, b)) => object::get(access, c, b, headers).await,
        (Operation::GetBlobProperties, Target::Blob(c, b)) => {
            object::properties(access, c, b, headers).await
        }
        (Operation::PutBlob, Target::Blob(c, b)) => object::put(access, c, b, headers, body).await,
        (Operation::PutBlock, Target::Blob(c, b)) => {
            block::put(access, c, b, &query, headers, body).await
        }
        (Operation::GetBlockList, Target::Blob(c, b)) => block::list(access, c, b, &query).await,
        (Operation::SetBlobProperties, Target::Blob(c, b)) => {
            object::set_properties(access, c, b, headers).await
        }
        (Operation::AbortCopyBlob, Target::Blob(c, b)) => {
            object::abort_copy(access, c, b, &query, headers).await
        }
        (Operation::GetAccountInformation, _) => Ok(object::account_information()),
        (Operation::LeaseBlob, Target::Blob(c, b)) => object::lease(access, c, b, headers).await,
        (Operation::GetBlobTags, Target::Blob(c, b)) => {
            object::get_tags(access, c, b, headers).await
        }
        (Operation::SetBlobTags, Target::Blob(c, b)) => {
            object::set_tags(access, c, b, headers, body).await
        }
        (Operation::FindBlobsByTags, _) => list::find_by_tags(access, target.container(), &query),
        (Operation::LeaseContainer, Target::Container(c)) => container::lease(access, c, headers),
        (Operation::PutBlockList, Target::Blob(c, b)) => {
            block::commit(access, c, b, headers, body).await
        }
        (Operation::CopyBlob, Target::Blob(c, b)) => object::copy(access, c, b, headers).await,
        (Operation::SetBlobMetadata, Target::Blob(c, b)) => {
            object::set_metadata(access, c, b, headers).await
        }
        (Operation::DeleteBlob, Target::Blob(c, b)) => object::delete(access, c, b, headers).await,
        _ => Err(StorageError::unsupported("this operation on this resource")),
    }
}

/// Bearer tokens need a recent enough `x-ms-version`.
fn check_version(headers: &HeaderMap) -> Result<(), StorageError> {
    match header(headers, "x-ms-version") {
        None => Err(StorageError::missing_header("x-ms-version")),
        Some(v) if v < OLDEST_OAUTH_VERSION => {
            Err(
                StorageError::invalid_header_value("x-ms-version", v).detail(
                    "Reason",
                    format!("Bearer tokens need x-ms-version {OLDEST_OAUTH_VERSION} or later"),
                ),
            )
        }
        Some(_) => Ok(()),
    }
}

/// The RBAC question an operation on a target asks: its action at the blob's
/// container (or the account), with the blob path, index tags and sub-operation
/// conditions see.
fn rbac_request(
    state: &GateState,
    op: Operation,
    target: &Target,
    query: &Query,
) -> Result<RbacRequest, StorageError> {
    let (action, kind) = op.action();
    let scope = match target.container() {
        Some(c) => state
            .account_scope
            .container(c)
            .ok_or_else(StorageError::invalid_resource_name)?,
        None => state.account_scope.clone(),
    };
    let mut request = match kind {
        entraflow_rbac::ActionKind::Data => RbacRequest::data(action, scope),
        _ => RbacRequest::control(action, scope),
    };
    if let Target::Blob(c, b) = target {
        // Conditions may test the blob's index tags, so every blob decision (a
        // copy's source read and batch parts too) carries them.
        request = request
            .with_blob(b.clone())
            .with_resource_tags(state.tags_for_conditions(c, b));
    }
    if let Some(sub) = op.sub_operation() {
        request = request.with_sub_operation(sub);
        request = request.with_list_prefix(query.get("prefix").unwrap_or_default());
    }
    Ok(request)
}

/// Full Azure scope of a target, down to the blob (for the audit record).
fn resource_scope(account: &Scope, target: &Target) -> String {
    match target {
        Target::Service => account.as_str().to_owned(),
        Target::Container(c) => format!("{}/blobServices/default/containers/{c}", account.as_str()),
        Target::Blob(c, b) => format!(
            "{}/blobServices/default/containers/{c}/blobs/{b}",
            account.as_str()
        ),
    }
}

/// `x-ms-meta-*` headers, sorted by name.
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

/// Reads a whole XML or multipart body, refusing one over [`MAX_XML_BODY_BYTES`].
async fn read_small_body(body: Body) -> Result<bytes::Bytes, StorageError> {
    axum::body::to_bytes(body, MAX_XML_BODY_BYTES)
        .await
        .map_err(|_| {
            StorageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestBodyTooLarge",
                "The request body is too large and exceeds the maximum permissible limit.",
            )
        })
}

/// A streamed request body, its read errors as Azure's 400 `InvalidInput`.
fn body_stream(
    body: Body,
) -> impl futures::Stream<Item = Result<bytes::Bytes, StorageError>> + Send + Unpin + 'static {
    use futures::TryStreamExt;
    body.into_data_stream().map_err(|e| {
        StorageError::new(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            format!("The request body could not be read: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_headers_are_collected() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-ms-meta-b", "2"),
            ("x-ms-meta-a", "1"),
            ("x-ms-version", "x"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        assert_eq!(
            metadata(&h),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
    }
}
