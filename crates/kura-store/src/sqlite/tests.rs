//! Unit tests of the SQLite keystore's internals: connection settings, the schema and its
//! migrations, and detection of corrupt data. The behaviour through the traits (rejected
//! changes and their messages included) is the conformance suite's, in `tests/sqlite.rs`.

use std::path::PathBuf;

use rusqlite::Connection;
use tempfile::TempDir;

use super::SqliteKeystore;
use super::schema::LATEST_VERSION;
use crate::{Change, DataKeyRecord, DataKeyState, Error, KekRecord, KekState, Keystore};

fn temp_store() -> (TempDir, PathBuf, SqliteKeystore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.db");
    let store = SqliteKeystore::open(&path).unwrap();
    (dir, path, store)
}

fn kek(id: u64) -> KekRecord {
    KekRecord {
        id,
        wrapped: vec![1, 2, 3],
        master_key_id: "mk".into(),
        state: KekState::Active,
        created_at: 100,
        retired_at: None,
    }
}

fn data_key(id: u64, keyring: &str, kek_id: u64, state: DataKeyState) -> DataKeyRecord {
    DataKeyRecord {
        id,
        keyring: keyring.into(),
        method: "aes256-ctr".into(),
        wrapped: vec![9; 8],
        kek_id,
        state,
        created_at: 100,
        activated_at: (state == DataKeyState::Active).then_some(100),
        retired_at: None,
        destroyed_at: None,
    }
}

fn initialised() -> (TempDir, PathBuf, SqliteKeystore) {
    let (dir, path, store) = temp_store();
    store
        .initialize(&[
            Change::InsertKek(kek(1)),
            Change::InsertDataKey(data_key(10, "default", 1, DataKeyState::Active)),
        ])
        .unwrap();
    (dir, path, store)
}

#[test]
fn connection_settings() {
    let (_dir, _path, store) = temp_store();
    let conn = store.lock();
    let text = |pragma: &str| -> String {
        conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
            .unwrap()
    };
    let int = |pragma: &str| -> i64 {
        conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(text("journal_mode"), "wal");
    assert_eq!(int("synchronous"), 2, "FULL");
    assert_eq!(int("foreign_keys"), 1);
    assert_eq!(int("busy_timeout"), 5000);
    assert_eq!(int("secure_delete"), 1);
    assert_eq!(int("user_version"), LATEST_VERSION);
}

#[test]
fn schema_objects_exist() {
    let (_dir, _path, store) = temp_store();
    let conn = store.lock();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap();
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        names,
        [
            "data_keys",
            "data_keys_kek_id",
            "data_keys_one_active_per_keyring",
            "keks",
            "keks_one_active",
            "meta",
            "objects",
        ]
    );
    let generation: i64 = conn
        .query_row("SELECT generation FROM meta", [], |r| r.get(0))
        .unwrap();
    assert_eq!(generation, 0);
}

#[test]
fn schema_rejects_bad_states_and_destroyed_material() {
    let (_dir, _path, store) = initialised();
    let conn = store.lock();
    assert!(conn.execute("UPDATE keks SET state = 'bogus'", []).is_err());
    assert!(
        conn.execute("UPDATE data_keys SET state = 'bogus'", [])
            .is_err()
    );
    assert!(
        conn.execute("UPDATE data_keys SET state = 'destroyed'", [])
            .is_err(),
        "a destroyed key must have an empty blob"
    );
    assert!(
        conn.execute("INSERT INTO meta (id, generation) VALUES (2, 0)", [])
            .is_err(),
        "meta has a single row"
    );
}

#[test]
fn reopening_does_not_migrate_again() {
    let (_dir, path, store) = initialised();
    drop(store);
    let store = SqliteKeystore::open(&path).unwrap();
    assert_eq!(store.generation().unwrap(), Some(1));
    let version: i64 = store
        .lock()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, LATEST_VERSION);
}

#[test]
fn negative_schema_version_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", -3)
        .unwrap();
    assert!(matches!(
        SqliteKeystore::open(&path),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn not_a_database_is_a_database_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    std::fs::write(&path, vec![0x42; 4096]).unwrap();
    let err = SqliteKeystore::open(&path).unwrap_err();
    assert!(matches!(err, Error::Database { .. }), "{err:?}");
    assert!(err.to_string().contains("k.db"), "{err}");
}

#[test]
fn unknown_stored_state_is_corrupt() {
    let (_dir, _path, store) = initialised();
    {
        let conn = store.lock();
        conn.pragma_update(None, "ignore_check_constraints", true)
            .unwrap();
        conn.execute("UPDATE data_keys SET state = 'bogus'", [])
            .unwrap();
        conn.pragma_update(None, "ignore_check_constraints", false)
            .unwrap();
    }
    match store.snapshot() {
        Err(Error::Corrupt { what, .. }) => assert!(what.contains("bogus"), "{what}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }

    {
        let conn = store.lock();
        conn.pragma_update(None, "ignore_check_constraints", true)
            .unwrap();
        conn.execute("UPDATE data_keys SET state = 'active'", [])
            .unwrap();
        conn.execute("UPDATE keks SET state = 'zombie'", [])
            .unwrap();
        conn.pragma_update(None, "ignore_check_constraints", false)
            .unwrap();
    }
    match store.snapshot() {
        Err(Error::Corrupt { what, .. }) => assert!(what.contains("zombie"), "{what}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn missing_meta_row_is_corrupt() {
    let (_dir, _path, store) = initialised();
    store.lock().execute("DELETE FROM meta", []).unwrap();
    assert!(matches!(store.generation(), Err(Error::Corrupt { .. })));
    assert!(matches!(store.snapshot(), Err(Error::Corrupt { .. })));
    assert!(matches!(store.commit(1, &[]), Err(Error::Corrupt { .. })));
}

#[test]
fn debug_shows_the_path_only() {
    let (_dir, path, store) = temp_store();
    let debug = format!("{store:?}");
    assert!(debug.contains(&*path.to_string_lossy()), "{debug}");
    assert_eq!(store.path(), path);
}
