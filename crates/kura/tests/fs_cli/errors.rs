//! Every error message of `kura fs`.

use std::fs;

use kura_fs::{EncryptedFs, Options};

use crate::common::*;
use crate::{ROOT, fs_run, get, keyring, ls, put};

const BAD_PATH: &str =
    "is not a relative path under the data root (no '..', no absolute paths, no empty components)";

#[test]
fn paths_outside_the_root_are_refused() {
    let (sb, key) = Sandbox::initialised();
    put(&sb, &key, "in.txt", &[], b"inside").ok();
    for bad in [
        "../x",
        "/etc/passwd",
        "a/../../x",
        "..",
        ".kura-fs/file.dict",
        "",
    ] {
        let quoted = format!("'{bad}' {BAD_PATH}");
        put(&sb, &key, bad, &[], b"x").fails_with(&[&quoted]);
        fs_run(&sb, &key, &["get", bad]).fails_with(&[&quoted]);
        fs_run(&sb, &key, &["rm", bad]).fails_with(&[&quoted]);
        fs_run(&sb, &key, &["mv", "in.txt", bad]).fails_with(&[&quoted]);
        fs_run(&sb, &key, &["mv", bad, "in.txt"]).fails_with(&[&quoted]);
    }
    assert!(!sb.join("x").exists());
    assert_eq!(get(&sb, &key, "in.txt"), b"inside");
    assert_eq!(ls(&sb, &key).len(), 1);
}

