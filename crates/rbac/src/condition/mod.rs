//! Role assignment conditions (Azure ABAC, condition version 2.0).
//!
//! A condition narrows what an assignment grants. Azure writes them as
//! "if the action is X, then the attribute must satisfy Y":
//!
//! ```text
//! ((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'}
//!     AND NOT SubOperationMatches{'Blob.List'}))
//!  OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path]
//!      StringLike 'train/*'))
//! ```
//!
//! Supported: `ActionMatches{...}`, `SubOperationMatches{...}`, the attributes
//! `@Resource[...containers:name]`, `@Resource[...containers/blobs:path]` and
//! `@Request[...containers/blobs:prefix]` (List Blobs' prefix), blob index tags
//! `@Resource|Request[...containers/blobs/tags:<key><$key_case_sensitive$>]`, the `String*`
//! operators with their `Not` and `IgnoreCase` forms, the `ForAnyOfAnyValues:`
//! family with `{'a','b'}` lists, `AND`/`&&`, `OR`/`||`, `NOT`/`!`, parentheses.
//!
//! An attribute the request does not carry (a blob path on List Blobs) makes its
//! comparison false, whatever the operator: absence never satisfies a condition,
//! which is why Azure's templates exclude `Blob.List` before testing the path.

mod lexer;
mod parser;

use std::fmt;

use thiserror::Error;

use crate::action::ActionPattern;

/// The longest condition accepted, in bytes: "A condition can be up to 8 KB long"
/// (Azure's conditions FAQ).
pub const MAX_CONDITION_LEN: usize = 8 * 1024;

/// A condition that does not parse, with where it went wrong.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("invalid condition at line {line}, column {column}: {message}")]
pub struct ConditionError {
    /// Byte offset in the condition text.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and what to write instead.
    pub message: String,
    excerpt: String,
}

impl ConditionError {
    pub(crate) fn at(src: &str, offset: usize, message: String) -> Self {
        let (line, column) = line_column(src, offset);
        let text = src.lines().nth(line - 1).unwrap_or("");
        let excerpt = format!("{text}\n{}^", " ".repeat(column - 1));
        Self {
            offset,
            line,
            column,
            message,
            excerpt,
        }
    }

    /// The offending line with a caret under the error, for terminals.
    pub fn excerpt(&self) -> &str {
        &self.excerpt
    }
}

pub(crate) fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// The attributes entraflow can supply for a Blob request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attribute {
    ContainerName,
    BlobPath,
    ListPrefix,
    /// A blob index tag of the blob, by its (case-sensitive) key.
    ResourceTag(String),
    /// A tag the request sets (`x-ms-tags`).
    RequestTag(String),
}

const CONTAINER_NAME: &str = "Microsoft.Storage/storageAccounts/blobServices/containers:name";
const BLOB_PATH: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path";
const BLOB_PREFIX: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs:prefix";
const BLOB_TAGS: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags:";
const KEY_CASE_SENSITIVE: &str = "<$key_case_sensitive$>";

/// The tag key of `...blobs/tags:<key><$key_case_sensitive$>`, as Azure writes a
/// tag attribute (the prefix matched without regard to case, the key exactly).
fn tag_key(name: &str) -> Option<&str> {
    let prefix = name.get(..BLOB_TAGS.len())?;
    if !prefix.eq_ignore_ascii_case(BLOB_TAGS) {
        return None;
    }
    name[BLOB_TAGS.len()..]
        .strip_suffix(KEY_CASE_SENSITIVE)
        .filter(|key| !key.is_empty())
}

