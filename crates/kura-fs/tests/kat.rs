#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Known answers for the bytes kura-fs puts on disk (`docs/format.md`, "kura-fs files").
//!
//! kura-fs derives every file key, so no test can make a file's key the NIST one. The
//! chain is checked link by link instead: [`CtrCipher`] gives the NIST SP 800-38A F.5
//! AES-CTR ciphertexts and the project's SM4-CTR keystream for their keys and counter
//! blocks; a file whose header names that counter block as its salt holds, after the
//! 32-byte header, exactly what [`CtrCipher`] gives for the file's key
//! (`Keyring::derive(key id, salt, method name, key length)`) and that counter block; and
//! writes and reads at offsets not aligned to the 16-byte block agree with one keystream
//! over the whole file. The page mode's pages open with AES-256-GCM under the derived key
//! and the documented associated data, at the documented offsets.

use std::path::Path;
use std::sync::Arc;

use kura_crypto::{Aes256Gcm, CtrCipher, CtrMethod, Key256};
use kura_fs::file::HEADER;
use kura_fs::page::PAGE;
use kura_fs::{EncryptedFs, Error, FileInfo, Method, Options};
use kura_keys::Keyring;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The known answers, shared with kura-crypto's cipher tests:
/// `testdata/ctr-known-answers.json` (its description says where each comes from).
fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../../testdata/ctr-known-answers.json")).unwrap()
}

/// The hex string of the vectors at `pointer` (a JSON pointer), decoded.
fn vector(v: &serde_json::Value, pointer: &str) -> Vec<u8> {
    unhex(
        v.pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_else(|| panic!("testdata/ctr-known-answers.json has no {pointer}")),
    )
}

fn keyring(dir: &Path) -> Arc<Keyring> {
    Arc::new(Keyring::ephemeral(&dir.join("keystore.db")).unwrap())
}

fn setup() -> (tempfile::TempDir, EncryptedFs) {
    let dir = tempfile::tempdir().unwrap();
    let k = keyring(dir.path());
    let fs = EncryptedFs::open(
        &dir.path().join("root"),
        k,
        Options {
            method: Method::Plaintext,
            file_dictionary_log: true,
        },
    )
    .unwrap();
    (dir, fs)
}

/// The header of `docs/format.md`, written out byte by byte.
fn header(method: Method, key_id: u64, salt: &[u8; 16]) -> Vec<u8> {
    let mut h = b"KRFS".to_vec();
    // Version 2 for page-mode files (the aligned layout), 1 for CTR files.
    h.push(if method == Method::Aes256GcmPage {
        2
    } else {
        1
    });
    h.push(method.code());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&key_id.to_be_bytes());
    h.extend_from_slice(salt);
    assert_eq!(h.len(), HEADER);
    h
}

/// The CTR cipher of a file: its key derived as `docs/format.md` says.
fn file_cipher(fs: &EncryptedFs, info: &FileInfo) -> CtrCipher {
    let m = info.method;
    let key = fs
        .keyring()
        .derive(info.key_id, &info.salt, m.as_str().as_bytes(), m.key_len())
        .unwrap();
    CtrCipher::new(m.ctr().unwrap(), key.expose_secret(), info.salt).unwrap()
}

/// `path` made a file of `method` whose salt is `salt` (a header written by hand, as a
/// file carried over from elsewhere would have), then `plaintext` appended through kura-fs.
/// Returns the bytes on disk.
fn forced(fs: &EncryptedFs, path: &str, method: Method, salt: [u8; 16], pt: &[u8]) -> Vec<u8> {
    let key_id = fs.keyring().active_data_key_id();
    std::fs::write(fs.root().join(path), header(method, key_id, &salt)).unwrap();
    let f = fs.open_file(path).unwrap();
    let info = f.info().unwrap();
    assert_eq!(
        (info.method, info.key_id, info.salt),
        (method, key_id, salt)
    );
    f.append(pt).unwrap();
    f.sync_data().unwrap();
    drop(f);
    assert_eq!(fs.read(path).unwrap(), pt);
    std::fs::read(fs.root().join(path)).unwrap()
}

