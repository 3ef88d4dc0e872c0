//! The XML Azure Storage speaks. Every body the gate writes or reads is here,
//! written and read with quick-xml's serde support. Reads pass a strict check first
//! (one root of the expected name, well formed, no DOCTYPE, bounded depth), because
//! serde alone would skip a DOCTYPE, ignore a wrong root and accept trailing content.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use quick_xml::Reader;
use quick_xml::events::Event;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::StorageError;
use crate::lease::{Lease, State};
use crate::store::{BlobInfo, CommittedBlock, Container};
use crate::tags::Tags;

/// What precedes every XML body Azure writes.
const PROLOGUE: &str = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>";

/// Deeper than any body Azure defines (`Tags/TagSet/Tag/Key` is 4).
const MAX_DEPTH: usize = 8;

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

/// Serializes `value` as the document element `root`, after Azure's prologue.
fn document(root: &str, value: &impl Serialize) -> String {
    let mut xml = String::from(PROLOGUE);
    // Serializing into a String fails only for shapes XML cannot hold (a map key
    // that is not a name); every shape here is fixed, so that is a bug.
    let mut serializer = quick_xml::se::Serializer::with_root(&mut xml, Some(root))
        .expect("a fixed root element name");
    serializer.expand_empty_elements(false);
    value
        .serialize(serializer)
        .expect("a fixed XML shape serializes");
    xml
}

/// Element-name → text pairs written in order (metadata, error details).
struct Elements<'a, K>(&'a [(K, String)]);

impl<K: AsRef<str>> Serialize for Elements<'_, K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, text) in self.0 {
            map.serialize_entry(name.as_ref(), text)?;
        }
        map.end()
    }
}

// ---- Error bodies ---------------------------------------------------------------

/// An error body: `<Error><Code>…</Code><Message>…</Message>{details}</Error>`.
pub(crate) fn error(code: &str, message: &str, details: &[(&'static str, String)]) -> String {
    let mut elements = vec![("Code", code.to_owned()), ("Message", message.to_owned())];
    elements.extend(details.iter().cloned());
    document("Error", &Elements(&elements))
}

// ---- List results ---------------------------------------------------------------

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

/// What List Blobs' `include` asks for besides the properties.
pub(crate) struct Include {
    pub(crate) metadata: bool,
    pub(crate) tags: bool,
}

/// `<LeaseStatus>`, `<LeaseState>` and, when leased, `<LeaseDuration>`.
struct LeaseFields {
    status: &'static str,
    state: &'static str,
    duration: Option<&'static str>,
}

impl LeaseFields {
    fn of(lease: Option<&Lease>) -> Self {
        let state = State::of(lease, OffsetDateTime::now_utc());
        let duration = match lease {
            Some(l) if state == State::Leased => Some(if l.duration.is_some() {
                "fixed"
            } else {
                "infinite"
            }),
            _ => None,
        };
        Self {
            status: state.status(),
            state: state.as_str(),
            duration,
        }
    }
}

#[derive(Serialize)]
struct ContainerResults<'a> {
    #[serde(rename = "@ServiceEndpoint")]
    service_endpoint: String,
    #[serde(rename = "Prefix", skip_serializing_if = "Option::is_none")]
    prefix: Option<&'a str>,
    #[serde(rename = "Marker", skip_serializing_if = "Option::is_none")]
    marker: Option<&'a str>,
    #[serde(rename = "MaxResults", skip_serializing_if = "Option::is_none")]
    max_results: Option<&'a str>,
    #[serde(rename = "Containers")]
    containers: ContainerItems<'a>,
    #[serde(rename = "NextMarker")]
    next_marker: &'a str,
}

#[derive(Serialize)]
struct ContainerItems<'a> {
    #[serde(rename = "Container")]
    items: Vec<ContainerItem<'a>>,
}

#[derive(Serialize)]
struct ContainerItem<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Properties")]
    properties: ContainerProperties<'a>,
    #[serde(rename = "Metadata", skip_serializing_if = "Option::is_none")]
    metadata: Option<Elements<'a, String>>,
}

