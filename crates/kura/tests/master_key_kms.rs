#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Master keys in a KMS, at the command line: a keystore rooted in moto (AWS's stand-in,
//! one per test binary) through `KURA_AWS_CMK` and through the TOML table, and a keystore
//! rooted in another kura (`kura server --dev`); every error the two can produce; and
//! `kura set-mode` local → kms (moto) → kms (kura server) → local with `kura rotate
//! master-key --key-id`, each step checked by processes started without master-key
//! configuration that opt in to the recorded key (and refused without the opt-in).

mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use aws_sdk_kms::Client;
use kura_testkit::{MotoServer, free_port, with_aws_credentials, write_master_key};
use serde_json::Value;
use server::{REGION, Server, py};

/// The moto server of this test binary, shared by the tests running at once.
fn moto() -> Arc<MotoServer> {
    static M: Mutex<Weak<MotoServer>> = Mutex::new(Weak::new());
    let mut g = M.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(m) = g.upgrade() {
        return m;
    }
    let m = Arc::new(MotoServer::start(py()).unwrap_or_else(|e| panic!("{e}")));
    *g = Arc::downgrade(&m);
    m
}

/// A KMS and the credentials to use it with.
#[derive(Clone)]
struct Kms {
    endpoint: String,
    akid: String,
    secret: String,
}

impl Kms {
    fn moto(m: &MotoServer) -> Self {
        Self {
            endpoint: m.endpoint(),
            akid: "testing".into(),
            secret: "testing".into(),
        }
    }

    fn kura(s: &Server) -> Self {
        Self {
            endpoint: s.endpoint.clone(),
            akid: s.access_key_id.clone(),
            secret: s.secret.clone(),
        }
    }

    fn with(&self, akid: &str, secret: &str) -> Self {
        Self {
            endpoint: self.endpoint.clone(),
            akid: akid.into(),
            secret: secret.into(),
        }
    }

    /// Runs `f` with an SDK client on this KMS.
    fn sdk<T>(&self, f: impl AsyncFnOnce(&Client) -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            f(&server::kms_client(&self.endpoint, &self.akid, &self.secret).await).await
        })
    }

    /// A new symmetric key (with `policy`, if given): its id.
    fn create_key(&self, policy: Option<&str>) -> String {
        self.sdk(async |c| {
            let mut req = c.create_key();
            if let Some(p) = policy {
                req = req.policy(p);
            }
            let out = req.send().await.unwrap();
            out.key_metadata().unwrap().key_id().to_string()
        })
    }

    fn create_alias(&self, alias: &str, key: &str) {
        self.sdk(async |c| {
            c.create_alias()
                .alias_name(alias)
                .target_key_id(key)
                .send()
                .await
                .unwrap();
        });
    }

    fn disable_key(&self, key: &str) {
        self.sdk(async |c| c.disable_key().key_id(key).send().await.unwrap());
    }
}

/// `kura` on `data_dir` with clean AWS and kura variables, `kms`'s credentials and region,
/// and no master key configured.
fn kura(data_dir: &Path, kms: &Kms) -> Command {
    let env = py();
    let mut c = env.command(env!("CARGO_BIN_EXE_kura"));
    for v in kura_testkit::KURA_VARS {
        c.env_remove(v);
    }
    with_aws_credentials(&mut c, &kms.akid, &kms.secret, REGION);
    c.env("KURA_LOG", "warn")
        .env("KURA_DATA_DIR", data_dir)
        .stdin(Stdio::null());
    c
}

/// [`kura`], trusting the master key recorded in the keystore.
fn kura_recorded(data_dir: &Path, kms: &Kms) -> Command {
    let mut c = kura(data_dir, kms);
    c.env("KURA_USE_RECORDED_MASTER_KEY", "true");
    c
}

/// `kura` rooted in `key` of `kms` through the Looker-shaped variables.
fn kura_cmk(data_dir: &Path, kms: &Kms, key: &str) -> Command {
    let mut c = kura(data_dir, kms);
    c.env("KURA_AWS_CMK", key)
        .env("KURA_KMS_ENDPOINT", &kms.endpoint);
    c
}