#[test]
fn ctr_files_hold_the_nist_and_sm4_known_answers() {
    let (_dir, fs) = setup();
    let v = vectors();
    let pt = vector(&v, "/nist_sp800_38a_f5/plaintext");
    let iv: [u8; 16] = vector(&v, "/nist_sp800_38a_f5/counter").try_into().unwrap();
    let cases = v["nist_sp800_38a_f5"]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3, "F.5.1, F.5.3 and F.5.5");
    for case in cases {
        let method: Method = case["method"].as_str().unwrap().parse().unwrap();
        let (key, ct) = (vector(case, "/key"), vector(case, "/ciphertext"));
        // The cipher gives the published ciphertext for the published key...
        let mut buf = pt.clone();
        CtrCipher::new(method.ctr().unwrap(), &key, iv)
            .unwrap()
            .apply_keystream(0, &mut buf)
            .unwrap();
        assert_eq!(buf, ct, "{method}: SP 800-38A F.5");
        // ...and the file holds what it gives for the file's key and that counter block.
        let disk = forced(&fs, method.as_str(), method, iv, &pt);
        let info = fs.info(method.as_str()).unwrap().unwrap();
        assert_eq!(disk[..HEADER], header(method, info.key_id, &iv)[..]);
        let mut want = pt.clone();
        file_cipher(&fs, &info)
            .apply_keystream(0, &mut want)
            .unwrap();
        assert_eq!(disk[HEADER..], want[..], "{method}");
        assert_ne!(disk[HEADER..], pt[..]);
    }

    // SM4: the keystream for the example key with the example block as the counter.
    let sm4_key = vector(&v, "/sm4_gbt_32907/key");
    let sm4_iv: [u8; 16] = sm4_key.clone().try_into().unwrap();
    let mut ks = [0u8; 64];
    CtrCipher::new(CtrMethod::Sm4, &sm4_key, sm4_iv)
        .unwrap()
        .apply_keystream(0, &mut ks)
        .unwrap();
    assert_eq!(
        ks[..],
        vector(&v, "/sm4_gbt_32907/keystream")[..],
        "SM4-CTR keystream"
    );
    // A file of 64 zero bytes holds its own keystream.
    let disk = forced(&fs, "sm4", Method::Sm4Ctr, sm4_iv, &[0u8; 64]);
    let info = fs.info("sm4").unwrap().unwrap();
    let mut want = [0u8; 64];
    file_cipher(&fs, &info)
        .apply_keystream(0, &mut want)
        .unwrap();
    assert_eq!(disk[HEADER..], want[..]);
    assert_eq!(
        disk[..HEADER],
        header(Method::Sm4Ctr, info.key_id, &sm4_iv)[..]
    );
}

/// Files created the ordinary way (a random salt) follow the same layout.
#[test]
fn created_ctr_files_follow_the_documented_layout() {
    let (_dir, fs) = setup();
    let pt: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
    for method in [
        Method::Aes128Ctr,
        Method::Aes192Ctr,
        Method::Aes256Ctr,
        Method::Sm4Ctr,
    ] {
        fs.set_method(method);
        fs.write(method.as_str(), &pt).unwrap();
        let info = fs.info(method.as_str()).unwrap().unwrap();
        assert_eq!(info.method, method);
        let disk = std::fs::read(fs.root().join(method.as_str())).unwrap();
        assert_eq!(disk[..HEADER], header(method, info.key_id, &info.salt)[..]);
        let mut want = pt.clone();
        file_cipher(&fs, &info)
            .apply_keystream(0, &mut want)
            .unwrap();
        assert_eq!(disk[HEADER..], want[..], "{method}");
    }
}

