//! The token attack suite: every way a bearer token can be forged, malformed, or
//! validly signed with claims the gate must not accept, each a named case with its
//! expected answer. A few boundary cases must be *accepted* (skew, audience
//! spelling), so the suite cannot pass by refusing everything. Results go to
//! SECURITY.md (`testkit::report`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entraflow_testkit::Stack;
use entraflow_testkit::forge::{b64_json, sign_with_stranger, storage_claims};
use entraflow_testkit::report::{Doc, Suite};
use reqwest::Method;
use serde_json::{Value, json};

/// What a case must get: 200, or 401 with this text in the error detail.
#[derive(Clone, Copy)]
enum Expect {
    Accepted,
    Refused(&'static str),
    /// Turned away before it is read as a request: 431, or the connection closed.
    TooLarge,
}

/// How the request carries the token.
enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// The whole `Authorization` header value.
    Raw(String),
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

const SKEW: i64 = 300;

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// `header.claims.signature` with the signature taken from `donor`.
fn splice(header_and_claims: &str, donor: &str) -> String {
    let sig = donor.rsplit('.').next().unwrap();
    let mut parts: Vec<&str> = header_and_claims.split('.').take(2).collect();
    parts.push(sig);
    parts.join(".")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_attacks_are_refused_and_boundaries_accepted() {
    // Refetch on every unknown kid, so the rotation cases see the new JWKS at once.
    let env = Stack::start_with(|c| c.jwks_refresh_interval = std::time::Duration::ZERO).await;
    let app = env.app("reader");
    env.assign(&app.oid, "Storage Blob Data Reader", &env.account_scope);
    env.wait_for_policy().await;
    let a = &env.authority;
    let tid = a.tenant().to_owned();
    let good = storage_claims(a, &app.oid);
    let kid = a.active_kid();
    let v2_iss = format!("{}/{tid}/v2.0", a.host());
    let header = |extra: Value| {
        let mut h = json!({"typ": "JWT", "alg": "RS256", "kid": kid});
        h.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        h
    };
    let signed = |claims: Value| Credential::Bearer(a.sign(&claims));
    let unsigned = |alg: &str| {
        Credential::Bearer(format!(
            "{}.{}.",
            b64_json(&json!({"alg": alg, "typ": "JWT"})),
            b64_json(&good)
        ))
    };
    let valid = a.sign(&good);
    let other_valid = a.sign(&with(good.clone(), "oid", json!("someone-else")));
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &good,
        &jsonwebtoken::EncodingKey::from_secret(b"the public key as an HMAC secret"),
    )
    .unwrap();
    let tampered = {
        let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
        parts[1] = b64_json(&with(good.clone(), "oid", json!("admin")));
        parts.join(".")
    };
    let sig = "Signature validation failed";
    let lifetime = "Lifetime validation failed";
    let audience = "Audience validation failed";
    let issuer = "Issuer validation failed";

    let mut cases: Vec<(&str, Credential, Expect)> = vec![
        // The sanity case: the forging helpers make tokens the gate accepts.
        (
            "valid token signed by the authority",
            Credential::Bearer(valid.clone()),
            Expect::Accepted,
        ),
        // Forged signatures and algorithms.
        ("alg none", unsigned("none"), Expect::Refused(sig)),
        (
            "alg None (case variant)",
            unsigned("None"),
            Expect::Refused(sig),
        ),
        (
            "alg HS256 with the public key as secret",
            Credential::Bearer(hs256),
            Expect::Refused("only RS256"),
        ),
        (
            "alg PS256 header on an RS256 signature",
            Credential::Bearer(a.sign_with_header(&header(json!({"alg": "PS256"})), &good)),
            Expect::Refused("only RS256"),
        ),
        (
            "alg RS512 header on an RS256 signature",
            Credential::Bearer(a.sign_with_header(&header(json!({"alg": "RS512"})), &good)),
            Expect::Refused("only RS256"),
        ),
        (
            "alg ES256 header",
            Credential::Bearer(a.sign_with_header(&header(json!({"alg": "ES256"})), &good)),
            Expect::Refused("only RS256"),
        ),
        (
            "stranger's key under the published kid",
            Credential::Bearer(sign_with_stranger(&header(json!({})), &good)),
            Expect::Refused(sig),
        ),
        (
            "stranger's key under an unknown kid",
            Credential::Bearer(sign_with_stranger(
                &json!({"alg": "RS256", "kid": "made-up"}),
                &good,
            )),
            Expect::Refused(sig),
        ),
        (
            "no kid in the header",
            Credential::Bearer(a.sign_with_header(&json!({"typ": "JWT", "alg": "RS256"}), &good)),
            Expect::Refused(sig),
        ),
        (
            "jku header pointing at the attacker's keys",
            Credential::Bearer(sign_with_stranger(
                &header(json!({"jku": "https://evil.example/keys"})),
                &good,
            )),
            Expect::Refused("keys come only from the trusted issuer"),
        ),
        (
            "x5u header pointing at the attacker's certificate",
            Credential::Bearer(sign_with_stranger(
                &header(json!({"x5u": "https://evil.example/cert"})),
                &good,
            )),
            Expect::Refused("keys come only from the trusted issuer"),
        ),
        (
            "jwk embedded in the header",
            Credential::Bearer(sign_with_stranger(
                &header(json!({"jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}})),
                &good,
            )),
            Expect::Refused("keys come only from the trusted issuer"),
        ),
        (
            "signature stripped",
            Credential::Bearer(format!("{}.", valid.rsplit_once('.').unwrap().0)),
            Expect::Refused(sig),
        ),
        (
            "signature of another valid token spliced on",
            Credential::Bearer(splice(&valid, &other_valid)),
            Expect::Refused(sig),
        ),
        (
            "claims changed after signing (oid)",
            Credential::Bearer(tampered),
            Expect::Refused(sig),
        ),
        // Malformed.
        (
            "two segments",
            Credential::Bearer("abc.def".into()),
            Expect::Refused(""),
        ),
        (
            "four segments",
            Credential::Bearer(format!("{valid}.extra")),
            Expect::Refused(""),
        ),
        (
            "header not base64url",
            Credential::Bearer(format!("!!!.{}", valid.split_once('.').unwrap().1)),
            Expect::Refused(""),
        ),
        (
            "header not JSON",
            Credential::Bearer(format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode("not json"),
                valid.split_once('.').unwrap().1
            )),
            Expect::Refused(""),
        ),
        (
            "claims not JSON",
            Credential::Bearer(a.sign_with_header(&header(json!({})), &json!("just a string"))),
            Expect::Refused(""),
        ),
        (
            "empty bearer token",
            Credential::Raw("Bearer ".into()),
            Expect::Refused(""),
        ),
        (
            "Basic scheme instead of Bearer",
            Credential::Raw("Basic dXNlcjpwYXNz".into()),
            Expect::Refused(""),
        ),
        (
            "a 64 KiB token",
            Credential::Bearer("a".repeat(64 * 1024)),
            Expect::TooLarge,
        ),
        (
            "exp missing",
            signed(without(good.clone(), "exp")),
            Expect::Refused(""),
        ),
        (
            "exp as a string",
            signed(with(good.clone(), "exp", json!("tomorrow"))),
            Expect::Refused(""),
        ),
        (
            "aud as an array",
            signed(with(
                good.clone(),
                "aud",
                json!(["https://storage.azure.com"]),
            )),
            Expect::Refused(""),
        ),
        // Lifetime around the skew boundary.
        (
            "expired an hour ago",
            signed(with(good.clone(), "exp", json!(now() - 3600))),
            Expect::Refused(lifetime),
        ),
        (
            "expired just beyond the 5 min skew",
            signed(with(good.clone(), "exp", json!(now() - SKEW - 30))),
            Expect::Refused(lifetime),
        ),
        (
            "expired but within the 5 min skew",
            signed(with(good.clone(), "exp", json!(now() - SKEW + 60))),
            Expect::Accepted,
        ),
        (
            "nbf just beyond the 5 min skew",
            signed(with(good.clone(), "nbf", json!(now() + SKEW + 30))),
            Expect::Refused(lifetime),
        ),
        (
            "nbf in the future but within the skew",
            signed(with(good.clone(), "nbf", json!(now() + SKEW - 60))),
            Expect::Accepted,
        ),
        // Audience.
        (
            "aud Azure Resource Manager",
            signed(with(
                good.clone(),
                "aud",
                json!("https://management.azure.com/"),
            )),
            Expect::Refused(audience),
        ),
        (
            "aud Key Vault",
            signed(with(good.clone(), "aud", json!("https://vault.azure.net"))),
            Expect::Refused(audience),
        ),
        (
            "aud another storage account",
            signed(with(
                good.clone(),
                "aud",
                json!("https://otheraccount.blob.core.windows.net"),
            )),
            Expect::Refused(audience),
        ),
        (
            "aud an application id (an id token)",
            signed(with(
                good.clone(),
                "aud",
                json!("11111111-2222-3333-4444-555555555555"),
            )),
            Expect::Refused(audience),
        ),
        (
            "aud with a trailing slash",
            signed(with(
                good.clone(),
                "aud",
                json!("https://storage.azure.com/"),
            )),
            Expect::Accepted,
        ),
        // Issuer, tenant and version.
        (
            "iss of another tenant",
            signed(with(
                good.clone(),
                "iss",
                json!("https://sts.windows.net/99999999-9999-9999-9999-999999999999/"),
            )),
            Expect::Refused(issuer),
        ),
        (
            "tid of an untrusted tenant with its own iss",
            signed(with(
                with(
                    good.clone(),
                    "tid",
                    json!("99999999-9999-9999-9999-999999999999"),
                ),
                "iss",
                json!("https://sts.windows.net/99999999-9999-9999-9999-999999999999/"),
            )),
            Expect::Refused(issuer),
        ),
        (
            "ver 1.0 with the v2 issuer",
            signed(with(good.clone(), "iss", json!(v2_iss.clone()))),
            Expect::Refused(issuer),
        ),
        (
            "ver 2.0 with the v1 issuer",
            signed(with(good.clone(), "ver", json!("2.0"))),
            Expect::Refused(issuer),
        ),
        (
            "ver 2.0 with the v2 issuer",
            signed(with(
                with(good.clone(), "ver", json!("2.0")),
                "iss",
                json!(v2_iss.clone()),
            )),
            Expect::Accepted,
        ),
        (
            "ver 3.0",
            signed(with(good.clone(), "ver", json!("3.0"))),
            Expect::Refused(issuer),
        ),
        (
            "v2 issuer over http",
            signed(with(
                with(good.clone(), "ver", json!("2.0")),
                "iss",
                json!(v2_iss.replacen("https://", "http://", 1)),
            )),
            Expect::Refused(issuer),
        ),
        (
            "issuer with a different case",
            signed(with(
                good.clone(),
                "iss",
                json!(format!("https://STS.windows.net/{tid}/")),
            )),
            Expect::Refused(issuer),
        ),
    ];

    let mut suite = Suite::new(Doc::Security, "Token attacks (gate)");
    for (name, credential, expect) in cases.drain(..) {
        let (status, detail) = send(&env, &credential).await;
        record(&mut suite, name, expect, status, &detail);
    }

    // Key rotation with no overlap: the new key validates, the retired one does not,
    // not even for a token the gate verified before the rotation.
    let before = a.sign(&good);
    let (status, _) = send(&env, &Credential::Bearer(before.clone())).await;
    record(
        &mut suite,
        "valid token before a key rotation",
        Expect::Accepted,
        status,
        "",
    );
    a.store().rotate_keys(0, 0).unwrap();
    let after = a.sign(&good);
    let (status, detail) = send(&env, &Credential::Bearer(after)).await;
    record(
        &mut suite,
        "token signed with the new key after rotation",
        Expect::Accepted,
        status,
        &detail,
    );
    let (status, detail) = send(&env, &Credential::Bearer(before)).await;
    record(
        &mut suite,
        "token signed with the retired key after rotation",
        Expect::Refused(sig),
        status,
        &detail,
    );

    assert!(suite.len() >= 40, "the suite has {} cases", suite.len());
    suite.finish();
}

async fn send(env: &Stack, credential: &Credential) -> (u16, String) {
    let mut req = env.request(Method::GET, "?comp=list", None);
    req = match credential {
        Credential::Bearer(t) => req.header("authorization", format!("Bearer {t}")),
        Credential::Raw(v) => req.header("authorization", v),
    };
    let resp = match req.send().await {
        Ok(resp) => resp,
        // Status 0: the server closed the connection instead of answering.
        Err(e) => return (0, format!("no answer: {e}")),
    };
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    let detail = body
        .split("<AuthenticationErrorDetail>")
        .nth(1)
        .and_then(|d| d.split("</AuthenticationErrorDetail>").next())
        .unwrap_or(&body)
        .to_owned();
    (status, detail)
}

fn record(suite: &mut Suite, name: &str, expect: Expect, status: u16, detail: &str) {
    let short: String = detail.chars().take(160).collect();
    match expect {
        Expect::Accepted if status == 200 => suite.check(name, "200", "200", true),
        Expect::Accepted => suite.check(name, "200", &format!("{status} {short}"), false),
        Expect::Refused(text) => suite.check(
            name,
            &if text.is_empty() {
                "401".to_owned()
            } else {
                format!("401 \"{text}\"")
            },
            &format!("{status} {short}"),
            status == 401 && detail.contains(text),
        ),
        Expect::TooLarge => suite.check(
            name,
            "431 or the connection closed",
            &format!("{status} {short}"),
            status == 431 || status == 0,
        ),
    }
}
