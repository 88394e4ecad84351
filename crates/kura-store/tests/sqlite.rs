#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Behaviour of `SqliteKeystore` through the `Keystore` trait: round trips, ordering, the
//! generation guard, the one-active-key invariants and rollback. File-level behaviour
//! (persistence, modes, schema versions, concurrency) is in `sqlite_files.rs`.

mod common;

use common::{DATA_KEY_ID, KEK_ID, data_key, initialised, kek, snapshot, temp_path};
use kura_store::{
    Change, DataKeyRecord, DataKeyState, Error, KekRecord, KekState, Keystore, Snapshot,
    SqliteKeystore,
};

fn invalid_message<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::Invalid(msg)) => msg,
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

#[test]
fn keystore_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SqliteKeystore>();
    let (_dir, path) = temp_path();
    let _: Box<dyn Keystore> = Box::new(SqliteKeystore::open(&path).unwrap());
}

#[test]
fn new_store_is_uninitialised() {
    let (_dir, path) = temp_path();
    let store = SqliteKeystore::open(&path).unwrap();
    assert_eq!(store.snapshot().unwrap(), None);
    assert_eq!(store.generation().unwrap(), None);
}

#[test]
fn initialize_then_snapshot_round_trips_every_field() {
    let (_dir, path) = temp_path();
    let store = SqliteKeystore::open(&path).unwrap();
    let keks = vec![
        KekRecord {
            id: 7,
            wrapped: vec![0, 1, 2, 255],
            master_key_id: "kms:arn:aws:kms:eu-west-1:1:key/abc".into(),
            state: KekState::Retired,
            created_at: -5,
            retired_at: Some(i64::MAX),
        },
        KekRecord {
            id: i64::MAX as u64,
            wrapped: vec![0xAB; 300],
            master_key_id: "fingerprint:ff".into(),
            state: KekState::Active,
            created_at: 1_700_000_000,
            retired_at: None,
        },
    ];
    let data_keys = vec![
        DataKeyRecord {
            id: 1,
            keyring: "default".into(),
            method: "aes256-ctr".into(),
            wrapped: vec![0x5A; 60],
            kek_id: i64::MAX as u64,
            state: DataKeyState::Active,
            created_at: 1_700_000_000,
            activated_at: Some(1_700_000_001),
            retired_at: None,
            destroyed_at: None,
        },
        DataKeyRecord {
            id: 2,
            keyring: "audit-λ".into(),
            method: "sm4-ctr".into(),
            wrapped: vec![1],
            kek_id: 7,
            state: DataKeyState::DecryptOnly,
            created_at: 1_700_000_002,
            activated_at: Some(i64::MIN),
            retired_at: Some(0),
            destroyed_at: None,
        },
        DataKeyRecord {
            id: 3,
            keyring: "default".into(),
            method: "aes256-ctr".into(),
            wrapped: Vec::new(),
            kek_id: 7,
            state: DataKeyState::Destroyed,
            created_at: 1_700_000_003,
            activated_at: None,
            retired_at: Some(1),
            destroyed_at: Some(2),
        },
    ];
    let changes: Vec<Change> = keks
        .iter()
        .cloned()
        .map(Change::InsertKek)
        .chain(data_keys.iter().cloned().map(Change::InsertDataKey))
        .collect();
    assert_eq!(store.initialize(&changes).unwrap(), 1);
    assert_eq!(store.generation().unwrap(), Some(1));
    assert_eq!(
        store.snapshot().unwrap(),
        Some(Snapshot {
            generation: 1,
            keks,
            data_keys,
        })
    );
}

#[test]
fn snapshot_orders_by_created_at_then_insertion() {
    let (_dir, _path, store) = initialised();
    // Ids chosen so that id order differs from insertion order.
    store
        .commit(
            1,
            &[
                Change::InsertDataKey(data_key(900, "a", DataKeyState::DecryptOnly, 2_000)),
                Change::InsertDataKey(data_key(5, "a", DataKeyState::DecryptOnly, 2_000)),
                Change::InsertDataKey(data_key(500, "a", DataKeyState::DecryptOnly, 500)),
                Change::InsertKek(kek(3, KekState::Retired, 1_000)),
                Change::InsertKek(kek(2, KekState::Retired, 999)),
            ],
        )
        .unwrap();
    let snap = snapshot(&store);
    let ids: Vec<u64> = snap.data_keys.iter().map(|k| k.id).collect();
    assert_eq!(ids, [500, DATA_KEY_ID, 900, 5]);
    let ids: Vec<u64> = snap.keks.iter().map(|k| k.id).collect();
    assert_eq!(ids, [2, KEK_ID, 3]);
}

