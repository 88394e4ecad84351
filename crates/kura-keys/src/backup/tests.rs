//! Unit tests of backups: round trip through a restore, every bit flip, truncation,
//! versions, wrong and previous master keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use kura_crypto::Key256;
use kura_format::EncryptionContext;
use kura_store::{DataKeyState, KekState, Keystore, ObjectChange, ObjectStore, SqliteKeystore};
use tempfile::TempDir;

use super::*;
use crate::clock::ManualClock;
use crate::{Keyring, KeyringSettings, LocalMasterKey};

const T0: i64 = 1_700_000_000;

fn master(source: &str) -> Arc<LocalMasterKey> {
    Arc::new(LocalMasterKey::new(&Key256::generate().unwrap(), source.into()).unwrap())
}

fn settings() -> KeyringSettings {
    KeyringSettings::new(Method::default(), Duration::from_secs(3600 * 24 * 365))
}

/// A keystore with two keyrings, a decrypt-only and a destroyed data key, an object, a
/// node registration and one sealed record; returns the record and its context.
struct Fixture {
    _dir: TempDir,
    store: Arc<SqliteKeystore>,
    master: Arc<LocalMasterKey>,
    sealed: Vec<u8>,
    ctx: EncryptionContext,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteKeystore::open(&dir.path().join("k.db")).unwrap());
    let master = master("test key");
    let clock = Arc::new(ManualClock::new(T0));
    let k = Keyring::init(store.clone(), master.clone(), settings(), clock.clone()).unwrap();
    let ctx: EncryptionContext = [("app", "t")].into_iter().collect();
    let mut doomed = Vec::new();
    k.seal(&ctx, b"gone", &mut doomed).unwrap();
    let doomed_id = k.active_data_key_id();
    k.rotate_data_key().unwrap();
    let mut sealed = Vec::new();
    k.seal(&ctx, b"hello", &mut sealed).unwrap();
    k.rotate_data_key().unwrap();
    k.destroy_data_key(doomed_id).unwrap();
    let other = KeyringSettings {
        keyring: "kms".into(),
        ..settings()
    };
    Keyring::open(store.clone(), master.clone(), None, other, clock).unwrap();
    store
        .apply(&[ObjectChange::Create {
            kind: "alias".into(),
            id: "alias/a".into(),
            doc: "{\"k\":1}".into(),
            blob: vec![1, 2],
        }])
        .unwrap();
    store
        .apply_quiet(&[ObjectChange::Create {
            kind: kura_store::NODE_KIND.into(),
            id: "n".into(),
            doc: "{}".into(),
            blob: Vec::new(),
        }])
        .unwrap();
    Fixture {
        _dir: dir,
        store,
        master,
        sealed,
        ctx,
    }
}

fn fresh() -> (TempDir, Arc<SqliteKeystore>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SqliteKeystore::open(&dir.path().join("k.db")).unwrap());
    (dir, s)
}

#[test]
fn round_trip_through_a_restore() {
    let f = fixture();
    let (bytes, summary) = create(&*f.store, &*f.master, None, T0 + 5).unwrap();
    assert_eq!(&bytes[..4], b"KRB\x01");
    assert_eq!(summary.master_key_id, f.master.id());
    assert_eq!(summary.master_key_source, "test key");
    assert_eq!(summary.keks, 1);
    assert_eq!(
        summary.data_keys,
        DataKeyCounts {
            active: 2,
            decrypt_only: 1,
            destroyed: 1
        }
    );
    assert_eq!(summary.keyrings, ["default", "kms"]);
    assert_eq!(summary.objects, 1, "the node is not backed up");
    let old = f.store.snapshot().unwrap().unwrap();

    let v = open(&bytes, &*f.master, None).unwrap();
    assert_eq!(v.summary(), summary);
    let (_d, target) = fresh();
    let r = restore(&*target, &v, &*f.master, Method::default(), None, T0 + 10).unwrap();
    assert_eq!(r.decrypt_only, 3);
    assert_eq!(r.destroyed, 1);
    assert_eq!(r.new_active.len(), 2);
    let snap = target.snapshot().unwrap().unwrap();
    assert_eq!(snap.keks.len(), 1);
    assert_ne!(snap.keks[0].id, old.keks[0].id, "a new KEK");
    assert_eq!(snap.keks[0].state, KekState::Active);
    for d in &old.data_keys {
        let n = snap.data_keys.iter().find(|n| n.id == d.id).unwrap();
        let want = if d.state == DataKeyState::Destroyed {
            DataKeyState::Destroyed
        } else {
            DataKeyState::DecryptOnly
        };
        assert_eq!(n.state, want);
        assert_eq!(n.created_at, d.created_at);
        assert_eq!(n.activated_at, d.activated_at);
        assert_eq!(n.kek_id, snap.keks[0].id);
        if d.state == DataKeyState::Active {
            assert_eq!(n.retired_at, Some(T0 + 10));
        }
    }
    assert_eq!(
        target.get("alias", "alias/a").unwrap().unwrap().doc,
        "{\"k\":1}"
    );
    assert!(target.get(kura_store::NODE_KIND, "n").unwrap().is_none());

    // The old record opens; new ones are sealed under a new key.
    let clock = Arc::new(ManualClock::new(T0 + 20));
    let (k, _) = Keyring::open(target.clone(), f.master.clone(), None, settings(), clock).unwrap();
    let mut out = Vec::new();
    k.open_envelope(&f.ctx, &f.sealed, &mut out).unwrap();
    assert_eq!(out, b"hello");
    assert!(!old.data_keys.iter().any(|d| d.id == k.active_data_key_id()));
    let new_default = r
        .new_active
        .iter()
        .find(|n| n.keyring == "default")
        .unwrap();
    assert_eq!(k.active_data_key_id().to_string(), new_default.id);

    // A second restore into what is now initialised needs the generation.
    let again = restore(&*target, &v, &*f.master, Method::default(), None, T0 + 30);
    assert!(matches!(
        again,
        Err(Error::Store(kura_store::Error::AlreadyInitialized { .. }))
    ));
    let g = target.generation().unwrap();
    restore(&*target, &v, &*f.master, Method::default(), g, T0 + 30).unwrap();
}

