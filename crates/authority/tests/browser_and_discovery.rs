//! The device-login page a person uses, and federated issuers found by OIDC discovery over HTTPS.

mod common;

use std::sync::Arc;

use common::{b64, code, jti, now, rsa_cert, sign_jwt};
use entraflow_core::{DEVICE_CODE_GRANT, JWT_BEARER_ASSERTION_TYPE};
use entraflow_testkit::Authority;
use serde_json::json;

#[tokio::test]
async fn device_login_page_approves_with_the_users_password() {
    let s = Authority::start().await;
    let app = s.public_app("nb");
    s.store()
        .create_user(
            "carol@entraflow.local",
            "Carol",
            Some("correct horse battery"),
        )
        .unwrap();
    let t = s.tenant().to_owned();
    let (_, dc) = s
        .post_form(
            &format!("/{t}/oauth2/v2.0/devicecode"),
            &[
                ("client_id", &app.app_id),
                ("scope", "https://storage.azure.com/.default"),
            ],
        )
        .await;
    let user_code = dc["user_code"].as_str().unwrap();
    let page = s.http.get(s.url("/devicelogin")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form"));

    let submit = |password: &'static str| {
        let s = &s;
        let code = user_code.to_owned();
        async move {
            s.http
                .post(s.url("/devicelogin"))
                .form(&[
                    ("code", code.as_str()),
                    ("upn", "carol@entraflow.local"),
                    ("password", password),
                    ("action", "approve"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let wrong = submit("wrong password!").await;
    assert_eq!(wrong.status(), 400);
    assert!(
        !wrong.text().await.unwrap().contains("wrong password!"),
        "the page never echoes a password"
    );
    let ok = submit("correct horse battery").await;
    assert_eq!(ok.status(), 200);
    let (st, body) = s
        .token_v2(&[
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", &app.app_id),
            ("device_code", dc["device_code"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        s.verify(body["access_token"].as_str().unwrap()).await["upn"],
        "carol@entraflow.local"
    );
}

#[tokio::test]
async fn federated_issuer_keys_by_oidc_discovery() {
    let s = Authority::start().await;
    // A stand-in cluster issuer served over HTTPS by a certificate of the same local CA.
    let idp = rsa_cert(365);
    let key = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&idp.pkcs8).unwrap();
    let pubc = aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(
        aws_lc_rs::signature::KeyPair::public_key(&key),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let jwks = Arc::new(
        json!({"keys": [{"kty": "RSA", "kid": "c1", "use": "sig", "n": b64(&pubc.n), "e": b64(&pubc.e)}]}),
    );
    let config =
        Arc::new(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/openid/v1/jwks")}));
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json((*config).clone()) }),
        )
        .route(
            "/openid/v1/jwks",
            axum::routing::get(move || async move { axum::Json((*jwks).clone()) }),
        );
    let ca = entraflow_tls::LocalCa::load_or_create(s.data_dir()).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(entraflow_tls::serve_https(
        listener,
        ca.server_config(&[]).unwrap(),
        app,
        async {
            let _ = stop_rx.await;
        },
    ));

    let c = s.app("wi");
    let subject = "system:serviceaccount:ml:trainer";
    s.store()
        .create_federated_credential(&c.app_id, "cluster", &issuer, subject, &[])
        .unwrap();
    let t = now();
    let assertion = sign_jwt(
        &json!({"alg": "RS256", "kid": "c1"}),
        &json!({"iss": issuer, "sub": subject, "aud": ["api://AzureADTokenExchange"], "iat": t, "nbf": t, "exp": t + 3600, "jti": jti()}),
        &idp.pkcs8,
    );
    let form = |a: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", c.app_id.clone()),
            (
                "client_assertion_type",
                JWT_BEARER_ASSERTION_TYPE.to_owned(),
            ),
            ("client_assertion", a.to_owned()),
            ("scope", "https://storage.azure.com/.default".to_owned()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            s.token_v2(&f).await
        }
    };
    let (st, body) = send(form(&assertion)).await;
    assert_eq!(st, 200, "{body}");
    // An unknown kid does not verify.
    let other = sign_jwt(
        &json!({"alg": "RS256", "kid": "nope"}),
        &json!({"iss": issuer, "sub": subject, "aud": "api://AzureADTokenExchange", "exp": t + 600, "jti": jti()}),
        &idp.pkcs8,
    );
    let (_, body) = send(form(&other)).await;
    assert_eq!(code(&body), 700027);
    let _ = stop_tx.send(());
}
