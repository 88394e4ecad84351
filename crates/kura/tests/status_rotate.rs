#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura status`, `kura rotate` (data key, KEK, master key) and `kura data-key destroy`.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use serde_json::Value;

const STATES: [&str; 3] = ["active", "decrypt-only", "destroyed"];

/// Asserts the shape of a status document and returns it.
#[track_caller]
fn check_shape(st: &Value) {
    assert!(kek_id(st).parse::<u64>().is_ok(), "{st:#}");
    assert_eq!(st["kek"]["state"], "active");
    assert!(
        st["master_key"]["id"]
            .as_str()
            .unwrap()
            .starts_with("local:")
    );
    let keks = st["keks"].as_array().unwrap();
    assert_eq!(
        keks.iter().filter(|k| k["state"] == "active").count(),
        1,
        "{st:#}"
    );
    for (id, state) in data_keys(st) {
        assert!(id.parse::<u64>().is_ok(), "{id}");
        assert!(STATES.contains(&state.as_str()), "{state}");
    }
    active_id(st);
}

fn rotate_data_key(sb: &Sandbox, key: &std::path::Path) -> String {
    let j = sb
        .kura(key, &["--output", "json", "rotate", "data-key"])
        .ok()
        .json();
    assert_eq!(j["rotated"], "data-key");
    j["id"].as_str().unwrap().to_string()
}

fn status_json_and_text() {
    let (sb, key) = Sandbox::initialised();
    let st = sb.status(&key);
    check_shape(&st);
    assert_eq!(st["previous_master_key"], Value::Null);
    assert_eq!(st["kek_rewrapped_from"], Value::Null);
    assert_eq!(st["keks"].as_array().unwrap().len(), 1);
    let dk = active_id(&st);

    let text = sb.kura(&key, &["status"]).ok().stdout_str();
    let master_id = st["master_key"]["id"].as_str().unwrap();
    for needle in [
        format!("keystore:            {}", st["keystore"].as_str().unwrap()),
        "(generation 1)".to_string(),
        format!("master key:          {master_id} (file {})", key.display()),
        format!("KEK:                 {}", kek_id(&st)),
        format!("wrapped by {master_id}"),
        "method:              aes256-ctr".to_string(),
        "rotation period:     168h".to_string(),
        "next rotation due:".to_string(),
        "data keys:".to_string(),
        "STATE".to_string(),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in\n{text}");
    }
    let row = text.lines().find(|l| l.contains(&dk)).unwrap();
    assert!(
        row.contains("active") && row.contains("aes256-ctr"),
        "{row}"
    );
    assert!(!text.contains("previous master key"), "{text}");

    // Status is read-only.
    assert_eq!(sb.status(&key)["generation"], st["generation"]);
}

fn rotate_data_key_leaves_exactly_one_active() {
    let (sb, key) = Sandbox::initialised();
    let st0 = sb.status(&key);
    let first = active_id(&st0);

    let run = sb.kura(&key, &["rotate", "data-key"]).ok();
    let st1 = sb.status(&key);
    let second = active_id(&st1);
    assert_ne!(first, second);
    assert_eq!(
        run.stdout_str().trim(),
        format!("data key {second} is active; data key {first} is now decrypt-only")
    );
    assert_eq!(
        data_keys(&st1),
        [
            (first.clone(), "decrypt-only".to_string()),
            (second.clone(), "active".to_string())
        ]
    );
    let old = &st1["data_keys"][0];
    assert!(old["retired_at"].is_string(), "{old:#}");
    assert_eq!(kek_id(&st1), kek_id(&st0));

    let third = rotate_data_key(&sb, &key);
    let st2 = sb.status(&key);
    check_shape(&st2);
    assert_eq!(active_id(&st2), third);
    let states: Vec<String> = data_keys(&st2).into_iter().map(|(_, s)| s).collect();
    assert_eq!(states, ["decrypt-only", "decrypt-only", "active"]);
    let text = sb.kura(&key, &["status"]).ok().stdout_str();
    assert_eq!(text.matches("decrypt-only").count(), 2, "{text}");
}

fn rotate_kek_keeps_data_keys() {
    let (sb, key) = Sandbox::initialised();
    rotate_data_key(&sb, &key);
    let before = sb.status(&key);

    let run = sb.kura(&key, &["rotate", "kek"]).ok();
    let after = sb.status(&key);
    check_shape(&after);
    let (old, new) = (kek_id(&before), kek_id(&after));
    assert_ne!(old, new);
    assert_eq!(
        run.stdout_str().trim(),
        format!("KEK {new} is active; 2 data keys re-wrapped under it; KEK {old} is retired")
    );
    assert_eq!(data_keys(&after), data_keys(&before));
    let keks = after["keks"].as_array().unwrap();
    assert_eq!(keks.len(), 2);
    let retired = keks.iter().find(|k| k["id"] == old.as_str()).unwrap();
    assert_eq!(retired["state"], "retired");
    assert!(retired["retired_at"].is_string());
    assert_eq!(after["kek"]["master_key_id"], before["master_key"]["id"]);

    let j = sb
        .kura(&key, &["--output", "json", "rotate", "kek"])
        .ok()
        .json();
    assert_eq!(j["rotated"], "kek");
    let last = sb.status(&key);
    assert_eq!(j["id"], kek_id(&last));
    assert_eq!(data_keys(&last), data_keys(&before));
}

