//! Token signing keys: RSA 2048, a self-signed certificate each (published as
//! `x5c`), `kid` = `x5t` = base64url SHA-1 of the certificate as Entra does.
//! Token headers carry `kid`; v1 access tokens also carry `x5t`, which Entra
//! emits only in v1.
//!
//! Private keys live only in the 0600 database. The server keeps a [`KeyRing`]
//! in memory and reloads it when the `key_generation` counter in the database
//! changes, so `entraflow authority rotate-keys` takes effect without a restart.
//! A new key can be published ahead of use, as Entra does: it appears in JWKS at
//! once but signs only from its `activates_at`, so resource servers that refetch
//! their keys rarely (the gate: at most every 5 minutes on an unknown `kid`) know
//! it before the first token carries it. A rotated-out key keeps validating (stays
//! in JWKS) until its `retires_at`, then it disappears from JWKS and is deleted at
//! the next rotation.

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;

use crate::error::AuthorityError;
use crate::store::{NewSigningKey, Store, now};

/// One signing key, parsed and ready to sign.
pub struct SigningKey {
    /// `kid` and `x5t`.
    pub kid: String,
    key: RsaKeyPair,
    n: Vec<u8>,
    e: Vec<u8>,
    cert_der: Vec<u8>,
    /// When the key leaves JWKS (None while it is the active key).
    pub retires_at: Option<i64>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("retires_at", &self.retires_at)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_row(
        kid: String,
        pkcs8: &[u8],
        cert_der: Vec<u8>,
        retires_at: Option<i64>,
    ) -> Result<Self, AuthorityError> {
        let key = RsaKeyPair::from_pkcs8(pkcs8)
            .map_err(|e| AuthorityError::Crypto(format!("signing key {kid}: {e}")))?;
        let components = RsaPublicKeyComponents::<Vec<u8>>::from(key.public_key());
        Ok(SigningKey {
            kid,
            key,
            n: components.n,
            e: components.e,
            cert_der,
            retires_at,
        })
    }

    /// Signs a JWT with RS256 under the header `{typ, alg, kid}`, as Entra signs
    /// v2 access tokens and id tokens: `header.claims.signature`, base64url.
    ///
    /// Signing is done here with the parsed key pair instead of through
    /// `jsonwebtoken::encode`, which re-parses and re-validates the DER key on every
    /// call (that alone costs more than the signature); verification elsewhere uses
    /// `jsonwebtoken`.
    pub fn sign_jwt<C: Serialize>(&self, claims: &C) -> Result<String, AuthorityError> {
        self.sign(
            &serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": self.kid}),
            claims,
        )
    }

    /// Signs a JWT whose header also carries `x5t`, as Entra signs v1 access tokens.
    pub fn sign_jwt_with_x5t<C: Serialize>(&self, claims: &C) -> Result<String, AuthorityError> {
        self.sign(
            &serde_json::json!({"typ": "JWT", "alg": "RS256", "x5t": self.kid, "kid": self.kid}),
            claims,
        )
    }

    /// Signs with RS256 under any `header`: what forged-token test suites need (a
    /// real key under a hostile header). Issuance uses the two methods above.
    pub fn sign<C: Serialize>(
        &self,
        header: &serde_json::Value,
        claims: &C,
    ) -> Result<String, AuthorityError> {
        let mut message = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap_or_default());
        message.push('.');
        let body = serde_json::to_vec(claims)
            .map_err(|e| AuthorityError::Crypto(format!("serializing claims: {e}")))?;
        message.push_str(&URL_SAFE_NO_PAD.encode(body));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                message.as_bytes(),
                &mut signature,
            )
            .map_err(|_| AuthorityError::Crypto("RS256 signing failed".into()))?;
        message.push('.');
        message.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(message)
    }

    /// The JWKS entry for this key, bound to `issuer`.
    pub fn jwk(&self, issuer: &str) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
            "x5c": [STANDARD.encode(&self.cert_der)],
            "issuer": issuer,
        })
    }

    /// A `jsonwebtoken` decoding key for this key's public half.
    pub fn decoding_key(&self) -> jsonwebtoken::DecodingKey {
        jsonwebtoken::DecodingKey::from_rsa_raw_components(&self.n, &self.e)
    }
}

