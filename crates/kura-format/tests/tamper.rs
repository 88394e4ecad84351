#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Exhaustive tampering: every single-bit flip of a sample envelope, stream and wrapped key
//! is rejected, with the error its position calls for; so are truncation, appending,
//! reordering, dropping and duplicating chunks, unknown versions, wrong magic, non-zero
//! reserved bytes, and a different encryption context or key.

use kura_crypto::{Key256, TAG_LEN, XaesCommitting};
use kura_format::stream::{self, HEADER_LEN, Opener, Sealer};
use kura_format::wrapped::{self, Kind};
use kura_format::{EncryptionContext, Error, envelope};

fn key(seed: u8) -> Key256 {
    Key256::from_slice(&[seed; 32], "test key").unwrap()
}

fn xaes(seed: u8) -> XaesCommitting {
    XaesCommitting::new(&key(seed)).unwrap()
}

fn ctx() -> EncryptionContext {
    [("tenant", "acme"), ("table", "users"), ("ключ", "💾")]
        .into_iter()
        .collect()
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

/// What a tampered input must fail with.
#[derive(Debug, Clone, Copy)]
enum Expect {
    BadMagic,
    Version,
    Malformed,
    Decrypt,
    /// Decrypt, or Malformed when the altered header field no longer parses.
    DecryptOrMalformed,
    /// A wrapped key whose header no longer names the expected kind and key id.
    KeyMismatchOrMalformed,
    /// Any error (e.g. a length field that shifts the whole layout).
    Any,
}

fn check(e: &Error, want: Expect, what: &str) {
    let ok = match want {
        Expect::BadMagic => matches!(e, Error::BadMagic { .. }),
        Expect::Version => matches!(e, Error::UnsupportedVersion { .. }),
        Expect::Malformed => matches!(e, Error::Malformed { .. }),
        Expect::Decrypt => matches!(e, Error::Decrypt),
        Expect::DecryptOrMalformed => matches!(e, Error::Decrypt | Error::Malformed { .. }),
        Expect::KeyMismatchOrMalformed => {
            matches!(e, Error::KeyMismatch { .. } | Error::Malformed { .. })
        }
        Expect::Any => true,
    };
    assert!(ok, "{what}: expected {want:?}, got {e:?}");
}

/// Flips every bit of `good` in turn; `open` must fail as `expect(byte index)` says.
fn flip_every_bit(
    good: &[u8],
    expect: impl Fn(usize) -> Expect,
    open: impl Fn(&[u8]) -> Result<(), Error>,
) {
    open(good).unwrap();
    let mut bad = good.to_vec();
    for i in 0..good.len() {
        for bit in 0..8 {
            bad[i] ^= 1 << bit;
            match open(&bad) {
                Ok(()) => panic!("flipping bit {bit} of byte {i} went unnoticed"),
                Err(e) => check(&e, expect(i), &format!("byte {i} bit {bit}")),
            }
            bad[i] ^= 1 << bit;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------------------

fn sample_envelope() -> Vec<u8> {
    let mut env = Vec::new();
    envelope::seal(&xaes(1), 0x0a0b_0c0d, &ctx(), &data(57), &mut env).unwrap();
    env
}

fn open_envelope(env: &[u8], c: &EncryptionContext) -> Result<Vec<u8>, Error> {
    envelope::key_id(env)?;
    let mut out = Vec::new();
    envelope::open(&xaes(1), c, env, &mut out).map(|()| out)
}

#[test]
fn envelope_every_bit_flip_is_rejected() {
    // The key id (4..12) is AAD: with the same key the envelope fails to authenticate; in
    // real use the lookup of the altered id fails or yields another key first.
    flip_every_bit(
        &sample_envelope(),
        |i| match i {
            0..3 => Expect::BadMagic,
            3 => Expect::Version,
            _ => Expect::Decrypt,
        },
        |b| open_envelope(b, &ctx()).map(drop),
    );
}

#[test]
fn envelope_truncation_and_appending_are_rejected() {
    let env = sample_envelope();
    for cut in 0..env.len() {
        let e = open_envelope(&env[..cut], &ctx()).unwrap_err();
        if cut < envelope::OVERHEAD {
            assert!(matches!(e, Error::Truncated { .. }), "cut {cut}: {e:?}");
        } else {
            assert!(matches!(e, Error::Decrypt), "cut {cut}: {e:?}");
        }
    }
    for extra in [&[0u8][..], &[0; 16], &env[env.len() - TAG_LEN..]] {
        let longer = [&env[..], extra].concat();
        assert!(matches!(
            open_envelope(&longer, &ctx()),
            Err(Error::Decrypt)
        ));
    }
}

#[test]
fn envelope_other_context_or_key_is_rejected() {
    let env = sample_envelope();
    let mut extra = ctx();
    extra.insert("x", "");
    let mut changed = ctx();
    changed.insert("table", "users ");
    for c in [EncryptionContext::new(), extra, changed] {
        assert!(
            matches!(open_envelope(&env, &c), Err(Error::Decrypt)),
            "{c:?}"
        );
    }
    let mut out = Vec::new();
    let e = envelope::open(&xaes(2), &ctx(), &env, &mut out).unwrap_err();
    assert!(matches!(e, Error::Decrypt) && out.is_empty());
}

#[test]
fn envelope_unknown_version_and_bad_magic() {
    let env = sample_envelope();
    for v in [0u8, 2, 7, 255] {
        let mut bad = env.clone();
        bad[3] = v;
        let e = open_envelope(&bad, &ctx()).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedVersion { version, supported: 1, .. } if version == v)
        );
        assert!(e.to_string().contains(&format!("version {v}")), "{e}");
    }
    for magic in [*b"KRS", *b"KRW", *b"kre", [0; 3]] {
        let bad = [&magic[..], &env[3..]].concat();
        let e = open_envelope(&bad, &ctx()).unwrap_err();
        assert!(matches!(e, Error::BadMagic { .. }), "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------

const CS: usize = 4096;
const SLOT: usize = CS + TAG_LEN;

/// Two full 4 KiB chunks and a partial last chunk of 100 bytes.
fn sample_stream() -> Vec<u8> {
    stream_of(2 * CS + 100, 12)
}

fn stream_of(len: usize, chunk_log2: u8) -> Vec<u8> {
    let sealer = Sealer::new(&key(3), 77, &ctx(), chunk_log2).unwrap();
    let mut ct = Vec::new();
    stream::encrypt(&data(len)[..], &mut ct, sealer).unwrap();
    ct
}

fn open_stream_with(ct: &[u8], k: &Key256, c: &EncryptionContext) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    stream::decrypt(ct, &mut out, |h| Opener::new(h, k, c)).map(|_| out)
}

fn open_stream(ct: &[u8]) -> Result<Vec<u8>, Error> {
    open_stream_with(ct, &key(3), &ctx())
}

fn assert_stream_decrypt_error(ct: &[u8], what: &str) {
    match open_stream(ct) {
        Err(Error::Decrypt) => {}
        other => panic!("{what}: expected Decrypt, got {other:?}"),
    }
}

/// Chunk `i` (ciphertext ‖ tag) of a stream with 4 KiB chunks.
fn chunk(ct: &[u8], i: usize) -> &[u8] {
    let at = HEADER_LEN + i * SLOT;
    &ct[at..(at + SLOT).min(ct.len())]
}

#[test]
fn stream_every_bit_flip_is_rejected() {
    let ct = sample_stream();
    assert_eq!(ct.len(), HEADER_LEN + 2 * SLOT + 100 + TAG_LEN);
    let log2 = ct[4];
    flip_every_bit(
        &ct,
        |i| match i {
            0..3 => Expect::BadMagic,
            3 => Expect::Version,
            // A chunk size within 2^12..=2^24 parses but fails the commitment.
            4 => Expect::DecryptOrMalformed,
            5..8 => Expect::Malformed,
            // 8..16 key id, 16..48 salt, 48..80 commitment, then chunks.
            _ => Expect::Decrypt,
        },
        |b| {
            let r = open_stream(b).map(drop);
            if let (Err(Error::Malformed { .. }), Some(&l)) = (&r, b.get(4))
                && l != log2
            {
                assert!(!(12..=24).contains(&l), "chunk log2 {l} should parse");
            }
            r
        },
    );
}

#[test]
fn stream_truncation_is_rejected() {
    let ct = sample_stream();
    // Every chunk boundary, including right after the header (no chunk at all).
    for k in 0..3 {
        assert_stream_decrypt_error(&ct[..HEADER_LEN + k * SLOT], &format!("{k} chunks"));
    }
    // Every byte of the last 40.
    for cut in ct.len() - 40..ct.len() {
        assert_stream_decrypt_error(&ct[..cut], &format!("cut at {cut}"));
    }
    // Every other length too: inside the header it is Truncated (or BadMagic-free).
    for cut in 0..ct.len() {
        let e = open_stream(&ct[..cut]).unwrap_err();
        if cut < HEADER_LEN {
            assert!(matches!(e, Error::Truncated { .. }), "cut {cut}: {e:?}");
        } else {
            assert!(matches!(e, Error::Decrypt), "cut {cut}: {e:?}");
        }
    }
}

#[test]
fn stream_truncation_at_a_batch_boundary_is_rejected() {
    // decrypt reads 256 chunks of 4 KiB per batch: cut at and around batch boundaries.
    let ct = stream_of(600 * CS + 1, 12);
    open_stream(&ct).unwrap();
    for k in [255, 256, 257, 512, 600] {
        let cut = HEADER_LEN + k * SLOT;
        for c in [cut - 1, cut, cut + 1] {
            assert_stream_decrypt_error(&ct[..c], &format!("cut at {c}"));
        }
    }
    // Whole-stream with a full last chunk that ends exactly on a batch boundary.
    let exact = stream_of(256 * CS, 12);
    assert_eq!(open_stream(&exact).unwrap(), data(256 * CS));
    assert_stream_decrypt_error(
        &exact[..exact.len() - SLOT],
        "last chunk of a batch dropped",
    );
}

#[test]
fn stream_appending_is_rejected() {
    let ct = sample_stream();
    let other = stream_of(2 * CS + 100, 12);
    let appendices: [(&str, Vec<u8>); 6] = [
        ("one byte", vec![0]),
        ("a tag's worth", vec![0; TAG_LEN]),
        ("a copy of the last chunk", chunk(&ct, 2).to_vec()),
        ("a copy of the first chunk", chunk(&ct, 0).to_vec()),
        ("another stream's last chunk", chunk(&other, 2).to_vec()),
        ("a whole second stream", other.clone()),
    ];
    for (what, tail) in appendices {
        assert_stream_decrypt_error(&[&ct[..], &tail].concat(), what);
    }
    // An empty stream followed by anything.
    let empty = stream_of(0, 12);
    assert!(open_stream(&empty).unwrap().is_empty());
    assert_stream_decrypt_error(&[&empty[..], &[0]].concat(), "empty stream plus a byte");
    let dup = [&empty[..], &empty[HEADER_LEN..]].concat();
    assert_stream_decrypt_error(&dup, "empty chunk twice");
}

#[test]
fn stream_reordering_dropping_and_duplicating_chunks_are_rejected() {
    // Four full chunks and a partial fifth, so full chunks can be moved freely.
    let ct = stream_of(4 * CS + 10, 12);
    let h = &ct[..HEADER_LEN];
    let c: Vec<&[u8]> = (0..5).map(|i| chunk(&ct, i)).collect();
    let cases: [(&str, Vec<&[u8]>); 7] = [
        ("swap chunks 0 and 1", vec![c[1], c[0], c[2], c[3], c[4]]),
        ("swap chunks 1 and 3", vec![c[0], c[3], c[2], c[1], c[4]]),
        ("drop chunk 2", vec![c[0], c[1], c[3], c[4]]),
        ("drop the last chunk", vec![c[0], c[1], c[2], c[3]]),
        (
            "duplicate chunk 0",
            vec![c[0], c[0], c[1], c[2], c[3], c[4]],
        ),
        (
            "duplicate chunk 2",
            vec![c[0], c[1], c[2], c[2], c[3], c[4]],
        ),
        (
            "duplicate the last chunk",
            vec![c[0], c[1], c[2], c[3], c[4], c[4]],
        ),
    ];
    for (what, chunks) in cases {
        let mut bad = h.to_vec();
        for x in chunks {
            bad.extend_from_slice(x);
        }
        assert_stream_decrypt_error(&bad, what);
    }
    // Chunks of another stream under the same key, behind this stream's header.
    let other = stream_of(4 * CS + 10, 12);
    assert_stream_decrypt_error(&[h, &other[HEADER_LEN..]].concat(), "other stream's chunks");
    let spliced = [
        &ct[..HEADER_LEN + SLOT],
        chunk(&other, 1),
        &ct[HEADER_LEN + 2 * SLOT..],
    ];
    assert_stream_decrypt_error(&spliced.concat(), "one chunk from another stream");
}

#[test]
fn stream_other_context_or_key_is_rejected() {
    let ct = sample_stream();
    let mut extra = ctx();
    extra.insert("", "");
    let mut changed = ctx();
    changed.insert("tenant", "acmf");
    for c in [EncryptionContext::new(), extra, changed] {
        let r = open_stream_with(&ct, &key(3), &c);
        assert!(matches!(r, Err(Error::Decrypt)), "{c:?}: {r:?}");
    }
    // The commitment is checked before any chunk: nothing is written.
    let mut out = Vec::new();
    let r = stream::decrypt(&ct[..], &mut out, |h| Opener::new(h, &key(4), &ctx()));
    assert!(matches!(r, Err(Error::Decrypt)) && out.is_empty());
}

#[test]
fn stream_unknown_version_bad_magic_and_bad_header_fields() {
    let ct = sample_stream();
    for v in [0u8, 2, 9, 255] {
        let mut bad = ct.clone();
        bad[3] = v;
        let e = open_stream(&bad).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedVersion { version, supported: 1, .. } if version == v)
        );
        assert!(e.to_string().contains(&format!("version {v}")), "{e}");
        // Also when the input is shorter than the header.
        let e = open_stream(&bad[..10]).unwrap_err();
        assert!(e.to_string().contains(&format!("version {v}")), "{e}");
    }
    for magic in [*b"KRE", *b"KRW", *b"krs", [0xff; 3]] {
        let bad = [&magic[..], &ct[3..]].concat();
        let e = open_stream(&bad).unwrap_err();
        assert!(matches!(e, Error::BadMagic { .. }), "{e:?}");
    }
    for i in 5..8 {
        for v in [1u8, 0x80, 0xff] {
            let mut bad = ct.clone();
            bad[i] = v;
            let e = open_stream(&bad).unwrap_err();
            assert!(
                matches!(e, Error::Malformed { .. }),
                "reserved byte {i} = {v}: {e:?}"
            );
            assert!(stream::Header::parse(&bad).is_err());
        }
    }
    for l in [0u8, 11, 25, 64, 255] {
        let mut bad = ct.clone();
        bad[4] = l;
        let e = open_stream(&bad).unwrap_err();
        assert!(
            matches!(e, Error::Malformed { .. }),
            "chunk log2 {l}: {e:?}"
        );
        let s = Sealer::with_salt(&key(3), 1, &ctx(), l, &[0; 32]);
        assert!(
            matches!(s, Err(Error::Malformed { .. })),
            "sealer with chunk log2 {l}"
        );
    }
    // Another format's bytes.
    let e = open_stream(&sample_envelope()).unwrap_err();
    assert!(matches!(e, Error::BadMagic { .. }));
}

// ---------------------------------------------------------------------------------------
// Wrapped key
// ---------------------------------------------------------------------------------------

fn sample_wrapped() -> Vec<u8> {
    wrapped::wrap(&xaes(5), "17", Kind::DataKeyUnderKek, 99, &[0x42; 32]).unwrap()
}

fn unwrap_sample(blob: &[u8]) -> Result<(), Error> {
    let s = wrapped::unwrap(&xaes(5), Kind::DataKeyUnderKek, 99, blob)?;
    assert_eq!(s.expose_secret(), &[0x42; 32]);
    Ok(())
}

#[test]
fn wrapped_every_bit_flip_is_rejected() {
    // magic 0..3, version 3, kind 4, W 5, wrapping key id 6..8, key id 8..16, then nonce,
    // commitment, ciphertext and tag.
    flip_every_bit(
        &sample_wrapped(),
        |i| match i {
            0..3 => Expect::BadMagic,
            3 => Expect::Version,
            4 => Expect::KeyMismatchOrMalformed,
            5 => Expect::Any,
            // Still UTF-8: bound as AAD; else Malformed.
            6..8 => Expect::DecryptOrMalformed,
            8..16 => Expect::KeyMismatchOrMalformed,
            _ => Expect::Decrypt,
        },
        unwrap_sample,
    );
}

#[test]
fn wrapped_truncation_appending_and_other_keys_are_rejected() {
    let blob = sample_wrapped();
    for cut in 0..blob.len() {
        let e = unwrap_sample(&blob[..cut]).unwrap_err();
        if cut < 70 + 2 + TAG_LEN {
            assert!(matches!(e, Error::Truncated { .. }), "cut {cut}: {e:?}");
        } else {
            assert!(matches!(e, Error::Decrypt), "cut {cut}: {e:?}");
        }
    }
    for extra in [&[0u8][..], &[0; TAG_LEN]] {
        let e = unwrap_sample(&[&blob[..], extra].concat()).unwrap_err();
        assert!(matches!(e, Error::Decrypt), "{e:?}");
    }
    let e = wrapped::unwrap(&xaes(6), Kind::DataKeyUnderKek, 99, &blob)
        .err()
        .unwrap();
    assert!(matches!(e, Error::Decrypt), "{e:?}");
    for (kind, id) in [(Kind::KmsKeyUnderKek, 99), (Kind::DataKeyUnderKek, 98)] {
        let e = wrapped::unwrap(&xaes(5), kind, id, &blob).err().unwrap();
        assert!(matches!(e, Error::KeyMismatch { .. }), "{e:?}");
    }
    // The same key and ids, but another wrapping key id in the header (re-labelled blob).
    let mut relabelled = blob.clone();
    relabelled[6..8].copy_from_slice(b"18");
    assert!(matches!(unwrap_sample(&relabelled), Err(Error::Decrypt)));
}

#[test]
fn wrapped_unknown_version_bad_magic_and_bad_header_fields() {
    let blob = sample_wrapped();
    for v in [0u8, 2, 3, 255] {
        let mut bad = blob.clone();
        bad[3] = v;
        let e = unwrap_sample(&bad).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedVersion { version, supported: 1, .. } if version == v)
        );
        assert!(e.to_string().contains(&format!("version {v}")), "{e}");
    }
    for magic in [*b"KRE", *b"KRS", *b"krw", [0; 3]] {
        let bad = [&magic[..], &blob[3..]].concat();
        assert!(matches!(unwrap_sample(&bad), Err(Error::BadMagic { .. })));
    }
    for k in [0u8, 5, 255] {
        let mut bad = blob.clone();
        bad[4] = k;
        assert!(
            matches!(unwrap_sample(&bad), Err(Error::Malformed { .. })),
            "kind {k}"
        );
    }
    let mut bad = blob.clone();
    bad[6] = 0xff;
    assert!(
        matches!(unwrap_sample(&bad), Err(Error::Malformed { .. })),
        "non-UTF-8 id"
    );
    let mut bad = blob.clone();
    bad[5] = 0;
    assert!(
        matches!(unwrap_sample(&bad), Err(Error::Malformed { .. })),
        "empty wrapping key id"
    );
    let too_long = "x".repeat(256);
    let r = wrapped::wrap(&xaes(5), &too_long, Kind::KmsKeyUnderKek, 1, &[0; 32]);
    assert!(matches!(r, Err(Error::Malformed { .. })));
    assert!(matches!(
        wrapped::wrap(&xaes(5), "", Kind::KmsKeyUnderKek, 1, &[0; 32]),
        Err(Error::Malformed { .. })
    ));
}
