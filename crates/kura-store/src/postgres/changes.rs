//! Applying a batch of [`Change`]s inside an open transaction (PostgreSQL).
//!
//! The same rules as the SQLite keystore's, and the same messages ([`crate::changes`]): each
//! change is one statement that must affect exactly one row; anything else (an unknown id, a
//! key in the wrong state, a second active key) is an [`Error::Invalid`] and the caller's
//! transaction is rolled back.
//! Constraints are checked statement by statement, so a batch that replaces an active key
//! must retire the old one before it adds or activates the new one.
//!
//! A failed statement aborts a PostgreSQL transaction, so the statements whose failure is
//! explained by further queries (which key is already active) run under a savepoint.

use ::postgres::Transaction;
use ::postgres::error::{DbError, SqlState};
use ::postgres::types::ToSql;

use super::PgKeystore;
use crate::changes::{
    Kind, Violation, check_destroyed_is_empty, data_key_insert_error, kek_insert_error,
    not_applicable, rewrap_under_unknown_kek, second_active_data_key,
};
use crate::ids::{from_db_id, to_db_id};
use crate::{Change, DataKeyRecord, Error, KekRecord};

/// Classifies `e` if it is a constraint violation.
fn violation(e: &::postgres::Error) -> Option<(Violation, &DbError)> {
    let db = e.as_db_error()?;
    let code = db.code();
    let kind = if *code == SqlState::UNIQUE_VIOLATION {
        if db.constraint().is_some_and(|c| c.ends_with("_pkey")) {
            Violation::PrimaryKey
        } else {
            Violation::Unique
        }
    } else if *code == SqlState::FOREIGN_KEY_VIOLATION {
        Violation::ForeignKey
    } else if code.code().starts_with("23") {
        Violation::Other
    } else {
        return None;
    };
    Some((kind, db))
}

/// Applies `changes` in order in `tx`, a write transaction holding the `meta` lock.
pub(crate) fn apply_all(
    tx: &mut Transaction<'_>,
    store: &PgKeystore,
    changes: &[Change],
) -> Result<(), Error> {
    let mut applier = Applier { tx, store };
    changes.iter().try_for_each(|change| applier.apply(change))
}

/// A transaction, and the store for error messages.
struct Applier<'a, 't> {
    tx: &'a mut Transaction<'t>,
    store: &'a PgKeystore,
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

impl Applier<'_, '_> {
    fn db(&self, e: &::postgres::Error) -> Error {
        self.store.db(e)
    }

    fn apply(&mut self, change: &Change) -> Result<(), Error> {
        match change {
            Change::InsertKek(kek) => self.insert_kek(kek),
            Change::RewrapKek {
                id,
                wrapped,
                master_key_id,
            } => self.update_one(Kind::Kek, *id, "rewrap", |a, db_id| {
                a.execute(
                    "UPDATE keks SET wrapped = $1, master_key_id = $2 WHERE id = $3",
                    &[wrapped, master_key_id, &db_id],
                )
            }),
            Change::RetireKek { id, at } => self.update_one(Kind::Kek, *id, "retire", |a, db_id| {
                a.execute(
                    "UPDATE keks SET state = 'retired', retired_at = $1
                     WHERE id = $2 AND state = 'active'",
                    &[at, &db_id],
                )
            }),
            Change::InsertDataKey(key) => self.insert_data_key(key),
            Change::RewrapDataKey {
                id,
                wrapped,
                kek_id,
            } => self.update_one(Kind::DataKey, *id, "rewrap", |a, db_id| {
                let db_kek_id = to_db_id(*kek_id, "KEK")?;
                a.guarded(
                    "UPDATE data_keys SET wrapped = $1, kek_id = $2
                     WHERE id = $3 AND state <> 'destroyed'",
                    &[wrapped, &db_kek_id, &db_id],
                )?
                .map_err(|e| match violation(&e) {
                    Some((Violation::ForeignKey, _)) => rewrap_under_unknown_kek(*id, *kek_id),
                    _ => a.db(&e),
                })
            }),
            Change::RetireDataKey { id, at } => {
                self.update_one(Kind::DataKey, *id, "retire", |a, db_id| {
                    a.execute(
                        "UPDATE data_keys SET state = 'decrypt-only', retired_at = $1
                         WHERE id = $2 AND state = 'active'",
                        &[at, &db_id],
                    )
                })
            }
            Change::ActivateDataKey { id, at } => {
                self.update_one(Kind::DataKey, *id, "activate", |a, db_id| {
                    match a.guarded(
                        "UPDATE data_keys SET state = 'active', activated_at = $1
                         WHERE id = $2 AND state = 'decrypt-only'",
                        &[at, &db_id],
                    )? {
                        Ok(n) => Ok(n),
                        Err(e) => Err(match violation(&e) {
                            Some((Violation::Unique, _)) => a.second_active(*id, None),
                            _ => a.db(&e),
                        }),
                    }
                })
            }
            Change::DestroyDataKey { id, at } => {
                self.update_one(Kind::DataKey, *id, "destroy", |a, db_id| {
                    a.execute(
                        "UPDATE data_keys SET state = 'destroyed', destroyed_at = $1, wrapped = ''::bytea
                         WHERE id = $2 AND state <> 'destroyed'",
                        &[at, &db_id],
                    )
                })
            }
        }
    }