/// The keys the server signs and publishes with, as of one key generation.
#[derive(Debug)]
pub struct KeyRing {
    /// The database's `key_generation` this ring was loaded at.
    pub generation: i64,
    /// The key new tokens are signed with.
    pub active: Arc<SigningKey>,
    /// Every key still published (newest first; a key published ahead of use too).
    pub published: Vec<Arc<SigningKey>>,
    /// When a published key starts signing: the ring must be reloaded then.
    pub reload_at: Option<i64>,
}

impl KeyRing {
    /// Keys to publish in JWKS right now: retired keys vanish once their overlap ends.
    pub fn current(&self, at: i64) -> impl Iterator<Item = &Arc<SigningKey>> {
        self.published
            .iter()
            .filter(move |k| k.retires_at.is_none_or(|r| r > at))
    }
}

fn generate_key() -> Result<(String, Vec<u8>, Vec<u8>), AuthorityError> {
    let crypto = |e: &dyn std::fmt::Display| AuthorityError::Crypto(e.to_string());
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|e| crypto(&e))?;
    let pkcs8 = key.as_der().map_err(|e| crypto(&e))?.as_ref().to_vec();
    let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8.as_slice().into(),
        &rcgen::PKCS_RSA_SHA256,
    )
    .map_err(|e| crypto(&e))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| crypto(&e))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "entraflow token signing");
    let start = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_before = start;
    params.not_after = start + time::Duration::days(5 * 365);
    let cert = params.self_signed(&signer).map_err(|e| crypto(&e))?;
    let cert_der = cert.der().to_vec();
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der);
    Ok((URL_SAFE_NO_PAD.encode(sha1.as_ref()), pkcs8, cert_der))
}

/// What `rotate-keys` did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// The new key (published at once, signing from `activates_at`).
    pub active_kid: String,
    /// RFC 3339: when the new key starts signing.
    pub activates_at: String,
    /// The key that keeps validating until `retires_at`.
    pub retiring_kid: Option<String>,
    /// RFC 3339.
    pub retires_at: Option<String>,
}

impl Store {
    /// Creates the first signing key if there is none.
    pub fn ensure_signing_key(&self) -> Result<(), AuthorityError> {
        if self.key_generation()? == 0 {
            self.rotate_keys(0, 0)?;
        }
        Ok(())
    }

    /// Adds a new key, published now and signing from `publish_delay_secs` on; the
    /// previous key signs until then and keeps validating `overlap_secs` longer.
    /// Keys whose overlap already ended are deleted.
    pub fn rotate_keys(
        &self,
        overlap_secs: i64,
        publish_delay_secs: i64,
    ) -> Result<Rotation, AuthorityError> {
        let (kid, pkcs8, cert_der) = generate_key()?;
        let at = now();
        let delay = publish_delay_secs.max(0);
        let activates_at = at + delay;
        let retires_at = activates_at + overlap_secs.max(0);
        let retiring = self.add_signing_key(&NewSigningKey {
            kid: &kid,
            pkcs8: &pkcs8,
            cert_der: &cert_der,
            created_at: at,
            activates_at: (delay > 0).then_some(activates_at),
            retire_previous_at: retires_at,
        })?;
        let mut objects = vec![("signing_key", kid.as_str())];
        if let Some(old) = &retiring {
            objects.push(("retiring_key", old.as_str()));
        }
        self.changed("signing_key.rotate", &objects);
        let keep = retiring.is_some() && retires_at > at;
        Ok(Rotation {
            active_kid: kid,
            activates_at: crate::store::rfc3339(activates_at),
            retiring_kid: retiring.filter(|_| keep),
            retires_at: keep.then(|| crate::store::rfc3339(retires_at)),
        })
    }

    /// Loads every published key into a [`KeyRing`].
    pub fn load_key_ring(&self) -> Result<KeyRing, AuthorityError> {
        self.load_key_ring_at(now())
    }

