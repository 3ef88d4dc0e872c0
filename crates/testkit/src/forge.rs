//! Tokens made by hand: real keys under hostile headers, and strangers' keys, for
//! the suites that prove what the gate refuses.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::Authority;

/// Claims of a v1 Storage token of `authority`'s tenant for `oid`, valid for an hour.
pub fn storage_claims(authority: &Authority, oid: &str) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let tid = authority.tenant();
    json!({
        "aud": "https://storage.azure.com", "iss": format!("https://sts.windows.net/{tid}/"),
        "iat": now, "nbf": now, "exp": now + 3600, "tid": tid, "oid": oid, "sub": oid,
        "ver": "1.0", "uti": "forged", "appid": "11111111-2222-3333-4444-555555555555"
    })
}

impl Authority {
    /// `claims` signed with the authority's active key, as it signs tokens.
    pub fn sign(&self, claims: &Value) -> String {
        let ring = self.store().load_key_ring().unwrap();
        ring.active.sign_jwt(claims).unwrap()
    }

    /// `claims` signed with the authority's active key under `header` as given.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let ring = self.store().load_key_ring().unwrap();
        ring.active.sign(header, claims).unwrap()
    }

    /// The active signing key's `kid`.
    pub fn active_kid(&self) -> String {
        self.store().load_key_ring().unwrap().active.kid.clone()
    }
}

/// A JWT with any header, signed RS256 by a key the authority never published.
pub fn sign_with_stranger(header: &Value, claims: &Value) -> String {
    use aws_lc_rs::{rand::SystemRandom, rsa::KeySize, signature};
    let key = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap();
    let msg = format!("{}.{}", b64_json(header), b64_json(claims));
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        msg.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// base64url (no padding) of `value`'s JSON.
pub fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}
