//! Reading a token's claims for display (`whoami`, `doctor`). Not validation: the
//! resource validates; a client only looks.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entraflow_core::AccessTokenClaims;

use crate::error::CredentialError;

/// The claims of a JWT access token, signature *not* checked.
pub fn decode_unverified(token: &str) -> Result<AccessTokenClaims, CredentialError> {
    let bad = |hint: &str| CredentialError::UnexpectedResponse {
        url: String::new(),
        status: 200,
        detail: format!(
            "the access token ({}) is not a readable JWT: {hint}",
            entraflow_core::fingerprint(token)
        ),
    };
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| bad("it has no payload part"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad("the payload is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| bad("the payload is not a claims object"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_from_the_payload() {
        let claims = serde_json::json!({"aud":"https://storage.azure.com","iss":"i","iat":1,"nbf":1,"exp":2,
            "tid":"t","oid":"o","sub":"s","ver":"1.0","uti":"u","appid":"a","roles":["r"]});
        let token = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let decoded = decode_unverified(&token).unwrap();
        assert_eq!(decoded.oid, "o");
        assert_eq!(decoded.client_app_id(), Some("a"));
        assert_eq!(decoded.roles.as_deref(), Some(&["r".to_owned()][..]));
        let err = decode_unverified("not-a-jwt").unwrap_err().to_string();
        assert!(err.contains("sha256:"), "{err}");
    }
}