    /// Loads the ring as it stands at `at`: the signing key is the newest one whose
    /// activation has come and which has not retired.
    pub fn load_key_ring_at(&self, at: i64) -> Result<KeyRing, AuthorityError> {
        self.ensure_signing_key()?;
        let generation = self.key_generation()?;
        let rows = self.signing_keys()?;
        let mut published = Vec::with_capacity(rows.len());
        let mut active = None;
        let mut reload_at: Option<i64> = None;
        for (kid, pkcs8, cert, retires_at, activates_at) in rows {
            let key = Arc::new(SigningKey::from_row(kid, &pkcs8, cert, retires_at)?);
            match activates_at {
                Some(t) if t > at => reload_at = Some(reload_at.map_or(t, |r| r.min(t))),
                _ if active.is_none() && retires_at.is_none_or(|r| r > at) => {
                    active = Some(key.clone());
                }
                _ => {}
            }
            published.push(key);
        }
        let active = active.ok_or_else(|| {
            AuthorityError::Crypto("no active signing key in the database".into())
        })?;
        Ok(KeyRing {
            generation,
            active,
            published,
            reload_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_published_ahead_of_use_signs_only_from_its_activation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old_kid = store.load_key_ring().unwrap().active.kid.clone();
        let rot = store.rotate_keys(600, 360).unwrap();
        let at = now();

        let before = store.load_key_ring_at(at).unwrap();
        assert_eq!(
            before.active.kid, old_kid,
            "the old key signs until activation"
        );
        let published: Vec<_> = before.current(at).map(|k| k.kid.clone()).collect();
        assert!(
            published.contains(&rot.active_kid),
            "the new key is published at once"
        );
        assert!(before.reload_at.is_some_and(|t| t >= at + 360));

        let after = store.load_key_ring_at(at + 361).unwrap();
        assert_eq!(
            after.active.kid, rot.active_kid,
            "the new key signs after activation"
        );
        let published: Vec<_> = after.current(at + 361).map(|k| k.kid.clone()).collect();
        assert!(
            published.contains(&old_kid),
            "the old key validates during the overlap"
        );
        let later: Vec<_> = after
            .current(at + 361 + 600)
            .map(|k| k.kid.clone())
            .collect();
        assert_eq!(
            later,
            vec![rot.active_kid.clone()],
            "then only the new key is published"
        );
    }

    #[test]
    fn rotation_keeps_old_key_until_overlap_ends_then_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store.load_key_ring().unwrap();
        assert_eq!(first.generation, 1);
        let old_kid = first.active.kid.clone();

        let rot = store.rotate_keys(600, 0).unwrap();
        assert_eq!(rot.retiring_kid.as_deref(), Some(old_kid.as_str()));
        let ring = store.load_key_ring().unwrap();
        assert_eq!(ring.generation, 2);
        assert_eq!(ring.active.kid, rot.active_kid);
        let at = now();
        let kids: Vec<_> = ring.current(at).map(|k| k.kid.clone()).collect();
        assert_eq!(kids, vec![rot.active_kid.clone(), old_kid.clone()]);
        // After the overlap the old key is gone from what is published.
        let kids: Vec<_> = ring.current(at + 601).map(|k| k.kid.clone()).collect();
        assert_eq!(kids, vec![rot.active_kid.clone()]);

        // Rotating with no overlap drops the active key at once.
        let rot2 = store.rotate_keys(0, 0).unwrap();
        assert_eq!(rot2.retiring_kid, None);
        let ring = store.load_key_ring().unwrap();
        assert!(ring.published.iter().all(|k| k.kid != rot.active_kid));
    }

    #[test]
    fn signed_jwt_verifies_with_published_key_and_kid_is_x5t() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ring = store.load_key_ring().unwrap();
        let claims = serde_json::json!({"aud": "x", "exp": now() + 60});
        let v2 = ring.active.sign_jwt(&claims).unwrap();
        let v1 = ring.active.sign_jwt_with_x5t(&claims).unwrap();
        let header = jsonwebtoken::decode_header(&v2).unwrap();
        assert_eq!(header.kid.as_deref(), Some(ring.active.kid.as_str()));
        assert_eq!(header.x5t, None, "Entra's v2 headers carry no x5t");
        let header = jsonwebtoken::decode_header(&v1).unwrap();
        assert_eq!(header.kid.as_deref(), Some(ring.active.kid.as_str()));
        assert_eq!(header.x5t.as_deref(), Some(ring.active.kid.as_str()));
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&["x"]);
        for token in [&v1, &v2] {
            jsonwebtoken::decode::<serde_json::Value>(token, &ring.active.decoding_key(), &v)
                .unwrap();
        }
        let jwk = ring.active.jwk("iss");
        let sha1 = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            &STANDARD.decode(jwk["x5c"][0].as_str().unwrap()).unwrap(),
        );
        assert_eq!(jwk["x5t"], URL_SAFE_NO_PAD.encode(sha1.as_ref()));
    }
}
