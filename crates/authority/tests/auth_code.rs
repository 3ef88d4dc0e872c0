//! The authorization code flow with PKCE over real HTTPS: the authorize
//! endpoint's checks and sign-in page, the redirect back to a loopback address,
//! the code's redemption (single use, bound to client, redirect URI and verifier,
//! ten minutes), confidential web clients, the end-session and UserInfo
//! endpoints, and discovery documents whose every endpoint answers.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entraflow_audit::{EventType, Record};
use entraflow_authority::{AUDIT_LOG_ID, NewApplication, SecretExpiry};
use entraflow_testkit::Authority;
use serde_json::Value;

const STORAGE_SCOPE: &str = "https://storage.azure.com/.default offline_access openid profile";
const PASSWORD: &str = "correct horse battery";
/// Where the app listens: any port matches the registered `http://localhost`.
const LOOPBACK: &str = "http://localhost:53124";

/// The test kit's authority, and a client that acts as the browser.
struct Server {
    kit: Authority,
    /// Does not follow redirects: the tests read `Location` themselves.
    http: reqwest::Client,
}

async fn start() -> Server {
    let kit = Authority::start().await;
    Server {
        http: kit.browser(),
        kit,
    }
}

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn jwt_part(token: &str, n: usize) -> Value {
    let part = token.split('.').nth(n).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The AADSTS code at the start of an error description.
fn aadsts(description: &str) -> u64 {
    description
        .strip_prefix("AADSTS")
        .and_then(|d| d.split(':').next())
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an AADSTS description: {description}"))
}

/// One sign-in attempt's authorization parameters.
struct Flow {
    client_id: String,
    redirect_uri: String,
    scope: String,
    verifier: String,
    params: Vec<(String, String)>,
}

impl Flow {
    fn new(client_id: &str) -> Flow {
        let (verifier, challenge) = pkce();
        let mut flow = Flow {
            client_id: client_id.to_owned(),
            redirect_uri: LOOPBACK.to_owned(),
            scope: STORAGE_SCOPE.to_owned(),
            verifier,
            params: Vec::new(),
        };
        flow.set("client_id", client_id)
            .set("response_type", "code")
            .set("redirect_uri", LOOPBACK)
            .set("scope", STORAGE_SCOPE)
            .set("state", "st-123")
            .set("nonce", "n-456")
            .set("code_challenge", &challenge)
            .set("code_challenge_method", "S256");
        flow
    }

    fn set(&mut self, k: &str, v: &str) -> &mut Flow {
        self.params.retain(|(key, _)| key != k);
        self.params.push((k.to_owned(), v.to_owned()));
        match k {
            "redirect_uri" => self.redirect_uri = v.to_owned(),
            "scope" => self.scope = v.to_owned(),
            _ => {}
        }
        self
    }

    fn without(&mut self, k: &str) -> &mut Flow {
        self.params.retain(|(key, _)| key != k);
        self
    }
}

impl Server {
    fn tenant(&self) -> &str {
        self.kit.tenant()
    }

    fn url(&self, path: &str) -> String {
        self.kit.url(path)
    }

    fn store(&self) -> &entraflow_authority::Store {
        self.kit.store()
    }

    /// A desktop app registered with `http://localhost` (public client).
    fn public_app(&self, name: &str) -> String {
        self.store()
            .create_application_with_redirect_uris(
                &NewApplication {
                    display_name: name.into(),
                    ..Default::default()
                },
                &["http://localhost".into()],
                &[],
            )
            .unwrap()
            .app_id
    }

    fn user(&self, upn: &str) -> String {
        self.store()
            .create_user(upn, "Alice Example", Some(PASSWORD))
            .unwrap()
            .id
    }

    async fn authorize(&self, flow: &Flow) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/{}/oauth2/v2.0/authorize", self.tenant())))
            .query(&flow.params)
            .send()
            .await
            .unwrap()
    }

    /// Posts the sign-in form as the page's form does.
    async fn sign_in(&self, flow: &Flow, upn: &str, password: &str) -> reqwest::Response {
        let mut form = flow.params.clone();
        form.push(("username".into(), upn.into()));
        form.push(("password".into(), password.into()));
        self.http
            .post(self.url(&format!("/{}/oauth2/v2.0/authorize", self.tenant())))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// Signs in and returns the redirect's query parameters.
    async fn code(&self, flow: &Flow, upn: &str) -> HashMap<String, String> {
        let resp = self.sign_in(flow, upn, PASSWORD).await;
        assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let redirect = url::Url::parse(&flow.redirect_uri).unwrap();
        assert!(location.starts_with(&format!("{redirect}?")), "{location}");
        query_of(&location)
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        self.kit.token_v2(form).await
    }

    async fn redeem(&self, flow: &Flow, code: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &flow.client_id),
            ("code", code),
            ("redirect_uri", &flow.redirect_uri),
            ("code_verifier", &flow.verifier),
            ("scope", &flow.scope),
        ])
        .await
    }

    async fn verify(&self, token: &str) -> Value {
        self.kit.verify(token).await
    }

    /// The authority chain's records of `event_type`, in order.
    async fn audited(&self, event_type: EventType) -> Vec<Record> {
        let mut records = self.kit.audit_chain(AUDIT_LOG_ID).await;
        records.retain(|r| r.event.event_type == event_type);
        records
    }
}

