use super::*;
use std::collections::{BTreeMap, HashMap};

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

const TOML: &str = r#"
[storage]
data-dir = "/from/file"
[security.encryption]
data-encryption-method = "sm4-ctr"
data-key-rotation-period = "24h"
enable-file-dictionary-log = false
[security.encryption.master-key]
type = "file"
path = "/file/master.key"
[security.encryption.previous-master-key]
type = "env"
variable = "OLD_KEY"
"#;

#[test]
fn method_names_and_codes_round_trip() {
    for m in Method::ALL {
        assert_eq!(m.as_str().parse::<Method>().unwrap(), m);
        assert_eq!(Method::from_code(m.code()), Some(m));
    }
    assert!("aes256-gcm".parse::<Method>().is_err());
    assert_eq!(Method::from_code(9), None);
    assert_eq!(Method::Sm4Ctr.key_len(), 16);
    assert_eq!(Method::Aes192Ctr.key_len(), 24);
    assert_eq!(Method::Aes256GcmPage.key_len(), 32);
}

#[test]
fn redact_info_log_from_file_and_environment() {
    let p = Path::new("kura.toml");
    let no_env = env_of(&[]);
    let off = resolve(None, &no_env, &Overrides::default()).unwrap();
    assert!(!off.redact_info_log);
    let on = "[security]\nredact-info-log = true\n";
    assert!(
        resolve(Some((p, on)), &no_env, &Overrides::default())
            .unwrap()
            .redact_info_log
    );
    let env_off = env_of(&[(ENV_REDACT_INFO_LOG, "false")]);
    assert!(
        !resolve(Some((p, on)), &env_off, &Overrides::default())
            .unwrap()
            .redact_info_log
    );
    let bad = env_of(&[(ENV_REDACT_INFO_LOG, "yes please")]);
    let e = resolve(None, &bad, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("KURA_REDACT_INFO_LOG=\"yes please\" is neither true nor false"),
        "{e}"
    );
}

#[test]
fn use_recorded_master_key_is_off_unless_opted_in() {
    let p = Path::new("kura.toml");
    let no_env = env_of(&[]);
    let off = resolve(None, &no_env, &Overrides::default()).unwrap();
    assert!(!off.use_recorded_master_key);
    let on = "[security.encryption]\nuse-recorded-master-key = true\n";
    assert!(
        resolve(Some((p, on)), &no_env, &Overrides::default())
            .unwrap()
            .use_recorded_master_key
    );
    let env_on = env_of(&[(ENV_USE_RECORDED_MASTER_KEY, "true")]);
    assert!(
        resolve(None, &env_on, &Overrides::default())
            .unwrap()
            .use_recorded_master_key
    );
    let env_off = env_of(&[(ENV_USE_RECORDED_MASTER_KEY, "0")]);
    assert!(
        !resolve(Some((p, on)), &env_off, &Overrides::default())
            .unwrap()
            .use_recorded_master_key
    );
    let bad = env_of(&[(ENV_USE_RECORDED_MASTER_KEY, "sure")]);
    let e = resolve(None, &bad, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("KURA_USE_RECORDED_MASTER_KEY=\"sure\" is neither true nor false"),
        "{e}"
    );
}

