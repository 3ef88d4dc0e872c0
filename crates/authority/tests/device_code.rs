//! Device code sign-in for people, refresh-token rotation, and key rotation.

mod common;

use common::code;
use entraflow_core::DEVICE_CODE_GRANT;
use entraflow_testkit::Authority;

#[tokio::test]
async fn device_code_then_refresh_token_rotation() {
    let s = Authority::start().await;
    let app = s.public_app("cli");
    let alice = s
        .store()
        .create_user("alice@entraflow.local", "Alice", None)
        .unwrap();
    let t = s.tenant().to_owned();
    let scope = "https://storage.azure.com/.default openid profile offline_access";
    let (st, dc) = s
        .post_form(
            &format!("/{t}/oauth2/v2.0/devicecode"),
            &[("client_id", &app.app_id), ("scope", scope)],
        )
        .await;
    assert_eq!(st, 200, "{dc}");
    assert_eq!(dc["verification_uri"], s.url("/devicelogin"));
    assert_eq!(dc["expires_in"], 900);
    assert_eq!(dc["interval"], 1);
    assert!(
        dc["message"]
            .as_str()
            .unwrap()
            .contains(dc["user_code"].as_str().unwrap())
    );
    let device_code = dc["device_code"].as_str().unwrap().to_owned();
    let poll = |code: String| {
        let s = &s;
        let app = app.app_id.clone();
        async move {
            s.token_v2(&[
                ("grant_type", DEVICE_CODE_GRANT),
                ("client_id", &app),
                ("device_code", &code),
            ])
            .await
        }
    };
    let (st, body) = poll(device_code.clone()).await;
    assert_eq!(
        (st, body["error"].as_str(), code(&body)),
        (400, Some("authorization_pending"), 70016)
    );
    let (st, body) = poll("bogus".into()).await;
    assert_eq!(
        (st, body["error"].as_str(), code(&body)),
        (400, Some("bad_verification_code"), 70018)
    );

    s.store()
        .approve_device_code(
            dc["user_code"].as_str().unwrap(),
            "alice@entraflow.local",
            false,
        )
        .unwrap();
    let (st, body) = poll(device_code.clone()).await;
    assert_eq!(st, 200, "{body}");
    let claims = s.verify(body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["idtyp"], "user");
    assert_eq!(claims["oid"], alice.id);
    assert_eq!(claims["upn"], "alice@entraflow.local");
    assert_eq!(claims["scp"], "user_impersonation");
    assert_eq!(claims["appidacr"], "0");
    let id = s.verify(body["id_token"].as_str().unwrap()).await;
    assert_eq!(
        (id["aud"].as_str(), id["preferred_username"].as_str()),
        (Some(app.app_id.as_str()), Some("alice@entraflow.local"))
    );
    assert!(body["client_info"].is_string());
    // The device code is single-use.
    let (_, again) = poll(device_code).await;
    assert_eq!(code(&again), 70018);

    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let use_refresh = |rt: String| {
        let s = &s;
        let app = app.app_id.clone();
        async move {
            s.token_v2(&[
                ("grant_type", "refresh_token"),
                ("client_id", &app),
                ("refresh_token", &rt),
                ("scope", "https://storage.azure.com/.default offline_access"),
            ])
            .await
        }
    };
    let (st, body) = use_refresh(refresh.clone()).await;
    assert_eq!(st, 200, "{body}");
    let rotated = body["refresh_token"].as_str().unwrap();
    assert_ne!(rotated, refresh);
    let (st, body) = use_refresh(refresh).await;
    assert_eq!(
        (st, code(&body)),
        (400, 700082),
        "an old refresh token is spent"
    );

    // Declined sign-in; confidential clients cannot start device code.
    let (_, dc) = s
        .post_form(
            &format!("/{t}/oauth2/v2.0/devicecode"),
            &[("client_id", &app.app_id), ("scope", scope)],
        )
        .await;
    s.store()
        .approve_device_code(
            dc["user_code"].as_str().unwrap(),
            "alice@entraflow.local",
            true,
        )
        .unwrap();
    let (_, body) = poll(dc["device_code"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        (body["error"].as_str(), code(&body)),
        (Some("authorization_declined"), 70000)
    );
    let confidential = s.app("svc");
    let (st, body) = s
        .post_form(
            &format!("/{t}/oauth2/v2.0/devicecode"),
            &[("client_id", &confidential.app_id), ("scope", scope)],
        )
        .await;
    assert_eq!((st, code(&body)), (401, 7000218));
}

#[tokio::test]
async fn rotated_keys_sign_new_tokens_and_retired_keys_leave_jwks() {
    let s = Authority::start().await;
    let c = s.app("rot");
    let t = s.tenant().to_owned();
    let kids = || async {
        let (_, jwks) = s.get_json(&format!("/{t}/discovery/v2.0/keys")).await;
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let token_kid = || async {
        let (_, body) = s
            .token_v2(&[
                ("grant_type", "client_credentials"),
                ("client_id", &c.app_id),
                ("client_secret", &c.secret),
                ("scope", "https://storage.azure.com/.default"),
            ])
            .await;
        jsonwebtoken::decode_header(body["access_token"].as_str().unwrap())
            .unwrap()
            .kid
            .unwrap()
    };
    let first = kids().await;
    assert_eq!(first.len(), 1);
    assert_eq!(token_kid().await, first[0]);

    // The CLI writes the database; the running server notices the new generation.
    let rot = s.store().rotate_keys(600, 0).unwrap();
    assert_eq!(kids().await, vec![rot.active_kid.clone(), first[0].clone()]);
    assert_eq!(token_kid().await, rot.active_kid);

    let rot2 = s.store().rotate_keys(0, 0).unwrap();
    assert_eq!(
        kids().await,
        vec![rot2.active_kid.clone(), first[0].clone()],
        "a zero-overlap rotation drops only the active key"
    );
    let rot3 = s.store().rotate_keys(0, 0).unwrap();
    let now = kids().await;
    assert!(!now.contains(&rot2.active_kid));
    assert!(now.contains(&rot3.active_kid));

    // Published ahead of use: in JWKS at once, signing only after the delay.
    let rot4 = s.store().rotate_keys(600, 2).unwrap();
    assert!(kids().await.contains(&rot4.active_kid));
    assert_eq!(
        token_kid().await,
        rot3.active_kid,
        "the old key signs until activation"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(
        token_kid().await,
        rot4.active_kid,
        "the new key signs once active"
    );
}

#[tokio::test]
async fn two_concurrent_polls_of_an_approved_code_redeem_it_once() {
    let s = Authority::start().await;
    let app = s.public_app("race");
    s.store()
        .create_user("racer@entraflow.local", "Racer", None)
        .unwrap();
    let t = s.tenant().to_owned();
    for round in 0..5 {
        let (_, dc) = s
            .post_form(
                &format!("/{t}/oauth2/v2.0/devicecode"),
                &[
                    ("client_id", &app.app_id),
                    ("scope", "https://storage.azure.com/.default"),
                ],
            )
            .await;
        s.store()
            .approve_device_code(
                dc["user_code"].as_str().unwrap(),
                "racer@entraflow.local",
                false,
            )
            .unwrap();
        let device_code = dc["device_code"].as_str().unwrap();
        let form = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", app.app_id.as_str()),
            ("device_code", device_code),
        ];
        let polls: Vec<_> = (0..4).map(|_| s.token_v2(&form)).collect();
        let answers = futures::future::join_all(polls).await;
        let issued = answers.iter().filter(|(st, _)| *st == 200).count();
        assert_eq!(issued, 1, "round {round}: {answers:?}");
        for (st, body) in answers.iter().filter(|(st, _)| *st != 200) {
            assert_eq!((*st, code(body)), (400, 70018), "{body}");
        }
    }
}
