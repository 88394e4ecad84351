#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura init` with the master key from each source (flag, environment, TOML file), the
//! order in which they override each other, and configuration errors.

mod common;

use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use serde_json::Value;

fn keystore(sb: &Sandbox, dir: &str) -> String {
    sb.join(dir).join("keystore.db").display().to_string()
}

/// Writes the configuration file `name` (mode 0644) holding `toml`, then runs
/// `kura --config NAME init` with `key`.
fn init_with_config(sb: &Sandbox, key: &Path, name: &str, toml: &[u8]) -> Run {
    sb.write_file(name, toml, 0o644);
    sb.kura(key, &["--config", name, "init"])
}

#[test]
fn init_with_master_key_file_flag() {
    let (sb, key) = Sandbox::with_key();
    let run = sb.kura(&key, &["init"]).ok();
    let out = run.stdout_str();
    assert!(out.starts_with("initialised the keystore at "), "{out}");
    assert!(out.contains(&keystore(&sb, "data")), "{out}");
    assert!(out.contains("(active)"), "{out}");

    let st = sb.status(&key);
    assert_eq!(st["keystore"], keystore(&sb, "data"));
    assert_eq!(
        st["master_key"]["source"],
        format!("file {}", key.display())
    );
    assert_eq!(st["generation"], 1);
    assert_eq!(st["data_encryption_method"], "aes256-ctr");
    assert_eq!(st["data_key_rotation_period"], "168h");
    assert_eq!(data_keys(&st).len(), 1);
    assert_eq!(active_id(&st), out_id(&out, "data key:"));
    assert_eq!(kek_id(&st), out_id(&out, "KEK:"));
    assert_eq!(mode(&sb.data_dir()), 0o700);
    assert_eq!(mode(&sb.data_dir().join("keystore.db")), 0o600);
}