#[test]
fn file_then_env_then_flags() {
    let p = Path::new("kura.toml");
    let s = resolve(
        Some((p, TOML)),
        &env_of(&[("OLD_KEY", "b64")]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/from/file"));
    assert_eq!(s.method, Method::Sm4Ctr);
    assert_eq!(s.rotation_period, Duration::from_secs(86400));
    assert!(!s.file_dictionary_log);
    assert!(
        matches!(&s.master_key, Some(MasterKeySpec::File { path, .. }) if path == Path::new("/file/master.key"))
    );
    assert!(
        matches!(&s.previous_master_key, Some(MasterKeySpec::Env { variable, .. }) if variable == "OLD_KEY")
    );

    let env = env_of(&[
        ("OLD_KEY", "b64"),
        (ENV_MASTER_KEY_ENV, "zzz"),
        (ENV_DATA_DIR, "/from/env"),
    ]);
    let s = resolve(Some((p, TOML)), &env, &Overrides::default()).unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/from/env"));
    assert!(
        matches!(&s.master_key, Some(MasterKeySpec::Env { variable, .. }) if variable == ENV_MASTER_KEY_ENV)
    );

    let flags = Overrides {
        data_dir: Some("/from/flag".into()),
        master_key_file: Some("/flag.key".into()),
        previous_master_key_file: None,
        database_url: None,
    };
    let s = resolve(Some((p, TOML)), &env, &flags).unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/from/flag"));
    assert!(
        matches!(&s.master_key, Some(MasterKeySpec::File { path, .. }) if path == Path::new("/flag.key"))
    );
}

#[test]
fn pasted_keys_are_not_echoed() {
    let secret = "c2VjcmV0LWtleS1tYXRlcmlhbC1zZWNyZXQta2V5LW1hdGVyaWFs";
    let quoted = "AAAA\"BBBBBBBBBBBBsecret";
    let e = resolve(
        Some((
            Path::new("k.toml"),
            &format!("[security.encryption]\nmaster-key = '{quoted}'\n"),
        )),
        &env_of(&[]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(!e.to_string().contains("BBBBBBBBBBBBsecret"), "{e}");
    for text in [
        format!("[security.encryption]\nmaster-key = \"{secret}\"\n"),
        format!("[security.encryption.master-key]\ntype = \"{secret}\"\n"),
    ] {
        let e = resolve(
            Some((Path::new("k.toml"), &text)),
            &env_of(&[]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(!e.to_string().contains(secret), "{e}");
    }
}

#[test]
fn an_empty_data_dir_in_the_file_means_the_default() {
    let s = resolve(
        Some((Path::new("k.toml"), "[storage]\ndata-dir = \"\"\n")),
        &env_of(&[]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(s.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
}

#[test]
fn defaults_and_errors() {
    let s = resolve(None, &env_of(&[]), &Overrides::default()).unwrap();
    assert_eq!(s.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(s.method, Method::Aes256Ctr);
    assert_eq!(s.rotation_period, DEFAULT_ROTATION_PERIOD);
    assert!(s.file_dictionary_log);
    assert!(s.master_key.is_none());
    let page = "[security.encryption]\ndata-encryption-method = \"aes256-gcm-page\"\n";
    let s = resolve(
        Some((Path::new("k.toml"), page)),
        &env_of(&[]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(s.method, Method::Aes256GcmPage);
    let bad = "[security.encryption]\ndata-encryption-method = \"rot13\"\n";
    let e = resolve(
        Some((Path::new("k.toml"), bad)),
        &env_of(&[]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("rot13"), "{e}");
    let unknown = "[security.encryption]\nmaster-kee = 1\n";
    let e = resolve(
        Some((Path::new("k.toml"), unknown)),
        &env_of(&[]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("master-kee"), "{e}");
    let both = env_of(&[(ENV_MASTER_KEY_FILE, "/a"), (ENV_MASTER_KEY_ENV, "b")]);
    assert!(resolve(None, &both, &Overrides::default()).is_err());
    assert_eq!(format_duration(DEFAULT_ROTATION_PERIOD), "168h");
    assert_eq!(parse_duration("168h").unwrap(), DEFAULT_ROTATION_PERIOD);
}

#[test]
fn database_url_from_flag_environment_and_file() {
    let file = "[storage]\nurl = \"postgres://kura:filepw@db/kura\"\n";
    let path = Path::new("/etc/kura.toml");
    let none = Overrides::default();
    let s = resolve(Some((path, file)), &env_of(&[]), &none).unwrap();
    let url = s.database_url.unwrap();
    assert_eq!(url.expose(), "postgres://kura:filepw@db/kura");
    assert_eq!(url.redacted(), "postgres://kura:***@db/kura");
    assert_eq!(format!("{url:?}"), "postgres://kura:***@db/kura");
    let env = env_of(&[(ENV_DATABASE_URL, "postgresql://env@db/kura")]);
    let s = resolve(Some((path, file)), &env, &none).unwrap();
    assert_eq!(s.database_url.unwrap().expose(), "postgresql://env@db/kura");
    let flags = Overrides {
        database_url: Some("postgres://flag@db/kura".into()),
        ..Overrides::default()
    };
    let s = resolve(Some((path, file)), &env, &flags).unwrap();
    assert_eq!(s.database_url.unwrap().expose(), "postgres://flag@db/kura");
    let secret = Overrides {
        database_url: Some("postgres://u:hunter2@db/kura".into()),
        ..Overrides::default()
    };
    assert!(!format!("{secret:?}").contains("hunter2"));
    assert!(
        resolve(None, &env_of(&[]), &none)
            .unwrap()
            .database_url
            .is_none()
    );
    let bad = env_of(&[(ENV_DATABASE_URL, "mysql://u:secret@db/x")]);
    let e = resolve(None, &bad, &none).unwrap_err().to_string();
    assert!(e.contains("not a postgres:// URL"), "{e}");
    assert!(!e.contains("secret"), "{e}");
    assert_eq!(
        redact_url_password("postgres://u@h/db?sslmode=disable&password=pw"),
        "postgres://u@h/db?sslmode=disable&password=***"
    );
}

#[test]
fn kms_master_key_from_the_environment_and_the_file() {
    let none = Overrides::default();
    let env = env_of(&[("KURA_AWS_CMK", "alias/kura"), ("AWS_REGION", "eu-west-1")]);
    let s = resolve(None, &env, &none).unwrap();
    let Some(MasterKeySpec::Kms(k)) = &s.master_key else {
        panic!("{:?}", s.master_key)
    };
    assert_eq!(k.key_id, "alias/kura");
    assert_eq!(k.region.as_deref(), Some("eu-west-1"));
    assert_eq!(k.endpoint, None);
    assert_eq!(
        k.encryption_context,
        BTreeMap::from([("context".into(), DEFAULT_KMS_ENCRYPTION_CONTEXT.into())])
    );
    let env = env_of(&[
        ("KURA_AWS_CMK", "1234abcd-12ab-34cd-56ef-1234567890ab"),
        ("AWS_DEFAULT_REGION", "us-east-2"),
        ("KURA_AWS_CMK_EC", "mine"),
        ("KURA_KMS_ENDPOINT", "http://127.0.0.1:8600"),
    ]);
    let Some(MasterKeySpec::Kms(k)) = resolve(None, &env, &none).unwrap().master_key else {
        panic!()
    };
    assert_eq!(k.region.as_deref(), Some("us-east-2"));
    assert_eq!(k.endpoint.as_deref(), Some("http://127.0.0.1:8600"));
    assert_eq!(k.encryption_context["context"], "mine");
    let both = env_of(&[("KURA_AWS_CMK", "alias/a"), ("KURA_MASTER_KEY_ENV", "x")]);
    assert!(resolve(None, &both, &none).is_err());

    let file = r#"
[security.encryption.master-key]
type = "kms"
key-id = "0987dcba-09fe-87dc-65ba-ab0987654321"
region = "us-west-2"
endpoint = "https://kms.example.internal"
encryption-context = { app = "kura", tier = "prod" }
[security.encryption.previous-master-key]
type = "kms"
key-id = "alias/old"
encryption-context = "legacy"
"#;
    let env = env_of(&[("AWS_REGION", "ap-northeast-1")]);
    let s = resolve(Some((Path::new("k.toml"), file)), &env, &none).unwrap();
    let Some(MasterKeySpec::Kms(k)) = &s.master_key else {
        panic!()
    };
    assert_eq!(k.region.as_deref(), Some("us-west-2"));
    assert_eq!(k.encryption_context.len(), 2);
    let Some(MasterKeySpec::Kms(p)) = &s.previous_master_key else {
        panic!()
    };
    assert_eq!(p.region.as_deref(), Some("ap-northeast-1"));
    assert_eq!(p.encryption_context["context"], "legacy");
    assert!(format!("{:?}", s.master_key).contains("0987dcba"));
}

#[test]
fn pkcs11_master_key_takes_its_pin_from_the_environment_only() {
    let file = r#"
[security.encryption.master-key]
type = "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so"
token-label = "kura"
key-label = "kura-master"
pin-env = "HSM_PIN"
"#;
    let none = Overrides::default();
    let p = Path::new("k.toml");
    let s = resolve(Some((p, file)), &env_of(&[("HSM_PIN", "123456")]), &none).unwrap();
    let Some(MasterKeySpec::Pkcs11(h)) = &s.master_key else {
        panic!()
    };
    assert_eq!(h.token_label, "kura");
    assert_eq!(h.pin.as_deref().map(String::as_str), Some("123456"));
    assert!(!format!("{s:?}").contains("123456"));
    let s = resolve(Some((p, file)), &env_of(&[]), &none).unwrap();
    let Some(MasterKeySpec::Pkcs11(h)) = &s.master_key else {
        panic!()
    };
    assert!(h.pin.is_none());
    let with_pin = format!("{file}pin = \"123456\"\n");
    let e = resolve(Some((p, &with_pin)), &env_of(&[]), &none).unwrap_err();
    assert!(!e.to_string().contains("123456"), "{e}");
}
