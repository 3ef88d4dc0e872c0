//! A small Azure Blob REST client on the shared reqwest client: exactly the calls the
//! filesystem needs, each with the bearer token, the run id, a per-request client
//! request id, bounded retries for transient failures and none for refusals.
//!
//! Why not `object_store`'s Azure backend: it cannot name a per-request
//! `x-ms-client-request-id`, it flattens a 403 into a status line (the gate's
//! explanation, which names the missing role, lives in a response header and the
//! error body), and it hides the block ids that make a commit-on-close writer
//! possible. The calls here are few and plain.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use entraflow_credential::{TokenCredential, TokenRequest};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use entraflow_core::retry::{self, RetryPolicy, is_transient_status};

use crate::config::{Config, RUN_ID_HEADER, STORAGE_SCOPE};
use crate::path::BlobPath;
use crate::status::FsError;

/// The REST API version sent as `x-ms-version`.
pub const API_VERSION: &str = "2023-11-03";
/// The gate's header carrying its explanation of a denial.
const DENIAL_HEADER: &str = "x-ms-entraflow-denial";

/// Characters escaped in a blob name: everything but unreserved characters and `/`.
const BLOB_NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Size and modification time of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Properties {
    /// `Content-Length`.
    pub size: u64,
    /// `Last-Modified`, nanoseconds since the epoch.
    pub mtime_nsec: i64,
}

/// One page (or all pages) of List Blobs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Blob names with their properties.
    pub blobs: Vec<(String, Properties)>,
    /// Virtual directories (`BlobPrefix`), with their trailing `/`.
    pub prefixes: Vec<String>,
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct BlobClient {
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
    config: Arc<Config>,
    token_request: Arc<TokenRequest>,
}

impl std::fmt::Debug for BlobClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobClient")
            .field("credential", &self.credential.name())
            .field("config", &self.config)
            .finish()
    }
}

