use super::*;
use crate::LocalMasterKey;
use crate::config::{DEFAULT_ROTATION_PERIOD, Method};
use kura_crypto::Key256;
use std::collections::HashSet;

const LEGACY: [u8; 16] = *b"0123456789abcdef";

fn vault() -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Keystore> =
        Arc::new(SqliteKeystore::open(&dir.path().join("keystore.db")).unwrap());
    let master =
        Arc::new(LocalMasterKey::new(&Key256::generate().unwrap(), "test".into()).unwrap());
    let k = Keyring::init(
        store,
        master,
        KeyringSettings::new(Method::default(), DEFAULT_ROTATION_PERIOD),
        Arc::new(SystemClock),
    )
    .unwrap();
    (dir, Vault::from_keyring(k))
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    let mut c = EncryptionContext::new();
    for (k, v) in pairs {
        c.insert(*k, *v);
    }
    c
}

fn legacy_value(plain: &[u8], format: LegacyFormat) -> Vec<u8> {
    let iv = [7u8; 16];
    let mut raw = iv.to_vec();
    raw.extend(kura_crypto::legacy::encrypt_cbc(&LEGACY, iv, plain).unwrap());
    match format {
        LegacyFormat::Base64IvCt => STANDARD.encode(raw).into_bytes(),
        LegacyFormat::HexIvCt => hex::encode(raw).into_bytes(),
        LegacyFormat::RawIvCt => raw,
    }
}

#[test]
fn base64_text_starting_with_the_magic_letters_is_not_an_envelope() {
    // One base64 legacy value in 2^18 starts with the letters "KRE".
    let text = format!("KRE{}", "A".repeat(41));
    assert!(STANDARD.decode(&text).is_ok());
    assert!(find_envelope(text.as_bytes()).is_none());
    assert!(
        find_envelope(b"KRE").is_some(),
        "a truncated envelope is one"
    );
    assert!(find_envelope(b"short").is_none());
    let (_d, v) = vault();
    let env = v.seal(b"x", &ctx(&[])).unwrap();
    assert_eq!(find_envelope(&env).unwrap()[..], env[..]);
    let b64 = format!("{}\n", STANDARD.encode(&env));
    assert_eq!(find_envelope(b64.as_bytes()).unwrap()[..], env[..]);
}

#[test]
fn legacy_encryptor_round_trips_in_every_format() {
    let (_d, v) = vault();
    let key = LegacyKey::from_bytes(&LEGACY).unwrap();
    let c = ctx(&[("row", "1")]);
    for format in [
        LegacyFormat::Base64IvCt,
        LegacyFormat::HexIvCt,
        LegacyFormat::RawIvCt,
    ] {
        for plain in [&b""[..], b"x", b"sixteen bytes!!!", &[0u8; 100]] {
            let a = key.encrypt(plain, format).unwrap();
            let b = key.encrypt(plain, format).unwrap();
            assert_ne!(a, b, "a fresh IV each time");
            let (out, origin) = v.open_any(&a, &c, Some((&key, format))).unwrap();
            assert_eq!((&out[..], origin), (plain, Origin::Legacy));
            assert_eq!(legacy_value(plain, format).len(), a.len());
        }
    }
}

fn is_decrypt(e: &Error) -> bool {
    matches!(e, Error::Format(kura_format::Error::Decrypt))
}

#[test]
fn vault_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Vault>();
    check::<LegacyKey>();
}

