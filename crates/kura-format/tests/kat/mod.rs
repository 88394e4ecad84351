#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The known-answer vectors: the JSON schema of `testdata/*-v1.json`, the inputs of every
//! vector, and a second derivation of every output from `docs/format.md` alone, built from
//! kura-crypto primitives rather than kura-format.

use std::collections::BTreeMap;

use kura_crypto::{Aes256Gcm, Key256, XaesCommitting, hkdf_sha256};
use kura_format::EncryptionContext;
use kura_format::wrapped::Kind;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------
// File schema
// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VectorFile<V> {
    pub(crate) format: String,
    pub(crate) spec: String,
    pub(crate) notes: Vec<String>,
    pub(crate) regenerate: String,
    pub(crate) vectors: Vec<V>,
}

/// Context pairs as written (any order); `context_encoding` is the canonical AAD encoding.
pub(crate) type Pairs = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvelopeVector {
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) key_id: u64,
    pub(crate) context: Pairs,
    pub(crate) context_encoding: String,
    pub(crate) nonce: String,
    pub(crate) plaintext: String,
    pub(crate) envelope: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamVector {
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) key_id: u64,
    pub(crate) context: Pairs,
    pub(crate) context_encoding: String,
    pub(crate) chunk_log2: u8,
    pub(crate) salt: String,
    /// The plaintext is `plaintext_pattern` repeated and cut to `plaintext_len` bytes.
    pub(crate) plaintext_pattern: String,
    pub(crate) plaintext_len: usize,
    pub(crate) stream: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WrappedVector {
    pub(crate) name: String,
    pub(crate) wrapping_key: String,
    pub(crate) wrapping_key_id: String,
    pub(crate) kind: u8,
    pub(crate) key_id: u64,
    pub(crate) nonce: String,
    pub(crate) secret: String,
    pub(crate) wrapped: String,
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

pub(crate) fn unhex_n<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().unwrap()
}

pub(crate) fn key256(s: &str) -> Key256 {
    Key256::from_slice(&unhex(s), "vector key").unwrap()
}

pub(crate) fn xaes(s: &str) -> XaesCommitting {
    XaesCommitting::new(&key256(s)).unwrap()
}

pub(crate) fn context(pairs: &Pairs) -> EncryptionContext {
    pairs.iter().cloned().collect()
}

/// `n` bytes `start, start + step, …` (mod 256).
pub(crate) fn seq(n: usize, start: u8, step: u8) -> Vec<u8> {
    (0..n)
        .map(|i| start.wrapping_add((i as u8).wrapping_mul(step)))
        .collect()
}

fn repeat(pattern: &[u8], len: usize) -> Vec<u8> {
    pattern.iter().copied().cycle().take(len).collect()
}

pub(crate) fn pairs(p: &[(&str, &str)]) -> Pairs {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn kind(b: u8) -> Kind {
    match b {
        1 => Kind::KekUnderMasterKey,
        2 => Kind::DataKeyUnderKek,
        3 => Kind::KmsKeyUnderKek,
        _ => panic!("unknown kind {b}"),
    }
}

// ---------------------------------------------------------------------------------------
// The cases (inputs only; outputs are computed by `regenerate`)
// ---------------------------------------------------------------------------------------

pub(crate) const PATTERN: &[u8] =
    b"kura stream test vector: the quick brown fox jumps over the lazy dog\n";

pub(crate) fn envelope_cases() -> Vec<EnvelopeVector> {
    let key_a = hex::encode(seq(32, 0x00, 1));
    let key_b = hex::encode(seq(32, 0xf0, 0x35));
    let unicode = pairs(&[
        ("tenant", "Zürich AG"),
        ("🔑", "密钥"),
        ("ключ", "значение"),
        ("a", ""),
    ]);
    #[rustfmt::skip]
    let cases: [(&str, &str, u64, Pairs, Vec<u8>); 10] = [
        ("empty plaintext, empty context", &key_a, 1, vec![], vec![]),
        ("one byte, empty context", &key_a, 0x0102_0304_0506_0708, vec![], vec![0x5a]),
        ("300 bytes, empty context", &key_a, 2, vec![], seq(300, 0x11, 3)),
        ("empty plaintext, one pair", &key_a, 3, pairs(&[("tenant", "acme")]), vec![]),
        ("one byte, two pairs given out of order", &key_a, 4,
            pairs(&[("table", "users"), ("column", "email")]), vec![0x00]),
        ("300 bytes, unicode context", &key_a, 5, unicode.clone(), seq(300, 0x80, 7)),
        ("empty key and empty value", &key_a, 6, pairs(&[("", "")]), b"x".to_vec()),
        ("key id 0, other key", &key_b, 0, pairs(&[("k", "v")]), b"secret".to_vec()),
        ("key id u64::MAX, other key", &key_b, u64::MAX, vec![], seq(64, 0xff, 0xff)),
        ("257 bytes, other key, unicode context", &key_b, 7, unicode, seq(257, 1, 1)),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, key, key_id, ctx, pt))| EnvelopeVector {
            name: name.into(),
            key: key.into(),
            key_id,
            context_encoding: hex::encode(context(&ctx).encode()),
            context: ctx,
            nonce: hex::encode(seq(24, 0x40 + i as u8 * 0x10, 0x0b)),
            plaintext: hex::encode(pt),
            envelope: String::new(),
        })
        .collect()
}

