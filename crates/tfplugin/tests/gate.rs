//! The filesystem TensorFlow sees, through a real authority and a real gate on
//! loopback: writes commit on close only, read-ahead returns exactly the bytes
//! written across chunk boundaries, globs and listings, rename/delete, and a 403
//! that names the missing role. (TensorFlow itself is exercised by
//! `tests/python/test_tensorflow.py`.)

use std::sync::Arc;

use entraflow_authority::{NewApplication, SecretExpiry, ServerConfig, ServerHandle};
use entraflow_core::Secret;
use entraflow_credential::{
    AuthorityHost, ClientSecretCredential, CredentialOptions, TokenCredential,
};
use entraflow_gate::{Gate, GateConfig};
use entraflow_rbac::{NewAssignment, RbacStore};
use entraflow_tfplugin::{AzFilesystem, BlobClient, Config, FsError, TfCode};

struct Servers {
    authority: ServerHandle,
    endpoint: String,
    account: String,
    account_scope: String,
    dir: tempfile::TempDir,
    _stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

struct App {
    app_id: String,
    oid: String,
    secret: String,
}

async fn start() -> Servers {
    entraflow_tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.port = 0;
    config.imds_port = 0;
    let (stop_authority, rx) = tokio::sync::oneshot::channel::<()>();
    let authority = entraflow_authority::serve(config, async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let gate = Gate::bind(GateConfig::new(dir.path())).await.unwrap();
    let endpoint = gate.endpoint().trim_end_matches('/').to_owned();
    let account = endpoint.rsplit('/').next().unwrap().to_owned();
    let account_scope = gate.storage_scope();
    let (stop_gate, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        gate.run(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Servers {
        authority,
        endpoint,
        account,
        account_scope,
        dir,
        _stops: vec![stop_authority, stop_gate],
    }
}

impl Servers {
    fn app(&self, name: &str, role: Option<&str>) -> App {
        let store = self.authority.authority.store();
        let app = store
            .create_application(&NewApplication {
                display_name: name.into(),
                ..Default::default()
            })
            .unwrap();
        let sp = store.create_service_principal(&app.app_id).unwrap();
        let secret = store
            .reset_secret(&app.app_id, SecretExpiry::Years(1), false)
            .unwrap();
        if let Some(role) = role {
            let rbac = RbacStore::open(self.dir.path()).unwrap();
            rbac.create_assignment(
                NewAssignment::new(&sp.id, role, &self.account_scope),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
        }
        App {
            app_id: app.app_id,
            oid: sp.id,
            secret: secret.password,
        }
    }

    fn client(&self, app: &App, read_ahead: u64) -> BlobClient {
        let options = CredentialOptions {
            authority: AuthorityHost::parse(&self.authority.authority_host, false).unwrap(),
            extra_ca_pem: Some(self.authority.ca_pem.clone()),
            ..CredentialOptions::default()
        };
        let credential: Arc<dyn TokenCredential> = Arc::new(
            ClientSecretCredential::new(
                &self.authority.tenant_id,
                &app.app_id,
                Secret::new(app.secret.clone()),
                options,
            )
            .unwrap(),
        );
        let config = Config {
            endpoint: Some(url::Url::parse(&self.endpoint).unwrap()),
            read_ahead,
            read_concurrency: 3,
            run_id: "tfplugin-test".into(),
        };
        BlobClient::new(
            config,
            credential,
            entraflow_tls::https_client(Some(&self.authority.ca_pem)).unwrap(),
        )
    }

    fn url(&self, container: &str, name: &str) -> String {
        format!("az://{}/{container}/{name}", self.account)
    }
}

/// Creates a container with a raw Create Container call (the filesystem does not
/// create containers).
async fn create_container(s: &Servers, app: &App, name: &str) {
    let http = entraflow_tls::https_client(Some(&s.authority.ca_pem)).unwrap();
    let token = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            s.authority.authority_host, s.authority.tenant_id
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", app.app_id.as_str()),
            ("client_secret", app.secret.as_str()),
            ("scope", "https://storage.azure.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = http
        .put(format!("{}/{name}?restype=container", s.endpoint))
        .bearer_auth(token)
        .header("x-ms-version", "2023-11-03")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn files_round_trip_through_the_gate() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(start());
    let app = s.app("trainer", Some("Storage Blob Data Contributor"));
    std::thread::sleep(std::time::Duration::from_millis(700)); // the gate re-reads assignments every 500 ms
    rt.block_on(create_container(&s, &app, "data"));
    // A read-ahead size that divides nothing evenly, to cross chunk edges everywhere.
    let fs = AzFilesystem::new(s.client(&app, 300_001));

    // 9 MiB + change: two Put Blocks and a Put Block List; invisible until close.
    let data = pattern((9 << 20) + 12_345);
    let path = s.url("data", "train/shard-00000.tfrecord");
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
    let small_path = s.url("data", "train/shard-00001.tfrecord");
    let w = fs.open_write(&small_path, false).unwrap();
    w.append(b"hello").unwrap();
    w.close().unwrap();
    let w = fs.open_write(&small_path, true).unwrap();
    w.append(b", world").unwrap();
    w.close().unwrap();
    assert_eq!(&fs.read_all(&small_path).unwrap()[..], b"hello, world");

    // Globs, listings, directories.
    let other = s.url("data", "train/sub/other.bin");
    fs.open_write(&other, false).unwrap().close().unwrap();
    assert_eq!(
        fs.matching_paths(&s.url("data", "train/shard-*.tfrecord"))
            .unwrap(),
        vec![path.clone(), small_path.clone()]
    );
    assert_eq!(
        fs.matching_paths(&s.url("data", "train/*")).unwrap().len(),
        3
    );
    assert_eq!(
        fs.children(&s.url("data", "train")).unwrap(),
        vec!["shard-00000.tfrecord", "shard-00001.tfrecord", "sub"]
    );
    assert!(fs.stat(&s.url("data", "train/sub")).unwrap().is_directory);
    fs.create_dir(&s.url("data", "empty/dir"), true).unwrap();
    fs.is_directory(&s.url("data", "empty/dir")).unwrap();
    assert!(matches!(
        fs.create_dir(&s.url("nocontainer", "x"), true),
        Err(FsError::NotFound(_))
    ));

    // Rename (copy + delete) and recursive delete.
    let renamed = s.url("data", "moved/shard.tfrecord");
    fs.rename_file(&small_path, &renamed).unwrap();
    assert_eq!(fs.stat(&small_path).unwrap_err().code(), TfCode::NotFound);
    assert_eq!(&fs.read_all(&renamed).unwrap()[..], b"hello, world");
    assert_eq!(fs.delete_recursively(&s.url("data", "train")).unwrap(), 0);
    assert!(
        fs.matching_paths(&s.url("data", "train/*"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(fs.open_read(&path).unwrap_err().code(), TfCode::NotFound);
}

#[test]
fn a_principal_without_a_role_is_denied_with_the_role_named() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(start());
    let owner = s.app("owner", Some("Storage Blob Data Contributor"));
    let stranger = s.app("stranger", None);
    std::thread::sleep(std::time::Duration::from_millis(700));
    rt.block_on(create_container(&s, &owner, "data"));
    let path = s.url("data", "x.bin");
    let w = AzFilesystem::new(s.client(&owner, 1 << 20))
        .open_write(&path, false)
        .unwrap();
    w.append(b"secret data").unwrap();
    w.close().unwrap();

    let fs = AzFilesystem::new(s.client(&stranger, 1 << 20));
    let err = fs.open_read(&path).unwrap_err();
    assert_eq!(err.code(), TfCode::PermissionDenied, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("Storage Blob Data Reader") && text.contains(&stranger.oid),
        "{text}"
    );
    let err = fs
        .open_write(&s.url("data", "y.bin"), false)
        .unwrap()
        .close()
        .unwrap_err();
    assert_eq!(err.code(), TfCode::PermissionDenied, "{err}");
}
