//! Put Block (stage) and Put Block List (commit atomically).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::object::{check_write_conditions, properties_from, write_response};
use super::{body_stream, empty, read_small_body};
use crate::error::StorageError;
use crate::guard::Access;
use crate::operation::Query;
use crate::xml::{BlockRef, parse_block_list};

pub(super) async fn put(
    mut access: Access<'_>,
    container: &str,
    blob: &str,
    query: &Query,
    body: Body,
) -> Result<Response, StorageError> {
    access.store().container(container)?;
    let id_text = query.get("blockid").ok_or_else(|| {
        StorageError::invalid_query_parameter("blockid", "", "a Put Block needs a blockid")
    })?;
    let id = B64
        .decode(id_text)
        .map_err(|_| StorageError::invalid_block_id())?;
    if id.is_empty() || id.len() > 64 {
        return Err(StorageError::invalid_block_id());
    }
    let written = access
        .store()
        .put_block(container, blob, &id, body_stream(body))
        .await?;
    let event = access.event();
    event.bytes = Some(written);
    event.detail = Some(format!("staged block {id_text}"));
    let mut response = empty(StatusCode::CREATED);
    response.headers_mut().insert(
        "x-ms-request-server-encrypted",
        HeaderValue::from_static("true"),
    );
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
    check_write_conditions(&access, headers, container, blob).await?;
    let xml = read_small_body(body).await?;
    let refs = parse_block_list(&xml)?;
    let mut ids = Vec::with_capacity(refs.len());
    for r in &refs {
        if matches!(r, BlockRef::Committed(_)) {
            // The gate keeps no per-blob block list: committed blocks are gone after commit.
            return Err(StorageError::invalid_block_list().detail(
                "Reason",
                "the gate does not keep committed blocks; re-stage them and commit them as Latest",
            ));
        }
        ids.push(
            B64.decode(r.id())
                .map_err(|_| StorageError::invalid_block_id())?,
        );
    }
    let props = properties_from(headers, false);
    let info = access
        .store()
        .commit_blocks(container, blob, &ids, &props)
        .await?;
    let event = access.event();
    event.bytes = Some(info.size);
    event.detail = Some(format!("committed {} blocks", ids.len()));
    Ok(write_response(&info, None))
}