    /// Runs `run`, an update of the one `kind` row with id `id` given its database id
    /// (converted first, so an out-of-range `id` is reported before anything else), and
    /// checks that it touched exactly that row. `action` names the change in the error for a
    /// missing row or one in the wrong state.
    fn update_one(
        &mut self,
        kind: Kind,
        id: u64,
        action: &str,
        run: impl FnOnce(&mut Self, i64) -> Result<u64, Error>,
    ) -> Result<(), Error> {
        let db_id = to_db_id(id, kind.noun())?;
        let n = run(self, db_id)?;
        self.expect_one(kind, n, id, action)
    }

    /// Runs a statement whose failure is a database error; returns the rows it touched.
    fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, Error> {
        self.tx.execute(sql, params).map_err(|e| self.store.db(&e))
    }

    /// Runs a statement under a savepoint, so that the transaction can go on if it fails:
    /// `Ok(Err(e))` is the statement's own failure (rolled back to the savepoint), `Err` a
    /// failure of the transaction itself.
    fn guarded(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Result<u64, ::postgres::Error>, Error> {
        let store = self.store;
        let mut sp = self.tx.savepoint("kura_change").map_err(|e| store.db(&e))?;
        match sp.execute(sql, params) {
            Ok(n) => {
                sp.commit().map_err(|e| store.db(&e))?;
                Ok(Ok(n))
            }
            Err(e) => {
                sp.rollback().map_err(|e| store.db(&e))?;
                Ok(Err(e))
            }
        }
    }

    fn insert_kek(&mut self, kek: &KekRecord) -> Result<(), Error> {
        let db_id = to_db_id(kek.id, "KEK")?;
        let result = self.guarded(
            "INSERT INTO keks (id, seq, wrapped, master_key_id, state, created_at, retired_at)
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM keks), $2, $3, $4, $5, $6)",
            &[
                &db_id,
                &kek.wrapped,
                &kek.master_key_id,
                &kek.state.as_str(),
                &kek.created_at,
                &kek.retired_at,
            ],
        )?;
        let Err(e) = result else {
            return Ok(());
        };
        Err(match violation(&e) {
            Some((v, db)) => kek_insert_error(kek.id, v, &db.message(), || self.active_kek()),
            None => self.db(&e),
        })
    }

    fn insert_data_key(&mut self, key: &DataKeyRecord) -> Result<(), Error> {
        let db_id = to_db_id(key.id, "data key")?;
        let db_kek_id = to_db_id(key.kek_id, "KEK")?;
        check_destroyed_is_empty(key)?;
        let result = self.guarded(
            "INSERT INTO data_keys (id, seq, keyring, method, wrapped, kek_id, state,
                                    created_at, activated_at, retired_at, destroyed_at)
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM data_keys),
                     $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &db_id,
                &key.keyring,
                &key.method,
                &key.wrapped,
                &db_kek_id,
                &key.state.as_str(),
                &key.created_at,
                &key.activated_at,
                &key.retired_at,
                &key.destroyed_at,
            ],
        )?;
        let Err(e) = result else {
            return Ok(());
        };
        Err(match violation(&e) {
            Some((v, db)) => data_key_insert_error(key, v, &db.message(), || {
                self.second_active(key.id, Some(&key.keyring))
            }),
            None => self.db(&e),
        })
    }

    /// The error for data key `id` becoming a second active key in its keyring.
    fn second_active(&mut self, id: u64, keyring: Option<&str>) -> Error {
        let keyring = match keyring {
            Some(k) => k.to_owned(),
            None => {
                let db_id = to_db_id(id, "data key").unwrap_or_default();
                match self
                    .tx
                    .query_opt("SELECT keyring FROM data_keys WHERE id = $1", &[&db_id])
                    .and_then(|r| r.map(|r| r.try_get::<_, String>(0)).transpose())
                {
                    Ok(Some(k)) => k,
                    Ok(None) => String::from("?"),
                    Err(e) => return self.db(&e),
                }
            }
        };
        let active = self
            .tx
            .query_opt(
                "SELECT id FROM data_keys WHERE keyring = $1 AND state = 'active'",
                &[&keyring],
            )
            .and_then(|r| r.map(|r| r.try_get::<_, i64>(0)).transpose());
        match active {
            Ok(other) => second_active_data_key(id, &keyring, other),
            Err(e) => self.db(&e),
        }
    }

    /// The id of the active KEK, if there is one.
    fn active_kek(&mut self) -> Result<Option<u64>, Error> {
        self.tx
            .query_opt("SELECT id FROM keks WHERE state = 'active'", &[])
            .and_then(|r| r.map(|r| r.try_get::<_, i64>(0)).transpose())
            .map_err(|e| self.store.db(&e))?
            .map(|id| from_db_id(id, &self.store.location))
            .transpose()
    }

    /// Checks that an update of the `kind` row `id` touched one row, explaining why not
    /// otherwise.
    fn expect_one(&mut self, kind: Kind, rows: u64, id: u64, action: &str) -> Result<(), Error> {
        if rows == 1 {
            return Ok(());
        }
        let state = self.state_of(kind.table(), id)?;
        Err(not_applicable(kind, id, action, state))
    }

    /// The stored state of row `id` of `table` (a constant table name), if the row exists.
    fn state_of(&mut self, table: &'static str, id: u64) -> Result<Option<String>, Error> {
        let Ok(db_id) = to_db_id(id, "key") else {
            return Ok(None);
        };
        self.tx
            .query_opt(
                &format!("SELECT state FROM {table} WHERE id = $1"),
                &[&db_id],
            )
            .and_then(|r| r.map(|r| r.try_get(0)).transpose())
            .map_err(|e| self.store.db(&e))
    }
}
