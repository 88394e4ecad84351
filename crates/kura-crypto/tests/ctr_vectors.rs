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

/// SP 800-38A F.5 plaintext (the same four blocks for every key size).
const NIST_PT: &str = concat!(
    "6bc1bee22e409f96e93d7e117393172a",
    "ae2d8a571e03ac9c9eb76fac45af8e51",
    "30c81c46a35ce411e5fbc1191a0a52ef",
    "f69f2445df4f9b17ad2b417be66c3710",
);
/// SP 800-38A F.5 initial counter block.
const NIST_IV: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

fn iv(s: &str) -> [u8; 16] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// Encrypts the NIST plaintext in one call, decrypts it, and decrypts every sub-range
/// `[a, b)` of the 64 bytes at its own offset.
fn nist(method: CtrMethod, key: &str, ct: &str) {
    let key = hex::decode(key).unwrap();
    let pt = hex::decode(NIST_PT).unwrap();
    let ct = hex::decode(ct).unwrap();
    let c = CtrCipher::new(method, &key, iv(NIST_IV)).unwrap();

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
    nist(
        CtrMethod::Aes128,
        "2b7e151628aed2a6abf7158809cf4f3c",
        concat!(
            "874d6191b620e3261bef6864990db6ce",
            "9806f66b7970fdff8617187bb9fffdff",
            "5ae4df3edbd5d35e5b4f09020db03eab",
            "1e031dda2fbe03d1792170a0f3009cee",
        ),
    );
}

/// SP 800-38A F.5.3 CTR-AES192.Encrypt.
#[test]
fn sp800_38a_f53_aes192_ctr() {
    nist(
        CtrMethod::Aes192,
        "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
        concat!(
            "1abc932417521ca24f2b0459fe7e6e0b",
            "090339ec0aa6faefd5ccc2c6f4ce8e94",
            "1e36b26bd1ebc670d1bd1d665620abf7",
            "4f78a7f6d29809585a97daec58c6b050",
        ),
    );
}

/// SP 800-38A F.5.5 CTR-AES256.Encrypt.
#[test]
fn sp800_38a_f55_aes256_ctr() {
    nist(
        CtrMethod::Aes256,
        "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
        concat!(
            "601ec313775789a5b7a7f504bbf3d228",
            "f443e3ca4d62b59aca84e990cacaf5c5",
            "2b0930daa23de94ce87017ba2d84988d",
            "dfc9c58db67aada613c2dd08457941a6",
        ),
    );
}

/// GB/T 32907-2016 appendix A, example 1: key = plaintext = 0123…3210 encrypts to
/// 681edf34…4246. With the plaintext block as the initial counter, the first 16 bytes of
/// the CTR keystream are exactly E_K(P).
const SM4_KEY: &str = "0123456789abcdeffedcba9876543210";
const SM4_CT: &str = "681edf34d206965e86b3e94f536e4246";

#[test]
fn sm4_gbt_32907_example() {
    let key = hex::decode(SM4_KEY).unwrap();
    let c = CtrCipher::new(CtrMethod::Sm4, &key, iv(SM4_KEY)).unwrap();
    let mut ks = [0u8; 16];
    c.apply_keystream(0, &mut ks).unwrap();
    assert_eq!(hex::encode(ks), SM4_CT);
}

/// The first four SM4-CTR keystream blocks for the example key with counter P, P+1, P+2,
/// P+3, i.e. SM4-ECB of those counter blocks. Block 0 is the standard's example; blocks
/// 1–3 were computed independently with OpenSSL 3.0 (SM4-ECB and SM4-CTR through
/// pyca/cryptography), not with the `sm4` crate used by kura.
#[test]
fn sm4_ctr_keystream_blocks() {
    let key = hex::decode(SM4_KEY).unwrap();
    let c = CtrCipher::new(CtrMethod::Sm4, &key, iv(SM4_KEY)).unwrap();
    let want = concat!(
        "681edf34d206965e86b3e94f536e4246",
        "be9a2469307a96f9d33ddbed4cf39994",
        "c4e5f90f56b5e8e3f0459ed2756a7ce9",
        "d65d8f13b114237a85a2be2f029609f7",
    );
    let mut ks = [0u8; 64];
    c.apply_keystream(0, &mut ks).unwrap();
    assert_eq!(hex::encode(ks), want);

    // Starting one block later is the same as starting with counter P + 1.
    let mut p1 = iv(SM4_KEY);
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
    let key = hex::decode(SM4_KEY).unwrap();
    let mut sm4 = [0u8; 64];
    let mut aes = [0u8; 64];
    CtrCipher::new(CtrMethod::Sm4, &key, iv(SM4_KEY))
        .unwrap()
        .apply_keystream(0, &mut sm4)
        .unwrap();
    CtrCipher::new(CtrMethod::Aes128, &key, iv(SM4_KEY))
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