/// Appends and reads that start and end off the 16-byte block boundaries agree with one
/// keystream over the whole file.
#[test]
fn unaligned_offsets_agree_with_one_keystream() {
    const CUTS: [usize; 6] = [1, 15, 17, 31, 4095, 4097];
    let (_dir, fs) = setup();
    let pt: Vec<u8> = (0..8200u32).map(|i| (i * 7 + i / 256) as u8).collect();
    for method in [
        Method::Aes128Ctr,
        Method::Aes192Ctr,
        Method::Aes256Ctr,
        Method::Sm4Ctr,
    ] {
        fs.set_method(method);
        let path = format!("cut-{method}");
        let f = fs.create(&path).unwrap();
        // Written in pieces cut at every offset of CUTS.
        let mut at = 0;
        for end in CUTS.into_iter().chain([pt.len()]) {
            f.write_at(&pt[at..end], at as u64).unwrap();
            at = end;
        }
        f.sync_data().unwrap();
        let info = f.info().unwrap();
        let cipher = file_cipher(&fs, &info);
        let mut want = pt.clone();
        cipher.apply_keystream(0, &mut want).unwrap();
        let disk = std::fs::read(fs.root().join(&path)).unwrap();
        assert_eq!(disk[HEADER..], want[..], "{method}: pieces");
        // Read back from each offset, across block and page boundaries.
        for off in CUTS {
            for n in [1usize, 15, 16, 17, 33, 4096] {
                let mut buf = vec![0u8; n];
                let got = f.read_at(&mut buf, off as u64).unwrap();
                let end = (off + n).min(pt.len());
                assert_eq!(got, end - off);
                assert_eq!(buf[..got], pt[off..end], "{method}: read {n} at {off}");
            }
        }
        // A write past the end at an unaligned offset: the gap is zeros, encrypted.
        let g = fs.create(&format!("gap-{method}")).unwrap();
        let mut whole = vec![0u8; 0];
        for off in CUTS {
            let piece = &pt[off..off + 2];
            g.write_at(piece, off as u64).unwrap();
            whole.resize(off, 0);
            whole.extend_from_slice(piece);
        }
        g.sync_data().unwrap();
        let info = g.info().unwrap();
        let mut want = whole.clone();
        file_cipher(&fs, &info)
            .apply_keystream(0, &mut want)
            .unwrap();
        let disk = std::fs::read(fs.root().join(format!("gap-{method}"))).unwrap();
        assert_eq!(disk[HEADER..], want[..], "{method}: gaps");
        // ...and no write can start before the end.
        assert!(matches!(
            g.write_at(b"x", 4096),
            Err(Error::CtrOverwrite { .. })
        ));
    }
}

/// The AEAD of a page-mode file: AES-256-GCM under the key derived for it.
fn page_aead(fs: &EncryptedFs, info: &FileInfo) -> Aes256Gcm {
    let key = fs
        .keyring()
        .derive(info.key_id, &info.salt, b"aes256-gcm-page", 32)
        .unwrap();
    Aes256Gcm::new(&Key256::from_slice(key.expose_secret(), "page key").unwrap()).unwrap()
}

/// A version-2 page's associated data: domain, salt, index, entry bytes 12..16.
fn page_aad(info: &FileInfo, index: u64, entry: &[u8]) -> Vec<u8> {
    let mut aad = b"kura-fs page v2".to_vec();
    aad.extend_from_slice(&info.salt);
    aad.extend_from_slice(&index.to_be_bytes());
    aad.extend_from_slice(&entry[12..16]);
    aad
}

