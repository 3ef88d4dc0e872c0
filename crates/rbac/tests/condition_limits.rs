//! Finding (hardening issue): an ABAC condition nested a few thousand levels deep
//! overflowed a worker thread's stack and aborted the authority and gate together;
//! a deeper one stored by the CLI crashed the gate again after every restart.
//! Conditions are now refused past Azure's 8 KB and past 32 levels of nesting
//! before any recursion, and a stored one that fails validation grants nothing
//! and is reported, never a crash.

use std::time::Duration;

use entraflow_rbac::{
    Authorizer, Condition, Error, LintOptions, LintRule, MAX_CONDITION_LEN, NewAssignment,
    Principal, RbacStore, Request, Scope, action, lint,
};
use time::OffsetDateTime;

const JOB: &str = "11111111-1111-1111-1111-111111111111";
const LEAF: &str = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike 'train/*'";

/// Parses on a thread with a small stack, so unbounded recursion would crash the
/// test instead of passing on the main thread's large one.
fn parse_on_small_stack(text: String) -> Result<(), String> {
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || Condition::parse(&text).map(drop).map_err(|e| e.to_string()))
        .unwrap()
        .join()
        .expect("parsing must not overflow the stack")
}

fn parens(depth: usize) -> String {
    format!("{}{LEAF}{}", "(".repeat(depth), ")".repeat(depth))
}

#[test]
fn regression_deep_parentheses_are_refused_before_recursing() {
    for depth in [33, 1_000, 4_000] {
        let err = parse_on_small_stack(parens(depth)).unwrap_err();
        assert!(
            err.contains("more than 32 levels") || err.contains("8192"),
            "{depth}: {err}"
        );
    }
    assert!(parse_on_small_stack(parens(32)).is_ok());
}

#[test]
fn regression_deep_nots_are_refused_before_recursing() {
    for (bang, depth) in [("!", 8_000), ("NOT ", 2_000), ("!(", 33)] {
        let mut text = bang.repeat(depth);
        text.push_str(LEAF);
        if bang == "!(" {
            text.push_str(&")".repeat(depth));
        }
        let err = parse_on_small_stack(text).unwrap_err();
        assert!(
            err.contains("more than 32 levels"),
            "{bang} x {depth}: {err}"
        );
    }
    assert!(parse_on_small_stack(format!("{}{LEAF}", "!".repeat(32))).is_ok());
}

#[test]
fn conditions_longer_than_8_kb_are_refused_with_the_limit_named() {
    let many = vec![LEAF; MAX_CONDITION_LEN / LEAF.len() + 1].join(" OR ");
    assert!(many.len() > MAX_CONDITION_LEN);
    let err = parse_on_small_stack(many).unwrap_err();
    assert!(err.contains("at most 8192"), "{err}");
    // Multi-byte text at the limit does not trip over a character boundary.
    let wide = format!("{LEAF} OR {}", "é".repeat(MAX_CONDITION_LEN));
    assert!(parse_on_small_stack(wide).unwrap_err().contains("8192"));
    // A long flat chain within the limit evaluates without deep recursion.
    let fits = vec![LEAF; MAX_CONDITION_LEN / (LEAF.len() + 4)].join(" OR ");
    assert!(parse_on_small_stack(fits).is_ok());
}

#[test]
fn the_store_refuses_what_the_parser_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = RbacStore::open(dir.path()).unwrap();
    let scope = Scope::storage_account("00000000-0000-0000-0000-000000000001", "ml", "data");
    let mut new = NewAssignment::new(JOB, "Storage Blob Data Reader", scope.as_str());
    new.condition = Some(parens(5_000));
    let err = store
        .create_assignment(new, OffsetDateTime::now_utc())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidCondition(_)), "{err:?}");
    assert!(store.assignments().unwrap().is_empty());
}

#[test]
fn regression_a_stored_condition_past_the_limits_grants_nothing_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = RbacStore::open(dir.path()).unwrap();
    let scope = Scope::storage_account("00000000-0000-0000-0000-000000000001", "ml", "data");
    let mut new = NewAssignment::new(JOB, "Storage Blob Data Reader", scope.as_str());
    new.condition = Some(LEAF.into());
    let a = store
        .create_assignment(new, OffsetDateTime::now_utc())
        .unwrap();
    // Written by an older version, or by hand: 3,000 nested parentheses.
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.execute(
        "UPDATE role_assignments SET condition = ?1 WHERE name = ?2",
        rusqlite::params![parens(3_000), a.name],
    )
    .unwrap();
    drop(conn);

    // The authorizer (which the gate builds on a worker thread) loads it on a
    // small stack, skips it and keeps serving.
    let decision = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            let authz = Authorizer::open(dir.path())
                .unwrap()
                .with_refresh_interval(Duration::ZERO);
            let request = Request::data(action::blob::READ, scope.container("c").unwrap())
                .with_blob("train/x");
            let allowed = authz
                .authorize(&Principal::new(JOB), &request, OffsetDateTime::now_utc())
                .is_allowed();
            let findings = lint(
                authz.store(),
                OffsetDateTime::now_utc(),
                LintOptions::default(),
            )
            .unwrap();
            (allowed, findings)
        })
        .unwrap()
        .join()
        .expect("loading a bad stored condition must not crash");
    let (allowed, findings) = decision;
    assert!(!allowed, "an invalid stored condition fails closed");
    let finding = findings
        .iter()
        .find(|f| f.rule == LintRule::InvalidCondition)
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(finding.assignment_ids, [a.id()]);
    assert!(
        finding.message.contains("more than 32 levels"),
        "{}",
        finding.message
    );
}
