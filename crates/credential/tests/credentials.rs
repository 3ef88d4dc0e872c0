//! Each credential against the real authority (and, for IMDS retry behaviour, a
//! misbehaving identity endpoint on loopback).

mod common;

use entraflow_testkit::report::{Doc, Suite};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::fast_policy;
use entraflow_core::{Aadsts, FEDERATION_AUDIENCE, Secret};
use entraflow_credential::{
    BlockingCredential, CertificateOptions, ChainedCredential, ClientCertificateCredential,
    CredentialError, DeveloperLoginCredential, DeviceCodeCredential, LoginCache,
    ManagedIdentityCredential, ManagedIdentityId, ManagedIdentityOptions, TokenCredential,
    TokenRequest, WorkloadIdentityCredential,
};
use entraflow_testkit::{App, Authority, STORAGE_SCOPE};

fn storage() -> TokenRequest {
    TokenRequest::new(&[STORAGE_SCOPE])
}

fn claims(token: &entraflow_credential::AccessToken) -> entraflow_core::AccessTokenClaims {
    entraflow_credential::claims::decode_unverified(token.token.expose()).unwrap()
}

fn rsa_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap()
}

/// An external OIDC issuer (a Kubernetes cluster) whose keys the authority trusts.
struct Issuer {
    url: String,
    key: jsonwebtoken::EncodingKey,
}

