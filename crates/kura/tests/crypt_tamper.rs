#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura decrypt` on bad input: tampered, truncated, extended, foreign or not a kura
//! stream at all. It must exit non-zero, say why, and with `-o` leave no output file and
//! no temporary file; an existing output file stays as it was.

mod common;

use std::fs;
use std::path::PathBuf;

use common::*;

const PLAIN_LEN: usize = 200_000;

/// An initialised sandbox with `plain.bin` (200 000 bytes) encrypted to `good.krs`.
fn setup() -> (Sandbox, PathBuf, Vec<u8>, Vec<u8>) {
    let (sb, key) = Sandbox::initialised();
    let plain = data(PLAIN_LEN, 11);
    sb.plain("plain.bin", &plain);
    sb.kura(&key, &["encrypt", "plain.bin", "-o", "good.krs"])
        .ok();
    let ct = fs::read(sb.join("good.krs")).unwrap();
    (sb, key, plain, ct)
}

/// Decrypting `bad` (written to `bad.krs`) fails with every one of `needles`, both to a
/// file (which must not appear, nor any temporary file) and over a pipe; a pre-existing
/// output file is left untouched.
#[track_caller]
fn rejects(sb: &Sandbox, key: &std::path::Path, bad: &[u8], needles: &[&str]) {
    fs::write(sb.join("bad.krs"), bad).unwrap();
    let before = sb.files();
    let mut with_file = vec!["cannot decrypt bad.krs"];
    with_file.extend_from_slice(needles);
    sb.kura(key, &["decrypt", "bad.krs", "-o", "out.bin"])
        .fails_with(&with_file);
    assert!(!sb.join("out.bin").exists());
    assert_eq!(sb.files(), before, "a temporary file was left behind");

    sb.plain("keep.bin", b"keep me");
    sb.kura(key, &["decrypt", "bad.krs", "-o", "keep.bin"])
        .fails_with(needles);
    assert_eq!(fs::read(sb.join("keep.bin")).unwrap(), b"keep me");
    fs::remove_file(sb.join("keep.bin")).unwrap();

    // Over a pipe the exit status and the message are the same. Chunks verified before
    // the damage may have been written, but never a byte of unverified data.
    let run = sb.exec(sb.keyed(key).arg("decrypt").write_stdin(bad.to_vec()));
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let run = run
        .stderr_has(&["cannot decrypt stdin"])
        .stderr_has(needles);
    let plain = data(PLAIN_LEN, 11);
    assert_eq!(run.stdout.len() % 65536, 0);
    assert!(plain.starts_with(&run.stdout));
    fs::remove_file(sb.join("bad.krs")).unwrap();
}

const DECRYPT_FAILED: &str = "decryption failed";

#[test]
fn a_flipped_byte_anywhere_is_detected() {
    let (sb, key, plain, ct) = setup();
    // The middle, the first chunk, the last byte (a tag), a tag in the middle, the salt
    // and the key commitment in the header.
    for at in [
        ct.len() / 2,
        HEADER_LEN + 10,
        ct.len() - 1,
        HEADER_LEN + FULL_SLOT - 1,
        20,
        60,
    ] {
        let mut bad = ct.clone();
        bad[at] ^= 0x01;
        rejects(&sb, &key, &bad, &[DECRYPT_FAILED]);
    }
    // Reserved header bytes and the chunk size are checked before any key is used.
    let mut bad = ct.clone();
    bad[5] = 1;
    rejects(&sb, &key, &bad, &["reserved header bytes are not zero"]);
    let mut bad = ct.clone();
    bad[4] = 15;
    rejects(&sb, &key, &bad, &[DECRYPT_FAILED]);
    let mut bad = ct.clone();
    bad[4] = 30;
    rejects(&sb, &key, &bad, &["chunk size 2^30"]);

    // The original still decrypts.
    sb.kura(&key, &["decrypt", "good.krs", "-o", "out.bin"])
        .ok();
    assert_eq!(fs::read(sb.join("out.bin")).unwrap(), plain);
}

#[test]
fn truncation_is_detected() {
    let (sb, key, _, ct) = setup();
    assert!(ct.len() > HEADER_LEN + 3 * FULL_SLOT);
    for cut in [
        HEADER_LEN + FULL_SLOT,        // exactly after the first chunk
        HEADER_LEN + 2 * FULL_SLOT,    // exactly after the second
        HEADER_LEN + FULL_SLOT + 1000, // in the middle of the second chunk
        HEADER_LEN + 500,              // in the middle of the first
        HEADER_LEN + 10,               // shorter than a tag
        HEADER_LEN,                    // the header alone
        ct.len() - 1,                  // one byte short
    ] {
        rejects(&sb, &key, &ct[..cut], &[DECRYPT_FAILED]);
    }
    for cut in [50, 4] {
        rejects(&sb, &key, &ct[..cut], &["stream is truncated"]);
    }
}

