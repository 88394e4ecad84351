#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura fs`: golden CLI tests.
//!
//! - put/get round trips under every method (binary data, empty input), with the method
//!   from `--method` or from `data-encryption-method`;
//! - `ls` and `dump` in text and JSON; `dump` never shows key material unless
//!   `--show-keys`, which warns (every run is checked for the master key and for every
//!   data key of the keystore, unwrapped here in the test);
//! - `mv`, `rm`, refused paths and every error message (`fs_cli/errors.rs`);
//! - `reencrypt` of plaintext files, after a data key rotation and after a change of
//!   method, and its rules for page-mode files and redb databases
//!   (`fs_cli/reencrypt.rs`);
//! - `reencrypt` killed with SIGKILL at random instants over 240 files, then run again
//!   (`fs_cli/crash.rs`).

mod common;
#[path = "fs_cli/crash.rs"]
mod crash;
#[path = "fs_cli/errors.rs"]
mod errors;
#[path = "fs_cli/reencrypt.rs"]
mod reencrypt;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use common::*;
use kura_crypto::XaesCommitting;
use kura_format::wrapped::{self, Kind};
use kura_fs::{EncryptedFs, FileInfo, Method, Options};
use kura_keys::clock::SystemClock;
use kura_keys::config::{DEFAULT_ROTATION_PERIOD, Method as KeyMethod};
use kura_keys::{Keyring, KeyringSettings, LocalMasterKey, MasterKey};
use kura_store::{Keystore, SqliteKeystore};
use serde_json::Value;

pub(crate) const ROOT: &str = "root";

/// The keyring of the sandbox's keystore, opened in this process with `method` configured
/// (the one the commands ran with, so that nothing is rotated by the opening).
pub(crate) fn keyring(data_dir: &Path, key: &Path, method: &str) -> Arc<Keyring> {
    let store: Arc<dyn Keystore> =
        Arc::new(SqliteKeystore::open_existing(&data_dir.join("keystore.db")).unwrap());
    let master: Arc<dyn MasterKey> = Arc::new(LocalMasterKey::from_file(key, "test").unwrap());
    let settings = KeyringSettings::new(KeyMethod::parse(method).unwrap(), DEFAULT_ROTATION_PERIOD);
    let (k, _) = Keyring::open(store, master, None, settings, Arc::new(SystemClock)).unwrap();
    Arc::new(k)
}

/// The bytes of every data key not destroyed, unwrapped with the master key and the KEKs
/// straight from the keystore.
pub(crate) fn data_key_bytes(data_dir: &Path, key: &Path) -> Vec<Vec<u8>> {
    let store = SqliteKeystore::open_existing(&data_dir.join("keystore.db")).unwrap();
    let snap = store.snapshot().unwrap().unwrap();
    let master = LocalMasterKey::from_file(key, "test").unwrap();
    let mut out = Vec::new();
    for dk in snap.data_keys.iter().filter(|d| !d.wrapped.is_empty()) {
        let kek = snap.keks.iter().find(|k| k.id == dk.kek_id).unwrap();
        let kek_key = master.unwrap_kek(kek.id, &kek.wrapped).unwrap();
        let xaes = XaesCommitting::new(&kek_key).unwrap();
        let bytes = wrapped::unwrap(&xaes, Kind::DataKeyUnderKek, dk.id, &dk.wrapped).unwrap();
        out.push(bytes.expose_secret().to_vec());
    }
    assert!(!out.is_empty());
    out
}

/// Registers every data key of the sandbox's keystore as a secret no output may contain.
pub(crate) fn guard_data_keys(sb: &Sandbox, key: &Path) {
    for k in data_key_bytes(&sb.data_dir(), key) {
        sb.secret(&k);
    }
}

/// The key of a file, derived in this process.
pub(crate) fn file_key(k: &Keyring, i: &FileInfo) -> Vec<u8> {
    k.derive(
        i.key_id,
        &i.salt,
        i.method.as_str().as_bytes(),
        i.method.key_len(),
    )
    .unwrap()
    .expose_secret()
    .to_vec()
}

