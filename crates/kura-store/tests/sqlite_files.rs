#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `SqliteKeystore` and its files: opening, persistence, file modes, schema versions,
//! erasure of destroyed material, and concurrent writers on one file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Barrier};

mod common;

use common::{DATA_KEY_ID, KEK_ID, data_key, initialised, kek, snapshot, temp_path};
use kura_store::{Change, DataKeyRecord, DataKeyState, Error, KekState, Keystore, SqliteKeystore};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn destroyed_material_is_gone_from_the_files() {
    let (dir, path) = temp_path();
    let store = SqliteKeystore::open(&path).unwrap();
    let marker = b"MATERIAL-THAT-MUST-DISAPPEAR-0123456789".repeat(3);
    store
        .initialize(&[
            Change::InsertKek(kek(KEK_ID, KekState::Active, 1)),
            Change::InsertDataKey(DataKeyRecord {
                wrapped: marker.clone(),
                ..data_key(DATA_KEY_ID, "default", DataKeyState::DecryptOnly, 1)
            }),
        ])
        .unwrap();
    let contains_marker = |dir: &Path| {
        std::fs::read_dir(dir).unwrap().any(|entry| {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            bytes.windows(marker.len()).any(|w| w == marker)
        })
    };
    assert!(
        contains_marker(dir.path()),
        "the test should see the material first"
    );
    store
        .commit(
            1,
            &[Change::DestroyDataKey {
                id: DATA_KEY_ID,
                at: 2,
            }],
        )
        .unwrap();
    assert!(!contains_marker(dir.path()), "right after the commit");
    drop(store);
    assert!(!contains_marker(dir.path()), "after closing");
}

#[test]
fn reopen_after_drop_persists_everything() {
    let (_dir, path, store) = initialised();
    store
        .commit(
            1,
            &[
                Change::InsertDataKey(data_key(43, "audit", DataKeyState::Active, 2_000)),
                Change::RetireDataKey {
                    id: DATA_KEY_ID,
                    at: 2_001,
                },
            ],
        )
        .unwrap();
    let before = snapshot(&store);
    drop(store);
    let store = SqliteKeystore::open_existing(&path).unwrap();
    assert_eq!(snapshot(&store), before);
    assert_eq!(store.generation().unwrap(), Some(2));
    drop(store);
    let store = SqliteKeystore::open(&path).unwrap();
    assert_eq!(snapshot(&store), before);
}

#[test]
fn file_modes_are_private() {
    let (dir, _) = temp_path();
    let data_dir = dir.path().join("a").join("b");
    let path = data_dir.join("keystore.db");
    let store = SqliteKeystore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    store
        .initialize(&[Change::InsertKek(kek(KEK_ID, KekState::Active, 1))])
        .unwrap();
    // SQLite gives the WAL and shared-memory files the database file's mode.
    for suffix in ["-wal", "-shm"] {
        let side = data_dir.join(format!("keystore.db{suffix}"));
        assert!(side.exists(), "{}", side.display());
        assert_eq!(mode(&side), 0o600, "{}", side.display());
    }
}

#[test]
fn open_existing_on_missing_path_is_not_initialized_and_creates_nothing() {
    let (dir, _) = temp_path();
    let path = dir.path().join("missing").join("keystore.db");
    match SqliteKeystore::open_existing(&path) {
        Err(Error::NotInitialized { location }) => assert_eq!(location, path.display().to_string()),
        other => panic!("expected NotInitialized, got {other:?}"),
    }
    assert!(!dir.path().join("missing").exists());

    let path = dir.path().join("keystore.db");
    assert!(matches!(
        SqliteKeystore::open_existing(&path),
        Err(Error::NotInitialized { .. })
    ));
    assert!(!path.exists());
}

#[test]
fn schema_too_new_is_refused() {
    let (_dir, path, store) = initialised();
    drop(store);
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    for result in [
        SqliteKeystore::open(&path),
        SqliteKeystore::open_existing(&path),
    ] {
        match result {
            Err(Error::SchemaTooNew {
                location,
                found,
                supported,
            }) => {
                assert_eq!(location, path.display().to_string());
                assert_eq!(found, 99);
                assert_eq!(supported, 2);
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99, "the newer database was left alone");
}

#[test]
fn concurrent_commits_exactly_one_wins() {
    let (_dir, path, store) = initialised();
    drop(store);
    let stores = [
        Arc::new(SqliteKeystore::open(&path).unwrap()),
        Arc::new(SqliteKeystore::open_existing(&path).unwrap()),
    ];
    for round in 0..10u64 {
        let expected = round + 1;
        let barrier = Arc::new(Barrier::new(stores.len()));
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let store = Arc::clone(store);
                let barrier = Arc::clone(&barrier);
                let id = 1_000 + round * 10 + i as u64;
                std::thread::spawn(move || {
                    barrier.wait();
                    let result = store.commit(
                        expected,
                        &[Change::InsertDataKey(data_key(
                            id,
                            &format!("writer-{i}"),
                            DataKeyState::DecryptOnly,
                            3_000,
                        ))],
                    );
                    (id, result)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<u64> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for (_, result) in &results {
            match result {
                Ok(generation) => assert_eq!(*generation, expected + 1),
                Err(Error::Conflict { expected: e, found }) => {
                    assert_eq!((*e, *found), (expected, expected + 1))
                }
                Err(other) => panic!("round {round}: unexpected error {other:?}"),
            }
        }
        let snap = snapshot(&stores[0]);
        assert_eq!(snap.generation, expected + 1);
        let added: Vec<u64> = snap
            .data_keys
            .iter()
            .map(|k| k.id)
            .filter(|id| *id >= 1_000 + round * 10)
            .collect();
        assert_eq!(
            added, winners,
            "round {round}: only the winner's change landed"
        );
    }
}
