//! Each RBAC rule through the public API, against a real SQLite store.

use std::time::Duration;

use entraflow_rbac::{
    Authorizer, Decision, DenialReason, Error, NewAssignment, Principal, PrincipalType, RbacStore,
    Request, RoleDefinition, Scope, action, builtin,
};
use time::OffsetDateTime;
use time::macros::datetime;

const SUB: &str = "00000000-0000-0000-0000-000000000001";
const JOB: &str = "11111111-1111-1111-1111-111111111111";
const OTHER: &str = "22222222-2222-2222-2222-222222222222";
const GROUP: &str = "33333333-3333-3333-3333-333333333333";
const ADMIN: &str = "44444444-4444-4444-4444-444444444444";
const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
const TRAIN_ONLY: &str = "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'} AND NOT SubOperationMatches{'Blob.List'})) OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike 'train/*'))";

struct Fixture {
    _dir: tempfile::TempDir,
    authz: Authorizer,
    account: Scope,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let authz = Authorizer::open(dir.path())
            .unwrap()
            .with_refresh_interval(Duration::ZERO);
        Self {
            _dir: dir,
            authz,
            account: Scope::storage_account(SUB, "ml", "data"),
        }
    }

    fn container(&self, name: &str) -> Scope {
        self.account.container(name).unwrap()
    }

    fn assign(&self, principal: &str, role: &str, scope: &Scope) -> String {
        self.assign_with(NewAssignment::new(principal, role, scope.as_str()))
    }

    fn assign_with(&self, new: NewAssignment) -> String {
        let a = self.authz.store().create_assignment(new, NOW).unwrap();
        a.id()
    }

    fn decide(&self, principal: &Principal, request: &Request) -> Decision {
        self.authz.authorize(principal, request, NOW)
    }

    fn read(&self, container: &str, blob: &str) -> Request {
        Request::data(action::blob::READ, self.container(container)).with_blob(blob)
    }
}

fn deny_reason(d: Decision) -> DenialReason {
    match d {
        Decision::Deny(denial) => denial.reason,
        Decision::Allow { .. } => panic!("expected a denial"),
    }
}

#[test]
fn deny_by_default_with_a_denial_that_says_what_to_assign() {
    let f = Fixture::new();
    let who = Principal::new(JOB).with_app_id("app-123");
    let Decision::Deny(denial) = f.decide(&who, &f.read("train", "x")) else {
        panic!("allowed without any assignment");
    };
    assert_eq!(denial.reason, DenialReason::NoAssignment);
    let text = denial.to_string();
    assert!(text.starts_with(&format!("principal {JOB} (appid app-123) has no role assignment granting Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read on {}", f.container("train"))), "{text}");
    assert!(
        text.contains(&format!(
            "assign 'Storage Blob Data Reader' ({})",
            builtin::STORAGE_BLOB_DATA_READER
        )),
        "{text}"
    );
    assert!(text.ends_with("at this scope or above"), "{text}");
    assert_eq!(denial.suggestions[0].name, "Storage Blob Data Reader");
    // A write suggests Contributor first, never Reader.
    let Decision::Deny(denial) = f.decide(
        &who,
        &Request::data(action::blob::WRITE, f.container("train")),
    ) else {
        panic!("allowed");
    };
    assert_eq!(denial.suggestions[0].name, "Storage Blob Data Contributor");
    assert!(
        denial
            .suggestions
            .iter()
            .all(|s| s.name != "Storage Blob Data Reader")
    );
}

