#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Frozen known-answer vectors for the three formats, in `testdata/*-v1.json`.
//!
//! The non-ignored tests re-derive every stored vector from its recorded inputs and compare
//! byte for byte, decrypt every stored output, and rebuild every output a second time from
//! `docs/format.md` alone (with kura-crypto primitives, not kura-format), so a format change
//! can never slip by. The files are written by the ignored test `regenerate`:
//!
//! ```text
//! cargo test -p kura-format --test vectors -- --ignored regenerate
//! ```
//!
//! Published vectors are frozen: `regenerate` refuses to change the output of a vector that
//! already exists (set `KURA_VECTORS_FORCE=1` to override, which means a format break).

mod kat;

use std::path::Path;

use kat::*;
use kura_format::stream::{self, Opener, Sealer};
use kura_format::{envelope, wrapped};
use serde::{Serialize, de::DeserializeOwned};

const ENVELOPE_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/envelope-v1.json"
);
const STREAM_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/stream-v1.json");
const WRAPPED_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/wrapped-key-v1.json"
);
const REGENERATE: &str = "cargo test -p kura-format --test vectors -- --ignored regenerate";

fn load<V: DeserializeOwned>(path: &str) -> VectorFile<V> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}; run `{REGENERATE}`"));
    let file: VectorFile<V> = serde_json::from_str(&text).unwrap();
    assert!(!file.vectors.is_empty(), "{path} holds no vectors");
    file
}

// ---------------------------------------------------------------------------------------
// Derivation through the kura-format API
// ---------------------------------------------------------------------------------------

fn seal_envelope(v: &EnvelopeVector) -> Vec<u8> {
    let mut out = Vec::new();
    envelope::seal_with_nonce(
        &xaes(&v.key),
        v.key_id,
        &context(&v.context),
        &unhex_n(&v.nonce),
        &unhex(&v.plaintext),
        &mut out,
    )
    .unwrap();
    out
}

fn sealer(v: &StreamVector) -> Sealer {
    let ctx = context(&v.context);
    Sealer::with_salt(
        &key256(&v.key),
        v.key_id,
        &ctx,
        v.chunk_log2,
        &unhex_n(&v.salt),
    )
    .unwrap()
}

fn seal_stream(v: &StreamVector) -> Vec<u8> {
    let mut out = Vec::new();
    let n = stream::encrypt(&stream_plaintext(v)[..], &mut out, sealer(v)).unwrap();
    assert_eq!(n, v.plaintext_len as u64);
    out
}

/// The same stream, sealed chunk by chunk with [`Sealer::seal_chunk`] (no batched I/O).
fn seal_stream_by_chunks(v: &StreamVector) -> Vec<u8> {
    let mut s = sealer(v);
    let mut out = s.header().as_bytes().to_vec();
    let pt = stream_plaintext(v);
    let cs = 1usize << v.chunk_log2;
    let chunks: Vec<&[u8]> = if pt.is_empty() {
        vec![&[]]
    } else {
        pt.chunks(cs).collect()
    };
    for (i, c) in chunks.iter().enumerate() {
        let mut buf = c.to_vec();
        let tag = s.seal_chunk(&mut buf, i + 1 == chunks.len()).unwrap();
        out.extend_from_slice(&buf);
        out.extend_from_slice(&tag);
    }
    out
}

