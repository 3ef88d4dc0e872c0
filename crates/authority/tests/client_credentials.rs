//! Discovery, JWKS and the client-secret grant over real HTTPS, and every way it refuses.

mod common;

use common::code;
use entraflow_authority::{NewApplication, SecretExpiry};
use entraflow_testkit::Authority;

/// name, path, form, status, AADSTS code.
type Case<'a> = (&'a str, String, Vec<(String, String)>, u16, u64);

const STORAGE: &str = "https://storage.azure.com/.default";

#[tokio::test]
async fn discovery_documents_and_jwks_look_like_entra() {
    let s = Authority::start().await;
    let t = s.tenant().to_owned();
    let (st, v2) = s
        .get_json(&format!("/{t}/v2.0/.well-known/openid-configuration"))
        .await;
    assert_eq!(st, 200);
    assert_eq!(v2["issuer"], format!("{}/{t}/v2.0", s.host()));
    assert_eq!(
        v2["token_endpoint"],
        s.url(&format!("/{t}/oauth2/v2.0/token"))
    );
    assert_eq!(
        v2["device_authorization_endpoint"],
        s.url(&format!("/{t}/oauth2/v2.0/devicecode"))
    );
    assert_eq!(v2["jwks_uri"], s.url(&format!("/{t}/discovery/v2.0/keys")));
    // By domain, the documents still name the tenant id.
    let domain = s.store().default_tenant().unwrap().domain;
    let (_, by_domain) = s
        .get_json(&format!("/{domain}/v2.0/.well-known/openid-configuration"))
        .await;
    assert_eq!(by_domain["issuer"], v2["issuer"]);
    let (_, v1) = s
        .get_json(&format!("/{t}/.well-known/openid-configuration"))
        .await;
    assert_eq!(v1["issuer"], format!("https://sts.windows.net/{t}/"));
    assert_eq!(v1["jwks_uri"], s.url(&format!("/{t}/discovery/keys")));

    let (_, jwks) = s.get_json(&format!("/{t}/discovery/v2.0/keys")).await;
    let key = &jwks["keys"][0];
    for f in ["kty", "use", "kid", "x5t", "n", "e", "x5c", "issuer"] {
        assert!(!key[f].is_null(), "JWKS key lacks {f}");
    }
    assert_eq!(key["kid"], key["x5t"]);
    assert_eq!(key["use"], "sig");

    let (st, body) = s
        .get_json("/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration")
        .await;
    assert_eq!((st, code(&body)), (400, 90002));

    let env = std::fs::read_to_string(s.data_dir().join("env")).unwrap();
    assert!(env.contains(&format!("export AZURE_AUTHORITY_HOST={}\n", s.host())));
    assert!(env.contains(&format!("export AZURE_TENANT_ID={t}\n")));
    assert!(env.contains("export REQUESTS_CA_BUNDLE="));
    assert!(!env.contains("AZURE_POD_IDENTITY_AUTHORITY_HOST"));
    let imds = std::fs::read_to_string(s.data_dir().join("imds.env")).unwrap();
    assert_eq!(
        imds,
        format!(
            "export AZURE_POD_IDENTITY_AUTHORITY_HOST={}\n",
            s.imds_endpoint()
        )
    );
}

#[tokio::test]
async fn secret_post_and_basic_issue_v1_storage_tokens() {
    let s = Authority::start().await;
    let c = s.app("trainer");
    let (st, body) = s
        .token_v2(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.app_id),
            ("client_secret", &c.secret),
            ("scope", STORAGE),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].is_number() && body["ext_expires_in"].is_number());
    assert!(body.get("refresh_token").is_none());
    let claims = s.verify(body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["aud"], "https://storage.azure.com");
    assert_eq!(
        claims["iss"],
        format!("https://sts.windows.net/{}/", s.tenant())
    );
    assert_eq!(claims["ver"], "1.0");
    assert_eq!(claims["appid"], c.app_id);
    assert_eq!(claims["appidacr"], "1");
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(claims["oid"], c.oid);
    assert_eq!(claims["sub"], c.oid);
    assert_eq!(claims["tid"], s.tenant());
    assert!(claims.get("roles").is_none(), "no roles unless assigned");
    assert!(claims.get("azp").is_none());
    let life = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((3600..=5400).contains(&life), "{life}");

    // HTTP Basic, v1 endpoint with resource=: numbers are strings.
    let resp = s
        .http
        .post(s.url(&format!("/{}/oauth2/token", s.tenant())))
        .basic_auth(&c.app_id, Some(&c.secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", "https://storage.azure.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v1: serde_json::Value = resp.json().await.unwrap();
    for f in ["expires_in", "ext_expires_in", "expires_on", "not_before"] {
        assert!(
            v1[f].as_str().unwrap().parse::<i64>().is_ok(),
            "{f} must be a numeric string"
        );
    }
    assert_eq!(v1["resource"], "https://storage.azure.com");

    // The tenant may be named by its domain.
    s.store().set_token_lifetime("5".parse().unwrap()).unwrap();
    let domain = s.store().default_tenant().unwrap().domain;
    let (st, body) = s
        .post_form(
            &format!("/{domain}/oauth2/v2.0/token"),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &c.app_id),
                ("client_secret", &c.secret),
                ("scope", STORAGE),
            ],
        )
        .await;
    assert_eq!((st, body["expires_in"].as_i64()), (200, Some(5)));
}

