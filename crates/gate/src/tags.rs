//! Blob index tags: the rules a tag set must follow, `x-ms-tags`, the Set Blob
//! Tags body, and the Find Blobs by Tags filter language.
//!
//! Rules (Azure's "Manage and find Azure Blob data with blob index tags"): at most
//! 10 tags; keys 1–128 and values 0–256 characters of `a-z A-Z 0-9`, space and
//! `+ - . : = _ /`; both case-sensitive. A filter is `"key" op 'value'` terms
//! joined by `AND`, with `=`, `>`, `>=`, `<`, `<=` compared lexicographically, and
//! `@container = 'name'` to search one container.

use axum::http::StatusCode;

use crate::error::StorageError;

/// A blob's tags, in the order given.
pub(crate) type Tags = Vec<(String, String)>;

const MAX_TAGS: usize = 10;

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || " +-.:=_/".contains(c)
}

fn invalid_tag(reason: String) -> StorageError {
    StorageError::new(
        StatusCode::BAD_REQUEST,
        "InvalidTag",
        "The tags specified are invalid. It contains characters that are not permitted.",
    )
    .detail("Reason", reason)
}

/// Checks a tag set against Azure's rules.
pub(crate) fn validate(tags: &Tags) -> Result<(), StorageError> {
    if tags.len() > MAX_TAGS {
        return Err(StorageError::new(
            StatusCode::BAD_REQUEST,
            "TagsTooLarge",
            "The tags specified exceed the maximum permissible limit.",
        )
        .detail("Reason", format!("a blob has at most {MAX_TAGS} tags")));
    }
    for (i, (key, value)) in tags.iter().enumerate() {
        if key.is_empty() {
            return Err(StorageError::new(
                StatusCode::BAD_REQUEST,
                "EmptyTagName",
                "The name of one of the tag key-value pairs is empty.",
            ));
        }
        if tags[..i].iter().any(|(k, _)| k == key) {
            return Err(StorageError::new(
                StatusCode::BAD_REQUEST,
                "DuplicateTagNames",
                "The tags specified contain duplicate names.",
            )
            .detail("Reason", format!("'{key}' is given twice")));
        }
        if key.chars().count() > 128 || value.chars().count() > 256 {
            return Err(invalid_tag(format!(
                "tag '{key}': keys are at most 128 and values at most 256 characters"
            )));
        }
        if let Some(c) = key.chars().chain(value.chars()).find(|c| !allowed(*c)) {
            return Err(invalid_tag(format!(
                "tag '{key}': '{c}' is not allowed; use letters, digits, space and + - . : = _ /"
            )));
        }
    }
    Ok(())
}

/// `x-ms-tags`: a query-string-encoded tag set (`k1=v1&k2=v2`).
pub(crate) fn from_header(value: &str) -> Result<Tags, StorageError> {
    let tags: Tags = serde_urlencoded::from_str(value)
        .map_err(|_| StorageError::invalid_header_value("x-ms-tags", value))?;
    validate(&tags)?;
    Ok(tags)
}

/// The tags a write sets with `x-ms-tags`, if it sets any.
pub(crate) fn upload_tags(headers: &axum::http::HeaderMap) -> Result<Option<Tags>, StorageError> {
    crate::guard::header(headers, "x-ms-tags")
        .map(from_header)
        .transpose()
}

/// The Set Blob Tags body, checked against the tag rules.
pub(crate) fn parse_xml(body: &[u8]) -> Result<Tags, StorageError> {
    let tags = crate::xml::parse_tags(body)?;
    validate(&tags)?;
    Ok(tags)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A Find Blobs by Tags filter: every term must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    container: Option<String>,
    terms: Vec<(String, Op, String)>,
}