#[test]
fn appended_and_reordered_data_is_detected() {
    let (sb, key, _, ct) = setup();
    let mut longer = ct.clone();
    longer.extend_from_slice(b"trailing garbage");
    rejects(&sb, &key, &longer, &[DECRYPT_FAILED]);
    let mut twice = ct.clone();
    twice.extend_from_slice(&ct[HEADER_LEN..]);
    rejects(&sb, &key, &twice, &[DECRYPT_FAILED]);

    // The first two chunks swapped.
    let (a, b) = (HEADER_LEN, HEADER_LEN + FULL_SLOT);
    let mut swapped = ct[..a].to_vec();
    swapped.extend_from_slice(&ct[b..b + FULL_SLOT]);
    swapped.extend_from_slice(&ct[a..b]);
    swapped.extend_from_slice(&ct[b + FULL_SLOT..]);
    assert_eq!(swapped.len(), ct.len());
    rejects(&sb, &key, &swapped, &[DECRYPT_FAILED]);

    // The header of another stream of the same key on this body.
    let other = sb
        .kura_stdin(&key, &["encrypt"], &data(PLAIN_LEN, 11))
        .ok()
        .stdout;
    let mut spliced = other[..HEADER_LEN].to_vec();
    spliced.extend_from_slice(&ct[HEADER_LEN..]);
    rejects(&sb, &key, &spliced, &[DECRYPT_FAILED]);
}

#[test]
fn not_a_kura_stream() {
    let (sb, key, plain, _) = setup();
    rejects(&sb, &key, &plain, &["not a kura stream"]);
    rejects(
        &sb,
        &key,
        b"hello, this is plain text\n",
        &["not a kura stream"],
    );
    rejects(&sb, &key, b"", &["stream is truncated"]);
    // A kura key file is not a stream either.
    let key_file = fs::read(&key).unwrap();
    rejects(&sb, &key, &key_file, &["not a kura stream"]);
}

#[test]
fn unknown_version() {
    let (sb, key, _, ct) = setup();
    let mut bad = ct.clone();
    bad[3] = 9;
    rejects(
        &sb,
        &key,
        &bad,
        &["unsupported stream version 9", "upgrade kura"],
    );
    bad[3] = 0;
    rejects(&sb, &key, &bad, &["version 0"]);
}

#[test]
fn stream_from_another_keystore() {
    let (sb, key, _, _) = setup();
    let (other, other_key) = Sandbox::initialised();
    let foreign = other
        .kura_stdin(&other_key, &["encrypt"], &data(PLAIN_LEN, 11))
        .ok()
        .stdout;
    let id = u64::from_be_bytes(foreign[8..16].try_into().unwrap());
    sb.secret(&read_key(&other_key));
    rejects(
        &sb,
        &key,
        &foreign,
        &[&format!("unknown data key id {id}"), "another keystore"],
    );
    // A header naming this keystore's key on a foreign body fails authentication.
    let mine = sb.kura_stdin(&key, &["encrypt"], b"x").ok().stdout;
    let mut mixed = foreign.clone();
    mixed[8..16].copy_from_slice(&mine[8..16]);
    rejects(&sb, &key, &mixed, &[DECRYPT_FAILED]);
}

#[test]
fn damage_in_a_later_batch_of_a_large_file() {
    // 2.5 MiB: three batches of 16 chunks for the parallel file-to-file path.
    let (sb, key) = Sandbox::initialised();
    let n = (5 << 20) / 2;
    let plain = data(n, 5);
    sb.plain("big", &plain);
    sb.kura(&key, &["encrypt", "big", "-o", "big.krs"]).ok();
    let ct = fs::read(sb.join("big.krs")).unwrap();
    let batch = 16 * FULL_SLOT;
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for at in [
        HEADER_LEN + batch + 5,
        HEADER_LEN + 2 * batch + 100,
        ct.len() - 17,
    ] {
        let mut bad = ct.clone();
        bad[at] ^= 0x80;
        cases.push(("flipped", bad));
    }
    for cut in [
        HEADER_LEN + batch,
        HEADER_LEN + 2 * batch,
        HEADER_LEN + 2 * batch + 9,
    ] {
        cases.push(("cut", ct[..cut].to_vec()));
    }
    for (what, bad) in cases {
        fs::write(sb.join("bad.krs"), &bad).unwrap();
        sb.kura(&key, &["decrypt", "bad.krs", "-o", "out"])
            .fails_with(&["cannot decrypt bad.krs", DECRYPT_FAILED]);
        assert!(!sb.join("out").exists(), "{what}");
        assert_eq!(
            sb.files(),
            ["bad.krs", "big", "big.krs", "data", "master.key"]
        );
        let run = sb.exec(sb.keyed(&key).arg("decrypt").write_stdin(bad));
        assert_eq!(run.code, Some(1), "{what}");
        let run = run.stderr_has(&["cannot decrypt stdin", DECRYPT_FAILED]);
        assert!(plain.starts_with(&run.stdout), "{what}");
        assert!(run.stdout.len() < n, "{what}");
    }
    sb.kura(&key, &["decrypt", "big.krs", "-o", "out"]).ok();
    assert!(fs::read(sb.join("out")).unwrap() == plain);
}