#[track_caller]
fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    server::ok(&o)
}

/// Runs a command that must fail; its stderr.
#[track_caller]
fn fails(c: &mut Command) -> String {
    let o: Output = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "expected exit 1: {err}");
    eprintln!("{}", err.trim_end());
    err
}

fn json(c: &mut Command) -> Value {
    serde_json::from_str(&ok(c.args(["--output", "json"]))).unwrap()
}

/// Encrypts `text` into `dir/name` with `c`; returns the file.
fn encrypt(c: &mut Command, dir: &Path, name: &str, text: &str) -> PathBuf {
    let plain = dir.join(format!("{name}.txt"));
    std::fs::write(&plain, text).unwrap();
    let sealed = dir.join(format!("{name}.kura"));
    ok(c.args(["encrypt", "--context", "app=kms"])
        .arg(&plain)
        .arg("-o")
        .arg(&sealed));
    sealed
}

#[track_caller]
fn decrypts(c: &mut Command, sealed: &Path, text: &str) {
    let out = ok(c.args(["decrypt", "--context", "app=kms"]).arg(sealed));
    assert_eq!(out, text);
}

#[test]
fn keystore_rooted_in_moto_by_variables_and_by_the_toml_table() {
    let moto = moto();
    let kms = Kms::moto(&moto);
    let key = kms.create_key(None);
    kms.create_alias("alias/kura-cli", &key);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vars");

    let init = ok(kura_cmk(&data, &kms, "alias/kura-cli").arg("init"));
    let arn = format!("arn:aws:kms:{REGION}:123456789012:key/{key}");
    assert!(init.contains(&format!("kms:{arn}")), "{init}");
    let sealed = encrypt(
        &mut kura_cmk(&data, &kms, "alias/kura-cli"),
        dir.path(),
        "a",
        "under moto",
    );
    // A new process: the KEK is unwrapped by the KMS again.
    decrypts(
        &mut kura_cmk(&data, &kms, "alias/kura-cli"),
        &sealed,
        "under moto",
    );

    let st = ok(kura_cmk(&data, &kms, "alias/kura-cli").arg("status"));
    assert!(st.contains("mode:                kms"), "{st}");
    for part in [
        arn.as_str(),
        "alias/kura-cli",
        REGION,
        &kms.endpoint,
        "KURA_AWS_CMK",
    ] {
        assert!(st.contains(part), "{part}: {st}");
    }
    let j = json(kura_cmk(&data, &kms, "alias/kura-cli").arg("status"));
    assert_eq!(j["master_key"]["mode"], "kms");
    assert_eq!(j["master_key"]["id"], format!("kms:{arn}"));
    assert_eq!(j["kek"]["master_key_id"], format!("kms:{arn}"));

    // The TOML table, with an encryption context of its own.
    let toml = dir.path().join("kura.toml");
    std::fs::write(
        &toml,
        format!(
            "[security.encryption.master-key]\ntype = \"kms\"\nkey-id = \"{key}\"\nregion = \"{REGION}\"\n\
             endpoint = \"{}\"\nencryption-context = {{ tenant = \"acme\" }}\n",
            kms.endpoint
        ),
    )
    .unwrap();
    let data2 = dir.path().join("toml");
    let with_toml = || {
        let mut c = kura(&data2, &kms);
        c.env("KURA_CONFIG", &toml);
        c
    };
    ok(with_toml().arg("init"));
    let sealed = encrypt(&mut with_toml(), dir.path(), "b", "from the table");
    decrypts(&mut with_toml(), &sealed, "from the table");
    let st = ok(with_toml().arg("status"));
    assert!(
        st.contains("mode:                kms") && st.contains("[security.encryption.master-key]"),
        "{st}"
    );

    // The same key with another encryption context does not unwrap the KEK.
    let err = fails(
        kura_cmk(&data2, &kms, &key)
            .env("KURA_AWS_CMK_EC", "another")
            .args(["decrypt", "--context", "app=kms"])
            .arg(&sealed),
    );
    assert!(err.contains("does not decrypt under key"), "{err}");
    assert!(
        err.contains("\"context\": \"another\"") && err.contains("KURA_AWS_CMK_EC"),
        "{err}"
    );
}

