//! Key material types. They zeroize on drop and implement no `Debug`, `Clone`,
//! `PartialEq` or `Serialize`, so a key cannot be printed, copied or compared by accident.

use zeroize::Zeroize;

use crate::{Error, rng};

/// A 256-bit secret key (master key, KEK, data key, or KMS key material).
///
/// The bytes live in their own heap allocation, locked in memory where the OS allows it,
/// and are overwritten with zeros when the value is dropped.
pub struct Key256(Box<[u8; 32]>);

impl Key256 {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// A new key from the system random number generator.
    pub fn generate() -> Result<Self, Error> {
        let mut k = Box::new([0u8; 32]);
        rng::fill(&mut k[..])?;
        Ok(Self::locked(k))
    }

    /// Copies a key out of `bytes`, which must be exactly 32 bytes. The caller remains
    /// responsible for wiping `bytes`.
    pub fn from_slice(bytes: &[u8], what: &'static str) -> Result<Self, Error> {
        if bytes.len() != Self::LEN {
            return Err(Error::KeySize {
                what,
                expected: Self::LEN,
                actual: bytes.len(),
            });
        }
        let mut k = Box::new([0u8; 32]);
        k.copy_from_slice(bytes);
        Ok(Self::locked(k))
    }

    fn locked(k: Box<[u8; 32]>) -> Self {
        kura_sys::lock_memory(&k[..]);
        Self(k)
    }

    /// The key bytes. Named so that every use is easy to find in review.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for Key256 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Secret bytes of any length (CTR keys of 16 or 24 bytes, decrypted key material).
pub struct SecretBytes(Box<[u8]>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are zeroized when this value is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        let b = bytes.into_boxed_slice();
        kura_sys::lock_memory(&b);
        Self(b)
    }

    /// `len` random bytes.
    pub fn generate(len: usize) -> Result<Self, Error> {
        let mut v = vec![0u8; len];
        rng::fill(&mut v)?;
        Ok(Self::new(v))
    }

    /// The secret bytes.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// The secret bytes, writable (to decrypt in place).
    pub fn expose_secret_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_size_is_named() {
        let e = Key256::from_slice(&[0u8; 16], "master key").err().unwrap();
        assert_eq!(
            e.to_string(),
            "wrong key size for master key: it must be 32 bytes, but is 16"
        );
    }

    #[test]
    fn generated_keys_differ() {
        let a = Key256::generate().unwrap();
        let b = Key256::generate().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(SecretBytes::generate(24).unwrap().len(), 24);
    }
}