#[test]
fn missing_roots_files_and_bad_moves() {
    let (sb, key) = Sandbox::initialised();
    let no_root = "the data root nope does not exist or is not a folder; check --root (`kura fs put` creates it)";
    for args in [
        &["ls"][..],
        &["dump"],
        &["reencrypt"],
        &["get", "a"],
        &["rm", "a"],
        &["mv", "a", "b"],
    ] {
        let mut all = vec!["fs"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--root", "nope"]);
        sb.kura(&key, &all).fails_with(&[no_root]);
    }
    assert!(!sb.join("nope").exists());
    put(&sb, &key, "a", &[], b"a").ok();
    let no_file = "there is no file 'nope' under the data root root; `kura fs ls --root root` lists its files";
    fs_run(&sb, &key, &["get", "nope"]).fails_with(&[no_file]);
    fs_run(&sb, &key, &["rm", "nope"]).fails_with(&[no_file]);
    fs_run(&sb, &key, &["mv", "nope", "b"]).fails_with(&[no_file]);
    fs_run(&sb, &key, &["mv", "a", "./a"])
        .fails_with(&["'a' and 'a' are the same file; nothing to move"]);
    fs::create_dir(sb.join(ROOT).join("dir")).unwrap();
    fs_run(&sb, &key, &["mv", "a", "dir"])
        .fails_with(&["'dir' is a folder; give the new path of the file itself"]);
    put(&sb, &key, "a/b", &[], b"x").fails_with(&["cannot put 'a/b'; it was not changed"]);
    put(&sb, &key, "dir", &[], b"x").fails_with(&["cannot put 'dir'; it was not changed"]);
    assert_eq!(get(&sb, &key, "a"), b"a");
}

#[test]
fn methods_and_configuration() {
    let (sb, key) = Sandbox::initialised();
    put(&sb, &key, "x", &["--method", "aes256-gcm"], b"x").usage_error(&[
        "invalid value 'aes256-gcm' for '--method <METHOD>'",
        "[possible values: plaintext, aes128-ctr, aes192-ctr, aes256-ctr, sm4-ctr, aes256-gcm-page]",
    ]);
    sb.write_file(
        "bad.toml",
        b"[security.encryption]\ndata-encryption-method = \"aes256-gcm\"\n",
        0o644,
    );
    let put_with = |cfg: &str| {
        sb.kura_stdin(
            &key,
            &["--config", cfg, "fs", "put", "--root", ROOT, "x"],
            b"x",
        )
    };
    put_with("bad.toml").fails_with(&[
        "data-encryption-method \"aes256-gcm\" is unknown; use plaintext, aes128-ctr, aes192-ctr, aes256-ctr, sm4-ctr or aes256-gcm-page",
    ]);
    sb.write_file(
        "bad2.toml",
        b"[security.encryption]\nenable-file-dictionary-log = \"yes\"\n",
        0o644,
    );
    put_with("bad2.toml").fails_with(&["bad2.toml", "invalid type: string"]);
    assert!(!sb.join(ROOT).exists());
}

#[test]
fn reserved_names_and_redb_databases() {
    let (sb, key) = Sandbox::initialised();
    put(&sb, &key, ".x.kura-tmp", &[], b"x").fails_with(&[
        "'.x.kura-tmp' is the name of a kura temporary file (.NAME.kura-tmp); choose another name",
    ]);
    put(&sb, &key, "d/db.kura-head", &[], b"x").fails_with(&[
        "'d/db.kura-head' ends in .kura-head, the header slots of a redb database kept with kura-fs; choose another name",
    ]);
    // A redb database as RedbBackend keeps it: a page-mode file and its header slots.
    put(
        &sb,
        &key,
        "d/db",
        &["--method", "aes256-gcm-page"],
        &data(5000, 1),
    )
    .ok();
    fs::write(sb.join(ROOT).join("d/db.kura-head"), [0u8; 64]).unwrap();
    put(&sb, &key, "x", &[], b"x").ok();
    let redb = "'d/db' is a redb database (its header slots are in 'd/db.kura-head', sealed with its key); \
                write and move it through the application that opens it with kura-fs";
    put(&sb, &key, "d/db", &[], b"x").fails_with(&[redb]);
    fs_run(&sb, &key, &["mv", "d/db", "e"]).fails_with(&[redb]);
    fs_run(&sb, &key, &["mv", "x", "d/db"]).fails_with(&[redb]);
    fs_run(&sb, &key, &["rm", "d/db.kura-head"]).fails_with(&[
        "'d/db.kura-head' holds the header slots of the redb database 'd/db', which cannot be read without them; \
         `kura fs rm` the database instead (it removes both)",
    ]);
    let text = fs_run(&sb, &key, &["ls"]).ok().stdout_str();
    assert!(
        text.contains("(redb database (header slots in d/db.kura-head))"),
        "{text}"
    );
    assert!(
        text.contains("(header slots of the redb database d/db)"),
        "{text}"
    );
    let out = fs_run(&sb, &key, &["rm", "d/db"]).ok();
    assert_eq!(
        out.stdout_str().trim(),
        "removed d/db and its redb header slots d/db.kura-head"
    );
    assert_eq!(ls(&sb, &key).len(), 1);
}

#[test]
fn a_root_in_use_tampering_and_destroyed_keys() {
    let (sb, key) = Sandbox::initialised();
    put(
        &sb,
        &key,
        "p.db",
        &["--method", "aes256-gcm-page"],
        &data(10_000, 2),
    )
    .ok();
    put(&sb, &key, "c.log", &[], b"ctr").ok();

    // Another process holds the root.
    let k = keyring(&sb.data_dir(), &key, "aes256-ctr");
    let held = EncryptedFs::open(&sb.join(ROOT), k, Options::default()).unwrap();
    fs_run(&sb, &key, &["ls"]).fails_with(&[
        "cannot open the data root root",
        "the file dictionary is in use by another process",
    ]);
    drop(held);

    // A flipped bit in a page is caught (CTR files are not authenticated, as in TiKV).
    let p = sb.join(ROOT).join("p.db");
    let mut raw = fs::read(&p).unwrap();
    raw[kura_fs::page::data_at(0) as usize + 100] ^= 1;
    fs::write(&p, &raw).unwrap();
    fs_run(&sb, &key, &["get", "p.db"]).fails_with(&[
        "cannot read 'p.db'",
        "decryption failed: the data was altered, truncated, or belongs to another file or key",
    ]);
    // After a rotation both files are due; p.db cannot be copied.
    let old = active_id(&sb.status(&key));
    sb.kura(&key, &["rotate", "data-key"]).ok();
    let run = fs_run(&sb, &key, &["reencrypt"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("failed p.db: "), "{}", run.stderr);
    assert!(run.stderr.contains(
        "kura: error: 1 file could not be re-encrypted and left as they were (listed above); \
         fix them and run `kura fs reencrypt` again"
    ));
    assert!(
        run.stdout_str()
            .starts_with("rewrote 1 file, 0 already current, 0 skipped, 1 failed")
    );
    assert_eq!(fs::read(&p).unwrap(), raw);

    // kura refuses to destroy the key p.db is still under …
    sb.kura(&key, &["destroy-data-key", &old, "--yes"])
        .fails_with(&[
            &format!("data key {old} is still in use, so it is not destroyed"),
            "1 files in the data root",
            "re-encrypt them with `kura fs reencrypt --root",
        ]);
    // … also while another process holds the root (its dictionary is read without the
    // lock).
    let k = keyring(&sb.data_dir(), &key, "aes256-ctr");
    let held = EncryptedFs::open(&sb.join(ROOT), k.clone(), Options::default()).unwrap();
    sb.kura(&key, &["destroy-data-key", &old, "--yes"])
        .fails_with(&["1 files in the data root"]);
    drop(held);
    // A data key destroyed anyway (through the library): the files still under it cannot
    // be read.
    k.destroy_data_key(old.parse().unwrap()).unwrap();
    assert_eq!(get(&sb, &key, "c.log"), b"ctr");
    fs_run(&sb, &key, &["get", "p.db"]).fails_with(&[
        "cannot read 'p.db'",
        &format!(
            "data key {old} was destroyed: data encrypted under it can no longer be decrypted"
        ),
    ]);
}

/// A data root opened only by an application (the library, never `kura fs`) is registered
/// in the keystore all the same: its files keep their data key from being destroyed.
#[test]
fn a_root_only_an_application_opened_keeps_its_data_key() {
    let (sb, key) = Sandbox::initialised();
    let app = sb.join("app-data");
    let fs = EncryptedFs::open(
        &app,
        keyring(&sb.data_dir(), &key, "aes256-ctr"),
        Options {
            method: kura_fs::Method::Aes256Ctr,
            file_dictionary_log: true,
        },
    )
    .unwrap();
    fs.write("table.sst", b"rows of the application").unwrap();
    drop(fs);
    let old = active_id(&sb.status(&key));
    sb.kura(&key, &["rotate", "data-key"]).ok();
    sb.kura(&key, &["destroy-data-key", &old, "--yes"])
        .fails_with(&[
            &format!("data key {old} is still in use, so it is not destroyed"),
            "1 files in the data root",
        ]);
}
