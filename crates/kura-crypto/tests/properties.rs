#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Property tests: AEAD round trips and tamper detection (XAES-256-GCM with commitment,
//! AES-256-GCM), `ct_eq`, and non-repetition of pooled nonces.

use std::collections::HashSet;

use kura_crypto::{
    Aes256Gcm, Error, GCM_NONCE_LEN, Key256, TAG_LEN, XAES_COMMITMENT_LEN, XAES_NONCE_LEN,
    XaesCommitting, ct_eq, rng,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;

fn flip(bytes: &mut [u8], bit: usize) {
    bytes[bit / 8] ^= 1 << (bit % 8);
}

/// A failed open must leave no plaintext behind: the buffer holds either the (tampered)
/// ciphertext it was given (commitment rejected before decrypting) or zeros (GCM wiped it).
fn no_plaintext_released(buf: &[u8], given: &[u8]) -> bool {
    buf == given || buf.iter().all(|&b| b == 0)
}

/// What one tampering test changes.
#[derive(Debug, Clone, Copy)]
enum Field {
    Ciphertext,
    Tag,
    Commitment,
    Nonce,
    Aad,
}

struct XaesSealed {
    nonce: [u8; XAES_NONCE_LEN],
    commitment: [u8; XAES_COMMITMENT_LEN],
    aad: Vec<u8>,
    ct: Vec<u8>,
    tag: [u8; TAG_LEN],
}

impl XaesSealed {
    fn seal(x: &XaesCommitting, nonce: [u8; XAES_NONCE_LEN], aad: &[u8], pt: &[u8]) -> Self {
        let mut ct = pt.to_vec();
        let (commitment, tag) = x.seal_in_place(&nonce, aad, &mut ct).unwrap();
        Self {
            nonce,
            commitment,
            aad: aad.to_vec(),
            ct,
            tag,
        }
    }

    fn field_bits(&self, f: Field) -> usize {
        8 * match f {
            Field::Ciphertext => self.ct.len(),
            Field::Tag => TAG_LEN,
            Field::Commitment => XAES_COMMITMENT_LEN,
            Field::Nonce => XAES_NONCE_LEN,
            Field::Aad => self.aad.len(),
        }
    }

    fn with_flip(&self, f: Field, bit: usize) -> Self {
        let mut t = Self {
            nonce: self.nonce,
            commitment: self.commitment,
            aad: self.aad.clone(),
            ct: self.ct.clone(),
            tag: self.tag,
        };
        match f {
            Field::Ciphertext => flip(&mut t.ct, bit),
            Field::Tag => flip(&mut t.tag, bit),
            Field::Commitment => flip(&mut t.commitment, bit),
            Field::Nonce => flip(&mut t.nonce, bit),
            Field::Aad => flip(&mut t.aad, bit),
        }
        t
    }

    /// Opens; on failure also checks that no plaintext was released.
    fn open(&self, x: &XaesCommitting) -> Result<Vec<u8>, Error> {
        let mut buf = self.ct.clone();
        match x.open_in_place(
            &self.nonce,
            &self.commitment,
            &self.aad,
            &mut buf,
            &self.tag,
        ) {
            Ok(()) => Ok(buf),
            Err(e) => {
                assert!(no_plaintext_released(&buf, &self.ct));
                Err(e)
            }
        }
    }
}

const FIELDS: [Field; 5] = [
    Field::Ciphertext,
    Field::Tag,
    Field::Commitment,
    Field::Nonce,
    Field::Aad,
];

proptest! {
    // Failing cases are saved beside this file (tests/properties.proptest-regressions).
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// XAES-256-GCM with commitment: seal then open returns the plaintext, and one flipped
    /// bit in any of ciphertext, tag, commitment, nonce or AAD makes open fail with
    /// `Error::Decrypt`. One random bit per non-empty field per case.
    #[test]
    fn xaes_round_trip_and_single_bit_flips(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; XAES_NONCE_LEN]>(),
        aad in prop::collection::vec(any::<u8>(), 0..64),
        pt in prop::collection::vec(any::<u8>(), 0..4096),
        bits in any::<[Index; 5]>(),
    ) {
        let x = XaesCommitting::new(&Key256::from_slice(&key, "test").unwrap()).unwrap();
        let sealed = XaesSealed::seal(&x, nonce, &aad, &pt);
        prop_assert_eq!(sealed.ct.len(), pt.len());
        prop_assert_eq!(sealed.open(&x).unwrap(), pt);

        for (field, bit) in FIELDS.into_iter().zip(bits.iter()) {
            let n = sealed.field_bits(field);
            if n == 0 {
                continue;
            }
            let bit = bit.index(n);
            let r = sealed.with_flip(field, bit).open(&x);
            prop_assert!(
                matches!(r, Err(Error::Decrypt)),
                "{:?} bit {} flipped: {:?}", field, bit, r.map(|_| ())
            );
        }
    }

    /// A ciphertext opens under exactly one key.
    #[test]
    fn xaes_wrong_key_fails(
        k1 in any::<[u8; 32]>(),
        k2 in any::<[u8; 32]>(),
        nonce in any::<[u8; XAES_NONCE_LEN]>(),
        pt in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        prop_assume!(k1 != k2);
        let a = XaesCommitting::new(&Key256::from_slice(&k1, "a").unwrap()).unwrap();
        let b = XaesCommitting::new(&Key256::from_slice(&k2, "b").unwrap()).unwrap();
        let sealed = XaesSealed::seal(&a, nonce, b"", &pt);
        prop_assert!(matches!(sealed.open(&b), Err(Error::Decrypt)));
    }

    /// AES-256-GCM: round trip, ciphertext length, and one flipped bit in ciphertext, tag,
    /// nonce or AAD fails with `Error::Decrypt` and wipes the buffer.
    #[test]
    fn aes256gcm_round_trip_and_flips(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; GCM_NONCE_LEN]>(),
        aad in prop::collection::vec(any::<u8>(), 0..64),
        pt in prop::collection::vec(any::<u8>(), 0..4096),
        bits in any::<[Index; 4]>(),
    ) {
        let g = Aes256Gcm::new(&Key256::from_slice(&key, "test").unwrap()).unwrap();
        let mut ct = pt.clone();
        let tag = g.seal_in_place(&nonce, &aad, &mut ct).unwrap();
        prop_assert_eq!(ct.len(), pt.len());
        let mut buf = ct.clone();
        g.open_in_place(&nonce, &aad, &mut buf, &tag).unwrap();
        prop_assert_eq!(&buf, &pt);

        for (which, bit) in bits.iter().enumerate() {
            let (mut c, mut t, mut n, mut a) = (ct.clone(), tag, nonce, aad.clone());
            let target: &mut [u8] = match which {
                0 => &mut c,
                1 => &mut t,
                2 => &mut n,
                _ => &mut a,
            };
            if target.is_empty() {
                continue;
            }
            let b = bit.index(target.len() * 8);
            flip(target, b);
            let r = g.open_in_place(&n, &a, &mut c, &t);
            prop_assert!(matches!(r, Err(Error::Decrypt)), "field {} bit {}", which, b);
            prop_assert!(c.iter().all(|&x| x == 0), "buffer not wiped");
        }
    }

    /// `ct_eq` agrees with `==` on arbitrary inputs, including different lengths.
    #[test]
    fn ct_eq_matches_eq(
        a in prop::collection::vec(any::<u8>(), 0..80),
        b in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        prop_assert_eq!(ct_eq(&a, &b), a == b);
        prop_assert!(ct_eq(&a, &a.clone()));
    }

    /// `ct_eq` notices any single flipped bit and any truncation.
    #[test]
    fn ct_eq_detects_one_bit_and_truncation(
        a in prop::collection::vec(any::<u8>(), 1..80),
        bit in any::<Index>(),
    ) {
        let mut b = a.clone();
        flip(&mut b, bit.index(a.len() * 8));
        prop_assert!(!ct_eq(&a, &b));
        prop_assert!(!ct_eq(&a, &a[..a.len() - 1]));
        prop_assert!(!ct_eq(&a[..a.len() - 1], &a));
    }
}