fn wrap_key(v: &WrappedVector) -> Vec<u8> {
    wrapped::wrap_with_nonce(
        &xaes(&v.wrapping_key),
        &v.wrapping_key_id,
        kind(v.kind),
        v.key_id,
        &unhex_n(&v.nonce),
        &unhex(&v.secret),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------

fn envelope_file() -> VectorFile<EnvelopeVector> {
    let mut vectors = envelope_cases();
    for v in &mut vectors {
        v.envelope = hex::encode(seal_envelope(v));
    }
    VectorFile {
        format: "kura record envelope, version 1".into(),
        spec: "docs/format.md".into(),
        notes: vec![
            "All byte strings are hex. key_id is the u64 data key id.".into(),
            "context lists the pairs as given; context_encoding is their canonical AAD encoding."
                .into(),
            "envelope = seal_with_nonce(key, key_id, context, nonce, plaintext).".into(),
        ],
        regenerate: REGENERATE.into(),
        vectors,
    }
}

fn stream_file() -> VectorFile<StreamVector> {
    let mut vectors = stream_cases();
    for v in &mut vectors {
        v.stream = hex::encode(seal_stream(v));
    }
    VectorFile {
        format: "kura stream, version 1".into(),
        spec: "docs/format.md".into(),
        notes: vec![
            "All byte strings are hex. key is the 32-byte data key, key_id its u64 id.".into(),
            "The plaintext is plaintext_pattern repeated and cut to plaintext_len bytes.".into(),
            "stream = header ‖ chunks, as written by Sealer::with_salt(key, key_id, context, chunk_log2, salt) and stream::encrypt.".into(),
        ],
        regenerate: REGENERATE.into(),
        vectors,
    }
}

fn wrapped_file() -> VectorFile<WrappedVector> {
    let mut vectors = wrapped_cases();
    for v in &mut vectors {
        v.wrapped = hex::encode(wrap_key(v));
    }
    VectorFile {
        format: "kura wrapped key, version 1".into(),
        spec: "docs/format.md".into(),
        notes: vec![
            "All byte strings are hex; wrapping_key_id is the UTF-8 id stored in the header.".into(),
            "kind: 1 KEK under a master key, 2 data key under a KEK, 3 KMS key material under a KEK.".into(),
            "wrapped = wrap_with_nonce(wrapping_key, wrapping_key_id, kind, key_id, nonce, secret).".into(),
        ],
        regenerate: REGENERATE.into(),
        vectors,
    }
}

/// Names of stored vectors whose output `new` would change (a format break).
fn changed<V: Serialize + DeserializeOwned>(path: &str, new: &VectorFile<V>) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return vec![];
    };
    let old: VectorFile<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let new: Vec<serde_json::Value> = new
        .vectors
        .iter()
        .map(|v| serde_json::to_value(v).unwrap())
        .collect();
    old.vectors
        .iter()
        .filter(|o| new.iter().any(|n| n["name"] == o["name"] && n != *o))
        .map(|o| format!("{path}: {}", o["name"]))
        .collect()
}

