//! Documents of the services built on the hierarchy (the KMS's keys, key material,
//! aliases, users): a small versioned document store beside the key hierarchy, in the same
//! database and the same durability rules.
//!
//! Every object is `(kind, id)` → a JSON document (the service's own schema), an opaque
//! blob (wrapped material, sealed secrets: never plaintext) and a version. Writes are a
//! batch of [`ObjectChange`]s applied in one transaction; each names the version it was
//! computed from, so concurrent writers (threads, processes, cluster nodes) cannot
//! overwrite each other unseen ([`crate::Error::Conflict`]).

use crate::Error;

/// The kind of a running server's registration (`kura server` nodes): bookkeeping of the
/// processes using a keystore, never part of a backup and never replaced by a restore.
pub const NODE_KIND: &str = "node";

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// What it is (`kms-key`, `alias`, `user`, …).
    pub kind: String,
    /// Its id within the kind.
    pub id: String,
    /// Bumped by every write; starts at 1.
    pub version: u64,
    /// The document.
    pub doc: String,
    /// Wrapped or sealed bytes (never plaintext secrets).
    pub blob: Vec<u8>,
}

/// One change in an atomic batch of object writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectChange {
    /// Creates `(kind, id)`; fails with [`Error::AlreadyExists`] if it exists.
    Create {
        /// Kind.
        kind: String,
        /// Id.
        id: String,
        /// Document.
        doc: String,
        /// Blob.
        blob: Vec<u8>,
    },
    /// Replaces `(kind, id)` if it is still at `version`.
    Update {
        /// Kind.
        kind: String,
        /// Id.
        id: String,
        /// The version the new contents were computed from.
        version: u64,
        /// Document.
        doc: String,
        /// Blob.
        blob: Vec<u8>,
    },
    /// Deletes `(kind, id)` if it exists (deleting nothing is not an error).
    Delete {
        /// Kind.
        kind: String,
        /// Id.
        id: String,
    },
}

/// A store of [`Object`]s.
pub trait ObjectStore: Send + Sync {
    /// The object `(kind, id)`.
    fn get(&self, kind: &str, id: &str) -> Result<Option<Object>, Error>;

    /// Objects of `kind` whose id starts with `prefix`, in id order, after `after` (exclusive),
    /// at most `limit`.
    fn list(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Object>, Error>;

    /// Applies `changes` in one transaction: all or none.
    fn apply(&self, changes: &[ObjectChange]) -> Result<(), Error> {
        self.apply_with(changes, true)
    }

    /// Applies `changes` like [`ObjectStore::apply`] without bumping the generation: for
    /// bookkeeping no cache needs to notice (node heartbeats), so caches are not dropped
    /// every few seconds.
    fn apply_quiet(&self, changes: &[ObjectChange]) -> Result<(), Error> {
        self.apply_with(changes, false)
    }

    /// Applies `changes` in one transaction, bumping the generation if `bump`.
    fn apply_with(&self, changes: &[ObjectChange], bump: bool) -> Result<(), Error>;

    /// A number bumped by every [`ObjectStore::apply`] (for caches to notice other writers).
    fn objects_generation(&self) -> Result<u64, Error>;
}
