//! Shared fixtures of the kura fuzz targets: fixed keys, valid samples of every format
//! sealed under them (built once per process, deterministically), a mutator that turns
//! fuzz input into a variant of a valid sample, and a reader that returns short reads.
//!
//! Everything here is test scaffolding: it panics freely (a panic in a fuzz target is a
//! reported crash, which is what we want when a fixture cannot even be built).

use std::io::{self, Read};
use std::sync::OnceLock;

use kura_crypto::{Key256, XaesCommitting};
use kura_format::EncryptionContext;

/// The data key every target decrypts with.
pub const DATA_KEY: [u8; 32] = [0x42; 32];
/// The id sealed into the samples.
pub const DATA_KEY_ID: u64 = 0x0102_0304_0506_0708;

/// The fixed data key.
pub fn data_key() -> Key256 {
    Key256::from_slice(&DATA_KEY, "fuzz data key").expect("32 bytes")
}

/// The fixed data key prepared for XAES (built once).
pub fn xaes() -> &'static XaesCommitting {
    static K: OnceLock<XaesCommitting> = OnceLock::new();
    K.get_or_init(|| XaesCommitting::new(&data_key()).expect("key setup"))
}

/// The encryption context a sample was sealed with: `n` selects one of two.
pub fn context(non_empty: bool) -> EncryptionContext {
    if non_empty {
        [("table", "users"), ("column", "ssn")]
            .into_iter()
            .collect()
    } else {
        EncryptionContext::new()
    }
}

/// A deterministic plaintext of `len` bytes, different for each `seed`.
pub fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(u32::from(seed) * 7) as u8
        })
        .collect()
}

/// How the fuzz input is read in "mutate a valid sample" mode:
///
/// ```text
/// byte 0      mode: bit 0 = 1 selects this mode, bit 1 = truncate, bits 2.. = sample
/// bytes 1..3  offset (u16 big-endian, modulo sample length + 1) where the mask starts
/// byte 3      how many bytes to cut off the end (when bit 1 is set)
/// bytes 4..   mask XORed into the sample from the offset; mask bytes past the end of
///             the sample are appended
/// ```
#[derive(Debug)]
pub struct Mutation<'a> {
    /// Which sample (modulo the number of samples).
    pub sample: usize,
    offset: u16,
    cut: Option<u8>,
    mask: &'a [u8],
}

/// Splits the fuzz input: `Ok(mutation)` when its first byte selects the mutated-sample
/// mode, `Err(rest)` (the input after the mode byte) for the arbitrary-bytes mode.
/// `None` for an empty input.
pub fn split_mode(data: &[u8]) -> Option<Result<Mutation<'_>, &[u8]>> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 0 {
        return Some(Err(rest));
    }
    let mut head = [0u8; 3];
    let n = rest.len().min(3);
    head[..n].copy_from_slice(&rest[..n]);
    Some(Ok(Mutation {
        sample: usize::from(mode >> 2),
        offset: u16::from_be_bytes([head[0], head[1]]),
        cut: (mode & 2 != 0).then_some(head[2]),
        mask: &rest[n..],
    }))
}

impl Mutation<'_> {
    /// `valid` with the mutation applied.
    pub fn apply(&self, valid: &[u8]) -> Vec<u8> {
        let mut m = valid.to_vec();
        let start = usize::from(self.offset) % (valid.len() + 1);
        for (i, b) in self.mask.iter().enumerate() {
            match m.get_mut(start + i) {
                Some(x) => *x ^= b,
                None => m.push(*b),
            }
        }
        if let Some(cut) = self.cut {
            m.truncate(m.len().saturating_sub(usize::from(cut)));
        }
        m
    }
}

/// A reader over a byte slice that returns at most `step` bytes per call (any number when
/// `step` is 0) and, when `interrupt` is set, fails every other call with `Interrupted`,
/// which readers must retry.
#[derive(Debug)]
pub struct ChoppyReader<'a> {
    data: &'a [u8],
    step: usize,
    interrupt: bool,
    calls: u64,
}

impl<'a> ChoppyReader<'a> {
    /// Reads `data` in pieces of at most `step` bytes.
    pub fn new(data: &'a [u8], step: u8, interrupt: bool) -> Self {
        Self {
            data,
            step: usize::from(step),
            interrupt,
            calls: 0,
        }
    }
}

impl Read for ChoppyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.interrupt && self.calls.is_multiple_of(2) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let mut n = buf.len().min(self.data.len());
        if self.step > 0 {
            n = n.min(self.step);
        }
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_mask_is_identity_and_cut_truncates() {
        let v = plaintext(10, 1);
        let m = split_mode(&[1, 0, 3, 0, 0, 0]).unwrap().unwrap();
        assert_eq!(m.apply(&v), v);
        let m = split_mode(&[3, 0, 0, 4]).unwrap().unwrap();
        assert_eq!(m.apply(&v), v[..6]);
        // Offset 9 of 10 bytes: one byte XORed (with 0), two appended.
        let m = split_mode(&[1, 0, 9, 0, 0, 1, 2]).unwrap().unwrap();
        assert_eq!(m.apply(&v), [&v[..], &[1, 2]].concat());
        // The offset wraps modulo length + 1; a cut after an append.
        let m = split_mode(&[3, 0, 11 + 3, 2, 0xff]).unwrap().unwrap();
        let mut w = v.clone();
        w[3] ^= 0xff;
        assert_eq!(m.apply(&v), w[..8]);
        assert!(split_mode(&[0, 1, 2]).unwrap().is_err());
    }
}
