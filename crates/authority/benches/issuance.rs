//! client_credentials issuance in-process: parse the form, look the app up in
//! SQLite, verify the secret (SHA-256, constant time), build the claims and sign
//! RS256. One thread, so the result is tokens per second per core.
//!
//! The `audited` group adds what the served authority does on every decision:
//! a durable append to the audit log (SQLite, fsync) before the answer. One
//! request at a time pays one fsync each; 32 concurrent requests share them
//! through the log's group commit.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use entraflow_audit::{AuditLog, AuditOptions, CheckpointSigner, StoreUrl};
use entraflow_authority::{
    Authority, EndpointVersion, NewApplication, SecretExpiry, Store, TokenRequest,
};

fn issuance(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let app = store
        .create_application(&NewApplication {
            display_name: "bench".into(),
            ..Default::default()
        })
        .unwrap();
    store.create_service_principal(&app.app_id).unwrap();
    let secret = store
        .reset_secret(&app.app_id, SecretExpiry::Years(1), false)
        .unwrap();
    let store = Arc::new(store);
    let http = entraflow_tls::https_client(None).unwrap();
    let authority = Authority::new(
        store.clone(),
        "https://127.0.0.1:8443",
        http.clone(),
        Default::default(),
    )
    .unwrap();
    let body = serde_urlencoded::to_string([
        ("grant_type", "client_credentials"),
        ("client_id", app.app_id.as_str()),
        ("client_secret", secret.password.as_str()),
        ("scope", "https://storage.azure.com/.default"),
    ])
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("client_credentials");
    group.throughput(Throughput::Elements(1));
    group.bench_function("secret_v2_token", |b| {
        b.iter(|| {
            let req = TokenRequest::parse(body.as_bytes(), None).unwrap();
            let answer = rt
                .block_on(authority.token(&secret.tenant, EndpointVersion::V2, &req))
                .unwrap();
            assert!(answer["access_token"].is_string());
        })
    });
    let wrong = body.replace("client_secret=", "client_secret=x");
    group.bench_function("wrong_secret_refused", |b| {
        b.iter(|| {
            let req = TokenRequest::parse(wrong.as_bytes(), None).unwrap();
            assert!(
                rt.block_on(authority.token(&secret.tenant, EndpointVersion::V2, &req))
                    .is_err()
            );
        })
    });
    // The floor: one RS256 signature over a typical claim set.
    let key = authority.key_ring().unwrap().active.clone();
    let claims = serde_json::json!({"aud": "https://storage.azure.com", "iss": "https://sts.windows.net/t/", "iat": 1, "nbf": 1, "exp": 2, "appid": app.app_id});
    group.bench_function("rs256_sign_only", |b| {
        b.iter(|| key.sign_jwt(&claims).unwrap())
    });
    group.finish();

    let audit_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log = audit_rt
        .block_on(AuditLog::open(
            StoreUrl::default_for(dir.path()),
            CheckpointSigner::generate("bench").unwrap(),
            AuditOptions::new("entraflow/authority"),
        ))
        .unwrap();
    let audited = Authority::new(store, "https://127.0.0.1:8443", http, Default::default())
        .unwrap()
        .with_audit_log(log.clone());
    let mut group = c.benchmark_group("audited");
    group.throughput(Throughput::Elements(1));
    group.bench_function("secret_v2_token", |b| {
        b.iter(|| {
            let req = TokenRequest::parse(body.as_bytes(), None).unwrap();
            let answer = audit_rt
                .block_on(audited.token(&secret.tenant, EndpointVersion::V2, &req))
                .unwrap();
            assert!(answer["access_token"].is_string());
        })
    });
    const CONCURRENT: usize = 32;
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function("secret_v2_token_x32_concurrent", |b| {
        b.iter(|| {
            let req = TokenRequest::parse(body.as_bytes(), None).unwrap();
            let answers =
                audit_rt
                    .block_on(futures::future::join_all((0..CONCURRENT).map(|_| {
                        audited.token(&secret.tenant, EndpointVersion::V2, &req)
                    })));
            assert!(answers.iter().all(|a| a.is_ok()));
        })
    });
    group.finish();
    audit_rt.block_on(log.close()).unwrap();
}

criterion_group!(benches, issuance);
criterion_main!(benches);
