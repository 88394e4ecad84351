//! Reading the key hierarchy from PostgreSQL: the generation and the key rows, read in one
//! `REPEATABLE READ` snapshot ([`crate::Keystore::snapshot`] and
//! [`crate::Store::export`]), and the records made of them.

use ::postgres::{Client, IsolationLevel, Row, Transaction};

use super::{GENERATION_SQL, PgKeystore, generation_row};
use crate::ids::from_db_id;
use crate::{DataKeyRecord, DataKeyState, Error, KekRecord, KekState, Snapshot};

/// A read-only `REPEATABLE READ` transaction: every query in it sees the same moment.
pub(super) fn read_only(client: &mut Client) -> Result<Transaction<'_>, ::postgres::Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
}

/// The rows of a snapshot, as read.
pub(super) struct KeyRows {
    /// The generation and whether a KEK exists; `None` if the meta row is missing.
    meta: Option<(i64, bool)>,
    /// The KEK rows, in snapshot order (none if the keystore is not initialised).
    keks: Vec<Row>,
    /// The data key rows, likewise.
    data_keys: Vec<Row>,
}

impl KeyRows {
    /// Whether the keystore is initialised (and the key rows were read).
    pub(super) fn initialised(&self) -> bool {
        matches!(self.meta, Some((_, true)))
    }
}

/// Reads the generation and, if the keystore is initialised, every key, in `tx`.
pub(super) fn key_rows(tx: &mut Transaction<'_>) -> Result<KeyRows, ::postgres::Error> {
    let meta = generation_row(&tx.query(GENERATION_SQL, &[])?)?;
    let mut rows = KeyRows {
        meta,
        keks: Vec::new(),
        data_keys: Vec::new(),
    };
    if rows.initialised() {
        rows.keks = tx.query(
            "SELECT id, wrapped, master_key_id, state, created_at, retired_at
             FROM keks ORDER BY created_at, seq",
            &[],
        )?;
        rows.data_keys = tx.query(
            "SELECT id, keyring, method, wrapped, kek_id, state,
                    created_at, activated_at, retired_at, destroyed_at
             FROM data_keys ORDER BY created_at, seq",
            &[],
        )?;
    }
    Ok(rows)
}

impl PgKeystore {
    /// The snapshot made of `rows`, or `None` if the keystore is not initialised.
    pub(super) fn snapshot_from(&self, rows: KeyRows) -> Result<Option<Snapshot>, Error> {
        let (generation, initialised) = rows
            .meta
            .ok_or_else(|| self.corrupt("the meta row is missing".into()))?;
        let Some(generation) = self.checked_generation(generation, initialised)? else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            generation,
            keks: rows
                .keks
                .iter()
                .map(|r| self.kek_from_row(r))
                .collect::<Result<_, _>>()?,
            data_keys: rows
                .data_keys
                .iter()
                .map(|r| self.data_key_from_row(r))
                .collect::<Result<_, _>>()?,
        }))
    }

    /// A KEK row (as [`key_rows`] reads it) as a record.
    fn kek_from_row(&self, row: &Row) -> Result<KekRecord, Error> {
        let db = |e: ::postgres::Error| self.db(&e);
        let state: String = row.try_get(3).map_err(db)?;
        Ok(KekRecord {
            id: from_db_id(row.try_get(0).map_err(db)?, &self.location)?,
            wrapped: row.try_get(1).map_err(db)?,
            master_key_id: row.try_get(2).map_err(db)?,
            state: KekState::parse(&state)
                .ok_or_else(|| self.corrupt(format!("unknown KEK state '{state}'")))?,
            created_at: row.try_get(4).map_err(db)?,
            retired_at: row.try_get(5).map_err(db)?,
        })
    }

    /// A data key row (as [`key_rows`] reads it) as a record.
    fn data_key_from_row(&self, row: &Row) -> Result<DataKeyRecord, Error> {
        let db = |e: ::postgres::Error| self.db(&e);
        let state: String = row.try_get(5).map_err(db)?;
        Ok(DataKeyRecord {
            id: from_db_id(row.try_get(0).map_err(db)?, &self.location)?,
            keyring: row.try_get(1).map_err(db)?,
            method: row.try_get(2).map_err(db)?,
            wrapped: row.try_get(3).map_err(db)?,
            kek_id: from_db_id(row.try_get(4).map_err(db)?, &self.location)?,
            state: DataKeyState::parse(&state)
                .ok_or_else(|| self.corrupt(format!("unknown data key state '{state}'")))?,
            created_at: row.try_get(6).map_err(db)?,
            activated_at: row.try_get(7).map_err(db)?,
            retired_at: row.try_get(8).map_err(db)?,
            destroyed_at: row.try_get(9).map_err(db)?,
        })
    }
}