/// Page-mode pages (version 2) open with AES-256-GCM under the derived key, the associated
/// data `"kura-fs page v2" ‖ salt ‖ index (u64 BE) ‖ entry bytes 12..16`, and hold `used`:
/// a 4 KiB header block, then group 0's block at 4096 with two 32-byte entry slots per
/// page (written once: slot 0, generation 1; slot 1 zeros) and the pages' ciphertexts at
/// 8192 + 4096 × index.
#[test]
fn page_units_follow_the_documented_layout() {
    let (_dir, fs) = setup();
    fs.set_method(Method::Aes256GcmPage);
    let pt: Vec<u8> = (0..PAGE + 904).map(|i| (i % 253) as u8).collect();
    fs.write("page", &pt).unwrap();
    let info = fs.info("page").unwrap().unwrap();
    let disk = std::fs::read(fs.root().join("page")).unwrap();
    assert_eq!(disk.len(), 4096 + 4096 + 2 * 4096);
    assert_eq!(
        disk[..HEADER],
        header(Method::Aes256GcmPage, info.key_id, &info.salt)[..]
    );
    assert!(disk[HEADER..4096].iter().all(|&b| b == 0));
    // Slots of pages never written are zeros.
    assert!(disk[4096 + 2 * 64..8192].iter().all(|&b| b == 0));
    let aead = page_aead(&fs, &info);
    for (index, used) in [(0u64, PAGE), (1, 904)] {
        let entry = &disk[4096 + 64 * index as usize..][..32];
        let ct = &disk[8192 + 4096 * index as usize..][..4096];
        assert_eq!(entry[12..14], (used as u16).to_be_bytes());
        assert_eq!(entry[14..16], [0, 1], "generation 1");
        assert!(
            disk[4096 + 64 * index as usize + 32..][..32]
                .iter()
                .all(|&b| b == 0)
        );
        let aad = page_aad(&info, index, entry);
        let mut page = vec![0u8; PAGE];
        aead.open_out_of_place(
            entry[..12].try_into().unwrap(),
            &aad,
            ct,
            entry[16..].try_into().unwrap(),
            &mut page,
        )
        .unwrap();
        let start = index as usize * PAGE;
        assert_eq!(page[..used], pt[start..start + used]);
        assert!(page[used..].iter().all(|&b| b == 0));
    }
}

/// A page-mode file grown by `set_len`: its last page filled up and sealed again, then
/// pages of zeros with an entry each and no ciphertext: `used` with bit 15 set, and the
/// tag of an empty plaintext under the same associated data.
#[test]
fn grown_pages_are_entries_of_zeros_as_documented() {
    let (_dir, fs) = setup();
    let f = fs.create_with("grown", Method::Aes256GcmPage).unwrap();
    f.write_at(b"abc", 0).unwrap();
    f.set_len(2 * PAGE as u64 + 10).unwrap();
    drop(f);
    let info = fs.info("grown").unwrap().unwrap();
    let disk = std::fs::read(fs.root().join("grown")).unwrap();
    // Room for pages 0..=2 (a hole where no ciphertext is).
    assert_eq!(disk.len(), 4096 + 4096 + 3 * 4096);
    assert!(disk[8192 + 4096..].iter().all(|&b| b == 0));
    let aead = page_aead(&fs, &info);
    for (index, used) in [(1u64, 0x9000u16), (2, 0x800a)] {
        let entry = &disk[4096 + 64 * index as usize..][..32];
        assert_eq!(entry[12..14], used.to_be_bytes());
        assert_eq!(entry[14..16], [0, 1], "generation 1");
        let aad = page_aad(&info, index, entry);
        aead.open_in_place(
            entry[..12].try_into().unwrap(),
            &aad,
            &mut [],
            entry[16..].try_into().unwrap(),
        )
        .unwrap();
    }
    // Page 0 holds "abc" and zeros up to 4096 bytes, an ordinary page written again (slot 1,
    // generation 2).
    assert_eq!(disk[4096 + 32 + 12..4096 + 32 + 16], [0x10, 0, 0, 2]);
    let f = fs.open_file("grown").unwrap();
    let mut back = vec![1u8; 2 * PAGE + 10];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(&back[..3], b"abc");
    assert!(back[3..].iter().all(|&b| b == 0));
}
