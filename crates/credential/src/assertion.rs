//! Client assertions: the RS256 JWT a certificate credential signs for each token request.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::authority::now_unix;
use crate::confidential::CertificateOptions;
use crate::error::CredentialError;
use entraflow_core::env;

/// Lifetime of an assertion. Entra ID accepts at most 10 minutes; 5 leaves room for skew.
const ASSERTION_LIFETIME_SECS: i64 = 300;

/// A certificate's signing key and thumbprints.
pub(crate) struct CertificateSigner {
    key: EncodingKey,
    x5t_s256: String,
    x5t: Option<String>,
    x5c: Option<String>,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

impl CertificateSigner {
    /// Reads the first `CERTIFICATE` and the private key from a PEM bundle.
    pub(crate) fn from_pem(
        pem: &str,
        options: CertificateOptions,
    ) -> Result<Self, CredentialError> {
        let bad = |hint: String| CredentialError::Misconfigured {
            variable: env::AZURE_CLIENT_CERTIFICATE_PATH.into(),
            hint,
        };
        let cert_der = pem_block(pem, "CERTIFICATE").ok_or_else(|| {
            bad("the PEM has no CERTIFICATE block; it must hold the certificate and its private key".into())
        })?;
        // The key parser reads the first block, so hand it the key block alone.
        let key_pem = ["PRIVATE KEY", "RSA PRIVATE KEY"]
            .into_iter()
            .find_map(|label| pem_block_text(pem, label))
            .ok_or_else(|| {
                bad("the PEM has no PRIVATE KEY block; it must hold the certificate and its PKCS#8 RSA key".into())
            })?;
        let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).map_err(|e| {
            bad(format!(
                "the private key is not a usable RSA key ({e}); export it as PKCS#8 PEM"
            ))
        })?;
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cert_der);
        let sha1 =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der);
        Ok(Self {
            key,
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
            x5t: options
                .send_sha1_thumbprint
                .then(|| URL_SAFE_NO_PAD.encode(sha1.as_ref())),
            x5c: options
                .send_certificate_chain
                .then(|| STANDARD.encode(&cert_der)),
        })
    }

    /// A fresh assertion for `client_id` addressed to `token_endpoint`.
    pub(crate) fn assertion(
        &self,
        client_id: &str,
        token_endpoint: &str,
    ) -> Result<String, CredentialError> {
        let now = now_unix();
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| CredentialError::Misconfigured {
            variable: "system random number generator".into(),
            hint: "it failed; the assertion id cannot be generated".into(),
        })?;
        let claims = AssertionClaims {
            aud: token_endpoint,
            iss: client_id,
            sub: client_id,
            jti: hex::encode(jti),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.x5t_s256 = Some(self.x5t_s256.clone());
        header.x5t = self.x5t.clone();
        header.x5c = self.x5c.clone().map(|c| vec![c]);
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            CredentialError::Misconfigured {
                variable: env::AZURE_CLIENT_CERTIFICATE_PATH.into(),
                hint: format!("signing the client assertion failed: {e}"),
            }
        })
    }
}

/// The DER bytes of the first PEM block with this label.
fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let text = pem_block_text(pem, label)?;
    let armour = format!("-----BEGIN {label}-----").len();
    let trailer = format!("-----END {label}-----").len();
    let body: String = text[armour..text.len() - trailer]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// The first PEM block with this label, armour included.
fn pem_block_text<'a>(pem: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)?;
    let stop = start + pem[start..].find(&end)? + end.len();
    Some(&pem[start..stop])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_without_a_key_is_refused_with_the_variable_named() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = CertificateSigner::from_pem(pem, CertificateOptions::default())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("AZURE_CLIENT_CERTIFICATE_PATH"),
            "{err}"
        );
        assert!(err.to_string().contains("PRIVATE KEY"), "{err}");
    }

    #[test]
    fn pem_blocks_are_decoded() {
        let pem = "junk\n-----BEGIN CERTIFICATE-----\nAQID\nBA==\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_block(pem, "CERTIFICATE").unwrap(), vec![1, 2, 3, 4]);
        assert!(pem_block(pem, "PRIVATE KEY").is_none());
    }
}