#[test]
fn moto_errors_at_the_command_line() {
    let moto = moto();
    let kms = Kms::moto(&moto);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("k");

    let err = fails(kura_cmk(&data, &kms, "alias/missing").arg("init"));
    assert!(err.contains("has no key alias/missing"), "{err}");
    assert!(
        err.contains(&kms.endpoint) && err.contains("NotFoundException"),
        "{err}"
    );

    let disabled = kms.create_key(None);
    kms.disable_key(&disabled);
    let err = fails(kura_cmk(&data, &kms, &disabled).arg("init"));
    assert!(
        err.contains(&disabled) && err.contains("enable-key"),
        "{err}"
    );

    let closed = Kms {
        endpoint: format!("http://127.0.0.1:{}", free_port().unwrap()),
        ..kms.clone()
    };
    let err = fails(kura_cmk(&data, &closed, "alias/x").arg("init"));
    assert!(
        err.contains("cannot reach the KMS at") && err.contains(&closed.endpoint),
        "{err}"
    );

    let key = kms.create_key(None);
    let err = fails(
        kura_cmk(&data, &kms, &key)
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .arg("init"),
    );
    assert!(err.contains("no AWS region") && err.contains(&key), "{err}");
}

/// The dev user of `s` may do everything with the key; nobody else anything.
fn dev_only_policy() -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "dev only", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:user/dev"},
            "Action": "kms:*", "Resource": "*"
        }]
    })
    .to_string()
}

#[test]
fn keystore_rooted_in_another_kura() {
    let s = Server::start();
    let kms = Kms::kura(&s);
    let key = kms.create_key(Some(&dev_only_policy()));
    kms.create_alias("alias/root-of-kura", &key);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("second");

    ok(kura_cmk(&data, &kms, "alias/root-of-kura").arg("init"));
    let sealed = encrypt(
        &mut kura_cmk(&data, &kms, "alias/root-of-kura"),
        dir.path(),
        "a",
        "kura in kura",
    );
    decrypts(
        &mut kura_cmk(&data, &kms, "alias/root-of-kura"),
        &sealed,
        "kura in kura",
    );
    let j = json(kura_cmk(&data, &kms, "alias/root-of-kura").arg("status"));
    assert_eq!(j["master_key"]["mode"], "kms");
    assert!(
        j["master_key"]["id"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":key/{key}")),
        "{j}"
    );

    // A user without permission on the key.
    let out = server::ok(
        &server::kura(&s.data_dir)
            .args(["user", "create", "bob", "--output", "json"])
            .output()
            .unwrap(),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let bob = kms.with(
        v["AccessKeyId"].as_str().unwrap(),
        v["SecretAccessKey"].as_str().unwrap(),
    );
    let err = fails(
        kura_cmk(&data, &bob, "alias/root-of-kura")
            .args(["decrypt", "--context", "app=kms"])
            .arg(&sealed),
    );
    assert!(err.contains("denies these credentials"), "{err}");
    assert!(
        err.contains("alias/root-of-kura") && err.contains(&kms.endpoint),
        "{err}"
    );
    assert!(err.contains("kms:Decrypt"), "{err}");

    // Credentials the server does not know.
    let stranger = kms.with("AKIAIOSFODNN7EXAMPLE", &"x".repeat(40));
    let err = fails(
        kura_cmk(&data, &stranger, "alias/root-of-kura")
            .args(["decrypt", "--context", "app=kms"])
            .arg(&sealed),
    );
    assert!(err.contains("does not accept the AWS credentials"), "{err}");

    // The key is disabled in the other kura: the next process cannot start.
    kms.disable_key(&key);
    let err = fails(
        kura_cmk(&data, &kms, "alias/root-of-kura")
            .args(["decrypt", "--context", "app=kms"])
            .arg(&sealed),
    );
    assert!(
        err.contains("cannot be used now") && err.contains("Disabled"),
        "{err}"
    );
}

