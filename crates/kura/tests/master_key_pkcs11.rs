#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The master key in a PKCS#11 token, through the CLI, against a real SoftHSM2 token in a
//! throwaway directory (`SOFTHSM2_CONF` passed to every `kura` run): `kura pkcs11 keygen`,
//! `kura init` with `[security.encryption.master-key] type = "pkcs11"`, encrypt, decrypt
//! in a new process, status, and the errors a user meets (wrong PIN, PIN variable unset,
//! missing token, missing key). A machine without SoftHSM gets it installed, or the test
//! fails saying how to install it: nothing is skipped.

mod common;

use assert_cmd::Command;
use common::*;
use kura_testkit::SoftHsm;

const PIN: &str = "kura-user-2468";
const PIN_VAR: &str = "KURA_TEST_HSM_PIN";
const TOKEN: &str = "kura-cli";

/// `[security.encryption.master-key]` of type pkcs11.
fn config(hsm: &SoftHsm, token: &str, key: &str) -> String {
    format!(
        "[security.encryption.master-key]\n\
         type = \"pkcs11\"\n\
         module = \"{}\"\n\
         token-label = \"{token}\"\n\
         key-label = \"{key}\"\n\
         pin-env = \"{PIN_VAR}\"\n",
        hsm.module().display()
    )
}

/// The flags naming key `label` in the test token of `hsm`, its PIN in [`PIN_VAR`].
fn key_flags<'a>(hsm: &'a SoftHsm, label: &'a str) -> [&'a str; 8] {
    let module = hsm.module().to_str().unwrap();
    [
        "--module",
        module,
        "--token-label",
        TOKEN,
        "--key-label",
        label,
        "--pin-env",
        PIN_VAR,
    ]
}

/// `kura --data-dir data --config CONFIG ARGS` with SoftHSM's environment and the PIN.
fn kura(sb: &Sandbox, hsm: &SoftHsm, config: &str, args: &[&str]) -> Command {
    let mut c = sb.cmd();
    c.envs(hsm.env())
        .env(PIN_VAR, PIN)
        .arg("--data-dir")
        .arg(sb.data_dir())
        .args(["--config", config])
        .args(args);
    c
}

#[test]
fn init_encrypt_restart_decrypt_status_and_errors() {
    let hsm = SoftHsm::new().unwrap();
    hsm.init_token(TOKEN, PIN, "kura-so-1357").unwrap();
    let sb = Sandbox::new();
    sb.secret(PIN.as_bytes());
    sb.write_file(
        "kura.toml",
        config(&hsm, TOKEN, "kura-master").as_bytes(),
        0o644,
    );

    // The key is generated inside the token, from the configuration's settings.
    let out = sb
        .exec(&mut kura(&sb, &hsm, "kura.toml", &["pkcs11", "keygen"]))
        .ok()
        .stdout_str();
    let prefix = format!("master key id: pkcs11:{TOKEN}/kura-master#kcv:");
    assert!(out.contains(&prefix), "{out}");
    assert!(out.contains("type = \"pkcs11\""), "{out}");
    sb.exec(&mut kura(&sb, &hsm, "kura.toml", &["pkcs11", "keygen"]))
        .fails_with(&["kura-master", "exists already"]);

    sb.exec(&mut kura(&sb, &hsm, "kura.toml", &["init"])).ok();
    let plain = data(100_000, 7);
    let ct = sb
        .exec(kura(&sb, &hsm, "kura.toml", &["encrypt"]).write_stdin(plain.clone()))
        .ok()
        .stdout;
    assert_ne!(ct, plain);
    // Each run is a new process: it opens the token, logs in and unwraps the KEK anew.
    let back = sb
        .exec(kura(&sb, &hsm, "kura.toml", &["decrypt"]).write_stdin(ct.clone()))
        .ok()
        .stdout;
    assert_eq!(back, plain);

    let st = sb
        .exec(&mut kura(
            &sb,
            &hsm,
            "kura.toml",
            &["--output", "json", "status"],
        ))
        .ok()
        .json();
    let source = st["master_key"]["source"].as_str().unwrap();
    for part in [
        "PKCS#11 module",
        hsm.module().to_str().unwrap(),
        TOKEN,
        "kura-master",
    ] {
        assert!(source.contains(part), "{st:#}");
    }
    let id = st["master_key"]["id"].as_str().unwrap();
    assert!(
        id.starts_with(&format!("pkcs11:{TOKEN}/kura-master#kcv:")),
        "{st:#}"
    );
    assert_eq!(st["kek"]["master_key_id"], id);
    let text = sb
        .exec(&mut kura(&sb, &hsm, "kura.toml", &["status"]))
        .ok()
        .stdout_str();
    assert!(text.contains(source), "{text}");

    // A wrong PIN, and the PIN variable unset: each named.
    sb.exec(
        kura(&sb, &hsm, "kura.toml", &["decrypt"])
            .env(PIN_VAR, "wrong-pin")
            .write_stdin(ct.clone()),
    )
    .fails_with(&[PIN_VAR, "refused the user PIN", TOKEN]);
    sb.exec(
        kura(&sb, &hsm, "kura.toml", &["decrypt"])
            .env_remove(PIN_VAR)
            .write_stdin(ct.clone()),
    )
    .fails_with(&[PIN_VAR, "not set"]);

    // A token or a key that is not there: named, with what to do.
    sb.write_file(
        "no-token.toml",
        config(&hsm, "other-token", "kura-master").as_bytes(),
        0o644,
    );
    sb.exec(kura(&sb, &hsm, "no-token.toml", &["decrypt"]).write_stdin(ct.clone()))
        .fails_with(&["\"other-token\"", &format!("\"{TOKEN}\""), "token-label"]);
    sb.write_file(
        "no-key.toml",
        config(&hsm, TOKEN, "kura-absent").as_bytes(),
        0o644,
    );
    sb.exec(kura(&sb, &hsm, "no-key.toml", &["decrypt"]).write_stdin(ct.clone()))
        .fails_with(&["\"kura-absent\"", "no secret key", "kura pkcs11 keygen"]);

    // Without SOFTHSM2_CONF, SoftHSM looks at the machine's tokens: not ours.
    let run = sb.exec(
        kura(&sb, &hsm, "kura.toml", &["decrypt"])
            .env_remove(kura_testkit::softhsm::CONF_VAR)
            .write_stdin(ct.clone()),
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("PKCS#11"), "{}", run.stderr);

    // A key generated from flags alone, without a configuration file.
    let mut c = sb.cmd();
    c.envs(hsm.env())
        .env(PIN_VAR, PIN)
        .args(["pkcs11", "keygen"])
        .args(key_flags(&hsm, "kura-next"));
    let out = sb.exec(&mut c).ok().stdout_str();
    assert!(
        out.contains(&format!("pkcs11:{TOKEN}/kura-next#kcv:")),
        "{out}"
    );
}

