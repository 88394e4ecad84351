//! The page mode (`aes256-gcm-page`): files rewritten in place, stored as authenticated
//! 4 KiB pages.
//!
//! Every page is sealed with AES-256-GCM under the file's own key (derived from a data key
//! with the file's random salt) and a fresh random nonce per write. What a page needs
//! besides its ciphertext is its [`META`] bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 0..12 | nonce, fresh and random for every write of the page |
//! | 12..14 | `used`: plaintext bytes of the page in use (u16 BE; 1..=4096, 4096 but in the last page); version 2: plus [`ZEROS`] for a page of zeros |
//! | 14..16 | generation (u16 BE) in version 2, counting the page's writes; zero in version 1 |
//! | 16..32 | the GCM tag |
//!
//! The page is zero-padded past `used` before encryption. The associated data is
//! `domain ‖ salt ‖ page index (u64 BE) ‖ meta bytes 12..16`, the domain naming the layout
//! (`"kura-fs page v1"` or `"kura-fs page v2"`), so a flipped bit, a page moved to another
//! index, or a page from another file fails to open.
//!
//! A version-2 entry with the [`ZEROS`] bit in `used` is a page of `used` zero bytes that
//! has no ciphertext: its tag is that of an empty plaintext under the same associated
//! data (the bit included), and the page's block in the file is not read. Growth
//! (`set_len`, a write past the end) writes such entries only, so a file grows by its
//! metadata rather than by sealed zeros; the entries are as authenticated as any other.
//!
//! Two layouts ([`Layout`]), named by the file header's version byte:
//!
//! - **Version 2** (every file created now): after a 4 KiB header block, groups of one
//!   metadata block followed by [`GROUP`] pages' ciphertexts, so every page is a whole,
//!   aligned 4 KiB block of the file ([`data_at`]). The block holds two entry slots per
//!   page ([`meta_at`]): a write puts its entry in the slot that does not describe the
//!   page's current ciphertext, then the ciphertext, so a write cut short by a crash leaves
//!   the page readable as before or after it (the newer generation is tried first). Slots
//!   of zeros are a page never written: a file's pages end at the last page with an entry
//!   (a page appended but never completed is not part of it).
//! - **Version 1** (read and written as before): one [`UNIT`] per page right after the
//!   32-byte header: meta bytes 0..16, the ciphertext, meta bytes 16..32. Units straddle
//!   the file system's 4 KiB blocks, so every page write touches two; version 2 exists for
//!   that.
//!
//! The plaintext length is `(pages - 1) × 4096 + used(last page)`. Nonces are random per
//! write under a per-file key: 2^32 writes of one file keep the chance of a repeated nonce
//! below 2^-33 (`kura fs reencrypt` gives a file a new key).

use kura_crypto::{Aes256Gcm, Key256};

use crate::Error;

/// Plaintext bytes per page.
pub const PAGE: usize = 4096;
/// Bytes of a page's metadata entry: nonce, `used`, generation, tag.
pub const META: usize = 32;
/// Stored bytes per page in the version-1 layout.
pub const UNIT: usize = PAGE + META;
/// Entry slots per page in the version-2 layout.
pub const SLOTS: usize = 2;
/// Pages per group of the version-2 layout (one metadata block of entry slots).
pub const GROUP: u64 = (PAGE / (SLOTS * META)) as u64;
/// Version 2: the bit of `used` marking a page of zeros without ciphertext.
pub const ZEROS: u16 = 0x8000;
const NONCE: usize = 12;
const TAG_AT: usize = META - 16;
/// Associated data: domain (15), salt (16), page index (8), entry bytes 12..16 (4).
const AAD: usize = 15 + 16 + 8 + 4;

/// How a page-mode file lays its pages out (the version byte of its header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 4128-byte units after the header.
    V1,
    /// Aligned 4 KiB pages in groups behind a metadata block.
    V2,
}

impl Layout {
    /// The header version byte.
    pub fn version(self) -> u8 {
        match self {
            Layout::V1 => 1,
            Layout::V2 => 2,
        }
    }

    fn domain(self) -> &'static [u8; 15] {
        match self {
            Layout::V1 => b"kura-fs page v1",
            Layout::V2 => b"kura-fs page v2",
        }
    }
}

/// Version 2: the file offset of page `index`'s ciphertext.
pub fn data_at(index: u64) -> u64 {
    let group = index / GROUP;
    group_at(group) + PAGE as u64 * (1 + index % GROUP)
}

/// Version 2: the file offset of entry slot `slot` (0 or 1) of page `index`.
pub fn meta_at(index: u64, slot: usize) -> u64 {
    group_at(index / GROUP) + (SLOTS * META) as u64 * (index % GROUP) + (META * slot) as u64
}

