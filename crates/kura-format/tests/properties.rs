#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Property tests: envelopes and streams round-trip for any size and context, and streams
//! do so through readers and writers that move a few random bytes per call (and are
//! sometimes interrupted), which exercises the batched I/O of `stream::encrypt` and
//! `stream::decrypt` at every alignment.

use std::io::{self, Read, Write};

use kura_crypto::{Key256, TAG_LEN, XaesCommitting};
use kura_format::stream::{self, HEADER_LEN, Opener, Sealer};
use kura_format::{EncryptionContext, Error, envelope};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

/// A tiny deterministic generator (xorshift64*), seeded by proptest.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize % n
    }
}

/// Returns at most `max` bytes per call (a random number, at least 1), and now and then
/// `Interrupted` instead.
struct ShortReader<'a> {
    data: &'a [u8],
    max: usize,
    rng: Rng,
}

impl Read for ShortReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rng.below(16) == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = (1 + self.rng.below(self.max))
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Accepts at most `max` bytes per call (a random number, at least 1), and now and then
/// returns `Interrupted` instead.
struct ShortWriter {
    out: Vec<u8>,
    max: usize,
    rng: Rng,
}

impl Write for ShortWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.rng.below(16) == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = (1 + self.rng.below(self.max)).min(buf.len());
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn reader(data: &[u8], max: usize, seed: u64) -> ShortReader<'_> {
    ShortReader {
        data,
        max,
        rng: Rng::new(seed),
    }
}

fn writer(max: usize, seed: u64) -> ShortWriter {
    ShortWriter {
        out: Vec::new(),
        max,
        rng: Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15),
    }
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v = vec![0u8; len];
    // Random words are plenty here and keep debug builds fast.
    for c in v.chunks_mut(8) {
        let w = (rng.below(1 << 31) as u64) << 32 | rng.below(1 << 31) as u64;
        c.copy_from_slice(&w.to_le_bytes()[..c.len()]);
    }
    v
}

fn key(seed: u8) -> Key256 {
    Key256::from_slice(&[seed; 32], "test key").unwrap()
}

/// Bytes of a stream of `len` plaintext bytes in 2^`log2`-byte chunks.
fn stream_len(len: usize, log2: u8) -> usize {
    let chunks = len.div_ceil(1 << log2).max(1);
    HEADER_LEN + len + chunks * TAG_LEN
}

/// Encrypts `pt` through a short reader and writer, checks the length, decrypts through a
/// short reader and writer, and checks the plaintext.
fn stream_round_trip(pt: &[u8], log2: u8, ctx: &EncryptionContext, max_io: usize, seed: u64) {
    let k = key(7);
    let sealer = Sealer::new(&k, seed, ctx, log2).unwrap();
    let mut w = writer(max_io, seed);
    let n = stream::encrypt(reader(pt, max_io, seed), &mut w, sealer).unwrap();
    assert_eq!(n, pt.len() as u64);
    let ct = w.out;
    assert_eq!(
        ct.len(),
        stream_len(pt.len(), log2),
        "len {} log2 {log2}",
        pt.len()
    );

    let mut w = writer(max_io, seed.rotate_left(17));
    let n = stream::decrypt(reader(&ct, max_io, seed.rotate_left(29)), &mut w, |h| {
        assert_eq!(h.data_key_id(), seed);
        Opener::new(h, &k, ctx)
    })
    .unwrap();
    assert_eq!(n, pt.len() as u64);
    assert!(
        w.out == pt,
        "plaintext differs: len {} log2 {log2}",
        pt.len()
    );
}

fn context_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    btree_map("\\PC{0,12}", "\\PC{0,24}", 0..5).prop_map(|m| m.into_iter().collect())
}

fn context(pairs: &[(String, String)]) -> EncryptionContext {
    pairs.iter().cloned().collect()
}

