#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura backup` and `kura restore` to and from files: a backup, a wiped keystore and a
//! restore leave everything encrypted before readable, under decrypt-only keys, a new KEK
//! and a new active data key; a wrong master key, a changed backup and an initialised
//! keystore are refused with clear errors; `--force` backs up what it replaces first.

mod common;
mod server;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Sandbox, data_keys};

/// The data key id a stream was encrypted under (bytes 8..16 of its header).
fn stream_key_id(ct: &[u8]) -> String {
    u64::from_be_bytes(ct[8..16].try_into().unwrap()).to_string()
}

fn wipe(data: &Path) {
    fs::remove_dir_all(data).unwrap();
    assert!(!data.exists());
}

#[test]
fn backup_wipe_restore_and_everything_decrypts() {
    let (sb, key) = Sandbox::initialised();
    let ctx = ["--context", "app=orders"];
    let enc = |plain: &[u8]| {
        let mut args = vec!["encrypt"];
        args.extend(ctx);
        sb.kura_stdin(&key, &args, plain).ok().stdout
    };
    let ct1 = enc(b"first stream");
    let sealed = sb
        .kura_stdin(
            &key,
            &["seal", "--context", "app=orders"],
            b"a sealed value",
        )
        .ok()
        .stdout;
    sb.kura(&key, &["rotate", "data-key"]).ok();
    let ct2 = enc(b"second stream");
    let before = sb.status(&key);
    assert_eq!(data_keys(&before).len(), 2);

    let run = sb.kura(&key, &["backup", "--out", "keys.krb"]).ok();
    let text = run.stdout_str();
    assert!(
        text.contains("backed up the keystore to keys.krb"),
        "{text}"
    );
    assert!(
        text.contains("1 active, 1 decrypt-only, 0 destroyed"),
        "{text}"
    );
    assert!(
        text.contains(before["master_key"]["id"].as_str().unwrap()),
        "names the master key: {text}"
    );
    let mode = fs::metadata(sb.join("keys.krb"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let j = sb
        .kura(&key, &["--output", "json", "backup", "--out", "keys2.krb"])
        .ok()
        .json();
    assert_eq!(j["location"], "keys2.krb");
    assert_eq!(j["master_key_id"], before["master_key"]["id"]);
    assert_eq!(j["kek_id"], before["kek"]["id"]);
    assert_eq!(j["data_keys"]["active"], 1);
    assert_eq!(j["data_keys"]["decrypt_only"], 1);
    assert_eq!(j["keks"], 1);
    assert_eq!(j["format_version"], 1);

    wipe(&sb.data_dir());
    sb.kura(&key, &["status"]).fails_with(&["not initialised"]);

    let run = sb.kura(&key, &["restore", "keys.krb"]).ok();
    let text = run.stdout_str();
    assert!(text.contains("2 decrypt-only, 0 destroyed"), "{text}");
    assert!(text.contains("is not carried over"), "{text}");

    let dec = |ct: &[u8]| {
        let mut args = vec!["decrypt"];
        args.extend(ctx);
        sb.kura_stdin(&key, &args, ct).ok().stdout
    };
    assert_eq!(dec(&ct1), b"first stream");
    assert_eq!(dec(&ct2), b"second stream");
    let opened = sb
        .kura_stdin(&key, &["open", "--context", "app=orders"], &sealed)
        .ok()
        .stdout;
    assert_eq!(opened, b"a sealed value");

    let after = sb.status(&key);
    assert_ne!(after["kek"]["id"], before["kek"]["id"], "a new KEK");
    assert_eq!(after["keks"].as_array().unwrap().len(), 1);
    let old: Vec<String> = data_keys(&before).into_iter().map(|(id, _)| id).collect();
    let mut active = Vec::new();
    for (id, state) in data_keys(&after) {
        if old.contains(&id) {
            assert_eq!(state, "decrypt-only", "restored key {id}");
        } else {
            assert_eq!(state, "active");
            active.push(id);
        }
    }
    assert_eq!(active.len(), 1, "one new active data key: {after}");
    let ct3 = enc(b"after the restore");
    assert_eq!(stream_key_id(&ct3), active[0], "new data uses the new key");
    assert_eq!(dec(&ct3), b"after the restore");
}

#[test]
fn a_wrong_master_key_is_refused_naming_both() {
    let (sb, key) = Sandbox::initialised();
    sb.kura(&key, &["backup", "--out", "b.krb"]).ok();
    let recorded = sb.status(&key)["master_key"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = sb.keygen("other.key");
    let configured = {
        let st = sb.exec(
            sb.cmd()
                .args(["--data-dir", "other-data", "--master-key-file"])
                .arg(&other)
                .args(["init", "--output", "json"]),
        );
        st.ok().json()["master_key"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    wipe(&sb.data_dir());
    sb.kura(&other, &["restore", "b.krb"]).fails_with(&[
        "cannot restore b.krb",
        &recorded,
        &configured,
        "master key",
    ]);
    assert!(
        !sb.data_dir().join("keystore.db").exists(),
        "nothing is created when the backup cannot be opened"
    );
}

#[test]
fn a_changed_backup_is_refused() {
    let (sb, key) = Sandbox::initialised();
    sb.kura(&key, &["backup", "--out", "b.krb"]).ok();
    let mut bytes = fs::read(sb.join("b.krb")).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x10;
    sb.write_file("changed.krb", &bytes, 0o600);
    wipe(&sb.data_dir());
    sb.kura(&key, &["restore", "changed.krb"])
        .fails_with(&["changed.krb", "the backup is damaged or was changed"]);
    sb.kura(&key, &["restore", "missing.krb"])
        .fails_with(&["cannot read the backup missing.krb"]);
    // The intact one restores.
    sb.kura(&key, &["restore", "b.krb"]).ok();
}

#[test]
fn an_initialised_keystore_is_replaced_only_with_force_after_a_backup() {
    let (sb, key) = Sandbox::initialised();
    let before = sb.status(&key);
    sb.kura(&key, &["backup", "--out", "b.krb"]).ok();
    sb.kura(&key, &["backup", "--out", "b.krb"])
        .fails_with(&["b.krb already exists", "--force"]);
    sb.kura(&key, &["backup", "--out", "b.krb", "--force"]).ok();
    // Changes made after the backup: a data key it does not hold, a new KEK.
    sb.kura(&key, &["rotate", "data-key"]).ok();
    let ct = sb.kura_stdin(&key, &["encrypt"], b"after").ok().stdout;
    sb.kura(&key, &["rotate", "kek"]).ok();
    let current = sb.status(&key);

    sb.kura(&key, &["restore", "b.krb"])
        .fails_with(&["already initialised", "--force"]);
    assert_eq!(sb.status(&key)["kek"], current["kek"], "nothing changed");

    let j = sb
        .kura(&key, &["--output", "json", "restore", "b.krb", "--force"])
        .ok()
        .json();
    let safety = j["previous_keystore_backup"].as_str().unwrap().to_string();
    assert!(safety.contains("keystore-before-restore-"), "{safety}");
    let after = sb.status(&key);
    assert_ne!(after["kek"]["id"], before["kek"]["id"]);
    assert_ne!(after["kek"]["id"], current["kek"]["id"]);
    // The stream sealed after the backup used a key the backup does not have …
    sb.kura_stdin(&key, &["decrypt"], &ct)
        .fails_with(&["unknown data key"]);
    // … and the safety backup brings it back.
    sb.kura(&key, &["restore", &safety, "--force"]).ok();
    assert_eq!(sb.kura_stdin(&key, &["decrypt"], &ct).ok().stdout, b"after");
}

#[test]
fn a_kms_key_ciphertext_decrypts_after_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let s = server::Server::start_in(&data);
    let script = format!(
        "{}\n{}",
        server::PRELUDE,
        r#"
kid = kms.create_key(Description="backed up")["KeyMetadata"]["KeyId"]
kms.create_alias(AliasName="alias/backed-up", TargetKeyId=kid)
ct = kms.encrypt(KeyId=kid, Plaintext=b"kms secret", EncryptionContext={"a": "b"})["CiphertextBlob"]
open(os.environ["CT"], "wb").write(ct)
print("OK")
"#
    );
    let ct_path = dir.path().join("kms.ct");
    let env = server::py();
    let mut c = env.command(env.python());
    kura_testkit::with_aws_credentials(&mut c, &s.access_key_id, &s.secret, server::REGION);
    c.env("ENDPOINT", &s.endpoint)
        .env("CT", &ct_path)
        .arg("-c")
        .arg(&script);
    assert!(server::ok(&c.output().unwrap()).contains("OK"));
    assert!(s.stop().success());

    let backup = dir.path().join("kms.krb");
    let out = server::kura(&data)
        .args(["backup", "--out"])
        .arg(&backup)
        .output()
        .unwrap();
    let text = server::ok(&out);
    assert!(text.contains("kms-key"), "{text}");
    for f in ["keystore.db", "keystore.db-wal", "keystore.db-shm"] {
        let _ = fs::remove_file(data.join(f));
    }
    server::ok(
        &server::kura(&data)
            .arg("restore")
            .arg(&backup)
            .output()
            .unwrap(),
    );

    let s = server::Server::start_in(&data);
    let check = format!(
        "{}\n{}",
        server::PRELUDE,
        r#"
ct = open(os.environ["CT"], "rb").read()
pt = kms.decrypt(CiphertextBlob=ct, EncryptionContext={"a": "b"})["Plaintext"]
assert pt == b"kms secret", pt
assert kms.describe_key(KeyId="alias/backed-up")["KeyMetadata"]["Description"] == "backed up"
new = kms.encrypt(KeyId="alias/backed-up", Plaintext=b"x")["CiphertextBlob"]
assert kms.decrypt(CiphertextBlob=new)["Plaintext"] == b"x"
print("OK")
"#
    );
    let mut c = env.command(env.python());
    kura_testkit::with_aws_credentials(&mut c, &s.access_key_id, &s.secret, server::REGION);
    c.env("ENDPOINT", &s.endpoint)
        .env("CT", &ct_path)
        .arg("-c")
        .arg(&check);
    assert!(server::ok(&c.output().unwrap()).contains("OK"));
    assert!(s.stop().success());
}
