#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura encrypt` and `kura decrypt`: round trips through pipes and files, encryption
//! contexts, and data written before every kind of rotation.

mod common;

use std::fs;
use std::path::Path;

use common::*;

/// The data key id a stream header names (bytes 8..16, big-endian).
fn header_key_id(stream: &[u8]) -> String {
    u64::from_be_bytes(stream[8..16].try_into().unwrap()).to_string()
}

/// The length of a stream of `n` plaintext bytes in 64 KiB chunks.
fn stream_len(n: usize) -> usize {
    HEADER_LEN + n + 16 * n.div_ceil(65536).max(1)
}

fn stdin_to_stdout_round_trip() {
    let (sb, key) = Sandbox::initialised();
    let st = sb.status(&key);
    let plain = b"attack at dawn\n".to_vec();
    let ct = sb.kura_stdin(&key, &["encrypt"], &plain).ok().stdout;
    assert_eq!(&ct[..4], b"KRS\x01");
    assert_eq!(ct[4], 16, "64 KiB chunks");
    assert_eq!(ct.len(), stream_len(plain.len()));
    assert_eq!(header_key_id(&ct), active_id(&st));
    assert!(!ct.windows(plain.len()).any(|w| w == plain));

    let back = sb.kura_stdin(&key, &["decrypt"], &ct).ok().stdout;
    assert_eq!(back, plain);

    // Two encryptions of the same data differ (a fresh salt per stream).
    let ct2 = sb.kura_stdin(&key, &["encrypt"], &plain).ok().stdout;
    assert_ne!(ct, ct2);
    // Nothing was left behind.
    assert_eq!(sb.files(), ["data", "master.key"]);
}

fn files_with_out_round_trip_200000_bytes() {
    let (sb, key) = Sandbox::initialised();
    let plain = data(200_000, 7);
    sb.plain("plain.bin", &plain);
    let run = sb
        .kura(&key, &["encrypt", "plain.bin", "-o", "plain.krs"])
        .ok();
    assert!(run.stdout.is_empty());
    let ct = fs::read(sb.join("plain.krs")).unwrap();
    assert_eq!(ct.len(), stream_len(200_000));
    assert_eq!(ct.len(), 200_144);
    assert_eq!(mode(&sb.join("plain.krs")), 0o600);

    let run = sb
        .kura(&key, &["decrypt", "plain.krs", "--out", "back.bin"])
        .ok();
    assert!(run.stdout.is_empty());
    assert_eq!(fs::read(sb.join("back.bin")).unwrap(), plain);
    assert_eq!(mode(&sb.join("back.bin")), 0o600);

    // The same through pipes.
    let ct2 = sb.kura_stdin(&key, &["encrypt"], &plain).ok().stdout;
    assert_eq!(ct2.len(), ct.len());
    assert_eq!(sb.kura(&key, &["decrypt", "plain.krs"]).ok().stdout, plain);
    assert_eq!(sb.kura_stdin(&key, &["decrypt"], &ct2).ok().stdout, plain);

    // An existing output file is replaced on success.
    sb.plain("exists.bin", b"old content");
    sb.kura(&key, &["decrypt", "plain.krs", "-o", "exists.bin"])
        .ok();
    assert_eq!(fs::read(sb.join("exists.bin")).unwrap(), plain);
    assert_eq!(
        sb.files(),
        [
            "back.bin",
            "data",
            "exists.bin",
            "master.key",
            "plain.bin",
            "plain.krs"
        ]
    );
}

fn chunk_and_batch_boundaries_round_trip_through_files_and_pipes() {
    let (sb, key) = Sandbox::initialised();
    // File to file runs on several workers, one batch of 16 chunks (1 MiB) each; pipes
    // run sequentially. Both write the same format and read each other's output.
    let mib = 1 << 20;
    for n in [1, 65535, 65536, 65537, 2 * 65536, mib, 2 * mib + 65536 + 7] {
        let plain = data(n, n as u64);
        sb.plain("p", &plain);
        sb.kura(&key, &["encrypt", "p", "-o", "p.krs"]).ok();
        let from_file = fs::read(sb.join("p.krs")).unwrap();
        assert_eq!(from_file.len(), stream_len(n), "{n}");
        let from_pipe = sb.kura_stdin(&key, &["encrypt"], &plain).ok().stdout;
        assert_eq!(from_pipe.len(), stream_len(n), "{n}");
        fs::write(sb.join("q.krs"), &from_pipe).unwrap();

        sb.kura(&key, &["decrypt", "q.krs", "-o", "q"]).ok();
        assert!(fs::read(sb.join("q")).unwrap() == plain, "{n}");
        let back = sb.kura_stdin(&key, &["decrypt"], &from_file).ok().stdout;
        assert!(back == plain, "{n}");
        // A file read through stdin, written to a file.
        let back = sb
            .kura_stdin(&key, &["decrypt", "-o", "r"], &from_file)
            .ok();
        assert!(back.stdout.is_empty());
        assert!(fs::read(sb.join("r")).unwrap() == plain, "{n}");
    }
    assert_eq!(
        sb.files(),
        ["data", "master.key", "p", "p.krs", "q", "q.krs", "r"]
    );
}

fn empty_input_round_trip() {
    let (sb, key) = Sandbox::initialised();
    let ct = sb.kura_stdin(&key, &["encrypt"], b"").ok().stdout;
    assert_eq!(ct.len(), HEADER_LEN + 16);
    assert!(
        sb.kura_stdin(&key, &["decrypt"], &ct)
            .ok()
            .stdout
            .is_empty()
    );

    sb.plain("empty", b"");
    sb.kura(&key, &["encrypt", "empty", "-o", "empty.krs"]).ok();
    assert_eq!(fs::read(sb.join("empty.krs")).unwrap().len(), 96);
    sb.kura(&key, &["decrypt", "empty.krs", "-o", "empty.out"])
        .ok();
    assert!(fs::read(sb.join("empty.out")).unwrap().is_empty());
}