/// Every bit of every field of one small sealed message, exhaustively.
#[test]
fn xaes_every_single_bit_flip_fails() {
    let x = XaesCommitting::new(&Key256::from_slice(&[0x5c; 32], "test").unwrap()).unwrap();
    let sealed = XaesSealed::seal(&x, [0xa1; 24], b"aad!!", b"twenty bytes of text");
    assert_eq!(sealed.open(&x).unwrap(), b"twenty bytes of text");
    let mut checked = 0;
    for field in FIELDS {
        for bit in 0..sealed.field_bits(field) {
            let r = sealed.with_flip(field, bit).open(&x);
            assert!(matches!(r, Err(Error::Decrypt)), "{field:?} bit {bit}");
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        (20 + TAG_LEN + XAES_COMMITMENT_LEN + XAES_NONCE_LEN + 5) * 8
    );
}

/// Nonces differ, and so do GCM keys: the same nonce under two XAES keys, and two nonces
/// under one key, give different ciphertexts for the same plaintext.
#[test]
fn xaes_nonce_and_key_change_everything() {
    let k = Key256::from_slice(&[1; 32], "k").unwrap();
    let x = XaesCommitting::new(&k).unwrap();
    let y = XaesCommitting::new(&Key256::from_slice(&[2; 32], "k2").unwrap()).unwrap();
    let pt = [0u8; 48];
    let a = XaesSealed::seal(&x, [0; 24], b"", &pt);
    let mut n = [0u8; 24];
    n[23] = 1; // only the GCM half of the nonce differs: same key and commitment
    let b = XaesSealed::seal(&x, n, b"", &pt);
    let c = XaesSealed::seal(&y, [0; 24], b"", &pt);
    assert_ne!(a.ct, b.ct);
    assert_eq!(a.commitment, b.commitment);
    assert_ne!(a.ct, c.ct);
    assert_ne!(a.commitment, c.commitment);
    n[0] = 1; // the KDF half differs: another key and commitment
    let d = XaesSealed::seal(&x, n, b"", &pt);
    assert_ne!(a.commitment, d.commitment);
}

#[test]
fn ct_eq_basics() {
    assert!(ct_eq(b"", b""));
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"ab"));
    assert!(!ct_eq(b"", b"\0"));
    assert!(!ct_eq(&[0u8; 32], &[0u8; 33]));
    assert!(ct_eq(&[0xffu8; 32], &[0xffu8; 32]));
}