#[test]
fn scope_inheritance_account_grants_every_container_container_grants_only_itself() {
    let f = Fixture::new();
    f.assign(JOB, "Storage Blob Data Reader", &f.account);
    f.assign(OTHER, "storage blob data reader", &f.container("aaa"));
    let job = Principal::new(JOB);
    let other = Principal::new(OTHER);
    for c in ["a", "b", "train-secret"] {
        assert!(f.decide(&job, &f.read(c, "x")).is_allowed(), "{c}");
    }
    assert!(f.decide(&other, &f.read("aaa", "x")).is_allowed());
    assert!(!f.decide(&other, &f.read("b", "x")).is_allowed());
    // Prefix of the name is not containment: container "aaa" does not reach "aaab".
    assert!(!f.decide(&other, &f.read("aaab", "x")).is_allowed());
    // Another account under the same resource group is outside the account scope.
    let elsewhere = Scope::storage_account(SUB, "ml", "data2")
        .container("aaa")
        .unwrap();
    assert!(
        !f.decide(&job, &Request::data(action::blob::READ, elsewhere))
            .is_allowed()
    );
    // Case does not matter, as in Azure.
    let upper = Scope::parse(&f.container("AAA").as_str().to_uppercase()).unwrap();
    assert!(
        f.decide(&other, &Request::data(action::blob::READ, upper))
            .is_allowed()
    );
    // Reader does not write.
    assert!(
        !f.decide(
            &job,
            &Request::data(action::blob::WRITE, f.container("aaa"))
        )
        .is_allowed()
    );
}

