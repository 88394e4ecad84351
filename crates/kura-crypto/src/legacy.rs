//! Legacy AES-128-CBC with PKCS#7 padding: the scheme of old application data (Looker's
//! "AES-128-CBC Legacy"). Decryption exists to migrate such data; encryption exists for
//! tests and for producing legacy fixtures. CBC is unauthenticated: never use it for new
//! data.

use aws_lc_rs::cipher::{
    AES_128, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};

use crate::Error;

/// Key length of AES-128.
pub const KEY_LEN: usize = 16;
/// Length of the CBC IV.
pub const IV_LEN: usize = 16;

fn key(bytes: &[u8]) -> Result<UnboundCipherKey, Error> {
    if bytes.len() != KEY_LEN {
        return Err(Error::KeySize {
            what: "legacy AES-128-CBC",
            expected: KEY_LEN,
            actual: bytes.len(),
        });
    }
    UnboundCipherKey::new(&AES_128, bytes).map_err(|_| Error::Library("AES-128 key setup"))
}

/// Encrypts `plaintext` with AES-128-CBC/PKCS#7 under `key` and `iv`.
pub fn encrypt_cbc(key_bytes: &[u8], iv: [u8; IV_LEN], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let k = PaddedBlockEncryptingKey::cbc_pkcs7(key(key_bytes)?)
        .map_err(|_| Error::Library("AES-128-CBC"))?;
    let mut buf = plaintext.to_vec();
    k.less_safe_encrypt(&mut buf, EncryptionContext::Iv128(iv.into()))
        .map_err(|_| Error::Library("AES-128-CBC encrypt"))?;
    Ok(buf)
}

/// Decrypts AES-128-CBC/PKCS#7 `ciphertext`. A bad length or padding is [`Error::Decrypt`].
pub fn decrypt_cbc(
    key_bytes: &[u8],
    iv: [u8; IV_LEN],
    ciphertext: &[u8],
) -> Result<Vec<u8>, Error> {
    let k = PaddedBlockDecryptingKey::cbc_pkcs7(key(key_bytes)?)
        .map_err(|_| Error::Library("AES-128-CBC"))?;
    let mut buf = ciphertext.to_vec();
    let n = k
        .decrypt(&mut buf, DecryptionContext::Iv128(iv.into()))
        .map_err(|_| Error::Decrypt)?
        .len();
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_padding() {
        let k = [3u8; 16];
        let ct = encrypt_cbc(&k, [1; 16], b"legacy secret").unwrap();
        assert_eq!(ct.len(), 16);
        assert_eq!(decrypt_cbc(&k, [1; 16], &ct).unwrap(), b"legacy secret");
        assert!(decrypt_cbc(&k, [1; 16], &ct[..15]).is_err());
    }
}