fn context_must_match() {
    let (sb, key) = Sandbox::initialised();
    let plain = data(70_000, 3);
    sb.plain("p", &plain);
    sb.kura(
        &key,
        &[
            "encrypt",
            "p",
            "-o",
            "p.krs",
            "--context",
            "tenant=acme",
            "--context",
            "table=users",
        ],
    )
    .ok();

    // The same pairs in any order decrypt.
    sb.kura(
        &key,
        &[
            "decrypt",
            "p.krs",
            "-o",
            "ok",
            "--context",
            "table=users",
            "--context",
            "tenant=acme",
        ],
    )
    .ok();
    assert_eq!(fs::read(sb.join("ok")).unwrap(), plain);
    fs::remove_file(sb.join("ok")).unwrap();

    for ctx in [
        &[][..],
        &["--context", "tenant=acme"],
        &["--context", "tenant=acme", "--context", "table=orders"],
        &["--context", "tenant=other", "--context", "table=users"],
        &[
            "--context",
            "tenant=acme",
            "--context",
            "table=users",
            "--context",
            "extra=1",
        ],
        &["--context", "tenant=acme", "--context", "table=users="],
    ] {
        let mut args = vec!["decrypt", "p.krs", "-o", "out"];
        args.extend_from_slice(ctx);
        sb.kura(&key, &args)
            .fails_with(&["cannot decrypt p.krs", "decryption failed"]);
        assert!(!sb.join("out").exists(), "{ctx:?}");
        let mut args = vec!["decrypt", "p.krs"];
        args.extend_from_slice(ctx);
        sb.kura(&key, &args).fails_with(&["decryption failed"]);
    }
    assert_eq!(sb.files(), ["data", "master.key", "p", "p.krs"]);

    // A value may contain `=`; the first one separates key and value.
    let ct = sb
        .kura_stdin(&key, &["encrypt", "--context", "q=a=b"], b"x")
        .ok()
        .stdout;
    sb.kura_stdin(&key, &["decrypt", "--context", "q=a=b"], &ct)
        .ok();
    sb.kura_stdin(&key, &["decrypt", "--context", "q=a"], &ct)
        .fails_with(&["decryption failed"]);
}

fn encrypt_to(sb: &Sandbox, key: &Path, plain: &[u8], name: &str) {
    sb.kura_stdin(key, &["encrypt", "-o", name, "--context", "n=1"], plain)
        .ok();
}

#[track_caller]
fn decrypts_to(sb: &Sandbox, key: &Path, name: &str, plain: &[u8]) {
    let out = sb
        .kura(key, &["decrypt", name, "--context", "n=1"])
        .ok()
        .stdout;
    assert!(out == plain, "{name} does not decrypt to its plaintext");
}

fn data_survives_every_rotation() {
    let (sb, old, new, _) = Sandbox::two_keys();
    let texts: Vec<Vec<u8>> = (0..5).map(|i| data(1000 + 70_000 * i, i as u64)).collect();

    encrypt_to(&sb, &old, &texts[0], "0.krs");
    sb.kura(&old, &["rotate", "data-key"]).ok();
    decrypts_to(&sb, &old, "0.krs", &texts[0]);
    encrypt_to(&sb, &old, &texts[1], "1.krs");
    let ids: Vec<String> = ["0.krs", "1.krs"]
        .iter()
        .map(|n| header_key_id(&fs::read(sb.join(n)).unwrap()))
        .collect();
    assert_ne!(ids[0], ids[1], "the rotation changed the data key used");

    sb.kura(&old, &["rotate", "kek"]).ok();
    decrypts_to(&sb, &old, "0.krs", &texts[0]);
    decrypts_to(&sb, &old, "1.krs", &texts[1]);
    encrypt_to(&sb, &old, &texts[2], "2.krs");

    sb.rotate_master_key(&new, "old.key").ok();
    for (i, t) in texts.iter().enumerate().take(3) {
        decrypts_to(&sb, &new, &format!("{i}.krs"), t);
    }
    encrypt_to(&sb, &new, &texts[3], "3.krs");

    // Another data key and KEK rotation under the new master key.
    sb.kura(&new, &["rotate", "data-key"]).ok();
    sb.kura(&new, &["rotate", "kek"]).ok();
    encrypt_to(&sb, &new, &texts[4], "4.krs");
    for (i, t) in texts.iter().enumerate() {
        decrypts_to(&sb, &new, &format!("{i}.krs"), t);
    }
    let st = sb.status(&new);
    assert_eq!(data_keys(&st).len(), 3);
    assert_eq!(st["keks"].as_array().unwrap().len(), 3);
}

fn missing_input_and_unwritable_output() {
    let (sb, key) = Sandbox::initialised();
    for cmd in ["encrypt", "decrypt"] {
        sb.kura(&key, &[cmd, "nope.bin", "-o", "out"])
            .fails_with(&["cannot open nope.bin"]);
        assert!(!sb.join("out").exists());
    }
    sb.plain("p", b"data");
    sb.kura(&key, &["encrypt", "p", "-o", "no/dir/out"])
        .fails_with(&["cannot create no/dir/out"]);
    assert_eq!(sb.files(), ["data", "master.key", "p"]);
}

on_both_backends!(
    stdin_to_stdout_round_trip,
    files_with_out_round_trip_200000_bytes,
    chunk_and_batch_boundaries_round_trip_through_files_and_pipes,
    empty_input_round_trip,
    context_must_match,
    data_survives_every_rotation,
    missing_input_and_unwritable_output,
);