/// Turns a good authorization request into a bad one.
type Change = fn(&mut Flow);

fn code_of(body: &Value) -> u64 {
    body["error_codes"][0]
        .as_u64()
        .unwrap_or_else(|| panic!("not an Entra error: {body}"))
}

#[tokio::test]
async fn msal_style_sign_in_on_a_loopback_redirect_issues_user_tokens() {
    let s = start().await;
    let app = s.public_app("notebook");
    let oid = s.user("alice@entraflow.local");
    let mut flow = Flow::new(&app);
    flow.set("login_hint", "alice@entraflow.local");

    // The page: a form that carries the request and asks for the password.
    let page = s.authorize(&flow).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\""), "{html}");
    assert!(html.contains("name=\"password\""));
    assert!(
        html.contains("value=\"alice@entraflow.local\""),
        "login_hint pre-fills"
    );
    assert!(html.contains("name=\"code_challenge\""));

    let answer = s.code(&flow, "alice@entraflow.local").await;
    assert_eq!(answer["state"], "st-123", "state is echoed");
    let code = &answer["code"];
    let (status, body) = s.redeem(&flow, code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let access = body["access_token"].as_str().unwrap();
    let claims = s.verify(access).await;
    assert_eq!(claims["aud"], "https://storage.azure.com");
    assert_eq!(claims["oid"], oid);
    assert_eq!(claims["idtyp"], "user");
    assert_eq!(claims["appid"], app);
    assert_eq!(claims["appidacr"], "0", "a public client");
    assert_eq!(claims["upn"], "alice@entraflow.local");
    assert_eq!(claims["scp"], "user_impersonation");
    assert!(
        jwt_part(access, 0)["x5t"].is_string(),
        "v1 access tokens keep x5t"
    );
    let id = s.verify(body["id_token"].as_str().unwrap()).await;
    assert_eq!(id["aud"], app);
    assert_eq!(id["nonce"], "n-456");
    assert!(id["auth_time"].as_i64().unwrap() <= id["iat"].as_i64().unwrap());
    assert!(jwt_part(body["id_token"].as_str().unwrap(), 0)["x5t"].is_null());
    let info: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(body["client_info"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (info["uid"].as_str(), info["utid"].as_str()),
        (Some(oid.as_str()), Some(s.tenant()))
    );

    // The refresh token is the device-code flow's: single use, rotating.
    let refresh = body["refresh_token"].as_str().unwrap();
    let (status, refreshed) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &app),
            ("refresh_token", refresh),
            ("scope", STORAGE_SCOPE),
        ])
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_ne!(refreshed["refresh_token"], body["refresh_token"]);

    let issued = s.audited(EventType::TokenIssued).await;
    let by_code = issued
        .iter()
        .find(|r| r.event.action.as_deref() == Some("oauth2/token:authorization_code"))
        .expect("the redemption is audited");
    assert_eq!(by_code.event.token_uti.as_deref(), claims["uti"].as_str());
    assert_eq!(
        by_code.event.principal.as_ref().unwrap().oid.as_deref(),
        Some(oid.as_str())
    );
}

