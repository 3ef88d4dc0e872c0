//! The Blob REST protocol as Azure speaks it, authentication failures, role checks
//! and auditing, with raw HTTP requests against a real authority and gate.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use entraflow_testkit::forge::{sign_with_stranger, storage_claims};
use entraflow_testkit::report::{Doc, Suite};
use entraflow_testkit::{STORAGE_SCOPE, Stack};
use reqwest::Method;
use serde_json::json;

const READER: &str = "Storage Blob Data Reader";
const CONTRIBUTOR: &str = "Storage Blob Data Contributor";

fn error_code(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-ms-error-code")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn claims(env: &Stack, oid: &str) -> serde_json::Value {
    storage_claims(&env.authority, oid)
}

fn sign_with_authority(env: &Stack, claims: &serde_json::Value) -> String {
    env.authority.sign(claims)
}

async fn auth_detail(env: &Stack, token: &str) -> (u16, String, String) {
    let resp = env
        .request(Method::GET, "?comp=list", Some(token))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let code = error_code(&resp);
    (status, code, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_and_key_based_requests_are_refused_like_azure() {
    let env = Stack::start().await;
    let resp = env
        .request(Method::GET, "/data?restype=container&comp=list", None)
        .header("x-ms-client-request-id", "client-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(error_code(&resp), "NoAuthenticationInformation");
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        challenge,
        format!(
            "Bearer authorization_uri={}/{}/oauth2/authorize resource_id=https://storage.azure.com",
            env.authority.host(),
            env.authority.tenant()
        )
    );
    assert!(!resp.headers()["x-ms-request-id"].is_empty());
    assert_eq!(resp.headers()["x-ms-client-request-id"], "client-42");

    let resp = env
        .request(Method::GET, "?comp=list", None)
        .header("authorization", "SharedKey devstoreaccount1:c2lnbmF0dXJl")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(error_code(&resp), "KeyBasedAuthenticationNotPermitted");
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_expired_and_misdirected_tokens_get_precise_401s() {
    let env = Stack::start().await;
    let app = env.app("job");
    env.assign(&app.oid, READER, &env.account_scope.clone());
    env.wait_for_policy().await;
    let good = claims(&env, &app.oid);

    // The authority's key with valid claims passes (sanity check of the forging helper).
    let (status, _, body) = auth_detail(&env, &sign_with_authority(&env, &good)).await;
    assert_eq!(status, 200, "{body}");

    let mut expired = good.clone();
    expired["exp"] = json!(time::OffsetDateTime::now_utc().unix_timestamp() - 3600);
    let (status, code, body) = auth_detail(&env, &sign_with_authority(&env, &expired)).await;
    assert_eq!((status, code.as_str()), (401, "InvalidAuthenticationInfo"));
    assert!(body.contains("<AuthenticationErrorDetail>Lifetime validation failed. The token is expired.</AuthenticationErrorDetail>"), "{body}");

    let mut early = good.clone();
    early["nbf"] = json!(time::OffsetDateTime::now_utc().unix_timestamp() + 3600);
    let (_, _, body) = auth_detail(&env, &sign_with_authority(&env, &early)).await;
    assert!(body.contains("Lifetime validation failed"), "{body}");

    let mut audience = good.clone();
    audience["aud"] = json!("https://management.azure.com/");
    let (status, _, body) = auth_detail(&env, &sign_with_authority(&env, &audience)).await;
    assert_eq!(status, 401);
    assert!(
        body.contains("Audience validation failed. Audience did not match."),
        "{body}"
    );

    let mut issuer = good.clone();
    issuer["iss"] = json!("https://sts.windows.net/another-tenant/");
    let (_, _, body) = auth_detail(&env, &sign_with_authority(&env, &issuer)).await;
    assert!(
        body.contains("Issuer validation failed. Issuer did not match."),
        "{body}"
    );

    let mut tenant = good.clone();
    tenant["tid"] = json!("99999999-9999-9999-9999-999999999999");
    let (_, _, body) = auth_detail(&env, &sign_with_authority(&env, &tenant)).await;
    assert!(body.contains("Issuer validation failed"), "{body}");

    // A key the issuer never published, even under a published kid.
    let ring = env.authority.store().load_key_ring().unwrap();
    let kid = ring.active.kid.clone();
    let (status, _, body) = auth_detail(
        &env,
        &sign_with_stranger(&json!({"alg": "RS256", "kid": kid}), &good),
    )
    .await;
    assert_eq!(status, 401);
    assert!(body.contains("Signature validation failed."), "{body}");
    let (_, _, body) = auth_detail(
        &env,
        &sign_with_stranger(&json!({"alg": "RS256", "kid": "unknown"}), &good),
    )
    .await;
    assert!(body.contains("Signature validation failed."), "{body}");
    // Keys carried by the token itself are never used.
    let (_, _, body) = auth_detail(
        &env,
        &sign_with_stranger(
            &json!({"alg": "RS256", "kid": kid, "jku": "https://evil.example/keys"}),
            &good,
        ),
    )
    .await;
    assert!(
        body.contains("keys come only from the trusted issuer"),
        "{body}"
    );

    // alg=none and HS256 (the public key as an HMAC secret: the classic confusion).
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good).unwrap());
    let none = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#)
    );
    let (status, _, body) = auth_detail(&env, &none).await;
    assert_eq!(status, 401);
    assert!(body.contains("Signature validation failed"), "{body}");
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(kid),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &good,
        &jsonwebtoken::EncodingKey::from_secret(b"public-key-bytes"),
    )
    .unwrap();
    let (status, _, body) = auth_detail(&env, &hs).await;
    assert_eq!(status, 401);
    assert!(body.contains("only RS256"), "{body}");
    let (status, _, _) = auth_detail(&env, "not.a.jwt").await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_removed_from_jwks_stops_validating() {
    // The default 5-minute throttle on unknown-kid refetches would make the new key
    // wait; this gate refetches on every unknown kid.
    let env = Stack::start_with(|c| c.jwks_refresh_interval = std::time::Duration::ZERO).await;
    let app = env.app("job");
    env.assign(&app.oid, READER, &env.account_scope.clone());
    env.wait_for_policy().await;
    let old = sign_with_authority(&env, &claims(&env, &app.oid));
    assert_eq!(auth_detail(&env, &old).await.0, 200);
    assert_eq!(
        auth_detail(&env, &old).await.0,
        200,
        "served from the verification cache"
    );

    // Rotate with no overlap: the old key leaves the JWKS at once.
    env.authority.store().rotate_keys(0, 0).unwrap();
    let new = sign_with_authority(&env, &claims(&env, &app.oid));
    assert_eq!(
        auth_detail(&env, &new).await.0,
        200,
        "an unknown kid refetches the JWKS"
    );
    let (status, _, body) = auth_detail(&env, &old).await;
    assert_eq!(
        status, 401,
        "a cached token whose key was removed must not validate: {body}"
    );
    assert!(body.contains("Signature validation failed"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_role_is_authorization_permission_mismatch_with_an_explanation() {
    let env = Stack::start().await;
    let owner = env.app("owner");
    let job = env.app("job");
    env.assign(
        &owner.oid,
        CONTRIBUTOR,
        "/blobServices/default/containers/data",
    );
    // A reader on another container only.
    env.assign(&job.oid, READER, "/blobServices/default/containers/other");
    env.wait_for_policy().await;
    let owner_token = env.token(&owner, STORAGE_SCOPE).await;
    env.create_container(&owner_token, "data").await;

    let job_token = env.token(&job, STORAGE_SCOPE).await;
    let resp = env
        .request(Method::GET, "/data/x.rec", Some(&job_token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(error_code(&resp), "AuthorizationPermissionMismatch");
    let denial = resp.headers()["x-ms-entraflow-denial"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(denial.contains(&job.oid), "{denial}");
    assert!(denial.contains(&job.app_id), "{denial}");
    assert!(
        denial.contains("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"),
        "{denial}"
    );
    assert!(denial.contains("/containers/data"), "{denial}");
    assert!(denial.contains("Storage Blob Data Reader"), "{denial}");
    let body = resp.text().await.unwrap();
    assert!(body.contains("<Message>This request is not authorized to perform this operation using this permission."), "{body}");
    assert!(body.contains("<AuthorizationDenialDetail>"), "{body}");

    // Reading is not writing.
    let reader = env.app("reader");
    env.assign(&reader.oid, READER, "/blobServices/default/containers/data");
    env.wait_for_policy().await;
    let reader_token = env.token(&reader, STORAGE_SCOPE).await;
    let resp = env.put_blob("/data/new.rec", &reader_token, "x").await;
    assert_eq!(resp.status(), 403);
    assert!(
        resp.headers()["x-ms-entraflow-denial"]
            .to_str()
            .unwrap()
            .contains("blobs/write")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn conditions_scope_reads_to_a_path_prefix() {
    let env = Stack::start().await;
    let owner = env.app("owner");
    let job = env.app("job");
    env.assign(
        &owner.oid,
        CONTRIBUTOR,
        "/blobServices/default/containers/data",
    );
    let mut new = entraflow_rbac::NewAssignment::new(
        &job.oid,
        READER,
        env.scope("/blobServices/default/containers/data"),
    );
    new.condition = Some(
        "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'} AND NOT SubOperationMatches{'Blob.List'})) OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringStartsWith 'train/'))".into(),
    );
    env.assign_with(new);
    env.wait_for_policy().await;
    let owner_token = env.token(&owner, STORAGE_SCOPE).await;
    env.create_container(&owner_token, "data").await;
    for name in ["train/a.rec", "train-secret/b.rec"] {
        let resp = env
            .put_blob(&format!("/data/{name}"), &owner_token, "payload")
            .await;
        assert_eq!(resp.status(), 201);
    }
    let job_token = env.token(&job, STORAGE_SCOPE).await;
    let ok = env
        .request(Method::GET, "/data/train/a.rec", Some(&job_token))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "payload");
    let denied = env
        .request(Method::GET, "/data/train-secret/b.rec", Some(&job_token))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403, "train/ must not grant train-secret/");
    assert!(
        denied.headers()["x-ms-entraflow-denial"]
            .to_str()
            .unwrap()
            .contains("condition")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_round_trip_with_azure_headers_ranges_and_conditions() {
    let env = Stack::start().await;
    let app = env.app("job");
    env.assign(
        &app.oid,
        CONTRIBUTOR,
        "/blobServices/default/containers/data",
    );
    env.wait_for_policy().await;
    let token = env.token(&app, STORAGE_SCOPE).await;
    env.create_container(&token, "data").await;
    let dup = env
        .request(Method::PUT, "/data?restype=container", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (dup.status().as_u16(), error_code(&dup).as_str()),
        (409, "ContainerAlreadyExists")
    );

    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 256) as u8).collect();
    let md5 = {
        use base64::Engine;
        use md5::Digest;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body))
    };
    // A Content-MD5 that does not match the body is refused and stores nothing.
    let resp = env
        .request(Method::PUT, "/data/dir/blob.bin", Some(&token))
        .header("x-ms-blob-type", "BlockBlob")
        .header("content-md5", "q0Ji6p2EFhmGjMm+XXKxYQ==")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), error_code(&resp).as_str()),
        (400, "Md5Mismatch")
    );
    let resp = env
        .request(Method::PUT, "/data/dir/blob.bin", Some(&token))
        .header("x-ms-blob-type", "BlockBlob")
        .header("x-ms-blob-content-type", "application/x-tfrecord")
        .header("content-md5", md5.as_str())
        .header("x-ms-meta-epoch", "3")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert!(resp.headers().contains_key("etag"));

    // Without x-ms-version Azure refuses bearer requests.
    let resp = env
        .authority
        .http
        .get(format!("{}/data/dir/blob.bin", env.endpoint))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), error_code(&resp).as_str()),
        (400, "MissingRequiredHeader")
    );

    let full = env
        .request(Method::GET, "/data/dir/blob.bin", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 200);
    let h = full.headers().clone();
    assert_eq!(h["content-length"], "100000");
    assert_eq!(h["content-type"], "application/x-tfrecord");
    assert_eq!(h["content-md5"], md5.as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["x-ms-blob-type"], "BlockBlob");
    assert_eq!(h["x-ms-meta-epoch"], "3");
    assert!(
        h.contains_key("last-modified")
            && h.contains_key("etag")
            && h.contains_key("x-ms-request-id")
    );
    assert_eq!(full.bytes().await.unwrap(), body);

    let part = env
        .request(Method::GET, "/data/dir/blob.bin", Some(&token))
        .header("x-ms-range", "bytes=1000-1999")
        .header("range", "bytes=0-0")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 1000-1999/100000");
    assert_eq!(part.bytes().await.unwrap(), body[1000..2000]);
    // A range past the end is clipped, as Azure does.
    let tail = env
        .request(Method::GET, "/data/dir/blob.bin", Some(&token))
        .header("range", "bytes=99990-200000")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.headers()["content-range"], "bytes 99990-99999/100000");
    let beyond = env
        .request(Method::GET, "/data/dir/blob.bin", Some(&token))
        .header("x-ms-range", "bytes=100000-")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (beyond.status().as_u16(), error_code(&beyond).as_str()),
        (416, "InvalidRange")
    );

    let etag = h["etag"].to_str().unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("\"\""),
        "{etag}"
    );
    let stale = env
        .request(Method::GET, "/data/dir/blob.bin", Some(&token))
        .header("if-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let same = env
        .request(Method::GET, "/data/dir/blob.bin", Some(&token))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 304);
    let no_overwrite = env
        .request(Method::PUT, "/data/dir/blob.bin", Some(&token))
        .header("x-ms-blob-type", "BlockBlob")
        .header("if-none-match", "*")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            no_overwrite.status().as_u16(),
            error_code(&no_overwrite).as_str()
        ),
        (409, "BlobAlreadyExists")
    );

    let head = env
        .request(Method::HEAD, "/data/dir/blob.bin", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "100000");
    let missing = env
        .request(Method::HEAD, "/data/nope", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (missing.status().as_u16(), error_code(&missing).as_str()),
        (404, "BlobNotFound")
    );

    // Set Blob Metadata replaces the user metadata only.
    let set = env
        .request(
            Method::PUT,
            "/data/dir/blob.bin?comp=metadata",
            Some(&token),
        )
        .header("x-ms-meta-epoch", "4")
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let head = env
        .request(Method::HEAD, "/data/dir/blob.bin", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["x-ms-meta-epoch"], "4");
    assert_eq!(head.headers()["content-type"], "application/x-tfrecord");

    // Copy, then delete.
    let copy = env
        .request(Method::PUT, "/data/copy.bin", Some(&token))
        .header(
            "x-ms-copy-source",
            format!("{}/data/dir/blob.bin", env.endpoint),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(copy.status(), 202);
    assert_eq!(copy.headers()["x-ms-copy-status"], "success");
    let copied = env
        .request(Method::GET, "/data/copy.bin", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(copied.headers()["x-ms-meta-epoch"], "4");
    assert_eq!(copied.bytes().await.unwrap(), body);
    let del = env
        .request(Method::DELETE, "/data/copy.bin", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 202);
    let again = env
        .request(Method::DELETE, "/data/copy.bin", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(&again), "BlobNotFound");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_blobs_pages_and_groups_like_azure() {
    let env = Stack::start().await;
    let app = env.app("job");
    env.assign(&app.oid, CONTRIBUTOR, &env.account_scope.clone());
    env.wait_for_policy().await;
    let token = env.token(&app, STORAGE_SCOPE).await;
    env.create_container(&token, "data").await;
    for name in [
        "a.txt",
        "train/1",
        "train/2",
        "train/sub/3",
        "train-secret/4",
        "val/5",
    ] {
        let resp = env
            .put_blob(&format!("/data/{name}"), &token, name.to_owned())
            .await;
        assert_eq!(resp.status(), 201);
    }
    let list = |q: &'static str| {
        let req = env.request(
            Method::GET,
            &format!("/data?restype=container&comp=list{q}"),
            Some(&token),
        );
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let xml = list("&delimiter=/").await;
    assert!(xml.contains("<Delimiter>/</Delimiter>"), "{xml}");
    let names: Vec<&str> = xml
        .split("<Name>")
        .skip(1)
        .map(|s| s.split('<').next().unwrap())
        .collect();
    assert_eq!(names, ["a.txt", "train-secret/", "train/", "val/"]);
    assert!(xml.contains("<BlobPrefix><Name>train/</Name></BlobPrefix>"));
    assert!(xml.contains("<NextMarker/>"));
    assert!(
        xml.contains(&format!(
            "ServiceEndpoint=\"{}/\" ContainerName=\"data\"",
            env.endpoint
        )),
        "{xml}"
    );

    let xml = list("&prefix=train/&delimiter=/").await;
    let names: Vec<&str> = xml
        .split("<Name>")
        .skip(1)
        .map(|s| s.split('<').next().unwrap())
        .collect();
    assert_eq!(names, ["train/1", "train/2", "train/sub/"]);

    // Pages of two, following NextMarker.
    let mut seen = Vec::new();
    let mut marker = String::new();
    loop {
        let req = env.request(
            Method::GET,
            &format!("/data?restype=container&comp=list&maxresults=2&marker={marker}"),
            Some(&token),
        );
        let xml = req.send().await.unwrap().text().await.unwrap();
        seen.extend(
            xml.split("<Name>")
                .skip(1)
                .map(|s| s.split('<').next().unwrap().to_owned()),
        );
        match xml.split("<NextMarker>").nth(1) {
            Some(rest) => marker = rest.split('<').next().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "a.txt",
            "train-secret/4",
            "train/1",
            "train/2",
            "train/sub/3",
            "val/5"
        ]
    );

    let xml = env
        .request(Method::GET, "?comp=list", Some(&token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(xml.contains("<Container><Name>data</Name>"), "{xml}");
}

#[tokio::test(flavor = "multi_thread")]
async fn put_block_list_commits_atomically() {
    let env = Stack::start().await;
    let app = env.app("job");
    env.assign(
        &app.oid,
        CONTRIBUTOR,
        "/blobServices/default/containers/data",
    );
    env.wait_for_policy().await;
    let token = env.token(&app, STORAGE_SCOPE).await;
    env.create_container(&token, "data").await;
    let put = |q: String, body: Vec<u8>| {
        let req = env
            .request(Method::PUT, &format!("/data/model.bin{q}"), Some(&token))
            .header("x-ms-blob-type", "BlockBlob")
            .body(body);
        async move { req.send().await.unwrap() }
    };
    assert_eq!(
        put(String::new(), b"old version".to_vec()).await.status(),
        201
    );
    let ids: Vec<String> = (0..3)
        .map(|i| B64.encode(format!("block-{i:04}")))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let q = format!("?comp=block&blockid={}", urlencode(id));
        assert_eq!(put(q, vec![b'a' + i as u8; 1000]).await.status(), 201);
    }
    // Staged blocks are invisible: readers still see the old blob, whole.
    let before = env
        .request(Method::GET, "/data/model.bin", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(before.text().await.unwrap(), "old version");

    let unknown = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>{}</Latest><Latest>{}</Latest></BlockList>",
        ids[0],
        B64.encode("never-staged")
    );
    let resp = put("?comp=blocklist".into(), unknown.into_bytes()).await;
    assert_eq!(
        (resp.status().as_u16(), error_code(&resp).as_str()),
        (400, "InvalidBlockList")
    );

    let list = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>{}</Latest><Uncommitted>{}</Uncommitted><Latest>{}</Latest></BlockList>",
        ids[2], ids[0], ids[1]
    );
    let resp = put("?comp=blocklist".into(), list.into_bytes()).await;
    assert_eq!(resp.status(), 201);
    let after = env
        .request(Method::GET, "/data/model.bin", Some(&token))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut expected = vec![b'c'; 1000];
    expected.extend(vec![b'a'; 1000]);
    expected.extend(vec![b'b'; 1000]);
    assert_eq!(after, expected);
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_audited_with_its_run_id() {
    let env = Stack::start().await;
    let app = env.app("job");
    let stranger = env.app("stranger");
    env.assign(
        &app.oid,
        CONTRIBUTOR,
        "/blobServices/default/containers/data",
    );
    env.wait_for_policy().await;
    let token = env.token(&app, STORAGE_SCOPE).await;
    env.create_container(&token, "data").await;
    let run = "run-2026-11-26";
    let with_run = |m: Method, p: &str, t: Option<&str>| {
        env.request(m, p, t).header("x-ms-entraflow-run-id", run)
    };
    let resp = with_run(Method::PUT, "/data/x.rec", Some(&token))
        .header("x-ms-blob-type", "BlockBlob")
        .body(vec![7u8; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = with_run(Method::GET, "/data/x.rec", Some(&token))
        .header("x-ms-range", "bytes=0-999")
        .send()
        .await
        .unwrap();
    let read_request_id = resp.headers()["x-ms-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(resp.bytes().await.unwrap().len(), 1000);
    let stranger_token = env.token(&stranger, STORAGE_SCOPE).await;
    assert_eq!(
        with_run(Method::GET, "/data/x.rec", Some(&stranger_token))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        with_run(Method::GET, "/data/x.rec", Some("garbage"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Every record is durable before its response (a small read has one).
    let records: Vec<_> = env
        .audit_records()
        .await
        .into_iter()
        .filter(|r| r["run_id"] == run)
        .collect();
    let types: Vec<&str> = records
        .iter()
        .map(|r| r["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "blob.write.authorized",
            "blob.write",
            "blob.read",
            "authz.denied",
            "authn.failed"
        ],
        "{records:#?}"
    );
    assert!(records[0]["status"].is_null(), "decided before the write");
    let write = &records[1];
    assert_eq!(write["decision"], "allow");
    assert_eq!(write["bytes"], 5000);
    assert_eq!(write["status"], 201);
    assert_eq!(write["principal"]["oid"], app.oid.as_str());
    assert_eq!(write["role_name"], "Storage Blob Data Contributor");
    assert!(
        write["resource"]
            .as_str()
            .unwrap()
            .ends_with("/blobServices/default/containers/data/blobs/x.rec")
    );
    assert!(write["token_uti"].is_string() && write["client_addr"].is_string());
    let read = &records[2];
    assert_eq!(read["request_id"], read_request_id.as_str());
    assert_eq!(read["detail"], "range bytes=0-999");
    assert_eq!(read["bytes"], 1000);
    assert_eq!(read["status"], 206);
    assert_eq!(records[3]["decision"], "deny");
    assert_eq!(records[3]["principal"]["oid"], stranger.oid.as_str());
    assert_eq!(records[4]["status"], 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn regression_a_rotated_key_is_used_and_the_retired_one_refused_within_the_refetch_interval()
{
    const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
    let env = Stack::start_with(|c| c.jwks_refresh_interval = INTERVAL).await;
    let app = env.app("job");
    env.assign(&app.oid, READER, &env.account_scope.clone());
    env.wait_for_policy().await;
    let old = sign_with_authority(&env, &claims(&env, &app.oid));
    assert_eq!(auth_detail(&env, &old).await.0, 200);
    env.authority.store().rotate_keys(0, 0).unwrap();
    // Within the interval of the last fetch a new kid is not looked up again, so a
    // flood of tokens with made-up kids cannot hammer the issuer.
    let new = sign_with_authority(&env, &claims(&env, &app.oid));
    let (status, _, body) = auth_detail(&env, &new).await;
    assert_eq!(status, 401);
    assert!(body.contains("No signing key with kid"), "{body}");
    // After it, the new kid refetches: the new key validates, and the retired one
    // is refused at once, even for a token the gate had verified and cached.
    tokio::time::sleep(INTERVAL + std::time::Duration::from_millis(100)).await;
    assert_eq!(auth_detail(&env, &new).await.0, 200);
    let (status, _, body) = auth_detail(&env, &old).await;
    assert_eq!(status, 401, "{body}");
}

#[test]
fn regression_the_default_unknown_kid_refetch_interval_is_seconds_not_minutes() {
    let config = entraflow_gate::GateConfig::new("unused");
    assert!(config.jwks_refresh_interval <= std::time::Duration::from_secs(10));
}

/// Finding (hardening issue): Storage tokens carry no `groups` claim (as in Entra)
/// and the gate read groups only from the token, so a role assigned to a group
/// granted nothing. The gate now looks membership up in the directory, nested
/// groups included, at most `group_staleness` old.
#[tokio::test(flavor = "multi_thread")]
async fn regression_a_group_grant_reaches_members_whose_tokens_carry_no_groups() {
    let staleness = std::time::Duration::from_millis(300);
    let env = Stack::start_with(|c| c.group_staleness = staleness).await;
    let owner = env.app("owner");
    let member = env.app("member");
    let outsider = env.app("outsider");
    env.assign(&owner.oid, CONTRIBUTOR, &env.account_scope.clone());
    let directory = env.authority.store();
    let team = directory.create_group("team").unwrap();
    let org = directory.create_group("org").unwrap();
    directory.add_group_member(&team.id, &member.oid).unwrap();
    directory.add_group_member(&org.id, &team.id).unwrap();
    let mut by_group = entraflow_rbac::NewAssignment::new(
        &org.id,
        READER,
        env.scope("/blobServices/default/containers/data"),
    );
    by_group.principal_type = entraflow_rbac::PrincipalType::Group;
    env.assign_with(by_group);
    env.wait_for_policy().await;
    let owner_token = env.token(&owner, STORAGE_SCOPE).await;
    env.create_container(&owner_token, "data").await;
    assert_eq!(
        env.put_blob("/data/x", &owner_token, "x").await.status(),
        201
    );

    let member_token = env.token(&member, STORAGE_SCOPE).await;
    assert!(
        env.authority
            .verify(&member_token)
            .await
            .get("groups")
            .is_none(),
        "Storage tokens carry no groups claim"
    );
    let get = |token: String| {
        let req = env.request(Method::GET, "/data/x", Some(&token));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        get(member_token.clone()).await,
        200,
        "a member of a nested group reads"
    );
    let outsider_token = env.token(&outsider, STORAGE_SCOPE).await;
    assert_eq!(get(outsider_token).await, 403);

    // Leaving the group takes effect within the staleness bound.
    rusqlite::Connection::open(env.data_dir().join("authority.db"))
        .unwrap()
        .execute(
            "DELETE FROM group_members WHERE member_id = ?1",
            [&member.oid],
        )
        .unwrap();
    tokio::time::sleep(staleness + std::time::Duration::from_millis(100)).await;
    assert_eq!(
        get(member_token).await,
        403,
        "removed members lose the grant"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_assigned_to_a_group_grants_tokens_that_carry_the_group() {
    // The local authority, like Entra ID, puts no `groups` in Storage tokens, so the
    // token is minted here with the authority's own key and a `groups` claim.
    let env = Stack::start().await;
    let owner = env.app("owner");
    env.assign(
        &owner.oid,
        CONTRIBUTOR,
        "/blobServices/default/containers/data",
    );
    let group = "0b8e4b8a-6f0e-4bb1-9a5e-4c1f3f0a0001";
    let mut by_group = entraflow_rbac::NewAssignment::new(
        group,
        READER,
        env.scope("/blobServices/default/containers/data"),
    );
    by_group.principal_type = entraflow_rbac::PrincipalType::Group;
    env.assign_with(by_group);
    env.wait_for_policy().await;
    let owner_token = env.token(&owner, STORAGE_SCOPE).await;
    env.create_container(&owner_token, "data").await;
    let put = env.put_blob("/data/x", &owner_token, "x").await;
    assert_eq!(put.status(), 201);

    let member = "0b8e4b8a-6f0e-4bb1-9a5e-4c1f3f0a0002";
    let mut with_group = claims(&env, member);
    with_group["groups"] = json!([group]);
    let resp = env
        .request(
            Method::GET,
            "/data/x",
            Some(&sign_with_authority(&env, &with_group)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the group's Reader role must reach its member"
    );
    let without = sign_with_authority(&env, &claims(&env, member));
    let resp = env
        .request(Method::GET, "/data/x", Some(&without))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_store_url_backend_keeps_blobs_under_its_path() {
    let blobs = tempfile::tempdir().unwrap();
    let root = blobs.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    let url = format!("file://{}", root.display());
    let env = Stack::start_with(|c| c.backend = entraflow_gate::Backend::Url(url)).await;
    let app = env.app("job");
    env.assign(
        &app.oid,
        CONTRIBUTOR,
        "/blobServices/default/containers/data",
    );
    env.wait_for_policy().await;
    let token = env.token(&app, STORAGE_SCOPE).await;
    env.create_container(&token, "data").await;
    let put = env.put_blob("/data/a/b.rec", &token, "bytes").await;
    assert_eq!(put.status(), 201);
    // A file-system backend keeps each blob's file with the flat-namespace suffix.
    assert_eq!(
        std::fs::read(root.join("data/a/b.rec.$blob")).unwrap(),
        b"bytes"
    );
    let get = env
        .request(Method::GET, "/data/a/b.rec", Some(&token))
        .header("x-ms-range", "bytes=1-3")
        .send()
        .await
        .unwrap();
    assert_eq!(get.text().await.unwrap(), "yte");
}

/// Finding (hardening issue): a gate that started while its authority was down
/// refused every valid token for 5 minutes after the authority came back, because
/// the JWKS refetch throttle also applied before the first successful fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_gate_started_while_the_authority_is_down_recovers_when_it_is_back() {
    let mut env = Stack::start().await;
    let app = env.app("job");
    env.assign(
        &app.oid,
        CONTRIBUTOR,
        "/blobServices/default/containers/data",
    );
    env.wait_for_policy().await;
    // Minted before the outage; the gate has fetched no keys yet.
    let token = env.token(&app, STORAGE_SCOPE).await;
    env.authority.stop().await;
    let mut suite = Suite::new(Doc::Reliability, "Authority outage (gate)");
    let refused = env
        .request(Method::PUT, "/data?restype=container", Some(&token))
        .send()
        .await
        .unwrap();
    let status = refused.status().as_u16();
    let body = refused.text().await.unwrap();
    suite.check(
        "a gate with no keys yet, authority down",
        "401 naming the authority",
        &format!(
            "{status}, names it: {}",
            body.contains(env.authority.host())
        ),
        status == 401 && body.contains(env.authority.host()),
    );
    env.authority.restart().await;
    let back = std::time::Instant::now();
    let mut recovered = None;
    while back.elapsed() < std::time::Duration::from_secs(10) {
        let resp = env
            .request(Method::PUT, "/data?restype=container", Some(&token))
            .send()
            .await
            .unwrap();
        if resp.status() == 201 {
            recovered = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    suite.check(
        "the authority comes back (no gate restart)",
        "valid tokens accepted within 2 s",
        &recovered.map_or("still refused after 10 s".into(), |d| {
            format!("accepted after {:.1} s", d.as_secs_f64())
        }),
        recovered.is_some_and(|d| d < std::time::Duration::from_secs(2)),
    );
    // With keys fetched, a second outage is invisible to valid tokens.
    env.authority.stop().await;
    let mut failures = 0;
    for i in 0..50 {
        let put = env
            .put_blob(&format!("/data/during-outage-{i}"), &token, "x")
            .await;
        failures += usize::from(put.status() != 201);
    }
    suite.check(
        "authority down, keys cached: 50 writes with a valid token",
        "0 failures",
        &format!("{failures} failures"),
        failures == 0,
    );
    suite.finish();
}