/// 100 000 pooled 24-byte nonces drawn on two threads (each with its own pool, refilled
/// about 290 times) are all distinct.
#[test]
fn pooled_nonces_do_not_repeat_across_threads() {
    const PER_THREAD: usize = 50_000;
    let draw = || {
        (0..PER_THREAD)
            .map(|_| rng::nonce::<24>().unwrap())
            .collect::<Vec<_>>()
    };
    let t1 = std::thread::spawn(draw);
    let t2 = std::thread::spawn(draw);
    let (a, b) = (t1.join().unwrap(), t2.join().unwrap());
    let mut seen = HashSet::with_capacity(2 * PER_THREAD);
    for n in a.iter().chain(b.iter()) {
        assert!(seen.insert(*n), "repeated nonce {n:02x?}");
    }
    assert_eq!(seen.len(), 2 * PER_THREAD);
    // The pool wipes what it serves; a served nonce is never the wiped zeros.
    assert!(!seen.contains(&[0u8; 24]));
}

/// Other nonce sizes come from the same pool and are distinct too.
#[test]
fn pooled_nonces_of_other_sizes() {
    let mut s12 = HashSet::new();
    let mut s64 = HashSet::new();
    for _ in 0..5_000 {
        assert!(s12.insert(rng::nonce::<12>().unwrap()));
        assert!(s64.insert(rng::nonce::<64>().unwrap()));
    }
}
