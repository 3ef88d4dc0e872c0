//! List Containers and List Blobs (prefix, any delimiter, marker, maxresults,
//! metadata). The XML is written by `crate::xml`.

use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::Response;

use crate::error::StorageError;
use crate::guard::Access;
use crate::operation::Query;
use crate::tags::Filter;
use crate::xml::{self, ListEntry, Listing};

fn max_results(query: &Query) -> Result<usize, StorageError> {
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

fn includes(query: &Query, what: &str) -> bool {
    query
        .get("include")
        .is_some_and(|i| i.split(',').any(|x| x == what))
}

fn listing<'q>(query: &'q Query, delimiter: Option<&'q str>) -> Listing<'q> {
    Listing {
        prefix: query.get("prefix"),
        marker: query.get("marker"),
        max_results: query.get("maxresults"),
        delimiter,
    }
}

pub(super) fn containers(access: Access<'_>, query: &Query) -> Result<Response, StorageError> {
    let prefix = query.get("prefix").unwrap_or_default();
    let marker = query.get("marker").unwrap_or_default();
    let max = max_results(query)?;
    let (containers, next) = access.store().list_containers(prefix, marker, max)?;
    Ok(xml_response(xml::container_list(
        &access.state().account_url,
        &listing(query, None),
        &containers,
        includes(query, "metadata"),
        next.as_deref(),
    )))
}

pub(super) async fn blobs(
    mut access: Access<'_>,
    container: &str,
    query: &Query,
) -> Result<Response, StorageError> {
    let prefix = query.get("prefix").unwrap_or_default();
    if !prefix.is_empty() {
        access.event().prefix = Some(prefix.to_owned());
    }
    let store = access.store();
    store.container(container)?;
    let delimiter = query.get("delimiter").filter(|d| !d.is_empty());
    let marker = query.get("marker").unwrap_or_default();
    let max = max_results(query)?;

    let all = store.list_blobs(container, prefix).await?;
    // Entries in name order; names sharing a prefix are contiguous, so each
    // common prefix (`BlobPrefix`) is emitted once. Stored properties are read
    // for the page only.
    enum Raw {
        Blob(String, object_store::ObjectMeta),
        Prefix(String),
    }
    let name = |e: &Raw| match e {
        Raw::Blob(n, _) | Raw::Prefix(n) => n.clone(),
    };
    let mut entries: Vec<Raw> = Vec::new();
    for (blob, meta) in all {
        if let Some(d) = delimiter
            && let Some(i) = blob[prefix.len()..].find(d)
        {
            let p = blob[..prefix.len() + i + d.len()].to_owned();
            if !matches!(entries.last(), Some(Raw::Prefix(last)) if *last == p) {
                entries.push(Raw::Prefix(p));
            }
            continue;
        }
        entries.push(Raw::Blob(blob, meta));
    }
    let start = entries.partition_point(|e| name(e).as_str() < marker);
    let page_end = (start + max).min(entries.len());
    let next = entries.get(page_end).map(name);
    let page: Vec<ListEntry> = entries[start..page_end]
        .iter()
        .map(|e| match e {
            Raw::Prefix(p) => ListEntry::Prefix(p.clone()),
            Raw::Blob(blob, meta) => {
                ListEntry::Blob(Box::new(store.info_from_meta(container, blob, meta)))
            }
        })
        .collect();
    Ok(xml_response(xml::blob_list(
        &access.state().account_url,
        container,
        &listing(query, delimiter),
        &page,
        xml::Include {
            metadata: includes(query, "metadata"),
            tags: includes(query, "tags"),
        },
        next.as_deref(),
    )))
}

/// Find Blobs by Tags, in the account or (`container`) one container: the blobs
/// whose tags satisfy `where`, with the tags it named.
pub(super) fn find_by_tags(
    access: Access<'_>,
    container: Option<&str>,
    query: &Query,
) -> Result<Response, StorageError> {
    let expression = query.get("where").ok_or_else(|| {
        StorageError::invalid_query_parameter(
            "where",
            "",
            "Find Blobs by Tags needs a where filter",
        )
    })?;
    let filter = Filter::parse(expression)?;
    let max = max_results(query)?;
    let marker = query.get("marker").unwrap_or_default();
    let scope = container.or(filter.container());
    let mut found = Vec::new();
    let mut next = None;
    for (c, name, tags) in access.store().tagged_blobs(scope)? {
        if container.is_some_and(|only| only != c) {
            continue;
        }
        let key = format!("{c}/{name}");
        if key.as_str() < marker {
            continue;
        }
        if let Some(named) = filter.matches(&c, &tags) {
            if found.len() == max {
                next = Some(key);
                break;
            }
            found.push((c, name, named));
        }
    }
    Ok(xml_response(xml::found_blobs(
        &access.state().account_url,
        expression,
        &found,
        next.as_deref(),
    )))
}

fn xml_response(xml: String) -> Response {
    let mut response = Response::new(Body::from(xml));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/xml"));
    response
}
