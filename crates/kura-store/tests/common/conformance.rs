//! The conformance suite: what every keystore backend must do, through the `Keystore`,
//! `ObjectStore` and `Store` traits alone (round trips, ordering, the generation guard, the
//! one-active-key invariants, rollback, the messages of rejected changes, objects, export and
//! replacement). Each test body takes a [`Backend`]; [`conformance_tests!`] makes one
//! `#[test]` per body for a backend.

mod objects;
mod rejected;
mod replace;

use kura_store::{
    Change, DataKeyRecord, DataKeyState, Error, KekRecord, KekState, Keystore, PgKeystore,
    Snapshot, SqliteKeystore,
};

use super::{Backend, DATA_KEY_ID, Fixture, KEK_ID, data_key, kek};

pub(crate) use objects::*;
pub(crate) use rejected::*;
pub(crate) use replace::*;

/// One `#[test]` per conformance test, running it against `$backend`.
macro_rules! conformance_tests {
    ($backend:expr) => {
        $crate::common::conformance::conformance_tests!(@each $backend;
            keystore_is_send_and_sync,
            new_store_is_uninitialised,
            initialize_then_snapshot_round_trips_every_field,
            snapshot_orders_by_created_at_then_insertion,
            initialize_twice_is_already_initialized,
            commit_bumps_generation_and_applies_changes,
            stale_generation_is_a_conflict_and_changes_nothing,
            two_active_data_keys_in_one_keyring_is_invalid_and_rolls_back,
            two_active_keks_is_invalid,
            active_data_keys_in_different_keyrings_are_fine,
            destroy_empties_wrapped,
            unknown_id_is_invalid_and_rolls_back,
            rewrap_replaces_blobs_and_references,
            out_of_range_ids_in_changes_are_rejected,
            initialize_must_add_a_kek,
            commit_on_an_uninitialised_store_is_not_initialized,
            state_transitions_are_checked,
            a_second_handle_sees_commits_and_conflicts,
            objects_create_get_update_delete,
            objects_quiet_writes_leave_the_generation_alone,
            objects_batches_are_atomic,
            objects_list_by_prefix_and_page,
            objects_update_of_a_missing_object_is_invalid,
            objects_two_handles_conflict_on_one_version,
            replace_into_an_empty_keystore_and_back_out,
            replace_replaces_everything_but_nodes_at_the_expected_generation,
            replace_a_failed_replacement_changes_nothing,
        );
    };
    (@each $backend:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::common::conformance::$name($backend);
            }
        )*
    };
}

pub(crate) use conformance_tests;

pub(super) fn invalid_message<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::Invalid(msg)) => msg,
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

pub(crate) fn keystore_is_send_and_sync(b: Backend) {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SqliteKeystore>();
    assert_send_sync::<PgKeystore>();
    let f = Fixture::fresh(b);
    let store: Box<dyn Keystore> = f.open_again();
    assert_eq!(store.generation().unwrap(), None);
}

pub(crate) fn new_store_is_uninitialised(b: Backend) {
    let f = Fixture::fresh(b);
    let store = &f.store;
    assert_eq!(store.snapshot().unwrap(), None);
    assert_eq!(store.generation().unwrap(), None);
}

