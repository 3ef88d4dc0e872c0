//! Every write records the blob version it produced (its ETag, and the MD5 of
//! its content), every read the version it served, and a copy the version it
//! copied from: what `entraflow audit lineage` follows. Driven by the Rust
//! `object_store` crate's Azure client (Put Blob, Put Block + Put Block List, Get
//! Blob whole and ranged, small and streamed, Get Blob Properties, Copy Blob,
//! Delete Blob) and, where it has no call, plain Blob REST (Set Blob Metadata).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use entraflow_testkit::{STORAGE_SCOPE, Stack};
use md5::{Digest, Md5};
use object_store::azure::{AzureCredential, MicrosoftAzureBuilder};
use object_store::path::Path;
use object_store::{
    Certificate, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, StaticCredentialProvider,
    WriteMultipart,
};
use serde_json::Value;

fn azure(env: &Stack, container: &str, token: String) -> Arc<dyn ObjectStore> {
    let ca = std::fs::read(env.data_dir().join("ca.pem")).unwrap();
    let options = ClientOptions::new()
        .with_root_certificate(Certificate::from_pem(&ca).unwrap())
        .with_allow_http(false);
    Arc::new(
        MicrosoftAzureBuilder::new()
            .with_account(&env.account)
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

fn md5_of(data: &[u8]) -> String {
    B64.encode(Md5::digest(data))
}

/// The gate's records of `op` on blob `name` of container `data`, in log order.
fn records<'a>(all: &'a [Value], op: &str, name: &str) -> Vec<&'a Value> {
    let mut found: Vec<&Value> = all
        .iter()
        .filter(|r| {
            r["operation"] == op
                && r["resource"]
                    .as_str()
                    .is_some_and(|res| res.ends_with(&format!("/containers/data/blobs/{name}")))
        })
        .collect();
    found.sort_by_key(|r| r["seq"].as_u64());
    found
}

/// The outcome record of a change (not its `.authorized` decision record).
fn outcome<'a>(all: &'a [Value], op: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = records(all, op, name)
        .into_iter()
        .filter(|r| r["event_type"] == "blob.write" || r["event_type"] == "blob.delete")
        .collect();
    assert_eq!(found.len(), 1, "one {op} of {name}: {found:#?}");
    found[0]
}

