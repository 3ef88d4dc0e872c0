//! Secrets that never print, and fingerprints to refer to tokens in logs.

use aws_lc_rs::digest;

/// A secret string (client secret, token, private key PEM). `Debug` and `Display`
/// print `Secret(****)`; the value is reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value. Call sites are the only places a secret can leak: keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// A short, stable, non-reversible name for a token or secret: `sha256:` and the
/// first 12 hex digits of its SHA-256. Safe for logs and error messages.
pub fn fingerprint(value: &str) -> String {
    let d = digest::digest(&digest::SHA256, value.as_bytes());
    format!("sha256:{}", &hex::encode(d.as_ref())[..12])
}

/// Full SHA-256 of a value, hex-encoded (cache keys, stored hashes).
pub fn sha256_hex(value: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, value).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2-super-secret");
        assert!(!format!("{s:?}{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-super-secret");
    }

    #[test]
    fn fingerprint_is_short_and_stable() {
        let f = fingerprint("eyJ0eXAiOiJKV1QifQ.payload.sig");
        assert_eq!(f, fingerprint("eyJ0eXAiOiJKV1QifQ.payload.sig"));
        assert_eq!(f.len(), "sha256:".len() + 12);
        assert_ne!(f, fingerprint("other"));
    }
}
