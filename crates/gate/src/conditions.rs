//! Conditional headers as the Blob service evaluates them: `If-Match`,
//! `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since` (and their
//! `x-ms-source-` forms on Copy Blob), combined as
//! `If-Match && If-Unmodified-Since && (If-None-Match || If-Modified-Since)`.
//!
//! A read (Get Blob, Get Blob Properties) that fails `If-None-Match` or
//! `If-Modified-Since` is 304 with `x-ms-error-code: ConditionNotMet`; every other
//! failure is 412 — `ConditionNotMet`, or on a copy `TargetConditionNotMet` for the
//! destination and `SourceConditionNotMet` for the source. A write with
//! `If-None-Match: *` on a blob that exists is 409 `BlobAlreadyExists`.

use axum::http::{HeaderMap, StatusCode};
use time::OffsetDateTime;

use crate::error::StorageError;

/// What the conditions are held against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Current<'a> {
    pub(crate) etag: &'a str,
    pub(crate) last_modified: OffsetDateTime,
}

/// Which resource the conditions are about, for the error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    /// The request's own resource.
    Resource,
    /// A copy's destination (`TargetConditionNotMet`).
    CopyTarget,
    /// A copy's source (`x-ms-source-if-*`, `SourceConditionNotMet`).
    CopySource,
}

/// The conditional headers of a request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    if_match: Option<Vec<String>>,
    if_none_match: Option<Vec<String>>,
    if_modified_since: Option<OffsetDateTime>,
    if_unmodified_since: Option<OffsetDateTime>,
    subject: Option<Subject>,
}