/// The first word after `label` in text output.
fn out_id(out: &str, label: &str) -> String {
    let line = out.lines().find(|l| l.starts_with(label)).unwrap();
    line[label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn init_with_json_output() {
    let (sb, key) = Sandbox::with_key();
    let j = sb.kura(&key, &["--output", "json", "init"]).ok().json();
    assert_eq!(j["generation"], 1);
    assert_eq!(j["kek"]["state"], "active");
    assert_eq!(j["data_keys"][0]["state"], "active");
    assert_eq!(j["master_key"]["id"], j["kek"]["master_key_id"]);
}

#[test]
fn init_with_env_master_key_file_and_default_data_dir() {
    let (sb, key) = Sandbox::with_key();
    sb.exec(
        sb.cmd()
            .env("KURA_MASTER_KEY_FILE", "master.key")
            .arg("init"),
    )
    .ok();
    // The default data directory is kura-data in the working directory.
    assert!(sb.join("kura-data/keystore.db").is_file());
    let st = sb
        .exec(
            sb.cmd()
                .env("KURA_MASTER_KEY_FILE", &key)
                .args(["--output", "json", "status"]),
        )
        .ok()
        .json();
    assert_eq!(st["keystore"], "kura-data/keystore.db");
    assert_eq!(
        st["master_key"]["source"],
        format!("file {}", key.display())
    );
}

#[test]
fn init_with_env_master_key_base64() {
    let sb = Sandbox::new();
    // What `openssl rand -base64 32` prints.
    let key = random_key();
    sb.secret(&key);
    let b64 = STANDARD.encode(&key);
    let with_env = |args: &[&str]| {
        sb.exec(
            sb.cmd()
                .env("KURA_MASTER_KEY_ENV", &b64)
                .env("KURA_DATA_DIR", "data")
                .args(args),
        )
    };
    with_env(&["init"]).ok();
    let st = with_env(&["--output", "json", "status"]).ok().json();
    assert_eq!(
        st["master_key"]["source"],
        "environment variable KURA_MASTER_KEY_ENV"
    );
    assert_eq!(st["keystore"], "data/keystore.db");

    // The same key in a hex file has the same id and opens the keystore.
    let file = sb.key_file("same.key", &key);
    let st2 = sb.status(&file);
    assert_eq!(st2["master_key"]["id"], st["master_key"]["id"]);
    assert_eq!(kek_id(&st2), kek_id(&st));

    // With a trailing newline, as `echo` would leave it.
    let nl = format!("{b64}\n");
    sb.exec(
        sb.cmd()
            .env("KURA_MASTER_KEY_ENV", &nl)
            .env("KURA_DATA_DIR", "data")
            .arg("status"),
    )
    .ok();
}

#[test]
fn init_with_toml_config() {
    let (sb, key) = Sandbox::with_key();
    let config = format!(
        "[storage]\ndata-dir = \"from-config\"\n\n\
         [security.encryption]\ndata-encryption-method = \"sm4-ctr\"\ndata-key-rotation-period = \"24h\"\n\n\
         [security.encryption.master-key]\ntype = \"file\"\npath = \"{}\"\n",
        key.display()
    );
    sb.write_file("kura.toml", config.as_bytes(), 0o644);
    sb.run(&["--config", "kura.toml", "init"]).ok();
    let st = sb
        .run(&["--config", "kura.toml", "--output", "json", "status"])
        .ok()
        .json();
    assert_eq!(st["keystore"], "from-config/keystore.db");
    assert_eq!(
        st["master_key"]["source"],
        format!("file {}", key.display())
    );
    assert_eq!(st["data_encryption_method"], "sm4-ctr");
    assert_eq!(st["data_key_rotation_period"], "24h");
    assert_eq!(st["data_keys"][0]["method"], "sm4-ctr");

    // KURA_CONFIG names the same file.
    let st = sb
        .exec(
            sb.cmd()
                .env("KURA_CONFIG", "kura.toml")
                .args(["--output", "json", "status"]),
        )
        .ok()
        .json();
    assert_eq!(st["data_encryption_method"], "sm4-ctr");
    // --config wins over KURA_CONFIG; an empty KURA_CONFIG counts as unset.
    sb.write_file(
        "other.toml",
        b"[storage]\ndata-dir = \"elsewhere\"\n",
        0o644,
    );
    let st = sb
        .exec(sb.cmd().env("KURA_CONFIG", "other.toml").args([
            "--config",
            "kura.toml",
            "--output",
            "json",
            "status",
        ]))
        .ok()
        .json();
    assert_eq!(st["keystore"], "from-config/keystore.db");
    let st = sb
        .exec(
            sb.cmd()
                .env("KURA_CONFIG", "")
                .env("KURA_MASTER_KEY_FILE", &key)
                .args(["--output", "json", "--data-dir", "from-config", "status"]),
        )
        .ok()
        .json();
    assert_eq!(st["data_encryption_method"], "aes256-ctr");
    sb.exec(
        sb.cmd()
            .env("KURA_CONFIG", "")
            .args(["keygen", "--out", "x.key"]),
    )
    .ok();
    sb.secret(&read_key(&sb.join("x.key")));
    assert!(!sb.join("elsewhere").exists());

    // A master key in an environment variable named by the file.
    let env_key = random_key();
    sb.secret(&env_key);
    sb.write_file(
        "env.toml",
        b"[storage]\ndata-dir = \"env-store\"\n[security.encryption.master-key]\ntype = \"env\"\nvariable = \"MY_KURA_KEY\"\n",
        0o644,
    );
    sb.exec(
        sb.cmd()
            .env("MY_KURA_KEY", STANDARD.encode(&env_key))
            .args(["--config", "env.toml", "init"]),
    )
    .ok();
    sb.run(&["--config", "env.toml", "status"])
        .fails_with(&["Missing backing keystore:", "MY_KURA_KEY is not set"]);
}

#[test]
fn tikv_key_file() {
    let sb = Sandbox::new();
    let key = sb.write_file("tikv.key", TIKV_KEY_FILE.as_bytes(), 0o400);
    sb.secret(&hex::decode(TIKV_KEY_FILE.trim_end()).unwrap());
    assert_eq!(fs::read(&key).unwrap().len(), 65);
    let st = sb.init(&key);
    assert_eq!(
        st["master_key"]["source"],
        format!("file {}", key.display())
    );
    // The key is the same whether read as hex from the file or as base64 from the
    // environment.
    let b64 = STANDARD.encode(hex::decode(TIKV_KEY_FILE.trim_end()).unwrap());
    let st2 = sb
        .exec(
            sb.cmd()
                .env("KURA_MASTER_KEY_ENV", b64)
                .arg("--data-dir")
                .arg(sb.data_dir())
                .args(["--output", "json", "status"]),
        )
        .ok()
        .json();
    assert_eq!(st2["master_key"]["id"], st["master_key"]["id"]);
    assert_eq!(st2["kek"]["id"], st["kek"]["id"]);
}

#[test]
fn flags_override_environment_override_file() {
    let sb = Sandbox::new();
    let (kf, ke, kg) = (
        sb.keygen("file.key"),
        sb.keygen("env.key"),
        sb.keygen("flag.key"),
    );
    let config = format!(
        "[storage]\ndata-dir = \"dir-file\"\n[security.encryption]\ndata-encryption-method = \"aes128-ctr\"\n\
         [security.encryption.master-key]\ntype = \"file\"\npath = \"{}\"\n",
        kf.display()
    );
    sb.write_file("kura.toml", config.as_bytes(), 0o644);
    let status = |env: bool, flags: bool, args: &[&str]| -> Value {
        let mut c = sb.cmd();
        c.args(["--config", "kura.toml", "--output", "json"]);
        if env {
            c.env("KURA_DATA_DIR", "dir-env")
                .env("KURA_MASTER_KEY_FILE", &ke);
        }
        if flags {
            c.args(["--data-dir", "dir-flag", "--master-key-file"])
                .arg(&kg);
        }
        c.args(args);
        let run = sb.exec(&mut c).ok();
        if args == ["init"] {
            Value::Null
        } else {
            run.json()
        }
    };
    for (env, flags, dir, key, init) in [
        (false, false, "dir-file", &kf, true),
        (true, false, "dir-env", &ke, true),
        (true, true, "dir-flag", &kg, true),
        (false, true, "dir-flag", &kg, false),
    ] {
        if init {
            status(env, flags, &["init"]);
        }
        let st = status(env, flags, &["status"]);
        assert_eq!(
            st["keystore"],
            format!("{dir}/keystore.db"),
            "{env} {flags}"
        );
        assert_eq!(
            st["master_key"]["source"],
            format!("file {}", key.display()),
            "{env} {flags}"
        );
        // The method only comes from the file.
        assert_eq!(st["data_encryption_method"], "aes128-ctr");
    }
    let mut dirs = sb.files();
    dirs.retain(|f| f.starts_with("dir-"));
    assert_eq!(dirs, ["dir-env", "dir-file", "dir-flag"]);
}

#[test]
fn second_init_is_refused() {
    let (sb, key) = Sandbox::initialised();
    let before = sb.status(&key);
    sb.kura(&key, &["init"])
        .fails_with(&["already initialised", "kura rotate"]);
    // Also with another master key: nothing changes.
    let other = sb.keygen("other.key");
    sb.kura(&other, &["init"])
        .fails_with(&["already initialised"]);
    let after = sb.status(&key);
    assert_eq!(after["generation"], before["generation"]);
    assert_eq!(kek_id(&after), kek_id(&before));
    assert_eq!(data_keys(&after), data_keys(&before));
}

#[test]
fn unknown_data_encryption_method() {
    let (sb, key) = Sandbox::with_key();
    init_with_config(
        &sb,
        &key,
        "bad.toml",
        b"[security.encryption]\ndata-encryption-method = \"rot13\"\n",
    )
    .fails_with(&[
        "invalid configuration",
        "data-encryption-method \"rot13\" is unknown",
        "aes256-ctr",
    ]);
    assert!(!sb.data_dir().exists());
}

#[test]
fn unknown_config_key() {
    let (sb, key) = Sandbox::with_key();
    init_with_config(
        &sb,
        &key,
        "bad.toml",
        b"[security.encryption]\nmaster-kee = 1\n",
    )
    .fails_with(&[
        "invalid configuration",
        "bad.toml",
        "unknown field `master-kee`",
    ]);
    init_with_config(&sb, &key, "bad2.toml", b"[storag]\ndata-dir = \"x\"\n")
        .fails_with(&["invalid configuration", "unknown field `storag`"]);
    assert!(!sb.data_dir().exists());
    assert!(!sb.join("x").exists());
}

#[test]
fn other_configuration_errors_write_nothing() {
    let (sb, key) = Sandbox::with_key();
    init_with_config(
        &sb,
        &key,
        "period.toml",
        b"[security.encryption]\ndata-key-rotation-period = \"soon\"\n",
    )
    .fails_with(&["data-key-rotation-period \"soon\" is not a duration"]);
    init_with_config(
        &sb,
        &key,
        "zero.toml",
        b"[security.encryption]\ndata-key-rotation-period = \"0s\"\n",
    )
    .fails_with(&["must be longer than zero"]);
    sb.kura(&key, &["--config", "missing.toml", "init"])
        .fails_with(&["cannot read the configuration file missing.toml"]);
    init_with_config(&sb, &key, "broken.toml", b"[security\n")
        .fails_with(&["invalid configuration", "broken.toml"]);

    // Both environment variables for the master key.
    sb.exec(
        sb.cmd()
            .env("KURA_MASTER_KEY_FILE", &key)
            .env("KURA_MASTER_KEY_ENV", STANDARD.encode(random_key()))
            .args(["--data-dir", "data", "init"]),
    )
    .fails_with(&["both KURA_MASTER_KEY_FILE and KURA_MASTER_KEY_ENV are set"]);
    assert!(!sb.data_dir().exists());
}

#[test]
fn a_master_key_pasted_into_the_config_is_not_echoed() {
    let sb = Sandbox::new();
    let key = random_key();
    sb.secret(&key);
    for text in [STANDARD.encode(&key), hex::encode(&key)] {
        let name = format!("pasted-{}.toml", text.len());
        sb.write_file(
            &name,
            format!("[security.encryption]\nmaster-key = \"{text}\"\n").as_bytes(),
            0o644,
        );
        // `exec` asserts that stderr does not contain the key.
        sb.run(&["--config", &name, "--data-dir", "data", "init"])
            .fails_with(&["invalid configuration", &name]);
    }
    assert!(!sb.data_dir().exists());
}

#[test]
fn init_dev_creates_then_reuses_a_keystore_and_key() {
    let sb = Sandbox::new();
    let run = sb.run(&["--data-dir", "dev", "init", "--dev"]).ok();
    let key = sb.join("dev/master.key");
    sb.secret(&read_key(&key));
    sb.check(&run);
    assert!(run.stdout_str().contains("created"), "{}", run.stdout_str());
    assert!(run.stdout_str().contains("for development only"));
    assert_eq!(fs::read(&key).unwrap().len(), 65);
    assert_eq!(mode(&key), 0o400);
    assert!(sb.join("dev/keystore.db").is_file());

    let st = sb
        .run(&["--data-dir", "dev", "--output", "json", "init", "--dev"])
        .ok()
        .json();
    let again = sb.run(&["--data-dir", "dev", "init", "--dev"]).ok();
    assert!(
        again.stdout_str().contains("reused"),
        "{}",
        again.stdout_str()
    );
    // The key it wrote opens the keystore like any other.
    let st2 = sb
        .run(&[
            "--data-dir",
            "dev",
            "--master-key-file",
            "dev/master.key",
            "--output",
            "json",
            "status",
        ])
        .ok()
        .json();
    assert_eq!(kek_id(&st2), kek_id(&st));
    assert_eq!(data_keys(&st2), data_keys(&st));
    assert_eq!(sb.files(), ["dev"]);
}
