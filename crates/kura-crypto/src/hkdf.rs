//! HKDF-SHA256 (RFC 5869).

use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};

use crate::Error;

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 extract-and-expand of `ikm` with `salt` and the concatenation of `info`,
/// filling `out` (at most 255 × 32 bytes).
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<(), Error> {
    let prk = Salt::new(HKDF_SHA256, salt).extract(ikm);
    prk.expand(info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| Error::Library("HKDF-SHA256 (output longer than 8160 bytes?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let mut okm = [0u8; 42];
        hkdf_sha256(&salt, &ikm, &[&info], &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }
}
