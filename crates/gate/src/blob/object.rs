//! One blob: Get Blob, Get Blob Properties, Put Blob, Set Blob Metadata, Copy Blob
//! and Delete Blob.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::{body_stream, empty, metadata, set_header, set_len, set_metadata_headers};
use crate::conditions::{Conditions, Current, Subject};
use crate::error::StorageError;
use crate::guard::{Access, GateState, header};
use crate::integrity::{Digests, Expected, parse_md5};
use crate::lease::{self, On};
use crate::names::{self, Target};
use crate::operation::Query;
use crate::store::{BlobInfo, BlobProperties};
use crate::tags;
use crate::xml::rfc1123;

/// The largest range whose checksum Get Blob returns (`x-ms-range-get-content-*`).
const MAX_RANGE_CHECKSUM: u64 = 4 * 1024 * 1024;
/// A body at most this long is sent whole, with one audit record; a longer one
/// streams, with a completion record after it (the size `files` reads in place).
const SMALL_BODY: u64 = crate::files::SMALL_READ;

pub(super) async fn get(
    mut access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    store.container(container)?;
    let (info, source) = store.open_blob(container, blob).await?;
    // The version served, on the request's record (the one record of a small
    // read, which `Guard::finish` appends; both records of a streamed one).
    note_version(access.event(), &info);
    let store = access.store();
    check_lease(&info, headers, false)?;
    Conditions::from_headers(headers, Subject::Resource)?.check_read(current(&info))?;
    let range = match parse_range(headers)? {
        None => None,
        Some((start, _)) if start >= info.size => {
            return Err(StorageError::invalid_range(info.size));
        }
        Some((start, end)) => Some(start..end.map_or(info.size, |e| (e + 1).min(info.size))),
    };
    // A range's own checksum (`x-ms-range-get-content-md5` / `-crc64: true`), at
    // most 4 MiB, as Azure limits it.
    let asked = |name: &str| header(headers, name) == Some("true");
    let (range_md5, range_crc64) = (
        asked("x-ms-range-get-content-md5"),
        asked("x-ms-range-get-content-crc64"),
    );
    if range_md5 || range_crc64 {
        let name = if range_md5 {
            "x-ms-range-get-content-md5"
        } else {
            "x-ms-range-get-content-crc64"
        };
        match &range {
            _ if range_md5 && range_crc64 => {
                return Err(StorageError::invalid_header_value(name, "true")
                    .detail("Reason", "ask for a range's MD5 or its CRC-64, not both"));
            }
            Some(r) if r.end - r.start <= MAX_RANGE_CHECKSUM => {}
            _ => {
                return Err(StorageError::invalid_header_value(name, "true")
                    .detail("Reason", "a range checksum needs a range of at most 4 MiB"));
            }
        }
    }
    let size = info.size;
    let served = range.clone().unwrap_or(0..size);
    let len = served.end - served.start;
    let body = store.read(source, served.clone()).await?;
    let event = access.event();
    event.detail = Some(match &range {
        Some(r) => format!("range bytes={}-{}", r.start, r.end.saturating_sub(1)),
        None => "full blob".to_owned(),
    });
    event.bytes = Some(len);
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    // A range's checksum needs its bytes before the headers: at most 4 MiB, buffered.
    let (body, range_sums) = if range_md5 || range_crc64 {
        let bytes: Vec<Bytes> = body.try_collect().await?;
        let mut digests = Digests::default();
        bytes.iter().for_each(|b| digests.update(b));
        let stream = futures::stream::iter(bytes.into_iter().map(Ok)).boxed();
        (stream, Some(digests.sums()))
    } else {
        (body, None)
    };
    let body = if len <= SMALL_BODY {
        // Leaves with the headers in one write: the request's one record, durable
        // before the response (`Guard::finish`), says what was sent.
        let mut chunks: Vec<Bytes> = body.try_collect().await?;
        access.count_read_on_answer(len);
        match chunks.len() {
            1 => Body::from(chunks.pop().expect("one chunk")),
            _ => Body::from(chunks.concat()),
        }
    } else {
        access.stream::<StorageError, _>(status, body, len).await?
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    blob_headers(h, &info, range.is_none());
    match range_sums {
        Some(sums) if range_md5 => set_header(h, "content-md5", &sums.md5_base64()),
        Some(sums) => set_header(h, "x-ms-content-crc64", &sums.crc64_base64()),
        None => {}
    }
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
    set_len(&mut response, len);
    Ok(response)
}

pub(super) async fn properties(
    mut access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    let info = existing(store, container, blob, headers, false).await?;
    note_version(access.event(), &info);
    Conditions::from_headers(headers, Subject::Resource)?.check_read(current(&info))?;
    let mut response = empty(StatusCode::OK);
    blob_headers(response.headers_mut(), &info, true);
    set_len(&mut response, info.size);
    Ok(response)
}

pub(super) async fn put(
    mut access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, StorageError> {
    let store = access.store();
    store.container(container)?;
    match header(headers, "x-ms-blob-type") {
        None => return Err(StorageError::missing_header("x-ms-blob-type")),
        Some("BlockBlob") => {}
        Some(other) => {
            return Err(StorageError::invalid_header_value("x-ms-blob-type", other)
                .detail("Reason", "the gate stores block blobs only"));
        }
    }
    let expected = Expected::from_headers(headers)?;
    let props = properties_from(headers, true)?;
    check_write_conditions(&access, headers, container, blob, Subject::Resource).await?;
    let upload_tags = tags::upload_tags(headers)?.unwrap_or_default();
    let (info, written, sums) = access
        .store()
        .put_blob(container, blob, body_stream(body), &props, &expected)
        .await?;
    // A new blob has the tags of its upload, or none.
    access.store().set_tags(container, blob, &upload_tags)?;
    let event = access.event();
    event.bytes = Some(written);
    // The version this upload made: its ETag, and the MD5 of the bytes received.
    event.etag = Some(info.etag.clone());
    event.content_md5 = Some(sums.md5_base64());
    access.count_written(written);
    let mut response = write_response(&info);
    let h = response.headers_mut();
    set_header(h, "content-md5", &sums.md5_base64());
    set_header(h, "x-ms-content-crc64", &sums.crc64_base64());
    Ok(response)
}

pub(super) async fn set_metadata(
    access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let metadata = metadata(headers);
    update(access, container, blob, headers, |p| p.metadata = metadata).await
}

/// A change to a blob's properties or metadata, after its lease and conditions.
async fn update(
    mut access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
    change: impl FnOnce(&mut BlobProperties),
) -> Result<Response, StorageError> {
    access.store().container(container)?;
    check_write_conditions(&access, headers, container, blob, Subject::Resource).await?;
    let info = access
        .store()
        .update_properties(container, blob, change)
        .await?;
    // A new ETag for the same content.
    note_version(access.event(), &info);
    let mut response = write_response(&info);
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}

/// Set Blob Properties: replaces the blob's HTTP headers (`x-ms-blob-*`); one left
/// out is cleared, as Azure does. Metadata and content are untouched.
pub(super) async fn set_properties(
    access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    if header(headers, "x-ms-blob-content-length").is_some() {
        return Err(StorageError::invalid_header_value(
            "x-ms-blob-content-length",
            header(headers, "x-ms-blob-content-length").unwrap_or_default(),
        )
        .detail(
            "Reason",
            "only page blobs can be resized; the gate stores block blobs",
        ));
    }
    let new = properties_from(headers, false)?;
    update(access, container, blob, headers, |p| {
        let metadata = std::mem::take(&mut p.metadata);
        *p = BlobProperties { metadata, ..new };
    })
    .await
}

pub(super) async fn delete(
    mut access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    remove(&mut access, container, blob, headers).await?;
    let mut response = empty(StatusCode::ACCEPTED);
    set_header(response.headers_mut(), "x-ms-delete-type-permanent", "true");
    Ok(response)
}

/// Deletes a blob after its lease and conditions (Delete Blob, and each Delete
/// Blob part of a batch with that part's own headers); the record names the
/// version deleted.
pub(super) async fn remove(
    access: &mut Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<(), StorageError> {
    let store = access.store();
    let info = existing(store, container, blob, headers, true).await?;
    Conditions::from_headers(headers, Subject::Resource)?.check_write(Some(current(&info)))?;
    store.delete_blob(container, blob).await?;
    note_version(access.event(), &info);
    Ok(())
}

/// Puts a blob version (its ETag and `Content-MD5` property) on the record.
fn note_version(event: &mut entraflow_audit::Event, info: &BlobInfo) {
    event.etag = Some(info.etag.clone());
    event.content_md5 = info.properties.content_md5.clone();
}

/// Copy Blob within the gate. It completes before the answer, so the destination
/// reports `x-ms-copy-status: success` at once (and Get Blob Properties shows the
/// copy's id, source, progress and completion time, as the SDKs' poll loops read).
pub(super) async fn copy(
    mut access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    store.container(container)?;
    let (sc, sb) = copy_source(access.state(), headers)?;
    store.container(&sc)?;
    let source = store.blob_info(&sc, &sb).await.map_err(|e| {
        if e.code == "BlobNotFound" {
            StorageError::cannot_verify_copy_source("The specified blob does not exist.")
        } else {
            e
        }
    })?;
    Conditions::from_headers(headers, Subject::CopySource)?.check_write(Some(current(&source)))?;
    check_write_conditions(&access, headers, container, blob, Subject::CopyTarget).await?;
    let copy_tags = match (
        tags::upload_tags(headers)?,
        header(headers, "x-ms-copy-source-tag-option"),
    ) {
        (Some(_), Some(o)) if o.eq_ignore_ascii_case("COPY") => {
            return Err(StorageError::new(
                StatusCode::BAD_REQUEST,
                "BothUserTagsAndSourceTagsCopyPresentException",
                "x-ms-tags header must not be present with x-ms-copy-source-tag-option as COPY.",
            ));
        }
        (None, Some(o)) if o.eq_ignore_ascii_case("COPY") => source.tags.clone(),
        (None, Some(o)) if !o.eq_ignore_ascii_case("REPLACE") => {
            return Err(StorageError::invalid_header_value(
                "x-ms-copy-source-tag-option",
                o,
            ));
        }
        (given, _) => given.unwrap_or_default(),
    };
    let meta = metadata(headers);
    let source_url = header(headers, "x-ms-copy-source").unwrap_or_default();
    let info = access
        .store()
        .copy_blob(
            (&sc, &sb),
            (container, blob),
            source_url,
            (!meta.is_empty()).then_some(meta),
        )
        .await?;
    access.store().set_tags(container, blob, &copy_tags)?;
    let source_scope = super::resource_scope(
        &access.state().account_scope,
        &Target::Blob(sc.clone(), sb.clone()),
    );
    let event = access.event();
    event.bytes = Some(info.size);
    event.detail = Some(format!("copied from {sc}/{sb}"));
    // The version made, and the source version it was made from (by scope: the
    // source URL the client sent may carry a SAS).
    note_version(event, &info);
    event.copy_source = Some(source_scope);
    event.copy_source_etag = Some(source.etag.clone());
    let mut response = empty(StatusCode::ACCEPTED);
    let h = response.headers_mut();
    set_header(h, "etag", &info.etag);
    set_header(h, "last-modified", &rfc1123(info.last_modified));
    if let Some(copy) = &info.copy {
        set_header(h, "x-ms-copy-id", &copy.id);
    }
    set_header(h, "x-ms-copy-status", "success");
    Ok(response)
}

/// Abort Copy Blob: every copy through the gate has completed before its answer,
/// so there is never a pending one to abort, as Azure says of a finished copy.
pub(super) async fn abort_copy(
    access: Access<'_>,
    container: &str,
    blob: &str,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    let info = existing(store, container, blob, headers, true).await?;
    let given = query.get("copyid").unwrap_or_default();
    match &info.copy {
        Some(copy) if copy.id != given => Err(StorageError::new(
            StatusCode::CONFLICT,
            "CopyIdMismatch",
            "The specified copy ID did not match the copy ID for the pending copy operation.",
        )),
        _ => Err(StorageError::new(
            StatusCode::CONFLICT,
            "NoPendingCopyOperation",
            "There is currently no pending copy operation.",
        )),
    }
}

/// Get Account Information: the SKU and kind Azure reports for a general-purpose v2
/// account without a hierarchical namespace.
pub(super) fn account_information() -> Response {
    let mut response = empty(StatusCode::OK);
    let h = response.headers_mut();
    set_header(h, "x-ms-sku-name", "Standard_LRS");
    set_header(h, "x-ms-account-kind", "StorageV2");
    set_header(h, "x-ms-is-hns-enabled", "false");
    response
}

/// Get Blob Tags.
pub(super) async fn get_tags(
    access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    let info = existing(store, container, blob, headers, false).await?;
    let mut response = Response::new(Body::from(crate::xml::tags_document(&info.tags)));
    set_header(response.headers_mut(), "content-type", "application/xml");
    Ok(response)
}

/// Set Blob Tags: replaces the whole tag set (an empty one removes every tag);
/// the blob's ETag and Last-Modified do not change.
pub(super) async fn set_tags(
    mut access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, StorageError> {
    let store = access.store();
    // A lease id is optional here; one that is sent must match.
    existing(store, container, blob, headers, false).await?;
    let xml = super::read_small_body(body).await?;
    let tags = tags::parse_xml(&xml)?;
    store.set_tags(container, blob, &tags)?;
    access.event().detail = Some(format!("set {} tags", tags.len()));
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `x-ms-copy-source` must name a blob of this gate's account.
pub(super) fn copy_source(
    state: &GateState,
    headers: &HeaderMap,
) -> Result<(String, String), StorageError> {
    let raw = header(headers, "x-ms-copy-source")
        .ok_or_else(|| StorageError::missing_header("x-ms-copy-source"))?;
    let url = url::Url::parse(raw)
        .map_err(|_| StorageError::invalid_header_value("x-ms-copy-source", raw))?;
    match names::parse_target(url.path(), &state.account) {
        Ok(Target::Blob(c, b)) => Ok((c, b)),
        _ => Err(StorageError::cannot_verify_copy_source(
            "The gate copies only between blobs of its own account.",
        )),
    }
}

fn current(info: &BlobInfo) -> Current<'_> {
    Current {
        etag: &info.etag,
        last_modified: info.last_modified,
    }
}

/// A write's lease and conditions, held against the blob as it is now (or its
/// absence). A copy source's conditions are checked by the copy itself.
pub(super) async fn check_write_conditions(
    access: &Access<'_>,
    headers: &HeaderMap,
    c: &str,
    b: &str,
    subject: Subject,
) -> Result<(), StorageError> {
    let conditions = Conditions::from_headers(headers, subject)?;
    let info = match access.store().blob_info(c, b).await {
        Ok(info) => Some(info),
        Err(e) if e.code == "BlobNotFound" => None,
        Err(e) => return Err(e),
    };
    if let Some(info) = &info {
        check_lease(info, headers, true)?;
    } else if header(headers, "x-ms-lease-id").is_some() {
        // A lease id on a blob that does not exist names no lease.
        lease::check(None, headers, true, On::Blob, OffsetDateTime::now_utc())?;
    }
    conditions.check_write(info.as_ref().map(current))
}

/// An existing blob of an existing container, after its lease has been held
/// against the request's `x-ms-lease-id` (`write`: a held lease needs it).
async fn existing(
    store: &crate::store::BlobStore,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
    write: bool,
) -> Result<BlobInfo, StorageError> {
    store.container(container)?;
    let info = store.blob_info(container, blob).await?;
    check_lease(&info, headers, write)?;
    Ok(info)
}

/// The blob's lease against the request's `x-ms-lease-id`.
fn check_lease(info: &BlobInfo, headers: &HeaderMap, write: bool) -> Result<(), StorageError> {
    lease::check(
        info.lease.as_ref(),
        headers,
        write,
        On::Blob,
        OffsetDateTime::now_utc(),
    )
}

/// Lease Blob: acquire, renew, change, release or break.
pub(super) async fn lease(
    access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    store.container(container)?;
    let info = store.blob_info(container, blob).await?;
    Conditions::from_headers(headers, Subject::Resource)?.check_write(Some(current(&info)))?;
    let outcome = lease::act(info.lease.as_ref(), headers, OffsetDateTime::now_utc())?;
    store.set_lease(container, blob, outcome.lease.as_ref())?;
    Ok(lease_response(&outcome, &info.etag, info.last_modified))
}

/// The answer to a lease action.
pub(super) fn lease_response(
    outcome: &lease::Outcome,
    etag: &str,
    last_modified: OffsetDateTime,
) -> Response {
    let mut response = empty(outcome.status);
    let h = response.headers_mut();
    set_header(h, "etag", etag);
    set_header(h, "last-modified", &rfc1123(last_modified));
    if let Some(id) = &outcome.lease_id {
        set_header(h, "x-ms-lease-id", id);
    }
    if let Some(t) = outcome.lease_time {
        set_header(h, "x-ms-lease-time", &t.to_string());
    }
    response
}

/// `x-ms-lease-status`, `-state` and (when leased) `-duration`.
pub(super) fn set_lease_headers(h: &mut HeaderMap, lease: Option<&lease::Lease>) {
    let state = lease::State::of(lease, OffsetDateTime::now_utc());
    set_header(h, "x-ms-lease-status", state.status());
    set_header(h, "x-ms-lease-state", state.as_str());
    if state == lease::State::Leased
        && let Some(l) = lease
    {
        let kind = if l.duration.is_some() {
            "fixed"
        } else {
            "infinite"
        };
        set_header(h, "x-ms-lease-duration", kind);
    }
}

/// `x-ms-range` (preferred) or `Range`: `bytes=start-[end]`, inclusive.
pub(crate) fn parse_range(headers: &HeaderMap) -> Result<Option<(u64, Option<u64>)>, StorageError> {
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

/// The blob's HTTP properties from a write's `x-ms-blob-*` headers (on Put Blob
/// also the plain `Content-Type` and friends, as Azure takes them), and its
/// metadata. `Content-MD5` is a transport checksum, checked and not copied: the
/// stored MD5 is `x-ms-blob-content-md5` or, on Put Blob, the service's own.
pub(super) fn properties_from(
    headers: &HeaderMap,
    put_blob: bool,
) -> Result<BlobProperties, StorageError> {
    let get = |blob_header: &str, plain: &str| {
        header(headers, blob_header)
            .or_else(|| put_blob.then(|| header(headers, plain)).flatten())
            .map(str::to_owned)
    };
    let content_md5 = header(headers, "x-ms-blob-content-md5").map(str::to_owned);
    if let Some(md5) = &content_md5 {
        parse_md5("x-ms-blob-content-md5", md5)?;
    }
    Ok(BlobProperties {
        content_type: get("x-ms-blob-content-type", "content-type"),
        content_encoding: get("x-ms-blob-content-encoding", "content-encoding"),
        content_language: get("x-ms-blob-content-language", "content-language"),
        content_disposition: get("x-ms-blob-content-disposition", "content-disposition"),
        cache_control: get("x-ms-blob-cache-control", "cache-control"),
        content_md5,
        metadata: metadata(headers),
    })
}

pub(super) fn write_response(info: &BlobInfo) -> Response {
    let mut response = empty(StatusCode::CREATED);
    let h = response.headers_mut();
    set_header(h, "etag", &info.etag);
    set_header(h, "last-modified", &rfc1123(info.last_modified));
    set_header(h, "x-ms-request-server-encrypted", "true");
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
    if let Some(copy) = &info.copy {
        set_header(h, "x-ms-copy-id", &copy.id);
        set_header(h, "x-ms-copy-source", &copy.source);
        set_header(h, "x-ms-copy-status", "success");
        set_header(
            h,
            "x-ms-copy-progress",
            &format!("{}/{}", copy.bytes, copy.bytes),
        );
        set_header(h, "x-ms-copy-completion-time", &rfc1123(copy.completed));
    }
    set_header(h, "accept-ranges", "bytes");
    set_header(h, "x-ms-blob-type", "BlockBlob");
    set_header(h, "x-ms-creation-time", &rfc1123(info.last_modified));
    set_lease_headers(h, info.lease.as_ref());
    if !info.tags.is_empty() {
        set_header(h, "x-ms-tag-count", &info.tags.len().to_string());
    }
    set_header(h, "x-ms-server-encrypted", "true");
    set_header(h, "x-ms-access-tier", "Hot");
    set_header(h, "x-ms-access-tier-inferred", "true");
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
}
