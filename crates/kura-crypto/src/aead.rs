//! AEAD: AES-256-GCM under a pre-built key, and committing XAES-256-GCM.

mod xaes;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

pub use xaes::{XAES_COMMITMENT_LEN, XAES_NONCE_LEN, XaesCommitting, XaesMessage};

use crate::{Error, Key256};

/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Length of an AES-GCM nonce.
pub const GCM_NONCE_LEN: usize = 12;

/// SP 800-38D: at most 2³⁹−256 bits of plaintext per invocation.
const GCM_MAX_INPUT: u64 = (1u64 << 36) - 32;

/// AES-256-GCM under one pre-built key.
///
/// The caller chooses the nonces and must never repeat one under the same key: kura uses
/// it only with counter nonces under a key derived for one stream.
pub struct Aes256Gcm(LessSafeKey);

impl Aes256Gcm {
    /// Prepares `key` for sealing and opening.
    pub fn new(key: &Key256) -> Result<Self, Error> {
        Self::from_bytes(key.expose_secret())
    }

    pub(crate) fn from_bytes(key: &[u8; 32]) -> Result<Self, Error> {
        let k = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| Error::Library("AES-256-GCM key setup"))?;
        Ok(Self(LessSafeKey::new(k)))
    }

    /// Encrypts `buf` in place and returns the tag.
    pub fn seal_in_place(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        if buf.len() as u64 > GCM_MAX_INPUT {
            return Err(Error::TooLarge(buf.len() as u64));
        }
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map_err(|_| Error::Library("AES-256-GCM seal"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Encrypts `input` into `output` (same length) and returns the tag: one pass over
    /// the data, no copy.
    pub fn seal_out_of_place(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        if input.len() as u64 > GCM_MAX_INPUT {
            return Err(Error::TooLarge(input.len() as u64));
        }
        if input.len() != output.len() {
            return Err(Error::Library(
                "AES-256-GCM seal: output length differs from input",
            ));
        }
        let mut tag = [0u8; TAG_LEN];
        self.0
            .seal_out_of_place_scatter(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                input,
                output,
                &[],
                &mut tag,
            )
            .map_err(|_| Error::Library("AES-256-GCM seal"))?;
        Ok(tag)
    }

    /// Verifies `tag` and decrypts `input` into `output` (same length). On failure
    /// `output` holds no plaintext.
    pub fn open_out_of_place(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        aad: &[u8],
        input: &[u8],
        tag: &[u8; TAG_LEN],
        output: &mut [u8],
    ) -> Result<(), Error> {
        if input.len() != output.len() {
            return Err(Error::Decrypt);
        }
        self.0
            .open_separate_gather(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                input,
                tag,
                output,
            )
            .map_err(|_| {
                output.fill(0);
                Error::Decrypt
            })
    }

    /// Verifies `tag` and decrypts `buf` in place. On failure `buf` holds no plaintext.
    pub fn open_in_place(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        self.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                tag,
                buf,
            )
            .map(|_| ())
            .map_err(|_| {
                buf.fill(0);
                Error::Decrypt
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcm_round_trip_and_tamper() {
        let key = Key256::generate().unwrap();
        let g = Aes256Gcm::new(&key).unwrap();
        let n = [7u8; 12];
        let mut buf = b"hello world".to_vec();
        let tag = g.seal_in_place(&n, b"aad", &mut buf).unwrap();
        let ct = buf.clone();
        g.open_in_place(&n, b"aad", &mut buf, &tag).unwrap();
        assert_eq!(buf, b"hello world");
        let mut bad = ct.clone();
        assert!(matches!(
            g.open_in_place(&n, b"aaD", &mut bad, &tag),
            Err(Error::Decrypt)
        ));
        assert!(bad.iter().all(|&b| b == 0));
    }

    #[test]
    fn out_of_place_matches_in_place() {
        let key = Key256::generate().unwrap();
        let g = Aes256Gcm::new(&key).unwrap();
        let n = [9u8; 12];
        let pt = vec![0x33u8; 1000];
        let mut inplace = pt.clone();
        let t1 = g.seal_in_place(&n, b"a", &mut inplace).unwrap();
        let mut out = vec![0u8; 1000];
        let t2 = g.seal_out_of_place(&n, b"a", &pt, &mut out).unwrap();
        assert_eq!((inplace.clone(), t1), (out.clone(), t2));
        let mut back = vec![0u8; 1000];
        g.open_out_of_place(&n, b"a", &out, &t2, &mut back).unwrap();
        assert_eq!(back, pt);
        out[0] ^= 1;
        assert!(matches!(
            g.open_out_of_place(&n, b"a", &out, &t2, &mut back),
            Err(Error::Decrypt)
        ));
        assert!(back.iter().all(|&b| b == 0));
    }
}
