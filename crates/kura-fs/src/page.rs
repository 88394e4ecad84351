//! The page mode (`aes256-gcm-page`): files rewritten in place, stored as a sequence of
//! authenticated units, one per 4 KiB page of plaintext.
//!
//! A unit is [`UNIT`] bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 0..12 | nonce, fresh and random for every write of the unit |
//! | 12..14 | `used`: plaintext bytes of the page in use (u16 BE; 1..=4096, 4096 but in the last unit) |
//! | 14..16 | reserved, zero |
//! | 16..4112 | the page encrypted with AES-256-GCM (bytes past `used` are zero before encryption) |
//! | 4112..4128 | the GCM tag |
//!
//! The key is the file's own (derived from a data key with the file's random salt); the
//! associated data is `"kura-fs page v1" ‖ salt ‖ page index (u64 BE) ‖ bytes 12..16`, so a
//! flipped bit, a unit moved to another index, or a unit from another file fails to open.
//! The file's plaintext length is `(units - 1) × 4096 + used(last unit)`; a file of whole
//! units only. Nonces are random per write under a per-file key: 2^32 writes of one file
//! keep the chance of a repeated nonce below 2^-33 (`kura fs reencrypt` gives a file a
//! new key).

use kura_crypto::{Aes256Gcm, Key256};

use crate::Error;

/// Plaintext bytes per page.
pub const PAGE: usize = 4096;
/// Stored bytes per page.
pub const UNIT: usize = 12 + 4 + PAGE + 16;
const NONCE: usize = 12;
const TAG_AT: usize = UNIT - 16;
const DOMAIN: &[u8] = b"kura-fs page v1";

/// The cipher of one file's pages.
pub struct PageCipher {
    aead: Aes256Gcm,
    salt: [u8; 16],
}

impl PageCipher {
    /// The pages of the file with `salt`, under its 32-byte `key`.
    pub fn new(key: &[u8], salt: [u8; 16]) -> Result<Self, Error> {
        let key = Key256::from_slice(key, "page key")?;
        Ok(Self {
            aead: Aes256Gcm::new(&key)?,
            salt,
        })
    }

    fn aad(&self, index: u64, meta: &[u8]) -> [u8; 15 + 16 + 8 + 4] {
        let mut aad = [0u8; 15 + 16 + 8 + 4];
        aad[..15].copy_from_slice(DOMAIN);
        aad[15..31].copy_from_slice(&self.salt);
        aad[31..39].copy_from_slice(&index.to_be_bytes());
        aad[39..].copy_from_slice(meta);
        aad
    }

    /// Seals page `index` holding `plain` (1..=4096 bytes) into `unit`.
    pub fn seal(&self, index: u64, plain: &[u8], unit: &mut [u8; UNIT]) -> Result<(), Error> {
        let used = u16::try_from(plain.len())
            .ok()
            .filter(|u| (1..=PAGE as u16).contains(u))
            .ok_or(Error::Crypto(kura_crypto::Error::Library(
                "a page holds 1 to 4096 bytes",
            )))?;
        let nonce = kura_crypto::rng::nonce::<NONCE>()?;
        unit[..NONCE].copy_from_slice(&nonce);
        unit[12..14].copy_from_slice(&used.to_be_bytes());
        unit[14..16].fill(0);
        let (head, rest) = unit.split_at_mut(16);
        let (body, tag) = rest.split_at_mut(PAGE);
        let aad = self.aad(index, &head[12..16]);
        let t = if plain.len() == PAGE {
            // A whole page: encrypted straight into the unit, one pass.
            self.aead.seal_out_of_place(&nonce, &aad, plain, body)?
        } else {
            body[..plain.len()].copy_from_slice(plain);
            body[plain.len()..].fill(0);
            self.aead.seal_in_place(&nonce, &aad, body)?
        };
        tag.copy_from_slice(&t);
        Ok(())
    }

    /// Opens page `index` from `unit` into `page`; returns how many bytes are in use.
    /// Any alteration is [`Error::Decrypt`].
    pub fn open(
        &self,
        index: u64,
        unit: &[u8; UNIT],
        page: &mut [u8; PAGE],
    ) -> Result<usize, Error> {
        let mut nonce = [0u8; NONCE];
        nonce.copy_from_slice(&unit[..NONCE]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&unit[TAG_AT..]);
        let aad = self.aad(index, &unit[12..16]);
        self.aead
            .open_out_of_place(&nonce, &aad, &unit[16..TAG_AT], &tag, page)
            .map_err(|_| Error::Decrypt)?;
        let used = usize::from(u16::from_be_bytes([unit[12], unit[13]]));
        if used == 0
            || used > PAGE
            || unit[14..16] != [0, 0]
            || page[used..].iter().any(|&b| b != 0)
        {
            return Err(Error::Decrypt);
        }
        Ok(used)
    }
}

/// The number of units of a file of `len` plaintext bytes.
pub fn units_for(len: u64) -> u64 {
    len.div_ceil(PAGE as u64)
}

/// The stored size of a file of `len` plaintext bytes.
pub fn stored_len(len: u64) -> u64 {
    units_for(len) * UNIT as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(salt: u8) -> PageCipher {
        PageCipher::new(&[7u8; 32], [salt; 16]).unwrap()
    }

    fn sealed(c: &PageCipher, index: u64, plain: &[u8]) -> Box<[u8; UNIT]> {
        let mut u = Box::new([0u8; UNIT]);
        c.seal(index, plain, &mut u).unwrap();
        u
    }

    #[test]
    fn pages_round_trip_with_fresh_nonces() {
        let c = cipher(1);
        for len in [1, 100, PAGE - 1, PAGE] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let a = sealed(&c, 3, &plain);
            let b = sealed(&c, 3, &plain);
            assert_ne!(a[..], b[..], "a fresh nonce per write");
            let mut page = [0u8; PAGE];
            assert_eq!(c.open(3, &a, &mut page).unwrap(), len);
            assert_eq!(&page[..len], &plain[..]);
        }
        let mut u = [0u8; UNIT];
        assert!(c.seal(0, &[], &mut u).is_err());
        assert!(c.seal(0, &[0u8; PAGE + 1], &mut u).is_err());
    }

    #[test]
    fn every_bit_flip_moves_and_foreign_units_are_refused() {
        let c = cipher(1);
        let unit = sealed(&c, 5, b"page five of file one");
        let mut page = [0u8; PAGE];
        for bit in 0..UNIT * 8 {
            let mut u = unit.clone();
            u[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(c.open(5, &u, &mut page), Err(Error::Decrypt)),
                "bit {bit}"
            );
        }
        assert!(matches!(c.open(6, &unit, &mut page), Err(Error::Decrypt)));
        assert!(matches!(
            cipher(2).open(5, &unit, &mut page),
            Err(Error::Decrypt)
        ));
        let other_key = PageCipher::new(&[8u8; 32], [1; 16]).unwrap();
        assert!(matches!(
            other_key.open(5, &unit, &mut page),
            Err(Error::Decrypt)
        ));
        // A unit of zeros (a hole, or zeroed by an attacker) is not a page of zeros.
        assert!(matches!(
            c.open(5, &[0u8; UNIT], &mut page),
            Err(Error::Decrypt)
        ));
    }

    #[test]
    fn sizes() {
        assert_eq!(UNIT, 4128);
        assert_eq!(units_for(0), 0);
        assert_eq!(units_for(1), 1);
        assert_eq!(units_for(4096), 1);
        assert_eq!(units_for(4097), 2);
        assert_eq!(stored_len(8192), 2 * 4128);
    }
}
