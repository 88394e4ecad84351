//! Conformance: rejected changes (ids out of range, missing rows, keys in the wrong state)
//! and their messages, the same on every backend.

use kura_store::{Change, DataKeyRecord, DataKeyState, Error, KekState};

use super::super::{Backend, DATA_KEY_ID, Fixture, KEK_ID, data_key, kek};
use super::invalid_message;

pub(crate) fn out_of_range_ids_in_changes_are_rejected(b: Backend) {
    let f = Fixture::initialised(b);
    let store = &f.store;
    for change in [
        Change::InsertKek(kek(1 << 63, KekState::Retired, 1)),
        Change::InsertDataKey(data_key(0, "other", DataKeyState::DecryptOnly, 1)),
        Change::InsertDataKey(DataKeyRecord {
            kek_id: 0,
            ..data_key(11, "other", DataKeyState::DecryptOnly, 1)
        }),
        Change::RetireKek { id: 0, at: 1 },
        Change::DestroyDataKey {
            id: u64::MAX,
            at: 1,
        },
    ] {
        let msg = invalid_message(store.commit(1, std::slice::from_ref(&change)));
        assert!(msg.contains("out of range"), "{change:?}: {msg}");
    }
    assert_eq!(store.generation().unwrap(), Some(1));
}

pub(crate) fn initialize_must_add_a_kek(b: Backend) {
    let f = Fixture::fresh(b);
    let store = &f.store;
    let msg = invalid_message(store.initialize(&[]));
    assert!(msg.contains("KEK"), "{msg}");
    // A data key alone is rolled back with the rest (its KEK does not exist anyway).
    let msg = invalid_message(store.initialize(&[Change::InsertDataKey(data_key(
        DATA_KEY_ID,
        "default",
        DataKeyState::Active,
        1,
    ))]));
    assert!(
        msg.contains(&format!("there is no KEK with id {KEK_ID}")),
        "{msg}"
    );
    assert_eq!(store.generation().unwrap(), None);
    assert_eq!(store.snapshot().unwrap(), None);
}

pub(crate) fn commit_on_an_uninitialised_store_is_not_initialized(b: Backend) {
    let f = Fixture::fresh(b);
    let store = &f.store;
    match store.commit(0, &[Change::InsertKek(kek(1, KekState::Active, 1))]) {
        Err(Error::NotInitialized { location }) => assert_eq!(location, f.location),
        other => panic!("expected NotInitialized, got {other:?}"),
    }
    assert_eq!(store.snapshot().unwrap(), None);
}

pub(crate) fn state_transitions_are_checked(b: Backend) {
    let f = Fixture::initialised(b);
    let store = &f.store;
    let (k, d) = (KEK_ID, DATA_KEY_ID);
    let cases: Vec<(Change, String)> = vec![
        (
            Change::ActivateDataKey { id: d, at: 5 },
            format!("cannot activate data key {d}: it is active"),
        ),
        (
            Change::RetireKek { id: 77, at: 5 },
            "there is no KEK with id 77".into(),
        ),
        (
            Change::RewrapKek {
                id: 77,
                wrapped: vec![1],
                master_key_id: "m".into(),
            },
            "there is no KEK with id 77".into(),
        ),
        (
            Change::RewrapDataKey {
                id: d,
                wrapped: vec![1],
                kek_id: 77,
            },
            "there is no KEK with id 77".into(),
        ),
        (
            Change::InsertDataKey(DataKeyRecord {
                kek_id: 77,
                ..data_key(11, "x", DataKeyState::DecryptOnly, 1)
            }),
            "there is no KEK with id 77".into(),
        ),
        (
            Change::InsertKek(kek(k, KekState::Retired, 1)),
            format!("a KEK with id {k} already exists"),
        ),
        (
            Change::InsertDataKey(data_key(d, "x", DataKeyState::DecryptOnly, 1)),
            format!("a data key with id {d} already exists"),
        ),
        (
            Change::InsertKek(kek(2, KekState::Active, 1)),
            format!("KEK {k} is already active"),
        ),
        (
            Change::InsertDataKey(DataKeyRecord {
                wrapped: vec![1],
                ..data_key(11, "x", DataKeyState::Destroyed, 1)
            }),
            "still has key material".into(),
        ),
    ];
    for (change, expected) in &cases {
        let msg = invalid_message(store.commit(1, std::slice::from_ref(change)));
        assert!(msg.contains(expected.as_str()), "{change:?}: {msg}");
    }
    assert_eq!(store.generation().unwrap(), Some(1));

    // Retired and destroyed keys cannot be retired, rewrapped or destroyed again.
    store
        .commit(
            1,
            &[
                Change::RetireKek { id: k, at: 6 },
                Change::InsertKek(kek(2, KekState::Active, 6)),
                Change::DestroyDataKey { id: d, at: 6 },
            ],
        )
        .unwrap();
    let cases: Vec<(Change, String)> = vec![
        (
            Change::RetireKek { id: k, at: 7 },
            format!("cannot retire KEK {k}: it is retired"),
        ),
        (
            Change::RetireDataKey { id: d, at: 7 },
            format!("cannot retire data key {d}: it is destroyed"),
        ),
        (
            Change::DestroyDataKey { id: d, at: 7 },
            format!("cannot destroy data key {d}: it is destroyed"),
        ),
        (
            Change::RewrapDataKey {
                id: d,
                wrapped: vec![1],
                kek_id: 2,
            },
            format!("cannot rewrap data key {d}: it is destroyed"),
        ),
        (
            Change::ActivateDataKey { id: d, at: 7 },
            format!("cannot activate data key {d}: it is destroyed"),
        ),
    ];
    for (change, expected) in &cases {
        let msg = invalid_message(store.commit(2, std::slice::from_ref(change)));
        assert!(msg.contains(expected.as_str()), "{change:?}: {msg}");
    }
    assert_eq!(store.generation().unwrap(), Some(2));
}