impl BlobClient {
    /// A client using `credential` for tokens and `http` for requests.
    pub fn new(
        config: Config,
        credential: Arc<dyn TokenCredential>,
        http: reqwest::Client,
    ) -> BlobClient {
        BlobClient {
            http,
            credential,
            config: Arc::new(config),
            token_request: Arc::new(TokenRequest::new(&[STORAGE_SCOPE])),
        }
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn container_url(&self, p: &BlobPath) -> Result<String, FsError> {
        Ok(format!(
            "{}/{}",
            self.config.account_url(&p.account)?,
            p.container
        ))
    }

    fn blob_url(&self, p: &BlobPath) -> Result<String, FsError> {
        Ok(format!(
            "{}/{}",
            self.container_url(p)?,
            utf8_percent_encode(&p.blob, BLOB_NAME)
        ))
    }

    /// Sends the request `build` makes, with auth and tracing headers, retrying
    /// transient failures. Any non-success status becomes an [`FsError`].
    async fn send(
        &self,
        path: &BlobPath,
        url: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, FsError> {
        let mut retry = RetryPolicy::STORAGE.start();
        loop {
            let token = self.credential.get_token(&self.token_request).await?;
            let request_id = format!("{}:{}", self.config.run_id, uuid::Uuid::new_v4());
            let result = build(&self.http)
                .bearer_auth(token.token.expose())
                .header("x-ms-version", API_VERSION)
                .header(RUN_ID_HEADER, &self.config.run_id)
                .header("x-ms-client-request-id", &request_id)
                .send()
                .await;
            let (reason, server_wait) = match result {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if is_transient_status(response.status().as_u16()) => {
                    let headers = response.headers();
                    let wait = retry::server_wait(|name| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    });
                    (format!("HTTP {}", response.status()), wait)
                }
                Ok(response) => return Err(error_from(path, response).await),
                Err(e) => (error_chain(&e), None),
            };
            let attempt = retry.retries() + 1;
            tracing::debug!(%url, attempt, %reason, request_id, "transient storage failure");
            let Some(delay) = retry.next_delay(server_wait) else {
                return Err(FsError::Unavailable {
                    url: url.to_owned(),
                    attempts: attempt,
                    reason,
                });
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// Get Blob Properties. `NotFound` if there is no blob of that name.
    pub async fn properties(&self, p: &BlobPath) -> Result<Properties, FsError> {
        let url = self.blob_url(p)?;
        let response = self.send(p, &url, |c| c.head(&url)).await?;
        properties_of(&response)
    }

    /// Whether the container exists.
    pub async fn container_exists(&self, p: &BlobPath) -> Result<bool, FsError> {
        let url = self.container_url(p)?;
        match self
            .send(p, &url, |c| c.head(&url).query(&[("restype", "container")]))
            .await
        {
            Ok(_) => Ok(true),
            Err(FsError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The bytes in `range` (a ranged Get Blob).
    pub async fn get_range(&self, p: &BlobPath, range: Range<u64>) -> Result<Bytes, FsError> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let url = self.blob_url(p)?;
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        let response = self
            .send(p, &url, |c| c.get(&url).header("x-ms-range", &header))
            .await?;
        read_body(&url, response).await
    }

    /// The whole blob.
    pub async fn get_all(&self, p: &BlobPath) -> Result<Bytes, FsError> {
        let url = self.blob_url(p)?;
        let response = self.send(p, &url, |c| c.get(&url)).await?;
        read_body(&url, response).await
    }

    /// List Blobs under `prefix`, with `/` as delimiter when `hierarchical`. Follows
    /// continuation markers until done, or stops after `limit` entries.
    pub async fn list(
        &self,
        container: &BlobPath,
        prefix: &str,
        hierarchical: bool,
        limit: Option<usize>,
    ) -> Result<Listing, FsError> {
        let url = self.container_url(container)?;
        let mut all = Listing::default();
        let mut marker = String::new();
        loop {
            let mut query: Vec<(&str, String)> = vec![
                ("restype", "container".into()),
                ("comp", "list".into()),
                ("prefix", prefix.to_owned()),
                (
                    "maxresults",
                    limit.map_or(5000, |l| l.min(5000)).to_string(),
                ),
            ];
            if hierarchical {
                query.push(("delimiter", "/".into()));
            }
            if !marker.is_empty() {
                query.push(("marker", marker.clone()));
            }
            let response = self
                .send(container, &url, |c| c.get(&url).query(&query))
                .await?;
            let body = response.text().await.map_err(|e| unavailable(&url, &e))?;
            let page = parse_listing(&body).map_err(|e| FsError::Service {
                path: container.to_string(),
                status: 200,
                code: "InvalidXml".into(),
                message: format!("the List Blobs answer from {url} is not Azure's XML: {e}"),
            })?;
            all.blobs.extend(page.listing.blobs);
            all.prefixes.extend(page.listing.prefixes);
            let enough = limit.is_some_and(|l| all.blobs.len() + all.prefixes.len() >= l);
            match page.next_marker {
                Some(next) if !enough => marker = next,
                _ => return Ok(all),
            }
        }
    }

    /// Put Block: stages `body` under `block_id` (already base64).
    pub async fn put_block(
        &self,
        p: &BlobPath,
        block_id: &str,
        body: Bytes,
    ) -> Result<(), FsError> {
        let url = self.blob_url(p)?;
        self.send(p, &url, |c| {
            c.put(&url)
                .query(&[("comp", "block"), ("blockid", block_id)])
                .body(body.clone())
        })
        .await?;
        Ok(())
    }

    /// Put Block List: commits the staged blocks, in order, as the blob.
    pub async fn put_block_list(&self, p: &BlobPath, block_ids: &[String]) -> Result<(), FsError> {
        let url = self.blob_url(p)?;
        let mut xml = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for id in block_ids {
            xml.push_str("<Latest>");
            xml.push_str(id);
            xml.push_str("</Latest>");
        }
        xml.push_str("</BlockList>");
        let body = Bytes::from(xml);
        self.send(p, &url, |c| {
            c.put(&url)
                .query(&[("comp", "blocklist")])
                .header("content-type", "application/xml")
                .body(body.clone())
        })
        .await?;
        Ok(())
    }

    /// Put Blob: the whole blob in one request (small files, empty files).
    pub async fn put_blob(&self, p: &BlobPath, body: Bytes) -> Result<(), FsError> {
        let url = self.blob_url(p)?;
        self.send(p, &url, |c| {
            c.put(&url)
                .header("x-ms-blob-type", "BlockBlob")
                .body(body.clone())
        })
        .await?;
        Ok(())
    }

    /// Copy Blob from `src` to `dst` (same account), waiting for it to finish.
    pub async fn copy(&self, src: &BlobPath, dst: &BlobPath) -> Result<(), FsError> {
        let source = self.blob_url(src)?;
        let url = self.blob_url(dst)?;
        let response = self
            .send(dst, &url, |c| {
                c.put(&url).header("x-ms-copy-source", &source)
            })
            .await?;
        let mut status = header(&response, "x-ms-copy-status").unwrap_or_else(|| "success".into());
        let mut wait = Duration::from_millis(50);
        while status == "pending" {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
            let response = self.send(dst, &url, |c| c.head(&url)).await?;
            status = header(&response, "x-ms-copy-status").unwrap_or_else(|| "success".into());
        }
        if status != "success" {
            return Err(FsError::Service {
                path: dst.to_string(),
                status: 500,
                code: format!("CopyStatus:{status}"),
                message: format!("copying {src} to {dst} ended with status '{status}'"),
            });
        }
        Ok(())
    }

    /// Delete Blob.
    pub async fn delete(&self, p: &BlobPath) -> Result<(), FsError> {
        let url = self.blob_url(p)?;
        self.send(p, &url, |c| c.request(Method::DELETE, &url))
            .await?;
        Ok(())
    }
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)?
        .to_str()
        .ok()
        .map(str::to_owned)
}

fn properties_of(response: &Response) -> Result<Properties, FsError> {
    let size = header(response, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let mtime_nsec = header(response, "last-modified")
        .and_then(|v| httpdate::parse_http_date(&v).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    Ok(Properties { size, mtime_nsec })
}

async fn read_body(url: &str, response: Response) -> Result<Bytes, FsError> {
    response.bytes().await.map_err(|e| unavailable(url, &e))
}

fn unavailable(url: &str, e: &reqwest::Error) -> FsError {
    FsError::Unavailable {
        url: url.to_owned(),
        attempts: 1,
        reason: error_chain(e),
    }
}

/// The error and its causes on one line (reqwest's Display hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Maps an error response. For a 403 the explanation is the gate's
/// `AuthorizationDenialDetail` (or its denial header on a HEAD, which has no body).
async fn error_from(path: &BlobPath, response: Response) -> FsError {
    let status = response.status();
    let code = header(&response, "x-ms-error-code")
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
    let denial = header(&response, DENIAL_HEADER);
    let body = response.text().await.unwrap_or_default();
    let error: ErrorXml = quick_xml::de::from_str(xml_text(&body)).unwrap_or_default();
    let detail = error.denial.or(denial).or(error.authentication);
    let message = error.message.unwrap_or_else(|| format!("HTTP {status}"));
    let message = match detail {
        Some(d) if status == StatusCode::FORBIDDEN => d,
        Some(d) => format!("{message} {d}"),
        None => message,
    };
    FsError::from_response(&path.to_string(), status.as_u16(), code, message)
}

struct Page {
    listing: Listing,
    next_marker: Option<String>,
}

/// List Blobs' result, as Azure writes it (what the plugin reads of it).
#[derive(Debug, Deserialize)]
struct EnumerationResults {
    #[serde(rename = "Blobs", default)]
    blobs: BlobsXml,
    #[serde(rename = "NextMarker", default)]
    next_marker: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct BlobsXml {
    #[serde(rename = "$value", default)]
    items: Vec<ItemXml>,
}

#[derive(Debug, Deserialize)]
enum ItemXml {
    Blob(BlobXml),
    BlobPrefix(PrefixXml),
}

#[derive(Debug, Deserialize)]
struct BlobXml {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Properties")]
    properties: PropertiesXml,
}

#[derive(Debug, Deserialize)]
struct PropertiesXml {
    #[serde(rename = "Content-Length", default)]
    content_length: u64,
    #[serde(rename = "Last-Modified", default)]
    last_modified: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PrefixXml {
    #[serde(rename = "Name")]
    name: String,
}

/// Azure Storage's error body.
#[derive(Debug, Default, Deserialize)]
struct ErrorXml {
    #[serde(rename = "Message", default)]
    message: Option<String>,
    #[serde(rename = "AuthorizationDenialDetail", default)]
    denial: Option<String>,
    #[serde(rename = "AuthenticationErrorDetail", default)]
    authentication: Option<String>,
}

/// The XML of a response body, without the byte-order mark Azure puts first.
fn xml_text(body: &str) -> &str {
    body.trim_start_matches('\u{feff}')
}

/// Parses a List Blobs response.
fn parse_listing(xml: &str) -> Result<Page, quick_xml::DeError> {
    let results: EnumerationResults = quick_xml::de::from_str(xml_text(xml))?;
    let mut listing = Listing::default();
    for item in results.blobs.items {
        match item {
            ItemXml::Blob(b) => {
                let mtime_nsec = b
                    .properties
                    .last_modified
                    .and_then(|v| httpdate::parse_http_date(&v).ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as i64);
                let props = Properties {
                    size: b.properties.content_length,
                    mtime_nsec,
                };
                listing.blobs.push((b.name, props));
            }
            ItemXml::BlobPrefix(p) => listing.prefixes.push(p.name),
        }
    }
    Ok(Page {
        listing,
        next_marker: results.next_marker.filter(|m| !m.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blobs_prefixes_and_the_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="x" ContainerName="c"><Prefix>train/</Prefix><Blobs><Blob><Name>train/a&amp;b.tfrecord</Name><Properties><Last-Modified>Thu, 26 Nov 2026 10:00:00 GMT</Last-Modified><Content-Length>1234</Content-Length></Properties></Blob><BlobPrefix><Name>train/sub/</Name></BlobPrefix></Blobs><NextMarker>m2</NextMarker></EnumerationResults>"#;
        let page = parse_listing(&format!("\u{feff}{xml}")).unwrap();
        assert_eq!(page.listing.blobs.len(), 1);
        assert_eq!(page.listing.blobs[0].0, "train/a&b.tfrecord");
        assert_eq!(page.listing.blobs[0].1.size, 1234);
        assert!(page.listing.blobs[0].1.mtime_nsec > 0);
        assert_eq!(page.listing.prefixes, vec!["train/sub/".to_owned()]);
        assert_eq!(page.next_marker.as_deref(), Some("m2"));
        let last =
            parse_listing("<EnumerationResults><Blobs></Blobs><NextMarker /></EnumerationResults>")
                .unwrap();
        assert_eq!(last.next_marker, None);
    }

    #[test]
    fn blob_names_are_escaped_but_keep_their_slashes() {
        assert_eq!(
            utf8_percent_encode("a b/c%d.tfrecord", BLOB_NAME).to_string(),
            "a%20b/c%25d.tfrecord"
        );
    }

    #[test]
    fn error_bodies_yield_their_detail() {
        let body = "<Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized.</Message><AuthorizationDenialDetail>needs &apos;Storage Blob Data Reader&apos;</AuthorizationDenialDetail></Error>";
        let error: ErrorXml = quick_xml::de::from_str(body).unwrap();
        assert_eq!(
            error.denial.as_deref(),
            Some("needs 'Storage Blob Data Reader'")
        );
        assert_eq!(
            error.message.as_deref(),
            Some("This request is not authorized.")
        );
        assert_eq!(error.authentication, None);
        assert!(parse_listing("<EnumerationResults><Blobs><Blob>").is_err());
    }
}
