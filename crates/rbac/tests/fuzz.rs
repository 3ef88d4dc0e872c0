//! Property-based fuzzing of the parsers that take outside input: ABAC conditions
//! (from the CLI, the admin API and the role store), scopes and expiry times.
//! Any input gives a value or an error, never a panic or a stack overflow; a
//! parsed condition evaluates without panicking on any request.
//!
//! CI runs 256 cases per property; a long run:
//! `PROPTEST_CASES=200000 cargo test -p entraflow-rbac --test fuzz`. Failures are
//! saved under `proptest-regressions/` and replayed first: commit them with the fix.

use entraflow_rbac::{Condition, MAX_CONDITION_LEN, Request, Scope};
use proptest::prelude::*;

const READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";

/// Pieces of the condition language, so that random sequences reach deep paths.
fn condition_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("!".to_owned()),
        Just(" AND ".to_owned()),
        Just(" OR ".to_owned()),
        Just(" NOT ".to_owned()),
        Just(format!("ActionMatches{{'{READ}'}}")),
        Just("SubOperationMatches{'Blob.List'}".to_owned()),
        Just("@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path]".to_owned()),
        Just("@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name]".to_owned()),
        Just("@Request[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:prefix]".to_owned()),
        Just("@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags:k<$key_case_sensitive$>]".to_owned()),
        Just(" StringStartsWith ".to_owned()),
        Just(" StringEquals ".to_owned()),
        Just(" StringLike ".to_owned()),
        Just(" ForAnyOfAnyValues:StringEquals ".to_owned()),
        Just("'train/'".to_owned()),
        Just("{'a', 'b'}".to_owned()),
        "[ -~]{0,6}",
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

/// A well-formed condition nested `depth` levels.
fn nested(depth: usize) -> String {
    let leaf = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringStartsWith 'train/'";
    (0..depth).fold(leaf.to_owned(), |inner, i| {
        if i % 2 == 0 {
            format!("({inner})")
        } else {
            format!("!({inner}) OR ({inner})")
                .chars()
                .take(MAX_CONDITION_LEN + 10)
                .collect()
        }
    })
}

proptest! {
    #[test]
    fn conditions_never_panic_and_evaluate(text in prop_oneof![condition_text(), "[ -~]{0,200}"]) {
        if let Ok(condition) = Condition::parse(&text) {
            let scope = Scope::parse(
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct/blobServices/default/containers/data",
            )
            .unwrap();
            let request = Request::data(READ, scope).with_blob("train/x.bin");
            let _ = condition.evaluate(&request);
        }
    }

    #[test]
    fn nesting_is_bounded(depth in 0usize..400) {
        // Deep input is refused before recursion; shallow input parses.
        let text = nested(depth);
        let parsed = Condition::parse(&text);
        if depth <= 16 && text.len() <= MAX_CONDITION_LEN {
            prop_assert!(parsed.is_ok(), "depth {}: {:?}", depth, parsed.err());
        }
    }

    #[test]
    fn scopes_never_panic(s in "(/[A-Za-z0-9._-]{0,12}){0,12}") {
        if let Ok(scope) = Scope::parse(&s) {
            // A parsed scope prints as something that parses to itself.
            let printed = scope.to_string();
            prop_assert_eq!(Scope::parse(&printed).unwrap(), scope);
        }
    }

    #[test]
    fn expiries_never_panic(s in "[ -~]{0,30}") {
        let _ = entraflow_rbac::parse_expiry(&s, time::OffsetDateTime::now_utc());
    }
}
