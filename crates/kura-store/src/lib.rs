//! # kura-store
//!
//! Persistence for the key hierarchy. The keystore holds only *wrapped* keys (KEKs wrapped
//! by the master key, data keys wrapped by a KEK) and their life-cycle metadata; it never
//! sees a plaintext key and never decrypts anything.
//!
//! - [`Keystore`]: the storage trait. Reads return a whole [`Snapshot`]; writes are a
//!   batch of [`Change`]s applied in one transaction, guarded by a generation number so
//!   that two processes rotating at once cannot both win ([`Error::Conflict`]).
//! - [`SqliteKeystore`]: the embedded default (WAL, `synchronous=FULL`, schema versioned
//!   with `user_version`).
//! - [`PgKeystore`]: the same schema and the same rules in a PostgreSQL database that the
//!   nodes of a cluster share; writes serialise on a row lock, and a node notices other
//!   nodes' changes by polling [`Keystore::generation`] and
//!   [`ObjectStore::objects_generation`]. An unreachable database fails calls with an error
//!   naming the URL (password hidden by [`redact_url_password`]); the next call reconnects.
//!
//! - [`Store`]: both together, plus [`Store::export`] and [`Store::replace_all`], the
//!   one-transaction reads and writes of `kura backup` and `kura restore`.
//!
//! - [`atomic::AtomicFile`]: the one helper for files that must survive a crash (temp
//!   file, `fsync`, rename, `fsync` of the directory).
//!
//! The store enforces the invariants it can: one active KEK, one active data key per
//! keyring (partial unique indexes), and unique key ids.

#![forbid(unsafe_code)]

pub mod atomic;
mod changes;
mod error;
mod generation;
mod ids;
mod model;
mod objects;
mod postgres;
mod replace;
mod schema;
mod sqlite;

pub use error::Error;
pub use model::{Change, DataKeyRecord, DataKeyState, KekRecord, KekState, Snapshot};
pub use objects::{NODE_KIND, Object, ObjectChange, ObjectStore};
pub use postgres::{PgKeystore, connect_client, redact_url_password};
pub use sqlite::SqliteKeystore;

/// A keystore that also holds the services' objects (what `kura server` needs), with the
/// two whole-keystore operations that backup and restore are made of.
pub trait Store: Keystore + ObjectStore {
    /// Every key and every object except [`NODE_KIND`] registrations, read in one
    /// transaction (so they are from one moment), or `None` if the keystore is not
    /// initialised. Objects come in `(kind, id)` order.
    fn export(&self) -> Result<Option<Export>, Error>;

    /// Replaces every KEK, every data key and every object except [`NODE_KIND`]
    /// registrations in one transaction: deletes them all, applies `changes` (which must
    /// add at least one KEK) and inserts `objects` as they are (versions included).
    ///
    /// `expected_generation` is `None` when the keystore must not be initialised
    /// ([`Error::AlreadyInitialized`] otherwise), or the generation the caller read
    /// ([`Error::Conflict`] if another process committed since, [`Error::NotInitialized`]
    /// if it holds no keys). Both generations are bumped, so running processes reload.
    /// Returns the new generation.
    fn replace_all(
        &self,
        expected_generation: Option<u64>,
        changes: &[Change],
        objects: &[Object],
    ) -> Result<u64, Error>;
}

/// What [`Store::export`] returns: the keys and the objects of one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The key hierarchy (with its generation).
    pub snapshot: Snapshot,
    /// Every object except node registrations, in `(kind, id)` order.
    pub objects: Vec<Object>,
}

/// A keystore: where wrapped keys live.
///
/// Every method is one transaction. Implementations must make a successful
/// [`Keystore::commit`] durable before returning.
pub trait Keystore: Send + Sync {
    /// Everything in the keystore, or `None` if it has not been initialised.
    fn snapshot(&self) -> Result<Option<Snapshot>, Error>;

    /// The same database's object table, when it has one (both backends do): for users of
    /// a keyring that record what they keep under its keys (kura-fs data roots).
    fn objects(&self) -> Option<&dyn ObjectStore> {
        None
    }

    /// The current generation (bumped by every commit), or `None` if not initialised. Cheap:
    /// a running process polls it to notice changes made by other processes.
    fn generation(&self) -> Result<Option<u64>, Error>;

    /// Initialises an empty keystore with `changes` (the first KEK and data key). Fails with
    /// [`Error::AlreadyInitialized`] if it already holds keys. Returns the new generation.
    fn initialize(&self, changes: &[Change]) -> Result<u64, Error>;

    /// Applies `changes` atomically if the generation is still `expected_generation`,
    /// otherwise fails with [`Error::Conflict`] and changes nothing. Returns the new
    /// generation.
    fn commit(&self, expected_generation: u64, changes: &[Change]) -> Result<u64, Error>;
}
