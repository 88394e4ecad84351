#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Keyrings other than the default one get their first data key when first opened, and
//! rotate independently of the default keyring.

use std::sync::Arc;

use kura_crypto::Key256;
use kura_format::{EncryptionContext, envelope};
use kura_keys::clock::SystemClock;
use kura_keys::config::{DEFAULT_ROTATION_PERIOD, Method};
use kura_keys::{Keyring, KeyringSettings, LocalMasterKey, MasterKey};
use kura_store::{Keystore, SqliteKeystore};

fn settings(keyring: &str) -> KeyringSettings {
    KeyringSettings {
        keyring: keyring.into(),
        ..KeyringSettings::new(Method::default(), DEFAULT_ROTATION_PERIOD)
    }
}

#[test]
fn a_named_keyring_gets_its_own_first_key_and_rotates_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Keystore> =
        Arc::new(SqliteKeystore::open(&dir.path().join("k.db")).unwrap());
    let master: Arc<dyn MasterKey> =
        Arc::new(LocalMasterKey::new(&Key256::generate().unwrap(), "t".into()).unwrap());
    let clock = Arc::new(SystemClock);
    let default = Keyring::init(
        store.clone(),
        master.clone(),
        settings("default"),
        clock.clone(),
    )
    .unwrap();
    let (kms, _) = Keyring::open(
        store.clone(),
        master.clone(),
        None,
        settings("kms"),
        clock.clone(),
    )
    .unwrap();
    assert_ne!(kms.active_data_key_id(), default.active_data_key_id());

    let ctx = EncryptionContext::new();
    let mut env = Vec::new();
    kms.seal(&ctx, b"kms material", &mut env).unwrap();
    assert_eq!(envelope::key_id(&env).unwrap(), kms.active_data_key_id());

    let before = default.active_data_key_id();
    kms.rotate_data_key().unwrap();
    default.refresh().unwrap();
    assert_eq!(
        default.active_data_key_id(),
        before,
        "rotating one keyring leaves the other alone"
    );

    // Reopening finds the keyring's key instead of making another one.
    let (again, _) = Keyring::open(store, master, None, settings("kms"), clock).unwrap();
    assert_eq!(again.active_data_key_id(), kms.active_data_key_id());
    let mut out = Vec::new();
    again.open_envelope(&ctx, &env, &mut out).unwrap();
    assert_eq!(out, b"kms material");
    let actives = again
        .status()
        .data_keys
        .iter()
        .filter(|d| d.state == "active")
        .map(|d| d.keyring.clone())
        .collect::<Vec<_>>();
    assert_eq!(actives.len(), 2);
    assert!(actives.contains(&"kms".to_string()) && actives.contains(&"default".to_string()));
}
