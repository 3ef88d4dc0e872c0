//! Certificate and federated (workload identity) client assertions over HTTPS.

mod common;

use common::{b64, code, jti, now, rsa_cert, sign_jwt};
use entraflow_core::JWT_BEARER_ASSERTION_TYPE as JWT_BEARER;
use entraflow_testkit::Authority;
use serde_json::json;

const STORAGE: &str = "https://storage.azure.com/.default";

fn sha(alg: &'static aws_lc_rs::digest::Algorithm, der: &[u8]) -> String {
    b64(aws_lc_rs::digest::digest(alg, der).as_ref())
}

#[tokio::test]
async fn certificate_assertions_rs256_ps256_and_every_refusal() {
    let s = Authority::start().await;
    let c = s.app("cert-app");
    let cert = rsa_cert(365);
    let pem_path = s.data_dir().join("client.pem");
    std::fs::write(&pem_path, &cert.pem).unwrap();
    let uploaded = s.store().upload_certificate(&c.app_id, &pem_path).unwrap();
    assert_eq!(uploaded.thumbprint.len(), 40);
    let aud = s.url(&format!("/{}/oauth2/v2.0/token", s.tenant()));
    let x5t = sha(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert.der);
    let x5t256 = sha(&aws_lc_rs::digest::SHA256, &cert.der);
    let claims = |aud: &str, nbf: i64, exp: i64, id: &str| json!({"aud": aud, "iss": c.app_id, "sub": c.app_id, "jti": id, "nbf": nbf, "iat": nbf, "exp": exp});
    let send = |assertion: String| {
        let s = &s;
        let app = c.app_id.clone();
        async move {
            s.token_v2(&[
                ("grant_type", "client_credentials"),
                ("client_id", &app),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &assertion),
                ("scope", STORAGE),
            ])
            .await
        }
    };
    let t = now();

    // RS256 with x5t (SHA-1), as the Rust SDK sends.
    let a = sign_jwt(
        &json!({"alg": "RS256", "typ": "JWT", "x5t": x5t}),
        &claims(&aud, t, t + 300, &jti()),
        &cert.pkcs8,
    );
    let (st, body) = send(a.clone()).await;
    assert_eq!(st, 200, "{body}");
    let tok = s.verify(body["access_token"].as_str().unwrap()).await;
    assert_eq!(tok["appidacr"], "2");
    // Replay of the same assertion.
    let (st, body) = send(a).await;
    assert_eq!((st, code(&body)), (401, 9002313));

    // PS256 with x5t#S256, as azure-identity/MSAL send; v1 endpoint URL as aud is accepted.
    let v1_aud = s.url(&format!("/{}/oauth2/token", s.tenant()));
    let a = sign_jwt(
        &json!({"alg": "PS256", "typ": "JWT", "x5t#S256": x5t256}),
        &claims(&v1_aud, t, t + 300, &jti()),
        &cert.pkcs8,
    );
    let (st, body) = send(a).await;
    assert_eq!(st, 200, "{body}");

    let other = rsa_cert(365);
    let cases = vec![
        (
            "wrong audience",
            sign_jwt(
                &json!({"alg": "RS256", "x5t": x5t}),
                &claims("https://elsewhere/token", t, t + 300, &jti()),
                &cert.pkcs8,
            ),
            700023,
        ),
        (
            "lives longer than 10 minutes",
            sign_jwt(
                &json!({"alg": "RS256", "x5t": x5t}),
                &claims(&aud, t, t + 3600, &jti()),
                &cert.pkcs8,
            ),
            700024,
        ),
        (
            "expired",
            sign_jwt(
                &json!({"alg": "RS256", "x5t": x5t}),
                &claims(&aud, t - 1500, t - 1000, &jti()),
                &cert.pkcs8,
            ),
            700024,
        ),
        (
            "unregistered certificate",
            sign_jwt(
                &json!({"alg": "RS256", "x5t": sha(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &other.der)}),
                &claims(&aud, t, t + 300, &jti()),
                &other.pkcs8,
            ),
            700027,
        ),
        (
            "signed by another key",
            sign_jwt(
                &json!({"alg": "RS256", "x5t": x5t}),
                &claims(&aud, t, t + 300, &jti()),
                &other.pkcs8,
            ),
            700027,
        ),
        (
            "no thumbprint",
            sign_jwt(
                &json!({"alg": "RS256"}),
                &claims(&aud, t, t + 300, &jti()),
                &cert.pkcs8,
            ),
            700027,
        ),
    ];
    for (name, assertion, want) in cases {
        let (st, body) = send(assertion).await;
        assert_eq!((st, code(&body)), (401, want), "{name}: {body}");
    }
    let (st, body) = send("not.a.jwt".into()).await;
    assert_eq!((st, code(&body)), (400, 900023));
}

