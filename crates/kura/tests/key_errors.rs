#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every master-key problem a user can meet, with the wordings operators know, and that a
//! failed command writes nothing.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;

/// Commands that need a master key, each tried in every failure below.
const NEEDS_KEY: [&[&str]; 6] = [
    &["init"],
    &["status"],
    &["rotate", "data-key"],
    &["rotate", "kek"],
    &["rotate", "master-key"],
    &["encrypt", "plain.txt", "-o", "out.krs"],
];

#[test]
fn no_master_key_configured() {
    let sb = Sandbox::new();
    sb.plain("plain.txt", b"hello");
    sb.run(&["--data-dir", "data", "init"]).fails_with(&[
        "Missing backing keystore:",
        "no master key is configured",
        "KURA_MASTER_KEY_FILE",
        "KURA_MASTER_KEY_ENV",
        "--master-key-file",
    ]);
    assert!(!sb.data_dir().exists());
    // Empty variables count as unset.
    sb.exec(
        sb.cmd()
            .env("KURA_MASTER_KEY_FILE", "")
            .env("KURA_MASTER_KEY_ENV", "")
            .args(["--data-dir", "data", "init"]),
    )
    .fails_with(&["Missing backing keystore:", "KURA_MASTER_KEY_FILE"]);
    assert!(!sb.data_dir().exists());

    // After init, every command still needs it.
    let key = sb.keygen("master.key");
    let before = sb.init(&key);
    for args in &NEEDS_KEY[1..] {
        sb.exec(sb.cmd().args(["--data-dir", "data"]).args(*args))
            .fails_with(&[
                "Missing backing keystore:",
                "KURA_MASTER_KEY_FILE",
                "KURA_MASTER_KEY_ENV",
            ]);
    }
    assert_eq!(sb.status(&key)["generation"], before["generation"]);
    assert_eq!(sb.files(), ["data", "master.key", "plain.txt"]);
}

#[test]
fn master_key_file_missing() {
    let sb = Sandbox::new();
    sb.plain("plain.txt", b"hello");
    let missing = sb.join("missing.key");
    sb.kura(&missing, &["init"]).fails_with(&[
        "Missing backing keystore:",
        "missing.key",
        "(from --master-key-file) does not exist",
        "kura keygen --out",
    ]);
    assert!(!sb.data_dir().exists());
    sb.exec(
        sb.cmd()
            .env("KURA_MASTER_KEY_FILE", "gone.key")
            .args(["--data-dir", "data", "init"]),
    )
    .fails_with(&[
        "Missing backing keystore:",
        "gone.key (from KURA_MASTER_KEY_FILE) does not exist",
    ]);
    assert!(!sb.data_dir().exists());

    let key = sb.keygen("master.key");
    sb.init(&key);
    for args in &NEEDS_KEY[1..] {
        sb.kura(&missing, args)
            .fails_with(&["Missing backing keystore:", "missing.key"]);
    }
    assert_eq!(sb.files(), ["data", "master.key", "plain.txt"]);
}

#[test]
fn master_key_of_16_bytes() {
    let sb = Sandbox::new();
    let short = [0x42u8; 16];
    let file = sb.write_file(
        "short.key",
        format!("{}\n", hex::encode(short)).as_bytes(),
        0o400,
    );
    sb.kura(&file, &["init"]).fails_with(&[
        "Size of the Master Key is invalid it must be 32 bytes however is 16",
        "short.key",
    ]);
    assert!(!sb.data_dir().exists());

    // Also from the environment, in base64 (`openssl rand -base64 16`).
    sb.exec(
        sb.cmd()
            .env("KURA_MASTER_KEY_ENV", STANDARD.encode(short))
            .args(["--data-dir", "data", "init"]),
    )
    .fails_with(&[
        "Size of the Master Key is invalid it must be 32 bytes however is 16",
        "KURA_MASTER_KEY_ENV",
    ]);
    // 64 bytes is wrong too.
    let long = sb.write_file(
        "long.key",
        format!("{}\n", hex::encode([7u8; 64])).as_bytes(),
        0o400,
    );
    sb.kura(&long, &["init"])
        .fails_with(&["Size of the Master Key is invalid it must be 32 bytes however is 64"]);
    assert!(!sb.data_dir().exists());
}

#[test]
fn master_key_that_is_neither_hex_nor_base64() {
    let sb = Sandbox::new();
    let file = sb.write_file("junk.key", b"this is not a key!\n", 0o400);
    sb.kura(&file, &["init"]).fails_with(&[
        "neither 64 hex digits nor base64",
        "junk.key",
        "kura keygen",
    ]);
    sb.write_file("empty.key", b"", 0o400);
    sb.kura(&sb.join("empty.key"), &["init"])
        .fails_with(&["Size of the Master Key is invalid it must be 32 bytes however is 0"]);
    assert!(!sb.data_dir().exists());
}

