//! HMAC-SHA256 (RFC 2104 / FIPS 198-1) and SHA-256 (FIPS 180-4), from aws-lc.

use aws_lc_rs::{digest, hmac};

use crate::Error;

/// Length of an HMAC-SHA256 tag and of a SHA-256 digest.
pub const SHA256_LEN: usize = 32;

/// HMAC-SHA256 under `key` of the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; SHA256_LEN] {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; SHA256_LEN];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// Checks in constant time that `tag` is the HMAC-SHA256 under `key` of the concatenation
/// of `parts`; any mismatch is the opaque [`Error::Decrypt`].
pub fn hmac_sha256_verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> Result<(), Error> {
    let expected = hmac_sha256(key, parts);
    if crate::ct_eq(&expected, tag) {
        Ok(())
    } else {
        Err(Error::Decrypt)
    }
}

/// SHA-256 of the concatenation of `parts` (an unkeyed checksum: it detects damage, not
/// deliberate change).
pub fn sha256(parts: &[&[u8]]) -> [u8; SHA256_LEN] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; SHA256_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        let tag = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        hmac_sha256_verify(b"Jefe", &[b"what do ya want for nothing?"], &tag).unwrap();
        let mut bad = tag;
        bad[31] ^= 1;
        assert!(matches!(
            hmac_sha256_verify(b"Jefe", &[b"what do ya want for nothing?"], &bad),
            Err(Error::Decrypt)
        ));
        assert!(hmac_sha256_verify(b"Jefe", &[b"x"], &tag[..16]).is_err());
    }

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            hex::encode(sha256(&[b"a", b"bc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
