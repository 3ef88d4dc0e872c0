//! The authority abuse suite: guessing (passwords, secrets, spraying from one
//! source), replayed and cross-application client assertions, and races on
//! single-use grants (device codes and refresh tokens redeemed by many callers at
//! once). Each case is named with the answer Entra gives; results go to SECURITY.md.

mod common;

use std::time::Duration;

use common::{aadsts, b64, device_code, device_login, jti, now, rsa_cert, sign_jwt};
use entraflow_authority::LockoutPolicy;
use entraflow_core::{DEVICE_CODE_GRANT, JWT_BEARER_ASSERTION_TYPE as JWT_BEARER};
use entraflow_testkit::report::{Doc, Suite};
use entraflow_testkit::{Authority, STORAGE_SCOPE};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const RACERS: usize = 8;
const OFFLINE: &str = "https://storage.azure.com/.default offline_access";

/// The device-login page's text after a submission.
async fn page_of(s: &Authority, user_code: &str, upn: &str, password: &str) -> String {
    device_login(s, user_code, upn, password).await.1
}

/// `(status, AADSTS code)` of each of `RACERS` concurrent token requests.
async fn race(s: &Authority, form: Vec<(&'static str, String)>) -> Vec<(u16, u64)> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..RACERS {
        let (http, url, form) = (
            s.http.clone(),
            s.url(&format!("/{}/oauth2/v2.0/token", s.tenant())),
            form.clone(),
        );
        tasks.spawn(async move {
            let resp = http.post(url).form(&form).send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, aadsts(&body))
        });
    }
    tasks.join_all().await
}