#[tokio::test]
async fn v2_resource_app_gets_v2_token_with_roles_and_groups() {
    let s = Authority::start().await;
    let api = s
        .store()
        .create_application(&NewApplication {
            display_name: "data-api".into(),
            token_version: Some(2),
            identifier_uris: vec!["api://data-api".into()],
            group_membership_claims: Some("SecurityGroup".into()),
            ..Default::default()
        })
        .unwrap();
    s.store()
        .create_app_role(&api.app_id, "Data.Read", None)
        .unwrap();
    s.store()
        .create_app_role(&api.app_id, "Data.Write", None)
        .unwrap();
    let c = s.app("job");
    s.store()
        .assign_app_role(&c.oid, &api.app_id, "Data.Read")
        .unwrap();
    let g = s.store().create_group("readers").unwrap();
    s.store()
        .create_app_role(&api.app_id, "Data.List", None)
        .unwrap();
    s.store()
        .assign_app_role(&g.id, &api.app_id, "Data.List")
        .unwrap();
    s.store().add_group_member(&g.id, &c.oid).unwrap();

    let (st, body) = s
        .token_v2(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.app_id),
            ("client_secret", &c.secret),
            ("scope", "api://data-api/.default"),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    let claims = s.verify(body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["aud"], api.app_id);
    assert_eq!(claims["iss"], format!("{}/{}/v2.0", s.host(), s.tenant()));
    assert_eq!(claims["azp"], c.app_id);
    assert_eq!(claims["azpacr"], "1");
    assert!(claims.get("appid").is_none());
    assert_eq!(
        claims["roles"],
        serde_json::json!(["Data.List", "Data.Read"])
    );
    assert_eq!(claims["groups"], serde_json::json!([g.id]));
}

