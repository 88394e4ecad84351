//! Connection settings and schema migrations of the SQLite keystore.
//!
//! The schema version is SQLite's `user_version` header field. [`MIGRATIONS`] is the
//! ordered list of steps: entry `n` takes a database from version `n` to `n + 1`, so the
//! newest version this build knows is `MIGRATIONS.len()`. Pending steps are applied in one
//! `BEGIN IMMEDIATE` transaction together with the new `user_version`, so a crash leaves
//! the database at its old version, never half-migrated.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::db_error;
use crate::Error;
use crate::schema::{check_version, latest_version};

/// Version 1: KEKs, data keys and the generation counter.
///
/// `seq` orders rows by insertion: `id` is the `INTEGER PRIMARY KEY` and so the rowid, but
/// ids are random, so the rowid says nothing about the order rows were added in.
const V1: &str = "
CREATE TABLE keks (
    id            INTEGER PRIMARY KEY,
    seq           INTEGER NOT NULL UNIQUE,
    wrapped       BLOB    NOT NULL,
    master_key_id TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('active', 'retired')),
    created_at    INTEGER NOT NULL,
    retired_at    INTEGER
) STRICT;

CREATE UNIQUE INDEX keks_one_active ON keks (state) WHERE state = 'active';

CREATE TABLE data_keys (
    id           INTEGER PRIMARY KEY,
    seq          INTEGER NOT NULL UNIQUE,
    keyring      TEXT    NOT NULL,
    method       TEXT    NOT NULL,
    wrapped      BLOB    NOT NULL,
    kek_id       INTEGER NOT NULL REFERENCES keks (id),
    state        TEXT    NOT NULL CHECK (state IN ('active', 'decrypt-only', 'destroyed')),
    created_at   INTEGER NOT NULL,
    activated_at INTEGER,
    retired_at   INTEGER,
    destroyed_at INTEGER,
    CHECK (state <> 'destroyed' OR length(wrapped) = 0)
) STRICT;

CREATE UNIQUE INDEX data_keys_one_active_per_keyring ON data_keys (keyring) WHERE state = 'active';
CREATE INDEX data_keys_kek_id ON data_keys (kek_id);

CREATE TABLE meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL CHECK (generation >= 0)
) STRICT;

INSERT INTO meta (id, generation) VALUES (1, 0);
";

/// Version 1 alone, to build old keystores in tests.
#[cfg(test)]
pub(crate) const V1_FOR_TESTS: &str = V1;

/// The migrations, oldest first; entry `n` upgrades version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[V1, super::objects::V2];

/// The newest schema version this build knows.
pub(crate) const LATEST_VERSION: i64 = latest_version(MIGRATIONS);

/// How long a connection waits for another one's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Sets the per-connection options, checks the schema version and applies pending
/// migrations.
pub(crate) fn prepare(conn: &mut Connection, location: &str) -> Result<(), Error> {
    let db = |e| db_error(location, e);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    // Freed space (an overwritten wrapped blob) is zeroed rather than left in the file.
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(db)?;

    // Refuse a newer schema before writing anything, the journal-mode switch included.
    check_version(user_version(conn, location)?, LATEST_VERSION, location)?;

    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(db)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Database {
            location: location.to_owned(),
            source: format!("cannot switch to WAL journal mode (journal_mode is {mode})").into(),
        });
    }

    migrate(conn, location)
}

/// Applies the pending migrations, if any, in one immediate transaction.
fn migrate(conn: &mut Connection, location: &str) -> Result<(), Error> {
    let db = |e| db_error(location, e);
    if user_version(conn, location)? == LATEST_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    // Another process may have migrated while this one waited for the lock.
    let current = check_version(user_version(&tx, location)?, LATEST_VERSION, location)?;
    for step in MIGRATIONS.iter().skip(current) {
        tx.execute_batch(step).map_err(db)?;
    }
    tx.pragma_update(None, "user_version", LATEST_VERSION)
        .map_err(db)?;
    tx.commit().map_err(db)
}

/// Reads `PRAGMA user_version`.
fn user_version(conn: &Connection, location: &str) -> Result<i64, Error> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| db_error(location, e))
}
