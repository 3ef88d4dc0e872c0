//! One blob: Get Blob, Get Blob Properties, Put Blob, Set Blob Metadata, Copy Blob
//! and Delete Blob.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use object_store::{GetOptions, GetRange};

use super::{body_stream, empty, metadata, set_header, set_len, set_metadata_headers};
use crate::error::StorageError;
use crate::guard::{Access, GateState, header};
use crate::names::{self, Target};
use crate::store::{BlobInfo, BlobProperties};
use crate::xml::rfc1123;

pub(super) async fn get(
    mut access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    store.container(container)?;
    let path = names::blob_path(container, blob);
    let info = store.blob_info(container, blob).await?;
    if let Some(v) = header(headers, "if-none-match")
        && (v == "*" || v == info.etag)
    {
        let mut response = empty(StatusCode::NOT_MODIFIED);
        set_header(response.headers_mut(), "etag", &info.etag);
        return Ok(response);
    }
    check_conditions(headers, &info.etag)?;
    let range = match parse_range(headers)? {
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
    let result = store.backend().get_opts(&path, options).await?;
    let size = result.meta.size;
    let served = result.range.clone();
    let len = served.end - served.start;
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
    let body = access
        .stream::<StorageError, _>(status, crate::store::body_stream(result), len)
        .await?;
    let mut response = Response::new(body);
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
    set_len(&mut response, len);
    Ok(response)
}

pub(super) async fn properties(
    access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    store.container(container)?;
    let info = store.blob_info(container, blob).await?;
    check_conditions(headers, &info.etag)?;
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
    check_write_conditions(&access, headers, container, blob).await?;
    let props = properties_from(headers, true);
    let (info, written) = access
        .store()
        .put_blob(container, blob, body_stream(body), &props)
        .await?;
    access.event().bytes = Some(written);
    Ok(write_response(&info, props.content_md5.as_deref()))
}

pub(super) async fn set_metadata(
    access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    store.container(container)?;
    if let Some(etag) = header(headers, "if-match") {
        let info = store.blob_info(container, blob).await?;
        if etag != "*" && etag != info.etag {
            return Err(StorageError::condition_not_met());
        }
    }
    let info = store
        .set_blob_metadata(container, blob, metadata(headers))
        .await?;
    let mut response = write_response(&info, None);
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}

pub(super) async fn delete(
    access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
) -> Result<Response, StorageError> {
    let store = access.store();
    store.container(container)?;
    if let Some(etag) = header(headers, "if-match") {
        let info = store.blob_info(container, blob).await?;
        if etag != "*" && etag != info.etag {
            return Err(StorageError::condition_not_met());
        }
    }
    store.delete_blob(container, blob).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

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
    check_write_conditions(&access, headers, container, blob).await?;
    let meta = metadata(headers);
    let info = access
        .store()
        .copy_blob(
            (&sc, &sb),
            (container, blob),
            (!meta.is_empty()).then_some(meta),
        )
        .await?;
    let event = access.event();
    event.bytes = Some(info.size);
    event.detail = Some(format!("copied from {sc}/{sb}"));
    let mut response = empty(StatusCode::ACCEPTED);
    let h = response.headers_mut();
    set_header(h, "etag", &info.etag);
    set_header(h, "last-modified", &rfc1123(info.last_modified));
    set_header(h, "x-ms-copy-id", &uuid::Uuid::new_v4().to_string());
    set_header(h, "x-ms-copy-status", "success");
    Ok(response)
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

/// `If-None-Match: *` (no overwrite) and `If-Match` on writes.
pub(super) async fn check_write_conditions(
    access: &Access<'_>,
    headers: &HeaderMap,
    c: &str,
    b: &str,
) -> Result<(), StorageError> {
    let if_none = header(headers, "if-none-match");
    let if_match = header(headers, "if-match");
    if if_none.is_none() && if_match.is_none() {
        return Ok(());
    }
    let current = match access.store().blob_info(c, b).await {
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

/// The blob's HTTP properties from a write's headers (`x-ms-blob-*`, or on Put Blob
/// the plain ones too).
pub(super) fn properties_from(headers: &HeaderMap, put_blob: bool) -> BlobProperties {
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

pub(super) fn write_response(info: &BlobInfo, md5: Option<&str>) -> Response {
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
