//! The XML Azure Storage speaks: list results written as Azure writes them, block
//! lists parsed with a real XML reader, and the two date formats Azure uses. Every
//! XML body the gate writes or reads is here.

use quick_xml::Reader;
use quick_xml::events::Event;
use time::OffsetDateTime;

use crate::error::StorageError;
use crate::lease::{Lease, State};
use crate::store::{BlobInfo, CommittedBlock, Container};
use crate::tags::{Tags, tag_set};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Escapes text for an XML element or attribute.
pub(crate) fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// RFC 1123 date (`Thu, 26 Nov 2026 16:41:43 GMT`), as in `Last-Modified` and list results.
pub(crate) fn rfc1123(t: OffsetDateTime) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::from(t))
}

/// ISO 8601 with 7 fractional digits, as Azure writes `Time:` in error messages.
pub(crate) fn iso8601_now() -> String {
    let t = OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 100
    )
}

/// The echo of a list request's parameters in its result.
pub(crate) struct Listing<'q> {
    pub(crate) prefix: Option<&'q str>,
    pub(crate) marker: Option<&'q str>,
    pub(crate) max_results: Option<&'q str>,
    pub(crate) delimiter: Option<&'q str>,
}

/// One entry of a List Blobs page.
pub(crate) enum ListEntry {
    Blob(Box<BlobInfo>),
    Prefix(String),
}

/// List Containers' result.
pub(crate) fn container_list(
    account_url: &str,
    listing: &Listing<'_>,
    containers: &[Container],
    with_metadata: bool,
    next_marker: Option<&str>,
) -> String {
    let mut xml = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}/\">",
        escape(account_url)
    );
    push_listing(&mut xml, listing);
    xml.push_str("<Containers>");
    for c in containers {
        xml.push_str(&format!(
            "<Container><Name>{}</Name><Properties><Last-Modified>{}</Last-Modified><Etag>{}</Etag>{}<DefaultEncryptionScope>$account-encryption-key</DefaultEncryptionScope><DenyEncryptionScopeOverride>false</DenyEncryptionScopeOverride><HasImmutabilityPolicy>false</HasImmutabilityPolicy><HasLegalHold>false</HasLegalHold></Properties>",
            escape(&c.name),
            rfc1123(c.last_modified),
            escape(&c.etag),
            lease_elements(c.lease.as_ref()),
        ));
        if with_metadata {
            push_metadata(&mut xml, &c.metadata);
        }
        xml.push_str("</Container>");
    }
    xml.push_str("</Containers>");
    push_next_marker(&mut xml, next_marker);
    xml.push_str("</EnumerationResults>");
    xml
}

/// What List Blobs' `include` asks for besides the properties.
pub(crate) struct Include {
    pub(crate) metadata: bool,
    pub(crate) tags: bool,
}

/// List Blobs' result.
pub(crate) fn blob_list(
    account_url: &str,
    container: &str,
    listing: &Listing<'_>,
    entries: &[ListEntry],
    include: Include,
    next_marker: Option<&str>,
) -> String {
    let mut xml = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}/\" ContainerName=\"{}\">",
        escape(account_url),
        escape(container)
    );
    push_listing(&mut xml, listing);
    push_opt(&mut xml, "Delimiter", listing.delimiter);
    xml.push_str("<Blobs>");
    for entry in entries {
        match entry {
            ListEntry::Prefix(p) => xml.push_str(&format!(
                "<BlobPrefix><Name>{}</Name></BlobPrefix>",
                escape(p)
            )),
            ListEntry::Blob(info) => push_blob(&mut xml, info, &include),
        }
    }
    xml.push_str("</Blobs>");
    push_next_marker(&mut xml, next_marker);
    xml.push_str("</EnumerationResults>");
    xml
}

/// `<LeaseStatus>`, `<LeaseState>` and, when leased, `<LeaseDuration>`.
fn lease_elements(lease: Option<&Lease>) -> String {
    let state = State::of(lease, OffsetDateTime::now_utc());
    let mut xml = format!(
        "<LeaseStatus>{}</LeaseStatus><LeaseState>{}</LeaseState>",
        state.status(),
        state.as_str()
    );
    if state == State::Leased
        && let Some(l) = lease
    {
        let kind = if l.duration.is_some() {
            "fixed"
        } else {
            "infinite"
        };
        xml.push_str(&format!("<LeaseDuration>{kind}</LeaseDuration>"));
    }
    xml
}

