#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Configuration to master key: a TOML file naming a key file, the checks on that file,
//! and the messages an operator meets when something is wrong.

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use common::*;
use kura_crypto::Key256;
use kura_keys::config::{self, MasterKeySpec, Method, Overrides};
use kura_keys::{Error, Keyring, KeyringSettings, LocalMasterKey, MasterKey, master_key};

/// The TiKV documentation's example key, as TiKV writes it.
const TIKV_KEY: &str = "3b5896b5be691006e0f71c3040a29495ddcad20b14aff61806940ebd780d3c62\n";

fn write_key(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn toml_for(key_path: &Path, data_dir: &Path) -> String {
    let q = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    format!(
        "[storage]\ndata-dir = {}\n\n[security.encryption]\ndata-encryption-method = \"aes128-ctr\"\n\
         data-key-rotation-period = \"24h\"\n\n[security.encryption.master-key]\ntype = \"file\"\npath = {}\n",
        q(data_dir),
        q(key_path)
    )
}

fn resolve_file(
    text: &str,
    env: &HashMap<&str, String>,
) -> Result<config::Settings, kura_keys::Error> {
    config::resolve(
        Some((Path::new("kura.toml"), text)),
        &|k| env.get(k).cloned(),
        &Overrides::default(),
    )
}

fn load_error(spec: Option<&MasterKeySpec>) -> Error {
    match master_key::load(spec) {
        Ok(_) => panic!("the master key loaded"),
        Err(e) => e,
    }
}

#[test]
fn toml_file_master_key_in_tikv_format() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = write_key(dir.path(), "master.key", TIKV_KEY, 0o400);
    let data_dir = dir.path().join("data");
    let settings = resolve_file(&toml_for(&key_path, &data_dir), &HashMap::new()).unwrap();
    assert_eq!(settings.data_dir, data_dir);
    assert_eq!(settings.keystore_path(), data_dir.join("keystore.db"));
    assert_eq!(settings.method, Method::Aes128Ctr);
    assert_eq!(settings.rotation_period, 24 * HOUR);
    assert!(settings.previous_master_key.is_none());
    assert!(matches!(
        &settings.master_key,
        Some(MasterKeySpec::File { path, .. }) if *path == key_path
    ));

    let loaded = master_key::load(settings.master_key.as_ref()).unwrap();
    assert!(
        loaded.source().contains("master.key"),
        "{}",
        loaded.source()
    );
    // It is the key in the file: the same id as those bytes given directly...
    let bytes = hex::decode(TIKV_KEY.trim_end()).unwrap();
    let direct =
        LocalMasterKey::new(&Key256::from_slice(&bytes, "t").unwrap(), "t".into()).unwrap();
    assert_eq!(loaded.id(), direct.id());
    // ...or in base64 through an environment variable.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let env: HashMap<&str, String> = [(config::ENV_MASTER_KEY_ENV, b64)].into_iter().collect();
    let from_env = resolve_file(&toml_for(&key_path, &data_dir), &env).unwrap();
    assert!(matches!(
        &from_env.master_key,
        Some(MasterKeySpec::Env { variable, .. }) if variable == config::ENV_MASTER_KEY_ENV
    ));
    let env_key = master_key::load(from_env.master_key.as_ref()).unwrap();
    assert_eq!(env_key.id(), loaded.id());

    // A keystore initialised with the file key opens with the variable's.
    let store = store_at(&settings.keystore_path());
    let ks = KeyringSettings::new(settings.method, settings.rotation_period);
    let clock = std::sync::Arc::new(kura_keys::clock::ManualClock::new(T0));
    let k = Keyring::init(store, loaded, ks.clone(), clock.clone()).unwrap();
    let sealed = seal(&k, &ctx(), b"configured");
    assert_eq!(k.status().data_keys[0].method, "aes128-ctr");
    assert_eq!(k.status().data_key_rotation_period, "24h");
    drop(k);
    let (k, _) = Keyring::open(
        store_at(&settings.keystore_path()),
        env_key,
        None,
        ks,
        clock,
    )
    .unwrap();
    assert_eq!(open(&k, &ctx(), &sealed).unwrap(), b"configured");
}

#[test]
fn key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, shown) in [
        (0o644, "644"),
        (0o600, "600"),
        (0o440, "440"),
        (0o444, "444"),
    ] {
        let key_path = write_key(dir.path(), &format!("k{shown}"), TIKV_KEY, mode);
        let settings = resolve_file(&toml_for(&key_path, dir.path()), &HashMap::new()).unwrap();
        let e = load_error(settings.master_key.as_ref());
        assert!(
            matches!(&e, Error::KeyFilePermissions { path, mode: m } if *path == key_path && *m == mode),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "Permission for backing key file must be 0400, but is {shown}"
            )),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("chmod 0400 {}", key_path.display())),
            "{msg}"
        );
    }
}

