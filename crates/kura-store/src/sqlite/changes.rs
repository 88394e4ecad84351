//! Applying a batch of [`Change`]s inside an open transaction.
//!
//! Each change is one statement that must affect exactly one row; anything else (an
//! unknown id, a key in the wrong state, a second active key) is an [`Error::Invalid`] and
//! the caller's transaction is rolled back. Changes are applied in order, and the unique
//! indexes are checked after each one, so a batch that replaces an active key must retire
//! the old one before it adds or activates the new one.

use rusqlite::{Connection, OptionalExtension, Params, ffi, params};

use super::db_error;
use crate::changes::{
    Kind, Violation, check_destroyed_is_empty, data_key_insert_error, kek_insert_error,
    not_applicable, rewrap_under_unknown_kek, second_active_data_key,
};
use crate::ids::{from_db_id, to_db_id};
use crate::{Change, DataKeyRecord, Error, KekRecord};

/// Classifies `e` if it is a constraint violation.
fn violation(e: &rusqlite::Error) -> Option<Violation> {
    let err = e.sqlite_error()?;
    if err.code != rusqlite::ErrorCode::ConstraintViolation {
        return None;
    }
    Some(match err.extended_code {
        ffi::SQLITE_CONSTRAINT_PRIMARYKEY => Violation::PrimaryKey,
        ffi::SQLITE_CONSTRAINT_UNIQUE => Violation::Unique,
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Violation::ForeignKey,
        _ => Violation::Other,
    })
}

/// Applies `changes` in order on `conn`, which must be inside a write transaction.
pub(crate) fn apply_all(
    conn: &Connection,
    location: &str,
    changes: &[Change],
) -> Result<(), Error> {
    let applier = Applier { conn, location };
    changes.iter().try_for_each(|change| applier.apply(change))
}

/// A connection inside a write transaction, and where it points for error messages.
struct Applier<'a> {
    conn: &'a Connection,
    location: &'a str,
}

