#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! CTR keystreams: NIST SP 800-38A F.5.1/F.5.3/F.5.5 (AES-128/192/256-CTR), the
//! GB/T 32907-2016 SM4 example, and consistency at every offset and across a counter wrap.

use kura_crypto::{CtrCipher, CtrMethod, Error};

const ALL: [CtrMethod; 4] = [
    CtrMethod::Aes128,
    CtrMethod::Aes192,
    CtrMethod::Aes256,
    CtrMethod::Sm4,
];

/// The known answers, shared with kura-fs's file tests: `testdata/ctr-known-answers.json`
/// (its description says where each comes from).
fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../../testdata/ctr-known-answers.json")).unwrap()
}

/// A hex string of the vectors at `pointer` (a JSON pointer).
fn vector(pointer: &str) -> String {
    vectors()
        .pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("testdata/ctr-known-answers.json has no {pointer}"))
        .to_string()
}

fn iv(s: &str) -> [u8; 16] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// Encrypts the NIST plaintext in one call with case `case` of the vectors (whose method
/// must be `method`), decrypts it, and decrypts every sub-range `[a, b)` of the 64 bytes at
/// its own offset.
fn nist(method: CtrMethod, case: usize) {
    let at = |field: &str| vector(&format!("/nist_sp800_38a_f5/cases/{case}/{field}"));
    assert_eq!(at("method"), method_name(method));
    let key = hex::decode(at("key")).unwrap();
    let pt = hex::decode(vector("/nist_sp800_38a_f5/plaintext")).unwrap();
    let ct = hex::decode(at("ciphertext")).unwrap();
    let c = CtrCipher::new(method, &key, iv(&vector("/nist_sp800_38a_f5/counter"))).unwrap();

    let mut buf = pt.clone();
    c.apply_keystream(0, &mut buf).unwrap();
    assert_eq!(hex::encode(&buf), hex::encode(&ct), "{method:?} encrypt");
    c.apply_keystream(0, &mut buf).unwrap();
    assert_eq!(buf, pt, "{method:?} decrypt");

    // Decrypting from every byte offset gives the right slice...
    for off in 0..64usize {
        let mut tail = ct[off..].to_vec();
        c.apply_keystream(off as u64, &mut tail).unwrap();
        assert_eq!(tail, pt[off..], "{method:?} from offset {off}");
    }
    // ...and so does every sub-range, including empty ones.
    for a in 0..=64usize {
        for b in a..=64usize {
            let mut part = ct[a..b].to_vec();
            c.apply_keystream(a as u64, &mut part).unwrap();
            assert_eq!(part, pt[a..b], "{method:?} range {a}..{b}");
        }
    }
}

/// SP 800-38A F.5.1 CTR-AES128.Encrypt.
#[test]
fn sp800_38a_f51_aes128_ctr() {
    nist(CtrMethod::Aes128, 0);
}

/// SP 800-38A F.5.3 CTR-AES192.Encrypt.
#[test]
fn sp800_38a_f53_aes192_ctr() {
    nist(CtrMethod::Aes192, 1);
}

/// SP 800-38A F.5.5 CTR-AES256.Encrypt.
#[test]
fn sp800_38a_f55_aes256_ctr() {
    nist(CtrMethod::Aes256, 2);
}

/// The configuration name of `method`, as the vectors give it.
fn method_name(method: CtrMethod) -> &'static str {
    match method {
        CtrMethod::Aes128 => "aes128-ctr",
        CtrMethod::Aes192 => "aes192-ctr",
        CtrMethod::Aes256 => "aes256-ctr",
        _ => "sm4-ctr",
    }
}

/// GB/T 32907-2016 appendix A, example 1: key = plaintext = 0123…3210 encrypts to
/// 681edf34…4246 (the first block of the vectors' keystream). With the plaintext block as
/// the initial counter, the first 16 bytes of the CTR keystream are exactly E_K(P).

#[test]
fn sm4_gbt_32907_example() {
    let sm4_key = vector("/sm4_gbt_32907/key");
    let key = hex::decode(&sm4_key).unwrap();
    let c = CtrCipher::new(CtrMethod::Sm4, &key, iv(&sm4_key)).unwrap();
    let mut ks = [0u8; 16];
    c.apply_keystream(0, &mut ks).unwrap();
    assert_eq!(hex::encode(ks), "681edf34d206965e86b3e94f536e4246");
    assert!(vector("/sm4_gbt_32907/keystream").starts_with(&hex::encode(ks)));
}

/// The first four SM4-CTR keystream blocks for the example key with counter P, P+1, P+2,
/// P+3, i.e. SM4-ECB of those counter blocks (the vectors' description says where they
/// come from: not from the `sm4` crate used by kura).
#[test]
fn sm4_ctr_keystream_blocks() {
    let sm4_key = vector("/sm4_gbt_32907/key");
    let key = hex::decode(&sm4_key).unwrap();
    let c = CtrCipher::new(CtrMethod::Sm4, &key, iv(&sm4_key)).unwrap();
    let want = vector("/sm4_gbt_32907/keystream");
    let mut ks = [0u8; 64];
    c.apply_keystream(0, &mut ks).unwrap();
    assert_eq!(hex::encode(ks), want);

    // Starting one block later is the same as starting with counter P + 1.
    let mut p1 = iv(&sm4_key);
    p1[15] += 1;
    let c1 = CtrCipher::new(CtrMethod::Sm4, &key, p1).unwrap();
    let mut ks1 = [0u8; 48];
    c1.apply_keystream(0, &mut ks1).unwrap();
    assert_eq!(ks1[..], ks[16..]);

    // Every offset and length agrees with the whole keystream.
    for a in 0..=64usize {
        for b in a..=64usize {
            let mut part = vec![0u8; b - a];
            c.apply_keystream(a as u64, &mut part).unwrap();
            assert_eq!(part, ks[a..b], "SM4 range {a}..{b}");
        }
    }
}