impl Conditions {
    /// Reads the conditions about `subject` (the `x-ms-source-` headers for a copy
    /// source). A malformed date is 400 `InvalidHeaderValue`; a date header given
    /// twice is 400 too, as Azure has it.
    pub(crate) fn from_headers(
        headers: &HeaderMap,
        subject: Subject,
    ) -> Result<Self, StorageError> {
        let prefix = if subject == Subject::CopySource {
            "x-ms-source-"
        } else {
            ""
        };
        let name = |h: &str| format!("{prefix}{h}");
        // Tag conditions are not evaluated yet: refused, never ignored, so that a
        // write the caller made conditional cannot happen unconditionally.
        let tags_header = if subject == Subject::CopySource {
            "x-ms-source-if-tags"
        } else {
            "x-ms-if-tags"
        };
        if let Some(v) = headers.get(tags_header) {
            return Err(StorageError::new(
                StatusCode::BAD_REQUEST,
                "UnsupportedHeader",
                "One of the HTTP headers specified in the request is not supported.",
            )
            .detail("HeaderName", tags_header)
            .detail("HeaderValue", v.to_str().unwrap_or_default())
            .detail(
                "Reason",
                "the gate does not evaluate blob tag conditions (x-ms-if-tags) yet",
            ));
        }
        let tags = |h: &str| -> Option<Vec<String>> {
            let values: Vec<String> = headers
                .get_all(name(h).as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            (!values.is_empty()).then_some(values)
        };
        let date = |h: &str| -> Result<Option<OffsetDateTime>, StorageError> {
            let header = name(h);
            let mut values = headers.get_all(header.as_str()).iter();
            let Some(value) = values.next() else {
                return Ok(None);
            };
            let text = value.to_str().unwrap_or_default();
            if values.next().is_some() {
                return Err(StorageError::invalid_header_value(&header, text)
                    .detail("Reason", "the header is given more than once"));
            }
            httpdate::parse_http_date(text)
                .map(|t| Some(OffsetDateTime::from(t)))
                .map_err(|_| StorageError::invalid_header_value(&header, text))
        };
        Ok(Self {
            if_match: tags("if-match"),
            if_none_match: tags("if-none-match"),
            if_modified_since: date("if-modified-since")?,
            if_unmodified_since: date("if-unmodified-since")?,
            subject: Some(subject),
        })
    }

    /// Checks a read of an existing blob: 304 or 412 as Azure answers.
    pub(crate) fn check_read(&self, current: Current<'_>) -> Result<(), StorageError> {
        self.evaluate(Some(current), true)
    }

    /// Checks a write (or delete) against the resource as it is now (`None`: it
    /// does not exist yet).
    pub(crate) fn check_write(&self, current: Option<Current<'_>>) -> Result<(), StorageError> {
        self.evaluate(current, false)
    }

    fn evaluate(&self, current: Option<Current<'_>>, read: bool) -> Result<(), StorageError> {
        let failed = || self.failed();
        if let Some(tags) = &self.if_match {
            let matched = current.is_some_and(|c| tags.iter().any(|t| t == "*" || same(t, c.etag)));
            if !matched {
                return Err(failed());
            }
        }
        if let (Some(since), Some(c)) = (self.if_unmodified_since, current)
            && c.last_modified > since
        {
            return Err(failed());
        }
        if let Some(tags) = &self.if_none_match {
            if let Some(c) = current {
                if tags.iter().any(|t| t == "*") && !read {
                    return Err(StorageError::blob_already_exists());
                }
                if tags.iter().any(|t| t == "*" || same(t, c.etag)) {
                    return Err(if read { not_modified(c) } else { failed() });
                }
            }
            // If-None-Match decides; If-Modified-Since is then ignored (RFC 9110 13.2.2).
            return Ok(());
        }
        if let Some(since) = self.if_modified_since {
            match current {
                Some(c) if c.last_modified > since => {}
                Some(c) if read => return Err(not_modified(c)),
                _ => return Err(failed()),
            }
        }
        Ok(())
    }

    fn failed(&self) -> StorageError {
        match self.subject {
            Some(Subject::CopyTarget) => StorageError::new(
                StatusCode::PRECONDITION_FAILED,
                "TargetConditionNotMet",
                "The target condition specified using HTTP conditional header(s) is not met.",
            ),
            Some(Subject::CopySource) => StorageError::new(
                StatusCode::PRECONDITION_FAILED,
                "SourceConditionNotMet",
                "The source condition specified using HTTP conditional header(s) is not met.",
            ),
            _ => StorageError::condition_not_met(),
        }
    }
}

/// ETags compare as opaque strings; clients may send them with or without quotes.
fn same(given: &str, etag: &str) -> bool {
    given.trim_start_matches("W/").trim_matches('"') == etag.trim_matches('"')
}

/// 304 for a read whose `If-None-Match` or `If-Modified-Since` did not hold.
fn not_modified(current: Current<'_>) -> StorageError {
    StorageError::new(
        StatusCode::NOT_MODIFIED,
        "ConditionNotMet",
        "The condition specified using HTTP conditional header(s) is not met.",
    )
    .header("etag", current.etag.to_owned())
    .header("last-modified", crate::xml::rfc1123(current.last_modified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    fn conditions(pairs: &[(&'static str, &str)], subject: Subject) -> Conditions {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        Conditions::from_headers(&h, subject).unwrap()
    }

    fn current() -> Current<'static> {
        Current {
            etag: "\"0x1\"",
            last_modified: T,
        }
    }

    fn code(r: Result<(), StorageError>) -> Option<(u16, &'static str)> {
        r.err().map(|e| (e.status.as_u16(), e.code))
    }

    fn read(pairs: &[(&'static str, &str)]) -> Option<(u16, &'static str)> {
        code(conditions(pairs, Subject::Resource).check_read(current()))
    }

    fn write(
        pairs: &[(&'static str, &str)],
        subject: Subject,
        exists: bool,
    ) -> Option<(u16, &'static str)> {
        code(conditions(pairs, subject).check_write(exists.then(current)))
    }

    #[test]
    fn reads_answer_304_or_412_as_azure() {
        let earlier = "Mon, 01 Jun 2026 11:00:00 GMT";
        let later = "Mon, 01 Jun 2026 13:00:00 GMT";
        assert_eq!(read(&[]), None);
        assert_eq!(read(&[("if-match", "\"0x1\"")]), None);
        assert_eq!(read(&[("if-match", "0x1")]), None, "quotes are optional");
        assert_eq!(
            read(&[("if-match", "\"0x2\", \"0x1\"")]),
            None,
            "If-Match values are OR-ed"
        );
        assert_eq!(
            read(&[("if-match", "\"0x2\"")]),
            Some((412, "ConditionNotMet"))
        );
        assert_eq!(
            read(&[("if-none-match", "\"0x1\"")]),
            Some((304, "ConditionNotMet"))
        );
        assert_eq!(
            read(&[("if-none-match", "*")]),
            Some((304, "ConditionNotMet"))
        );
        assert_eq!(
            read(&[("if-modified-since", later)]),
            Some((304, "ConditionNotMet"))
        );
        assert_eq!(read(&[("if-modified-since", earlier)]), None);
        assert_eq!(
            read(&[("if-unmodified-since", earlier)]),
            Some((412, "ConditionNotMet"))
        );
        assert_eq!(read(&[("if-unmodified-since", later)]), None);
        // If-None-Match decides over If-Modified-Since.
        assert_eq!(
            read(&[("if-none-match", "\"0x9\""), ("if-modified-since", later)]),
            None
        );
    }

    #[test]
    fn writes_answer_412_409_and_copy_codes() {
        let later = "Mon, 01 Jun 2026 13:00:00 GMT";
        assert_eq!(
            write(&[("if-none-match", "*")], Subject::Resource, false),
            None
        );
        assert_eq!(
            write(&[("if-none-match", "*")], Subject::Resource, true),
            Some((409, "BlobAlreadyExists"))
        );
        assert_eq!(
            write(&[("if-match", "*")], Subject::Resource, false),
            Some((412, "ConditionNotMet"))
        );
        assert_eq!(
            write(&[("if-modified-since", later)], Subject::Resource, true),
            Some((412, "ConditionNotMet"))
        );
        assert_eq!(
            write(&[("if-match", "\"0x2\"")], Subject::CopyTarget, true),
            Some((412, "TargetConditionNotMet"))
        );
        assert_eq!(
            write(
                &[("x-ms-source-if-match", "\"0x2\"")],
                Subject::CopySource,
                true
            ),
            Some((412, "SourceConditionNotMet"))
        );
        // The source conditions do not read the destination's headers.
        assert_eq!(
            write(&[("if-match", "\"0x2\"")], Subject::CopySource, true),
            None
        );
    }

    #[test]
    fn tag_conditions_are_refused_rather_than_ignored() {
        for (name, subject) in [
            ("x-ms-if-tags", Subject::Resource),
            ("x-ms-source-if-tags", Subject::CopySource),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, "\"Project\" = 'alpha'".parse().unwrap());
            let err = Conditions::from_headers(&h, subject).unwrap_err();
            assert_eq!(
                (err.status.as_u16(), err.code),
                (400, "UnsupportedHeader"),
                "{name}"
            );
        }
    }

    #[test]
    fn bad_dates_are_refused() {
        let mut h = HeaderMap::new();
        h.insert("if-modified-since", "yesterday".parse().unwrap());
        assert_eq!(
            Conditions::from_headers(&h, Subject::Resource)
                .unwrap_err()
                .code,
            "InvalidHeaderValue"
        );
        let mut h = HeaderMap::new();
        h.append(
            "if-unmodified-since",
            "Mon, 01 Jun 2026 13:00:00 GMT".parse().unwrap(),
        );
        h.append(
            "if-unmodified-since",
            "Mon, 01 Jun 2026 13:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            Conditions::from_headers(&h, Subject::Resource)
                .unwrap_err()
                .code,
            "InvalidHeaderValue"
        );
    }
}