impl Applier<'_> {
    fn db(&self, e: rusqlite::Error) -> Error {
        db_error(self.location, e)
    }

    fn apply(&self, change: &Change) -> Result<(), Error> {
        match change {
            Change::InsertKek(kek) => self.insert_kek(kek),
            Change::RewrapKek {
                id,
                wrapped,
                master_key_id,
            } => self.update_one(
                Kind::Kek,
                *id,
                "rewrap",
                "UPDATE keks SET wrapped = ?1, master_key_id = ?2 WHERE id = ?3",
                |db_id| Ok((wrapped, master_key_id, db_id)),
                |_| None,
            ),
            Change::RetireKek { id, at } => self.update_one(
                Kind::Kek,
                *id,
                "retire",
                "UPDATE keks SET state = 'retired', retired_at = ?1
                 WHERE id = ?2 AND state = 'active'",
                |db_id| Ok((at, db_id)),
                |_| None,
            ),
            Change::InsertDataKey(key) => self.insert_data_key(key),
            Change::RewrapDataKey {
                id,
                wrapped,
                kek_id,
            } => self.update_one(
                Kind::DataKey,
                *id,
                "rewrap",
                "UPDATE data_keys SET wrapped = ?1, kek_id = ?2
                 WHERE id = ?3 AND state <> 'destroyed'",
                |db_id| Ok((wrapped, to_db_id(*kek_id, "KEK")?, db_id)),
                |v| {
                    matches!(v, Some(Violation::ForeignKey))
                        .then(|| rewrap_under_unknown_kek(*id, *kek_id))
                },
            ),
            Change::RetireDataKey { id, at } => self.update_one(
                Kind::DataKey,
                *id,
                "retire",
                "UPDATE data_keys SET state = 'decrypt-only', retired_at = ?1
                 WHERE id = ?2 AND state = 'active'",
                |db_id| Ok((at, db_id)),
                |_| None,
            ),
            Change::ActivateDataKey { id, at } => self.update_one(
                Kind::DataKey,
                *id,
                "activate",
                "UPDATE data_keys SET state = 'active', activated_at = ?1
                 WHERE id = ?2 AND state = 'decrypt-only'",
                |db_id| Ok((at, db_id)),
                |v| matches!(v, Some(Violation::Unique)).then(|| self.second_active(*id, None)),
            ),
            Change::DestroyDataKey { id, at } => self.update_one(
                Kind::DataKey,
                *id,
                "destroy",
                "UPDATE data_keys SET state = 'destroyed', destroyed_at = ?1, wrapped = X''
                 WHERE id = ?2 AND state <> 'destroyed'",
                |db_id| Ok((at, db_id)),
                |_| None,
            ),
        }
    }

    /// Runs `sql`, an update of the one `kind` row with id `id`, and checks that it touched
    /// exactly that row. `params` makes the statement's parameters from the row's database
    /// id (converted first, so an out-of-range `id` is reported before anything else);
    /// `on_violation` may turn a failed statement's constraint violation into a clearer
    /// error, and any other failure is a database error. `action` names the change in the
    /// error for a missing row or one in the wrong state.
    fn update_one<P: Params>(
        &self,
        kind: Kind,
        id: u64,
        action: &str,
        sql: &str,
        params: impl FnOnce(i64) -> Result<P, Error>,
        on_violation: impl FnOnce(Option<Violation>) -> Option<Error>,
    ) -> Result<(), Error> {
        let db_id = to_db_id(id, kind.noun())?;
        let n = self
            .conn
            .execute(sql, params(db_id)?)
            .map_err(|e| on_violation(violation(&e)).unwrap_or_else(|| self.db(e)))?;
        self.expect_one(kind, n, id, action)
    }

    fn insert_kek(&self, kek: &KekRecord) -> Result<(), Error> {
        let db_id = to_db_id(kek.id, "KEK")?;
        self.conn
            .execute(
                "INSERT INTO keks (id, seq, wrapped, master_key_id, state, created_at, retired_at)
                 VALUES (?1, (SELECT IFNULL(MAX(seq), 0) + 1 FROM keks), ?2, ?3, ?4, ?5, ?6)",
                params![
                    db_id,
                    kek.wrapped,
                    kek.master_key_id,
                    kek.state.as_str(),
                    kek.created_at,
                    kek.retired_at,
                ],
            )
            .map_err(|e| match violation(&e) {
                Some(v) => kek_insert_error(kek.id, v, &e, || self.active_kek()),
                None => self.db(e),
            })
            .map(drop)
    }

    fn insert_data_key(&self, key: &DataKeyRecord) -> Result<(), Error> {
        let db_id = to_db_id(key.id, "data key")?;
        let db_kek_id = to_db_id(key.kek_id, "KEK")?;
        check_destroyed_is_empty(key)?;
        self.conn
            .execute(
                "INSERT INTO data_keys (id, seq, keyring, method, wrapped, kek_id, state,
                                        created_at, activated_at, retired_at, destroyed_at)
                 VALUES (?1, (SELECT IFNULL(MAX(seq), 0) + 1 FROM data_keys),
                         ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    db_id,
                    key.keyring,
                    key.method,
                    key.wrapped,
                    db_kek_id,
                    key.state.as_str(),
                    key.created_at,
                    key.activated_at,
                    key.retired_at,
                    key.destroyed_at,
                ],
            )
            .map_err(|e| match violation(&e) {
                Some(v) => data_key_insert_error(key, v, &e, || {
                    self.second_active(key.id, Some(&key.keyring))
                }),
                None => self.db(e),
            })
            .map(drop)
    }

    /// The error for data key `id` becoming a second active key in its keyring.
    fn second_active(&self, id: u64, keyring: Option<&str>) -> Error {
        let keyring = match keyring {
            Some(k) => k.to_owned(),
            None => match self
                .conn
                .query_row(
                    "SELECT keyring FROM data_keys WHERE id = ?1",
                    [to_db_id(id, "data key").unwrap_or_default()],
                    |row| row.get::<_, String>(0),
                )
                .optional()
            {
                Ok(Some(k)) => k,
                Ok(None) => String::from("?"),
                Err(e) => return self.db(e),
            },
        };
        let active = self
            .conn
            .query_row(
                "SELECT id FROM data_keys WHERE keyring = ?1 AND state = 'active'",
                [&keyring],
                |row| row.get::<_, i64>(0),
            )
            .optional();
        match active {
            Ok(other) => second_active_data_key(id, &keyring, other),
            Err(e) => self.db(e),
        }
    }

    /// The id of the active KEK, if there is one.
    fn active_kek(&self) -> Result<Option<u64>, Error> {
        self.conn
            .query_row("SELECT id FROM keks WHERE state = 'active'", [], |row| {
                row.get::<_, i64>(0)
            })
            .optional()
            .map_err(|e| self.db(e))?
            .map(|id| from_db_id(id, self.location))
            .transpose()
    }

    /// Checks that an update of the `kind` row `id` touched one row, explaining why not
    /// otherwise.
    fn expect_one(&self, kind: Kind, rows: usize, id: u64, action: &str) -> Result<(), Error> {
        if rows == 1 {
            return Ok(());
        }
        let state = self.state_of(kind.table(), id)?;
        Err(not_applicable(kind, id, action, state))
    }

    /// The stored state of row `id` of `table` (a constant table name), if the row exists.
    fn state_of(&self, table: &'static str, id: u64) -> Result<Option<String>, Error> {
        let Ok(db_id) = to_db_id(id, "key") else {
            return Ok(None);
        };
        self.conn
            .query_row(
                &format!("SELECT state FROM {table} WHERE id = ?1"),
                [db_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.db(e))
    }
}
