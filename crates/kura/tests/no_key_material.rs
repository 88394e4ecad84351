#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! No master key ever leaves kura: not on stdout or stderr of any command (every run in
//! these tests is checked), not in the most verbose logs, not in the keystore file.

mod common;

use std::fs;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;

#[test]
fn whole_lifecycle_with_trace_logging() {
    let sb = Sandbox::new();
    let old = random_key();
    let new = sb.keygen("new.key");
    sb.secret(&old);
    let old_b64 = STANDARD.encode(&old);
    let traced = |args: &[&str], stdin: &[u8]| {
        sb.exec(
            sb.cmd()
                .env("KURA_LOG", "trace")
                .env("KURA_MASTER_KEY_ENV", &old_b64)
                .env("KURA_DATA_DIR", "data")
                .args(args)
                .write_stdin(stdin.to_vec()),
        )
    };
    traced(&["init"], b"").ok_logged();
    for args in [
        &["status"][..],
        &["--output", "json", "status"],
        &["rotate", "data-key"],
        &["rotate", "kek"],
    ] {
        traced(args, b"").ok_logged();
    }
    let ct = traced(&["encrypt", "--context", "a=b"], b"secret data")
        .ok_logged()
        .stdout;
    assert_eq!(
        traced(&["decrypt", "--context", "a=b"], &ct)
            .ok_logged()
            .stdout,
        b"secret data"
    );
    traced(&["decrypt"], &ct).fails_with(&["decryption failed"]);

    // Rotate to the key file, with the old key as the previous one, all traced.
    let run = sb
        .exec(
            sb.keyed(&new)
                .env("KURA_LOG", "trace")
                .env("KURA_PREVIOUS_MASTER_KEY_ENV", &old_b64)
                .args(["rotate", "master-key"]),
        )
        .ok_logged();
    assert!(run.stdout_str().contains("re-wrapped"));
    // The re-wrap is logged (so tracing really was on), without a key.
    assert!(run.stderr.contains("re-wrapped"), "{}", run.stderr);
    traced(&["status"], b"").fails_with(&["wrong master key"]);

    // The keystore holds wrapped blobs only.
    let db = fs::read(sb.join("data/keystore.db")).unwrap();
    assert_no_key_material(&[old, read_key(&new)], "keystore.db", &db);
}

#[test]
fn failures_do_not_echo_keys() {
    let sb = Sandbox::new();
    let key = random_key();
    sb.secret(&key);
    // The right key with the wrong permissions, a key of the wrong size derived from it,
    // and a key with a stray character.
    let hex_key = hex::encode(&key);
    let loose = sb.write_file("loose.key", format!("{hex_key}\n").as_bytes(), 0o644);
    sb.kura(&loose, &["init"])
        .fails_with(&["Permission for backing key file must be 0400"]);
    let short = sb.write_file("short.key", &hex_key.as_bytes()[..62], 0o400);
    sb.kura(&short, &["init"])
        .fails_with(&["Size of the Master Key is invalid"]);
    let stray = sb.write_file("stray.key", format!("{hex_key}!\n").as_bytes(), 0o400);
    sb.kura(&stray, &["init"])
        .fails_with(&["neither 64 hex digits nor base64"]);
    sb.exec(
        sb.cmd()
            .env("KURA_LOG", "trace")
            .env("KURA_MASTER_KEY_ENV", format!("{}!", STANDARD.encode(&key)))
            .args(["--data-dir", "data", "init"]),
    )
    .fails_with(&["neither 64 hex digits nor base64", "KURA_MASTER_KEY_ENV"]);
    assert!(!sb.data_dir().exists());
    // The variable takes hex as well as base64.
    sb.exec(
        sb.cmd()
            .env("KURA_LOG", "trace")
            .env("KURA_MASTER_KEY_ENV", &hex_key)
            .args(["--data-dir", "data", "init"]),
    )
    .ok_logged();
    // It was the same key: the file opens the keystore.
    sb.status(&sb.key_file("same.key", &key));
}