#[derive(Serialize)]
struct ContainerProperties<'a> {
    #[serde(rename = "Last-Modified")]
    last_modified: String,
    #[serde(rename = "Etag")]
    etag: &'a str,
    #[serde(rename = "LeaseStatus")]
    lease_status: &'static str,
    #[serde(rename = "LeaseState")]
    lease_state: &'static str,
    #[serde(rename = "LeaseDuration", skip_serializing_if = "Option::is_none")]
    lease_duration: Option<&'static str>,
    #[serde(rename = "DefaultEncryptionScope")]
    default_encryption_scope: &'static str,
    #[serde(rename = "DenyEncryptionScopeOverride")]
    deny_encryption_scope_override: bool,
    #[serde(rename = "HasImmutabilityPolicy")]
    has_immutability_policy: bool,
    #[serde(rename = "HasLegalHold")]
    has_legal_hold: bool,
}

/// List Containers' result.
pub(crate) fn container_list(
    account_url: &str,
    listing: &Listing<'_>,
    containers: &[Container],
    with_metadata: bool,
    next_marker: Option<&str>,
) -> String {
    let items = containers
        .iter()
        .map(|c| {
            let lease = LeaseFields::of(c.lease.as_ref());
            ContainerItem {
                name: &c.name,
                properties: ContainerProperties {
                    last_modified: rfc1123(c.last_modified),
                    etag: &c.etag,
                    lease_status: lease.status,
                    lease_state: lease.state,
                    lease_duration: lease.duration,
                    default_encryption_scope: "$account-encryption-key",
                    deny_encryption_scope_override: false,
                    has_immutability_policy: false,
                    has_legal_hold: false,
                },
                metadata: with_metadata.then_some(Elements(&c.metadata)),
            }
        })
        .collect();
    document(
        "EnumerationResults",
        &ContainerResults {
            service_endpoint: format!("{account_url}/"),
            prefix: listing.prefix,
            marker: listing.marker,
            max_results: listing.max_results,
            containers: ContainerItems { items },
            next_marker: next_marker.unwrap_or_default(),
        },
    )
}

#[derive(Serialize)]
struct BlobResults<'a> {
    #[serde(rename = "@ServiceEndpoint")]
    service_endpoint: String,
    #[serde(rename = "@ContainerName")]
    container_name: &'a str,
    #[serde(rename = "Prefix", skip_serializing_if = "Option::is_none")]
    prefix: Option<&'a str>,
    #[serde(rename = "Marker", skip_serializing_if = "Option::is_none")]
    marker: Option<&'a str>,
    #[serde(rename = "MaxResults", skip_serializing_if = "Option::is_none")]
    max_results: Option<&'a str>,
    #[serde(rename = "Delimiter", skip_serializing_if = "Option::is_none")]
    delimiter: Option<&'a str>,
    #[serde(rename = "Blobs")]
    blobs: BlobItems<'a>,
    #[serde(rename = "NextMarker")]
    next_marker: &'a str,
}

#[derive(Serialize)]
struct BlobItems<'a> {
    #[serde(rename = "$value")]
    items: Vec<BlobItem<'a>>,
}

/// The element name is the variant name: `<Blob>` or `<BlobPrefix>`.
#[derive(Serialize)]
enum BlobItem<'a> {
    Blob(Box<BlobEntry<'a>>),
    BlobPrefix {
        #[serde(rename = "Name")]
        name: &'a str,
    },
}

#[derive(Serialize)]
struct BlobEntry<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Properties")]
    properties: BlobProperties<'a>,
    #[serde(rename = "Metadata", skip_serializing_if = "Option::is_none")]
    metadata: Option<Elements<'a, String>>,
    #[serde(rename = "Tags", skip_serializing_if = "Option::is_none")]
    tags: Option<TagsXml<'a>>,
}

