//! Content integrity as Azure Storage checks it: the MD5 and CRC-64 of a body,
//! computed while it streams, held against `Content-MD5` / `x-ms-content-crc64`
//! before the upload is committed (a mismatch stores nothing).
//!
//! CRC-64 is CRC-64/NVME (reflected polynomial `0x9A6C9329AC4BC9B5`, all-ones
//! init and final xor), sent as the base64 of its little-endian bytes, as the Go
//! SDK (`azblob`) computes it.

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest, Md5};

use crate::error::StorageError;
use crate::guard::header;

const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_NVME);

/// The checksums a client sent for a body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Expected {
    md5: Option<[u8; 16]>,
    crc64: Option<u64>,
}

impl Expected {
    /// `Content-MD5` and `x-ms-content-crc64` of a request (the body's transport
    /// checksums); malformed values are 400 `InvalidHeaderValue`.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, StorageError> {
        let md5 = header(headers, "content-md5")
            .map(|v| parse_md5("Content-MD5", v))
            .transpose()?;
        let crc64 = header(headers, "x-ms-content-crc64")
            .map(|v| {
                B64.decode(v)
                    .ok()
                    .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                    .map(u64::from_le_bytes)
                    .ok_or_else(|| StorageError::invalid_header_value("x-ms-content-crc64", v))
            })
            .transpose()?;
        if md5.is_some() && crc64.is_some() {
            return Err(StorageError::new(
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                "One of the request inputs is not valid.",
            )
            .detail("Reason", "send Content-MD5 or x-ms-content-crc64, not both"));
        }
        Ok(Self { md5, crc64 })
    }
}

/// A base64 MD5 header value (16 bytes), or 400 `InvalidHeaderValue` naming it.
pub(crate) fn parse_md5(name: &str, value: &str) -> Result<[u8; 16], StorageError> {
    B64.decode(value)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| StorageError::invalid_header_value(name, value))
}

/// MD5 and CRC-64 of a body, fed chunk by chunk.
pub(crate) struct Digests {
    md5: Md5,
    crc64: crc::Digest<'static, u64>,
}

impl Default for Digests {
    fn default() -> Self {
        Self {
            md5: Md5::new(),
            crc64: CRC64.digest(),
        }
    }
}

/// What a whole body hashed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sums {
    pub(crate) md5: [u8; 16],
    pub(crate) crc64: u64,
}

impl Sums {
    /// The MD5 as Azure writes it in `Content-MD5`.
    pub(crate) fn md5_base64(&self) -> String {
        B64.encode(self.md5)
    }

    /// The CRC-64 as Azure writes it in `x-ms-content-crc64`.
    pub(crate) fn crc64_base64(&self) -> String {
        B64.encode(self.crc64.to_le_bytes())
    }

    /// 400 `Md5Mismatch` / `Crc64Mismatch` when the client's checksum differs.
    pub(crate) fn check(&self, expected: &Expected) -> Result<(), StorageError> {
        if let Some(md5) = expected.md5
            && md5 != self.md5
        {
            return Err(StorageError::new(
                StatusCode::BAD_REQUEST,
                "Md5Mismatch",
                "The MD5 value specified in the request did not match with the MD5 value calculated by the server.",
            )
            .detail("UserSpecifiedMd5", B64.encode(md5))
            .detail("ServerCalculatedMd5", self.md5_base64()));
        }
        if let Some(crc) = expected.crc64
            && crc != self.crc64
        {
            return Err(StorageError::new(
                StatusCode::BAD_REQUEST,
                "Crc64Mismatch",
                "The CRC64 value specified in the request did not match with the CRC64 value calculated by the server.",
            )
            .detail("UserSpecifiedCrc64", B64.encode(crc.to_le_bytes()))
            .detail("ServerCalculatedCrc64", self.crc64_base64()));
        }
        Ok(())
    }
}

impl Digests {
    pub(crate) fn update(&mut self, chunk: &[u8]) {
        self.md5.update(chunk);
        self.crc64.update(chunk);
    }

    /// The checksums of what was fed so far.
    pub(crate) fn sums(&self) -> Sums {
        Sums {
            md5: self.md5.clone().finalize().into(),
            crc64: self.crc64.clone().finalize(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5_base64(bytes: &[u8]) -> String {
        B64.encode(Md5::digest(bytes))
    }

    fn sums(data: &[u8]) -> Sums {
        let mut d = Digests::default();
        let (a, b) = data.split_at(data.len() / 2);
        d.update(a);
        d.update(b);
        d.sums()
    }

    #[test]
    fn checksums_match_their_reference_values() {
        let s = sums(b"123456789");
        // CRC-64/NVME's published check value.
        assert_eq!(s.crc64, 0xae8b_1486_0a79_9888);
        // RFC 1321's test suite: MD5("abc").
        assert_eq!(
            hex::encode(sums(b"abc").md5),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(md5_base64(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }

    #[test]
    fn mismatches_are_refused_with_both_values() {
        let s = sums(b"payload");
        let mut headers = HeaderMap::new();
        headers.insert("content-md5", md5_base64(b"other").parse().unwrap());
        let err = s
            .check(&Expected::from_headers(&headers).unwrap())
            .unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::BAD_REQUEST, "Md5Mismatch")
        );
        assert!(
            err.details
                .iter()
                .any(|(k, v)| *k == "ServerCalculatedMd5" && *v == s.md5_base64())
        );
        headers.insert("content-md5", s.md5_base64().parse().unwrap());
        assert!(s.check(&Expected::from_headers(&headers).unwrap()).is_ok());

        let mut headers = HeaderMap::new();
        headers.insert("x-ms-content-crc64", s.crc64_base64().parse().unwrap());
        assert!(s.check(&Expected::from_headers(&headers).unwrap()).is_ok());
        headers.insert("x-ms-content-crc64", "AAAAAAAAAAA=".parse().unwrap());
        assert_eq!(
            s.check(&Expected::from_headers(&headers).unwrap())
                .unwrap_err()
                .code,
            "Crc64Mismatch"
        );
        headers.insert("x-ms-content-crc64", "not base64!".parse().unwrap());
        assert_eq!(
            Expected::from_headers(&headers).unwrap_err().code,
            "InvalidHeaderValue"
        );
    }
}
