//! Helpers of the authority tests beyond the shared set-up (`entraflow_testkit`):
//! Entra error bodies, client certificates, signed assertions, and the device-code
//! sign-in steps a person takes.
#![allow(dead_code, unreachable_pub)]

use serde_json::Value;

/// The AADSTS code of a token endpoint answer; 0 for a success.
pub fn aadsts(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap_or_default()
}

/// The AADSTS code of an error body.
pub fn code(body: &Value) -> u64 {
    let codes = body["error_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("not an Entra error: {body}"));
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with(&format!("AADSTS{}:", codes[0]))
    );
    for k in ["trace_id", "correlation_id", "timestamp"] {
        assert!(
            body[k].as_str().is_some_and(|v| !v.is_empty()),
            "missing {k}"
        );
    }
    codes[0].as_u64().unwrap()
}

/// An RSA key and self-signed certificate, like a client's certificate credential.
pub struct TestCert {
    pub pkcs8: Vec<u8>,
    pub der: Vec<u8>,
    pub pem: String,
}

pub fn rsa_cert(days_valid: i64) -> TestCert {
    use aws_lc_rs::encoding::AsDer;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = key.as_der().unwrap().as_ref().to_vec();
    let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8.as_slice().into(),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(2);
    params.not_after = now + time::Duration::days(days_valid);
    let cert = params.self_signed(&signer).unwrap();
    TestCert {
        pkcs8,
        der: cert.der().to_vec(),
        pem: cert.pem(),
    }
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs a JWT with an RSA PKCS#8 key: `alg` is RS256 or PS256.
pub fn sign_jwt(header: &Value, claims: &Value, pkcs8: &[u8]) -> String {
    let key = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(pkcs8).unwrap();
    let msg = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let alg: &'static dyn aws_lc_rs::signature::RsaEncoding = if header["alg"] == "PS256" {
        &aws_lc_rs::signature::RSA_PSS_SHA256
    } else {
        &aws_lc_rs::signature::RSA_PKCS1_SHA256
    };
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        alg,
        &aws_lc_rs::rand::SystemRandom::new(),
        msg.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{msg}.{}", b64(&sig))
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Starts a device-code sign-in for `scope`: `(device_code, user_code)`.
pub async fn device_code(
    s: &entraflow_testkit::Authority,
    client_id: &str,
    scope: &str,
) -> (String, String) {
    let (status, dc) = s
        .post_form(
            &format!("/{}/oauth2/v2.0/devicecode", s.tenant()),
            &[("client_id", client_id), ("scope", scope)],
        )
        .await;
    assert_eq!(status, 200, "{dc}");
    (
        dc["device_code"].as_str().unwrap().to_owned(),
        dc["user_code"].as_str().unwrap().to_owned(),
    )
}

/// Submits the device-login page as a person would: its status and text.
pub async fn device_login(
    s: &entraflow_testkit::Authority,
    user_code: &str,
    upn: &str,
    password: &str,
) -> (u16, String) {
    let resp = s
        .http
        .post(s.url("/devicelogin"))
        .form(&[
            ("code", user_code),
            ("upn", upn),
            ("password", password),
            ("action", "approve"),
        ])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}