#[tokio::test]
async fn every_client_credentials_refusal_has_its_aadsts_code() {
    let s = Authority::start().await;
    let c = s.app("app");
    let t = s.tenant().to_owned();
    let cc = |id: &str, secret: &str, scope: &str| {
        vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_id".into(), id.into()),
            ("client_secret".into(), secret.into()),
            ("scope".into(), scope.into()),
        ]
    };
    let post = |path: String, form: Vec<(String, String)>| {
        let s = &s;
        async move {
            let form: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            s.post_form(&path, &form).await
        }
    };
    let token = format!("/{t}/oauth2/v2.0/token");
    let cases: Vec<Case> = vec![
        (
            "wrong secret",
            token.clone(),
            cc(&c.app_id, "nope", STORAGE),
            401,
            7000215,
        ),
        (
            "unknown app",
            token.clone(),
            cc("11111111-1111-1111-1111-111111111111", "x", STORAGE),
            401,
            700016,
        ),
        (
            "unknown tenant",
            "/22222222-2222-2222-2222-222222222222/oauth2/v2.0/token".into(),
            cc(&c.app_id, &c.secret, STORAGE),
            400,
            90002,
        ),
        (
            "common",
            "/common/oauth2/v2.0/token".into(),
            cc(&c.app_id, &c.secret, STORAGE),
            400,
            90002,
        ),
        (
            "organizations",
            "/organizations/oauth2/v2.0/token".into(),
            cc(&c.app_id, &c.secret, STORAGE),
            400,
            90002,
        ),
        (
            "not .default",
            token.clone(),
            cc(
                &c.app_id,
                &c.secret,
                "https://storage.azure.com/user_impersonation",
            ),
            400,
            70011,
        ),
        (
            "two resources",
            token.clone(),
            cc(
                &c.app_id,
                &c.secret,
                "https://storage.azure.com/.default https://graph.microsoft.com/.default",
            ),
            400,
            700022,
        ),
        (
            "unknown resource",
            token.clone(),
            cc(&c.app_id, &c.secret, "api://nothing-here/.default"),
            400,
            500011,
        ),
        (
            "no scope",
            token.clone(),
            cc(&c.app_id, &c.secret, ""),
            400,
            900144,
        ),
        (
            "no credential",
            token.clone(),
            vec![
                ("grant_type".into(), "client_credentials".into()),
                ("client_id".into(), c.app_id.clone()),
                ("scope".into(), STORAGE.into()),
            ],
            401,
            7000218,
        ),
        (
            "bad grant",
            token.clone(),
            vec![("grant_type".into(), "password".into())],
            400,
            70003,
        ),
        (
            "no grant",
            token.clone(),
            vec![("client_id".into(), c.app_id.clone())],
            400,
            900144,
        ),
        (
            "duplicate parameter",
            token.clone(),
            {
                let mut f = cc(&c.app_id, &c.secret, STORAGE);
                f.push(("scope".into(), STORAGE.into()));
                f
            },
            400,
            900023,
        ),
    ];
    for (name, path, form, status, aadsts) in cases {
        let (st, body) = post(path, form).await;
        assert_eq!((st, code(&body)), (status, aadsts), "{name}: {body}");
    }

    // Expired secret.
    let expired = s
        .store()
        .reset_secret(&c.app_id, SecretExpiry::At(1_000_000_000), true)
        .unwrap();
    let form = cc(&c.app_id, &expired.password, STORAGE);
    let (st, body) = post(token.clone(), form).await;
    assert_eq!((st, code(&body)), (401, 7000222));
    // The earlier secret still works (`--append`).
    let (st, _) = post(token.clone(), cc(&c.app_id, &c.secret, STORAGE)).await;
    assert_eq!(st, 200);

    // An app without a service principal.
    let lonely = s
        .store()
        .create_application(&NewApplication {
            display_name: "lonely".into(),
            ..Default::default()
        })
        .unwrap();
    let sec = s
        .store()
        .reset_secret(&lonely.app_id, SecretExpiry::Years(1), false)
        .unwrap();
    let (st, body) = post(token.clone(), cc(&lonely.app_id, &sec.password, STORAGE)).await;
    assert_eq!((st, code(&body)), (401, 7000229));
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_a_clear_400() {
    let s = Authority::start().await;
    let url = s.url(&format!("/{}/oauth2/v2.0/token", s.tenant()));
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "json body",
            s.http
                .post(&url)
                .json(&serde_json::json!({"grant_type": "client_credentials"})),
        ),
        (
            "binary form",
            s.http
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=%ff%fe&x=1"),
        ),
        (
            "oversized",
            s.http
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "grant_type=client_credentials&pad={}",
                    "a".repeat(200 * 1024)
                )),
        ),
        (
            "bad basic",
            s.http
                .post(&url)
                .header("authorization", "Basic !!!")
                .form(&[("grant_type", "client_credentials")]),
        ),
    ];
    for (name, req) in cases {
        let resp = req.send().await.unwrap();
        let st = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!((st, code(&body)), (400, 900023), "{name}: {body}");
    }
    let resp = s.http.get(s.url("/nothing/here")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn env_file_means_ready_and_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = entraflow_authority::ServerConfig::new(dir.path());
    config.port = 0;
    config.imds_port = 0;
    let env = dir.path().join(entraflow_authority::ENV_FILE);
    std::fs::write(&env, "export AZURE_AUTHORITY_HOST=https://stale\n").unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let first = entraflow_authority::serve(config.clone(), async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let text = std::fs::read_to_string(&env).unwrap();
    assert!(text.contains(&first.authority_host) && !text.contains("stale"));
    let app = first
        .authority
        .store()
        .create_application(&NewApplication {
            display_name: "kept".into(),
            ..Default::default()
        })
        .unwrap();
    let tenant = first.tenant_id.clone();
    tx.send(()).unwrap();
    first.wait().await.unwrap();
    assert!(!env.exists(), "the env file is withdrawn on shutdown");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("authority.db"), 0o600);
        assert_eq!(mode("hosts/local-vm/identity.env"), 0o600);
        assert_eq!(mode("imds.env"), 0o644);
    }

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let second = entraflow_authority::serve(config, async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    assert_eq!(second.tenant_id, tenant);
    assert_eq!(
        second
            .authority
            .store()
            .application(&app.app_id)
            .unwrap()
            .display_name,
        "kept"
    );
    tx.send(()).unwrap();
    second.wait().await.unwrap();
}