/// A small backup: one KEK, one data key, no objects.
fn small() -> (Vec<u8>, Arc<LocalMasterKey>) {
    let (_d, store) = fresh();
    let m = master("small");
    Keyring::init(
        store.clone(),
        m.clone(),
        settings(),
        Arc::new(ManualClock::new(T0)),
    )
    .unwrap();
    let (bytes, _) = create(&*store, &*m, None, T0).unwrap();
    (bytes, m)
}

#[test]
fn every_bit_flip_is_the_one_damaged_error() {
    let (bytes, m) = small();
    open(&bytes, &*m, None).unwrap();
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        match open(&b, &*m, None) {
            Err(Error::BackupDamaged) => {}
            other => panic!("bit {i}: {:?}", other.err()),
        }
    }
}

#[test]
fn a_change_with_a_fixed_checksum_fails_authentication() {
    let (bytes, m) = small();
    let t = bytes.len() - 32;
    let recorded = m.id().to_string();
    for i in 4..t {
        let mut b = bytes[..t].to_vec();
        b[i] ^= 0x01;
        let sum = sha256(&[&b]);
        b.extend_from_slice(&sum);
        match open(&b, &*m, None) {
            Err(Error::BackupDamaged) => {}
            // The master key id names another key: said so, never accepted.
            Err(Error::BackupWrongMasterKey { recorded: r, .. }) if r != recorded => {}
            other => panic!("byte {i}: {:?}", other.err()),
        }
    }
}

#[test]
fn truncated_or_extended_backups_are_damaged() {
    let (bytes, m) = small();
    for n in 0..bytes.len() {
        assert!(matches!(
            open(&bytes[..n], &*m, None),
            Err(Error::BackupDamaged)
        ));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        open(&longer, &*m, None),
        Err(Error::BackupDamaged)
    ));
    assert!(matches!(
        open(
            b"SQLite format 3\0 and more bytes than a trailer holds, surely",
            &*m,
            None
        ),
        Err(Error::BackupDamaged)
    ));
}

#[test]
fn an_unknown_version_is_named() {
    let (bytes, m) = small();
    let mut b = bytes[..bytes.len() - 32].to_vec();
    b[3] = 2;
    let sum = sha256(&[&b]);
    b.extend_from_slice(&sum);
    let e = open(&b, &*m, None).err().unwrap();
    assert!(matches!(
        e,
        Error::BackupVersion {
            found: 2,
            supported: 1
        }
    ));
    assert!(e.to_string().contains("version 2"), "{e}");
}

#[test]
fn the_master_key_that_made_it_is_needed() {
    let (bytes, m) = small();
    let other = master("other key");
    let e = open(&bytes, &*other, None).err().unwrap();
    let msg = e.to_string();
    assert!(matches!(e, Error::BackupWrongMasterKey { .. }));
    assert!(msg.contains(m.id()) && msg.contains(other.id()), "{msg}");
    assert!(
        msg.contains("small"),
        "names where the key was read from: {msg}"
    );
    // As the previous master key it is found; a restore wraps the new KEK under the current.
    let v = open(&bytes, &*other, Some(&*m)).unwrap();
    let (_d, target) = fresh();
    restore(&*target, &v, &*other, Method::default(), None, T0).unwrap();
    let snap = target.snapshot().unwrap().unwrap();
    assert_eq!(snap.keks[0].master_key_id, other.id());
}

#[test]
fn an_uninitialised_keystore_cannot_be_backed_up() {
    let (_d, store) = fresh();
    let m = master("m");
    assert!(matches!(
        create(&*store, &*m, None, T0),
        Err(Error::Store(kura_store::Error::NotInitialized { .. }))
    ));
}