/// `kura fs ARGS --root root`.
pub(crate) fn fs_run(sb: &Sandbox, key: &Path, args: &[&str]) -> Run {
    let mut all = vec!["fs"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--root", ROOT]);
    sb.kura(key, &all)
}

/// `kura fs put --root root PATH [EXTRA…]` reading `data`.
pub(crate) fn put(sb: &Sandbox, key: &Path, path: &str, extra: &[&str], data: &[u8]) -> Run {
    let mut all = vec!["fs", "put", "--root", ROOT, path];
    all.extend_from_slice(extra);
    sb.kura_stdin(key, &all, data)
}

/// `kura fs get --root root PATH`, which must succeed.
pub(crate) fn get(sb: &Sandbox, key: &Path, path: &str) -> Vec<u8> {
    fs_run(sb, key, &["get", path]).ok().stdout
}

/// `kura --output json fs ls --root root`: path → (method, data key id or null).
pub(crate) fn ls(sb: &Sandbox, key: &Path) -> Vec<(String, String, Value)> {
    let j = sb
        .kura(key, &["--output", "json", "fs", "ls", "--root", ROOT])
        .ok()
        .json();
    j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["method"].as_str().unwrap().to_string(),
                f["data_key_id"].clone(),
            )
        })
        .collect()
}

/// Every method, by name.
pub(crate) fn methods() -> Vec<&'static str> {
    Method::ALL.iter().map(|m| m.as_str()).collect()
}

/// Inputs of a round trip: empty, one byte, around a page, and larger binary data.
fn inputs() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        vec![0],
        data(4095, 1),
        data(4096, 2),
        data(4097, 3),
        data(300_000, 4),
    ]
}

#[test]
fn put_get_round_trip_under_every_method() {
    let (sb, key) = Sandbox::initialised();
    guard_data_keys(&sb, &key);
    for m in methods() {
        for (n, input) in inputs().iter().enumerate() {
            let path = format!("{m}/f{n}.bin");
            let out = put(&sb, &key, &path, &["--method", m], input).ok();
            assert_eq!(
                out.stdout_str().trim(),
                if m == "plaintext" {
                    format!("wrote {path}: {} bytes, plaintext", input.len())
                } else {
                    let id = active_id(&sb.status(&key));
                    format!("wrote {path}: {} bytes, {m}, data key {id}", input.len())
                }
            );
            assert_eq!(get(&sb, &key, &path), *input, "{path}");
            let raw = fs::read(sb.join(ROOT).join(&path)).unwrap();
            if m == "plaintext" {
                assert_eq!(raw, *input);
            } else {
                // Encrypted: a 32-byte header naming the method, never the plaintext.
                assert_eq!(&raw[..4], b"KRFS", "{path}");
                if input.len() > 16 {
                    assert!(!raw.windows(16).any(|w| w == &input[..16]), "{path}");
                }
            }
        }
    }
    let listed = ls(&sb, &key);
    assert_eq!(listed.len(), methods().len() * inputs().len());
    for (path, method, id) in listed {
        assert!(path.starts_with(&format!("{method}/")), "{path} {method}");
        assert_eq!(id.is_null(), method == "plaintext", "{path}");
    }
    // Replacing a file: the new content, a new key (new salt), the old content gone.
    put(&sb, &key, "aes256-ctr/f1.bin", &[], b"replaced").ok();
    assert_eq!(get(&sb, &key, "aes256-ctr/f1.bin"), b"replaced");
    // put --output json.
    let j = sb
        .kura_stdin(
            &key,
            &["--output", "json", "fs", "put", "--root", ROOT, "j.bin"],
            b"json",
        )
        .ok()
        .json();
    assert_eq!(j["path"], "j.bin");
    assert_eq!(j["method"], "aes256-ctr");
    assert_eq!(j["bytes"], 4);
    assert_eq!(j["data_key_id"], active_id(&sb.status(&key)));
    // No temporary file is left behind by a put.
    assert!(
        ls(&sb, &key)
            .iter()
            .all(|(p, _, _)| !p.contains(".kura-tmp"))
    );
}