pub(crate) fn initialize_then_snapshot_round_trips_every_field(b: Backend) {
    let f = Fixture::fresh(b);
    let store = &f.store;
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

pub(crate) fn snapshot_orders_by_created_at_then_insertion(b: Backend) {
    let f = Fixture::initialised(b);
    let store = &f.store;
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
    let snap = f.snapshot();
    let ids: Vec<u64> = snap.data_keys.iter().map(|k| k.id).collect();
    assert_eq!(ids, [500, DATA_KEY_ID, 900, 5]);
    let ids: Vec<u64> = snap.keks.iter().map(|k| k.id).collect();
    assert_eq!(ids, [2, KEK_ID, 3]);
}

pub(crate) fn initialize_twice_is_already_initialized(b: Backend) {
    let f = Fixture::initialised(b);
    let store = &f.store;
    let before = f.snapshot();
    match store.initialize(&[Change::InsertKek(kek(99, KekState::Retired, 5))]) {
        Err(Error::AlreadyInitialized { location }) => {
            assert_eq!(location, f.location);
        }
        other => panic!("expected AlreadyInitialized, got {other:?}"),
    }
    assert_eq!(f.snapshot(), before);
}

pub(crate) fn commit_bumps_generation_and_applies_changes(b: Backend) {
    let f = Fixture::initialised(b);
    let store = &f.store;
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
    let snap = f.snapshot();
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

pub(crate) fn stale_generation_is_a_conflict_and_changes_nothing(b: Backend) {
    let f = Fixture::initialised(b);
    let store = &f.store;
    store.commit(1, &[]).unwrap();
    let before = f.snapshot();
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
    assert_eq!(f.snapshot(), before);
    // A generation from the future is a conflict too.
    assert!(matches!(
        store.commit(3, &[]),
        Err(Error::Conflict {
            expected: 3,
            found: 2
        })
    ));
}

pub(crate) fn two_active_data_keys_in_one_keyring_is_invalid_and_rolls_back(b: Backend) {
    let f = Fixture::initialised(b);
    let store = &f.store;
    let before = f.snapshot();
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
    assert_eq!(f.snapshot(), before);

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
    let before = f.snapshot();
    let msg = invalid_message(store.commit(2, &[Change::ActivateDataKey { id: 43, at: 3 }]));
    assert!(msg.contains(&DATA_KEY_ID.to_string()), "{msg}");
    assert_eq!(f.snapshot(), before);
}

pub(crate) fn two_active_keks_is_invalid(b: Backend) {
    let f = Fixture::initialised(b);
    let store = &f.store;
    let before = f.snapshot();
    let msg =
        invalid_message(store.commit(1, &[Change::InsertKek(kek(5, KekState::Active, 2_000))]));
    assert!(msg.contains("already active"), "{msg}");
    assert_eq!(f.snapshot(), before);

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
    let snap = f.snapshot();
    assert_eq!(snap.keks[0].state, KekState::Retired);
    assert_eq!(snap.keks[0].retired_at, Some(2_000));
    assert_eq!(snap.keks[1].state, KekState::Active);
}

pub(crate) fn active_data_keys_in_different_keyrings_are_fine(b: Backend) {
    let f = Fixture::initialised(b);
    let store = &f.store;
    store
        .commit(
            1,
            &[
                Change::InsertDataKey(data_key(43, "audit", DataKeyState::Active, 2_000)),
                Change::InsertDataKey(data_key(44, "streams", DataKeyState::Active, 2_000)),
            ],
        )
        .unwrap();
    let snap = f.snapshot();
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

pub(crate) fn destroy_empties_wrapped(b: Backend) {
    let f = Fixture::initialised(b);
    let store = &f.store;
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
    let key = &f.snapshot().data_keys[0];
    assert_eq!(key.state, DataKeyState::Destroyed);
    assert!(key.wrapped.is_empty());
    assert_eq!(key.retired_at, Some(10));
    assert_eq!(key.destroyed_at, Some(11));
}

pub(crate) fn unknown_id_is_invalid_and_rolls_back(b: Backend) {
    let f = Fixture::initialised(b);
    let store = &f.store;
    let before = f.snapshot();
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
        assert_eq!(f.snapshot(), before);
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
        assert_eq!(f.snapshot(), before);
    }
}

pub(crate) fn rewrap_replaces_blobs_and_references(b: Backend) {
    let f = Fixture::initialised(b);
    let store = &f.store;
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
    let snap = f.snapshot();
    assert_eq!(snap.keks[0].wrapped, vec![7; 40]);
    assert_eq!(snap.keks[0].master_key_id, "master-2");
    assert_eq!(snap.keks[0].state, KekState::Active);
    assert_eq!(snap.data_keys[0].wrapped, vec![8; 40]);
    assert_eq!(snap.data_keys[0].kek_id, 8);
    assert_eq!(snap.data_keys[0].state, DataKeyState::Active);
}

pub(crate) fn a_second_handle_sees_commits_and_conflicts(b: Backend) {
    let f = Fixture::initialised(b);
    let other = f.open_again();
    assert_eq!(other.generation().unwrap(), Some(1));
    assert_eq!(
        other
            .commit(
                1,
                &[Change::InsertDataKey(data_key(
                    43,
                    "audit",
                    DataKeyState::Active,
                    2_000
                ))]
            )
            .unwrap(),
        2
    );
    assert_eq!(f.store.generation().unwrap(), Some(2));
    assert_eq!(f.snapshot(), other.snapshot().unwrap().unwrap());
    assert!(matches!(
        f.store.commit(1, &[]),
        Err(Error::Conflict {
            expected: 1,
            found: 2
        })
    ));
}
