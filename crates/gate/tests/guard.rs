//! Every request the gate serves passes one guard, and its audit record states
//! exactly the decision taken: one case per operation family (containers, lists,
//! reads, writes, blocks, copy, delete, batch parts, the admin API), each found by
//! its request id, plus the Copy Blob whose destination write is denied after its
//! source read was allowed.

use entraflow_gate::AUTHORIZED_SUFFIX;
use entraflow_testkit::{STORAGE_SCOPE, Stack};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
const WRITE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write";
const DELETE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete";
const CONTAINER_WRITE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/write";
const CONTAINER_READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/read";

/// The records of one request (a streamed read has two: decision and completion).
async fn records_of(env: &Stack, resp: &reqwest::Response) -> Vec<Value> {
    let id = resp.headers()["x-ms-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    records_with_id(env, &id).await
}

async fn records_with_id(env: &Stack, id: &str) -> Vec<Value> {
    let found: Vec<Value> = env
        .audit_records()
        .await
        .into_iter()
        .filter(|r| r["request_id"] == id)
        .collect();
    assert!(!found.is_empty(), "no audit record for request {id}");
    found
}

/// GETs `path`: its body and its request's records, once `expected` of them are
/// in (a streamed read's completion record follows its body) or a second passed.
async fn read_with_records(
    env: &Stack,
    path: &str,
    token: &str,
    expected: usize,
) -> (bytes::Bytes, Vec<Value>) {
    let resp = env
        .request(Method::GET, path, Some(token))
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-ms-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = resp.bytes().await.unwrap();
    let mut records = records_with_id(env, &id).await;
    for _ in 0..50 {
        if records.len() >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        records = records_with_id(env, &id).await;
    }
    (body, records)
}

/// Allowed with the named action and a granting assignment. A change has two
/// records: its decision (`<type>.authorized`, durable before anything changed,
/// no status yet) and its outcome; a read's first record is its decision.
fn assert_allowed(records: &[Value], event_type: &str, action: &str) {
    let change = matches!(
        event_type,
        "blob.write" | "blob.delete" | "container.create" | "container.delete"
    );
    let mut expected = vec![event_type.to_owned()];
    if change {
        expected.insert(0, format!("{event_type}{AUTHORIZED_SUFFIX}"));
    }
    assert!(records.len() >= expected.len(), "{records:?}");
    for (r, t) in records.iter().zip(&expected) {
        assert_eq!(r["event_type"], t.as_str(), "{r}");
        assert_eq!(r["action"], action, "{r}");
        assert_eq!(r["decision"], "allow", "{r}");
        assert!(r["assignment_id"].is_string(), "{r}");
        assert!(r["role_name"].is_string(), "{r}");
    }
    if change {
        assert!(
            records[0]["status"].is_null(),
            "decided before the outcome: {:?}",
            records[0]
        );
        assert_eq!(records[0]["assignment_id"], records[1]["assignment_id"]);
        assert!(records[1]["status"].is_u64(), "{:?}", records[1]);
    }
}

fn assert_denied(records: &[Value], action: &str) {
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["event_type"], "authz.denied", "{r}");
    assert_eq!(r["action"], action, "{r}");
    assert_eq!(r["decision"], "deny", "{r}");
    assert!(r["assignment_id"].is_null(), "a denial names no grant: {r}");
    assert!(r["role_name"].is_null(), "a denial names no grant: {r}");
    assert_eq!(r["status"], 403, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_copy_names_no_granting_assignment() {
    let env = Stack::start().await;
    let owner = env.app("owner");
    let reader = env.app("reader");
    env.assign(
        &owner.oid,
        "Storage Blob Data Contributor",
        &env.account_scope,
    );
    env.assign(&reader.oid, "Storage Blob Data Reader", &env.account_scope);
    env.wait_for_policy().await;
    let owner_token = env.token(&owner, STORAGE_SCOPE).await;
    env.create_container(&owner_token, "data").await;
    assert_eq!(
        env.put_blob("/data/src.bin", &owner_token, "source")
            .await
            .status(),
        201
    );

    // The reader may read the source (allowed) but not write the destination.
    let reader_token = env.token(&reader, STORAGE_SCOPE).await;
    let resp = env
        .request(Method::PUT, "/data/dst.bin", Some(&reader_token))
        .header("x-ms-copy-source", format!("{}/data/src.bin", env.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let records = records_of(&env, &resp).await;
    assert_denied(&records, WRITE);
    assert!(
        records[0]["resource"]
            .as_str()
            .unwrap()
            .ends_with("/containers/data/blobs/dst.bin"),
        "{records:?}"
    );
    // Nothing was written.
    let get = env
        .request(Method::GET, "/data/dst.bin", Some(&owner_token))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_family_records_its_action_and_decision() {
    let env = Stack::start().await;
    let writer = env.app("writer");
    let outsider = env.app("outsider");
    env.assign(
        &writer.oid,
        "Storage Blob Data Contributor",
        &env.account_scope,
    );
    env.wait_for_policy().await;
    let t = env.token(&writer, STORAGE_SCOPE).await;
    let nobody = env.token(&outsider, STORAGE_SCOPE).await;

    // Containers.
    let resp = env
        .request(Method::PUT, "/fam?restype=container", Some(&t))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_allowed(
        &records_of(&env, &resp).await,
        "container.create",
        CONTAINER_WRITE,
    );
    let resp = env
        .request(Method::GET, "/fam?restype=container", Some(&t))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_allowed(
        &records_of(&env, &resp).await,
        "container.list",
        CONTAINER_READ,
    );

    // Writes, blocks, reads, lists, copy, delete.
    let resp = env.put_blob("/fam/a.bin", &t, "abc").await;
    assert_eq!(resp.status(), 201);
    let records = records_of(&env, &resp).await;
    assert_allowed(&records, "blob.write", WRITE);
    assert_eq!(records[1]["bytes"], 3);

    let resp = env
        .request(
            Method::PUT,
            "/fam/b.bin?comp=block&blockid=QUFBQQ%3D%3D",
            Some(&t),
        )
        .body("block")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_allowed(&records_of(&env, &resp).await, "blob.write", WRITE);
    let resp = env
        .request(Method::PUT, "/fam/b.bin?comp=blocklist", Some(&t))
        .body("<BlockList><Latest>QUFBQQ==</Latest></BlockList>")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_allowed(&records_of(&env, &resp).await, "blob.write", WRITE);

    // A body that leaves with the headers has one record, durable before it.
    let (body, records) = read_with_records(&env, "/fam/a.bin", &t, 1).await;
    assert_eq!(body, "abc");
    assert_allowed(&records, "blob.read", READ);
    assert_eq!(records.len(), 1, "one record for a small read: {records:?}");
    assert_eq!(records[0]["bytes"], 3);
    assert_eq!(records[0]["status"], 200);
    // A body that streams has its record before the first byte and a completion
    // record, with the bytes sent, after the last.
    let large = vec![7u8; 200_000];
    assert_eq!(
        env.put_blob("/fam/large.bin", &t, large.clone())
            .await
            .status(),
        201
    );
    let (body, records) = read_with_records(&env, "/fam/large.bin", &t, 2).await;
    assert_eq!(body, large);
    assert_allowed(&records, "blob.read", READ);
    assert_eq!(records.len(), 2, "decision and completion: {records:?}");
    assert_eq!(records[1]["event_type"], entraflow_gate::READ_COMPLETED);
    assert_eq!(records[1]["bytes"], 200_000);
    // Every byte went out: a complete read is never reported as a disconnect.
    assert!(
        records[1]["detail"]
            .as_str()
            .unwrap()
            .ends_with("body complete"),
        "{:?}",
        records[1]["detail"]
    );

    let resp = env
        .request(Method::GET, "/fam?restype=container&comp=list", Some(&t))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_allowed(&records_of(&env, &resp).await, "blob.list", READ);

    let resp = env
        .request(Method::PUT, "/fam/c.bin", Some(&t))
        .header("x-ms-copy-source", format!("{}/fam/a.bin", env.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_allowed(&records_of(&env, &resp).await, "blob.write", WRITE);

    let resp = env
        .request(Method::DELETE, "/fam/c.bin", Some(&t))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_allowed(&records_of(&env, &resp).await, "blob.delete", DELETE);

    // A batch: each part is its own record with its own decision.
    let part = |id: u32, blob: &str, token: &str| {
        format!(
            "--batch_g\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {id}\r\n\r\nDELETE /fam/{blob} HTTP/1.1\r\nx-ms-version: 2025-01-05\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n\r\n"
        )
    };
    let body = format!(
        "{}{}--batch_g--\r\n",
        part(0, "a.bin", &t),
        part(1, "b.bin", &nobody)
    );
    let resp = env
        .request(Method::POST, "/fam?restype=container&comp=batch", Some(&t))
        .header("content-type", "multipart/mixed; boundary=batch_g")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let text = resp.text().await.unwrap();
    let part_ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("x-ms-request-id: "))
        .map(str::to_owned)
        .collect();
    assert_eq!(part_ids.len(), 2, "{text}");
    assert_allowed(
        &records_with_id(&env, &part_ids[0]).await,
        "blob.delete",
        DELETE,
    );
    assert_denied(&records_with_id(&env, &part_ids[1]).await, DELETE);

    // Denials, one per family, name no grant.
    for (method, path) in [
        (Method::PUT, "/other?restype=container"),
        (Method::GET, "/fam?restype=container&comp=list"),
        (Method::GET, "/fam/b.bin"),
        (Method::PUT, "/fam/x.bin"),
        (Method::DELETE, "/fam/b.bin"),
    ] {
        let mut req = env.request(method.clone(), path, Some(&nobody));
        if method == Method::PUT && path.ends_with(".bin") {
            req = req.header("x-ms-blob-type", "BlockBlob").body("x");
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403, "{method} {path}");
        let records = records_of(&env, &resp).await;
        let action = records[0]["action"].as_str().unwrap().to_owned();
        assert_denied(&records, &action);
    }
}

const TAGS_READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/read";
const TAGS_WRITE: &str =
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/write";
const FILTER: &str =
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/filter/action";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_leases_tags_and_block_lists_record_their_action_and_decision() {
    let env = Stack::start().await;
    let owner = env.app("owner");
    let outsider = env.app("outsider");
    env.assign(&owner.oid, "Storage Blob Data Owner", &env.account_scope);
    env.wait_for_policy().await;
    let t = env.token(&owner, STORAGE_SCOPE).await;
    let nobody = env.token(&outsider, STORAGE_SCOPE).await;
    env.create_container(&t, "more").await;
    assert_eq!(env.put_blob("/more/a.bin", &t, "abc").await.status(), 201);

    // (method, path, extra headers, body, expected status, event type, action)
    type Case<'a> = (
        Method,
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a str,
        u16,
        &'a str,
        &'a str,
    );
    let cases: [Case; 10] = [
        (Method::HEAD, "/more/a.bin", &[], "", 200, "blob.read", READ),
        (
            Method::PUT,
            "/more/a.bin?comp=properties",
            &[("x-ms-blob-content-type", "text/plain")],
            "",
            200,
            "blob.write",
            WRITE,
        ),
        (
            Method::PUT,
            "/more/a.bin?comp=metadata",
            &[("x-ms-meta-team", "ml")],
            "",
            200,
            "blob.write",
            WRITE,
        ),
        (
            Method::PUT,
            "/more/a.bin?comp=lease",
            &[
                ("x-ms-lease-action", "acquire"),
                ("x-ms-lease-duration", "-1"),
            ],
            "",
            201,
            "blob.write",
            WRITE,
        ),
        (
            Method::PUT,
            "/more?restype=container&comp=lease",
            &[
                ("x-ms-lease-action", "acquire"),
                ("x-ms-lease-duration", "15"),
            ],
            "",
            201,
            "container.create",
            CONTAINER_WRITE,
        ),
        (
            Method::PUT,
            "/more/b.bin?comp=tags",
            &[],
            "<Tags><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tags>",
            404,
            "",
            TAGS_WRITE,
        ),
        (
            Method::GET,
            "/more/a.bin?comp=tags",
            &[],
            "",
            200,
            "blob.read",
            TAGS_READ,
        ),
        (
            Method::GET,
            "/?comp=blobs&where=%22k%22%3D%27v%27",
            &[],
            "",
            200,
            "blob.list",
            FILTER,
        ),
        (
            Method::GET,
            "/more/a.bin?comp=blocklist&blocklisttype=all",
            &[],
            "",
            200,
            "blob.read",
            READ,
        ),
        (
            Method::GET,
            "/more/a.bin?restype=account&comp=properties",
            &[],
            "",
            200,
            "account.read",
            READ,
        ),
    ];
    for (method, path, headers, body, status, event_type, action) in cases {
        for (token, allowed) in [(&t, true), (&nobody, false)] {
            let mut req = env.request(method.clone(), path, Some(token));
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            let resp = req.body(body.to_owned()).send().await.unwrap();
            let records = records_of(&env, &resp).await;
            if !allowed {
                assert_eq!(resp.status(), 403, "{method} {path}");
                assert_denied(&records, action);
            } else if status == 404 {
                // Allowed, then not found: the record names the grant and the 404.
                assert_eq!(resp.status(), 404, "{method} {path}");
                assert_eq!(records[0]["action"], action, "{method} {path}");
                assert_eq!(records[0]["decision"], "allow", "{method} {path}");
                let outcome = records.last().unwrap();
                assert_eq!(outcome["status"], 404, "{method} {path}");
            } else {
                assert_eq!(resp.status().as_u16(), status, "{method} {path}");
                assert_allowed(&records, event_type, action);
            }
        }
    }
}
