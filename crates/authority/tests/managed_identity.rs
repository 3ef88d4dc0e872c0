//! The IMDS and App Service managed-identity endpoints on their plain-HTTP listener.

use entraflow_testkit::Authority;

#[tokio::test]
async fn imds_serves_only_this_hosts_identities_with_string_numbers() {
    let s = Authority::start().await;
    let ua = s
        .store()
        .create_managed_identity(Some("trainer-id"), "local-vm", false)
        .unwrap();
    let elsewhere = s
        .store()
        .create_managed_identity(Some("other-vm-id"), "other-vm", false)
        .unwrap();
    let http = reqwest::Client::new();
    let imds = format!("{}/metadata/identity/oauth2/token", s.imds_endpoint());
    let get = |q: Vec<(&'static str, String)>, metadata: bool| {
        let mut req = http.get(&imds).query(&q);
        if metadata {
            req = req.header("Metadata", "true");
        }
        async move {
            let resp = req.send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let base = || {
        vec![
            ("api-version", "2018-02-01".to_owned()),
            ("resource", "https://storage.azure.com".to_owned()),
        ]
    };

    let (st, body) = get(base(), false).await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_request")));
    assert_eq!(
        body["error_description"],
        "Required metadata header not specified"
    );

    // The only identity on the host is the default.
    let (st, body) = get(base(), true).await;
    assert_eq!(st, 200, "{body}");
    for f in ["expires_in", "expires_on", "ext_expires_in", "not_before"] {
        assert!(
            body[f].as_str().unwrap().parse::<i64>().is_ok(),
            "{f} must be a numeric string: {body}"
        );
    }
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], "https://storage.azure.com");
    assert_eq!(body["client_id"], ua.client_id);
    let claims = s.verify(body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["oid"], ua.principal_id);
    assert_eq!(claims["appid"], ua.client_id);
    assert_eq!(claims["xms_mirid"], ua.id);
    assert_eq!(claims["idtyp"], "app");

    for (k, v) in [
        ("client_id", ua.client_id.clone()),
        ("object_id", ua.principal_id.clone()),
        ("msi_res_id", ua.id.clone()),
    ] {
        let mut q = base();
        q.push((k, v));
        let (st, body) = get(q, true).await;
        assert_eq!(st, 200, "{k}: {body}");
    }
    // An identity assigned to another host is not found here.
    let mut q = base();
    q.push(("client_id", elsewhere.client_id.clone()));
    let (st, body) = get(q, true).await;
    assert_eq!(
        (st, body["error_description"].as_str()),
        (400, Some("Identity not found"))
    );
    // Unknown resource.
    let (st, body) = get(
        vec![
            ("api-version", "2018-02-01".into()),
            ("resource", "api://nope".into()),
        ],
        true,
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS500011")
    );
    // Missing resource.
    let (st, _) = get(vec![("api-version", "2018-02-01".into())], true).await;
    assert_eq!(st, 400);

    // Two user-assigned identities and no system-assigned one: the caller must choose.
    s.store()
        .create_managed_identity(Some("second"), "local-vm", false)
        .unwrap();
    let (st, body) = get(base(), true).await;
    assert_eq!(st, 400, "{body}");
    // A system-assigned identity becomes the default.
    let system = s
        .store()
        .create_managed_identity(None, "local-vm", true)
        .unwrap();
    let (st, body) = get(base(), true).await;
    assert_eq!(
        (st, &body["client_id"]),
        (200, &serde_json::json!(system.client_id))
    );
}

#[tokio::test]
async fn app_service_form_needs_the_identity_header() {
    let s = Authority::start().await;
    let mi = s
        .store()
        .create_managed_identity(None, "local-vm", true)
        .unwrap();
    let env = std::fs::read_to_string(s.data_dir().join("hosts/local-vm/identity.env")).unwrap();
    let value = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap()
            .to_owned()
    };
    let endpoint = value("IDENTITY_ENDPOINT");
    let header = value("IDENTITY_HEADER");
    assert_eq!(endpoint, format!("{}/msi/token", s.imds_endpoint()));
    let http = reqwest::Client::new();
    let q = [
        ("api-version", "2019-08-01"),
        ("resource", "https://storage.azure.com"),
    ];
    let resp = http.get(&endpoint).query(&q).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(&endpoint)
        .query(&q)
        .header("X-IDENTITY-HEADER", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(&endpoint)
        .query(&q)
        .header("X-IDENTITY-HEADER", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["client_id"], mi.client_id);
    assert!(body["expires_on"].as_str().is_some());
}
