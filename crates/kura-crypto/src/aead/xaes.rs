//! XAES-256-GCM (C2SP) with a 32-byte key commitment.
//!
//! For a 256-bit key K and a 192-bit nonce N, XAES-256-GCM derives a per-message key with
//! the NIST SP 800-108r1 counter KDF over AES-256-CMAC:
//!
//! ```text
//! L  = AES-256_K(0¹²⁸)          K1 = L·x in GF(2¹²⁸) (the CMAC subkey; computed once per K)
//! Mi = [0x00, i] ‖ "X" ‖ 0x00 ‖ N[0..12]
//! Bi = CMAC_K(Mi) = AES-256_K(Mi ⊕ K1)    (one complete block, so CMAC is one AES call)
//! Kx = B1 ‖ B2                             (the AES-256-GCM key for this message)
//! ```
//!
//! and seals with AES-256-GCM under Kx and nonce N[12..24]. kura extends the same KDF by
//! two more blocks, **commitment = B3 ‖ B4**, stored beside the ciphertext and compared in
//! constant time before decrypting. Kx and the commitment are both outputs of one PRF
//! keyed by K, so no second key K′ can produce the same commitment for the same N
//! (a 256-bit collision, ≈2¹²⁸ work in the ideal-cipher model): a ciphertext opens under
//! exactly one key. The first two blocks are exactly XAES-256-GCM, so the C2SP vectors
//! check this code; a test also checks every block against aws-lc's own CMAC.