#[test]
fn initialize_twice_is_already_initialized() {
    let (_dir, path, store) = initialised();
    let before = snapshot(&store);
    match store.initialize(&[Change::InsertKek(kek(99, KekState::Retired, 5))]) {
        Err(Error::AlreadyInitialized { location }) => {
            assert_eq!(location, path.display().to_string());
        }
        other => panic!("expected AlreadyInitialized, got {other:?}"),
    }
    assert_eq!(snapshot(&store), before);
}

#[test]
fn commit_bumps_generation_and_applies_changes() {
    let (_dir, _path, store) = initialised();
    let new_key = data_key(43, "default", DataKeyState::DecryptOnly, 2_000);
    let generation = store
        .commit(
            1,
            &[
                Change::InsertDataKey(new_key),
                Change::RetireDataKey {
                    id: DATA_KEY_ID,
                    at: 2_001,
                },
                Change::ActivateDataKey { id: 43, at: 2_002 },
            ],
        )
        .unwrap();
    assert_eq!(generation, 2);
    let snap = snapshot(&store);
    assert_eq!(snap.generation, 2);
    let old = &snap.data_keys[0];
    assert_eq!(old.state, DataKeyState::DecryptOnly);
    assert_eq!(old.retired_at, Some(2_001));
    let new = &snap.data_keys[1];
    assert_eq!(new.state, DataKeyState::Active);
    assert_eq!(new.activated_at, Some(2_002));

    // An empty batch still bumps the generation.
    assert_eq!(store.commit(2, &[]).unwrap(), 3);
    assert_eq!(store.generation().unwrap(), Some(3));
}

