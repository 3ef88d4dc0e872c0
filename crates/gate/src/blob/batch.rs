//! Blob Batch: each Delete Blob sub-request passes the guard on its own (its own
//! token, decision and record); the batch itself is one more record.

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use entraflow_audit::EventType;

use super::multipart::{self, SubRequest, SubResponse};
use super::{SERVICE_VERSION, read_small_body, resource_scope, set_header};
use crate::error::StorageError;
use crate::guard::{GateState, Guard, Wire, header};
use crate::names::{self, Target};
use crate::operation::{Operation, Query};

pub(super) async fn serve(
    state: &GateState,
    guard: &mut Guard,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, StorageError> {
    let boundary = multipart::boundary(header(headers, "content-type"))?;
    let bytes = read_small_body(body).await?;
    let subs = multipart::parse(&bytes, &boundary)?;
    let mut responses = Vec::with_capacity(subs.len());
    for sub in subs {
        let mut part = guard.sub_request(EventType::BlobDelete);
        let result = delete(state, &mut part, &sub).await;
        responses.push(answer(part, sub.content_id, result).await);
    }
    let failed = responses.iter().filter(|r| !r.status.is_success()).count();
    guard.event().detail = Some(format!(
        "batch of {} deletes, {failed} failed",
        responses.len()
    ));
    let response_boundary = format!("batchresponse_{}", uuid::Uuid::new_v4());
    let mut response = Response::new(Body::from(multipart::render(
        &response_boundary,
        &responses,
    )));
    *response.status_mut() = StatusCode::ACCEPTED;
    set_header(
        response.headers_mut(),
        "content-type",
        &format!("multipart/mixed; boundary={response_boundary}"),
    );
    Ok(response)
}

async fn delete(
    state: &GateState,
    guard: &mut Guard,
    sub: &SubRequest,
) -> Result<(), StorageError> {
    if sub.method != Method::DELETE {
        return Err(StorageError::unsupported(
            "batch sub-requests other than Delete Blob",
        ));
    }
    let path = sub.path.split('?').next().unwrap_or_default();
    let account_prefix = format!("/{}/", state.account);
    let full = if path.starts_with(&account_prefix) {
        path.to_owned()
    } else {
        format!("/{}{path}", state.account)
    };
    let target = names::parse_target(&full, &state.account)?;
    let event = guard.event();
    event.operation = Some(Operation::DeleteBlob.name().to_owned());
    event.action = Some(Operation::DeleteBlob.action().0.to_owned());
    event.resource = Some(resource_scope(&state.account_scope, &target));
    let Target::Blob(c, b) = &target else {
        return Err(StorageError::unsupported(
            "batch sub-requests that do not name a blob",
        ));
    };
    guard
        .authenticate::<StorageError>(header(&sub.headers, "authorization"))
        .await?;
    let request = super::rbac_request(state, Operation::DeleteBlob, &target, &Query::default())?;
    let mut access = guard.authorize::<StorageError>(request)?;
    access.record_decision::<StorageError>(None).await?;
    super::object::remove(&mut access, c, b, &sub.headers).await
}

/// The part's answer, after its record is durable.
async fn answer(
    mut guard: Guard,
    content_id: String,
    result: Result<(), StorageError>,
) -> SubResponse {
    let request_id = guard.request_id().to_owned();
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
            let event = guard.event();
            if event.detail.is_none() {
                event.detail = Some(err.summary());
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
    if guard.complete(status).await.is_err() {
        let err = StorageError::audit_unavailable();
        return SubResponse {
            content_id,
            status: err.status,
            headers: vec![("x-ms-error-code".into(), err.code.into())],
            body: err.body(&request_id),
        };
    }
    SubResponse {
        content_id,
        status,
        headers,
        body,
    }
}