/// Parses `count:u32 ‖ (klen:u32 ‖ key ‖ vlen:u32 ‖ value)*`; `None` unless exact.
fn decode_context(mut b: &[u8]) -> Option<Vec<(String, String)>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = b.split_at_checked(n)?;
        *b = tail;
        Some(head)
    }
    fn string(b: &mut &[u8]) -> Option<String> {
        let n = u32::from_be_bytes(take(b, 4)?.try_into().ok()?) as usize;
        String::from_utf8(take(b, n)?.to_vec()).ok()
    }
    let count = u32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
    let mut pairs = Vec::new();
    for _ in 0..count {
        pairs.push((string(&mut b)?, string(&mut b)?));
    }
    b.is_empty().then_some(pairs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn envelope_round_trips(
        pt in vec(any::<u8>(), 0..5000),
        pairs in context_strategy(),
        key_id in any::<u64>(),
        seed in any::<u8>(),
    ) {
        let x = XaesCommitting::new(&key(seed)).unwrap();
        let ctx = context(&pairs);
        let mut env = b"already here".to_vec();
        envelope::seal(&x, key_id, &ctx, &pt, &mut env).unwrap();
        prop_assert_eq!(&env[..12], b"already here");
        let env = &env[12..];
        prop_assert_eq!(env.len(), envelope::OVERHEAD + pt.len());
        prop_assert_eq!(envelope::key_id(env).unwrap(), key_id);
        let mut out = Vec::new();
        envelope::open(&x, &ctx, env, &mut out).unwrap();
        prop_assert_eq!(&out, &pt);

        // Pairs given in another order make the same context.
        let reversed: EncryptionContext = pairs.iter().rev().cloned().collect();
        let mut again = Vec::new();
        envelope::open(&x, &reversed, env, &mut again).unwrap();
        prop_assert_eq!(&again, &pt);

        // Any other context fails, and leaves `out` as it was.
        let mut other = ctx.clone();
        other.insert("\u{0}extra", "");
        let mut out = b"keep".to_vec();
        prop_assert!(matches!(envelope::open(&x, &other, env, &mut out), Err(Error::Decrypt)));
        prop_assert_eq!(&out, b"keep");
    }

    #[test]
    fn envelope_any_byte_change_is_rejected(
        pt in vec(any::<u8>(), 0..300),
        pairs in context_strategy(),
        at in any::<prop::sample::Index>(),
        xor in 1..=255u8,
    ) {
        let x = XaesCommitting::new(&key(1)).unwrap();
        let ctx = context(&pairs);
        let mut env = Vec::new();
        envelope::seal(&x, 3, &ctx, &pt, &mut env).unwrap();
        let i = at.index(env.len());
        env[i] ^= xor;
        prop_assert!(envelope::open(&x, &ctx, &env, &mut Vec::new()).is_err());
    }

    #[test]
    fn context_encoding_is_canonical_and_decodable(pairs in context_strategy()) {
        let a = context(&pairs);
        let b: EncryptionContext = pairs.iter().rev().cloned().collect();
        prop_assert_eq!(a.encode(), b.encode());
        // The encoding parses back to exactly the pairs, so no two contexts share one.
        let mut sorted = pairs.clone();
        sorted.sort();
        prop_assert_eq!(decode_context(&a.encode()), Some(sorted));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any size up to a few chunks, either chunk size, any I/O granularity.
    #[test]
    fn stream_round_trips_random_sizes(
        len in 0..3 * 4096 + 100usize,
        big_chunks in any::<bool>(),
        pairs in context_strategy(),
        max_io in prop_oneof![1..64usize, 64..5000usize, 5000..100_000usize],
        seed in any::<u64>(),
    ) {
        let log2 = if big_chunks { 16 } else { 12 };
        stream_round_trip(&data(len, seed), log2, &context(&pairs), max_io, seed);
    }

    /// Chunk boundaries ±1 for 2^12 and 2^16, any I/O granularity.
    #[test]
    fn stream_round_trips_at_chunk_boundaries(
        log2 in prop_oneof![Just(12u8), Just(16u8)],
        chunks in 0..4usize,
        delta in -1..=1isize,
        max_io in prop_oneof![1..256usize, 256..70_000usize],
        seed in any::<u64>(),
    ) {
        let len = ((chunks << log2) as isize + delta).max(0) as usize;
        stream_round_trip(&data(len, seed), log2, &EncryptionContext::new(), max_io, seed);
    }

    /// A stream whose ciphertext is cut anywhere never decrypts.
    #[test]
    fn stream_any_truncation_is_rejected(
        len in 0..3 * 4096 + 100usize,
        cut in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let k = key(9);
        let ctx = EncryptionContext::new();
        let mut ct = Vec::new();
        stream::encrypt(&data(len, seed)[..], &mut ct, Sealer::new(&k, 1, &ctx, 12).unwrap())
            .unwrap();
        let cut = cut.index(ct.len());
        let r = stream::decrypt(&ct[..cut], io::sink(), |h| Opener::new(h, &k, &ctx));
        prop_assert!(r.is_err());
    }
}

/// Every chunk-boundary size (0, 1, k·chunk ± 1 for a few k) for both common chunk sizes,
/// through plain slices and through the awkward reader and writer.
#[test]
fn stream_round_trips_every_boundary() {
    let ctx: EncryptionContext = [("purpose", "test")].into_iter().collect();
    for log2 in [12u8, 16] {
        let cs = 1usize << log2;
        let mut sizes = vec![0, 1, 2];
        for k in [1, 2, 3, 16, 17] {
            sizes.extend([k * cs - 1, k * cs, k * cs + 1]);
        }
        for (i, len) in sizes.into_iter().enumerate() {
            let pt = data(len, i as u64);
            stream_round_trip(&pt, log2, &ctx, usize::MAX, i as u64);
            stream_round_trip(&pt, log2, &ctx, 1 + (i * 977) % 9000, i as u64);
        }
    }
}

/// Several MiB, across decrypt's ~1 MiB batches: a fixed list, so the test stays fast.
#[test]
fn stream_round_trips_several_mib() {
    const MIB: usize = 1 << 20;
    let ctx = EncryptionContext::new();
    let cases: [(usize, u8, usize); 7] = [
        (MIB - 1, 12, 65_536),
        (MIB, 12, 4_000),
        (MIB + 1, 16, 100_000),
        (2 * MIB + 4097, 12, 300_000),
        (3 * MIB + 7, 16, 1 << 21),
        (5 * MIB, 16, 65_537),
        (4 * MIB + 1, 20, MIB + 3),
    ];
    for (i, (len, log2, max_io)) in cases.into_iter().enumerate() {
        let pt = data(len, 1000 + i as u64);
        stream_round_trip(&pt, log2, &ctx, max_io, i as u64);
    }
}

/// The largest chunk size readers accept (2^24, a batch of one chunk), just past one chunk.
#[test]
fn stream_round_trips_largest_chunks() {
    let len = (1 << 24) + 5;
    stream_round_trip(&data(len, 24), 24, &EncryptionContext::new(), 1 << 22, 24);
}

/// Writes are batched: a 2 MiB stream in 4 KiB chunks takes a handful of write calls
/// (header, then one per ~1 MiB batch), not one per chunk.
#[test]
fn stream_writes_are_batched() {
    let k = key(2);
    let ctx = EncryptionContext::new();
    let pt = data(2 << 20, 5);
    let mut out = CountingWriter::default();
    stream::encrypt(&pt[..], &mut out, Sealer::new(&k, 1, &ctx, 12).unwrap()).unwrap();
    assert!(out.calls <= 4, "{} write calls", out.calls);
    let mut back = CountingWriter::default();
    stream::decrypt(&out.bytes[..], &mut back, |h| Opener::new(h, &k, &ctx)).unwrap();
    assert!(back.bytes == pt);
}

#[derive(Default)]
struct CountingWriter {
    bytes: Vec<u8>,
    calls: usize,
}

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
