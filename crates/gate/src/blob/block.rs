//! Put Block (stage), Put Block List (commit atomically, from staged and committed
//! blocks) and Get Block List.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::object::{check_write_conditions, properties_from, write_response};
use super::{body_stream, empty, read_small_body, set_header};
use crate::conditions::Subject;
use crate::error::StorageError;
use crate::guard::Access;
use crate::integrity::{Digests, Expected};
use crate::operation::Query;
use crate::xml::{self, parse_block_list};

/// A base64 block id: 1 to 64 bytes once decoded, as Azure allows.
fn block_id(text: &str) -> Result<Vec<u8>, StorageError> {
    let id = B64
        .decode(text)
        .map_err(|_| StorageError::invalid_block_id())?;
    if id.is_empty() || id.len() > 64 {
        return Err(StorageError::invalid_block_id());
    }
    Ok(id)
}

pub(super) async fn put(
    mut access: Access<'_>,
    container: &str,
    blob: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, StorageError> {
    access.store().container(container)?;
    check_write_conditions(&access, headers, container, blob, Subject::Resource).await?;
    let id_text = query.get("blockid").ok_or_else(|| {
        StorageError::invalid_query_parameter("blockid", "", "a Put Block needs a blockid")
    })?;
    let id = block_id(id_text)?;
    let expected = Expected::from_headers(headers)?;
    let (written, sums) = access
        .store()
        .put_block(container, blob, &id, body_stream(body), &expected)
        .await?;
    access.count_written(written);
    let event = access.event();
    event.bytes = Some(written);
    event.detail = Some(format!("staged block {id_text}"));
    let mut response = empty(StatusCode::CREATED);
    let h = response.headers_mut();
    set_header(h, "x-ms-request-server-encrypted", "true");
    set_header(h, "content-md5", &sums.md5_base64());
    set_header(h, "x-ms-content-crc64", &sums.crc64_base64());
    Ok(response)
}

pub(super) async fn commit(
    mut access: Access<'_>,
    container: &str,
    blob: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, StorageError> {
    access.store().container(container)?;
    check_write_conditions(&access, headers, container, blob, Subject::Resource).await?;
    let xml = read_small_body(body).await?;
    // Content-MD5 here is the block list body's own checksum.
    let mut digests = Digests::default();
    digests.update(&xml);
    digests.sums().check(&Expected::from_headers(headers)?)?;
    let refs = parse_block_list(&xml)?;
    for r in &refs {
        if r.id().is_empty() || r.id().len() > 64 {
            return Err(StorageError::invalid_block_id());
        }
    }
    let props = properties_from(headers, false)?;
    let upload_tags = crate::tags::upload_tags(headers)?.unwrap_or_default();
    let (info, sums) = access
        .store()
        .commit_blocks(container, blob, &refs, &props)
        .await?;
    access.store().set_tags(container, blob, &upload_tags)?;
    let event = access.event();
    event.bytes = Some(info.size);
    event.detail = Some(format!("committed {} blocks", refs.len()));
    // The version this commit made: its ETag, and the MD5 of the bytes committed.
    event.etag = Some(info.etag.clone());
    event.content_md5 = Some(sums.md5_base64());
    Ok(write_response(&info))
}

/// Get Block List: `blocklisttype` committed (the default), uncommitted or all.
pub(super) async fn list(
    mut access: Access<'_>,
    container: &str,
    blob: &str,
    query: &Query,
) -> Result<Response, StorageError> {
    let store = access.store();
    store.container(container)?;
    let kind = query.get("blocklisttype").unwrap_or("committed");
    let (committed, uncommitted) = match kind {
        "committed" => (true, false),
        "uncommitted" => (false, true),
        "all" => (true, true),
        other => {
            return Err(StorageError::invalid_query_parameter(
                "blocklisttype",
                other,
                "use committed, uncommitted or all",
            ));
        }
    };
    let info = match store.blob_info(container, blob).await {
        Ok(info) => Some(info),
        Err(e) if e.code == "BlobNotFound" => None,
        Err(e) => return Err(e),
    };
    access.event().etag = info.as_ref().map(|i| i.etag.clone());
    let store = access.store();
    let staged = store.staged_blocks(container, blob).await?;
    if info.is_none() && staged.is_empty() {
        return Err(StorageError::blob_not_found());
    }
    let committed_blocks = match (&info, committed) {
        (Some(_), true) => Some(store.committed_blocks(container, blob)?),
        (None, true) => Some(Vec::new()),
        (_, false) => None,
    };
    let body = xml::block_list(
        committed_blocks.as_deref(),
        uncommitted.then_some(staged.as_slice()),
    );
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    set_header(h, "content-type", "application/xml");
    if let Some(info) = &info {
        set_header(h, "etag", &info.etag);
        set_header(h, "last-modified", &crate::xml::rfc1123(info.last_modified));
        set_header(h, "x-ms-blob-content-length", &info.size.to_string());
    }
    Ok(response)
}