fn push_listing(xml: &mut String, listing: &Listing<'_>) {
    push_opt(xml, "Prefix", listing.prefix);
    push_opt(xml, "Marker", listing.marker);
    push_opt(xml, "MaxResults", listing.max_results);
}

fn push_opt(xml: &mut String, element: &str, value: Option<&str>) {
    if let Some(v) = value {
        xml.push_str(&format!("<{element}>{}</{element}>", escape(v)));
    }
}

fn push_next_marker(xml: &mut String, next: Option<&str>) {
    match next {
        Some(m) => xml.push_str(&format!("<NextMarker>{}</NextMarker>", escape(m))),
        None => xml.push_str("<NextMarker />"),
    }
}

fn push_metadata(xml: &mut String, metadata: &[(String, String)]) {
    xml.push_str("<Metadata>");
    for (k, v) in metadata {
        xml.push_str(&format!("<{k}>{}</{k}>", escape(v)));
    }
    xml.push_str("</Metadata>");
}

/// Find Blobs by Tags' result: `(container, blob, the tags the filter named)`.
pub(crate) fn found_blobs(
    account_url: &str,
    expression: &str,
    found: &[(String, String, Tags)],
    next_marker: Option<&str>,
) -> String {
    let mut xml = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}/\"><Where>{}</Where><Blobs>",
        escape(account_url),
        escape(expression)
    );
    for (container, name, tags) in found {
        xml.push_str(&format!(
            "<Blob><Name>{}</Name><ContainerName>{}</ContainerName><Tags>{}</Tags></Blob>",
            escape(name),
            escape(container),
            tag_set(tags)
        ));
    }
    xml.push_str("</Blobs>");
    push_next_marker(&mut xml, next_marker);
    xml.push_str("</EnumerationResults>");
    xml
}

fn push_blob(xml: &mut String, info: &BlobInfo, include: &Include) {
    let p = &info.properties;
    let opt = |v: &Option<String>| v.as_deref().map(escape).unwrap_or_default();
    xml.push_str(&format!(
        "<Blob><Name>{}</Name><Properties><Creation-Time>{lm}</Creation-Time><Last-Modified>{lm}</Last-Modified><Etag>{}</Etag><Content-Length>{}</Content-Length><Content-Type>{}</Content-Type><Content-Encoding>{}</Content-Encoding><Content-Language>{}</Content-Language><Content-CRC64 /><Content-MD5>{}</Content-MD5><Cache-Control>{}</Cache-Control><Content-Disposition>{}</Content-Disposition><BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>{}{}<ServerEncrypted>true</ServerEncrypted></Properties>",
        escape(&info.name),
        escape(&info.etag),
        info.size,
        escape(p.content_type.as_deref().unwrap_or("application/octet-stream")),
        opt(&p.content_encoding),
        opt(&p.content_language),
        opt(&p.content_md5),
        opt(&p.cache_control),
        opt(&p.content_disposition),
        lease_elements(info.lease.as_ref()),
        if info.tags.is_empty() {
            String::new()
        } else {
            format!("<TagCount>{}</TagCount>", info.tags.len())
        },
        lm = rfc1123(info.last_modified),
    ));
    if include.metadata {
        push_metadata(xml, &p.metadata);
    }
    if include.tags && !info.tags.is_empty() {
        xml.push_str(&format!("<Tags>{}</Tags>", tag_set(&info.tags)));
    }
    xml.push_str("</Blob>");
}

/// One entry of a Put Block List body: which list to take the block from, and its
/// raw (base64-decoded) id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlockRef {
    /// `<Committed>`: from the blob's committed blocks.
    Committed(Vec<u8>),
    /// `<Uncommitted>`: from the staged blocks.
    Uncommitted(Vec<u8>),
    /// `<Latest>`: staged if there is one, else committed.
    Latest(Vec<u8>),
}

