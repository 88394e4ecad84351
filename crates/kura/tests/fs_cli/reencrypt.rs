//! `kura fs reencrypt`: plaintext files, rotations, changes of method, and what it leaves
//! alone.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::{ROOT, get, guard_data_keys, ls, put};

/// `kura [GLOBAL…] --output json fs reencrypt --root root [EXTRA…]`, which must succeed:
/// its summary and its stderr (one line per file).
fn reencrypt(sb: &Sandbox, key: &Path, global: &[&str], extra: &[&str]) -> (Value, String) {
    let mut all = global.to_vec();
    all.extend_from_slice(&["--output", "json", "fs", "reencrypt", "--root", ROOT]);
    all.extend_from_slice(extra);
    let run = sb.kura(key, &all);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    (run.json(), run.stderr)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// (path, method, data key id) of every file, the id as a string or "-".
fn listing(sb: &Sandbox, key: &Path) -> Vec<(String, String, String)> {
    ls(sb, key)
        .into_iter()
        .map(|(p, m, id)| (p, m, id.as_str().unwrap_or("-").to_string()))
        .collect()
}

#[test]
fn a_plaintext_file_is_listed_as_plaintext_then_encrypted() {
    let (sb, key) = Sandbox::initialised();
    guard_data_keys(&sb, &key);
    put(&sb, &key, "enc.txt", &[], b"already encrypted").ok();
    let legacy = data(50_000, 9);
    fs::create_dir_all(sb.join(ROOT).join("old")).unwrap();
    fs::write(sb.join(ROOT).join("old/legacy.bin"), &legacy).unwrap();
    let id = active_id(&sb.status(&key));
    assert_eq!(
        listing(&sb, &key),
        [
            ("enc.txt".into(), "aes256-ctr".into(), id.clone()),
            ("old/legacy.bin".into(), "plaintext".into(), "-".into())
        ]
    );
    // A dry run changes nothing.
    let (j, _) = reencrypt(&sb, &key, &[], &["--dry-run"]);
    assert_eq!(j["dry_run"], true);
    assert_eq!(strings(&j["rewritten"]), ["old/legacy.bin"]);
    assert_eq!(
        fs::read(sb.join(ROOT).join("old/legacy.bin")).unwrap(),
        legacy
    );

    let (j, stderr) = reencrypt(&sb, &key, &[], &[]);
    assert_eq!(strings(&j["rewritten"]), ["old/legacy.bin"]);
    assert_eq!(j["already_current"], 1);
    assert_eq!(j["failed"].as_array().unwrap().len(), 0);
    assert_eq!(j["method"], "aes256-ctr");
    assert_eq!(j["data_key"], id.as_str());
    assert!(
        stderr.contains(&format!(
            "rewrote old/legacy.bin: plaintext -> aes256-ctr under data key {id}"
        )),
        "{stderr}"
    );
    let raw = fs::read(sb.join(ROOT).join("old/legacy.bin")).unwrap();
    assert_eq!(&raw[..4], b"KRFS");
    assert!(!raw.windows(32).any(|w| w == &legacy[..32]));
    assert_eq!(get(&sb, &key, "old/legacy.bin"), legacy);
    assert_eq!(listing(&sb, &key)[1].1, "aes256-ctr");

    // Nothing left to do; the text summary.
    let run = sb.kura(&key, &["fs", "reencrypt", "--root", ROOT]).ok();
    assert_eq!(
        run.stdout_str().trim(),
        format!(
            "rewrote 0 files, 2 already current, 0 skipped, 0 failed (method aes256-ctr, data key {id})"
        )
    );
}

#[test]
fn after_a_rotation_files_move_to_the_new_key_and_the_old_one_can_go() {
    let (sb, key) = Sandbox::initialised();
    let mut contents: Vec<(String, Vec<u8>, &str)> = (0..6)
        .map(|i| {
            let m = if i % 3 == 0 {
                "aes256-gcm-page"
            } else {
                "aes256-ctr"
            };
            (format!("d{}/f{i}", i % 2), data(i * 7000, i as u64), m)
        })
        .collect();
    contents.sort();
    for (p, c, m) in &contents {
        put(&sb, &key, p, &["--method", m], c).ok();
    }
    let old = active_id(&sb.status(&key));
    sb.kura(&key, &["rotate", "data-key"]).ok();
    let new = active_id(&sb.status(&key));
    guard_data_keys(&sb, &key);
    assert!(listing(&sb, &key).iter().all(|(_, _, id)| *id == old));
    // The old key is still used by the root's files: destroying it is refused.
    sb.kura(&key, &["destroy-data-key", &old, "--yes"])
        .fails_with(&[&format!(
            "6 files in the data root {}; re-encrypt them with `kura fs reencrypt --root",
            std::fs::canonicalize(sb.join(ROOT)).unwrap().display()
        )]);

    let (j, _) = reencrypt(&sb, &key, &[], &[]);
    assert_eq!(j["rewritten"].as_array().unwrap().len(), 6);
    assert_eq!(j["data_key"], new.as_str());
    for ((p, m, id), (path, content, method)) in listing(&sb, &key).iter().zip(&contents) {
        assert_eq!(
            (p, m.as_str(), id),
            (path, *method, &new),
            "page mode stays"
        );
        assert_eq!(get(&sb, &key, p), *content);
    }
    // The files and the dictionary no longer need the old key.
    let dump = sb
        .kura(&key, &["--output", "json", "fs", "dump", "--root", ROOT])
        .ok()
        .json();
    let keys = dump["data_keys"].as_array().unwrap();
    let old_entry = keys.iter().find(|k| k["id"] == old.as_str()).unwrap();
    assert_eq!(
        (&old_entry["state"], &old_entry["files"]),
        (&"decrypt-only".into(), &0.into())
    );
    sb.kura(&key, &["destroy-data-key", &old, "--yes"]).ok();
    for (p, c, _) in &contents {
        assert_eq!(get(&sb, &key, p), *c);
    }
    let (j, _) = reencrypt(&sb, &key, &[], &[]);
    assert_eq!(j["already_current"], 6);
}

#[test]
fn a_change_of_method_rewrites_files_but_page_mode_stays() {
    let (sb, key) = Sandbox::initialised();
    put(&sb, &key, "a.ctr", &[], &data(20_000, 1)).ok();
    put(
        &sb,
        &key,
        "b.page",
        &["--method", "aes256-gcm-page"],
        &data(20_000, 2),
    )
    .ok();
    fs::write(sb.join(ROOT).join("c.plain"), data(20_000, 3)).unwrap();
    for (method, want) in [
        ("sm4-ctr", ["sm4-ctr", "aes256-gcm-page", "sm4-ctr"]),
        ("aes256-gcm-page", ["aes256-gcm-page"; 3]),
        (
            "plaintext",
            ["aes256-gcm-page", "aes256-gcm-page", "aes256-gcm-page"],
        ),
    ] {
        let cfg = format!("{method}.toml");
        sb.write_file(
            &cfg,
            format!("[security.encryption]\ndata-encryption-method = \"{method}\"\n").as_bytes(),
            0o644,
        );
        let (j, _) = reencrypt(&sb, &key, &["--config", &cfg], &[]);
        assert_eq!(j["method"], method);
        let got: Vec<String> = listing(&sb, &key).into_iter().map(|(_, m, _)| m).collect();
        assert_eq!(got, want, "{method}: {j}");
        for (i, p) in ["a.ctr", "b.page", "c.plain"].iter().enumerate() {
            assert_eq!(get(&sb, &key, p), data(20_000, i as u64 + 1));
        }
    }
    // With plaintext configured, a CTR file is decrypted.
    put(
        &sb,
        &key,
        "d.ctr",
        &["--method", "aes128-ctr"],
        b"to be decrypted",
    )
    .ok();
    sb.write_file(
        "plain.toml",
        b"[security.encryption]\ndata-encryption-method = \"plaintext\"\n",
        0o644,
    );
    let (j, _) = reencrypt(&sb, &key, &["--config", "plain.toml"], &[]);
    assert!(
        strings(&j["rewritten"]).contains(&"d.ctr".to_string()),
        "{j}"
    );
    assert_eq!(
        fs::read(sb.join(ROOT).join("d.ctr")).unwrap(),
        b"to be decrypted"
    );
}

#[test]
fn redb_databases_and_temporary_files() {
    let (sb, key) = Sandbox::initialised();
    put(
        &sb,
        &key,
        "db",
        &["--method", "aes256-gcm-page"],
        &data(9000, 1),
    )
    .ok();
    fs::write(sb.join(ROOT).join("db.kura-head"), [7u8; 100]).unwrap();
    let mut plain_db = b"redb\x1a\x0a\xa9\x0d\x0a".to_vec();
    plain_db.extend(data(5000, 2));
    fs::write(sb.join(ROOT).join("plain.redb"), &plain_db).unwrap();
    // What a killed put of y leaves: a temporary file beside its target.
    fs::write(sb.join(ROOT).join(".y.kura-tmp"), b"partial").unwrap();
    put(&sb, &key, "x", &[], b"x").ok();
    let text = sb
        .kura(&key, &["fs", "ls", "--root", ROOT])
        .ok()
        .stdout_str();
    assert!(
        text.contains("temporary file of an interrupted put or reencrypt"),
        "{text}"
    );
    assert!(text.contains("(redb database in plaintext)"), "{text}");

    let (j, _) = reencrypt(&sb, &key, &[], &["--dry-run"]);
    assert_eq!(j["temporary_files_removed"], 0);
    assert!(sb.join(ROOT).join(".y.kura-tmp").exists());
    let old = active_id(&sb.status(&key));
    sb.kura(&key, &["rotate", "data-key"]).ok();
    let run = sb.kura(&key, &["fs", "reencrypt", "--root", ROOT]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let new = active_id(&sb.status(&key));
    assert_eq!(
        run.stdout_str().trim(),
        format!(
            "rewrote 1 file, 0 already current, 3 skipped, 0 failed (method aes256-ctr, data key {new}); \
             removed 1 temporary file of an interrupted run"
        )
    );
    for line in [
        format!(
            "skipped db: a redb database (its header slots in db.kura-head are sealed with its key): \
             copy it into a new database opened through kura-fs to move it off data key {old}"
        ),
        "skipped db.kura-head: header slots of the redb database db, kept with it".into(),
        "skipped plain.redb: a redb database in plaintext: copy it into a new database opened through kura-fs (RedbBackend)".into(),
        format!("rewrote x: aes256-ctr under data key {old} -> aes256-ctr under data key {new}"),
    ] {
        assert!(run.stderr.contains(&line), "{line:?} not in {}", run.stderr);
    }
    assert!(!sb.join(ROOT).join(".y.kura-tmp").exists());
    assert_eq!(
        fs::read(sb.join(ROOT).join("db.kura-head")).unwrap(),
        [7u8; 100]
    );
    assert_eq!(
        fs::read(sb.join(ROOT).join("plain.redb")).unwrap(),
        plain_db
    );
    assert_eq!(get(&sb, &key, "db"), data(9000, 1));
}

#[test]
fn page_files_in_the_older_layout_are_read_then_moved_to_the_aligned_one() {
    use kura_fs::page::{Layout, PAGE, PageCipher, UNIT};
    use kura_fs::{FileInfo, Method};

    let (sb, key) = Sandbox::initialised();
    let want = data(3 * PAGE + 1000, 7);
    put(
        &sb,
        &key,
        "old.page",
        &["--method", "aes256-gcm-page"],
        &want,
    )
    .ok();
    let path = sb.join(ROOT).join("old.page");
    let now = fs::read(&path).unwrap();
    assert_eq!(now[4], 2, "page-mode files are created in layout 2");
    // The same file as the older layout had it: version 1, a 4128-byte unit per page.
    let info = FileInfo {
        method: Method::Aes256GcmPage,
        key_id: u64::from_be_bytes(now[8..16].try_into().unwrap()),
        salt: now[16..32].try_into().unwrap(),
    };
    let k = crate::keyring(&sb.data_dir(), &key, "aes256-ctr");
    let c = PageCipher::new(&crate::file_key(&k, &info), info.salt, Layout::V1).unwrap();
    let mut old = now[..32].to_vec();
    old[4] = 1;
    for (i, page) in want.chunks(PAGE).enumerate() {
        let mut unit = [0u8; UNIT];
        c.seal(i as u64, page, &mut unit).unwrap();
        old.extend_from_slice(&unit);
    }
    fs::write(&path, &old).unwrap();
    assert_eq!(get(&sb, &key, "old.page"), want);

    let (j, stderr) = reencrypt(&sb, &key, &[], &[]);
    assert_eq!(strings(&j["rewritten"]), ["old.page"], "{j}");
    assert!(stderr.contains("(page layout 1)"), "{stderr}");
    let now = fs::read(&path).unwrap();
    assert_eq!((now[4], now[5]), (2, Method::Aes256GcmPage.code()));
    assert_eq!(get(&sb, &key, "old.page"), want);
    let (j, _) = reencrypt(&sb, &key, &[], &[]);
    assert_eq!(j["already_current"], 1, "{j}");
}
