//! CTR keystreams: AES-128/192/256-CTR (aws-lc) and SM4-CTR (RustCrypto), with the IV taken
//! as one 128-bit big-endian counter, as TiKV does, so a file can be read at any offset.

use aws_lc_rs::cipher::{
    AES_128, AES_192, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use ctr::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

use crate::{Error, SecretBytes};

/// A CTR cipher and its key size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CtrMethod {
    /// AES-128-CTR, 16-byte key.
    Aes128,
    /// AES-192-CTR, 24-byte key.
    Aes192,
    /// AES-256-CTR, 32-byte key.
    Aes256,
    /// SM4-CTR (GB/T 32907), 16-byte key.
    Sm4,
}

impl CtrMethod {
    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128 | Self::Sm4 => 16,
            Self::Aes192 => 24,
            Self::Aes256 => 32,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Aes128 => "AES-128-CTR",
            Self::Aes192 => "AES-192-CTR",
            Self::Aes256 => "AES-256-CTR",
            Self::Sm4 => "SM4-CTR",
        }
    }
}

enum Engine {
    Aes(Box<EncryptingKey>),
    Sm4(SecretBytes),
}

/// A CTR keystream generator for one key and initial counter block.
pub struct CtrCipher {
    engine: Engine,
    iv: [u8; 16],
}

type Sm4Ctr = ctr::Ctr128BE<sm4::Sm4>;

impl CtrCipher {
    /// Prepares `method` with `key` (of [`CtrMethod::key_len`] bytes) and initial counter `iv`.
    pub fn new(method: CtrMethod, key: &[u8], iv: [u8; 16]) -> Result<Self, Error> {
        if key.len() != method.key_len() {
            return Err(Error::KeySize {
                what: method.name(),
                expected: method.key_len(),
                actual: key.len(),
            });
        }
        let engine = match method {
            CtrMethod::Sm4 => Engine::Sm4(SecretBytes::new(key.to_vec())),
            aes => {
                let alg = match aes {
                    CtrMethod::Aes128 => &AES_128,
                    CtrMethod::Aes192 => &AES_192,
                    _ => &AES_256,
                };
                let lib = |_| Error::Library("AES-CTR key setup");
                Engine::Aes(Box::new(
                    EncryptingKey::ctr(UnboundCipherKey::new(alg, key).map_err(lib)?)
                        .map_err(lib)?,
                ))
            }
        };
        Ok(Self { engine, iv })
    }

    /// XORs the keystream starting at byte `offset` into `buf` (encryption and decryption
    /// are the same operation).
    pub fn apply_keystream(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        match &self.engine {
            Engine::Aes(key) => {
                let skip = (offset % 16) as usize;
                let mut counter =
                    u128::from_be_bytes(self.iv).wrapping_add(u128::from(offset / 16));
                let mut rest: &mut [u8] = buf;
                if skip != 0 {
                    let n = rest.len().min(16 - skip);
                    let mut block = [0u8; 16];
                    block[skip..skip + n].copy_from_slice(&rest[..n]);
                    aes_ctr(key, counter, &mut block)?;
                    rest[..n].copy_from_slice(&block[skip..skip + n]);
                    rest = &mut rest[n..];
                    counter = counter.wrapping_add(1);
                }
                if !rest.is_empty() {
                    aes_ctr(key, counter, rest)?;
                }
                Ok(())
            }
            Engine::Sm4(key) => {
                // SM4's key schedule is cheap; building it per call keeps no copy of the
                // round keys outside a zeroizing type.
                let mut c = Sm4Ctr::new_from_slices(key.expose_secret(), &self.iv)
                    .map_err(|_| Error::Library("SM4 key setup"))?;
                c.try_seek(offset)
                    .map_err(|_| Error::Library("SM4-CTR seek"))?;
                c.try_apply_keystream(buf)
                    .map_err(|_| Error::Library("SM4-CTR keystream"))
            }
        }
    }
}

fn aes_ctr(key: &EncryptingKey, counter: u128, buf: &mut [u8]) -> Result<(), Error> {
    let ctx = EncryptionContext::Iv128(counter.to_be_bytes().into());
    key.less_safe_encrypt(buf, ctx)
        .map(|_| ())
        .map_err(|_| Error::Library("AES-CTR keystream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystream_at_any_offset_matches_the_whole() {
        for method in [
            CtrMethod::Aes128,
            CtrMethod::Aes192,
            CtrMethod::Aes256,
            CtrMethod::Sm4,
        ] {
            let key = vec![0x42u8; method.key_len()];
            // A counter near the 64-bit boundary checks the carry into the high half.
            let mut iv = [0xffu8; 16];
            iv[0] = 0;
            let c = CtrCipher::new(method, &key, iv).unwrap();
            let mut whole = vec![0u8; 300];
            c.apply_keystream(0, &mut whole).unwrap();
            for off in [1usize, 15, 16, 17, 33, 250] {
                let mut part = vec![0u8; 300 - off];
                c.apply_keystream(off as u64, &mut part).unwrap();
                assert_eq!(part, whole[off..], "{method:?} at {off}");
            }
        }
    }

    #[test]
    fn wrong_key_size() {
        assert!(matches!(
            CtrCipher::new(CtrMethod::Sm4, &[0u8; 32], [0; 16]),
            Err(Error::KeySize {
                expected: 16,
                actual: 32,
                ..
            })
        ));
    }
}