#[derive(Serialize)]
struct BlobProperties<'a> {
    #[serde(rename = "Creation-Time")]
    creation_time: String,
    #[serde(rename = "Last-Modified")]
    last_modified: String,
    #[serde(rename = "Etag")]
    etag: &'a str,
    #[serde(rename = "Content-Length")]
    content_length: u64,
    #[serde(rename = "Content-Type")]
    content_type: &'a str,
    #[serde(rename = "Content-Encoding")]
    content_encoding: &'a str,
    #[serde(rename = "Content-Language")]
    content_language: &'a str,
    #[serde(rename = "Content-CRC64")]
    content_crc64: (),
    #[serde(rename = "Content-MD5")]
    content_md5: &'a str,
    #[serde(rename = "Cache-Control")]
    cache_control: &'a str,
    #[serde(rename = "Content-Disposition")]
    content_disposition: &'a str,
    #[serde(rename = "BlobType")]
    blob_type: &'static str,
    #[serde(rename = "AccessTier")]
    access_tier: &'static str,
    #[serde(rename = "AccessTierInferred")]
    access_tier_inferred: bool,
    #[serde(rename = "LeaseStatus")]
    lease_status: &'static str,
    #[serde(rename = "LeaseState")]
    lease_state: &'static str,
    #[serde(rename = "LeaseDuration", skip_serializing_if = "Option::is_none")]
    lease_duration: Option<&'static str>,
    #[serde(rename = "TagCount", skip_serializing_if = "Option::is_none")]
    tag_count: Option<usize>,
    #[serde(rename = "ServerEncrypted")]
    server_encrypted: bool,
}

fn blob_entry<'a>(info: &'a BlobInfo, include: &Include) -> BlobEntry<'a> {
    let p = &info.properties;
    let text = |v: &'a Option<String>| v.as_deref().unwrap_or_default();
    let lease = LeaseFields::of(info.lease.as_ref());
    let has_tags = !info.tags.is_empty();
    BlobEntry {
        name: &info.name,
        properties: BlobProperties {
            creation_time: rfc1123(info.last_modified),
            last_modified: rfc1123(info.last_modified),
            etag: &info.etag,
            content_length: info.size,
            content_type: p
                .content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
            content_encoding: text(&p.content_encoding),
            content_language: text(&p.content_language),
            content_crc64: (),
            content_md5: text(&p.content_md5),
            cache_control: text(&p.cache_control),
            content_disposition: text(&p.content_disposition),
            blob_type: "BlockBlob",
            access_tier: "Hot",
            access_tier_inferred: true,
            lease_status: lease.status,
            lease_state: lease.state,
            lease_duration: lease.duration,
            tag_count: has_tags.then_some(info.tags.len()),
            server_encrypted: true,
        },
        metadata: include.metadata.then_some(Elements(&p.metadata)),
        tags: (include.tags && has_tags).then(|| TagsXml::of(&info.tags)),
    }
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
    let items = entries
        .iter()
        .map(|entry| match entry {
            ListEntry::Prefix(name) => BlobItem::BlobPrefix { name },
            ListEntry::Blob(info) => BlobItem::Blob(Box::new(blob_entry(info, &include))),
        })
        .collect();
    document(
        "EnumerationResults",
        &BlobResults {
            service_endpoint: format!("{account_url}/"),
            container_name: container,
            prefix: listing.prefix,
            marker: listing.marker,
            max_results: listing.max_results,
            delimiter: listing.delimiter,
            blobs: BlobItems { items },
            next_marker: next_marker.unwrap_or_default(),
        },
    )
}

#[derive(Serialize)]
struct FoundResults<'a> {
    #[serde(rename = "@ServiceEndpoint")]
    service_endpoint: String,
    #[serde(rename = "Where")]
    expression: &'a str,
    #[serde(rename = "Blobs")]
    blobs: FoundItems<'a>,
    #[serde(rename = "NextMarker")]
    next_marker: &'a str,
}

#[derive(Serialize)]
struct FoundItems<'a> {
    #[serde(rename = "Blob")]
    items: Vec<FoundBlob<'a>>,
}

#[derive(Serialize)]
struct FoundBlob<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "ContainerName")]
    container_name: &'a str,
    #[serde(rename = "Tags")]
    tags: TagsXml<'a>,
}

