//! The XML Azure Storage speaks: list results written as Azure writes them, block
//! lists parsed with a real XML reader, and the two date formats Azure uses.

use quick_xml::Reader;
use quick_xml::events::Event;
use time::OffsetDateTime;

use crate::error::StorageError;

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

/// One entry of a Put Block List body: which list to take the block from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlockRef {
    /// `<Committed>`: from the blob's committed blocks.
    Committed(String),
    /// `<Uncommitted>`: from the staged blocks.
    Uncommitted(String),
    /// `<Latest>`: staged if there is one, else committed.
    Latest(String),
}

impl BlockRef {
    /// The (base64) block id.
    pub(crate) fn id(&self) -> &str {
        match self {
            BlockRef::Committed(id) | BlockRef::Uncommitted(id) | BlockRef::Latest(id) => id,
        }
    }
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
                let id = t
                    .decode()
                    .map_err(|e| StorageError::invalid_xml(e.to_string()))?
                    .trim()
                    .to_owned();
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
<BlockList><Latest>AAA=</Latest><Uncommitted>BBB=</Uncommitted><Committed>CCC=</Committed></BlockList>"#;
        assert_eq!(
            parse_block_list(xml).unwrap(),
            vec![
                BlockRef::Latest("AAA=".into()),
                BlockRef::Uncommitted("BBB=".into()),
                BlockRef::Committed("CCC=".into()),
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
