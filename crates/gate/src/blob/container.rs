//! Create Container, Delete Container, Get Container Properties, Set Container
//! Metadata and Lease Container.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use time::OffsetDateTime;

use super::object::{lease_response, set_lease_headers};
use super::{empty, metadata, set_header, set_metadata_headers};
use crate::conditions::{Conditions, Current, Subject};
use crate::error::StorageError;
use crate::guard::Access;
use crate::lease::{self, On};
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

pub(super) async fn delete(
    access: Access<'_>,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    let container = store.container(name)?;
    check(&container, headers, true)?;
    store.delete_container(name).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(super) fn properties(
    access: Access<'_>,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let container = access.store().container(name)?;
    check(&container, headers, false)?;
    Ok(response(StatusCode::OK, &container, true))
}

pub(super) fn set_metadata(
    access: Access<'_>,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    let container = store.container(name)?;
    // Set Container Metadata takes a lease id, but does not need one.
    check(&container, headers, false)?;
    let updated = store.set_container_metadata(name, &metadata(headers))?;
    Ok(response(StatusCode::OK, &updated, false))
}

/// Lease Container: acquire, renew, change, release or break.
pub(super) fn lease(
    access: Access<'_>,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    let container = store.container(name)?;
    conditions(&container, headers)?;
    let outcome = lease::act(container.lease.as_ref(), headers, OffsetDateTime::now_utc())?;
    store.set_lease(name, "", outcome.lease.as_ref())?;
    Ok(lease_response(
        &outcome,
        &container.etag,
        container.last_modified,
    ))
}

/// The container's lease and its `If-Modified-Since`/`If-Unmodified-Since` (the
/// conditions containers take).
fn check(container: &Container, headers: &HeaderMap, write: bool) -> Result<(), StorageError> {
    lease::check(
        container.lease.as_ref(),
        headers,
        write,
        On::Container,
        OffsetDateTime::now_utc(),
    )?;
    conditions(container, headers)
}

fn conditions(container: &Container, headers: &HeaderMap) -> Result<(), StorageError> {
    Conditions::from_headers(headers, Subject::Resource)?.check_write(Some(Current {
        etag: &container.etag,
        last_modified: container.last_modified,
    }))
}

fn response(status: StatusCode, c: &Container, properties: bool) -> Response {
    let mut response = empty(status);
    let h = response.headers_mut();
    set_header(h, "etag", &c.etag);
    set_header(h, "last-modified", &rfc1123(c.last_modified));
    if properties {
        set_metadata_headers(h, &c.metadata);
        set_lease_headers(h, c.lease.as_ref());
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
