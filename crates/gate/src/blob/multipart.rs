//! The Blob Batch wire format (`POST ?comp=batch`): a `multipart/mixed` body of Delete Blob
//! sub-requests, each authorized with its own bearer token, each authorized and
//! audited on its own, answered as a `multipart/mixed` body of HTTP responses.
//! (`object_store`'s Azure backend deletes this way; so does azure-storage-blob's
//! `delete_blobs`.) Set Blob Tier sub-requests are answered 400: the gate has no tiers.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::error::StorageError;

/// Most sub-requests in one batch (Azure's limit).
pub(crate) const MAX_SUBREQUESTS: usize = 256;

/// One sub-request of a batch.
#[derive(Debug)]
pub(crate) struct SubRequest {
    /// `Content-ID` of its part.
    pub(crate) content_id: String,
    pub(crate) method: Method,
    /// Path as sent, e.g. `/devstoreaccount1/data/x` or `/data/x`.
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
}

/// One sub-response.
#[derive(Debug)]
pub(crate) struct SubResponse {
    pub(crate) content_id: String,
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

/// The boundary of a `multipart/mixed` content type.
pub(crate) fn boundary(content_type: Option<&str>) -> Result<String, StorageError> {
    let ct = content_type.ok_or_else(|| StorageError::missing_header("Content-Type"))?;
    let (kind, params) = ct.split_once(';').unwrap_or((ct, ""));
    if !kind.trim().eq_ignore_ascii_case("multipart/mixed") {
        return Err(StorageError::invalid_header_value("Content-Type", ct));
    }
    params
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| StorageError::invalid_header_value("Content-Type", ct))
}

fn invalid(reason: &str) -> StorageError {
    StorageError::new(
        StatusCode::BAD_REQUEST,
        "InvalidInput",
        "One of the request inputs is not valid.",
    )
    .detail("Reason", reason)
}

/// Splits a batch body into its sub-requests. A delimiter counts only at the start
/// of a line (RFC 2046 §5.1.1): `--<boundary>` may appear inside a part (a bearer
/// token is base64url, so `--b` can occur in one) without ending it.
pub(crate) fn parse(body: &[u8], boundary: &str) -> Result<Vec<SubRequest>, StorageError> {
    let delimiter = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    // Skip any preamble up to the first delimiter (which may open the body).
    let first = if body.starts_with(&delimiter.as_bytes()[2..]) {
        delimiter.len() - 2
    } else {
        find(body, delimiter.as_bytes())
            .map(|at| at + delimiter.len())
            .ok_or_else(|| invalid("the body has no multipart boundary"))?
    };
    let mut rest = &body[first..];
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        let rest_after_crlf = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| invalid("a boundary is not followed by CRLF"))?;
        let end = find(rest_after_crlf, delimiter.as_bytes())
            .ok_or_else(|| invalid("a part is not terminated by a boundary"))?;
        parts.push(&rest_after_crlf[..end]);
        rest = &rest_after_crlf[end + delimiter.len()..];
        if parts.len() > MAX_SUBREQUESTS {
            return Err(invalid("a batch holds at most 256 sub-requests"));
        }
    }
    if parts.is_empty() {
        return Err(invalid("the batch holds no sub-requests"));
    }
    parts.into_iter().map(parse_part).collect()
}

fn parse_part(part: &[u8]) -> Result<SubRequest, StorageError> {
    let mut scratch = [httparse::EMPTY_HEADER; 16];
    let (consumed, part_headers) = match httparse::parse_headers(part, &mut scratch) {
        Ok(httparse::Status::Complete(done)) => done,
        _ => return Err(invalid("a part's headers cannot be parsed")),
    };
    let content_id = part_headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-id"))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
        .unwrap_or_default();
    let mut scratch = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut scratch);
    match request.parse(&part[consumed..]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(invalid("a sub-request cannot be parsed")),
    }
    let method = request
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or_else(|| invalid("a sub-request has no method"))?;
    let path = request
        .path
        .ok_or_else(|| invalid("a sub-request has no path"))?
        .to_owned();
    let mut headers = HeaderMap::new();
    for h in request.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            headers.append(name, value);
        }
    }
    Ok(SubRequest {
        content_id,
        method,
        path,
        headers,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `multipart/mixed` response body.
pub(crate) fn render(boundary: &str, responses: &[SubResponse]) -> String {
    let mut out = String::new();
    for r in responses {
        out.push_str(&format!(
            "--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {}\r\n\r\nHTTP/1.1 {} {}\r\n",
            r.content_id,
            r.status.as_u16(),
            r.status.canonical_reason().unwrap_or("")
        ));
        for (k, v) in &r.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\n\r\n{}\r\n",
            r.body.len(),
            r.body
        ));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_store_batch_bodies_parse() {
        let body = b"--batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 0\r\n\r\nDELETE /devstoreaccount1/data/a HTTP/1.1\r\nContent-Length: 0\r\nX-Ms-Version: 2023-11-03\r\nAuthorization: Bearer t\r\n\r\n\r\n--batch_x\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nDELETE /data/b%20c HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n\r\n--batch_x--\r\n";
        let subs = parse(
            body,
            &boundary(Some("multipart/mixed; boundary=batch_x")).unwrap(),
        )
        .unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].content_id, "0");
        assert_eq!(subs[0].method, Method::DELETE);
        assert_eq!(subs[0].path, "/devstoreaccount1/data/a");
        assert_eq!(subs[1].path, "/data/b%20c");
        assert_eq!(subs[1].headers["authorization"], "Bearer t");
        assert!(parse(b"garbage", "batch_x").is_err());
        assert!(boundary(Some("application/xml")).is_err());
    }

    /// Regression: a bearer token holding `--b` (base64url has `-`) ended its part
    /// early and the whole batch was refused as malformed.
    #[test]
    fn a_boundary_inside_a_line_does_not_end_the_part() {
        let body = b"--b\r\nContent-Type: application/http\r\nContent-ID: 0\r\n\r\nDELETE /acct/c/x HTTP/1.1\r\nAuthorization: Bearer eyJ--b--x.y-z\r\n\r\n\r\n--b--\r\n";
        let subs = parse(body, "b").unwrap();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].headers["authorization"], "Bearer eyJ--b--x.y-z");
    }

    #[test]
    fn responses_render_as_multipart() {
        let text = render(
            "batchresponse_1",
            &[SubResponse {
                content_id: "0".into(),
                status: StatusCode::ACCEPTED,
                headers: vec![("x-ms-delete-type-permanent".into(), "true".into())],
                body: String::new(),
            }],
        );
        assert!(text.starts_with("--batchresponse_1\r\nContent-Type: application/http\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 Accepted\r\n"));
        assert!(text.ends_with("--batchresponse_1--\r\n"));
    }
}