impl Attribute {
    fn resolve(source: &str, name: &str) -> Result<Self, String> {
        let resource = source.eq_ignore_ascii_case("Resource");
        let request = source.eq_ignore_ascii_case("Request");
        match () {
            _ if resource && name.eq_ignore_ascii_case(CONTAINER_NAME) => Ok(Self::ContainerName),
            _ if resource && name.eq_ignore_ascii_case(BLOB_PATH) => Ok(Self::BlobPath),
            _ if request && name.eq_ignore_ascii_case(BLOB_PREFIX) => Ok(Self::ListPrefix),
            _ if (resource || request) && tag_key(name).is_some() => {
                let key = tag_key(name).unwrap_or_default().to_owned();
                Ok(if resource {
                    Self::ResourceTag(key)
                } else {
                    Self::RequestTag(key)
                })
            }
            _ => Err(format!(
                "unsupported attribute '@{source}[{name}]'; entraflow supports @Resource[{CONTAINER_NAME}], @Resource[{BLOB_PATH}], @Request[{BLOB_PREFIX}] and @Resource|Request[{BLOB_TAGS}<key><$key_case_sensitive$>]"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StringOp {
    Equals,
    StartsWith,
    Like,
}

impl StringOp {
    /// `(operator, negated, ignore_case)` for an operator name.
    fn parse(word: &str) -> Option<(Self, bool, bool)> {
        const OPS: [(&str, StringOp, bool, bool); 10] = [
            ("StringEquals", StringOp::Equals, false, false),
            ("StringNotEquals", StringOp::Equals, true, false),
            ("StringEqualsIgnoreCase", StringOp::Equals, false, true),
            ("StringNotEqualsIgnoreCase", StringOp::Equals, true, true),
            ("StringStartsWith", StringOp::StartsWith, false, false),
            ("StringNotStartsWith", StringOp::StartsWith, true, false),
            (
                "StringStartsWithIgnoreCase",
                StringOp::StartsWith,
                false,
                true,
            ),
            (
                "StringNotStartsWithIgnoreCase",
                StringOp::StartsWith,
                true,
                true,
            ),
            ("StringLike", StringOp::Like, false, false),
            ("StringNotLike", StringOp::Like, true, false),
        ];
        OPS.iter()
            .find(|(name, ..)| name.eq_ignore_ascii_case(word))
            .map(|&(_, op, negated, ignore_case)| (op, negated, ignore_case))
    }
}

/// How a single-valued attribute is compared with a list (`ForAnyOfAnyValues:` etc.).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quantifier {
    Single,
    /// `ForAnyOfAnyValues`, `ForAllOfAnyValues`: some listed value matches.
    Any,
    /// `ForAnyOfAllValues`, `ForAllOfAllValues`: every listed value matches.
    All,
}

impl Quantifier {
    fn parse(word: &str) -> Option<Self> {
        let is = |w: &str| word.eq_ignore_ascii_case(w);
        if is("ForAnyOfAnyValues") || is("ForAllOfAnyValues") {
            Some(Self::Any)
        } else if is("ForAnyOfAllValues") || is("ForAllOfAllValues") {
            Some(Self::All)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    ActionMatches(Vec<ActionPattern>),
    SubOperationMatches(Vec<String>),
    Compare {
        attribute: Attribute,
        quantifier: Quantifier,
        op: StringOp,
        negated: bool,
        ignore_case: bool,
        values: Vec<String>,
    },
}

/// What a condition is evaluated against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attributes<'a> {
    pub(crate) action_lower: &'a str,
    pub(crate) sub_operation: Option<&'a str>,
    pub(crate) container: Option<&'a str>,
    pub(crate) blob_path: Option<&'a str>,
    pub(crate) list_prefix: Option<&'a str>,
    pub(crate) resource_tags: Option<&'a [(String, String)]>,
    pub(crate) request_tags: Option<&'a [(String, String)]>,
}

/// A parsed condition.
#[derive(Clone)]
pub struct Condition {
    source: String,
    expr: Expr,
}

impl Condition {
    /// Parses a condition (version 2.0). Longer than [`MAX_CONDITION_LEN`] bytes, or
    /// nested deeper than 32 levels, is refused before any recursion.
    pub fn parse(source: &str) -> Result<Self, ConditionError> {
        if source.len() > MAX_CONDITION_LEN {
            return Err(ConditionError::at(
                source,
                0,
                format!(
                    "the condition is {} bytes long; Azure allows at most {MAX_CONDITION_LEN} (8 KB)",
                    source.len()
                ),
            ));
        }
        let tokens = lexer::lex(source)?;
        let expr = parser::Parser::new(source, tokens).parse()?;
        Ok(Self {
            source: source.to_owned(),
            expr,
        })
    }

    /// The condition as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition for a request.
    pub fn evaluate(&self, request: &crate::Request) -> bool {
        let action = request.action_lower();
        self.eval(&request.attributes(&action))
    }

    pub(crate) fn eval(&self, attrs: &Attributes<'_>) -> bool {
        eval(&self.expr, attrs)
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

fn eval(expr: &Expr, a: &Attributes<'_>) -> bool {
    match expr {
        Expr::And(l, r) => eval(l, a) && eval(r, a),
        Expr::Or(l, r) => eval(l, a) || eval(r, a),
        Expr::Not(e) => !eval(e, a),
        Expr::ActionMatches(patterns) => patterns.iter().any(|p| p.matches_lower(a.action_lower)),
        Expr::SubOperationMatches(ops) => a
            .sub_operation
            .is_some_and(|s| ops.iter().any(|o| o.eq_ignore_ascii_case(s))),
        Expr::Compare {
            attribute,
            quantifier,
            op,
            negated,
            ignore_case,
            values,
        } => {
            let actual = match attribute {
                Attribute::ContainerName => a.container,
                Attribute::BlobPath => a.blob_path,
                Attribute::ListPrefix => a.list_prefix,
                Attribute::ResourceTag(key) => tag_value(a.resource_tags, key),
                Attribute::RequestTag(key) => tag_value(a.request_tags, key),
            };
            let Some(actual) = actual else {
                return false;
            };
            let test = |expected: &String| compare(*op, *ignore_case, actual, expected) != *negated;
            match quantifier {
                Quantifier::Single | Quantifier::Any => values.iter().any(test),
                Quantifier::All => values.iter().all(test),
            }
        }
    }
}

fn tag_value<'a>(tags: Option<&'a [(String, String)]>, key: &str) -> Option<&'a str> {
    tags?
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn compare(op: StringOp, ignore_case: bool, actual: &str, expected: &str) -> bool {
    match (op, ignore_case) {
        (StringOp::Equals, false) => actual == expected,
        (StringOp::Equals, true) => actual.to_lowercase() == expected.to_lowercase(),
        (StringOp::StartsWith, false) => actual.starts_with(expected),
        (StringOp::StartsWith, true) => actual.to_lowercase().starts_with(&expected.to_lowercase()),
        (StringOp::Like, _) => string_like(expected, actual),
    }
}

/// `StringLike`: case-sensitive, `*` matches any run of characters (including `/`),
/// `?` exactly one character.
fn string_like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and the text position it currently stretches to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = star {
            // Let the `*` swallow one more character and retry.
            pi = star_pi + 1;
            ti = star_ti + 1;
            star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::blob;

    const EXAMPLE: &str = "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'} AND NOT SubOperationMatches{'Blob.List'})) OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike 'train/*'))";

    fn attrs<'a>(
        action_lower: &'a str,
        sub_operation: Option<&'a str>,
        blob_path: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            action_lower,
            sub_operation,
            container: Some("data"),
            blob_path,
            list_prefix: None,
            resource_tags: None,
            request_tags: None,
        }
    }

    #[test]
    fn tag_attributes_read_the_blob_and_request_tags_by_exact_key() {
        let c = Condition::parse(
            "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags:Project<$key_case_sensitive$>] StringEquals 'alpha'",
        )
        .unwrap();
        let read = blob::READ.to_ascii_lowercase();
        let tags = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect()
        };
        let with = |t: &[(String, String)]| {
            c.eval(&Attributes {
                resource_tags: Some(t),
                ..attrs(&read, None, Some("x"))
            })
        };
        assert!(with(&tags(&[("Project", "alpha")])));
        assert!(
            !with(&tags(&[("project", "alpha")])),
            "keys are case-sensitive"
        );
        assert!(!with(&tags(&[("Project", "beta")])));
        assert!(!with(&[]), "a missing tag satisfies nothing");
        let request = Condition::parse(
            "@Request[Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags:Project<$key_case_sensitive$>] StringEquals 'alpha'",
        )
        .unwrap();
        let set = tags(&[("Project", "alpha")]);
        assert!(request.eval(&Attributes {
            request_tags: Some(&set),
            ..attrs(&read, None, Some("x"))
        }));
        assert!(!request.eval(&Attributes {
            resource_tags: Some(&set),
            ..attrs(&read, None, Some("x"))
        }));
        for bad in [
            "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags:Project] StringEquals 'a'",
            "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags:<$key_case_sensitive$>] StringEquals 'a'",
        ] {
            assert!(Condition::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_documented_example_limits_reads_to_train_prefix() {
        let c = Condition::parse(EXAMPLE).unwrap();
        let read = blob::READ.to_ascii_lowercase();
        let write = blob::WRITE.to_ascii_lowercase();
        assert!(c.eval(&attrs(&read, None, Some("train/a.tfrecord"))));
        assert!(c.eval(&attrs(&read, None, Some("train/deep/x"))));
        assert!(!c.eval(&attrs(&read, None, Some("train-secret/x"))));
        assert!(!c.eval(&attrs(&read, None, Some("train"))));
        assert!(!c.eval(&attrs(&read, None, Some("Train/x"))));
        assert!(!c.eval(&attrs(&read, None, Some("eval/x"))));
        // Listing has no blob path; the condition exempts Blob.List.
        assert!(c.eval(&attrs(&read, Some("Blob.List"), None)));
        // Other actions are not restricted by this condition.
        assert!(c.eval(&attrs(&write, None, Some("eval/x"))));
    }

    #[test]
    fn string_like_wildcards() {
        let table = [
            ("train/*", "train/x", true),
            ("train/*", "train/", true),
            ("train/*", "train-secret/x", false),
            ("*.tfrecord", "a/b/c.tfrecord", true),
            ("*.tfrecord", "a/b/c.tfrecords", false),
            ("shard-??.bin", "shard-07.bin", true),
            ("shard-??.bin", "shard-7.bin", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXcYb", false),
            ("", "", true),
            ("*", "", true),
            ("dátá/*", "dátá/ü", true),
        ];
        for (pattern, text, expected) in table {
            assert_eq!(string_like(pattern, text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn operators_and_their_negations() {
        let read = blob::READ.to_ascii_lowercase();
        let path = |cond: &str, p: &str| {
            let c = Condition::parse(&format!(
                "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] {cond}"
            ))
            .unwrap();
            c.eval(&attrs(&read, None, Some(p)))
        };
        assert!(path("StringEquals 'a/b'", "a/b"));
        assert!(!path("StringEquals 'a/b'", "A/b"));
        assert!(path("StringEqualsIgnoreCase 'a/b'", "A/B"));
        assert!(path("StringNotEquals 'a/b'", "a/c"));
        assert!(!path("StringNotEqualsIgnoreCase 'a/b'", "A/B"));
        assert!(path("StringStartsWith 'train/'", "train/x"));
        assert!(!path("StringStartsWith 'train/'", "train-secret/x"));
        assert!(path("StringStartsWithIgnoreCase 'TRAIN/'", "train/x"));
        assert!(path("StringNotStartsWith 'secret/'", "train/x"));
        assert!(!path("StringNotStartsWithIgnoreCase 'SECRET/'", "secret/x"));
        assert!(path("StringNotLike 'secret/*'", "train/x"));
        assert!(path(
            "ForAnyOfAnyValues:StringStartsWith {'train/', 'eval/'}",
            "eval/1"
        ));
        assert!(!path(
            "ForAnyOfAnyValues:StringStartsWith {'train/', 'eval/'}",
            "test/1"
        ));
        assert!(!path(
            "ForAnyOfAllValues:StringNotStartsWith {'train/', 'eval/'}",
            "eval/1"
        ));
        assert!(path(
            "ForAllOfAllValues:StringNotStartsWith {'train/', 'eval/'}",
            "test/1"
        ));
    }

    #[test]
    fn container_name_prefix_and_logic_operators() {
        let read = blob::READ.to_ascii_lowercase();
        let c = Condition::parse(
            "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'data' && !(@Request[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:prefix] StringStartsWith 'private/' || SubOperationMatches{'Blob.List'} AND ActionMatches{'Microsoft.Storage/*/write'})",
        )
        .unwrap();
        let mut a = attrs(&read, Some("Blob.List"), None);
        a.list_prefix = Some("public/");
        assert!(c.eval(&a));
        a.list_prefix = Some("private/x");
        assert!(!c.eval(&a));
        a.container = Some("other");
        a.list_prefix = Some("public/");
        assert!(!c.eval(&a));
        // A missing attribute satisfies no comparison, negated or not.
        let neg = Condition::parse(
            "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringNotLike 'secret/*'",
        )
        .unwrap();
        assert!(!neg.eval(&attrs(&read, Some("Blob.List"), None)));
    }

    #[test]
    fn keywords_are_case_insensitive_and_whitespace_free() {
        let c = Condition::parse(
            "not(actionmatches{'*/write'})\n  or\n  @resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] stringlike 'a/*'",
        )
        .unwrap();
        let write = blob::WRITE.to_ascii_lowercase();
        assert!(c.eval(&attrs(&write, None, Some("a/1"))));
        assert!(!c.eval(&attrs(&write, None, Some("b/1"))));
    }

    #[test]
    fn parse_errors_point_at_the_problem() {
        let path =
            "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path]";
        // (condition, text the error must point at ("" = the end), message fragment)
        let cases: Vec<(String, &str, &str)> = vec![
            ("".into(), "", "empty"),
            (
                "(ActionMatches{'x'}".into(),
                "",
                "expected ')' to close the '(' at line 1, column 1",
            ),
            (
                "ActionMatches{'x'} AND".into(),
                "",
                "found the end of the condition",
            ),
            ("ActionMatches{x}".into(), "x}", "single-quoted string"),
            (
                "ActionMatches('x')".into(),
                "('x')",
                "expected '{' after ActionMatches",
            ),
            (
                format!("{path} StringLik 'a'"),
                "StringLik",
                "unknown operator 'StringLik'",
            ),
            (
                format!("{path} StringLike \"a\""),
                "\"a",
                "strings are single-quoted",
            ),
            (format!("{path} StringLike 'a"), "'a", "never closed"),
            (
                format!("{path} StringEquals {{'a','b'}}"),
                "{'a'",
                "ForAnyOfAnyValues:StringEquals",
            ),
            (
                "@Resource[Microsoft.Storage/storageAccounts:name] StringEquals 'a'".into(),
                "@Resource",
                "unsupported attribute",
            ),
            (
                "ActionMatches{'a'} & ActionMatches{'b'}".into(),
                "& ",
                "write '&&'",
            ),
            (
                "ActionMatches{'a'} ActionMatches{'b'}".into(),
                "ActionMatches{'b'}",
                "expected AND, OR",
            ),
            ("ActionMatches{'a'}\n  OR )".into(), ")", "found ')'"),
            (
                format!("{path} StringLike"),
                "",
                "expected a single-quoted string after StringLike",
            ),
            (
                format!("{path} ForAnyOfAnyValues StringLike 'a'"),
                "StringLike",
                "expected ':' after ForAnyOfAnyValues",
            ),
        ];
        for (src, at, needle) in cases {
            let err = Condition::parse(&src).expect_err(&src);
            let offset = if at.is_empty() {
                src.len()
            } else {
                src.rfind(at).unwrap()
            };
            assert_eq!(err.offset, offset, "{src}: {err}");
            assert_eq!(
                (err.line, err.column),
                line_column(&src, offset),
                "{src}: {err}"
            );
            assert!(err.to_string().contains(needle), "{src}: {err}");
        }
        let err = Condition::parse("ActionMatches{'a'}\n  OR )").unwrap_err();
        assert_eq!((err.line, err.column), (2, 6));
        let err = Condition::parse("ActionMatches{'a'} OR )").unwrap_err();
        assert_eq!(
            err.excerpt(),
            "ActionMatches{'a'} OR )\n                      ^"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::string_like;

    /// A small deterministic generator: no extra dependency, reproducible failures.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn string(&mut self) -> String {
            const ALPHABET: &[char] = &['a', 'b', '/', '-', '.', 'T'];
            let len = (self.next() % 8) as usize;
            (0..len)
                .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn string_like_agrees_with_equality_prefix_suffix_and_infix() {
        let mut rng = Lcg(0x5eed);
        for _ in 0..20_000 {
            let (a, text) = (rng.string(), rng.string());
            assert_eq!(string_like(&a, &text), a == text, "{a:?} {text:?}");
            assert_eq!(
                string_like(&format!("{a}*"), &text),
                text.starts_with(&a),
                "{a:?}* {text:?}"
            );
            assert_eq!(
                string_like(&format!("*{a}"), &text),
                text.ends_with(&a),
                "*{a:?} {text:?}"
            );
            assert_eq!(
                string_like(&format!("*{a}*"), &text),
                text.contains(&a),
                "*{a:?}* {text:?}"
            );
            let q = "?".repeat(a.chars().count());
            assert_eq!(
                string_like(&q, &text),
                a.chars().count() == text.chars().count()
            );
        }
    }

    #[test]
    fn action_patterns_agree_with_prefix_and_ignore_case() {
        use crate::action::action_matches;
        let mut rng = Lcg(0xac710);
        for _ in 0..20_000 {
            let (a, text) = (rng.string(), rng.string());
            let lower = |s: &str| s.to_ascii_lowercase();
            assert_eq!(
                action_matches(&a, &text),
                lower(&a) == lower(&text),
                "{a:?} {text:?}"
            );
            assert_eq!(
                action_matches(&format!("{a}*"), &text),
                lower(&text).starts_with(&lower(&a)),
                "{a:?}* {text:?}"
            );
            assert_eq!(
                action_matches(&format!("*{a}*"), &text),
                lower(&text).contains(&lower(&a)),
                "*{a:?}* {text:?}"
            );
        }
    }
}