#[tokio::test]
async fn federated_assertions_match_exactly_and_are_checked() {
    let s = Authority::start().await;
    let c = s.app("workload");
    let issuer = "https://oidc.cluster.local/issuer";
    let subject = "system:serviceaccount:train:job";
    s.store()
        .create_federated_credential(&c.app_id, "k8s", issuer, subject, &[])
        .unwrap();
    // Offline JWKS for the issuer.
    let idp = rsa_cert(365);
    let key = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&idp.pkcs8).unwrap();
    let pubc = aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(
        aws_lc_rs::signature::KeyPair::public_key(&key),
    );
    let jwks = json!({"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": b64(&pubc.n), "e": b64(&pubc.e)}]});
    let jwks_path = s.data_dir().join("issuer-jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    s.store().add_trusted_issuer(issuer, &jwks_path).unwrap();

    let t = now();
    let token = |iss: &str, sub: &str, aud: &str, exp: i64| {
        sign_jwt(
            &json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}),
            &json!({"iss": iss, "sub": sub, "aud": [aud], "iat": t - 10, "nbf": t - 10, "exp": exp, "jti": jti()}),
            &idp.pkcs8,
        )
    };
    let send = |assertion: String| {
        let s = &s;
        let app = c.app_id.clone();
        async move {
            s.token_v2(&[
                ("grant_type", "client_credentials"),
                ("client_id", &app),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &assertion),
                ("scope", STORAGE),
            ])
            .await
        }
    };
    let good = token(issuer, subject, "api://AzureADTokenExchange", t + 3600);
    let (st, body) = send(good.clone()).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        s.verify(body["access_token"].as_str().unwrap()).await["appidacr"],
        "2"
    );
    // The same service-account token exchanges again, as with Entra ID.
    let (st, body) = send(good).await;
    assert_eq!(
        st, 200,
        "a federated token is reusable until it expires: {body}"
    );

    let entra = s
        .token_v2(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.app_id),
            ("client_secret", &c.secret),
            ("scope", STORAGE),
        ])
        .await
        .1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let unknown_issuer = "https://127.0.0.1:9/unreachable";
    s.store()
        .create_federated_credential(&c.app_id, "gone", unknown_issuer, subject, &[])
        .unwrap();
    let cases = vec![
        (
            "trailing slash",
            token(
                &format!("{issuer}/"),
                subject,
                "api://AzureADTokenExchange",
                t + 3600,
            ),
            70021,
        ),
        (
            "other subject",
            token(
                issuer,
                "system:serviceaccount:train:other",
                "api://AzureADTokenExchange",
                t + 3600,
            ),
            70021,
        ),
        (
            "wrong audience",
            token(issuer, subject, "api://somewhere", t + 3600),
            70021,
        ),
        (
            "expired",
            token(issuer, subject, "api://AzureADTokenExchange", t - 600),
            700024,
        ),
        ("Entra token", entra, 700222),
        (
            "issuer unreachable",
            token(
                unknown_issuer,
                subject,
                "api://AzureADTokenExchange",
                t + 3600,
            ),
            90061,
        ),
    ];
    for (name, assertion, want) in cases {
        let (st, body) = send(assertion).await;
        assert_eq!(code(&body), want, "{name} ({st}): {body}");
    }
    // Forged signature.
    let forger = rsa_cert(365);
    let forged = sign_jwt(
        &json!({"alg": "RS256", "kid": "k1"}),
        &json!({"iss": issuer, "sub": subject, "aud": "api://AzureADTokenExchange", "exp": t + 600, "jti": jti()}),
        &forger.pkcs8,
    );
    let (_, body) = send(forged).await;
    assert_eq!(code(&body), 700027);
}