#[test]
fn key_file_permissions_must_be_0400() {
    let sb = Sandbox::new();
    let key = random_key();
    sb.secret(&key);
    let content = format!("{}\n", hex::encode(&key));
    for (name, m, shown) in [
        ("k644.key", 0o644, "644"),
        ("k600.key", 0o600, "600"),
        ("k440.key", 0o440, "440"),
        ("k404.key", 0o404, "404"),
    ] {
        let path = sb.write_file(name, content.as_bytes(), m);
        sb.kura(&path, &["init"]).fails_with(&[
            &format!("Permission for backing key file must be 0400, but is {shown}"),
            &format!("chmod 0400 {}", path.display()),
        ]);
        assert!(!sb.data_dir().exists());
        assert_eq!(mode(&path), m, "kura must not change the mode itself");
    }

    // A key file made readable by others after init stops working until fixed.
    let good = sb.write_file("good.key", content.as_bytes(), 0o400);
    let st = sb.init(&good);
    fs::set_permissions(&good, fs::Permissions::from_mode(0o644)).unwrap();
    sb.kura(&good, &["status"])
        .fails_with(&["Permission for backing key file must be 0400, but is 644"]);
    fs::set_permissions(&good, fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(kek_id(&sb.status(&good)), kek_id(&st));

    // The previous master key file is held to the same rule.
    let prev = sb.write_file("prev.key", content.as_bytes(), 0o640);
    sb.kura(&good, &["--previous-master-key-file", "prev.key", "status"])
        .fails_with(&[
            "the previous master key",
            "Permission for backing key file must be 0400, but is 640",
        ]);
    assert_eq!(mode(&prev), 0o640);
}

#[test]
fn wrong_master_key_after_init() {
    let (sb, key) = Sandbox::initialised();
    let st = sb.status(&key);
    let kek = kek_id(&st);
    let wrapped_by = st["master_key"]["id"].as_str().unwrap().to_string();
    let other = sb.keygen("other.key");
    let other_id = sb
        .exec(
            sb.cmd()
                .args(["--output", "json", "keygen", "--out", "third.key"]),
        )
        .ok()
        .json()["master_key_id"]
        .as_str()
        .unwrap()
        .to_string();
    sb.secret(&read_key(&sb.join("third.key")));
    sb.plain("plain.txt", b"hello");
    for args in &NEEDS_KEY[1..] {
        sb.kura(&other, args).fails_with(&[
            "wrong master key",
            &format!("KEK {kek} is wrapped by master key {wrapped_by}"),
            "previous-master-key",
            "KURA_PREVIOUS_MASTER_KEY_FILE",
        ]);
    }
    // A previous master key that is not the right one either is named in the message.
    sb.kura(
        &other,
        &["--previous-master-key-file", "third.key", "status"],
    )
    .fails_with(&[
        "wrong master key",
        &format!("KEK {kek}"),
        &format!("the previous master key is {other_id}"),
    ]);
    let after = sb.status(&key);
    assert_eq!(after["generation"], st["generation"]);
    assert!(!sb.join("out.krs").exists());
}

#[test]
fn status_before_init() {
    let (sb, key) = Sandbox::with_key();
    for args in [
        &["status"][..],
        &["rotate", "data-key"],
        &["rotate", "kek"],
        &["rotate", "master-key"],
        &["data-key", "destroy", "1", "--yes"],
        &["encrypt", "-o", "out.krs"],
        &["decrypt", "-o", "out.txt"],
    ] {
        sb.kura_stdin(&key, args, b"")
            .fails_with(&["not initialised", "kura init"]);
    }
    // Nothing was created: no data directory, no output.
    assert_eq!(sb.files(), ["master.key"]);
    // An existing but empty data directory stays empty.
    fs::create_dir(sb.data_dir()).unwrap();
    sb.kura(&key, &["status"])
        .fails_with(&["not initialised", "kura init"]);
    assert_eq!(fs::read_dir(sb.data_dir()).unwrap().count(), 0);
    fs::remove_dir(sb.data_dir()).unwrap();
    // Even without a master key the message is about init.
    sb.run(&["status"]).fails_with(&["kura init"]);
    assert_eq!(sb.files(), ["master.key"]);
}

#[test]
fn bad_context_syntax() {
    let (sb, key) = Sandbox::initialised();
    sb.plain("plain.txt", b"hello");
    for cmd in ["encrypt", "decrypt"] {
        sb.kura(
            &key,
            &[cmd, "plain.txt", "-o", "out", "--context", "tenant"],
        )
        .usage_error(&["--context", "'tenant' is not KEY=VALUE"]);
    }
    assert!(!sb.join("out").exists());
}

#[test]
fn usage_errors() {
    let sb = Sandbox::new();
    sb.run(&["rotate"]).usage_error(&["<WHAT>"]);
    sb.run(&["rotate", "everything"])
        .usage_error(&["invalid value 'everything'"]);
    sb.run(&["data-key", "destroy", "abc", "--yes"])
        .usage_error(&["invalid value 'abc'"]);
    sb.run(&["--output", "yaml", "status"])
        .usage_error(&["invalid value 'yaml'"]);
    sb.run(&["frobnicate"]).usage_error(&["frobnicate"]);
    assert!(sb.files().is_empty());
    // Help and version are not errors.
    let help = sb.run(&["--help"]).ok().stdout_str();
    for cmd in [
        "keygen", "init", "status", "rotate", "data-key", "encrypt", "decrypt", "bench",
    ] {
        assert!(help.contains(cmd), "{help}");
    }
    assert!(
        sb.run(&["--version"])
            .ok()
            .stdout_str()
            .starts_with("kura ")
    );
}