impl Issuer {
    fn trusted_by(authority: &Authority) -> Self {
        let pem = rsa_key().serialize_pem();
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let mut jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256)
                .unwrap();
        jwk.common.key_id = Some("cluster-key".into());
        let jwks = serde_json::json!({ "keys": [jwk] });
        let jwks_file = authority.data_dir().join("cluster-jwks.json");
        std::fs::write(&jwks_file, jwks.to_string()).unwrap();
        let url = "https://oidc.cluster.test/issuer".to_owned();
        authority
            .store()
            .add_trusted_issuer(&url, &jwks_file)
            .unwrap();
        Self { url, key }
    }

    /// A projected service-account token, as the kubelet writes it.
    fn service_account_token(&self, subject: &str) -> String {
        let now = common::unix_now_f64() as i64;
        let mut jti = [0u8; 8];
        aws_lc_rs::rand::fill(&mut jti).unwrap();
        let claims = serde_json::json!({
            "iss": self.url, "sub": subject, "aud": [FEDERATION_AUDIENCE],
            "iat": now, "nbf": now, "exp": now + 3600, "jti": hex::encode(jti),
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("cluster-key".into());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

/// Regression: azure-sdk-for-rust #1739, azure-sdk-for-python #44488 (file read once,
/// AADSTS700024 hours later).
#[tokio::test]
async fn a_workload_identity_token_file_that_changes_on_disk_is_picked_up() {
    let authority = Authority::start().await;
    authority.set_token_lifetime(4);
    let app = authority.app("aks-job");
    let issuer = Issuer::trusted_by(&authority);
    let subject = "system:serviceaccount:training:loader";
    authority
        .store()
        .create_federated_credential(
            &app.app_id,
            "k8s",
            &issuer.url,
            subject,
            &[FEDERATION_AUDIENCE.to_owned()],
        )
        .unwrap();
    let token_file = authority.data_dir().join("azure-identity-token");
    std::fs::write(
        &token_file,
        issuer.service_account_token("system:serviceaccount:training:other"),
    )
    .unwrap();
    let credential = WorkloadIdentityCredential::new(
        authority.tenant(),
        &app.app_id,
        &token_file,
        authority.credential_options(fast_policy()),
    )
    .unwrap();

    // The file holds the wrong service account's token: refused.
    let err = credential.get_token(&storage()).await.unwrap_err();
    assert!(
        matches!(
            err,
            CredentialError::AuthenticationRejected {
                code: Some(Aadsts::NoFederatedMatch),
                ..
            }
        ),
        "{err}"
    );

    // The kubelet writes the right token: the same credential reads it this time.
    std::fs::write(&token_file, issuer.service_account_token(subject)).unwrap();
    let first = credential.get_token(&storage()).await.unwrap();
    assert_eq!(claims(&first).client_app_id(), Some(app.app_id.as_str()));

    // Rotation: every later exchange reads the file again.
    std::fs::write(&token_file, issuer.service_account_token(subject)).unwrap();
    common::sleep_until_unix(first.expires_on as f64 + 0.1).await;
    let second = credential.get_token(&storage()).await.unwrap();
    assert_ne!(second.token, first.token);

    // A file that disappears is reported as misconfiguration naming the variable.
    std::fs::remove_file(&token_file).unwrap();
    common::sleep_until_unix(second.expires_on as f64 + 0.1).await;
    let err = credential.get_token(&storage()).await.unwrap_err();
    assert!(
        matches!(&err, CredentialError::Misconfigured { variable, .. } if variable == "AZURE_FEDERATED_TOKEN_FILE"),
        "{err}"
    );
}

#[tokio::test]
async fn a_certificate_signs_assertions_the_authority_accepts() {
    let authority = Authority::start().await;
    let app = authority.app("cert-app");
    let key = rsa_key();
    let cert = rcgen::CertificateParams::new(vec!["cert-app".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_file = authority.data_dir().join("cert.pem");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    authority
        .store()
        .upload_certificate(&app.app_id, &cert_file)
        .unwrap();
    let bundle = authority.data_dir().join("bundle.pem");
    std::fs::write(&bundle, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();

    for options in [
        CertificateOptions::default(),
        CertificateOptions {
            send_sha1_thumbprint: true,
            send_certificate_chain: true,
        },
    ] {
        let credential = ClientCertificateCredential::from_file(
            authority.tenant(),
            &app.app_id,
            &bundle,
            options,
            authority.credential_options(fast_policy()),
        )
        .unwrap();
        let token = credential.get_token(&storage()).await.unwrap();
        assert_eq!(
            claims(&token).appidacr.as_deref(),
            Some("2"),
            "certificate authentication"
        );
    }

    // A certificate the app does not know is refused with the signature code.
    let other_key = rsa_key();
    let other = rcgen::CertificateParams::new(vec!["x".into()])
        .unwrap()
        .self_signed(&other_key)
        .unwrap();
    let credential = ClientCertificateCredential::from_pem(
        authority.tenant(),
        &app.app_id,
        &Secret::new(format!("{}{}", other.pem(), other_key.serialize_pem())),
        CertificateOptions::default(),
        authority.credential_options(fast_policy()),
    )
    .unwrap();
    let err = credential.get_token(&storage()).await.unwrap_err();
    assert!(
        matches!(
            err,
            CredentialError::AuthenticationRejected { code: Some(_), .. }
        ),
        "{err}"
    );
}

fn imds(host: &str, id: ManagedIdentityId) -> ManagedIdentityOptions {
    ManagedIdentityOptions {
        id,
        imds_host: Some(host.to_owned()),
        retry: entraflow_core::retry::RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            ..entraflow_core::retry::RetryPolicy::MANAGED_IDENTITY
        },
        refresh: fast_policy(),
        ..ManagedIdentityOptions::default()
    }
}

#[tokio::test]
async fn managed_identity_over_imds_and_app_service() {
    let authority = Authority::start().await;
    let assigned = authority
        .store()
        .create_managed_identity(Some("trainer-mi"), "local-vm", false)
        .unwrap();
    let system = authority
        .store()
        .create_managed_identity(None, "local-vm", true)
        .unwrap();

    let by_client = ManagedIdentityCredential::new(imds(
        authority.imds_endpoint(),
        ManagedIdentityId::ClientId(assigned.client_id.clone()),
    ))
    .unwrap();
    let token = by_client.get_token(&storage()).await.unwrap();
    assert_eq!(claims(&token).oid, assigned.principal_id);

    let by_resource = ManagedIdentityCredential::new(imds(
        authority.imds_endpoint(),
        ManagedIdentityId::ResourceId(assigned.id.clone()),
    ))
    .unwrap();
    assert_eq!(
        claims(&by_resource.get_token(&storage()).await.unwrap()).oid,
        assigned.principal_id
    );

    // An identity that is not on this host: IMDS 400, no retries, a typed error.
    let stranger = ManagedIdentityCredential::new(imds(
        authority.imds_endpoint(),
        ManagedIdentityId::ClientId("00000000-0000-0000-0000-000000000001".into()),
    ))
    .unwrap();
    let err = stranger.get_token(&storage()).await.unwrap_err();
    assert!(
        matches!(err, CredentialError::IdentityNotAssigned { .. }),
        "{err}"
    );

    // App Service form, with the header from the host's identity.env.
    let env =
        std::fs::read_to_string(authority.data_dir().join("hosts/local-vm/identity.env")).unwrap();
    let value = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap()
            .to_owned()
    };
    let app_service = ManagedIdentityCredential::new(ManagedIdentityOptions {
        app_service: Some((
            value("IDENTITY_ENDPOINT"),
            Secret::new(value("IDENTITY_HEADER")),
        )),
        ..imds("http://unused.invalid", ManagedIdentityId::SystemAssigned)
    })
    .unwrap();
    assert_eq!(
        claims(&app_service.get_token(&storage()).await.unwrap()).oid,
        system.principal_id
    );
}

/// What the scripted endpoint does for its n-th request: status, `Retry-After`, delay.
type Script = Arc<dyn Fn(usize) -> (u16, Option<&'static str>, Duration) + Send + Sync>;

/// An identity endpoint on loopback that answers from a script, counting requests.
async fn scripted_imds(script: Script) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let (status, retry_after, delay) = script(n);
        async move {
            assert_eq!(headers.get("metadata").map(|v| v.to_str().unwrap()), Some("true"));
            tokio::time::sleep(delay).await;
            let now = common::unix_now_f64() as i64;
            let body = if status == 200 {
                serde_json::json!({"access_token": "a.b.c", "expires_in": "3600", "expires_on": (now + 3600).to_string(),
                    "not_before": now.to_string(), "resource": "https://storage.azure.com", "token_type": "Bearer"}).to_string()
            } else {
                "{\"error\":\"busy\"}".to_owned()
            };
            let mut response = axum::response::Response::new(axum::body::Body::from(body));
            *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
            if let Some(r) = retry_after {
                response.headers_mut().insert("retry-after", r.parse().unwrap());
            }
            response
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

/// IMDS throttles under load from many pods (azure-sdk-for-python #36637).
#[tokio::test]
async fn imds_429_and_5xx_are_retried_honouring_retry_after() {
    let (url, hits) = scripted_imds(Arc::new(|n| match n {
        0 => (429, Some("1"), Duration::ZERO),
        1 => (503, None, Duration::ZERO),
        2 => (410, None, Duration::ZERO),
        _ => (200, None, Duration::ZERO),
    }))
    .await;
    let credential =
        ManagedIdentityCredential::new(imds(&url, ManagedIdentityId::SystemAssigned)).unwrap();
    let started = std::time::Instant::now();
    let got = credential.get_token(&storage()).await;
    let mut suite = Suite::new(Doc::Reliability, "Throttling (managed identity)");
    suite.check(
        "429 with Retry-After: 1, then 503, then 410, then 200",
        "a token after 4 requests, waiting at least 1 s",
        &format!(
            "{} after {} requests and {:.1} s",
            if got.is_ok() { "a token" } else { "an error" },
            hits.load(Ordering::SeqCst),
            started.elapsed().as_secs_f64()
        ),
        got.is_ok()
            && hits.load(Ordering::SeqCst) == 4
            && started.elapsed() >= Duration::from_secs(1),
    );

    let (url, hits) = scripted_imds(Arc::new(|_| (429, Some("0"), Duration::ZERO))).await;
    let credential =
        ManagedIdentityCredential::new(imds(&url, ManagedIdentityId::SystemAssigned)).unwrap();
    let err = credential.get_token(&storage()).await.unwrap_err();
    suite.check(
        "429 on every request",
        "Throttled after the first try and 4 retries",
        &format!("{err} after {} requests", hits.load(Ordering::SeqCst)),
        matches!(err, CredentialError::Throttled { .. }) && hits.load(Ordering::SeqCst) == 5,
    );
    suite.finish();
}

/// Regression: azure-sdk-for-python #31637 (one slow probe disabled managed identity
/// for the process) and azure-sdk-for-net #62761 (~25 s to give up where there is no IMDS).
#[tokio::test]
async fn a_missing_imds_fails_fast_but_a_slow_one_is_waited_for_and_never_written_off() {
    // Nothing listens: the chain's probe reports "unavailable" at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let probing = |url: &str| ManagedIdentityOptions {
        probe_connect_timeout: Some(Duration::from_millis(200)),
        ..imds(url, ManagedIdentityId::SystemAssigned)
    };
    let credential = ManagedIdentityCredential::new(probing(&closed_url)).unwrap();
    let err = credential.get_token(&storage()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");

    // An IMDS that takes longer than the probe's connect timeout to *answer* is used.
    let (slow, _) = scripted_imds(Arc::new(|_| (200, None, Duration::from_millis(800)))).await;
    let credential = ManagedIdentityCredential::new(probing(&slow)).unwrap();
    credential.get_token(&storage()).await.unwrap();

    // A failed probe is not remembered: once IMDS is up, the same credential works.
    let port = closed_url.rsplit(':').next().unwrap().to_owned();
    let credential = ManagedIdentityCredential::new(probing(&closed_url)).unwrap();
    assert!(
        credential
            .get_token(&storage())
            .await
            .unwrap_err()
            .is_unavailable()
    );
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let app = axum::Router::new().fallback(|| async {
        let now = common::unix_now_f64() as i64;
        axum::Json(
            serde_json::json!({"access_token": "a.b.c", "expires_in": "3600",
            "expires_on": (now + 3600).to_string(), "token_type": "Bearer"}),
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    credential.get_token(&storage()).await.unwrap();
}

#[tokio::test]
async fn device_code_sign_in_is_cached_owner_only_and_reused_by_the_developer_credential() {
    let authority = Authority::start().await;
    let app = authority.public_app("cli");
    authority
        .store()
        .create_user("ada@contoso.test", "Ada", Some("correct-horse-battery"))
        .unwrap();
    let login_dir = tempfile::tempdir().unwrap();
    let cache = LoginCache::in_dir(login_dir.path());
    let server = authority.handle().authority.clone();
    let prompted = Arc::new(AtomicUsize::new(0));
    let seen = prompted.clone();
    let credential = DeviceCodeCredential::new(
        authority.tenant(),
        &app.app_id,
        authority.credential_options(fast_policy()),
        Some(cache.clone()),
        move |info| {
            assert!(!info.user_code.is_empty() && info.verification_uri.starts_with("https://"));
            seen.fetch_add(1, Ordering::SeqCst);
            // The person approves in a browser; here, through the authority's admin API.
            server
                .store()
                .approve_device_code(&info.user_code, "ada@contoso.test", false)
                .unwrap();
        },
    );
    let token = credential.get_token(&storage()).await.unwrap();
    assert_eq!(prompted.load(Ordering::SeqCst), 1);
    assert!(claims(&token).upn.is_some() || claims(&token).preferred_username.is_some());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cache.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "only the user can read the sign-in cache");
    }
    let stored = std::fs::read_to_string(cache.path()).unwrap();
    assert!(
        !stored.contains(token.token.expose()),
        "the access token is not stored"
    );

    // A later process: the developer credential refreshes silently, with no prompt.
    let developer =
        DeveloperLoginCredential::new(cache, authority.credential_options(fast_policy())).unwrap();
    assert_eq!(developer.username().as_deref(), Some("ada@contoso.test"));
    let again = developer.get_token(&storage()).await.unwrap();
    assert_eq!(claims(&again).oid, claims(&token).oid);
    assert_eq!(prompted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_chain_skips_what_does_not_apply_and_stops_at_a_hard_failure() {
    let authority = Authority::start().await;
    let app = authority.app("chained");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let no_imds = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mi = || {
        Box::new(
            ManagedIdentityCredential::new(ManagedIdentityOptions {
                probe_connect_timeout: Some(Duration::from_millis(200)),
                ..imds(&no_imds, ManagedIdentityId::SystemAssigned)
            })
            .unwrap(),
        ) as Box<dyn TokenCredential>
    };

    let chain = ChainedCredential::new(vec![
        mi(),
        Box::new(authority.secret_credential(&app, authority.credential_options(fast_policy()))),
    ]);
    chain.get_token(&storage()).await.unwrap();
    assert_eq!(chain.chosen(), Some("ClientSecretCredential"));

    let wrong = App {
        secret: "wrong".into(),
        ..app.clone()
    };
    let chain = ChainedCredential::new(vec![
        mi(),
        Box::new(authority.secret_credential(&wrong, authority.credential_options(fast_policy()))),
    ]);
    let err = chain.get_token(&storage()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("ManagedIdentityCredential: skipped"),
        "{text}"
    );
    assert!(text.contains("ClientSecretCredential: failed"), "{text}");
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(matches!(
        err.decisive(),
        CredentialError::AuthenticationRejected { .. }
    ));
    assert_eq!(chain.chosen(), None);
}

#[test]
fn the_blocking_facade_serves_plain_threads() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let authority = rt.block_on(Authority::start());
    let app = authority.app("threads");
    let credential = BlockingCredential::new(
        authority.secret_credential(&app, authority.credential_options(fast_policy())),
    );
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let credential = credential.clone();
            std::thread::spawn(move || credential.get_token(&storage()).unwrap())
        })
        .collect();
    let tokens: std::collections::HashSet<String> = threads
        .into_iter()
        .map(|t| t.join().unwrap().token.expose().to_owned())
        .collect();
    assert_eq!(tokens.len(), 1, "one token shared by all threads");
    drop(authority);
    drop(rt);
}