#[tokio::test]
async fn a_code_is_single_use_bound_to_its_verifier_and_redirect_and_expires() {
    let s = start().await;
    let app = s.public_app("notebook");
    s.user("bob@entraflow.local");

    // Reused: the second redemption is refused.
    let flow = Flow::new(&app);
    let code = s.code(&flow, "bob@entraflow.local").await["code"].clone();
    assert_eq!(s.redeem(&flow, &code).await.0, 200);
    let (status, body) = s.redeem(&flow, &code).await;
    assert_eq!((status, code_of(&body)), (400, 54005), "{body}");
    assert_eq!(body["error"], "invalid_grant");

    // Wrong verifier: refused, and the code is spent by the attempt.
    let mut flow = Flow::new(&app);
    let code = s.code(&flow, "bob@entraflow.local").await["code"].clone();
    let right = std::mem::replace(&mut flow.verifier, pkce().0);
    let (status, body) = s.redeem(&flow, &code).await;
    assert_eq!((status, code_of(&body)), (400, 50148), "{body}");
    flow.verifier = right;
    assert_eq!(code_of(&s.redeem(&flow, &code).await.1), 54005);

    // Another redirect URI than the one the code was requested with (another port).
    let mut flow = Flow::new(&app);
    let code = s.code(&flow, "bob@entraflow.local").await["code"].clone();
    flow.redirect_uri = "http://localhost:1111".into();
    let (status, body) = s.redeem(&flow, &code).await;
    assert_eq!((status, code_of(&body)), (400, 50011), "{body}");

    // Another client.
    let other = s.public_app("other");
    let mut flow = Flow::new(&app);
    let code = s.code(&flow, "bob@entraflow.local").await["code"].clone();
    flow.client_id = other;
    assert_eq!(code_of(&s.redeem(&flow, &code).await.1), 70008);

    // Expired: codes live ten minutes; age this one in the database.
    let flow = Flow::new(&app);
    let code = s.code(&flow, "bob@entraflow.local").await["code"].clone();
    rusqlite::Connection::open(s.kit.data_dir().join(entraflow_authority::DB_FILE))
        .unwrap()
        .execute("UPDATE authorization_codes SET expires_at = 0", [])
        .unwrap();
    let (status, body) = s.redeem(&flow, &code).await;
    assert_eq!((status, code_of(&body)), (400, 70008), "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Unknown code.
    assert_eq!(code_of(&s.redeem(&flow, "not-a-code").await.1), 70008);

    let refused = s.audited(EventType::TokenRefused).await;
    let codes: Vec<&str> = refused
        .iter()
        .filter(|r| r.event.action.as_deref() == Some("oauth2/token:authorization_code"))
        .filter_map(|r| r.event.detail.as_deref())
        .collect();
    for expected in ["AADSTS54005", "AADSTS50148", "AADSTS50011", "AADSTS70008"] {
        assert!(
            codes.iter().any(|d| d.starts_with(expected)),
            "{expected} audited: {codes:?}"
        );
    }
}

#[tokio::test]
async fn untrusted_apps_and_redirect_uris_get_an_error_page_never_a_redirect() {
    let s = start().await;
    let app = s.public_app("notebook");
    let bare = s
        .store()
        .create_application(&NewApplication {
            display_name: "no redirects".into(),
            ..Default::default()
        })
        .unwrap()
        .app_id;
    let page = |flow: Flow| {
        let s = &s;
        async move {
            let resp = s.authorize(&flow).await;
            let status = resp.status().as_u16();
            assert!(resp.headers().get("location").is_none(), "no redirect");
            (status, resp.text().await.unwrap())
        }
    };
    for (flow, code) in [
        (
            {
                let mut f = Flow::new(&app);
                f.set("redirect_uri", "https://evil.example/cb");
                f
            },
            "AADSTS50011",
        ),
        (
            {
                let mut f = Flow::new(&app);
                f.set("redirect_uri", "http://127.0.0.1:53124");
                f
            },
            "AADSTS50011",
        ),
        (
            Flow::new("00000000-0000-0000-0000-0000000000aa"),
            "AADSTS700016",
        ),
        (
            {
                let mut f = Flow::new(&app);
                f.without("redirect_uri");
                f
            },
            "AADSTS900971",
        ),
        (Flow::new(&bare), "AADSTS500113"),
    ] {
        let (status, html) = page(flow).await;
        assert_eq!(status, 400, "{html}");
        assert!(html.contains(code), "{code}: {html}");
    }
    let refused = s.audited(EventType::TokenRefused).await;
    assert!(
        refused.iter().any(|r| r.event.action.as_deref()
            == Some("oauth2/authorize:authorization_code")
            && r.event
                .detail
                .as_deref()
                .is_some_and(|d| d.starts_with("AADSTS50011"))),
        "authorize refusals are audited"
    );
}

#[tokio::test]
async fn pkce_problems_and_other_refusals_go_back_to_the_redirect_uri_with_state() {
    let s = start().await;
    let app = s.public_app("notebook");
    let redirected = |flow: Flow| {
        let s = &s;
        async move {
            let resp = s.authorize(&flow).await;
            assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
            query_of(resp.headers()["location"].to_str().unwrap())
        }
    };
    let cases: Vec<(Change, &str, u64)> = vec![
        (
            |f| {
                f.without("code_challenge").without("code_challenge_method");
            },
            "invalid_request",
            50147,
        ),
        (
            |f| {
                let v = f.verifier.clone();
                f.set("code_challenge", &v)
                    .set("code_challenge_method", "plain");
            },
            "invalid_request",
            50149,
        ),
        (
            |f| {
                let v = f.verifier.clone();
                f.set("code_challenge", &v).without("code_challenge_method");
            },
            "invalid_request",
            50149,
        ),
        (
            |f| {
                f.set("code_challenge", "too-short");
            },
            "invalid_request",
            501491,
        ),
        (
            |f| {
                f.set("response_type", "token");
            },
            "unsupported_response_type",
            70005,
        ),
        (
            |f| {
                f.set("prompt", "none");
            },
            "login_required",
            50058,
        ),
        (
            |f| {
                f.set("scope", "api://nowhere/.default openid");
            },
            "invalid_scope",
            500011,
        ),
    ];
    for (change, error, code) in cases {
        let mut flow = Flow::new(&app);
        change(&mut flow);
        let answer = redirected(flow).await;
        assert_eq!(answer["error"], error, "{answer:?}");
        assert_eq!(aadsts(&answer["error_description"]), code, "{answer:?}");
        assert_eq!(answer["state"], "st-123", "state is echoed on errors too");
        assert!(!answer.contains_key("code"));
    }
}

#[tokio::test]
async fn a_wrong_password_is_refused_on_the_page_and_audited() {
    let s = start().await;
    let app = s.public_app("notebook");
    let oid = s.user("carol@entraflow.local");
    let flow = Flow::new(&app);
    for (upn, password) in [
        ("carol@entraflow.local", "not her password"),
        ("nobody@entraflow.local", PASSWORD),
    ] {
        let resp = s.sign_in(&flow, upn, password).await;
        assert_eq!(resp.status(), 400);
        assert!(resp.headers().get("location").is_none());
        let html = resp.text().await.unwrap();
        assert!(html.contains("AADSTS50126"), "{html}");
        assert!(
            html.contains("name=\"code_challenge\""),
            "the form is shown again"
        );
        assert!(!html.contains(password), "the password is not echoed");
    }
    let refused = s.audited(EventType::TokenRefused).await;
    let sign_ins: Vec<&Record> = refused
        .iter()
        .filter(|r| r.event.action.as_deref() == Some("oauth2/authorize:authorization_code"))
        .collect();
    assert_eq!(sign_ins.len(), 2);
    let p = sign_ins[0].event.principal.as_ref().unwrap();
    assert_eq!(
        (p.oid.as_deref(), p.name.as_deref(), p.appid.as_deref()),
        (
            Some(oid.as_str()),
            Some("carol@entraflow.local"),
            Some(app.as_str())
        )
    );
}

#[tokio::test]
async fn response_modes_fragment_and_form_post() {
    let s = start().await;
    let app = s.public_app("notebook");
    s.user("dan@entraflow.local");
    let mut flow = Flow::new(&app);
    flow.set("response_mode", "fragment");
    let resp = s.sign_in(&flow, "dan@entraflow.local", PASSWORD).await;
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.query(), None);
    let fragment: HashMap<String, String> =
        url::form_urlencoded::parse(location.fragment().unwrap().as_bytes())
            .into_owned()
            .collect();
    assert_eq!(s.redeem(&flow, &fragment["code"]).await.0, 200);

    flow.set("response_mode", "form_post");
    let resp = s.sign_in(&flow, "dan@entraflow.local", PASSWORD).await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains(&format!("action=\"{LOOPBACK}\"")), "{html}");
    assert!(html.contains("name=\"code\"") && html.contains("value=\"st-123\""));
}

