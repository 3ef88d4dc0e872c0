//! Every token issued or refused is one audit event, durable before the answer,
//! with no token material in the store; an unauditable request gets no token; the
//! store verifies; admin changes land on their own chain.

use entraflow_audit::store::StoreBackend as _;
use entraflow_audit::{AnyStore, EventType, NoteVerifier, StoreUrl, VerifyOptions, verify_store};
use entraflow_authority::{
    ADMIN_LOG_ID, AUDIT_LOG_ID, AdminAudit, NewApplication, SecretExpiry, Store,
};
use entraflow_testkit::{Authority, audit_chain};

async fn verify(dir: &std::path::Path) -> entraflow_audit::VerifyReport {
    let key =
        std::fs::read_to_string(dir.join(entraflow_audit::checkpoint::VERIFIER_KEY_FILE)).unwrap();
    let store = AnyStore::open(&StoreUrl::default_for(dir)).await.unwrap();
    let options = VerifyOptions {
        verifiers: vec![NoteVerifier::parse(key.trim()).unwrap()],
        ..VerifyOptions::default()
    };
    verify_store(&store, &options).await.unwrap()
}

/// Every byte of the SQLite store (database and WAL).
fn stored_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["audit.db", "audit.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn every_token_decision_is_one_durable_event_without_token_material() {
    let mut s = Authority::start().await;
    let tenant = s.tenant().to_owned();
    let app = s.app("trainer");
    let mi = s
        .store()
        .create_managed_identity(Some("loader"), "local-vm", false)
        .unwrap();
    let http = s.http.clone();
    let token_url = s.url(&format!("/{tenant}/oauth2/v2.0/token"));
    let post = |form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = token_url.clone();
        async move {
            let resp = http
                .post(url)
                .header("user-agent", "audit-test/1.0")
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let form = |secret: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", app.app_id.clone()),
            ("client_secret", secret.to_owned()),
            ("scope", "https://storage.azure.com/.default".to_owned()),
        ]
    };

    // 1. issued
    let (status, body) = post(form(&app.secret)).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    // 2. refused: wrong secret
    let (status, body) = post(form("not-the-secret")).await;
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (401, Some(7000215))
    );
    // 3. refused: unknown grant
    let (status, _) = post(vec![("grant_type", "password".to_owned())]).await;
    assert_eq!(status, 400);
    // 4. refused before parsing: not a form
    let resp = http
        .post(&token_url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // 5. issued through IMDS
    let imds = format!("{}/metadata/identity/oauth2/token", s.imds_endpoint());
    let resp = http
        .get(&imds)
        .header("metadata", "true")
        .query(&[
            ("api-version", "2018-02-01"),
            ("resource", "https://storage.azure.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mi_token = resp.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // 6. refused by IMDS: no Metadata header
    let resp = http
        .get(&imds)
        .query(&[
            ("api-version", "2018-02-01"),
            ("resource", "https://storage.azure.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // Durable before the answer: the events are in the store already.
    let events = audit_chain(s.data_dir(), AUDIT_LOG_ID).await;
    let types: Vec<&EventType> = events.iter().map(|r| &r.event.event_type).collect();
    assert_eq!(
        types,
        [
            &EventType::TokenIssued,
            &EventType::TokenRefused,
            &EventType::TokenRefused,
            &EventType::TokenRefused,
            &EventType::TokenIssued,
            &EventType::TokenRefused,
        ]
    );
    let issued = &events[0].event;
    let principal = issued.principal.clone().unwrap();
    assert_eq!(principal.oid.as_deref(), Some(app.oid.as_str()));
    assert_eq!(principal.appid.as_deref(), Some(app.app_id.as_str()));
    assert_eq!(principal.name.as_deref(), Some("trainer"));
    assert_eq!(issued.tenant.as_deref(), Some(tenant.as_str()));
    assert_eq!(
        issued.resource.as_deref(),
        Some("https://storage.azure.com")
    );
    assert_eq!(
        issued.action.as_deref(),
        Some("oauth2/token:client_credentials")
    );
    assert_eq!(issued.user_agent.as_deref(), Some("audit-test/1.0"));
    assert!(
        issued
            .client_addr
            .as_deref()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    let claims = token_claims(&token);
    assert_eq!(issued.token_uti.as_deref(), claims["uti"].as_str());

    let wrong = &events[1].event;
    assert_eq!(wrong.status, Some(401));
    assert_eq!(wrong.decision, Some(entraflow_audit::Decision::Deny));
    assert!(
        wrong
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("AADSTS7000215: ")),
        "{wrong:?}"
    );
    assert_eq!(
        wrong.principal.as_ref().and_then(|p| p.oid.as_deref()),
        Some(app.oid.as_str()),
        "a refused client is named when it is known"
    );
    assert_eq!(
        events[2].event.action.as_deref(),
        Some("oauth2/token:password")
    );
    assert!(
        events[3]
            .event
            .detail
            .as_deref()
            .unwrap()
            .starts_with("AADSTS900023")
    );

    let mi_event = &events[4].event;
    assert_eq!(mi_event.action.as_deref(), Some("oauth2/token:imds"));
    assert_eq!(
        mi_event.principal.as_ref().unwrap().oid.as_deref(),
        Some(mi.principal_id.as_str())
    );
    assert_eq!(
        mi_event.token_uti.as_deref(),
        token_claims(&mi_token)["uti"].as_str()
    );
    assert_eq!(events[5].event.status, Some(400));

    // No token material anywhere in the store: not the tokens, their signatures, or the secret.
    let bytes = stored_bytes(s.data_dir());
    assert!(!bytes.is_empty());
    for needle in [
        token.as_str(),
        token.rsplit('.').next().unwrap(),
        mi_token.as_str(),
        app.secret.as_str(),
        "not-the-secret",
    ] {
        assert!(
            !contains(&bytes, needle),
            "the audit store holds token material"
        );
    }

    // An append that fails means no token: the client is told to retry.
    s.handle().audit_log().close().await.unwrap();
    let (status, body) = post(form(&app.secret)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(body["error_codes"][0], 90006);
    assert!(body.get("access_token").is_none());

    s.stop().await;
    let report = verify(s.data_dir()).await;
    assert!(report.is_ok(), "{:?}", report.problems);
    let chain = report
        .chains
        .iter()
        .find(|c| c.log_id == AUDIT_LOG_ID)
        .expect("the authority's chain");
    assert_eq!(chain.size, 6);
}

#[tokio::test]
async fn shutdown_writes_a_final_checkpoint() {
    let mut s = Authority::start().await;
    let (status, _) = s
        .token_v2(&[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
        ])
        .await;
    assert_eq!(status, 401, "unknown client");
    s.stop().await;
    let store = AnyStore::open(&StoreUrl::default_for(s.data_dir()))
        .await
        .unwrap();
    let checkpoints = store.checkpoints(AUDIT_LOG_ID).await.unwrap();
    assert_eq!(checkpoints.last().map(|c| c.size), Some(1));
    assert!(verify(s.data_dir()).await.is_ok());
}

#[tokio::test]
async fn admin_changes_are_recorded_on_their_own_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let audit = AdminAudit::open(dir.path(), None).await.unwrap();
    let app = store
        .create_application(&NewApplication {
            display_name: "trainer".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(audit.record(&store, "ad app create").await.unwrap(), 1);
    let secret = store
        .reset_secret(&app.app_id, SecretExpiry::Years(1), false)
        .unwrap();
    assert_eq!(
        audit
            .record(&store, "ad app credential reset")
            .await
            .unwrap(),
        1
    );
    assert_eq!(audit.record(&store, "ad app list").await.unwrap(), 0);
    audit.close().await.unwrap();

    let events = audit_chain(dir.path(), ADMIN_LOG_ID).await;
    assert_eq!(events.len(), 2);
    let reset = &events[1].event;
    assert_eq!(reset.event_type, EventType::AdminChange);
    assert_eq!(reset.action.as_deref(), Some("application.secret.reset"));
    assert_eq!(reset.resource.as_deref(), Some(app.app_id.as_str()));
    assert_eq!(
        reset.detail.as_deref(),
        Some(
            format!(
                "entraflow ad app credential reset: application={}",
                app.app_id
            )
            .as_str()
        )
    );
    let actor = reset.principal.as_ref().unwrap().name.clone().unwrap();
    assert_eq!(actor, entraflow_authority::os_user());
    assert!(!contains(&stored_bytes(dir.path()), &secret.password));
    assert!(verify(dir.path()).await.is_ok());
}

#[tokio::test]
async fn concurrent_admin_commands_share_the_admin_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Two CLI processes at once: two writers of one chain.
    let first = AdminAudit::open(dir.path(), None).await.unwrap();
    let second = AdminAudit::open(dir.path(), None).await.unwrap();
    for (n, audit) in [&first, &second, &first].into_iter().enumerate() {
        store.create_group(&format!("g{n}")).unwrap();
        assert_eq!(audit.record(&store, "ad group create").await.unwrap(), 1);
    }
    first.close().await.unwrap();
    second.close().await.unwrap();
    assert_eq!(audit_chain(dir.path(), ADMIN_LOG_ID).await.len(), 3);
    let report = verify(dir.path()).await;
    assert!(report.is_ok(), "{:?}", report.problems);
}

fn token_claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