/// `kura set-mode pkcs11` moves a keystore made with a key file into the token online;
/// later runs with no master-key configuration use the recorded mode if they opt in (the PIN
/// still from its variable) and are refused without the opt-in, and `kura set-mode local`
/// moves it back.
#[test]
fn set_mode_local_to_pkcs11_and_back() {
    let hsm = SoftHsm::new().unwrap();
    hsm.init_token(TOKEN, PIN, "kura-so-1357").unwrap();
    let (sb, key) = Sandbox::with_key();
    sb.secret(PIN.as_bytes());
    sb.init(&key);
    let plain = data(10_000, 3);
    let ct = sb.kura_stdin(&key, &["encrypt"], &plain).ok().stdout;

    let mut keygen = sb.cmd();
    keygen
        .envs(hsm.env())
        .env(PIN_VAR, PIN)
        .args(["pkcs11", "keygen"])
        .args(key_flags(&hsm, "kura-master"));
    sb.exec(&mut keygen).ok();
    let mut set = sb.keyed(&key);
    set.envs(hsm.env())
        .env(PIN_VAR, PIN)
        .args(["set-mode", "pkcs11"])
        .args(key_flags(&hsm, "kura-master"));
    sb.exec(&mut set).ok();

    // No master key configured and no opt-in: the recorded module is not loaded, and the
    // error names the recorded key and both ways out.
    let unconfigured = || {
        let mut c = sb.cmd();
        c.envs(hsm.env())
            .env(PIN_VAR, PIN)
            .arg("--data-dir")
            .arg(sb.data_dir());
        c
    };
    let module = hsm.module().display().to_string();
    sb.exec(unconfigured().arg("status")).fails_with(&[
        "records the master key pkcs11 key \"kura-master\"",
        &module,
        "[security.encryption.master-key]",
        "use-recorded-master-key = true",
        "KURA_USE_RECORDED_MASTER_KEY=true",
    ]);
    // With the opt-in: the recorded PKCS#11 key, the PIN from its variable.
    let bare = || {
        let mut c = unconfigured();
        c.env("KURA_USE_RECORDED_MASTER_KEY", "true");
        c
    };
    let st = sb
        .exec(bare().args(["--output", "json", "status"]))
        .ok()
        .json();
    assert_eq!(st["master_key"]["mode"], "pkcs11", "{st:#}");
    let id = st["master_key"]["id"].as_str().unwrap();
    assert!(
        id.starts_with(&format!("pkcs11:{TOKEN}/kura-master#kcv:")),
        "{st:#}"
    );
    assert_eq!(st["kek"]["master_key_id"], id, "{st:#}");
    let back = sb
        .exec(bare().arg("decrypt").write_stdin(ct.clone()))
        .ok()
        .stdout;
    assert_eq!(back, plain);
    sb.exec(
        bare()
            .env_remove(PIN_VAR)
            .arg("decrypt")
            .write_stdin(ct.clone()),
    )
    .fails_with(&[PIN_VAR, "not set"]);

    // And back to the key file.
    let key_path = key.to_str().unwrap();
    sb.exec(bare().args(["set-mode", "local", "--key-file", key_path]))
        .ok();
    let back = sb.kura_stdin(&key, &["decrypt"], &ct).ok().stdout;
    assert_eq!(back, plain);
    assert!(
        sb.status(&key)["master_key"]["id"]
            .as_str()
            .unwrap()
            .starts_with("local:")
    );
}