#[test]
fn stale_generation_is_a_conflict_and_changes_nothing() {
    let (_dir, _path, store) = initialised();
    store.commit(1, &[]).unwrap();
    let before = snapshot(&store);
    let result = store.commit(
        1,
        &[Change::RetireDataKey {
            id: DATA_KEY_ID,
            at: 5,
        }],
    );
    match result {
        Err(Error::Conflict { expected, found }) => {
            assert_eq!((expected, found), (1, 2));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(snapshot(&store), before);
    // A generation from the future is a conflict too.
    assert!(matches!(
        store.commit(3, &[]),
        Err(Error::Conflict {
            expected: 3,
            found: 2
        })
    ));
}

#[test]
fn two_active_data_keys_in_one_keyring_is_invalid_and_rolls_back() {
    let (_dir, _path, store) = initialised();
    let before = snapshot(&store);
    let msg = invalid_message(store.commit(
        1,
        &[
            // Applied first, then rolled back with the rest.
            Change::InsertDataKey(data_key(50, "other", DataKeyState::Active, 2_000)),
            Change::InsertDataKey(data_key(43, "default", DataKeyState::Active, 2_000)),
        ],
    ));
    assert!(
        msg.contains("default") && msg.contains("already has an active data key"),
        "{msg}"
    );
    assert_eq!(snapshot(&store), before);

    // Activating a second key is caught the same way.
    store
        .commit(
            1,
            &[Change::InsertDataKey(data_key(
                43,
                "default",
                DataKeyState::DecryptOnly,
                2_000,
            ))],
        )
        .unwrap();
    let before = snapshot(&store);
    let msg = invalid_message(store.commit(2, &[Change::ActivateDataKey { id: 43, at: 3 }]));
    assert!(msg.contains(&DATA_KEY_ID.to_string()), "{msg}");
    assert_eq!(snapshot(&store), before);
}

#[test]
fn two_active_keks_is_invalid() {
    let (_dir, _path, store) = initialised();
    let before = snapshot(&store);
    let msg =
        invalid_message(store.commit(1, &[Change::InsertKek(kek(5, KekState::Active, 2_000))]));
    assert!(msg.contains("already active"), "{msg}");
    assert_eq!(snapshot(&store), before);

    // Retiring first makes room.
    store
        .commit(
            1,
            &[
                Change::RetireKek {
                    id: KEK_ID,
                    at: 2_000,
                },
                Change::InsertKek(kek(5, KekState::Active, 2_000)),
            ],
        )
        .unwrap();
    let snap = snapshot(&store);
    assert_eq!(snap.keks[0].state, KekState::Retired);
    assert_eq!(snap.keks[0].retired_at, Some(2_000));
    assert_eq!(snap.keks[1].state, KekState::Active);
}

#[test]
fn active_data_keys_in_different_keyrings_are_fine() {
    let (_dir, _path, store) = initialised();
    store
        .commit(
            1,
            &[
                Change::InsertDataKey(data_key(43, "audit", DataKeyState::Active, 2_000)),
                Change::InsertDataKey(data_key(44, "streams", DataKeyState::Active, 2_000)),
            ],
        )
        .unwrap();
    let snap = snapshot(&store);
    let active: Vec<(&str, u64)> = snap
        .data_keys
        .iter()
        .filter(|k| k.state == DataKeyState::Active)
        .map(|k| (k.keyring.as_str(), k.id))
        .collect();
    assert_eq!(
        active,
        [("default", DATA_KEY_ID), ("audit", 43), ("streams", 44)]
    );
}

#[test]
fn destroy_empties_wrapped() {
    let (_dir, _path, store) = initialised();
    store
        .commit(
            1,
            &[
                Change::RetireDataKey {
                    id: DATA_KEY_ID,
                    at: 10,
                },
                Change::DestroyDataKey {
                    id: DATA_KEY_ID,
                    at: 11,
                },
            ],
        )
        .unwrap();
    let key = &snapshot(&store).data_keys[0];
    assert_eq!(key.state, DataKeyState::Destroyed);
    assert!(key.wrapped.is_empty());
    assert_eq!(key.retired_at, Some(10));
    assert_eq!(key.destroyed_at, Some(11));
}

#[test]
fn unknown_id_is_invalid_and_rolls_back() {
    let (_dir, _path, store) = initialised();
    let before = snapshot(&store);
    for change in [
        Change::RetireDataKey { id: 999, at: 1 },
        Change::ActivateDataKey { id: 999, at: 1 },
        Change::DestroyDataKey { id: 999, at: 1 },
        Change::RewrapDataKey {
            id: 999,
            wrapped: vec![1],
            kek_id: KEK_ID,
        },
    ] {
        let msg = invalid_message(store.commit(
            1,
            &[
                Change::RetireDataKey {
                    id: DATA_KEY_ID,
                    at: 1,
                },
                change.clone(),
            ],
        ));
        assert!(msg.contains("no data key with id 999"), "{change:?}: {msg}");
        assert_eq!(snapshot(&store), before);
    }
    for change in [
        Change::RetireKek { id: 999, at: 1 },
        Change::RewrapKek {
            id: 999,
            wrapped: vec![1],
            master_key_id: "m".into(),
        },
    ] {
        let msg = invalid_message(store.commit(1, std::slice::from_ref(&change)));
        assert!(msg.contains("no KEK with id 999"), "{change:?}: {msg}");
        assert_eq!(snapshot(&store), before);
    }
}

#[test]
fn rewrap_replaces_blobs_and_references() {
    let (_dir, _path, store) = initialised();
    store
        .commit(
            1,
            &[
                Change::RewrapKek {
                    id: KEK_ID,
                    wrapped: vec![7; 40],
                    master_key_id: "master-2".into(),
                },
                Change::InsertKek(kek(8, KekState::Retired, 1_500)),
                Change::RewrapDataKey {
                    id: DATA_KEY_ID,
                    wrapped: vec![8; 40],
                    kek_id: 8,
                },
            ],
        )
        .unwrap();
    let snap = snapshot(&store);
    assert_eq!(snap.keks[0].wrapped, vec![7; 40]);
    assert_eq!(snap.keks[0].master_key_id, "master-2");
    assert_eq!(snap.keks[0].state, KekState::Active);
    assert_eq!(snap.data_keys[0].wrapped, vec![8; 40]);
    assert_eq!(snap.data_keys[0].kek_id, 8);
    assert_eq!(snap.data_keys[0].state, DataKeyState::Active);
}