/// The generation of an entry (bytes 14..16).
pub fn generation(meta: &[u8; META]) -> u16 {
    u16::from_be_bytes([meta[14], meta[15]])
}

/// Whether generation `a` is newer than `b` (they wrap around).
pub fn newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// Version 2: the file offset of group `group`'s metadata block.
pub fn group_at(group: u64) -> u64 {
    PAGE as u64 * (1 + group * (GROUP + 1))
}

/// Version 2: the whole pages a file of `physical` bytes has room for (a page cut short
/// by a crash does not count).
pub fn pages_in(physical: u64) -> u64 {
    let Some(past) = physical.checked_sub(PAGE as u64) else {
        return 0;
    };
    let span = PAGE as u64 * (GROUP + 1);
    let blocks = (past % span) / PAGE as u64;
    past / span * GROUP + blocks.saturating_sub(1)
}

/// The stored size of a file of `len` plaintext bytes, header included.
pub fn stored_len(layout: Layout, len: u64) -> u64 {
    let pages = len.div_ceil(PAGE as u64);
    match layout {
        Layout::V1 => crate::file::HEADER as u64 + pages * UNIT as u64,
        Layout::V2 if pages == 0 => crate::file::HEADER as u64,
        Layout::V2 => data_at(pages - 1) + PAGE as u64,
    }
}

/// The cipher of one file's pages.
pub struct PageCipher {
    aead: Aes256Gcm,
    salt: [u8; 16],
    layout: Layout,
}

impl PageCipher {
    /// The pages of the file with `salt` in `layout`, under its 32-byte `key`.
    pub fn new(key: &[u8], salt: [u8; 16], layout: Layout) -> Result<Self, Error> {
        let key = Key256::from_slice(key, "page key")?;
        Ok(Self {
            aead: Aes256Gcm::new(&key)?,
            salt,
            layout,
        })
    }