#[tokio::test]
async fn v2_access_tokens_carry_kid_but_no_x5t() {
    let s = start().await;
    let api = s
        .store()
        .create_application(&NewApplication {
            display_name: "notes api".into(),
            token_version: Some(2),
            identifier_uris: vec!["api://notes".into()],
            ..Default::default()
        })
        .unwrap();
    let app = s.public_app("notebook");
    s.user("erin@entraflow.local");
    let mut flow = Flow::new(&app);
    flow.set("scope", "api://notes/Notes.Read offline_access openid");
    let code = s.code(&flow, "erin@entraflow.local").await["code"].clone();
    let (status, body) = s.redeem(&flow, &code).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    let header = jwt_part(access, 0);
    assert!(header["x5t"].is_null(), "{header}");
    assert!(header["kid"].is_string());
    let claims = s.verify(access).await;
    assert_eq!(
        (claims["ver"].as_str(), claims["aud"].as_str()),
        (Some("2.0"), Some(api.app_id.as_str()))
    );
    assert_eq!(claims["azp"], app);
    assert_eq!(claims["scp"], "Notes.Read");
}

#[tokio::test]
async fn web_apps_are_confidential_clients() {
    let s = start().await;
    let app = s
        .store()
        .create_application_with_redirect_uris(
            &NewApplication {
                display_name: "portal".into(),
                ..Default::default()
            },
            &[],
            &["https://portal.example/signin-oidc".into()],
        )
        .unwrap()
        .app_id;
    s.store().create_service_principal(&app).unwrap();
    let secret = s
        .store()
        .reset_secret(&app, SecretExpiry::Years(1), false)
        .unwrap()
        .password;
    s.user("frank@entraflow.local");
    let mut flow = Flow::new(&app);
    flow.set("redirect_uri", "https://portal.example/signin-oidc")
        .without("code_challenge")
        .without("code_challenge_method");
    let redeem = |code: String, secret: Option<String>| {
        let (s, app) = (&s, app.clone());
        async move {
            let mut form = vec![
                ("grant_type", "authorization_code".to_owned()),
                ("client_id", app),
                ("code", code),
                (
                    "redirect_uri",
                    "https://portal.example/signin-oidc".to_owned(),
                ),
                ("scope", STORAGE_SCOPE.to_owned()),
            ];
            if let Some(secret) = secret {
                form.push(("client_secret", secret));
            }
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            s.token(&form).await
        }
    };
    let code = s.code(&flow, "frank@entraflow.local").await["code"].clone();
    let (status, body) = redeem(code, None).await;
    assert_eq!(
        (status, code_of(&body)),
        (401, 7000218),
        "a web client must authenticate"
    );
    let code = s.code(&flow, "frank@entraflow.local").await["code"].clone();
    let (status, body) = redeem(code, Some("wrong".into())).await;
    assert_eq!((status, code_of(&body)), (401, 7000215));
    let code = s.code(&flow, "frank@entraflow.local").await["code"].clone();
    let (status, body) = redeem(code, Some(secret.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        s.verify(body["access_token"].as_str().unwrap()).await["appidacr"],
        "1"
    );

    // Its refresh token is redeemed only with its secret, too.
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &app),
            ("refresh_token", &refresh),
        ])
        .await;
    assert_eq!((status, code_of(&body)), (401, 7000218), "{body}");

    // A public client must not authenticate.
    let public = s.public_app("notebook");
    let flow = Flow::new(&public);
    let code = s.code(&flow, "frank@entraflow.local").await["code"].clone();
    let (status, body) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &public),
            ("code", &code),
            ("redirect_uri", LOOPBACK),
            ("code_verifier", &flow.verifier),
            ("client_secret", "anything"),
        ])
        .await;
    assert_eq!((status, code_of(&body)), (401, 700025), "{body}");
}