fn etag_of(meta_etag: &Option<String>) -> String {
    // object_store keeps the header's value; the gate's ETags are quoted.
    let etag = meta_etag.clone().expect("an ETag");
    if etag.starts_with('"') {
        etag
    } else {
        format!("\"{etag}\"")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_record_the_version_they_made_and_reads_the_version_they_served() {
    let env = Stack::start().await;
    let app = env.app("trainer");
    env.assign(
        &app.oid,
        "Storage Blob Data Contributor",
        &env.account_scope,
    );
    env.wait_for_policy().await;
    let token = env.token(&app, STORAGE_SCOPE).await;
    env.create_container(&token, "data").await;
    let store = azure(&env, "data", token.clone());

    // Put Blob, small enough that its read is one record.
    let small_data = b"hello lineage".to_vec();
    let small = Path::from("shards/small.rec");
    let put = store
        .put(&small, PutPayload::from(small_data.clone()))
        .await
        .unwrap();
    // Put Block + Put Block List: a blob that streams when read.
    let part = 5 * 1024 * 1024;
    let big_data: Vec<u8> = (0..(part + 777)).map(|i| (i % 253) as u8).collect();
    let big = Path::from("shards/big.rec");
    let mut writer =
        WriteMultipart::new_with_chunk_size(store.put_multipart(&big).await.unwrap(), part);
    writer.write(&big_data);
    let committed = writer.finish().await.unwrap();

    let got_small = store.get(&small).await.unwrap();
    let small_etag = etag_of(&got_small.meta.e_tag);
    assert_eq!(got_small.bytes().await.unwrap(), small_data);
    let got_big = store.get(&big).await.unwrap();
    let big_etag = etag_of(&got_big.meta.e_tag);
    assert_eq!(got_big.bytes().await.unwrap().len(), big_data.len());
    let range = store.get_range(&big, 100..200).await.unwrap();
    assert_eq!(&range[..], &big_data[100..200]);
    let head = store.head(&small).await.unwrap();
    let copy = Path::from("models/copy.rec");
    store.copy(&small, &copy).await.unwrap();
    let copy_etag = etag_of(&store.head(&copy).await.unwrap().e_tag);

    // Set Blob Metadata: a new ETag for the same content.
    let resp = env
        .request(
            reqwest::Method::PUT,
            "/data/shards/small.rec?comp=metadata",
            Some(&token),
        )
        .header("x-ms-meta-stage", "checked")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let metadata_etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(metadata_etag, small_etag);
    store.delete(&copy).await.unwrap();

    // A streamed read's completion record lands after its body: wait for it.
    let mut all = Vec::new();
    for _ in 0..200 {
        all = env.audit_records().await;
        if records(&all, "GetBlob", "shards/big.rec")
            .iter()
            .any(|r| r["event_type"] == "blob.read.completed")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Writes: the ETag the client got back, and the MD5 of the bytes written.
    let w = outcome(&all, "PutBlob", "shards/small.rec");
    assert_eq!(w["etag"], etag_of(&put.e_tag));
    assert_eq!(w["etag"], small_etag);
    assert_eq!(w["content_md5"], md5_of(&small_data));
    let w = outcome(&all, "PutBlockList", "shards/big.rec");
    assert_eq!(w["etag"], etag_of(&committed.e_tag));
    assert_eq!(w["etag"], big_etag);
    assert_eq!(
        w["content_md5"],
        md5_of(&big_data),
        "the committed content's MD5, computed by the gate"
    );
    for staged in records(&all, "PutBlock", "shards/big.rec") {
        assert!(
            staged.get("etag").is_none(),
            "a staged block is no version: {staged}"
        );
    }
    // The decision record before a change cannot know the version yet.
    let decided: Vec<&Value> = records(&all, "PutBlob", "shards/small.rec")
        .into_iter()
        .filter(|r| r["event_type"] == "blob.write.authorized")
        .collect();
    assert_eq!(decided.len(), 1);
    assert!(decided[0].get("etag").is_none());

    // Reads: a small read is one record, with the version it served.
    let small_reads = records(&all, "GetBlob", "shards/small.rec");
    assert_eq!(small_reads.len(), 1, "{small_reads:#?}");
    assert_eq!(small_reads[0]["event_type"], "blob.read");
    assert_eq!(small_reads[0]["etag"], small_etag);
    assert_eq!(small_reads[0]["content_md5"], md5_of(&small_data));
    // A streamed read's decision and completion records both carry it; so does
    // the range read (its bytes are the range's).
    let big_reads = records(&all, "GetBlob", "shards/big.rec");
    assert!(
        big_reads.iter().all(|r| r["etag"] == big_etag),
        "{big_reads:#?}"
    );
    let completions: Vec<&&Value> = big_reads
        .iter()
        .filter(|r| r["event_type"] == "blob.read.completed")
        .collect();
    assert!(
        completions
            .iter()
            .any(|r| r["bytes"] == big_data.len() as u64),
        "{big_reads:#?}"
    );
    assert!(big_reads.iter().any(|r| r["bytes"] == 100));
    let heads = records(&all, "GetBlobProperties", "shards/small.rec");
    assert!(heads.iter().any(|r| r["etag"] == etag_of(&head.e_tag)));

    // Copy: the version made, and the source version by scope.
    let c = outcome(&all, "CopyBlob", "models/copy.rec");
    assert_eq!(c["etag"], copy_etag);
    assert_eq!(c["copy_source_etag"], small_etag);
    assert_eq!(
        c["copy_source"],
        format!(
            "{}/blobServices/default/containers/data/blobs/shards/small.rec",
            env.account_scope
        )
    );
    // Metadata: the new ETag; delete: the version deleted.
    let m = outcome(&all, "SetBlobMetadata", "shards/small.rec");
    assert_eq!(m["etag"], metadata_etag);
    assert_eq!(m["content_md5"], md5_of(&small_data));
    let d = outcome(&all, "DeleteBlob", "models/copy.rec");
    assert_eq!(d["etag"], copy_etag);

    // Every Blob request's record names its operation.
    let gate_records: Vec<&Value> = all
        .iter()
        .filter(|r| {
            r["log"]
                .as_str()
                .is_some_and(|l| l.starts_with("entraflow/gate"))
        })
        .collect();
    assert!(!gate_records.is_empty());
    for r in gate_records {
        assert!(r["operation"].is_string(), "{r}");
        assert_eq!(r["schema"], 2);
    }
}