pub(crate) fn stream_cases() -> Vec<StreamVector> {
    let key = hex::encode(seq(32, 0x20, 0x1d));
    let cs = 4096;
    let unicode = pairs(&[("path", "/srv/données/備份.tar"), ("emoji", "📦")]);
    let backup = pairs(&[("purpose", "backup"), ("host", "db-01")]);
    #[rustfmt::skip]
    let cases: [(&str, u64, Pairs, u8, usize); 9] = [
        ("chunk 2^12, empty", 7, vec![], 12, 0),
        ("chunk 2^12, 1 byte, one pair", 7, pairs(&[("file", "a")]), 12, 1),
        ("chunk 2^12, one byte short of a chunk", 7, vec![], 12, cs - 1),
        ("chunk 2^12, exactly one chunk, two pairs", 7, backup, 12, cs),
        ("chunk 2^12, one byte into a second chunk", 8, vec![], 12, cs + 1),
        ("chunk 2^12, three chunks and 7 bytes, unicode", 9, unicode, 12, 3 * cs + 7),
        ("default chunk 2^16, empty", u64::MAX, vec![], 16, 0),
        ("default chunk 2^16, 100 bytes", 0x0102_0304_0506_0708, vec![], 16, 100),
        ("default chunk 2^16, 100 bytes, one pair", 10, pairs(&[("t", "v")]), 16, 100),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, key_id, ctx, chunk_log2, len))| StreamVector {
            name: name.into(),
            key: key.clone(),
            key_id,
            context_encoding: hex::encode(context(&ctx).encode()),
            context: ctx,
            chunk_log2,
            salt: hex::encode(seq(32, 0x90 + i as u8 * 0x07, 0x13)),
            plaintext_pattern: hex::encode(PATTERN),
            plaintext_len: len,
            stream: String::new(),
        })
        .collect()
}

pub(crate) fn wrapped_cases() -> Vec<WrappedVector> {
    let master = hex::encode(seq(32, 0xa0, 0x09));
    let kek = hex::encode(seq(32, 0x07, 0x21));
    let long_id = format!("kms:{}", "k".repeat(251));
    // (name, wrapping key, wrapping key id, kind, key id, secret)
    type Case<'a> = (&'a str, &'a str, &'a str, u8, u64, Vec<u8>);
    #[rustfmt::skip]
    let cases: [Case; 5] = [
        ("KEK under a master key", &master, "local:3f9a0c1e5b7d2468", 1, 1, seq(32, 0xc0, 5)),
        ("data key under a KEK", &kek, "17", 2, 4242, seq(32, 0x33, 0x11)),
        ("KMS key material under a KEK", &kek, "18446744073709551615", 3, 9, seq(32, 0x5c, 0x17)),
        ("16-byte KMS key material", &kek, "1", 3, 0, seq(16, 0xee, 0x03)),
        ("255-byte wrapping key id", &master, &long_id, 1, u64::MAX, seq(32, 0, 0x4f)),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(
            |(i, (name, wk, wk_id, kind, key_id, secret))| WrappedVector {
                name: name.into(),
                wrapping_key: wk.into(),
                wrapping_key_id: wk_id.into(),
                kind,
                key_id,
                nonce: hex::encode(seq(24, 0x01 + i as u8 * 0x29, 0x0d)),
                secret: hex::encode(secret),
                wrapped: String::new(),
            },
        )
        .collect()
}

