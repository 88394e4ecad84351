#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura keygen`: the key file it writes, its formats, and that it never overwrites.

mod common;

use std::fs;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;

#[test]
fn hex_key_file_is_64_hex_digits_and_a_newline_mode_0400() {
    let sb = Sandbox::new();
    let run = sb.run(&["keygen", "--out", "master.key"]).ok();
    let path = sb.join("master.key");
    let content = fs::read(&path).unwrap();
    sb.secret(&read_key(&path));
    sb.check(&run);

    assert_eq!(content.len(), 65);
    assert_eq!(content[64], b'\n');
    assert!(
        content[..64]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)),
        "{content:?}"
    );
    assert_eq!(mode(&path), 0o400);

    let out = run.stdout_str();
    assert!(out.contains("master.key"), "{out}");
    assert!(out.contains("hex, mode 0400"), "{out}");
    assert!(out.contains("master key id: local:"), "{out}");
    // Nothing else was left in the directory (no temporary file).
    assert_eq!(sb.files(), ["master.key"]);
}

#[test]
fn base64_key_file_decodes_to_32_bytes() {
    let sb = Sandbox::new();
    let run = sb
        .run(&["keygen", "--out", "b64.key", "--format", "base64"])
        .ok();
    let path = sb.join("b64.key");
    let text = fs::read_to_string(&path).unwrap();
    let key = STANDARD.decode(text.strip_suffix('\n').unwrap()).unwrap();
    sb.secret(&key);
    sb.check(&run);
    assert_eq!(key.len(), 32);
    assert_eq!(text.len(), 45, "{text:?}");
    assert_eq!(mode(&path), 0o400);
    assert!(run.stdout_str().contains("base64, mode 0400"));

    // The file works as a master key.
    let st = sb.init(&path);
    assert_eq!(
        st["master_key"]["source"],
        format!("file {}", path.display())
    );
}

#[test]
fn two_keys_differ_and_their_ids_match_status() {
    let sb = Sandbox::new();
    let a = sb
        .run(&["--output", "json", "keygen", "--out", "a.key"])
        .ok()
        .json();
    let b = sb
        .run(&["--output", "json", "keygen", "--out", "b.key"])
        .ok()
        .json();
    let (ka, kb) = (read_key(&sb.join("a.key")), read_key(&sb.join("b.key")));
    sb.secret(&ka);
    sb.secret(&kb);
    assert_ne!(ka, kb);
    assert_ne!(a["master_key_id"], b["master_key_id"]);
    let st = sb.init(&sb.join("a.key"));
    assert_eq!(st["master_key"]["id"], a["master_key_id"]);
    assert_eq!(st["kek"]["master_key_id"], a["master_key_id"]);
}

#[test]
fn json_output_has_path_format_and_master_key_id() {
    let sb = Sandbox::new();
    let run = sb
        .run(&[
            "--output", "json", "keygen", "--out", "k.key", "--format", "base64",
        ])
        .ok();
    sb.secret(&read_key(&sb.join("k.key")));
    sb.check(&run);
    let j = run.json();
    assert_eq!(j["path"], "k.key");
    assert_eq!(j["format"], "base64");
    assert_eq!(j["mode"], "0400");
    let id = j["master_key_id"].as_str().unwrap();
    assert!(
        id.starts_with("local:") && id.len() == "local:".len() + 16,
        "{id}"
    );

    let j = sb
        .run(&["--output", "json", "keygen", "--out", "h.key"])
        .ok()
        .json();
    sb.secret(&read_key(&sb.join("h.key")));
    assert_eq!(j["format"], "hex");
}

#[test]
fn never_overwrites_an_existing_file() {
    let sb = Sandbox::new();
    let old = sb.keygen("master.key");
    let before = fs::read(&old).unwrap();
    for format in ["hex", "base64"] {
        sb.run(&["keygen", "--out", "master.key", "--format", format])
            .fails_with(&["master.key already exists", "never overwrites"]);
        assert_eq!(fs::read(&old).unwrap(), before);
        assert_eq!(mode(&old), 0o400);
    }

    // Not even a writable file of somebody else's, nor a dangling symlink.
    let other = sb.write_file("notes.txt", b"precious\n", 0o644);
    sb.run(&["keygen", "--out", "notes.txt"])
        .fails_with(&["notes.txt already exists", "never overwrites"]);
    assert_eq!(fs::read(&other).unwrap(), b"precious\n");
    std::os::unix::fs::symlink(sb.join("nowhere"), sb.join("link.key")).unwrap();
    sb.run(&["keygen", "--out", "link.key"])
        .fails_with(&["link.key already exists", "never overwrites"]);
    assert!(!sb.join("nowhere").exists());
    assert_eq!(sb.files(), ["link.key", "master.key", "notes.txt"]);
}

#[test]
fn unwritable_destination_and_bad_arguments() {
    let sb = Sandbox::new();
    sb.run(&["keygen", "--out", "no/such/dir/k.key"])
        .fails_with(&["cannot create", "no/such/dir/k.key"]);
    assert!(sb.files().is_empty());

    sb.run(&["keygen", "--out", "k.key", "--format", "pem"])
        .usage_error(&["invalid value 'pem'", "hex", "base64"]);
    sb.run(&["keygen"]).usage_error(&["--out"]);
    assert!(sb.files().is_empty());
}