impl BlockRef {
    /// The raw block id.
    pub(crate) fn id(&self) -> &[u8] {
        match self {
            BlockRef::Committed(id) | BlockRef::Uncommitted(id) | BlockRef::Latest(id) => id,
        }
    }
}

/// Get Block List's result: `committed` and `uncommitted` are given when asked for.
pub(crate) fn block_list(
    committed: Option<&[CommittedBlock]>,
    uncommitted: Option<&[CommittedBlock]>,
) -> String {
    let mut xml = String::from("\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for (element, blocks) in [
        ("CommittedBlocks", committed),
        ("UncommittedBlocks", uncommitted),
    ] {
        let Some(blocks) = blocks else { continue };
        xml.push_str(&format!("<{element}>"));
        for b in blocks {
            xml.push_str(&format!(
                "<Block><Name>{}</Name><Size>{}</Size></Block>",
                B64.encode(&b.id),
                b.size
            ));
        }
        xml.push_str(&format!("</{element}>"));
    }
    xml.push_str("</BlockList>");
    xml
}

/// Parses `<BlockList><Latest>id</Latest>...</BlockList>`.
pub(crate) fn parse_block_list(body: &[u8]) -> Result<Vec<BlockRef>, StorageError> {
    let mut reader = Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    let mut seen_root = false;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if !seen_root {
                    if name != "BlockList" {
                        return Err(StorageError::invalid_xml(format!(
                            "the root element is <{name}>, expected <BlockList>"
                        )));
                    }
                    seen_root = true;
                } else if matches!(name.as_str(), "Committed" | "Uncommitted" | "Latest") {
                    current = Some(name);
                } else {
                    return Err(StorageError::invalid_xml(format!(
                        "unexpected element <{name}> in <BlockList>"
                    )));
                }
            }
            Ok(Event::Text(t)) => {
                let Some(kind) = current.take() else { continue };
                let text = t
                    .decode()
                    .map_err(|e| StorageError::invalid_xml(e.to_string()))?;
                let id = B64
                    .decode(text.trim())
                    .map_err(|_| StorageError::invalid_block_id())?;
                blocks.push(match kind.as_str() {
                    "Committed" => BlockRef::Committed(id),
                    "Uncommitted" => BlockRef::Uncommitted(id),
                    _ => BlockRef::Latest(id),
                });
            }
            Ok(Event::End(_)) => current = None,
            Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if name == "BlockList" && !seen_root {
                    seen_root = true;
                } else {
                    return Err(StorageError::invalid_block_id());
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(StorageError::invalid_xml(e.to_string())),
        }
        buf.clear();
    }
    if !seen_root {
        return Err(StorageError::invalid_xml(
            "the body has no <BlockList> element",
        ));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_list_keeps_order_and_kind() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?>
<BlockList><Latest>AAA=</Latest><Uncommitted>BBA=</Uncommitted><Committed>CCA=</Committed></BlockList>"#;
        assert_eq!(
            parse_block_list(xml).unwrap(),
            vec![
                BlockRef::Latest(B64.decode("AAA=").unwrap()),
                BlockRef::Uncommitted(B64.decode("BBA=").unwrap()),
                BlockRef::Committed(B64.decode("CCA=").unwrap()),
            ]
        );
        assert!(parse_block_list(b"<BlockList/>").unwrap().is_empty());
    }

    #[test]
    fn bad_block_lists_are_refused() {
        assert_eq!(
            parse_block_list(b"<Blocks><Latest>A</Latest></Blocks>")
                .unwrap_err()
                .code,
            "InvalidXmlDocument"
        );
        assert_eq!(
            parse_block_list(b"<BlockList><Oops>A</Oops></BlockList>")
                .unwrap_err()
                .code,
            "InvalidXmlDocument"
        );
        assert_eq!(
            parse_block_list(b"not xml at all").unwrap_err().code,
            "InvalidXmlDocument"
        );
    }

    #[test]
    fn escaping_and_dates() {
        assert_eq!(escape("a<b&\"c\""), "a&lt;b&amp;&quot;c&quot;");
        let t = OffsetDateTime::from_unix_timestamp(0).unwrap();
        assert_eq!(rfc1123(t), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
