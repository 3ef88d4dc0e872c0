//! Client assertions: certificate-signed JWTs (`private_key_jwt`) checked against
//! the application's uploaded certificates, and the rules both kinds of assertion share.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entraflow_core::Aadsts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::{AuthorityError, OAuthError};
use crate::store::{Store, now};

/// Longest lifetime Entra accepts for a certificate assertion (`exp - nbf`).
pub(crate) const MAX_ASSERTION_LIFETIME: i64 = 600;
/// Clock skew tolerated on `nbf` and `exp`.
pub(crate) const CLOCK_SKEW: i64 = 300;

/// The claims of a client assertion that matter.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AssertionClaims {
    #[serde(default)]
    pub(crate) iss: Option<String>,
    #[serde(default)]
    pub(crate) sub: Option<String>,
    #[serde(default)]
    pub(crate) aud: Option<Audience>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) nbf: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) iat: Option<i64>,
    #[serde(default)]
    pub(crate) jti: Option<String>,
}

/// A JWT NumericDate: RFC 7519 allows fractions, and MSAL Python sends them.
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let n: Option<serde_json::Number> = Option::deserialize(d)?;
    Ok(n.and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f.floor() as i64))))
}

/// A thumbprint header: base64url as the JOSE spec says, but clients also send
/// standard base64 with padding (MSAL Python does), which Entra accepts.
pub(crate) fn decode_thumbprint(value: &str) -> Option<Vec<u8>> {
    let normalized: String = value
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(normalized).ok()
}

/// `aud` is a string or an array of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(crate) fn values(&self) -> Vec<&str> {
        match self {
            Audience::One(a) => vec![a.as_str()],
            Audience::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// The header fields of an assertion that matter. Parsed leniently (unknown
/// fields ignored): MSAL, for one, sends `x5c` entries with embedded newlines.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AssertionHeader {
    alg: String,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default)]
    pub(crate) x5t: Option<String>,
    #[serde(default, rename = "x5t#S256")]
    pub(crate) x5t_s256: Option<String>,
}

impl AssertionHeader {
    /// The signing algorithm, if it is one `jsonwebtoken` knows.
    pub(crate) fn alg(&self) -> Option<Algorithm> {
        self.alg.parse().ok()
    }
}

/// Reads an assertion's header and claims without verifying anything yet.
pub(crate) fn peek(assertion: &str) -> Result<(AssertionHeader, AssertionClaims), OAuthError> {
    let malformed = || {
        OAuthError::new(
            Aadsts::MalformedRequest,
            "The client_assertion is not a well-formed JWT (three base64url parts with a JSON header and claims).",
        )
    };
    let mut parts = assertion.split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| malformed())
    };
    let header = serde_json::from_slice(&decode(h)?).map_err(|_| malformed())?;
    let claims = serde_json::from_slice(&decode(p)?).map_err(|_| malformed())?;
    Ok((header, claims))
}

