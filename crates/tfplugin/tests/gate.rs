//! The filesystem TensorFlow sees, through a real authority and a real gate on
//! loopback: writes commit on close only, read-ahead returns exactly the bytes
//! written across chunk boundaries, globs and listings, rename/delete, and a 403
//! that names the missing role. (TensorFlow itself is exercised by
//! `tests/python/test_tensorflow.py`.)

use std::sync::Arc;

use entraflow_credential::{RefreshPolicy, TokenCredential};
use entraflow_testkit::{App, STORAGE_SCOPE, Stack};
use entraflow_tfplugin::{AzFilesystem, BlobClient, Config, FsError, TfCode};

fn client(s: &Stack, app: &App, read_ahead: u64) -> BlobClient {
    let credential: Arc<dyn TokenCredential> = Arc::new(s.authority.secret_credential(
        app,
        s.authority.credential_options(RefreshPolicy::default()),
    ));
    let config = Config {
        endpoint: Some(url::Url::parse(&s.endpoint).unwrap()),
        read_ahead,
        read_concurrency: 3,
        run_id: "tfplugin-test".into(),
    };
    BlobClient::new(
        config,
        credential,
        entraflow_tls::https_client(Some(s.authority.ca_pem())).unwrap(),
    )
}

fn az_url(s: &Stack, container: &str, name: &str) -> String {
    format!("az://{}/{container}/{name}", s.account)
}

/// Creates a container with a raw Create Container call (the filesystem does not
/// create containers).
fn create_container(rt: &tokio::runtime::Runtime, s: &Stack, app: &App, name: &str) {
    rt.block_on(async {
        let token = s.token(app, STORAGE_SCOPE).await;
        s.create_container(&token, name).await;
    });
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn files_round_trip_through_the_gate() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(Stack::start());
    let app = s.app("trainer");
    s.assign(&app.oid, "Storage Blob Data Contributor", &s.account_scope);
    rt.block_on(s.wait_for_policy());
    create_container(&rt, &s, &app, "data");
    // A read-ahead size that divides nothing evenly, to cross chunk edges everywhere.
    let fs = AzFilesystem::new(client(&s, &app, 300_001));

    // 9 MiB + change: two Put Blocks and a Put Block List; invisible until close.
    let data = pattern((9 << 20) + 12_345);
    let path = az_url(&s, "data", "train/shard-00000.tfrecord");
    let w = fs.open_write(&path, false).unwrap();
    for piece in data.chunks(1 << 20) {
        w.append(piece).unwrap();
    }
    w.sync().unwrap();
    assert!(
        matches!(fs.stat(&path), Err(FsError::NotFound(_))),
        "a partial blob is visible"
    );
    assert_eq!(w.tell().unwrap(), data.len() as u64);
    w.close().unwrap();
    let st = fs.stat(&path).unwrap();
    assert_eq!((st.length, st.is_directory), (data.len() as u64, false));

    // Sequential 256 KiB reads, as TensorFlow's TFRecord reader makes them.
    let r = fs.open_read(&path).unwrap();
    let mut back = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = r.read(back.len() as u64, &mut buf).unwrap();
        back.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            break;
        }
    }
    assert!(back == data, "sequential read differs");
    // A jump: exact range.
    let mut small = [0u8; 100];
    assert_eq!(r.read(5_000_000, &mut small).unwrap(), 100);
    assert_eq!(&small[..], &data[5_000_000..5_000_100]);
    // At the end: nothing, which TensorFlow reports as OUT_OF_RANGE.
    assert_eq!(r.read(data.len() as u64, &mut small).unwrap(), 0);

    // A small file: one Put Blob. Appending re-stages the content.
    let small_path = az_url(&s, "data", "train/shard-00001.tfrecord");
    let w = fs.open_write(&small_path, false).unwrap();
    w.append(b"hello").unwrap();
    w.close().unwrap();
    let w = fs.open_write(&small_path, true).unwrap();
    w.append(b", world").unwrap();
    w.close().unwrap();
    assert_eq!(&fs.read_all(&small_path).unwrap()[..], b"hello, world");

    // Globs, listings, directories.
    let other = az_url(&s, "data", "train/sub/other.bin");
    fs.open_write(&other, false).unwrap().close().unwrap();
    assert_eq!(
        fs.matching_paths(&az_url(&s, "data", "train/shard-*.tfrecord"))
            .unwrap(),
        vec![path.clone(), small_path.clone()]
    );
    assert_eq!(
        fs.matching_paths(&az_url(&s, "data", "train/*"))
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        fs.children(&az_url(&s, "data", "train")).unwrap(),
        vec!["shard-00000.tfrecord", "shard-00001.tfrecord", "sub"]
    );
    assert!(
        fs.stat(&az_url(&s, "data", "train/sub"))
            .unwrap()
            .is_directory
    );
    fs.create_dir(&az_url(&s, "data", "empty/dir"), true)
        .unwrap();
    fs.is_directory(&az_url(&s, "data", "empty/dir")).unwrap();
    assert!(matches!(
        fs.create_dir(&az_url(&s, "nocontainer", "x"), true),
        Err(FsError::NotFound(_))
    ));

    // Rename (copy + delete) and recursive delete.
    let renamed = az_url(&s, "data", "moved/shard.tfrecord");
    fs.rename_file(&small_path, &renamed).unwrap();
    assert_eq!(fs.stat(&small_path).unwrap_err().code(), TfCode::NotFound);
    assert_eq!(&fs.read_all(&renamed).unwrap()[..], b"hello, world");
    assert_eq!(
        fs.delete_recursively(&az_url(&s, "data", "train")).unwrap(),
        0
    );
    assert!(
        fs.matching_paths(&az_url(&s, "data", "train/*"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(fs.open_read(&path).unwrap_err().code(), TfCode::NotFound);
}

#[test]
fn a_principal_without_a_role_is_denied_with_the_role_named() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(Stack::start());
    let owner = s.app("owner");
    s.assign(
        &owner.oid,
        "Storage Blob Data Contributor",
        &s.account_scope,
    );
    let stranger = s.app("stranger");
    rt.block_on(s.wait_for_policy());
    create_container(&rt, &s, &owner, "data");
    let path = az_url(&s, "data", "x.bin");
    let w = AzFilesystem::new(client(&s, &owner, 1 << 20))
        .open_write(&path, false)
        .unwrap();
    w.append(b"secret data").unwrap();
    w.close().unwrap();

    let fs = AzFilesystem::new(client(&s, &stranger, 1 << 20));
    let err = fs.open_read(&path).unwrap_err();
    assert_eq!(err.code(), TfCode::PermissionDenied, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("Storage Blob Data Reader") && text.contains(&stranger.oid),
        "{text}"
    );
    let err = fs
        .open_write(&az_url(&s, "data", "y.bin"), false)
        .unwrap()
        .close()
        .unwrap_err();
    assert_eq!(err.code(), TfCode::PermissionDenied, "{err}");
}
