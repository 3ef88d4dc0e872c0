//! User passwords for the device-login page, hashed with argon2id: people choose
//! guessable passwords, so a leaked database must make each guess expensive.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::AuthorityError;

/// The PHC string of `password`.
pub(crate) fn hash(password: &str) -> Result<String, AuthorityError> {
    if password.len() < 8 {
        return Err(AuthorityError::invalid(
            "the password is too short; use at least 8 characters",
        ));
    }
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| AuthorityError::Crypto("random salt".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthorityError::Crypto(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthorityError::Crypto(e.to_string()))
}

/// Whether `password` matches the stored PHC string.
pub(crate) fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_verify_only_the_password() {
        let h = super::hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("wrong horse", &h));
        assert!(super::hash("short").is_err());
    }
}