/// Verifies only the signature (time and audience are checked by the caller, so
/// that each failure gets its own AADSTS code).
pub(crate) fn verify_signature(assertion: &str, alg: Algorithm, key: &DecodingKey) -> bool {
    let mut v = Validation::new(alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(assertion, key, &v).is_ok()
}

/// `exp` passed, `nbf` in the future → 700024.
pub(crate) fn check_time(
    claims: &AssertionClaims,
    max_lifetime: Option<i64>,
) -> Result<i64, OAuthError> {
    let now = now();
    let exp = claims.exp.ok_or_else(|| {
        OAuthError::new(
            Aadsts::AssertionTimeRange,
            "Client assertion has no 'exp' claim.",
        )
    })?;
    if exp + CLOCK_SKEW < now {
        return Err(OAuthError::new(
            Aadsts::AssertionTimeRange,
            format!(
                "Client assertion is not within its valid time range. Current time: {now}, assertion valid to: {exp}. A token file must be re-read before each exchange."
            ),
        ));
    }
    if let Some(nbf) = claims.nbf
        && nbf - CLOCK_SKEW > now
    {
        return Err(OAuthError::new(
            Aadsts::AssertionTimeRange,
            format!(
                "Client assertion is not within its valid time range. Current time: {now}, assertion valid from: {nbf}."
            ),
        ));
    }
    if let Some(max) = max_lifetime {
        let start = claims.nbf.or(claims.iat).unwrap_or(now);
        if exp - start > max {
            return Err(OAuthError::new(
                Aadsts::AssertionTimeRange,
                format!(
                    "Client assertion lifetime {}s exceeds the allowed {max}s (exp - nbf).",
                    exp - start
                ),
            ));
        }
    }
    Ok(exp)
}

/// Replay check shared by certificate and federated assertions.
pub(crate) fn refuse_replay(
    store: &Store,
    client_id: &str,
    claims: &AssertionClaims,
    exp: i64,
) -> Result<(), OAuthError> {
    let jti = claims
        .jti
        .as_deref()
        .filter(|j| !j.is_empty())
        .ok_or_else(|| {
            OAuthError::new(
                Aadsts::MalformedRequest,
                "Client assertion has no 'jti' claim; each assertion needs a unique one.",
            )
        })?;
    if !store.consume_jti(client_id, jti, exp)? {
        return Err(OAuthError::new(
            Aadsts::AssertionReplayed,
            format!(
                "The client assertion with jti '{jti}' was already used. Create a new assertion for each request."
            ),
        ));
    }
    Ok(())
}

/// Checks a certificate assertion for `client_id`. `audiences` are the token
/// endpoint URLs the assertion may name.
pub(crate) fn verify_certificate_assertion(
    store: &Store,
    client_id: &str,
    assertion: &str,
    header: &AssertionHeader,
    claims: &AssertionClaims,
    audiences: &[String],
) -> Result<(), OAuthError> {
    let alg = match header.alg() {
        Some(alg @ (Algorithm::RS256 | Algorithm::PS256)) => alg,
        _ => {
            return Err(OAuthError::new(
                Aadsts::AssertionSignatureInvalid,
                format!(
                    "Client assertion algorithm '{}' is not supported; use RS256 or PS256.",
                    header.alg
                ),
            ));
        }
    };
    let decode = |s: &Option<String>| s.as_deref().and_then(decode_thumbprint);
    let sha1 = decode(&header.x5t);
    let sha256 = decode(&header.x5t_s256);
    if sha1.is_none() && sha256.is_none() {
        return Err(OAuthError::new(
            Aadsts::AssertionSignatureInvalid,
            "Client assertion header has no 'x5t' or 'x5t#S256' thumbprint of a registered certificate.",
        ));
    }
    let (der, end_at) = store
        .certificate_by_thumbprint(client_id, sha1.as_deref(), sha256.as_deref())?
        .ok_or_else(|| {
            OAuthError::new(
                Aadsts::AssertionSignatureInvalid,
                format!("Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{}']",
                    hex::encode_upper(sha1.or(sha256).unwrap_or_default())),
            )
        })?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| AuthorityError::Crypto(format!("stored certificate unreadable: {e}")))?;
    let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = cert.public_key().parsed() else {
        return Err(AuthorityError::Crypto("stored certificate has no RSA key".into()).into());
    };
    // DER integers carry a leading zero byte when the high bit is set; the raw
    // big-endian components must not.
    let strip = |b: &[u8]| -> Vec<u8> {
        let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
        b[start..].to_vec()
    };
    let key = DecodingKey::from_rsa_raw_components(&strip(rsa.modulus), &strip(rsa.exponent));
    if !verify_signature(assertion, alg, &key) {
        return Err(OAuthError::new(
            Aadsts::AssertionSignatureInvalid,
            "Client assertion contains an invalid signature. [Reason - The signature does not verify with the registered certificate.]",
        ));
    }
    if end_at < now() {
        return Err(OAuthError::new(
            Aadsts::AssertionSignatureInvalid,
            "The certificate used to sign the client assertion has expired; upload a new one.",
        ));
    }
    if claims.iss.as_deref() != Some(client_id) || claims.sub.as_deref() != Some(client_id) {
        return Err(OAuthError::new(
            Aadsts::AssertionSignatureInvalid,
            format!("Client assertion 'iss' and 'sub' must both be the client id '{client_id}'."),
        ));
    }
    let aud_ok = claims.aud.as_ref().is_some_and(|a| {
        a.values()
            .iter()
            .any(|v| audiences.iter().any(|x| x.eq_ignore_ascii_case(v)))
    });
    if !aud_ok {
        return Err(OAuthError::new(
            Aadsts::AssertionAudienceInvalid,
            format!(
                "Client assertion audience claim does not match Realm issuer; 'aud' must be the token endpoint, e.g. '{}'.",
                audiences.first().map(String::as_str).unwrap_or_default()
            ),
        ));
    }
    let exp = check_time(claims, Some(MAX_ASSERTION_LIFETIME))?;
    refuse_replay(store, client_id, claims, exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(nbf: Option<i64>, exp: Option<i64>) -> AssertionClaims {
        AssertionClaims {
            iss: None,
            sub: None,
            aud: None,
            exp,
            nbf,
            iat: nbf,
            jti: Some("j".into()),
        }
    }

    #[test]
    fn time_checks_give_700024() {
        let t = now();
        assert!(
            check_time(
                &claims(Some(t), Some(t + 600)),
                Some(MAX_ASSERTION_LIFETIME)
            )
            .is_ok()
        );
        for (c, max) in [
            (claims(Some(t), Some(t + 601)), Some(MAX_ASSERTION_LIFETIME)),
            (claims(Some(t - 2000), Some(t - CLOCK_SKEW - 1)), None),
            (claims(Some(t + CLOCK_SKEW + 60), Some(t + 600)), None),
            (claims(Some(t), None), None),
        ] {
            assert_eq!(
                check_time(&c, max).unwrap_err().code,
                Aadsts::AssertionTimeRange
            );
        }
        // Federated tokens (an hour, no 10-minute cap) pass without a max.
        assert!(check_time(&claims(Some(t), Some(t + 3600)), None).is_ok());
    }

    #[test]
    fn jti_is_single_use_per_client() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = now();
        let c = claims(Some(t), Some(t + 60));
        assert!(refuse_replay(&store, "app", &c, t + 60).is_ok());
        assert_eq!(
            refuse_replay(&store, "app", &c, t + 60).unwrap_err().code,
            Aadsts::AssertionReplayed
        );
        assert!(refuse_replay(&store, "other-app", &c, t + 60).is_ok());
        let no_jti = AssertionClaims { jti: None, ..c };
        assert_eq!(
            refuse_replay(&store, "app", &no_jti, t + 60)
                .unwrap_err()
                .code,
            Aadsts::MalformedRequest
        );
    }

    #[test]
    fn lenient_parsing_of_what_real_clients_send() {
        assert_eq!(
            decode_thumbprint("FrQQ9h8zrLVmWJ5yzCaYUnA3D5c="),
            decode_thumbprint("FrQQ9h8zrLVmWJ5yzCaYUnA3D5c")
        );
        assert_eq!(decode_thumbprint("ab+/"), decode_thumbprint("ab-_"));
        let c: AssertionClaims =
            serde_json::from_str(r#"{"exp": 1795712806.41, "iat": 10, "aud": ["a", "b"]}"#)
                .unwrap();
        assert_eq!((c.exp, c.iat, c.nbf), (Some(1795712806), Some(10), None));
        assert_eq!(c.aud.unwrap().values(), vec!["a", "b"]);
        assert!(peek("a.b").is_err());
        assert!(peek("a.b.c.d").is_err());
    }
}