#[test]
fn the_method_comes_from_data_encryption_method() {
    let (sb, key) = Sandbox::initialised();
    for m in methods() {
        let cfg = format!("{m}.toml");
        sb.write_file(
            &cfg,
            format!("[security.encryption]\ndata-encryption-method = \"{m}\"\n").as_bytes(),
            0o644,
        );
        let input = data(10_000, 7);
        sb.kura_stdin(
            &key,
            &["--config", &cfg, "fs", "put", "--root", ROOT, m],
            &input,
        )
        .ok();
        let (_, method, _) = ls(&sb, &key).into_iter().find(|(p, _, _)| p == m).unwrap();
        assert_eq!(method, m);
        assert_eq!(get(&sb, &key, m), input);
    }
    // enable-file-dictionary-log = false: the dictionary is rewritten whole, in format 1.
    sb.write_file(
        "nolog.toml",
        b"[security.encryption]\nenable-file-dictionary-log = false\n",
        0o644,
    );
    let nolog = |args: &[&str]| {
        let mut all = vec!["--config", "nolog.toml", "--output", "json"];
        all.extend_from_slice(args);
        sb.kura(&key, &all)
    };
    let j = nolog(&["fs", "dump", "--root", ROOT]).ok().json();
    assert_eq!(j["file_dictionary"]["enable_file_dictionary_log"], false);
    let j = sb
        .kura(&key, &["--output", "json", "fs", "dump", "--root", ROOT])
        .ok()
        .json();
    assert_eq!(j["file_dictionary"]["enable_file_dictionary_log"], true);
    for m in methods() {
        assert_eq!(get(&sb, &key, m), data(10_000, 7));
    }
}

#[test]
fn ls_and_dump_in_text_and_json_without_key_material() {
    let (sb, key) = Sandbox::initialised();
    guard_data_keys(&sb, &key);
    fs::create_dir(sb.join(ROOT)).unwrap();
    let text = fs_run(&sb, &key, &["ls"]).ok().stdout_str();
    assert_eq!(text.trim(), format!("no files under {ROOT}"));
    put(&sb, &key, "a/ctr.log", &[], b"appended log").ok();
    put(
        &sb,
        &key,
        "page.db",
        &["--method", "aes256-gcm-page"],
        &data(9000, 1),
    )
    .ok();
    fs::write(
        sb.join(ROOT).join("legacy.txt"),
        b"written before encryption",
    )
    .unwrap();
    let id = active_id(&sb.status(&key));

    let text = fs_run(&sb, &key, &["ls"]).ok().stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(cols(lines[0]), ["PATH", "METHOD", "DATA", "KEY", "SIZE"]);
    assert_eq!(cols(lines[1]), ["a/ctr.log", "aes256-ctr", &id, "12"]);
    assert_eq!(cols(lines[2]), ["legacy.txt", "plaintext", "-", "25"]);
    assert_eq!(cols(lines[3]), ["page.db", "aes256-gcm-page", &id, "9000"]);

    let j = sb
        .kura(&key, &["--output", "json", "fs", "ls", "--root", ROOT])
        .ok()
        .json();
    assert_eq!(j["root"], ROOT);
    assert_eq!(j["method"], "aes256-ctr");
    assert_eq!(
        j["files"][1],
        serde_json::json!({"path": "legacy.txt", "method": "plaintext", "data_key_id": null, "size": 25})
    );
    assert_eq!(j["files"][0]["data_key_id"], id.as_str());

    // The file keys, derived here: absent from dump without --show-keys.
    let k = keyring(&sb.data_dir(), &key, "aes256-ctr");
    let efs = EncryptedFs::open(&sb.join(ROOT), k.clone(), Options::default()).unwrap();
    let infos: Vec<FileInfo> = efs.entries().into_iter().map(|(_, i)| i).collect();
    drop(efs);
    assert_eq!(infos.len(), 2);
    let keys: Vec<String> = infos.iter().map(|i| hex::encode(file_key(&k, i))).collect();
    let dump_text = fs_run(&sb, &key, &["dump"]).ok();
    let dump_json = sb
        .kura(&key, &["--output", "json", "fs", "dump", "--root", ROOT])
        .ok();
    for run in [&dump_text, &dump_json] {
        assert!(!run.stderr.contains("show-keys"), "{}", run.stderr);
        for fk in &keys {
            assert!(!run.stdout_str().contains(fk.as_str()));
        }
    }
    let t = dump_text.stdout_str();
    for needle in [
        format!("data root:        {ROOT}"),
        "method:           aes256-ctr".to_string(),
        format!("active data key:  {id}"),
        "(2 entries,".to_string(),
        "enable-file-dictionary-log = true".to_string(),
        format!(
            "method aes256-ctr, data key {id}, salt {}",
            hex::encode(infos[0].salt)
        ),
        "method plaintext, data key -, salt -, size 25, dictionary agrees".to_string(),
    ] {
        assert!(t.contains(&needle), "{needle:?} not in {t}");
    }
    // Ids are 18 or 19 digits: the column's padding varies.
    assert!(
        t.lines().any(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some(id.as_str()) && w.next() == Some("active")
        }),
        "{t}"
    );
    let j = dump_json.json();
    assert_eq!(j["active_data_key"], id.as_str());
    assert_eq!(j["file_dictionary"]["entries"], 2);
    assert_eq!(j["files"].as_array().unwrap().len(), 3);
    assert!(j["files"][0].get("file_key").is_none());
    assert_eq!(j["data_keys"][0]["id"], id.as_str());
    assert_eq!(j["data_keys"][0]["state"], "active");
    assert_eq!(j["data_keys"][0]["files"], 2);

    // --show-keys: the file keys, with a warning on stderr.
    for json in [false, true] {
        let mut args = vec!["fs", "dump", "--root", ROOT, "--show-keys"];
        if json {
            args.splice(0..0, ["--output", "json"]);
        }
        let run = sb.kura(&key, &args);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert!(
            run.stderr.contains(
                "WARNING: --show-keys prints the key of every encrypted file in plaintext hex"
            ),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("Do not keep this output in a file on disk")
        );
        for fk in &keys {
            assert!(run.stdout_str().contains(fk.as_str()), "{fk} missing");
        }
        if json {
            let j = run.json();
            let with: Vec<&Value> = j["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f.get("file_key").is_some())
                .collect();
            assert_eq!(with.len(), 2);
        }
    }
}