#[test]
fn seal_open_round_trip_with_contexts() {
    let (_d, v) = vault();
    let c = ctx(&[("table", "users"), ("column", "card")]);
    let env = v.seal(b"4111", &c).unwrap();
    assert!(env.starts_with(b"KRE\x01"));
    assert_eq!(env.len(), envelope::sealed_len(4));
    assert_eq!(&v.open(&env, &c).unwrap()[..], b"4111");
    let empty = v.seal(b"", &EncryptionContext::new()).unwrap();
    assert!(
        v.open(&empty, &EncryptionContext::new())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn wrong_context_fails_opaquely() {
    let (_d, v) = vault();
    let env = v.seal(b"secret", &ctx(&[("table", "users")])).unwrap();
    for wrong in [
        ctx(&[]),
        ctx(&[("table", "orders")]),
        ctx(&[("x", "users")]),
    ] {
        let e = v.open(&env, &wrong).unwrap_err();
        assert!(is_decrypt(&e), "{e}");
        assert!(e.to_string().starts_with("decryption failed"), "{e}");
    }
}

#[test]
fn dual_reader_reads_envelopes_raw_and_base64() {
    let (_d, v) = vault();
    let key = LegacyKey::from_bytes(&LEGACY).unwrap();
    let c = ctx(&[("app", "billing")]);
    let env = v.seal(b"new value", &c).unwrap();
    for legacy in [None, Some((&key, LegacyFormat::Base64IvCt))] {
        let (p, o) = v.open_any(&env, &c, legacy).unwrap();
        assert_eq!((&p[..], o), (&b"new value"[..], Origin::Envelope));
        let text = format!("{}\n", STANDARD.encode(&env));
        let (p, o) = v.open_any(text.as_bytes(), &c, legacy).unwrap();
        assert_eq!((&p[..], o), (&b"new value"[..], Origin::Envelope));
    }
}

#[test]
fn dual_reader_reads_legacy_base64_and_hex() {
    let (_d, v) = vault();
    let c = ctx(&[("app", "billing")]);
    for key in [
        LegacyKey::from_text(format!("{}\n", hex::encode(LEGACY)).as_bytes()).unwrap(),
        LegacyKey::from_text(STANDARD.encode(LEGACY).as_bytes()).unwrap(),
    ] {
        for format in [LegacyFormat::Base64IvCt, LegacyFormat::HexIvCt] {
            let value = legacy_value(b"old value from 2015", format);
            let (p, o) = v.open_any(&value, &c, Some((&key, format))).unwrap();
            assert_eq!((&p[..], o), (&b"old value from 2015"[..], Origin::Legacy));
        }
    }
    // Read in the wrong format, a legacy value is refused with a clear message.
    let key = LegacyKey::from_bytes(&LEGACY).unwrap();
    let value = legacy_value(b"x", LegacyFormat::Base64IvCt);
    let e = v
        .open_any(&value, &c, Some((&key, LegacyFormat::HexIvCt)))
        .unwrap_err();
    assert!(e.to_string().contains("not hex-iv-ct text"), "{e}");
    // Under another key the padding check fails: the opaque error.
    let other = LegacyKey::from_bytes(&[9u8; 16]).unwrap();
    let value = legacy_value(b"x", LegacyFormat::HexIvCt);
    let e = v
        .open_any(&value, &c, Some((&other, LegacyFormat::HexIvCt)))
        .unwrap_err();
    assert!(is_decrypt(&e) || matches!(e, Error::LegacyValue(_)), "{e}");
}

#[test]
fn a_tampered_envelope_never_falls_back_to_legacy() {
    let (_d, v) = vault();
    let key = LegacyKey::from_bytes(&LEGACY).unwrap();
    let c = ctx(&[("app", "billing")]);
    let mut env = v.seal(b"new value", &c).unwrap();
    let last = env.len() - 1;
    env[last] ^= 1;
    for format in [LegacyFormat::Base64IvCt, LegacyFormat::HexIvCt] {
        let e = v.open_any(&env, &c, Some((&key, format))).unwrap_err();
        assert!(is_decrypt(&e), "{e}");
        let text = STANDARD.encode(&env);
        let e = v
            .open_any(text.as_bytes(), &c, Some((&key, format)))
            .unwrap_err();
        assert!(is_decrypt(&e), "{e}");
    }
    // A newer envelope version is reported as such, not read as legacy.
    env[3] = 2;
    let e = v
        .open_any(&env, &c, Some((&key, LegacyFormat::Base64IvCt)))
        .unwrap_err();
    assert!(e.to_string().contains("unsupported"), "{e}");
}

#[test]
fn a_legacy_value_without_a_key_is_refused_clearly() {
    let (_d, v) = vault();
    let value = legacy_value(b"old", LegacyFormat::Base64IvCt);
    let e = v.open_any(&value, &ctx(&[]), None).unwrap_err();
    assert!(matches!(e, Error::UnrecognisedValue));
    let m = e.to_string();
    assert!(m.contains("envelope") && m.contains("legacy"), "{m}");
}

#[test]
fn legacy_keys_of_the_wrong_size_or_encoding_are_refused() {
    for bad in [
        &b"00112233445566778899aabbccddeeff0011"[..],
        b"AAAA",
        b"not a key!",
        b"",
    ] {
        let e = LegacyKey::from_text(bad).unwrap_err();
        assert!(matches!(e, Error::LegacyKey(_)), "{e}");
    }
    let e = LegacyKey::from_bytes(&[0u8; 32]).unwrap_err();
    assert!(e.to_string().contains("must be 16 bytes"), "{e}");
    assert_eq!(
        format!("{:?}", LegacyKey::from_bytes(&LEGACY).unwrap()),
        "LegacyKey(…)"
    );
}

#[test]
fn many_threads_seal_distinct_envelopes_that_all_open() {
    let (_d, v) = vault();
    let c = ctx(&[("app", "threads")]);
    let sealed: Vec<(Vec<u8>, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (v, c) = (&v, &c);
                s.spawn(move || {
                    (0..50)
                        .map(|i| {
                            let plain = format!("value {t}/{i}").into_bytes();
                            (v.seal(&plain, c).unwrap(), plain)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(sealed.len(), 400);
    let distinct: HashSet<&Vec<u8>> = sealed.iter().map(|(e, _)| e).collect();
    assert_eq!(distinct.len(), 400);
    let shared = Arc::new(v);
    for (env, plain) in &sealed {
        assert_eq!(&shared.open(env, &c).unwrap()[..], &plain[..]);
    }
}

#[test]
fn from_config_resolves_like_the_cli() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = Key256::generate().unwrap();
    let key_path = dir.path().join("master.key");
    std::fs::write(&key_path, format!("{}\n", hex::encode(key.expose_secret()))).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o400)).unwrap();
    let data_dir = dir.path().join("data");
    let overrides = Overrides {
        data_dir: Some(data_dir.clone()),
        master_key_file: Some(key_path.clone()),
        previous_master_key_file: None,
        ..Overrides::default()
    };
    // Nothing initialised yet: the keystore's own error.
    let e = Vault::from_config(None, &overrides).unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e}");
    let store: Arc<dyn Keystore> =
        Arc::new(SqliteKeystore::open(&data_dir.join("keystore.db")).unwrap());
    let master = Arc::new(LocalMasterKey::from_file(&key_path, "test").unwrap());
    let k = Keyring::init(
        store,
        master,
        KeyringSettings::new(Method::default(), DEFAULT_ROTATION_PERIOD),
        Arc::new(SystemClock),
    )
    .unwrap();
    let env = Vault::from_keyring(k).seal(b"hi", &ctx(&[])).unwrap();
    let v = Vault::from_config(Some(Path::new("")), &overrides).unwrap();
    assert_eq!(&v.open(&env, &ctx(&[])).unwrap()[..], b"hi");
    // A configuration file that is not there is an I/O error naming it.
    let e = Vault::from_config(Some(&dir.path().join("nope.toml")), &overrides).unwrap_err();
    assert!(e.to_string().contains("nope.toml"), "{e}");
}