#[test]
fn allow_names_the_assignment_role_and_scope() {
    let f = Fixture::new();
    let id = f.assign(JOB, builtin::STORAGE_BLOB_DATA_CONTRIBUTOR, &f.account);
    match f.decide(
        &Principal::new(JOB),
        &Request::data(action::blob::DELETE, f.container("ccc")),
    ) {
        Decision::Allow {
            assignment_id,
            role_name,
            scope,
            granted_to,
        } => {
            assert_eq!(&*assignment_id, id);
            assert_eq!(&*role_name, "Storage Blob Data Contributor");
            assert_eq!(scope, f.account);
            assert_eq!(&*granted_to, JOB);
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn not_data_actions_subtract_but_do_not_deny() {
    let f = Fixture::new();
    let role = RoleDefinition::from_json(&format!(
        r#"{{"Name":"Blob everything but delete",
            "DataActions":["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"],
            "NotDataActions":["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"],
            "AssignableScopes":["/subscriptions/{SUB}"]}}"#
    ))
    .unwrap();
    f.authz.store().create_definition(role).unwrap();
    f.assign(JOB, "Blob everything but delete", &f.account);
    let job = Principal::new(JOB);
    let c = f.container("ccc");
    assert!(
        f.decide(&job, &Request::data(action::blob::WRITE, c.clone()))
            .is_allowed()
    );
    assert!(
        !f.decide(&job, &Request::data(action::blob::DELETE, c.clone()))
            .is_allowed()
    );
    // NotDataActions is not a deny: another role still grants delete.
    f.assign(JOB, "Storage Blob Data Contributor", &c);
    assert!(
        f.decide(&job, &Request::data(action::blob::DELETE, c))
            .is_allowed()
    );
}

#[test]
fn custom_role_wildcards_match_case_insensitively() {
    let f = Fixture::new();
    let role = RoleDefinition::from_json(
        r#"{"Name":"Any reader","DataActions":["microsoft.storage/*/READ"],"AssignableScopes":["/"]}"#,
    )
    .unwrap();
    f.authz.store().create_definition(role).unwrap();
    f.assign(JOB, "Any reader", &f.account);
    let job = Principal::new(JOB);
    assert!(f.decide(&job, &f.read("c", "x")).is_allowed());
    assert!(
        !f.decide(
            &job,
            &Request::data(action::blob::WRITE, f.container("ccc"))
        )
        .is_allowed()
    );
    // The custom role now shows up as a suggestion for reads.
    let Decision::Deny(d) = f.decide(&Principal::new(OTHER), &f.read("c", "x")) else {
        panic!()
    };
    assert!(d.suggestions.iter().any(|s| s.name == "Any reader"));
}

#[test]
fn condition_limits_reads_to_the_train_prefix_and_keeps_listing() {
    let f = Fixture::new();
    let mut new = NewAssignment::new(
        JOB,
        "Storage Blob Data Reader",
        f.container("data").as_str(),
    );
    new.condition = Some(TRAIN_ONLY.into());
    new.condition_version = Some("2.0".into());
    let id = f.assign_with(new);
    let job = Principal::new(JOB);
    assert!(
        f.decide(&job, &f.read("data", "train/shard-0001.tfrecord"))
            .is_allowed()
    );
    assert_eq!(
        deny_reason(f.decide(&job, &f.read("data", "train-secret/labels.csv"))),
        DenialReason::ConditionNotMet {
            assignment_ids: vec![id.clone()]
        }
    );
    assert!(!f.decide(&job, &f.read("data", "eval/x")).is_allowed());
    let list = Request::data(action::blob::READ, f.container("data"))
        .with_sub_operation(action::blob::SUB_OPERATION_LIST);
    assert!(f.decide(&job, &list).is_allowed());
    let text = match f.decide(&job, &f.read("data", "eval/x")) {
        Decision::Deny(d) => d.to_string(),
        d => panic!("{d:?}"),
    };
    assert!(text.contains("condition is false"), "{text}");
}

#[test]
fn expired_assignments_stop_granting() {
    let f = Fixture::new();
    let mut new = NewAssignment::new(JOB, "Storage Blob Data Reader", f.account.as_str());
    new.expires_at = Some(NOW + time::Duration::hours(1));
    let id = f.assign_with(new);
    let job = Principal::new(JOB);
    let req = f.read("c", "x");
    assert!(f.authz.authorize(&job, &req, NOW).is_allowed());
    let later = NOW + time::Duration::hours(1);
    let d = f.authz.authorize(&job, &req, later);
    assert_eq!(
        deny_reason(d),
        DenialReason::Expired {
            assignment_ids: vec![id]
        }
    );
}

#[test]
fn group_assignments_grant_through_the_groups_claim() {
    let f = Fixture::new();
    let mut new = NewAssignment::new(
        GROUP,
        "Storage Blob Data Contributor",
        f.container("ccc").as_str(),
    );
    new.principal_type = PrincipalType::Group;
    f.assign_with(new);
    let write = Request::data(action::blob::WRITE, f.container("ccc"));
    assert!(!f.decide(&Principal::new(JOB), &write).is_allowed());
    let member = Principal::new(JOB).with_groups([OTHER, &GROUP.to_uppercase()]);
    match f.decide(&member, &write) {
        Decision::Allow { granted_to, .. } => assert_eq!(&*granted_to, GROUP),
        d => panic!("{d:?}"),
    }
}

#[test]
fn can_manage_needs_role_assignments_write() {
    let f = Fixture::new();
    let admin = Principal::new(ADMIN);
    assert!(!f.authz.can_manage(&admin, &f.account, NOW).is_allowed());
    f.assign(ADMIN, "User Access Administrator", &f.container("ccc"));
    assert!(
        f.authz
            .can_manage(&admin, &f.container("ccc"), NOW)
            .is_allowed()
    );
    assert!(!f.authz.can_manage(&admin, &f.account, NOW).is_allowed());
    f.assign(
        ADMIN,
        builtin::OWNER,
        &Scope::parse(&format!("/subscriptions/{SUB}")).unwrap(),
    );
    assert!(f.authz.can_manage(&admin, &f.account, NOW).is_allowed());
    // Data roles do not manage access; and Owner does not read data.
    f.assign(JOB, "Storage Blob Data Owner", &f.account);
    assert!(
        !f.authz
            .can_manage(&Principal::new(JOB), &f.account, NOW)
            .is_allowed()
    );
    assert!(!f.decide(&admin, &f.read("c", "x")).is_allowed());
    let Decision::Deny(d) = f.authz.can_manage(&Principal::new(JOB), &f.account, NOW) else {
        panic!()
    };
    let names: Vec<_> = d.suggestions.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["User Access Administrator", "Owner"]);
}

