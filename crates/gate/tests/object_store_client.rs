//! The Rust `object_store` crate's Azure backend, with a bearer token from the real
//! authority, uploads, lists, reads ranges, copies and deletes through the gate.

use entraflow_testkit::{STORAGE_SCOPE, Stack};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::azure::{AzureCredential, MicrosoftAzureBuilder};
use object_store::path::Path;
use object_store::{
    Certificate, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, StaticCredentialProvider,
    WriteMultipart,
};

fn azure(env: &Stack, container: &str, token: String) -> Arc<dyn ObjectStore> {
    let ca = std::fs::read(env.data_dir().join("ca.pem")).unwrap();
    let options = ClientOptions::new()
        .with_root_certificate(Certificate::from_pem(&ca).unwrap())
        .with_allow_http(false);
    Arc::new(
        MicrosoftAzureBuilder::new()
            .with_account("devstoreaccount1")
            .with_container_name(container)
            .with_endpoint(env.endpoint.clone())
            .with_client_options(options)
            .with_credentials(Arc::new(StaticCredentialProvider::new(
                AzureCredential::BearerToken(token),
            )))
            .build()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn object_store_azure_backend_round_trip() {
    let env = Stack::start().await;
    let app = env.app("trainer");
    env.assign(
        &app.oid,
        "Storage Blob Data Contributor",
        "/blobServices/default/containers/data",
    );
    env.wait_for_policy().await;
    let token = env.token(&app, STORAGE_SCOPE).await;
    env.create_container(&token, "data").await;
    let store = azure(&env, "data", token);

    // Put Blob.
    let small = Path::from("train/shard-0.rec");
    store
        .put(&small, PutPayload::from_static(b"hello tensorflow"))
        .await
        .unwrap();

    // Multipart: object_store uses Put Block + Put Block List.
    let big = Path::from("train/shard-1.rec");
    let part = 5 * 1024 * 1024;
    let data: Vec<u8> = (0..(2 * part + 1234)).map(|i| (i % 251) as u8).collect();
    let mut writer =
        WriteMultipart::new_with_chunk_size(store.put_multipart(&big).await.unwrap(), part);
    writer.write(&data);
    writer.finish().await.unwrap();

    store
        .put(&Path::from("eval/x.rec"), PutPayload::from_static(b"eval"))
        .await
        .unwrap();

    // List with a prefix, and with a delimiter.
    let mut names: Vec<String> = store
        .list(Some(&Path::from("train")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    names.sort();
    assert_eq!(names, ["train/shard-0.rec", "train/shard-1.rec"]);
    let listing = store.list_with_delimiter(None).await.unwrap();
    let mut prefixes: Vec<String> = listing
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    prefixes.sort();
    assert_eq!(prefixes, ["eval", "train"]);

    // Ranged and full reads.
    let meta = store.head(&big).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    let range = store.get_range(&big, 5_000_000..5_300_000).await.unwrap();
    assert_eq!(&range[..], &data[5_000_000..5_300_000]);
    let all = store.get(&big).await.unwrap().bytes().await.unwrap();
    assert_eq!(all.len(), data.len());
    assert!(
        all[..] == data[..],
        "the committed blob must be the blocks in order"
    );
    assert_eq!(
        &store.get(&small).await.unwrap().bytes().await.unwrap()[..],
        b"hello tensorflow"
    );

    // Copy and delete.
    let copy = Path::from("train/copy.rec");
    store.copy(&small, &copy).await.unwrap();
    assert_eq!(
        &store.get(&copy).await.unwrap().bytes().await.unwrap()[..],
        b"hello tensorflow"
    );
    store.delete(&small).await.unwrap();
    match store.head(&small).await {
        Err(object_store::Error::NotFound { .. }) => {}
        other => panic!("deleted blob still visible: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn object_store_sees_permission_denied_without_a_role() {
    let env = Stack::start().await;
    let owner = env.app("owner");
    env.assign(
        &owner.oid,
        "Storage Blob Data Owner",
        "/blobServices/default/containers/data",
    );
    let stranger = env.app("stranger");
    env.wait_for_policy().await;
    let owner_token = env.token(&owner, STORAGE_SCOPE).await;
    env.create_container(&owner_token, "data").await;
    azure(&env, "data", owner_token)
        .put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await
        .unwrap();

    let store = azure(&env, "data", env.token(&stranger, STORAGE_SCOPE).await);
    let err = store.get(&Path::from("x")).await.unwrap_err();
    assert!(
        matches!(
            err,
            object_store::Error::PermissionDenied { .. } | object_store::Error::Generic { .. }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("403")
            || err.to_string().contains("AuthorizationPermissionMismatch"),
        "{err}"
    );
}

/// object_store's conditional writes and reads (`PutMode::Create`/`Update`,
/// `copy_if_not_exists`, `If-None-Match`/`If-Match` on get) map onto the gate's
/// conditional headers and come back as the errors object_store defines.
#[tokio::test(flavor = "multi_thread")]
async fn object_store_conditional_put_get_and_copy() {
    use object_store::{GetOptions, PutMode, PutOptions, UpdateVersion};
    let env = Stack::start().await;
    let app = env.app("trainer");
    env.assign(
        &app.oid,
        "Storage Blob Data Contributor",
        "/blobServices/default/containers/cond",
    );
    env.wait_for_policy().await;
    let token = env.token(&app, STORAGE_SCOPE).await;
    env.create_container(&token, "cond").await;
    let store = azure(&env, "cond", token);
    let path = Path::from("model/latest.json");
    let create = || PutOptions::from(PutMode::Create);

    let first = store
        .put_opts(&path, PutPayload::from_static(b"v1"), create())
        .await
        .unwrap();
    match store
        .put_opts(&path, PutPayload::from_static(b"v2"), create())
        .await
    {
        Err(object_store::Error::AlreadyExists { .. }) => {}
        other => panic!("a second create must fail: {other:?}"),
    }
    let update = |e_tag: Option<String>| {
        PutOptions::from(PutMode::Update(UpdateVersion {
            e_tag,
            version: None,
        }))
    };
    let second = store
        .put_opts(
            &path,
            PutPayload::from_static(b"v2"),
            update(first.e_tag.clone()),
        )
        .await
        .unwrap();
    match store
        .put_opts(
            &path,
            PutPayload::from_static(b"v3"),
            update(first.e_tag.clone()),
        )
        .await
    {
        Err(object_store::Error::Precondition { .. }) => {}
        other => panic!("an update against a stale ETag must fail: {other:?}"),
    }
    let body = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&body[..], b"v2");

    let not_modified = store
        .get_opts(
            &path,
            GetOptions {
                if_none_match: second.e_tag.clone(),
                ..GetOptions::default()
            },
        )
        .await;
    assert!(
        matches!(not_modified, Err(object_store::Error::NotModified { .. })),
        "{not_modified:?}"
    );
    let stale = store
        .get_opts(
            &path,
            GetOptions {
                if_match: first.e_tag.clone(),
                ..GetOptions::default()
            },
        )
        .await;
    assert!(
        matches!(stale, Err(object_store::Error::Precondition { .. })),
        "{stale:?}"
    );

    let copy = Path::from("model/copy.json");
    store.copy_if_not_exists(&path, &copy).await.unwrap();
    match store.copy_if_not_exists(&path, &copy).await {
        Err(object_store::Error::AlreadyExists { .. }) => {}
        other => panic!("copy_if_not_exists onto an existing blob must fail: {other:?}"),
    }
}