    /// The layout the cipher's associated data names.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn aad(&self, index: u64, meta: &[u8]) -> [u8; AAD] {
        let mut aad = [0u8; AAD];
        aad[..15].copy_from_slice(self.layout.domain());
        aad[15..31].copy_from_slice(&self.salt);
        aad[31..39].copy_from_slice(&index.to_be_bytes());
        aad[39..].copy_from_slice(&meta[12..16]);
        aad
    }

    /// Starts the entry of a write of page `index`: a fresh nonce, the `used` field and
    /// `generation` into `meta`; returns the nonce and the associated data to seal under.
    fn begin_entry(
        &self,
        index: u64,
        used: u16,
        generation: u16,
        meta: &mut [u8; META],
    ) -> Result<([u8; NONCE], [u8; AAD]), Error> {
        let nonce = kura_crypto::rng::nonce::<NONCE>()?;
        meta[..NONCE].copy_from_slice(&nonce);
        meta[12..14].copy_from_slice(&used.to_be_bytes());
        meta[14..16].copy_from_slice(&generation.to_be_bytes());
        Ok((nonce, self.aad(index, &meta[..])))
    }

    /// Seals page `index` holding `plain` (1..=4096 bytes) as its write of `generation`
    /// (zero in version 1): the ciphertext into `ct`, the nonce, length, generation and
    /// tag into `meta`.
    pub fn seal_parts(
        &self,
        index: u64,
        plain: &[u8],
        generation: u16,
        meta: &mut [u8; META],
        ct: &mut [u8; PAGE],
    ) -> Result<(), Error> {
        if self.layout == Layout::V1 && generation != 0 {
            return Err(Error::Crypto(kura_crypto::Error::Library(
                "version-1 pages have no generation",
            )));
        }
        let used = u16::try_from(plain.len())
            .ok()
            .filter(|u| (1..=PAGE as u16).contains(u))
            .ok_or(Error::Crypto(kura_crypto::Error::Library(
                "a page holds 1 to 4096 bytes",
            )))?;
        let (nonce, aad) = self.begin_entry(index, used, generation, meta)?;
        let tag = if plain.len() == PAGE {
            // A whole page: encrypted straight into place, one pass.
            self.aead.seal_out_of_place(&nonce, &aad, plain, ct)?
        } else {
            ct[..plain.len()].copy_from_slice(plain);
            ct[plain.len()..].fill(0);
            self.aead.seal_in_place(&nonce, &aad, ct)?
        };
        meta[TAG_AT..].copy_from_slice(&tag);
        Ok(())
    }

    /// Version 2: the entry of page `index` as a page of `used` (1..=4096) zero bytes,
    /// without ciphertext, as its write of `generation`.
    pub fn seal_zeros(
        &self,
        index: u64,
        used: usize,
        generation: u16,
        meta: &mut [u8; META],
    ) -> Result<(), Error> {
        let used = u16::try_from(used)
            .ok()
            .filter(|u| (1..=PAGE as u16).contains(u) && self.layout == Layout::V2)
            .ok_or(Error::Crypto(kura_crypto::Error::Library(
                "a page of zeros is of version 2 and holds 1 to 4096 bytes",
            )))?;
        let (nonce, aad) = self.begin_entry(index, used | ZEROS, generation, meta)?;
        let tag = self.aead.seal_in_place(&nonce, &aad, &mut [])?;
        meta[TAG_AT..].copy_from_slice(&tag);
        Ok(())
    }

    /// Opens page `index` from its `meta` and `ct` into `page`; returns how many bytes are
    /// in use. Any alteration is [`Error::Decrypt`]. A page of zeros ([`ZEROS`]) does not
    /// look at `ct`.
    pub fn open_parts(
        &self,
        index: u64,
        meta: &[u8; META],
        ct: &[u8; PAGE],
        page: &mut [u8; PAGE],
    ) -> Result<usize, Error> {
        let mut nonce = [0u8; NONCE];
        nonce.copy_from_slice(&meta[..NONCE]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&meta[TAG_AT..]);
        let aad = self.aad(index, &meta[..]);
        if self.layout == Layout::V2 && is_zeros(meta) {
            page.fill(0);
            self.aead
                .open_in_place(&nonce, &aad, &mut [], &tag)
                .map_err(|_| Error::Decrypt)?;
            let used = usize::from(u16::from_be_bytes([meta[12], meta[13]]) & !ZEROS);
            return match used {
                1..=PAGE => Ok(used),
                _ => Err(Error::Decrypt),
            };
        }
        self.aead
            .open_out_of_place(&nonce, &aad, ct, &tag, page)
            .map_err(|_| {
                page.fill(0);
                Error::Decrypt
            })?;
        let used = usize::from(u16::from_be_bytes([meta[12], meta[13]]));
        if used == 0
            || used > PAGE
            || (self.layout == Layout::V1 && meta[14..16] != [0, 0])
            || page[used..].iter().any(|&b| b != 0)
        {
            page.fill(0);
            return Err(Error::Decrypt);
        }
        Ok(used)
    }

    /// Seals page `index` into a version-1 unit.
    pub fn seal(&self, index: u64, plain: &[u8], unit: &mut [u8; UNIT]) -> Result<(), Error> {
        let mut meta = [0u8; META];
        let ct = unit_ct(unit)?;
        self.seal_parts(index, plain, 0, &mut meta, ct)?;
        unit[..16].copy_from_slice(&meta[..16]);
        unit[16 + PAGE..].copy_from_slice(&meta[16..]);
        Ok(())
    }

    /// Opens page `index` from a version-1 unit.
    pub fn open(
        &self,
        index: u64,
        unit: &[u8; UNIT],
        page: &mut [u8; PAGE],
    ) -> Result<usize, Error> {
        let mut meta = [0u8; META];
        meta[..16].copy_from_slice(&unit[..16]);
        meta[16..].copy_from_slice(&unit[16 + PAGE..]);
        let ct = <&[u8; PAGE]>::try_from(&unit[16..16 + PAGE]).map_err(|_| Error::Decrypt)?;
        self.open_parts(index, &meta, ct, page)
    }
}

/// The ciphertext bytes of a version-1 unit.
pub(crate) fn unit_ct(unit: &mut [u8]) -> Result<&mut [u8; PAGE], Error> {
    <&mut [u8; PAGE]>::try_from(unit.get_mut(16..16 + PAGE).ok_or(Error::TooLarge)?)
        .map_err(|_| Error::TooLarge)
}

/// Whether a version-2 entry is of a page of zeros without ciphertext ([`ZEROS`]).
pub fn is_zeros(meta: &[u8; META]) -> bool {
    u16::from_be_bytes([meta[12], meta[13]]) & ZEROS != 0
}

