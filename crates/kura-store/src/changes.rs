//! What both backends share when they apply a batch of [`Change`](crate::Change)s: the
//! kinds of constraint violation they tell apart, the two key tables, and the messages of
//! rejected changes, so that a change is refused with the same words on SQLite and on
//! PostgreSQL. Running the statements, and classifying a driver's error, is each backend's.

use std::fmt::Display;

use crate::{DataKeyRecord, DataKeyState, Error};

/// The kind of constraint a failed statement violated.
pub(crate) enum Violation {
    /// A duplicate primary key (a key id already in use).
    PrimaryKey,
    /// Another unique index: in practice, a second active key.
    Unique,
    /// A reference to a KEK that does not exist.
    ForeignKey,
    /// Any other constraint (a `CHECK`, `NOT NULL`).
    Other,
}

/// The two tables a change updates.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// `keks`.
    Kek,
    /// `data_keys`.
    DataKey,
}

impl Kind {
    /// The name of a row in error messages.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Self::Kek => "KEK",
            Self::DataKey => "data key",
        }
    }

    /// The table (a constant name).
    pub(crate) fn table(self) -> &'static str {
        match self {
            Self::Kek => "keks",
            Self::DataKey => "data_keys",
        }
    }
}

/// Why an update of the `kind` row `id` (doing `action`) touched no row: `state` is the
/// row's stored state, `None` if there is no such row.
pub(crate) fn not_applicable(kind: Kind, id: u64, action: &str, state: Option<String>) -> Error {
    let noun = kind.noun();
    Error::Invalid(match state {
        None => format!("cannot {action} {noun}: there is no {noun} with id {id}"),
        Some(state) => format!("cannot {action} {noun} {id}: it is {state}"),
    })
}

/// Refuses a data key added as destroyed that still has key material.
pub(crate) fn check_destroyed_is_empty(key: &DataKeyRecord) -> Result<(), Error> {
    if key.state == DataKeyState::Destroyed && !key.wrapped.is_empty() {
        return Err(Error::Invalid(format!(
            "cannot add data key {} as destroyed while it still has key material",
            key.id
        )));
    }
    Ok(())
}

/// The error for rewrapping data key `id` under `kek_id`, a KEK that does not exist.
pub(crate) fn rewrap_under_unknown_kek(id: u64, kek_id: u64) -> Error {
    Error::Invalid(format!(
        "cannot rewrap data key {id}: there is no KEK with id {kek_id}"
    ))
}

/// The error for adding KEK `id` that violated a constraint: `detail` is the database's
/// message, `active_kek` finds the KEK that is already active (a unique violation).
pub(crate) fn kek_insert_error(
    id: u64,
    violation: Violation,
    detail: &dyn Display,
    active_kek: impl FnOnce() -> Result<Option<u64>, Error>,
) -> Error {
    match violation {
        Violation::PrimaryKey => Error::Invalid(format!("a KEK with id {id} already exists")),
        Violation::Unique => match active_kek() {
            Ok(Some(active)) => Error::Invalid(format!(
                "cannot add KEK {id} as active: KEK {active} is already active \
                 (retire it earlier in the same batch)"
            )),
            Ok(None) => Error::Invalid(format!("cannot add KEK {id}: {detail}")),
            Err(err) => err,
        },
        Violation::ForeignKey | Violation::Other => {
            Error::Invalid(format!("cannot add KEK {id}: {detail}"))
        }
    }
}

/// The error for adding `key` that violated a constraint: `detail` is the database's
/// message, `second_active` explains a unique violation (see [`second_active_data_key`]).
pub(crate) fn data_key_insert_error(
    key: &DataKeyRecord,
    violation: Violation,
    detail: &dyn Display,
    second_active: impl FnOnce() -> Error,
) -> Error {
    match violation {
        Violation::PrimaryKey => {
            Error::Invalid(format!("a data key with id {} already exists", key.id))
        }
        Violation::Unique => second_active(),
        Violation::ForeignKey => Error::Invalid(format!(
            "cannot add data key {}: there is no KEK with id {}",
            key.id, key.kek_id
        )),
        Violation::Other => Error::Invalid(format!("cannot add data key {}: {detail}", key.id)),
    }
}

/// The error for data key `id` becoming a second active key in `keyring`, where `other` is
/// active (if it could be found).
pub(crate) fn second_active_data_key(id: u64, keyring: &str, other: Option<i64>) -> Error {
    Error::Invalid(match other {
        Some(other) => format!(
            "data key {id} cannot be active: keyring '{keyring}' already has an active data \
             key ({other}); retire it earlier in the same batch"
        ),
        None => format!(
            "data key {id} cannot be active: keyring '{keyring}' already has an active data key"
        ),
    })
}