// ---------------------------------------------------------------------------------------
// Independent derivation from docs/format.md, with kura-crypto primitives only
// ---------------------------------------------------------------------------------------

/// The plaintext of a stream vector: the pattern repeated and cut to length.
pub(crate) fn stream_plaintext(v: &StreamVector) -> Vec<u8> {
    repeat(&unhex(&v.plaintext_pattern), v.plaintext_len)
}

/// `count:u32 ‖ (klen:u32 ‖ key ‖ vlen:u32 ‖ value)*`, keys sorted bytewise, big-endian.
pub(crate) fn spec_context(pairs: &Pairs) -> Vec<u8> {
    let sorted: BTreeMap<&[u8], &[u8]> = pairs
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    let mut out = (sorted.len() as u32).to_be_bytes().to_vec();
    for (k, v) in sorted {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// Header ‖ commitment ‖ sealed body ‖ tag, with AAD = header ‖ commitment ‖ `aad_tail`.
fn spec_xaes(key: &str, nonce: &str, mut header: Vec<u8>, aad_tail: &[u8], pt: &str) -> Vec<u8> {
    let (message, commitment) = xaes(key).begin(&unhex_n(nonce)).unwrap();
    header.extend_from_slice(&commitment);
    let mut aad = header.clone();
    aad.extend_from_slice(aad_tail);
    let mut body = unhex(pt);
    let tag = message.seal_in_place(&aad, &mut body).unwrap();
    [header, body, tag.to_vec()].concat()
}

pub(crate) fn spec_envelope(v: &EnvelopeVector) -> Vec<u8> {
    let mut header = b"KRE\x01".to_vec();
    header.extend_from_slice(&v.key_id.to_be_bytes());
    header.extend_from_slice(&unhex(&v.nonce));
    spec_xaes(
        &v.key,
        &v.nonce,
        header,
        &spec_context(&v.context),
        &v.plaintext,
    )
}

pub(crate) fn spec_stream(v: &StreamVector) -> Vec<u8> {
    let mut header = vec![b'K', b'R', b'S', 1, v.chunk_log2, 0, 0, 0];
    header.extend_from_slice(&v.key_id.to_be_bytes());
    header.extend_from_slice(&unhex(&v.salt));
    let mut okm = [0u8; 64];
    let info: [&[u8]; 3] = [b"kura stream v1", &header[..16], &spec_context(&v.context)];
    hkdf_sha256(&unhex(&v.salt), &unhex(&v.key), &info, &mut okm).unwrap();
    header.extend_from_slice(&okm[32..]);
    let gcm = Aes256Gcm::new(&Key256::from_slice(&okm[..32], "stream key").unwrap()).unwrap();
    let pt = stream_plaintext(v);
    let cs = 1usize << v.chunk_log2;
    let n = pt.len().div_ceil(cs).max(1);
    let mut out = header.clone();
    for i in 0..n {
        let mut chunk = pt[(i * cs).min(pt.len())..((i + 1) * cs).min(pt.len())].to_vec();
        let mut nonce = [0u8; 12];
        nonce[3..11].copy_from_slice(&(i as u64).to_be_bytes());
        nonce[11] = u8::from(i + 1 == n);
        let tag = gcm.seal_in_place(&nonce, &header, &mut chunk).unwrap();
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&tag);
    }
    out
}

pub(crate) fn spec_wrapped(v: &WrappedVector) -> Vec<u8> {
    let mut header = vec![b'K', b'R', b'W', 1, v.kind, v.wrapping_key_id.len() as u8];
    header.extend_from_slice(v.wrapping_key_id.as_bytes());
    header.extend_from_slice(&v.key_id.to_be_bytes());
    header.extend_from_slice(&unhex(&v.nonce));
    spec_xaes(&v.wrapping_key, &v.nonce, header, &[], &v.secret)
}