/// Whether a metadata entry is all zeros: a version-2 page never written.
pub fn is_unwritten(meta: &[u8; META]) -> bool {
    meta.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(salt: u8) -> PageCipher {
        PageCipher::new(&[7u8; 32], [salt; 16], Layout::V1).unwrap()
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
        let other_key = PageCipher::new(&[8u8; 32], [1; 16], Layout::V1).unwrap();
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
    fn version_2_parts_round_trip_and_are_bound_to_their_layout() {
        let v2 = PageCipher::new(&[7u8; 32], [1; 16], Layout::V2).unwrap();
        let (mut meta, mut ct, mut page) = ([0u8; META], [0u8; PAGE], [0u8; PAGE]);
        v2.seal_parts(9, b"version two", 7, &mut meta, &mut ct)
            .unwrap();
        assert_eq!(generation(&meta), 7);
        assert!(!is_unwritten(&meta));
        assert_eq!(v2.open_parts(9, &meta, &ct, &mut page).unwrap(), 11);
        assert_eq!(&page[..11], b"version two");
        // The same key, salt and index under the other layout's domain: refused.
        assert!(matches!(
            cipher(1).open_parts(9, &meta, &ct, &mut page),
            Err(Error::Decrypt)
        ));
        for bit in (0..META * 8).chain([META * 8 + 5, (META + PAGE) * 8 - 1]) {
            let (mut m, mut c) = (meta, ct);
            if bit < META * 8 {
                m[bit / 8] ^= 1 << (bit % 8);
            } else {
                let b = bit - META * 8;
                c[b / 8] ^= 1 << (b % 8);
            }
            assert!(
                matches!(v2.open_parts(9, &m, &c, &mut page), Err(Error::Decrypt)),
                "bit {bit}"
            );
            assert_eq!(page, [0u8; PAGE], "nothing of a refused page is left");
        }
        assert!(is_unwritten(&[0u8; META]));
        // Version 1 has no generation.
        assert!(
            cipher(1)
                .seal_parts(0, b"x", 1, &mut meta, &mut ct)
                .is_err()
        );
        assert!(newer(1, 0) && newer(0, u16::MAX) && !newer(0, 1) && !newer(5, 5));
    }

    #[test]
    fn pages_of_zeros_open_as_zeros_whatever_the_block_and_are_authenticated() {
        let v2 = PageCipher::new(&[7u8; 32], [1; 16], Layout::V2).unwrap();
        let mut meta = [0u8; META];
        v2.seal_zeros(4, 100, 3, &mut meta).unwrap();
        assert!(is_zeros(&meta) && !is_unwritten(&meta));
        assert_eq!(generation(&meta), 3);
        let mut page = [9u8; PAGE];
        // The block is not read: a hole, or anything at all.
        for ct in [[0u8; PAGE], [0x5a; PAGE]] {
            assert_eq!(v2.open_parts(4, &meta, &ct, &mut page).unwrap(), 100);
            assert_eq!(page, [0u8; PAGE]);
        }
        for bit in 0..META * 8 {
            let mut m = meta;
            m[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(
                    v2.open_parts(4, &m, &[0u8; PAGE], &mut page),
                    Err(Error::Decrypt)
                ),
                "bit {bit}"
            );
        }
        // Another index, another file, the other layout: refused.
        assert!(v2.open_parts(5, &meta, &[0u8; PAGE], &mut page).is_err());
        let other = PageCipher::new(&[7u8; 32], [2; 16], Layout::V2).unwrap();
        assert!(other.open_parts(4, &meta, &[0u8; PAGE], &mut page).is_err());
        assert!(
            cipher(1)
                .open_parts(4, &meta, &[0u8; PAGE], &mut page)
                .is_err()
        );
        assert!(cipher(1).seal_zeros(4, 100, 0, &mut meta).is_err());
        assert!(v2.seal_zeros(4, 0, 1, &mut meta).is_err());
        assert!(v2.seal_zeros(4, PAGE + 1, 1, &mut meta).is_err());
    }

    #[test]
    fn version_2_offsets_are_aligned_and_never_overlap() {
        let span = PAGE as u64 * (GROUP + 1);
        assert_eq!(GROUP, 64);
        assert_eq!(group_at(0), 4096);
        assert_eq!(meta_at(0, 0), 4096);
        assert_eq!(meta_at(0, 1), 4096 + 32);
        assert_eq!(meta_at(1, 0), 4096 + 64);
        assert_eq!(meta_at(63, 1), 8192 - 32);
        assert_eq!(data_at(0), 8192);
        assert_eq!(data_at(63), 8192 + 63 * 4096);
        assert_eq!(meta_at(64, 0), 4096 + span);
        assert_eq!(data_at(64), 8192 + span);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..3 * GROUP + 5 {
            assert_eq!(data_at(i) % PAGE as u64, 0);
            assert!(seen.insert(data_at(i)), "page {i}");
            assert!(!seen.contains(&group_at(i / GROUP)));
            // A file cut right after page i holds pages 0..=i; cut inside it, 0..i.
            assert_eq!(pages_in(data_at(i) + PAGE as u64), i + 1);
            assert_eq!(pages_in(data_at(i) + 100), i);
            assert_eq!(pages_in(data_at(i)), i);
        }
        assert_eq!(pages_in(0), 0);
        assert_eq!(pages_in(32), 0);
        assert_eq!(pages_in(8192), 0);
        assert_eq!(stored_len(Layout::V2, 0), 32);
        assert_eq!(stored_len(Layout::V2, 1), 8192 + 4096);
        assert_eq!(stored_len(Layout::V2, 64 * 4096 + 1), data_at(64) + 4096);
        assert_eq!(stored_len(Layout::V1, 8192), 32 + 2 * 4128);
    }

    #[test]
    fn sizes() {
        assert_eq!(UNIT, 4128);
    }
}