/// Find Blobs by Tags' result: `(container, blob, the tags the filter named)`.
pub(crate) fn found_blobs(
    account_url: &str,
    expression: &str,
    found: &[(String, String, Tags)],
    next_marker: Option<&str>,
) -> String {
    let items = found
        .iter()
        .map(|(container, name, tags)| FoundBlob {
            name,
            container_name: container,
            tags: TagsXml::of(tags),
        })
        .collect();
    document(
        "EnumerationResults",
        &FoundResults {
            service_endpoint: format!("{account_url}/"),
            expression,
            blobs: FoundItems { items },
            next_marker: next_marker.unwrap_or_default(),
        },
    )
}

// ---- Tags -----------------------------------------------------------------------

/// `<TagSet><Tag><Key>…</Key><Value>…</Value></Tag>…</TagSet>`, inside `<Tags>`.
#[derive(Serialize)]
struct TagsXml<'a> {
    #[serde(rename = "TagSet")]
    tag_set: TagSetXml<'a>,
}

#[derive(Serialize)]
struct TagSetXml<'a> {
    #[serde(rename = "Tag")]
    tags: Vec<TagXml<'a>>,
}

#[derive(Serialize)]
struct TagXml<'a> {
    #[serde(rename = "Key")]
    key: &'a str,
    #[serde(rename = "Value")]
    value: &'a str,
}

impl<'a> TagsXml<'a> {
    fn of(tags: &'a Tags) -> Self {
        Self {
            tag_set: TagSetXml {
                tags: tags
                    .iter()
                    .map(|(key, value)| TagXml { key, value })
                    .collect(),
            },
        }
    }
}

