//! Assignments named by the caller (ARM's `PUT .../roleAssignments/{guid}`).

use entraflow_rbac::{Error, NewAssignment, RbacStore, Scope};

#[test]
fn a_caller_chosen_guid_is_kept_and_cannot_be_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = RbacStore::open(dir.path()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let scope = Scope::storage_account("00000000-0000-0000-0000-000000000001", "ml", "data");
    let name = "6F1C2B2E-0D55-4A3B-9C4B-2A0E1F0B7C11";
    let new = || {
        NewAssignment::new(
            "11111111-1111-1111-1111-111111111111",
            "Storage Blob Data Reader",
            scope.as_str(),
        )
    };
    let created = store.create_assignment_named(name, new(), now).unwrap();
    // GUIDs are stored lower-case, as Azure prints them.
    assert_eq!(created.name, name.to_ascii_lowercase());
    assert!(
        created
            .id()
            .ends_with(&format!("/roleAssignments/{}", created.name))
    );

    let again = store.create_assignment_named(name, new(), now).unwrap_err();
    assert!(matches!(again, Error::AssignmentExists { .. }), "{again:?}");
    assert_eq!(store.assignments().unwrap().len(), 1);

    let bad = store
        .create_assignment_named("not-a-guid", new(), now)
        .unwrap_err();
    assert!(
        matches!(bad, Error::InvalidAssignmentName { .. }),
        "{bad:?}"
    );
}

#[test]
fn custom_roles_can_be_replaced_but_built_ins_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let store = RbacStore::open(dir.path()).unwrap();
    let doc = |name: &str, action: &str| {
        format!(
            r#"{{"name": "0b5b7c8e-3c2a-4f3e-9d51-6a1d2f3e4c5b", "properties": {{"roleName": "{name}", "permissions": [{{"dataActions": ["{action}"]}}], "assignableScopes": ["/subscriptions/s"]}}}}"#
        )
    };
    let read = entraflow_rbac::action::blob::READ;
    let write = entraflow_rbac::action::blob::WRITE;
    let created = store
        .create_definition(
            entraflow_rbac::RoleDefinition::from_json(&doc("Reader X", read)).unwrap(),
        )
        .unwrap();
    let updated = store
        .update_definition(
            &created,
            entraflow_rbac::RoleDefinition::from_json(&doc("Writer X", write)).unwrap(),
        )
        .unwrap();
    assert_eq!(updated.id, created.id);
    let found = store.find_definition(&created.id).unwrap();
    assert_eq!(found.name, "Writer X");
    assert_eq!(found.permissions[0].data_actions, vec![write.to_owned()]);
    assert!(store.find_definition("Reader X").is_err());

    // An update authorized against a version that is no longer stored is refused.
    let stale = store
        .update_definition(
            &created,
            entraflow_rbac::RoleDefinition::from_json(&doc("Reader X", read)).unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(stale, Error::DefinitionChanged { .. }),
        "{stale:?}"
    );

    let owner = store.find_definition("Owner").unwrap();
    let mut changed = owner.clone();
    changed.description = "changed".into();
    let err = store.update_definition(&owner, changed).unwrap_err();
    assert!(matches!(err, Error::BuiltInRole { .. }), "{err:?}");
}