#[tokio::test]
async fn userinfo_answers_for_graph_tokens_of_signed_in_users() {
    let s = start().await;
    let app = s.public_app("notebook");
    s.user("gina@entraflow.local");
    let mut flow = Flow::new(&app);
    flow.set("scope", "openid profile offline_access");
    let code = s.code(&flow, "gina@entraflow.local").await["code"].clone();
    let (status, body) = s.redeem(&flow, &code).await;
    assert_eq!(status, 200, "{body}");
    let userinfo = |token: Option<String>| {
        let s = &s;
        async move {
            let mut req = s.http.get(s.url("/oidc/userinfo"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let challenge = resp.headers().get("www-authenticate").is_some();
            (status, challenge, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, _, info) = userinfo(body["access_token"].as_str().map(str::to_owned)).await;
    assert_eq!(status, 200, "{info}");
    let id = s.verify(body["id_token"].as_str().unwrap()).await;
    assert_eq!(info["sub"], id["sub"], "the id token's subject");
    assert_eq!(info["name"], "Alice Example");

    let flow = Flow::new(&app);
    let code = s.code(&flow, "gina@entraflow.local").await["code"].clone();
    let storage = s.redeem(&flow, &code).await.1["access_token"]
        .as_str()
        .map(str::to_owned);
    let (status, challenge, err) = userinfo(storage).await;
    assert_eq!((status, challenge), (401, true));
    assert_eq!(err["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(userinfo(None).await.0, 401);
}

#[tokio::test]
async fn logout_returns_only_to_registered_addresses() {
    let s = start().await;
    let app = s.public_app("notebook");
    let logout = |params: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            s.http
                .get(s.url(&format!("/{}/oauth2/v2.0/logout", s.tenant())))
                .query(&params)
                .send()
                .await
                .unwrap()
        }
    };
    let resp = logout(vec![
        ("post_logout_redirect_uri", "http://localhost:4000".into()),
        ("client_id", app.clone()),
        ("state", "s1".into()),
    ])
    .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        "http://localhost:4000/?state=s1"
    );
    let resp = logout(vec![
        ("post_logout_redirect_uri", "https://evil.example/".into()),
        ("client_id", app.clone()),
    ])
    .await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("signed out") && html.contains("not a redirect URI registered"),
        "{html}"
    );
    let resp = logout(vec![]).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn every_endpoint_the_discovery_documents_name_answers() {
    let s = start().await;
    for doc in [
        "v2.0/.well-known/openid-configuration",
        ".well-known/openid-configuration",
    ] {
        let config: Value = s
            .http
            .get(s.url(&format!("/{}/{doc}", s.tenant())))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            config["response_types_supported"],
            serde_json::json!(["code"])
        );
        assert_eq!(
            config["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        let urls: Vec<(&String, &str)> = config
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.ends_with("_endpoint") || k.ends_with("_uri"))
            .filter_map(|(k, v)| v.as_str().map(|v| (k, v)))
            .collect();
        assert!(urls.len() >= 5, "{doc}: {urls:?}");
        for (name, url) in urls {
            assert!(url.starts_with(s.kit.host()), "{name} = {url}");
            // Token and device-code endpoints take POSTs; the rest GETs.
            let resp = if name.contains("token") || name.contains("device") {
                s.http.post(url).form(&[("x", "y")]).send().await.unwrap()
            } else {
                s.http.get(url).send().await.unwrap()
            };
            let status = resp.status().as_u16();
            assert!(
                ![404, 405].contains(&status),
                "{doc}: {name} ({url}) answers {status}"
            );
        }
    }
}