#[test]
fn mv_and_rm() {
    let (sb, key) = Sandbox::initialised();
    put(&sb, &key, "a.txt", &[], b"alpha").ok();
    put(&sb, &key, "b.txt", &["--method", "sm4-ctr"], b"beta").ok();
    let before = ls(&sb, &key);
    let out = fs_run(&sb, &key, &["mv", "a.txt", "dir/sub/c.txt"]).ok();
    assert_eq!(out.stdout_str().trim(), "moved a.txt to dir/sub/c.txt");
    assert_eq!(get(&sb, &key, "dir/sub/c.txt"), b"alpha");
    let after = ls(&sb, &key);
    // The file keeps its key.
    assert_eq!(after[1].0, "dir/sub/c.txt");
    assert_eq!((&after[1].1, &after[1].2), (&before[0].1, &before[0].2));
    // Over an existing file: replaced, and the moved file keeps its own method.
    fs_run(&sb, &key, &["mv", "b.txt", "dir/sub/c.txt"]).ok();
    assert_eq!(get(&sb, &key, "dir/sub/c.txt"), b"beta");
    assert_eq!(
        ls(&sb, &key),
        [(
            "dir/sub/c.txt".to_string(),
            "sm4-ctr".to_string(),
            before[1].2.clone()
        )]
    );
    let j = sb
        .kura(
            &key,
            &[
                "--output",
                "json",
                "fs",
                "rm",
                "--root",
                ROOT,
                "dir/sub/c.txt",
            ],
        )
        .ok()
        .json();
    assert_eq!(j["path"], "dir/sub/c.txt");
    assert_eq!(j["message"], "removed dir/sub/c.txt");
    assert!(ls(&sb, &key).is_empty());
    let j = sb
        .kura(&key, &["--output", "json", "fs", "dump", "--root", ROOT])
        .ok()
        .json();
    assert_eq!(j["file_dictionary"]["entries"], 0);
}