/// Get Blob Tags' result.
pub(crate) fn tags_document(tags: &Tags) -> String {
    document("Tags", &TagsXml::of(tags))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagsBody {
    #[serde(rename = "TagSet")]
    tag_set: TagSetBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagSetBody {
    #[serde(rename = "Tag", default)]
    tags: Vec<TagBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagBody {
    // Missing or empty keys are left to the tag rules (`EmptyTagName`).
    #[serde(rename = "Key", default)]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
}

/// The Set Blob Tags body, before the tag rules are applied.
pub(crate) fn parse_tags(body: &[u8]) -> Result<Tags, StorageError> {
    let parsed: TagsBody = parse(body, "Tags")?;
    Ok(parsed
        .tag_set
        .tags
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect())
}

// ---- Block lists ----------------------------------------------------------------

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

#[derive(Serialize)]
struct BlockListResult {
    #[serde(rename = "CommittedBlocks", skip_serializing_if = "Option::is_none")]
    committed: Option<BlockItems>,
    #[serde(rename = "UncommittedBlocks", skip_serializing_if = "Option::is_none")]
    uncommitted: Option<BlockItems>,
}

#[derive(Serialize)]
struct BlockItems {
    #[serde(rename = "Block")]
    blocks: Vec<BlockItem>,
}

#[derive(Serialize)]
struct BlockItem {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Size")]
    size: u64,
}

/// Get Block List's result: `committed` and `uncommitted` are given when asked for.
pub(crate) fn block_list(
    committed: Option<&[CommittedBlock]>,
    uncommitted: Option<&[CommittedBlock]>,
) -> String {
    let items = |blocks: &[CommittedBlock]| BlockItems {
        blocks: blocks
            .iter()
            .map(|b| BlockItem {
                name: B64.encode(&b.id),
                size: b.size,
            })
            .collect(),
    };
    document(
        "BlockList",
        &BlockListResult {
            committed: committed.map(items),
            uncommitted: uncommitted.map(items),
        },
    )
}

#[derive(Deserialize)]
struct BlockListBody {
    #[serde(rename = "$value", default)]
    entries: Vec<BlockListEntry>,
}

/// The element name is the variant name; any other element is refused.
#[derive(Deserialize)]
enum BlockListEntry {
    Committed(String),
    Uncommitted(String),
    Latest(String),
}

/// Parses `<BlockList><Latest>id</Latest>...</BlockList>`.
pub(crate) fn parse_block_list(body: &[u8]) -> Result<Vec<BlockRef>, StorageError> {
    let parsed: BlockListBody = parse(body, "BlockList")?;
    parsed
        .entries
        .into_iter()
        .map(|entry| {
            let (make, id): (fn(Vec<u8>) -> BlockRef, _) = match entry {
                BlockListEntry::Committed(id) => (BlockRef::Committed, id),
                BlockListEntry::Uncommitted(id) => (BlockRef::Uncommitted, id),
                BlockListEntry::Latest(id) => (BlockRef::Latest, id),
            };
            B64.decode(id.trim())
                .map(make)
                .map_err(|_| StorageError::invalid_block_id())
        })
        .collect()
}

// ---- Strict reading -------------------------------------------------------------

/// Checks `body` strictly, then deserializes it.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], root: &str) -> Result<T, StorageError> {
    check_strictly(body, root)?;
    let text = std::str::from_utf8(body)
        .map_err(|_| StorageError::invalid_xml("the body is not UTF-8"))?;
    quick_xml::de::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| StorageError::invalid_xml(e.to_string()))
}

/// One element named `root` holding the whole document, well formed, no DOCTYPE or
/// processing instruction, at most `MAX_DEPTH` deep.
fn check_strictly(body: &[u8], root: &str) -> Result<(), StorageError> {
    let mut reader = Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut root_done = false;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| StorageError::invalid_xml(e.to_string()))?;
        let opens = match &event {
            Event::Start(e) | Event::Empty(e) => Some(e.name().as_ref().to_vec()),
            _ => None,
        };
        if let Some(name) = opens {
            if depth == 0 {
                if root_done {
                    return Err(StorageError::invalid_xml(
                        "content after the document element",
                    ));
                }
                if name != root.as_bytes() {
                    return Err(StorageError::invalid_xml(format!(
                        "the root element is <{}>, expected <{root}>",
                        String::from_utf8_lossy(&name)
                    )));
                }
            }
            if depth + 1 > MAX_DEPTH {
                return Err(StorageError::invalid_xml(format!(
                    "elements nest deeper than {MAX_DEPTH} levels"
                )));
            }
        }
        match event {
            Event::Start(_) => depth += 1,
            Event::Empty(_) => root_done |= depth == 0,
            Event::End(_) => {
                depth -= 1;
                root_done |= depth == 0;
            }
            Event::Text(t) if depth == 0 => {
                let text = t
                    .decode()
                    .map_err(|e| StorageError::invalid_xml(e.to_string()))?;
                if !text.trim_start_matches('\u{feff}').trim().is_empty() {
                    return Err(StorageError::invalid_xml(
                        "text outside the document element",
                    ));
                }
            }
            Event::DocType(_) => {
                return Err(StorageError::invalid_xml(
                    "a document type declaration is not allowed",
                ));
            }
            Event::PI(_) => {
                return Err(StorageError::invalid_xml(
                    "processing instructions are not allowed",
                ));
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !root_done {
        return Err(StorageError::invalid_xml(format!(
            "the body has no complete <{root}> element"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_list_keeps_order_and_kind() {
        let xml = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>
<BlockList><Latest>AAA=</Latest><Uncommitted>BBA=</Uncommitted><Committed>CCA=</Committed></BlockList>";
        assert_eq!(
            parse_block_list(xml.as_bytes()).unwrap(),
            vec![
                BlockRef::Latest(B64.decode("AAA=").unwrap()),
                BlockRef::Uncommitted(B64.decode("BBA=").unwrap()),
                BlockRef::Committed(B64.decode("CCA=").unwrap()),
            ]
        );
        assert!(parse_block_list(b"<BlockList/>").unwrap().is_empty());
        assert!(
            parse_block_list(b"<BlockList>\n</BlockList>\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_block_lists_are_refused() {
        for bad in [
            &b"<Blocks><Latest>AA==</Latest></Blocks>"[..],
            b"<BlockList><Oops>AA==</Oops></BlockList>",
            b"not xml at all",
            b"",
            b"<BlockList>",
            b"<BlockList><Latest>AA==</Latest>",
            b"<!DOCTYPE x [<!ENTITY e \"AA==\">]><BlockList><Latest>&e;</Latest></BlockList>",
            b"<BlockList><Latest>AA==</Latest></BlockList><BlockList/>",
            b"<BlockList/>trailing",
            b"<?php x?><BlockList/>",
            b"<BlockList><Latest><Latest>AA==</Latest></Latest></BlockList>",
        ] {
            assert_eq!(
                parse_block_list(bad).unwrap_err().code,
                "InvalidXmlDocument",
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_block_list(b"<BlockList><Latest>not base64!</Latest></BlockList>")
                .unwrap_err()
                .code,
            "InvalidBlockId"
        );
    }

    #[test]
    fn nesting_is_bounded_before_it_is_parsed() {
        let deep = format!(
            "<BlockList>{}{}</BlockList>",
            "<a>".repeat(100_000),
            "</a>".repeat(100_000)
        );
        let err = parse_block_list(deep.as_bytes()).unwrap_err();
        assert_eq!(err.code, "InvalidXmlDocument");
    }

    #[test]
    fn tag_bodies_parse_strictly() {
        let xml = b"<?xml version=\"1.0\" encoding=\"utf-8\"?><Tags><TagSet><Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>b</Key><Value/></Tag></TagSet></Tags>";
        let tags = |pairs: &[(&str, &str)]| -> Tags {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(parse_tags(xml).unwrap(), tags(&[("a", "1"), ("b", "")]));
        assert!(parse_tags(b"<Tags><TagSet/></Tags>").unwrap().is_empty());
        for bad in [
            &b"<Tags><TagSet><Tag><Key>a</Key>"[..],
            b"<Other/>",
            b"<!DOCTYPE x><Tags/>",
            b"<Tags><TagSet><Tag><Nope>a</Nope></Tag></TagSet></Tags>",
            b"<Tags><TagSet/><Extra/></Tags>",
        ] {
            assert_eq!(
                parse_tags(bad).unwrap_err().code,
                "InvalidXmlDocument",
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let round_trip = tags(&[("k<&>", "v \"q\"")]);
        let written = tags_document(&round_trip);
        assert!(written.starts_with(PROLOGUE));
        assert_eq!(parse_tags(written.as_bytes()).unwrap(), round_trip);
    }

    #[test]
    fn written_documents_escape_and_keep_azure_shapes() {
        let body = error(
            "InvalidHeaderValue",
            "a <bad> & \"value\"\nRequestId:1",
            &[("HeaderName", "x-ms-<x>".into())],
        );
        assert_eq!(
            body,
            format!(
                "{PROLOGUE}<Error><Code>InvalidHeaderValue</Code><Message>a &lt;bad&gt; &amp; \"value\"\nRequestId:1</Message><HeaderName>x-ms-&lt;x&gt;</HeaderName></Error>"
            )
        );
        let blocks = [CommittedBlock {
            id: b"id-1".to_vec(),
            size: 7,
        }];
        assert_eq!(
            block_list(Some(&blocks), Some(&[])),
            format!(
                "{PROLOGUE}<BlockList><CommittedBlocks><Block><Name>aWQtMQ==</Name><Size>7</Size></Block></CommittedBlocks><UncommittedBlocks/></BlockList>"
            )
        );
        let listing = Listing {
            prefix: Some("p&"),
            marker: None,
            max_results: None,
            delimiter: Some("/"),
        };
        let page = blob_list(
            "https://acct.blob",
            "c",
            &listing,
            &[ListEntry::Prefix("p&/".into())],
            Include {
                metadata: false,
                tags: false,
            },
            None,
        );
        assert_eq!(
            page,
            format!(
                "{PROLOGUE}<EnumerationResults ServiceEndpoint=\"https://acct.blob/\" ContainerName=\"c\"><Prefix>p&amp;</Prefix><Delimiter>/</Delimiter><Blobs><BlobPrefix><Name>p&amp;/</Name></BlobPrefix></Blobs><NextMarker/></EnumerationResults>"
            )
        );
    }

    #[test]
    fn dates() {
        let t = OffsetDateTime::from_unix_timestamp(0).unwrap();
        assert_eq!(rfc1123(t), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(iso8601_now().len(), "2026-01-01T00:00:00.0000000Z".len());
    }
}