#[test]
fn short_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let short = "00112233445566778899aabbccddeeff\n";
    let key_path = write_key(dir.path(), "short.key", short, 0o400);
    let settings = resolve_file(&toml_for(&key_path, dir.path()), &HashMap::new()).unwrap();
    let e = load_error(settings.master_key.as_ref());
    assert!(
        matches!(e, Error::MasterKeySize { actual: 16, .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("Size of the Master Key is invalid it must be 32 bytes however is 16"),
        "{msg}"
    );
    assert!(msg.contains("short.key"), "{msg}");

    // Base64 of 16 bytes, through the environment.
    let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
    let env: HashMap<&str, String> = [(config::ENV_MASTER_KEY_ENV, b64)].into_iter().collect();
    let settings = config::resolve(None, &|k| env.get(k).cloned(), &Overrides::default()).unwrap();
    let e = load_error(settings.master_key.as_ref());
    assert!(
        e.to_string()
            .starts_with("Size of the Master Key is invalid it must be 32 bytes however is 16"),
        "{e}"
    );
}

#[test]
fn missing_key_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("absent.key");
    let settings = resolve_file(&toml_for(&key_path, dir.path()), &HashMap::new()).unwrap();
    let e = load_error(settings.master_key.as_ref());
    assert!(matches!(e, Error::MissingMasterKey(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("Missing backing keystore:"), "{msg}");
    assert!(msg.contains(&key_path.display().to_string()), "{msg}");
    assert!(msg.contains("[security.encryption.master-key]"), "{msg}");

    // The same through the environment variable naming a file, and the flag.
    let env: HashMap<&str, String> =
        [(config::ENV_MASTER_KEY_FILE, key_path.display().to_string())]
            .into_iter()
            .collect();
    let s = config::resolve(None, &|k| env.get(k).cloned(), &Overrides::default()).unwrap();
    let msg = load_error(s.master_key.as_ref()).to_string();
    assert!(msg.starts_with("Missing backing keystore:"), "{msg}");
    assert!(msg.contains(config::ENV_MASTER_KEY_FILE), "{msg}");
    let flags = Overrides {
        master_key_file: Some(key_path.clone()),
        ..Overrides::default()
    };
    let s = config::resolve(None, &|_| None, &flags).unwrap();
    let msg = load_error(s.master_key.as_ref()).to_string();
    assert!(msg.starts_with("Missing backing keystore:"), "{msg}");
    assert!(msg.contains("--master-key-file"), "{msg}");
}

#[test]
fn no_master_key_configured() {
    let s = config::resolve(None, &|_| None, &Overrides::default()).unwrap();
    assert!(s.master_key.is_none());
    let e = load_error(s.master_key.as_ref());
    assert!(matches!(e, Error::MissingMasterKey(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("Missing backing keystore:"), "{msg}");
    assert!(msg.contains("KURA_MASTER_KEY_FILE"), "{msg}");
    assert!(msg.contains("KURA_MASTER_KEY_ENV"), "{msg}");

    // A file with only other settings configures no key either.
    let s = resolve_file(
        "[security.encryption]\ndata-key-rotation-period = \"1h\"\n",
        &HashMap::new(),
    )
    .unwrap();
    assert!(
        load_error(s.master_key.as_ref())
            .to_string()
            .starts_with("Missing backing keystore:")
    );

    // type = "env" with the variable unset.
    let text = "[security.encryption.master-key]\ntype = \"env\"\nvariable = \"MY_KEY\"\n";
    let e = resolve_file(text, &HashMap::new()).err().unwrap();
    assert!(matches!(e, Error::MissingMasterKey(_)), "{e:?}");
    assert!(e.to_string().contains("MY_KEY"), "{e}");
}

#[test]
fn bad_key_encoding_and_empty_variables() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = write_key(dir.path(), "garbage.key", "this is not a key!\n", 0o400);
    let s = resolve_file(&toml_for(&key_path, dir.path()), &HashMap::new()).unwrap();
    let e = load_error(s.master_key.as_ref());
    assert!(matches!(e, Error::MasterKeyEncoding { .. }), "{e:?}");
    assert!(e.to_string().contains("kura keygen"), "{e}");

    // An empty variable counts as unset.
    let env: HashMap<&str, String> = [(config::ENV_MASTER_KEY_ENV, String::new())]
        .into_iter()
        .collect();
    let s = config::resolve(None, &|k| env.get(k).cloned(), &Overrides::default()).unwrap();
    assert!(s.master_key.is_none());
}

#[test]
fn a_key_pasted_into_the_config_file_is_not_echoed() {
    let b64 = base64::engine::general_purpose::STANDARD.encode([0x5au8; 32]);
    let text = format!("[security.encryption]\nmaster-key = \"{b64}\"\n");
    let e = resolve_file(&text, &HashMap::new()).err().unwrap();
    let msg = e.to_string();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(
        !msg.contains(&b64) && !format!("{e:?}").contains(&b64),
        "{msg}"
    );
    // The rest of the explanation is kept.
    assert!(msg.contains("kura.toml"), "{msg}");
    assert!(msg.contains("invalid type: string"), "{msg}");
    assert!(msg.contains("MasterKeyToml"), "{msg}");
    // Names of unknown fields are not values, and are still shown.
    let e = resolve_file("[security.encryption]\nmaster-kee = 1\n", &HashMap::new())
        .err()
        .unwrap();
    assert!(e.to_string().contains("master-kee"), "{e}");
}
