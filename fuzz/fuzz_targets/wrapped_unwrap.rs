//! Wrapped keys: `wrapped::parse` and `wrapped::unwrap` with the fixed key, on arbitrary
//! bytes (first input byte even) or on a valid wrapped key with the rest of the input
//! XORed in, appended or cut off (first input byte odd; see `kura_fuzz::Mutation`).
//!
//! Invariants: `parse` accepts exactly the well-formed headers and reports the fields
//! that are in the bytes; `unwrap` with the kind and id the blob names never reports a
//! key mismatch, and with others always does; a blob unwraps only if it is byte for byte
//! one of the valid samples, and then yields exactly the wrapped secret.
#![no_main]

use std::sync::OnceLock;

use kura_format::wrapped::Kind;
use kura_format::{Error, wrapped};
use kura_fuzz::{plaintext, split_mode, xaes};
use libfuzzer_sys::fuzz_target;

struct Sample {
    kind: Kind,
    key_id: u64,
    secret: Vec<u8>,
    blob: Vec<u8>,
}

const KINDS: [Kind; 3] = [
    Kind::KekUnderMasterKey,
    Kind::DataKeyUnderKek,
    Kind::KmsKeyUnderKek,
];

fn samples() -> &'static [Sample] {
    static S: OnceLock<Vec<Sample>> = OnceLock::new();
    S.get_or_init(|| {
        let long_id = "k".repeat(255);
        [
            (
                Kind::KekUnderMasterKey,
                "local:0011223344556677",
                1u64,
                32usize,
            ),
            (Kind::DataKeyUnderKek, "17", 99, 32),
            (Kind::KmsKeyUnderKek, long_id.as_str(), u64::MAX, 16),
            (Kind::DataKeyUnderKek, "é", 0, 0),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (kind, wrapping_id, key_id, len))| {
            let secret = plaintext(len, i as u8);
            let nonce = [0x30 + i as u8; 24];
            let blob = wrapped::wrap_with_nonce(xaes(), wrapping_id, kind, key_id, &nonce, &secret)
                .expect("wrap");
            Sample {
                kind,
                key_id,
                secret,
                blob,
            }
        })
        .collect()
    })
}

fn check(blob: &[u8]) {
    // What a well-formed header looks like, computed independently.
    let expected = (|| {
        if blob.len() < 6 || blob[..3] != wrapped::MAGIC || blob[3] != wrapped::VERSION {
            return None;
        }
        let kind = *KINDS.get(usize::from(blob[4]).checked_sub(1)?)?;
        let w = usize::from(blob[5]);
        let header_len = 6 + w + 8 + 24 + 32;
        if w == 0 || blob.len() < header_len + 16 {
            return None;
        }
        let id = std::str::from_utf8(&blob[6..6 + w]).ok()?;
        let mut k = [0u8; 8];
        k.copy_from_slice(&blob[6 + w..14 + w]);
        Some((kind, id, u64::from_be_bytes(k)))
    })();
    let h = match wrapped::parse(blob) {
        Ok(h) => h,
        Err(e) => {
            assert!(expected.is_none(), "parse rejected a well-formed blob: {e}");
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(
        Some((h.kind, h.wrapping_key_id, h.key_id)),
        expected,
        "parse misread the header"
    );

    let genuine = samples()
        .iter()
        .find(|s| s.blob == blob && s.kind == h.kind && s.key_id == h.key_id);
    match wrapped::unwrap(xaes(), h.kind, h.key_id, blob) {
        Ok(secret) => {
            let s = genuine.expect("a blob that was never wrapped unwrapped");
            assert_eq!(secret.expose_secret(), s.secret);
        }
        Err(Error::KeyMismatch { .. }) => panic!("key mismatch with the blob's own kind and id"),
        Err(_) => assert!(genuine.is_none(), "a genuine blob failed to unwrap"),
    }

    // Another kind or id is a mismatch, before any decryption.
    let other_kind = KINDS[(KINDS.iter().position(|k| *k == h.kind).unwrap_or(0) + 1) % 3];
    assert!(matches!(
        wrapped::unwrap(xaes(), other_kind, h.key_id, blob),
        Err(Error::KeyMismatch { .. })
    ));
    assert!(matches!(
        wrapped::unwrap(xaes(), h.kind, h.key_id.wrapping_add(1), blob),
        Err(Error::KeyMismatch { .. })
    ));
}

fuzz_target!(|data: &[u8]| {
    match split_mode(data) {
        None => {}
        Some(Err(bytes)) => check(bytes),
        Some(Ok(m)) => {
            let s = &samples()[m.sample % samples().len()];
            check(&m.apply(&s.blob));
        }
    }
});