impl Filter {
    /// Parses the `where` parameter.
    pub(crate) fn parse(text: &str) -> Result<Self, StorageError> {
        let bad = |reason: &str| StorageError::invalid_query_parameter("where", text, reason);
        let mut rest = text.trim();
        let mut filter = Filter {
            container: None,
            terms: Vec::new(),
        };
        loop {
            let (key, after) = if let Some(r) = rest.strip_prefix("@container") {
                ("@container".to_owned(), r)
            } else if let Some(r) = rest.strip_prefix('"') {
                let end = r
                    .find('"')
                    .ok_or_else(|| bad("a tag key is not closed by '\"'"))?;
                (r[..end].to_owned(), &r[end + 1..])
            } else {
                return Err(bad(
                    "a term starts with a double-quoted tag key or @container",
                ));
            };
            let after = after.trim_start();
            let (op, after) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("=", Op::Eq),
                (">", Op::Gt),
                ("<", Op::Lt),
            ]
            .into_iter()
            .find_map(|(s, op)| after.strip_prefix(s).map(|r| (op, r)))
            .ok_or_else(|| {
                bad("expected =, >, >=, < or <= after a key (OR and <> are not allowed)")
            })?;
            let after = after.trim_start();
            let r = after
                .strip_prefix('\'')
                .ok_or_else(|| bad("a value is single-quoted"))?;
            let end = r
                .find('\'')
                .ok_or_else(|| bad("a value is not closed by \"'\""))?;
            let value = r[..end].to_owned();
            if key == "@container" {
                if op != Op::Eq || filter.container.is_some() {
                    return Err(bad("@container is compared once, with ="));
                }
                filter.container = Some(value);
            } else {
                let range =
                    |o: Op| matches!(o, Op::Gt | Op::Ge) as i8 - matches!(o, Op::Lt | Op::Le) as i8;
                if op != Op::Eq
                    && filter
                        .terms
                        .iter()
                        .any(|(k, o, _)| *k == key && *o != Op::Eq && range(*o) == range(op))
                {
                    return Err(bad("two ranges on the same side of one key"));
                }
                filter.terms.push((key, op, value));
            }
            rest = r[end + 1..].trim_start();
            if rest.is_empty() {
                break;
            }
            let (word, next) = rest.split_at(rest.len().min(3));
            if !word.eq_ignore_ascii_case("AND") {
                return Err(bad("terms are joined by AND"));
            }
            rest = next.trim_start();
        }
        if filter.terms.is_empty() {
            return Err(bad("a filter needs at least one tag term"));
        }
        Ok(filter)
    }

    /// The container the filter is limited to, if any.
    pub(crate) fn container(&self) -> Option<&str> {
        self.container.as_deref()
    }

    /// Whether a blob in `container` with `tags` matches; on a match, the tags the
    /// filter named (what Find Blobs by Tags returns).
    pub(crate) fn matches(&self, container: &str, tags: &Tags) -> Option<Tags> {
        if self.container.as_deref().is_some_and(|c| c != container) {
            return None;
        }
        let mut named = Tags::new();
        for (key, op, want) in &self.terms {
            let (_, have) = tags.iter().find(|(k, _)| k == key)?;
            let holds = match op {
                Op::Eq => have == want,
                Op::Gt => have > want,
                Op::Ge => have >= want,
                Op::Lt => have < want,
                Op::Le => have <= want,
            };
            if !holds {
                return None;
            }
            if !named.iter().any(|(k, _)| k == key) {
                named.push((key.clone(), have.clone()));
            }
        }
        Some(named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn tag_sets_follow_azure_rules() {
        assert!(validate(&tags(&[("Project", "alpha beta"), ("date", "2026-06-01")])).is_ok());
        let code = |t: Tags| validate(&t).unwrap_err().code;
        assert_eq!(code(tags(&[("", "x")])), "EmptyTagName");
        assert_eq!(code(tags(&[("a", "1"), ("a", "2")])), "DuplicateTagNames");
        assert_eq!(code(tags(&[("a", "x!")])), "InvalidTag");
        assert_eq!(
            code((0..11).map(|i| (i.to_string(), String::new())).collect()),
            "TagsTooLarge"
        );
        assert_eq!(code(tags(&[(&"k".repeat(129), "")])), "InvalidTag");
        assert_eq!(
            from_header("Project=alpha&Status=raw%20data").unwrap(),
            tags(&[("Project", "alpha"), ("Status", "raw data")])
        );
    }

    #[test]
    fn filters_parse_and_match_lexicographically() {
        let f =
            Filter::parse("\"Project\" = 'alpha' AND \"date\" >= '2026-01' AND \"date\" < '2027'")
                .unwrap();
        let t = tags(&[("Project", "alpha"), ("date", "2026-06-01"), ("other", "x")]);
        assert_eq!(
            f.matches("c", &t),
            Some(tags(&[("Project", "alpha"), ("date", "2026-06-01")]))
        );
        assert_eq!(
            f.matches("c", &tags(&[("Project", "alpha"), ("date", "2025")])),
            None
        );
        assert_eq!(f.matches("c", &tags(&[("Project", "alpha")])), None);
        let scoped = Filter::parse("@container = 'data' AND \"Project\" = 'alpha'").unwrap();
        assert_eq!(scoped.container(), Some("data"));
        assert!(scoped.matches("data", &t).is_some());
        assert!(scoped.matches("other", &t).is_none());
        for bad in [
            "\"a\" <> 'b'",
            "\"a\" = 'b' OR \"c\" = 'd'",
            "\"a\" > '1' AND \"a\" >= '2'",
            "a = 'b'",
            "\"a\" = b",
            "@container = 'x'",
        ] {
            assert_eq!(
                Filter::parse(bad).unwrap_err().code,
                "InvalidQueryParameterValue",
                "{bad}"
            );
        }
    }
}
