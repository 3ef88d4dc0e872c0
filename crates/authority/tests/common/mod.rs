//! Starts a real authority on ephemeral loopback ports for each test.
#![allow(dead_code, unreachable_pub)]

use entraflow_authority::{NewApplication, SecretExpiry, ServerConfig, ServerHandle};
use serde_json::Value;

pub struct TestServer {
    pub handle: ServerHandle,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn start() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.port = 0;
    config.imds_port = 0;
    config.device_code_interval = 1;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = entraflow_authority::serve(config, async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let http = entraflow_tls::https_client(Some(&handle.ca_pem)).unwrap();
    TestServer {
        handle,
        http,
        dir,
        stop: Some(tx),
    }
}

/// An app with a service principal and a secret: (appId, sp object id, secret).
pub struct Client {
    pub app_id: String,
    pub sp_id: String,
    pub secret: String,
}

impl TestServer {
    pub fn store(&self) -> &entraflow_authority::Store {
        self.handle.authority.store()
    }

    pub fn tenant(&self) -> &str {
        &self.handle.tenant_id
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.authority_host)
    }

    pub fn client(&self, name: &str) -> Client {
        let app = self
            .store()
            .create_application(&NewApplication {
                display_name: name.into(),
                ..Default::default()
            })
            .unwrap();
        let sp = self.store().create_service_principal(&app.app_id).unwrap();
        let secret = self
            .store()
            .reset_secret(&app.app_id, SecretExpiry::Years(1), false)
            .unwrap();
        Client {
            app_id: app.app_id,
            sp_id: sp.id,
            secret: secret.password,
        }
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    pub async fn token_v2(&self, form: &[(&str, &str)]) -> (u16, Value) {
        self.post_form(&format!("/{}/oauth2/v2.0/token", self.tenant()), form)
            .await
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Verifies `token` against the published JWKS and returns its claims.
    pub async fn verify(&self, token: &str) -> Value {
        let (_, jwks) = self
            .get_json(&format!("/{}/discovery/v2.0/keys", self.tenant()))
            .await;
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        let jwk = set
            .find(header.kid.as_deref().unwrap())
            .expect("token kid is in JWKS");
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &key, &v)
            .unwrap()
            .claims
    }
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
