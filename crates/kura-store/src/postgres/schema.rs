//! Schema migrations of the PostgreSQL keystore.
//!
//! The schema version is the one row of `kura_schema_version`. [`MIGRATIONS`] is the
//! ordered list of steps, the SQLite keystore's in PostgreSQL types: entry `n` takes a
//! database from version `n` to `n + 1`, so the newest version this build knows is
//! `MIGRATIONS.len()`. Pending steps are applied in one transaction together with the new
//! version, under a transaction-level advisory lock ([`LOCK_KEY`]): nodes starting at once
//! take turns, and the ones after the first find the schema migrated already. A crash leaves
//! the database at its old version, never half-migrated.

use ::postgres::{Client, IsolationLevel};

use super::PgKeystore;
use crate::Error;
use crate::schema::{check_version, latest_version};

/// Version 1: KEKs, data keys and the generation counter.
///
/// `seq` orders rows by insertion (ids are random). Writers hold the `meta` row lock, so
/// `MAX(seq) + 1` cannot be taken twice.
const V1: &str = "
CREATE TABLE keks (
    id            BIGINT PRIMARY KEY,
    seq           BIGINT NOT NULL UNIQUE,
    wrapped       BYTEA  NOT NULL,
    master_key_id TEXT   NOT NULL,
    state         TEXT   NOT NULL CHECK (state IN ('active', 'retired')),
    created_at    BIGINT NOT NULL,
    retired_at    BIGINT
);

CREATE UNIQUE INDEX keks_one_active ON keks (state) WHERE state = 'active';

CREATE TABLE data_keys (
    id           BIGINT PRIMARY KEY,
    seq          BIGINT NOT NULL UNIQUE,
    keyring      TEXT   NOT NULL,
    method       TEXT   NOT NULL,
    wrapped      BYTEA  NOT NULL,
    kek_id       BIGINT NOT NULL REFERENCES keks (id),
    state        TEXT   NOT NULL CHECK (state IN ('active', 'decrypt-only', 'destroyed')),
    created_at   BIGINT NOT NULL,
    activated_at BIGINT,
    retired_at   BIGINT,
    destroyed_at BIGINT,
    CHECK (state <> 'destroyed' OR octet_length(wrapped) = 0)
);

CREATE UNIQUE INDEX data_keys_one_active_per_keyring ON data_keys (keyring) WHERE state = 'active';
CREATE INDEX data_keys_kek_id ON data_keys (kek_id);

CREATE TABLE meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT  NOT NULL CHECK (generation >= 0)
);

INSERT INTO meta (id, generation) VALUES (1, 0);
";

/// Version 1 alone, to build old keystores in tests.
#[cfg(test)]
pub(crate) const V1_FOR_TESTS: &str = V1;

/// The migrations, oldest first; entry `n` upgrades version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[V1, super::objects::V2];

/// The newest schema version this build knows.
pub(crate) const LATEST_VERSION: i64 = latest_version(MIGRATIONS);

/// The advisory lock held while migrating ("kura_sch" in ASCII).
pub(crate) const LOCK_KEY: i64 = 0x6b75_7261_5f73_6368;

/// The table holding the schema version.
pub(crate) const VERSION_TABLE: &str = "
CREATE TABLE IF NOT EXISTS kura_schema_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
)";

/// Checks the schema version and applies pending migrations.
pub(crate) fn prepare(client: &mut Client, store: &PgKeystore) -> Result<(), Error> {
    let db = |e: ::postgres::Error| store.db(&e);
    // Refuse a newer schema, and skip the lock when there is nothing to do.
    let current = stored_version(client).map_err(db)?;
    if check_version(current, LATEST_VERSION, &store.location)? == MIGRATIONS.len() {
        return Ok(());
    }
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .map_err(db)?;
    tx.batch_execute(VERSION_TABLE).map_err(db)?;
    // Another node may have migrated while this one waited for the lock.
    let current = tx
        .query_opt("SELECT version FROM kura_schema_version WHERE id = 1", &[])
        .and_then(|r| r.map(|r| r.try_get::<_, i64>(0)).transpose())
        .map_err(db)?
        .unwrap_or(0);
    let current = check_version(current, LATEST_VERSION, &store.location)?;
    for step in MIGRATIONS.iter().skip(current) {
        tx.batch_execute(step).map_err(db)?;
    }
    tx.execute(
        "INSERT INTO kura_schema_version (id, version) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
        &[&LATEST_VERSION],
    )
    .map_err(db)?;
    tx.commit().map_err(db)
}

/// The stored version, 0 if there is no version table yet.
fn stored_version(client: &mut Client) -> Result<i64, ::postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('kura_schema_version') IS NOT NULL", &[])?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_opt("SELECT version FROM kura_schema_version WHERE id = 1", &[])?
        .map(|r| r.try_get::<_, i64>(0))
        .transpose()?
        .unwrap_or(0))
}