#[test]
fn sm4_differs_from_aes128_on_same_key_and_iv() {
    let sm4_key = vector("/sm4_gbt_32907/key");
    let key = hex::decode(&sm4_key).unwrap();
    let mut sm4 = [0u8; 64];
    let mut aes = [0u8; 64];
    CtrCipher::new(CtrMethod::Sm4, &key, iv(&sm4_key))
        .unwrap()
        .apply_keystream(0, &mut sm4)
        .unwrap();
    CtrCipher::new(CtrMethod::Aes128, &key, iv(&sm4_key))
        .unwrap()
        .apply_keystream(0, &mut aes)
        .unwrap();
    assert_ne!(sm4, aes);
    for (s, a) in sm4.chunks_exact(16).zip(aes.chunks_exact(16)) {
        assert_ne!(s, a);
    }
}

/// The counter is one 128-bit big-endian integer: ff…ff is followed by 00…00, both inside
/// one call and when seeking. Checked for every method.
#[test]
fn counter_wraps_at_128_bits() {
    for method in ALL {
        let key: Vec<u8> = (0..method.key_len() as u8).collect();
        let top = CtrCipher::new(method, &key, [0xff; 16]).unwrap();
        let zero = CtrCipher::new(method, &key, [0; 16]).unwrap();
        let mut across = [0u8; 80];
        top.apply_keystream(0, &mut across).unwrap();
        let mut from_zero = [0u8; 64];
        zero.apply_keystream(0, &mut from_zero).unwrap();
        assert_eq!(across[16..], from_zero, "{method:?} wrap in one call");
        for off in [5u64, 16, 17, 31, 40] {
            let mut part = vec![0u8; 80 - off as usize];
            top.apply_keystream(off, &mut part).unwrap();
            assert_eq!(
                part,
                across[off as usize..],
                "{method:?} wrap at offset {off}"
            );
        }
    }
}

/// Offsets beyond the low 64 bits of the counter: block n of the stream from IV equals
/// block 0 of the stream from IV + n.
#[test]
fn seek_matches_counter_arithmetic() {
    for method in ALL {
        let key = vec![0x33u8; method.key_len()];
        let base = 0x0123_4567_89ab_cdef_ffff_ffff_ffff_fff0u128;
        let c = CtrCipher::new(method, &key, base.to_be_bytes()).unwrap();
        for blocks in [1u64, 15, 16, 17, 0xffff_ffff, u64::MAX / 16] {
            let shifted = base.wrapping_add(u128::from(blocks));
            let d = CtrCipher::new(method, &key, shifted.to_be_bytes()).unwrap();
            let mut a = [0u8; 37];
            let mut b = [0u8; 37];
            c.apply_keystream(blocks * 16, &mut a).unwrap();
            d.apply_keystream(0, &mut b).unwrap();
            assert_eq!(a, b, "{method:?} +{blocks} blocks");
        }
    }
}

/// Encrypting in arbitrary chunks equals encrypting in one call.
#[test]
fn chunked_equals_whole() {
    for method in ALL {
        let key = vec![0x77u8; method.key_len()];
        let c = CtrCipher::new(method, &key, [0x42; 16]).unwrap();
        let pt: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut whole = pt.clone();
        c.apply_keystream(0, &mut whole).unwrap();
        let mut chunked = pt.clone();
        let mut pos = 0usize;
        for step in [1usize, 2, 3, 5, 8, 13, 16, 21, 34, 55, 89, 144]
            .iter()
            .cycle()
        {
            if pos >= chunked.len() {
                break;
            }
            let end = (pos + step).min(chunked.len());
            c.apply_keystream(pos as u64, &mut chunked[pos..end])
                .unwrap();
            pos = end;
        }
        assert_eq!(chunked, whole, "{method:?}");
    }
}

#[test]
fn key_sizes() {
    for method in ALL {
        for len in [0usize, 15, 16, 17, 24, 31, 32, 33] {
            let r = CtrCipher::new(method, &vec![0u8; len], [0; 16]);
            if len == method.key_len() {
                assert!(r.is_ok(), "{method:?} {len}");
            } else {
                assert!(
                    matches!(r, Err(Error::KeySize { expected, actual, .. })
                        if expected == method.key_len() && actual == len),
                    "{method:?} {len}"
                );
            }
        }
    }
    assert_eq!(CtrMethod::Aes128.key_len(), 16);
    assert_eq!(CtrMethod::Aes192.key_len(), 24);
    assert_eq!(CtrMethod::Aes256.key_len(), 32);
    assert_eq!(CtrMethod::Sm4.key_len(), 16);
}
