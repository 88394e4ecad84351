#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The stream rules that tampering alone cannot reach: the commitment is checked before any
//! chunk, `Sealer` and `Opener` enforce the chunk shapes, and chunks that authenticate but
//! break the canonical layout (forged here with the real stream key) are still rejected.

use kura_crypto::{Aes256Gcm, Key256, TAG_LEN, hkdf_sha256};
use kura_format::stream::{self, HEADER_LEN, Header, Opener, Sealer};
use kura_format::{EncryptionContext, Error};

const CS: usize = 4096;

fn key(seed: u8) -> Key256 {
    Key256::from_slice(&[seed; 32], "test key").unwrap()
}

fn ctx() -> EncryptionContext {
    [("tenant", "acme")].into_iter().collect()
}

fn sealer() -> Sealer {
    Sealer::with_salt(&key(3), 77, &ctx(), 12, &[9; 32]).unwrap()
}

fn is_decrypt<T>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Decrypt))
}

fn is_malformed<T>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Malformed { .. }))
}

fn open_stream(ct: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    stream::decrypt(ct, &mut out, |h| Opener::new(h, &key(3), &ctx())).map(|_| out)
}

#[test]
fn commitment_is_checked_before_any_chunk() {
    let header = sealer().header().as_bytes().to_vec();
    let parsed = || Header::parse(&header).unwrap();
    assert!(Opener::new(parsed(), &key(3), &ctx()).is_ok());
    assert!(is_decrypt(Opener::new(parsed(), &key(4), &ctx())));
    assert!(is_decrypt(Opener::new(
        parsed(),
        &key(3),
        &EncryptionContext::new()
    )));
    // Key id, salt and commitment: every bit.
    for i in 8..HEADER_LEN {
        for bit in 0..8 {
            let mut bad = header.clone();
            bad[i] ^= 1 << bit;
            let h = Header::parse(&bad).unwrap();
            assert!(
                is_decrypt(Opener::new(h, &key(3), &ctx())),
                "byte {i} bit {bit}"
            );
        }
    }
}

#[test]
fn sealer_and_opener_enforce_chunk_shapes() {
    let mut s = sealer();
    assert!(
        is_malformed(s.seal_chunk(&mut vec![0; CS - 1], false)),
        "short middle chunk"
    );
    assert!(
        is_malformed(s.seal_chunk(&mut vec![0; CS + 1], true)),
        "oversized last chunk"
    );
    let mut c0 = vec![1; CS];
    let t0 = s.seal_chunk(&mut c0, false).unwrap();
    assert!(
        is_malformed(s.seal_chunk(&mut [], true)),
        "empty last chunk after data"
    );
    let mut c1 = vec![2; 10];
    let t1 = s.seal_chunk(&mut c1, true).unwrap();
    assert!(
        is_malformed(s.seal_chunk(&mut [0; 1], true)),
        "chunk after the last"
    );

    let mut o = Opener::new(s.header().clone(), &key(3), &ctx()).unwrap();
    assert!(
        is_decrypt(o.open_chunk(&mut c0.clone(), &t0, true)),
        "flagged last"
    );
    assert!(
        is_decrypt(o.open_chunk(&mut c0.clone()[..CS - 1], &t0, false)),
        "short"
    );
    // A failed chunk does not advance the counter, so no chunk can be skipped.
    let mut p0 = c0.clone();
    o.open_chunk(&mut p0, &t0, false).unwrap();
    assert_eq!(p0, vec![1; CS]);
    assert!(
        is_decrypt(o.open_chunk(&mut [], &t1, true)),
        "empty last chunk"
    );
    assert!(!o.is_done());
    let mut p1 = c1.clone();
    o.open_chunk(&mut p1, &t1, true).unwrap();
    assert!(o.is_done() && p1 == vec![2; 10]);
    assert!(
        is_decrypt(o.open_chunk(&mut c1.clone(), &t1, true)),
        "after the last"
    );
}

/// Seals chunks of any shape (plaintext, last flag) with the real stream key, derived as
/// docs/format.md says, which `Sealer` refuses to do; returns header ‖ chunks.
fn forge(chunks: &[(Vec<u8>, bool)]) -> Vec<u8> {
    let header = sealer().header().as_bytes().to_vec();
    let mut okm = [0u8; 64];
    let info: [&[u8]; 3] = [b"kura stream v1", &header[..16], &ctx().encode()];
    hkdf_sha256(&header[16..48], key(3).expose_secret(), &info, &mut okm).unwrap();
    assert_eq!(okm[32..], header[48..], "forged key derivation");
    let gcm = Aes256Gcm::new(&Key256::from_slice(&okm[..32], "stream key").unwrap()).unwrap();
    let mut out = header.clone();
    for (i, (pt, last)) in chunks.iter().enumerate() {
        let mut nonce = [0u8; 12];
        nonce[3..11].copy_from_slice(&(i as u64).to_be_bytes());
        nonce[11] = u8::from(*last);
        let mut c = pt.clone();
        let tag = gcm.seal_in_place(&nonce, &header, &mut c).unwrap();
        out.extend_from_slice(&c);
        out.extend_from_slice(&tag);
    }
    out
}

#[test]
fn authentic_but_non_canonical_chunks_are_rejected() {
    // The forgery is right: a canonical layout decrypts.
    let ok = forge(&[(vec![1; CS], false), (vec![2; 5], true)]);
    assert_eq!(
        open_stream(&ok).unwrap(),
        [vec![1; CS], vec![2; 5]].concat()
    );
    // A full chunk, then an empty last one (a writer flags the full chunk last instead).
    let bad = forge(&[(vec![1; CS], false), (vec![], true)]);
    assert!(
        is_decrypt(open_stream(&bad)),
        "empty last chunk after a full one"
    );
    // A short chunk that is not the last.
    let bad = forge(&[(vec![1; 10], false), (vec![2; 5], true)]);
    assert!(is_decrypt(open_stream(&bad)), "short middle chunk");
    let mut o = Opener::new(Header::parse(&bad).unwrap(), &key(3), &ctx()).unwrap();
    let at = HEADER_LEN + 10;
    let tag: [u8; TAG_LEN] = bad[at..at + TAG_LEN].try_into().unwrap();
    assert!(is_decrypt(o.open_chunk(
        &mut bad[HEADER_LEN..at].to_vec(),
        &tag,
        false
    )));
    // Two empty chunks, the first not flagged last.
    let bad = forge(&[(vec![], false), (vec![], true)]);
    assert!(is_decrypt(open_stream(&bad)), "empty middle chunk");
}
