//! Client secrets: generated here, shown once, stored as SHA-256.
//!
//! Why SHA-256 and not argon2: a slow password hash exists to make guessing
//! low-entropy human passwords expensive after a database leak. These secrets are
//! 256 bits from the OS random generator, so no guess is feasible whatever the hash
//! costs; a slow hash would only cut token throughput. Comparison is constant-time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;

/// A new secret in Entra's shape: a 3-character hint, `8Q~`, then 256 random bits.
/// Entra's secrets use `~`, `.`, `_` and `-` as well as letters and digits.
pub(crate) fn generate() -> String {
    let mut bytes = [0u8; 34];
    aws_lc_rs::rand::fill(&mut bytes).expect("the OS random generator failed");
    let body = URL_SAFE_NO_PAD.encode(&bytes[2..]);
    let hint = URL_SAFE_NO_PAD.encode(&bytes[..2]);
    format!("{}8Q~{body}", &hint[..3])
}

/// The stored form of a secret.
pub(crate) fn hash(secret: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// Constant-time comparison of a presented secret with a stored hash.
pub(crate) fn matches(presented: &str, stored: &[u8]) -> bool {
    bool::from(hash(presented).as_slice().ct_eq(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_verify_only_themselves() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(&a[3..6], "8Q~");
        assert!(a.len() >= 3 + 3 + 43);
        assert!(matches(&a, &hash(&a)));
        assert!(!matches(&b, &hash(&a)));
        assert!(!matches("", &hash(&a)));
    }
}