#[test]
fn changes_by_another_process_are_picked_up_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Authorizer::open(dir.path())
        .unwrap()
        .with_refresh_interval(Duration::from_millis(0));
    let account = Scope::storage_account(SUB, "ml", "data");
    let req = Request::data(action::blob::READ, account.container("ccc").unwrap());
    let job = Principal::new(JOB);
    assert!(!gate.authorize(&job, &req, NOW).is_allowed());
    // A second connection to the same file stands in for the CLI process.
    let cli = RbacStore::open(dir.path()).unwrap();
    let a = cli
        .create_assignment(
            NewAssignment::new(JOB, "Storage Blob Data Reader", account.as_str()),
            NOW,
        )
        .unwrap();
    assert!(gate.authorize(&job, &req, NOW).is_allowed());
    cli.delete_assignment(&a.id()).unwrap();
    assert!(!gate.authorize(&job, &req, NOW).is_allowed());
}

#[test]
fn refresh_interval_bounds_how_often_the_store_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Authorizer::open(dir.path())
        .unwrap()
        .with_refresh_interval(Duration::from_secs(3600));
    let account = Scope::storage_account(SUB, "ml", "data");
    let req = Request::data(action::blob::READ, account.container("ccc").unwrap());
    let job = Principal::new(JOB);
    assert!(!gate.authorize(&job, &req, NOW).is_allowed());
    let cli = RbacStore::open(dir.path()).unwrap();
    cli.create_assignment(
        NewAssignment::new(JOB, "Storage Blob Data Reader", account.as_str()),
        NOW,
    )
    .unwrap();
    // Within the interval the loaded index is used; an explicit refresh picks it up.
    assert!(!gate.authorize(&job, &req, NOW).is_allowed());
    assert!(gate.refresh().unwrap());
    assert!(gate.authorize(&job, &req, NOW).is_allowed());
    assert!(!gate.refresh().unwrap());
}