fn summary(results: &[(u16, u64)]) -> String {
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let mut codes: Vec<u64> = results
        .iter()
        .filter(|(s, _)| *s != 200)
        .map(|(_, c)| *c)
        .collect();
    codes.sort();
    codes.dedup();
    format!("{ok} of {} redeemed; others {codes:?}", results.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_abuse_is_refused() {
    let s = Authority::start_with(|c| {
        c.lockout = LockoutPolicy {
            threshold: 5,
            source_threshold: 12,
            first_lockout: Duration::from_secs(60),
        }
    })
    .await;
    let mut suite = Suite::new(Doc::Security, "Authority abuse");
    let public = s.public_app("notebook");
    for upn in ["erin@entraflow.local", "frank@entraflow.local"] {
        s.store().create_user(upn, "User", Some(PASSWORD)).unwrap();
    }

    // Password guessing on the device-login page.
    let (_, user_code) = device_code(&s, &public.app_id, OFFLINE).await;
    let mut last = String::new();
    for i in 0..5 {
        last = page_of(
            &s,
            &user_code,
            "erin@entraflow.local",
            &format!("guess {i}"),
        )
        .await;
    }
    suite.check(
        "device login: the 5th wrong password (the threshold) locks the account",
        "AADSTS50053 locked",
        if last.contains("is locked") {
            "locked"
        } else {
            "not locked"
        },
        last.contains("is locked"),
    );
    let page = page_of(&s, &user_code, "erin@entraflow.local", PASSWORD).await;
    suite.check(
        "device login: the right password while locked",
        "refused (locked)",
        if page.contains("is locked") {
            "refused (locked)"
        } else {
            "accepted"
        },
        page.contains("is locked"),
    );
    let page = page_of(&s, &user_code, "frank@entraflow.local", PASSWORD).await;
    suite.check(
        "device login: another account from the same source",
        "signed in",
        if page.contains("is signed in") {
            "signed in"
        } else {
            "refused"
        },
        page.contains("is signed in"),
    );

    // Spraying one password over many (unknown) accounts from one source.
    let (_, user_code) = device_code(&s, &public.app_id, OFFLINE).await;
    let mut locked_at = None;
    for i in 0..12 {
        let page = page_of(
            &s,
            &user_code,
            &format!("user{i}@entraflow.local"),
            "Winter2026!",
        )
        .await;
        if page.contains("came from IP address") {
            locked_at = Some(i + 1);
            break;
        }
    }
    suite.check(
        "spraying: one password over many accounts from one source",
        "source locked by the 12th attempt (with the 5 earlier wrong passwords, sooner)",
        &locked_at.map_or("never locked".into(), |n| {
            format!("source locked at attempt {n}")
        }),
        locked_at.is_some(),
    );

    // Client-secret guessing.
    let app = s.app("trainer");
    let mut last = (0, 0);
    for i in 0..5 {
        let (status, body) = s
            .token_v2(&[
                ("grant_type", "client_credentials"),
                ("client_id", &app.app_id),
                ("client_secret", &format!("guess-{i}-{}", "x".repeat(32))),
                ("scope", STORAGE_SCOPE),
            ])
            .await;
        last = (status, aadsts(&body));
    }
    suite.check(
        "client secret: the 5th wrong secret locks the application",
        "400 AADSTS50053",
        &format!("{} AADSTS{}", last.0, last.1),
        last == (400, 50053),
    );

    // Client assertions: replay, another application's certificate, wrong audience.
    let cert_app = s.app("cert-app");
    let cert = rsa_cert(365);
    let pem = s.data_dir().join("cert-app.pem");
    std::fs::write(&pem, &cert.pem).unwrap();
    s.store()
        .upload_certificate(&cert_app.app_id, &pem)
        .unwrap();
    let x5t = b64(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        &cert.der,
    )
    .as_ref());
    let aud = s.url(&format!("/{}/oauth2/v2.0/token", s.tenant()));
    let assertion = |client: &str, aud: &str, exp: i64| {
        let start = exp.min(now()) - 300;
        sign_jwt(
            &json!({"alg": "RS256", "typ": "JWT", "x5t": x5t}),
            &json!({"aud": aud, "iss": client, "sub": client, "jti": jti(), "nbf": start, "iat": start, "exp": exp}),
            &cert.pkcs8,
        )
    };
    let present = |client: String, a: String| {
        let s = &s;
        async move {
            let (status, body) = s
                .token_v2(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &client),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &a),
                    ("scope", STORAGE_SCOPE),
                ])
                .await;
            (status, aadsts(&body))
        }
    };
    let once = assertion(&cert_app.app_id, &aud, now() + 300);
    let first = present(cert_app.app_id.clone(), once.clone()).await;
    suite.check(
        "assertion: a fresh one",
        "200",
        &first.0.to_string(),
        first.0 == 200,
    );
    let again = present(cert_app.app_id.clone(), once).await;
    suite.check(
        "assertion: the same one replayed",
        "401 AADSTS9002313",
        &format!("{} AADSTS{}", again.0, again.1),
        again == (401, 9002313),
    );
    let other_app = s.app("other-app");
    let cross = present(
        other_app.app_id.clone(),
        assertion(&other_app.app_id, &aud, now() + 300),
    )
    .await;
    suite.check(
        "assertion: signed with another application's certificate",
        "401 AADSTS700027",
        &format!("{} AADSTS{}", cross.0, cross.1),
        cross == (401, 700027),
    );
    let borrowed = present(
        other_app.app_id.clone(),
        assertion(&cert_app.app_id, &aud, now() + 300),
    )
    .await;
    suite.check(
        "assertion: another application's assertion under my client id",
        "401 (refused)",
        &format!("{} AADSTS{}", borrowed.0, borrowed.1),
        borrowed.0 == 401,
    );
    let elsewhere = present(
        cert_app.app_id.clone(),
        assertion(
            &cert_app.app_id,
            "https://login.microsoftonline.com/other/oauth2/v2.0/token",
            now() + 300,
        ),
    )
    .await;
    suite.check(
        "assertion: made for another token endpoint",
        "401 AADSTS700023",
        &format!("{} AADSTS{}", elsewhere.0, elsewhere.1),
        elsewhere == (401, 700023),
    );
    // Beyond the 5 minutes of clock skew Entra allows.
    let expired = present(
        cert_app.app_id.clone(),
        assertion(&cert_app.app_id, &aud, now() - 600),
    )
    .await;
    suite.check(
        "assertion: expired ten minutes ago",
        "401 AADSTS700024",
        &format!("{} AADSTS{}", expired.0, expired.1),
        expired == (401, 700024),
    );
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(serde_json::to_vec(&json!({"aud": aud, "iss": cert_app.app_id, "sub": cert_app.app_id, "jti": jti(), "exp": now() + 300})).unwrap().as_slice())
    );
    let unsigned = present(cert_app.app_id.clone(), none).await;
    suite.check(
        "assertion: alg none",
        "401 (refused)",
        &format!("{} AADSTS{}", unsigned.0, unsigned.1),
        unsigned.0 == 401,
    );

    // Single-use grants redeemed by many callers at once.
    let (device, user_code) = device_code(&s, &public.app_id, OFFLINE).await;
    s.store()
        .approve_device_code(&user_code, "frank@entraflow.local", false)
        .unwrap();
    let other_client = s.public_app("other-notebook");
    let (status, body) = s
        .token_v2(&[
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", &other_client.app_id),
            ("device_code", &device),
        ])
        .await;
    suite.check(
        "device code: polled by another application",
        "400 (refused)",
        &format!("{status} AADSTS{}", aadsts(&body)),
        status == 400,
    );
    let results = race(
        &s,
        vec![
            ("grant_type", DEVICE_CODE_GRANT.into()),
            ("client_id", public.app_id.clone()),
            ("device_code", device),
        ],
    )
    .await;
    let redeemed: Vec<&(u16, u64)> = results.iter().filter(|(s, _)| *s == 200).collect();
    suite.check(
        &format!("device code: {RACERS} concurrent polls after approval"),
        "exactly 1 redeemed",
        &summary(&results),
        redeemed.len() == 1,
    );

    let (device, user_code) = device_code(&s, &public.app_id, OFFLINE).await;
    s.store()
        .approve_device_code(&user_code, "frank@entraflow.local", false)
        .unwrap();
    let (status, body) = s
        .token_v2(&[
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", &public.app_id),
            ("device_code", &device),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = s
        .token_v2(&[
            ("grant_type", "refresh_token"),
            ("client_id", &other_client.app_id),
            ("refresh_token", &refresh),
        ])
        .await;
    suite.check(
        "refresh token: redeemed by another application",
        "400 AADSTS700082",
        &format!("{status} AADSTS{}", aadsts(&body)),
        (status, aadsts(&body)) == (400, 700082),
    );
    // The refused attempt spent it (single use), so race a fresh one.
    let (device, user_code) = device_code(&s, &public.app_id, OFFLINE).await;
    s.store()
        .approve_device_code(&user_code, "frank@entraflow.local", false)
        .unwrap();
    let (_, body) = s
        .token_v2(&[
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", &public.app_id),
            ("device_code", &device),
        ])
        .await;
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let results = race(
        &s,
        vec![
            ("grant_type", "refresh_token".into()),
            ("client_id", public.app_id.clone()),
            ("refresh_token", refresh),
        ],
    )
    .await;
    suite.check(
        &format!("refresh token: {RACERS} concurrent redemptions of one token"),
        "exactly 1 redeemed",
        &summary(&results),
        results.iter().filter(|(s, _)| *s == 200).count() == 1,
    );
    suite.finish();
}