fn rotate_master_key_with_previous_flag() {
    let (sb, old, new, st0) = Sandbox::two_keys();
    let old_id = st0["master_key"]["id"].as_str().unwrap().to_string();
    let kek = kek_id(&st0);

    let run = sb.rotate_master_key(&new, "old.key").ok();
    let st1 = sb.status(&new);
    let new_id = st1["master_key"]["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, old_id);
    let msg = run.stdout_str();
    assert!(msg.contains("re-wrapped"), "{msg}");
    assert!(
        msg.contains(&format!(
            "KEK {kek} re-wrapped from master key {old_id} to master key {new_id}"
        )),
        "{msg}"
    );

    // Only the new key is needed from now on; the KEK and data keys are the same.
    check_shape(&st1);
    assert_eq!(kek_id(&st1), kek);
    assert_eq!(st1["kek"]["master_key_id"], new_id.as_str());
    assert_eq!(data_keys(&st1), data_keys(&st0));
    // The old key alone no longer opens the keystore.
    sb.kura(&old, &["status"])
        .fails_with(&["wrong master key", &format!("KEK {kek}"), &new_id]);

    // Running it again has nothing to do.
    let again = sb.kura(&new, &["rotate", "master-key"]).ok().stdout_str();
    assert!(again.contains("nothing to do"), "{again}");
}

fn rotate_master_key_with_previous_from_environment() {
    let (sb, old, new, st0) = Sandbox::two_keys();
    let j = sb
        .exec(
            sb.keyed(&new)
                .env("KURA_PREVIOUS_MASTER_KEY_FILE", &old)
                .args(["--output", "json", "rotate", "master-key"]),
        )
        .ok()
        .json();
    assert_eq!(j["rotated"], "master-key");
    assert!(j["message"].as_str().unwrap().contains("re-wrapped"));
    let st1 = sb.status(&new);
    assert_eq!(j["id"], st1["master_key"]["id"]);
    assert_eq!(kek_id(&st1), kek_id(&st0));

    // And back again, with the previous key itself in KURA_PREVIOUS_MASTER_KEY_ENV.
    let b64 = STANDARD.encode(read_key(&new));
    let msg = sb
        .exec(
            sb.keyed(&old)
                .env("KURA_PREVIOUS_MASTER_KEY_ENV", b64)
                .args(["rotate", "master-key"]),
        )
        .ok()
        .stdout_str();
    assert!(msg.contains("re-wrapped"), "{msg}");
    assert_eq!(sb.status(&old)["master_key"]["id"], st0["master_key"]["id"]);
}

fn any_command_with_a_previous_key_rewraps_and_says_so() {
    let (sb, old, new, st0) = Sandbox::two_keys();
    let text = sb
        .kura(&new, &["--previous-master-key-file", "old.key", "status"])
        .ok()
        .stdout_str();
    let old_id = st0["master_key"]["id"].as_str().unwrap();
    assert!(
        text.contains(&format!("KEK re-wrapped from {old_id} just now")),
        "{text}"
    );
    assert!(text.contains("previous master key: "), "{text}");
    let st = sb.status(&new);
    assert_eq!(kek_id(&st), kek_id(&st0));
    // The previous key is no longer needed.
    sb.kura(&old, &["status"]).fails_with(&["wrong master key"]);
}

fn rotate_master_key_without_previous_fails() {
    let (sb, _old, new, st0) = Sandbox::two_keys();
    let kek = kek_id(&st0);
    sb.kura(&new, &["rotate", "master-key"]).fails_with(&[
        "wrong master key",
        &format!("KEK {kek}"),
        "previous-master-key",
    ]);
    // A missing previous key file is reported as such.
    sb.rotate_master_key(&new, "gone.key").fails_with(&[
        "the previous master key",
        "Missing backing keystore:",
        "gone.key",
    ]);
    let st = sb.status(&sb.join("old.key"));
    assert_eq!(st["generation"], st0["generation"]);
    assert_eq!(st["kek"]["master_key_id"], st0["master_key"]["id"]);
}

fn destroy_requires_yes_and_a_decrypt_only_key() {
    let (sb, key) = Sandbox::initialised();
    let first = active_id(&sb.status(&key));
    sb.kura(&key, &["data-key", "destroy", &first, "--yes"])
        .fails_with(&[
            &format!("data key {first} is active"),
            "kura rotate data-key",
        ]);
    let second = rotate_data_key(&sb, &key);
    let before = sb.status(&key);

    sb.kura(&key, &["data-key", "destroy", &first])
        .fails_with(&[
            &format!("destroying data key {first}"),
            "unreadable forever",
            "--yes",
        ]);
    sb.kura(&key, &["data-key", "destroy", "12345", "--yes"])
        .fails_with(&["unknown data key id 12345"]);
    sb.kura(&key, &["data-key", "destroy", &second, "--yes"])
        .fails_with(&[&format!("data key {second} is active")]);
    let unchanged = sb.status(&key);
    assert_eq!(unchanged["generation"], before["generation"]);
    assert_eq!(data_keys(&unchanged), data_keys(&before));

    let run = sb
        .kura(&key, &["data-key", "destroy", &first, "--yes"])
        .ok();
    assert_eq!(
        run.stdout_str().trim(),
        format!("data key {first} is destroyed")
    );
    let st = sb.status(&key);
    check_shape(&st);
    assert_eq!(
        data_keys(&st),
        [
            (first.clone(), "destroyed".to_string()),
            (second.clone(), "active".to_string())
        ]
    );
    assert!(st["data_keys"][0]["destroyed_at"].is_string());
    let text = sb.kura(&key, &["status"]).ok().stdout_str();
    let row = text.lines().find(|l| l.contains(&first)).unwrap();
    assert!(row.contains("destroyed"), "{row}");

    // Destroying it again is harmless; a KEK rotation leaves it destroyed.
    let j = sb
        .kura(
            &key,
            &["--output", "json", "data-key", "destroy", &first, "--yes"],
        )
        .ok()
        .json();
    assert_eq!(j["rotated"], "destroyed");
    assert_eq!(j["id"], first.as_str());
    sb.kura(&key, &["rotate", "kek"]).ok();
    assert_eq!(data_keys(&sb.status(&key)), data_keys(&st));
}

fn data_under_a_destroyed_key_cannot_be_decrypted() {
    let (sb, key) = Sandbox::initialised();
    let first = active_id(&sb.status(&key));
    sb.plain("plain.txt", &data(5000, 1));
    sb.kura(&key, &["encrypt", "plain.txt", "-o", "old.krs"])
        .ok();
    rotate_data_key(&sb, &key);
    sb.kura(&key, &["encrypt", "plain.txt", "-o", "new.krs"])
        .ok();
    sb.kura(&key, &["data-key", "destroy", &first, "--yes"])
        .ok();

    sb.kura(&key, &["decrypt", "old.krs", "-o", "old.txt"])
        .fails_with(&[
            "cannot decrypt old.krs",
            &format!("data key {first} was destroyed"),
        ]);
    let stdin = std::fs::read(sb.join("old.krs")).unwrap();
    sb.kura_stdin(&key, &["decrypt"], &stdin)
        .fails_with(&["cannot decrypt stdin", "was destroyed"]);
    assert!(!sb.join("old.txt").exists());
    // Data under the other key is unaffected.
    let out = sb.kura(&key, &["decrypt", "new.krs"]).ok();
    assert_eq!(out.stdout, data(5000, 1));
    assert_eq!(
        sb.files(),
        ["data", "master.key", "new.krs", "old.krs", "plain.txt"]
    );
}

fn data_key_rotates_on_use_when_due_or_when_the_method_changes() {
    let (sb, key) = Sandbox::initialised();
    let first = active_id(&sb.status(&key));
    // Another method in the configuration: the next encryption makes a data key for it.
    sb.write_file(
        "sm4.toml",
        b"[security.encryption]\ndata-encryption-method = \"sm4-ctr\"\n",
        0o644,
    );
    let st = sb
        .kura(
            &key,
            &["--config", "sm4.toml", "--output", "json", "status"],
        )
        .ok()
        .json();
    assert_eq!(active_id(&st), first, "status alone does not rotate");
    let ct = sb
        .kura_stdin(&key, &["--config", "sm4.toml", "encrypt"], b"x")
        .ok()
        .stdout;
    let st = sb.status(&key);
    let second = active_id(&st);
    assert_ne!(second, first);
    assert_eq!(st["data_keys"][1]["method"], "sm4-ctr");
    assert_eq!(
        u64::from_be_bytes(ct[8..16].try_into().unwrap()).to_string(),
        second
    );

    // A one-second rotation period: the key is rotated on the first use after it.
    sb.write_file(
        "fast.toml",
        b"[security.encryption]\ndata-encryption-method = \"sm4-ctr\"\ndata-key-rotation-period = \"1s\"\n",
        0o644,
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    sb.kura_stdin(&key, &["--config", "fast.toml", "encrypt"], b"x")
        .ok();
    let st = sb.status(&key);
    let third = active_id(&st);
    assert_ne!(third, second);
    let states: Vec<String> = data_keys(&st).into_iter().map(|(_, s)| s).collect();
    assert_eq!(states, ["decrypt-only", "decrypt-only", "active"]);
}

on_both_backends!(
    status_json_and_text,
    rotate_data_key_leaves_exactly_one_active,
    rotate_kek_keeps_data_keys,
    rotate_master_key_with_previous_flag,
    rotate_master_key_with_previous_from_environment,
    any_command_with_a_previous_key_rewraps_and_says_so,
    rotate_master_key_without_previous_fails,
    destroy_requires_yes_and_a_decrypt_only_key,
    data_under_a_destroyed_key_cannot_be_decrypted,
    data_key_rotates_on_use_when_due_or_when_the_method_changes,
);
