//! Create Container, Delete Container, Get Container Properties and Set Container
//! Metadata.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{empty, metadata, set_header, set_metadata_headers};
use crate::error::StorageError;
use crate::guard::Access;
use crate::store::Container;
use crate::xml::rfc1123;

pub(super) fn create(
    access: Access<'_>,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let created = access.store().create_container(name, &metadata(headers))?;
    Ok(response(StatusCode::CREATED, &created, false))
}

pub(super) async fn delete(access: Access<'_>, name: &str) -> Result<Response, StorageError> {
    access.store().delete_container(name).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(super) fn properties(access: Access<'_>, name: &str) -> Result<Response, StorageError> {
    Ok(response(
        StatusCode::OK,
        &access.store().container(name)?,
        true,
    ))
}

pub(super) fn set_metadata(
    access: Access<'_>,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let updated = access
        .store()
        .set_container_metadata(name, &metadata(headers))?;
    Ok(response(StatusCode::OK, &updated, false))
}

fn response(status: StatusCode, c: &Container, properties: bool) -> Response {
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