fn write<V: Serialize + DeserializeOwned>(path: &str, file: &VectorFile<V>) {
    let mut text = serde_json::to_string_pretty(file).unwrap();
    text.push('\n');
    std::fs::create_dir_all(Path::new(path).parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
#[ignore = "writes testdata/; run explicitly to add vectors"]
fn regenerate() {
    let (e, s, w) = (envelope_file(), stream_file(), wrapped_file());
    let mut broken = changed(ENVELOPE_FILE, &e);
    broken.extend(changed(STREAM_FILE, &s));
    broken.extend(changed(WRAPPED_FILE, &w));
    if !broken.is_empty() && std::env::var_os("KURA_VECTORS_FORCE").is_none() {
        panic!(
            "refusing to change frozen vectors (a format break; set KURA_VECTORS_FORCE=1 to override):\n{}",
            broken.join("\n")
        );
    }
    write(ENVELOPE_FILE, &e);
    write(STREAM_FILE, &s);
    write(WRAPPED_FILE, &w);
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

#[test]
fn stored_files_match_the_generator() {
    assert_eq!(
        load::<EnvelopeVector>(ENVELOPE_FILE),
        envelope_file(),
        "run `{REGENERATE}`"
    );
    assert_eq!(
        load::<StreamVector>(STREAM_FILE),
        stream_file(),
        "run `{REGENERATE}`"
    );
    assert_eq!(
        load::<WrappedVector>(WRAPPED_FILE),
        wrapped_file(),
        "run `{REGENERATE}`"
    );
}

#[test]
fn files_stay_small() {
    let total: u64 = [ENVELOPE_FILE, STREAM_FILE, WRAPPED_FILE]
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total < 100 * 1024, "testdata vectors are {total} bytes");
}

#[test]
fn envelope_vectors_rederive() {
    for v in load::<EnvelopeVector>(ENVELOPE_FILE).vectors {
        assert_eq!(
            hex::encode(context(&v.context).encode()),
            v.context_encoding,
            "{}",
            v.name
        );
        assert_eq!(hex::encode(seal_envelope(&v)), v.envelope, "{}", v.name);
    }
}

#[test]
fn envelope_vectors_open() {
    for v in load::<EnvelopeVector>(ENVELOPE_FILE).vectors {
        let env = unhex(&v.envelope);
        assert_eq!(
            env.len(),
            envelope::OVERHEAD + v.plaintext.len() / 2,
            "{}",
            v.name
        );
        assert_eq!(envelope::key_id(&env).unwrap(), v.key_id, "{}", v.name);
        let mut out = b"prefix".to_vec();
        envelope::open(&xaes(&v.key), &context(&v.context), &env, &mut out).unwrap();
        assert_eq!(hex::encode(&out[6..]), v.plaintext, "{}", v.name);
    }
}

#[test]
fn envelope_vectors_follow_the_spec() {
    for v in load::<EnvelopeVector>(ENVELOPE_FILE).vectors {
        assert_eq!(
            hex::encode(spec_context(&v.context)),
            v.context_encoding,
            "{}",
            v.name
        );
        assert_eq!(hex::encode(spec_envelope(&v)), v.envelope, "{}", v.name);
    }
}

#[test]
fn stream_vectors_rederive() {
    for v in load::<StreamVector>(STREAM_FILE).vectors {
        assert_eq!(
            hex::encode(context(&v.context).encode()),
            v.context_encoding,
            "{}",
            v.name
        );
        assert_eq!(hex::encode(seal_stream(&v)), v.stream, "{}", v.name);
        assert_eq!(
            hex::encode(seal_stream_by_chunks(&v)),
            v.stream,
            "{}",
            v.name
        );
    }
}

#[test]
fn stream_vectors_open() {
    for v in load::<StreamVector>(STREAM_FILE).vectors {
        let ct = unhex(&v.stream);
        let key = key256(&v.key);
        let ctx = context(&v.context);
        let mut out = Vec::new();
        let n = stream::decrypt(&ct[..], &mut out, |h| {
            assert_eq!(h.data_key_id(), v.key_id);
            assert_eq!(h.chunk_size(), 1 << v.chunk_log2);
            Opener::new(h, &key, &ctx)
        })
        .unwrap();
        assert_eq!(n, v.plaintext_len as u64, "{}", v.name);
        assert!(out == stream_plaintext(&v), "{}: plaintext differs", v.name);
    }
}

#[test]
fn stream_vectors_follow_the_spec() {
    for v in load::<StreamVector>(STREAM_FILE).vectors {
        assert_eq!(
            hex::encode(spec_context(&v.context)),
            v.context_encoding,
            "{}",
            v.name
        );
        assert_eq!(hex::encode(spec_stream(&v)), v.stream, "{}", v.name);
    }
}

#[test]
fn wrapped_vectors_rederive() {
    for v in load::<WrappedVector>(WRAPPED_FILE).vectors {
        assert_eq!(hex::encode(wrap_key(&v)), v.wrapped, "{}", v.name);
    }
}

#[test]
fn wrapped_vectors_unwrap() {
    for v in load::<WrappedVector>(WRAPPED_FILE).vectors {
        let blob = unhex(&v.wrapped);
        let h = wrapped::parse(&blob).unwrap();
        assert_eq!(h.kind, kind(v.kind), "{}", v.name);
        assert_eq!(h.wrapping_key_id, v.wrapping_key_id, "{}", v.name);
        assert_eq!(h.key_id, v.key_id, "{}", v.name);
        let secret =
            wrapped::unwrap(&xaes(&v.wrapping_key), kind(v.kind), v.key_id, &blob).unwrap();
        assert_eq!(hex::encode(secret.expose_secret()), v.secret, "{}", v.name);
    }
}

#[test]
fn wrapped_vectors_follow_the_spec() {
    for v in load::<WrappedVector>(WRAPPED_FILE).vectors {
        assert_eq!(hex::encode(spec_wrapped(&v)), v.wrapped, "{}", v.name);
    }
}

#[test]
fn vectors_cover_the_required_cases() {
    let e = load::<EnvelopeVector>(ENVELOPE_FILE).vectors;
    for len in [0, 1] {
        for with_ctx in [false, true] {
            assert!(
                e.iter()
                    .any(|v| v.plaintext.len() / 2 == len && v.context.is_empty() != with_ctx)
            );
        }
    }
    assert!(
        e.iter()
            .any(|v| v.plaintext.len() / 2 >= 256 && !v.context.is_empty())
    );
    assert!(
        e.iter()
            .any(|v| v.context.iter().any(|(k, _)| !k.is_ascii()))
    );
    let s = load::<StreamVector>(STREAM_FILE).vectors;
    for len in [0, 1, 4095, 4096, 4097, 3 * 4096 + 7] {
        assert!(
            s.iter()
                .any(|v| v.chunk_log2 == 12 && v.plaintext_len == len),
            "{len}"
        );
    }
    assert!(
        s.iter()
            .any(|v| v.chunk_log2 == 16 && v.plaintext_len == 100)
    );
    let w = load::<WrappedVector>(WRAPPED_FILE).vectors;
    for k in 1..=3 {
        assert!(w.iter().any(|v| v.kind == k), "kind {k}");
    }
    let ids: std::collections::BTreeSet<_> = w.iter().map(|v| &v.wrapping_key_id).collect();
    assert!(ids.len() >= 3);
}
