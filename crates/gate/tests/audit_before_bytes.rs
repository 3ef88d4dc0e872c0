//! A read is durably recorded before its first byte leaves: when the audit log
//! cannot take a read's record, the reader gets 503 and not one byte of the blob,
//! whether the body would have been sent with the headers (small) or streamed.
//!
//! The append is made to fail, with the log still open (so the request passes the
//! guard's readiness check and reaches the append itself), by a trigger that
//! aborts every insert into the audit store's event table.

use entraflow_testkit::{STORAGE_SCOPE, Stack};
use reqwest::Method;

const FAIL_APPENDS: &str = "CREATE TRIGGER fail_appends BEFORE INSERT ON audit_events \
                            BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END;";

fn audit_db(env: &Stack) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(env.data_dir().join("audit.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_whose_audit_append_fails_sends_no_byte_of_the_blob() {
    let env = Stack::start().await;
    let app = env.app("reader");
    env.assign(
        &app.oid,
        "Storage Blob Data Contributor",
        &env.account_scope,
    );
    env.wait_for_policy().await;
    let token = env.token(&app, STORAGE_SCOPE).await;
    env.create_container(&token, "data").await;
    // A pattern that cannot occur in an error document.
    let small: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
    let large: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 13) as u8).collect();
    for (name, body) in [("small.bin", &small), ("large.bin", &large)] {
        let resp = env
            .put_blob(&format!("/data/{name}"), &token, body.clone())
            .await;
        assert_eq!(resp.status(), 201);
    }
    let get = |name: &str, range: Option<&str>| {
        let mut req = env.request(Method::GET, &format!("/data/{name}"), Some(&token));
        if let Some(range) = range {
            req = req.header("x-ms-range", range);
        }
        req.send()
    };
    let resp = get("small.bin", None).await.unwrap();
    assert_eq!(
        resp.bytes().await.unwrap(),
        small,
        "served while the log takes records"
    );
    // That read's one record was durable before its response, so no record of it
    // is still on its way when appends start failing.
    audit_db(&env).execute_batch(FAIL_APPENDS).unwrap();
    for (name, range, blob) in [
        ("small.bin", None, &small),
        ("large.bin", None, &large),
        ("large.bin", Some("bytes=1048576-2097151"), &large),
    ] {
        let resp = get(name, range).await.unwrap();
        assert_eq!(resp.status(), 503, "{name} {range:?}");
        let body = resp.bytes().await.unwrap();
        assert!(
            body.len() < 1024,
            "{name} {range:?}: {} bytes sent",
            body.len()
        );
        let needle = &blob[..16.min(blob.len())];
        assert!(
            !body.windows(needle.len()).any(|w| w == needle),
            "{name} {range:?}: blob bytes in the refusal"
        );
    }

    // Once the log takes records again, reads are served again.
    audit_db(&env)
        .execute_batch("DROP TRIGGER fail_appends;")
        .unwrap();
    let mut served = None;
    for _ in 0..100 {
        let resp = get("small.bin", None).await.unwrap();
        if resp.status() == 200 {
            served = Some(resp.bytes().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(served.as_deref(), Some(&small[..]));
}
