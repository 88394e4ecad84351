//! Helpers shared by the keystore integration tests: a keystore path in a fresh temporary
//! directory, records to insert, and an initialised store; a [`Backend`] fixture giving a
//! fresh store on SQLite or PostgreSQL; and the [`conformance`] suite that every backend
//! must pass.

#![allow(dead_code, unused_imports, unused_macros)]

pub(crate) mod backend;
pub(crate) mod conformance;

pub(crate) use backend::{Backend, Fixture};

use std::path::PathBuf;

use kura_store::{
    Change, DataKeyRecord, DataKeyState, KekRecord, KekState, Keystore, Snapshot, SqliteKeystore,
};
use tempfile::TempDir;

pub(crate) const KEK_ID: u64 = 0x1234_5678_9abc_def0;
pub(crate) const DATA_KEY_ID: u64 = 42;

pub(crate) fn temp_path() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.db");
    (dir, path)
}

pub(crate) fn kek(id: u64, state: KekState, created_at: i64) -> KekRecord {
    KekRecord {
        id,
        wrapped: format!("wrapped kek {id}").into_bytes(),
        master_key_id: format!("master-{id}"),
        state,
        created_at,
        retired_at: (state == KekState::Retired).then_some(created_at + 1),
    }
}

pub(crate) fn data_key(
    id: u64,
    keyring: &str,
    state: DataKeyState,
    created_at: i64,
) -> DataKeyRecord {
    DataKeyRecord {
        id,
        keyring: keyring.into(),
        method: "aes256-ctr".into(),
        wrapped: format!("wrapped data key {id}").into_bytes(),
        kek_id: KEK_ID,
        state,
        created_at,
        activated_at: (state == DataKeyState::Active).then_some(created_at),
        retired_at: None,
        destroyed_at: None,
    }
}

/// What an initialised store starts with: one active KEK ([`KEK_ID`]) and one active data
/// key ([`DATA_KEY_ID`]) in `default`.
pub(crate) fn initial_changes() -> Vec<Change> {
    vec![
        Change::InsertKek(kek(KEK_ID, KekState::Active, 1_000)),
        Change::InsertDataKey(data_key(
            DATA_KEY_ID,
            "default",
            DataKeyState::Active,
            1_000,
        )),
    ]
}

/// A SQLite store initialised with [`initial_changes`].
pub(crate) fn initialised() -> (TempDir, PathBuf, SqliteKeystore) {
    let (dir, path) = temp_path();
    let store = SqliteKeystore::open(&path).unwrap();
    let generation = store.initialize(&initial_changes()).unwrap();
    assert_eq!(generation, 1);
    (dir, path, store)
}

pub(crate) fn snapshot(store: &SqliteKeystore) -> Snapshot {
    store.snapshot().unwrap().expect("initialised")
}