#[test]
fn set_mode_local_to_kms_to_another_kms_to_local() {
    let moto = moto();
    let s = Server::start();
    let (mk, kk) = (Kms::moto(&moto), Kms::kura(&s));
    let moto_key = mk.create_key(None);
    let kura_key = kk.create_key(None);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ks");
    let key_file = write_master_key(dir.path(), "first.key", &[7; 32]).unwrap();

    // Local to begin with. Moto takes any credentials, so the kura server's serve both.
    let local = || {
        let mut c = kura(&data, &kk);
        c.env("KURA_MASTER_KEY_FILE", &key_file);
        c
    };
    let bare = || kura_recorded(&data, &kk);
    ok(local().arg("init"));
    let f0 = encrypt(&mut local(), dir.path(), "f0", "local at first");
    assert_eq!(json(local().arg("status"))["master_key"]["mode"], "local");

    // local -> kms (moto).
    let j = json(local().args([
        "set-mode",
        "kms",
        "--key-id",
        &moto_key,
        "--endpoint",
        &mk.endpoint,
    ]));
    assert_eq!(j["master_key"]["mode"], "kms");
    assert!(
        j["previous_master_key_id"]
            .as_str()
            .unwrap()
            .starts_with("local:"),
        "{j}"
    );
    // Started without master-key configuration nor the opt-in: the record is not used, and
    // the error names the recorded key and both ways out.
    let mut status = kura(&data, &kk);
    status.arg("status");
    let mut decrypt = kura(&data, &kk);
    decrypt.args(["decrypt", "--context", "app=kms"]).arg(&f0);
    for mut c in [status, decrypt] {
        let err = fails(&mut c);
        for part in [
            format!("records the master key kms key {moto_key}"),
            mk.endpoint.clone(),
            "[security.encryption.master-key]".into(),
            "use-recorded-master-key = true".into(),
            "KURA_USE_RECORDED_MASTER_KEY=true".into(),
            "trust everyone who can write the keystore database".into(),
        ] {
            assert!(err.contains(&part), "{part}: {err}");
        }
    }
    let err = fails(
        kura(&data, &kk)
            .env("KURA_USE_RECORDED_MASTER_KEY", "false")
            .arg("status"),
    );
    assert!(err.contains("use-recorded-master-key = true"), "{err}");
    // With the opt-in (variable or file): the recorded mode.
    let opt_in = dir.path().join("opt-in.toml");
    std::fs::write(
        &opt_in,
        "[security.encryption]\nuse-recorded-master-key = true\n",
    )
    .unwrap();
    let st = json(kura(&data, &kk).env("KURA_CONFIG", &opt_in).arg("status"));
    assert_eq!(st["master_key"]["mode"], "kms");
    decrypts(&mut bare(), &f0, "local at first");
    let f1 = encrypt(&mut bare(), dir.path(), "f1", "under moto");
    let st = json(bare().arg("status"));
    assert_eq!(st["master_key"]["mode"], "kms");
    assert_eq!(
        st["recorded_master_key"]["current"]["key-id"],
        moto_key.as_str()
    );
    assert_eq!(st["recorded_master_key"]["current"]["region"], REGION);
    assert_eq!(st["recorded_master_key"]["previous"]["mode"], "local");
    // The old key still configured: it wins over the record, and the error says so.
    let err = fails(local().arg("status"));
    assert!(
        err.contains("records the master key kms key") && err.contains("wrong master key"),
        "{err}"
    );
    let text = ok(bare().arg("status"));
    assert!(
        text.contains("mode:                kms") && text.contains(&mk.endpoint),
        "{text}"
    );

    // kms (moto) -> kms (kura server), by rotation.
    let j = json(bare().args([
        "rotate",
        "master-key",
        "--key-id",
        &kura_key,
        "--endpoint",
        &kk.endpoint,
    ]));
    assert!(
        j["master_key_id"].as_str().unwrap().ends_with(&kura_key),
        "{j}"
    );
    decrypts(&mut bare(), &f0, "local at first");
    decrypts(&mut bare(), &f1, "under moto");
    let f2 = encrypt(&mut bare(), dir.path(), "f2", "under kura");
    let st = json(bare().arg("status"));
    assert_eq!(st["master_key"]["mode"], "kms");
    assert_eq!(
        st["recorded_master_key"]["current"]["endpoint"],
        kk.endpoint.as_str()
    );
    assert_eq!(
        st["recorded_master_key"]["previous"]["key-id"],
        moto_key.as_str()
    );

    // kms -> local, with a new key file; then the KMS is not needed any more.
    let second = write_master_key(dir.path(), "second.key", &[9; 32]).unwrap();
    let j = json(
        bare()
            .arg("set-mode")
            .arg("local")
            .arg("--key-file")
            .arg(&second),
    );
    assert_eq!(j["master_key"]["mode"], "local");
    drop(s);
    let unreachable = kk.with("nobody", "nothing");
    let bare = || kura_recorded(&data, &unreachable);
    for (f, t) in [
        (&f0, "local at first"),
        (&f1, "under moto"),
        (&f2, "under kura"),
    ] {
        decrypts(&mut bare(), f, t);
    }
    let st = json(bare().arg("status"));
    assert_eq!(st["master_key"]["mode"], "local");
    assert_eq!(
        st["recorded_master_key"]["current"]["key-file"],
        second.to_str().unwrap()
    );
    assert_eq!(st["recorded_master_key"]["previous"]["mode"], "kms");

    // Flags of another mode are refused.
    let err = fails(bare().args(["set-mode", "local", "--key-id", "x"]));
    assert!(err.contains("mode local takes no --key-id"), "{err}");
}