#[test]
fn invalid_mutations_are_refused_with_actionable_errors() {
    let f = Fixture::new();
    let store = f.authz.store();
    let scope = f.account.as_str();
    let err = |new: NewAssignment| store.create_assignment(new, NOW).unwrap_err();

    assert!(matches!(
        err(NewAssignment::new(JOB, "Storage Blob Data Raeder", scope)),
        Error::UnknownRole { .. }
    ));
    assert!(matches!(
        err(NewAssignment::new("not-a-guid", "Owner", scope)),
        Error::InvalidPrincipalId { .. }
    ));
    assert!(matches!(
        err(NewAssignment::new(
            JOB,
            "Owner",
            "/subscriptions/x/resourcegroup/rg"
        )),
        Error::InvalidScope(_)
    ));
    let mut bad_condition = NewAssignment::new(JOB, "Owner", scope);
    bad_condition.condition = Some("ActionMatches{'x'} AND".into());
    let e = err(bad_condition);
    assert!(e.to_string().contains("column 23"), "{e}");
    let mut v1 = NewAssignment::new(JOB, "Owner", scope);
    v1.condition = Some("ActionMatches{'x'}".into());
    v1.condition_version = Some("1.0".into());
    assert!(matches!(err(v1), Error::UnsupportedConditionVersion { .. }));
    let mut past = NewAssignment::new(JOB, "Owner", scope);
    past.expires_at = Some(NOW);
    assert!(matches!(err(past), Error::ExpiryInPast { .. }));

    let narrow = RoleDefinition::from_json(&format!(
        r#"{{"Name":"Narrow","DataActions":["*/read"],"AssignableScopes":["{}"]}}"#,
        f.container("only").as_str()
    ))
    .unwrap();
    store.create_definition(narrow.clone()).unwrap();
    let e = err(NewAssignment::new(
        JOB,
        "Narrow",
        f.container("other").as_str(),
    ));
    assert!(matches!(e, Error::NotAssignable { .. }), "{e}");
    assert!(matches!(
        store.create_definition(narrow).unwrap_err(),
        Error::DuplicateRole { .. }
    ));
    let clash =
        RoleDefinition::from_json(r#"{"Name":"owner","Actions":["*"],"AssignableScopes":["/"]}"#)
            .unwrap();
    assert!(matches!(
        store.create_definition(clash).unwrap_err(),
        Error::DuplicateRole { .. }
    ));
    assert!(matches!(
        store.delete_assignment("nope").unwrap_err(),
        Error::AssignmentNotFound { .. }
    ));
}

#[test]
fn assignments_round_trip_through_the_store() {
    let f = Fixture::new();
    let mut new = NewAssignment::new(
        JOB.to_uppercase(),
        "Storage Blob Data Reader",
        f.container("ccc").as_str(),
    );
    new.condition = Some(TRAIN_ONLY.into());
    new.expires_at = Some(datetime!(2026-12-31 0:00 UTC));
    new.description = Some("nightly training".into());
    let created = f.authz.store().create_assignment(new, NOW).unwrap();
    assert_eq!(created.principal_id, JOB);
    assert_eq!(created.condition_version.as_deref(), Some("2.0"));
    let listed = f.authz.store().assignments().unwrap();
    assert_eq!(listed, vec![created.clone()]);
    let json = created.to_az_json(Some("Storage Blob Data Reader"));
    assert_eq!(json["principalId"], JOB);
    assert_eq!(
        json["roleDefinitionId"],
        format!(
            "/providers/Microsoft.Authorization/roleDefinitions/{}",
            builtin::STORAGE_BLOB_DATA_READER
        )
    );
    assert_eq!(json["roleDefinitionName"], "Storage Blob Data Reader");
    assert_eq!(json["conditionVersion"], "2.0");
    assert_eq!(json["scope"], f.container("ccc").as_str());
    assert_eq!(json["id"], created.id());
    // Delete by bare GUID works too.
    f.authz.store().delete_assignment(&created.name).unwrap();
    assert!(f.authz.store().assignments().unwrap().is_empty());
}

#[test]
fn the_authorizer_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authorizer>();
    assert_send_sync::<RbacStore>();
    let f = std::sync::Arc::new(Fixture::new());
    f.assign(JOB, "Storage Blob Data Reader", &f.account);
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let f = std::sync::Arc::clone(&f);
            std::thread::spawn(move || {
                let req = f.read(&format!("c{i}"), "x");
                (0..200).all(|_| f.decide(&Principal::new(JOB), &req).is_allowed())
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}

#[test]
fn a_background_refresher_picks_up_changes_off_the_request_path() {
    let dir = tempfile::tempdir().unwrap();
    let gate = std::sync::Arc::new(Authorizer::open(dir.path()).unwrap());
    let refresher = gate.spawn_refresher(Duration::from_millis(5));
    let account = Scope::storage_account(SUB, "ml", "data");
    let req = Request::data(action::blob::READ, account.container("ccc").unwrap());
    let job = Principal::new(JOB);
    assert!(!gate.authorize(&job, &req, NOW).is_allowed());
    RbacStore::open(dir.path())
        .unwrap()
        .create_assignment(
            NewAssignment::new(JOB, "Storage Blob Data Reader", account.as_str()),
            NOW,
        )
        .unwrap();
    // Bounded wait for the thread to run; not a performance assertion.
    let seen = (0..2_000).any(|_| {
        std::thread::sleep(Duration::from_millis(5));
        gate.authorize(&job, &req, NOW).is_allowed()
    });
    assert!(seen, "the refresher never loaded the new assignment");
    drop(gate);
    refresher.join().unwrap();
}

#[test]
fn the_same_role_at_the_same_scope_twice_is_refused_naming_the_existing_assignment() {
    let f = Fixture::new();
    let first = f.assign(JOB, "Storage Blob Data Reader", &f.container("ccc"));
    let again = NewAssignment::new(JOB, "Storage Blob Data Reader", f.container("ccc").as_str());
    match f.authz.store().create_assignment(again, NOW) {
        Err(e @ Error::DuplicateAssignment { .. }) => {
            let Error::DuplicateAssignment { existing } = &e else {
                unreachable!()
            };
            assert_eq!(existing.id(), first);
            assert!(e.to_string().starts_with("RoleAssignmentExists"), "{e}");
        }
        other => panic!("expected RoleAssignmentExists, got {other:?}"),
    }
    // Another scope, role or principal is a different assignment.
    f.assign(JOB, "Storage Blob Data Reader", &f.container("ddd"));
    f.assign(JOB, "Storage Blob Data Contributor", &f.container("ccc"));
    f.assign(OTHER, "Storage Blob Data Reader", &f.container("ccc"));
    assert_eq!(f.authz.store().assignments().unwrap().len(), 4);
}

#[test]
fn a_custom_role_is_deleted_only_when_no_assignment_uses_it() {
    let f = Fixture::new();
    let role = RoleDefinition::from_json(
        r#"{"Name":"Lister","DataActions":["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],"AssignableScopes":["/"]}"#,
    )
    .unwrap();
    f.authz.store().create_definition(role).unwrap();
    let id = f.assign(JOB, "Lister", &f.container("ccc"));
    let err = f.authz.store().delete_definition("Lister").unwrap_err();
    assert!(matches!(err, Error::RoleInUse { count: 1, .. }), "{err}");
    assert!(matches!(
        f.authz
            .store()
            .delete_definition("Storage Blob Data Reader"),
        Err(Error::BuiltInRole { .. })
    ));
    f.authz.store().delete_assignment(&id).unwrap();
    f.authz.store().delete_definition("lister").unwrap();
    assert!(matches!(
        f.authz.store().find_definition("Lister"),
        Err(Error::UnknownRole { .. })
    ));
}

#[test]
fn an_unversioned_store_keeps_its_assignments_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(entraflow_rbac::DB_FILE);
    {
        // rbac.db as written before its schema carried a version.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO meta VALUES ('generation', 7);
             CREATE TABLE role_definitions (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, definition TEXT NOT NULL);
             CREATE TABLE role_assignments (name TEXT PRIMARY KEY, principal_id TEXT NOT NULL, principal_type TEXT NOT NULL,
               role_definition_id TEXT NOT NULL, scope TEXT NOT NULL, condition TEXT, condition_version TEXT,
               expires_at TEXT, created_at TEXT NOT NULL, description TEXT);
             INSERT INTO role_assignments VALUES ('5f0c3a52-7a2b-4f0e-9d7c-1b2a3c4d5e6f', '{JOB}', 'ServicePrincipal',
               '{}', '/subscriptions/{SUB}', NULL, NULL, NULL, '2026-01-01T00:00:00Z', NULL);",
            builtin::STORAGE_BLOB_DATA_READER
        ))
        .unwrap();
    }
    let store = RbacStore::open(dir.path()).unwrap();
    assert_eq!(store.assignments().unwrap()[0].principal_id, JOB);
    let before = store.generation().unwrap();
    // The triggers step 1 adds keep counting changes.
    store
        .create_assignment(
            NewAssignment::new(
                OTHER,
                "Storage Blob Data Reader",
                format!("/subscriptions/{SUB}"),
            ),
            NOW,
        )
        .unwrap();
    assert!(store.generation().unwrap() > before);
    drop(store);
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 42)
        .unwrap();
    let err = RbacStore::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("schema version 42") && err.contains("newer"),
        "{err}"
    );
}