use aws_lc_rs::cipher::{AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use zeroize::Zeroize;

use super::{Aes256Gcm, TAG_LEN};
use crate::{Error, Key256, ct_eq};

/// Length of an XAES nonce.
pub const XAES_NONCE_LEN: usize = 24;
/// Length of the key commitment.
pub const XAES_COMMITMENT_LEN: usize = 32;

/// A key prepared for committing XAES-256-GCM: its AES key schedule and CMAC subkey.
pub struct XaesCommitting {
    ecb: EncryptingKey,
    /// `[0x00, i, 'X', 0x00, 0…0] ⊕ K1` for i = 1..=4: each derivation block is this with
    /// the nonce's first 12 bytes XORed into bytes 4..16.
    masked: [u128; 4],
}

impl XaesCommitting {
    /// Prepares `key`: one AES key schedule and one AES call for the CMAC subkey.
    pub fn new(key: &Key256) -> Result<Self, Error> {
        let lib = |_| Error::Library("AES-256 key setup");
        let ecb =
            EncryptingKey::ecb(UnboundCipherKey::new(&AES_256, key.expose_secret()).map_err(lib)?)
                .map_err(lib)?;
        let mut l = [0u8; 16];
        ecb.less_safe_encrypt(&mut l, EncryptionContext::None)
            .map_err(|_| Error::Library("AES-256 block"))?;
        let mut k1 = u128::from_be_bytes(dbl(&l));
        l.zeroize();
        let mut masked = [0u128; 4];
        for (i, m) in masked.iter_mut().enumerate() {
            let mut block = [0u8; 16];
            block[1] = i as u8 + 1;
            block[2] = b'X';
            *m = u128::from_be_bytes(block) ^ k1;
        }
        k1.zeroize();
        Ok(Self { ecb, masked })
    }

    /// The per-message key (`Kx`, 32 bytes) and commitment (32 bytes), in that order.
    fn derive(&self, nonce: &[u8; XAES_NONCE_LEN]) -> Result<[u8; 64], Error> {
        let mut n = [0u8; 16];
        n[4..].copy_from_slice(&nonce[..12]);
        let n = u128::from_be_bytes(n);
        let mut blocks = [0u8; 64];
        for (block, m) in blocks.chunks_exact_mut(16).zip(self.masked.iter()) {
            block.copy_from_slice(&(m ^ n).to_be_bytes());
        }
        self.ecb
            .less_safe_encrypt(&mut blocks, EncryptionContext::None)
            .map_err(|_| Error::Library("AES-256 block"))?;
        Ok(blocks)
    }

    fn gcm_nonce(nonce: &[u8; XAES_NONCE_LEN]) -> [u8; 12] {
        let mut n = [0u8; 12];
        n.copy_from_slice(&nonce[12..]);
        n
    }

    /// Derives the message key and commitment for `nonce`, so a format can place the
    /// commitment in a header that is itself bound as AAD before sealing.
    pub fn begin(
        &self,
        nonce: &[u8; XAES_NONCE_LEN],
    ) -> Result<(XaesMessage, [u8; XAES_COMMITMENT_LEN]), Error> {
        let mut d = self.derive(nonce)?;
        let mut commitment = [0u8; XAES_COMMITMENT_LEN];
        commitment.copy_from_slice(&d[32..]);
        let gcm = first_half(&d).and_then(Aes256Gcm::from_bytes);
        wipe(&mut d);
        Ok((
            XaesMessage {
                gcm: gcm?,
                nonce: Self::gcm_nonce(nonce),
            },
            commitment,
        ))
    }

    /// Seals `buf` in place; returns the commitment and the tag.
    pub fn seal_in_place(
        &self,
        nonce: &[u8; XAES_NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<([u8; XAES_COMMITMENT_LEN], [u8; TAG_LEN]), Error> {
        let (msg, commitment) = self.begin(nonce)?;
        Ok((commitment, msg.seal_in_place(aad, buf)?))
    }

    /// Checks the commitment in constant time, then verifies and decrypts `input` into
    /// `output` (same length). Any mismatch is [`Error::Decrypt`].
    pub fn open_out_of_place(
        &self,
        nonce: &[u8; XAES_NONCE_LEN],
        commitment: &[u8; XAES_COMMITMENT_LEN],
        aad: &[u8],
        input: &[u8],
        tag: &[u8; TAG_LEN],
        output: &mut [u8],
    ) -> Result<(), Error> {
        let gcm = self.checked_key(nonce, commitment)?;
        gcm.open_out_of_place(&Self::gcm_nonce(nonce), aad, input, tag, output)
    }

    /// The message key for `nonce`, if `commitment` is the one this key derives.
    fn checked_key(
        &self,
        nonce: &[u8; XAES_NONCE_LEN],
        commitment: &[u8; XAES_COMMITMENT_LEN],
    ) -> Result<Aes256Gcm, Error> {
        let mut d = self.derive(nonce)?;
        if !ct_eq(&d[32..], commitment) {
            wipe(&mut d);
            return Err(Error::Decrypt);
        }
        let gcm = first_half(&d).and_then(Aes256Gcm::from_bytes);
        wipe(&mut d);
        gcm
    }

    /// Checks the commitment in constant time, then verifies and decrypts `buf` in place.
    /// Any mismatch is [`Error::Decrypt`].
    pub fn open_in_place(
        &self,
        nonce: &[u8; XAES_NONCE_LEN],
        commitment: &[u8; XAES_COMMITMENT_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        let gcm = self.checked_key(nonce, commitment)?;
        gcm.open_in_place(&Self::gcm_nonce(nonce), aad, buf, tag)
    }
}

/// The AES-256-GCM key and nonce derived for one message; sealing consumes it, so the
/// pair is used once.
pub struct XaesMessage {
    gcm: Aes256Gcm,
    nonce: [u8; 12],
}

impl XaesMessage {
    /// Seals `buf` in place and returns the tag.
    pub fn seal_in_place(self, aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        self.gcm.seal_in_place(&self.nonce, aad, buf)
    }

    /// Seals `input` into `output` (same length) and returns the tag.
    pub fn seal_out_of_place(
        self,
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        self.gcm.seal_out_of_place(&self.nonce, aad, input, output)
    }
}

impl Drop for XaesCommitting {
    fn drop(&mut self) {
        self.masked.zeroize();
    }
}

/// Wipes derived key material on the stack: a plain (vectorised) fill that `black_box`
/// keeps the compiler from eliding. `zeroize`'s byte-wise volatile writes cost as much as
/// a quarter of a 256-byte seal on this hot path.
fn wipe(d: &mut [u8; 64]) {
    d.fill(0);
    std::hint::black_box(d);
}

fn first_half(d: &[u8; 64]) -> Result<&[u8; 32], Error> {
    d.first_chunk::<32>()
        .ok_or(Error::Library("XAES key derivation"))
}

/// Doubling in GF(2¹²⁸) with the CMAC polynomial x¹²⁸ + x⁷ + x² + x + 1 (SP 800-38B §6.1).
fn dbl(l: &[u8; 16]) -> [u8; 16] {
    let v = u128::from_be_bytes(*l);
    let r = (v << 1) ^ (if v >> 127 == 1 { 0x87 } else { 0 });
    r.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::cmac;

    fn c2sp(key_byte: u8, aad: &[u8], expect: &str) {
        let key = Key256::from_slice(&[key_byte; 32], "test").unwrap();
        let x = XaesCommitting::new(&key).unwrap();
        let nonce: [u8; 24] = *b"ABCDEFGHIJKLMNOPQRSTUVWX";
        let mut buf = b"XAES-256-GCM".to_vec();
        let (_, tag) = x.seal_in_place(&nonce, aad, &mut buf).unwrap();
        buf.extend_from_slice(&tag);
        assert_eq!(hex::encode(&buf), expect);
    }

    #[test]
    fn c2sp_vectors() {
        c2sp(
            0x01,
            b"",
            "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271",
        );
        c2sp(
            0x03,
            b"c2sp.org/XAES-256-GCM",
            "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d",
        );
    }

    #[test]
    fn derivation_matches_aws_lc_cmac() {
        for i in 0..32u8 {
            let key = Key256::generate().unwrap();
            let x = XaesCommitting::new(&key).unwrap();
            let mut nonce = [0u8; 24];
            crate::rng::fill(&mut nonce).unwrap();
            nonce[0] = i;
            let d = x.derive(&nonce).unwrap();
            let ck = cmac::Key::new(cmac::AES_256, key.expose_secret()).unwrap();
            for (j, block) in d.chunks_exact(16).enumerate() {
                let mut m = [0u8; 16];
                m[1] = j as u8 + 1;
                m[2] = b'X';
                m[4..].copy_from_slice(&nonce[..12]);
                assert_eq!(cmac::sign(&ck, &m).unwrap().as_ref(), block);
            }
        }
    }

    #[test]
    fn commitment_binds_the_key() {
        let k1 = Key256::generate().unwrap();
        let k2 = Key256::generate().unwrap();
        let (a, b) = (
            XaesCommitting::new(&k1).unwrap(),
            XaesCommitting::new(&k2).unwrap(),
        );
        let nonce = [9u8; 24];
        let mut buf = vec![1u8; 40];
        let (c, t) = a.seal_in_place(&nonce, b"", &mut buf).unwrap();
        let mut other = buf.clone();
        assert!(matches!(
            b.open_in_place(&nonce, &c, b"", &mut other, &t),
            Err(Error::Decrypt)
        ));
        let mut bad_c = c;
        bad_c[31] ^= 1;
        let mut same = buf.clone();
        assert!(matches!(
            a.open_in_place(&nonce, &bad_c, b"", &mut same, &t),
            Err(Error::Decrypt)
        ));
        a.open_in_place(&nonce, &c, b"", &mut buf, &t).unwrap();
        assert_eq!(buf, vec![1u8; 40]);
    }
}