#[test]
fn set_mode_pkcs11_records_the_pin_variable_never_the_pin() {
    const PIN: &str = "kura-user-97531";
    let hsm = kura_testkit::SoftHsm::new().unwrap();
    hsm.init_token("kura-modes", PIN, "kura-so-86420").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ks");
    let key_file = write_master_key(dir.path(), "first.key", &[5; 32]).unwrap();
    let nobody = Kms {
        endpoint: String::new(),
        akid: "none".into(),
        secret: "none".into(),
    };
    let bare = || {
        let mut c = kura_recorded(&data, &nobody);
        c.envs(hsm.env()).env("KURA_TEST_MODE_PIN", PIN);
        c
    };
    let module = hsm.module().to_str().unwrap().to_string();
    let token = [
        "--module",
        module.as_str(),
        "--token-label",
        "kura-modes",
        "--key-label",
        "kura-master",
        "--pin-env",
        "KURA_TEST_MODE_PIN",
    ];
    ok(bare().args(["pkcs11", "keygen"]).args(token));
    ok(bare().env("KURA_MASTER_KEY_FILE", &key_file).arg("init"));
    let f0 = encrypt(
        bare().env("KURA_MASTER_KEY_FILE", &key_file),
        dir.path(),
        "f0",
        "local, then in a token",
    );

    let j = json(
        bare()
            .env("KURA_MASTER_KEY_FILE", &key_file)
            .args(["set-mode", "pkcs11"])
            .args(token),
    );
    assert_eq!(j["master_key"]["mode"], "pkcs11");
    assert!(
        j["master_key_id"]
            .as_str()
            .unwrap()
            .starts_with("pkcs11:kura-modes/kura-master")
    );
    decrypts(&mut bare(), &f0, "local, then in a token");
    let f1 = encrypt(&mut bare(), dir.path(), "f1", "in the token");
    let st = ok(bare().args(["--output", "json", "status"]));
    assert!(
        !st.contains(PIN),
        "the PIN is never recorded nor shown: {st}"
    );
    let st: Value = serde_json::from_str(&st).unwrap();
    assert_eq!(st["master_key"]["mode"], "pkcs11");
    assert_eq!(
        st["recorded_master_key"]["current"]["pin-env"],
        "KURA_TEST_MODE_PIN"
    );
    let err = fails(bare().env_remove("KURA_TEST_MODE_PIN").arg("status"));
    assert!(err.contains("KURA_TEST_MODE_PIN"), "{err}");

    ok(bare()
        .arg("set-mode")
        .arg("local")
        .arg("--key-file")
        .arg(&key_file));
    for (f, t) in [(&f0, "local, then in a token"), (&f1, "in the token")] {
        decrypts(&mut bare(), f, t);
    }
    assert_eq!(json(bare().arg("status"))["master_key"]["mode"], "local");
}
