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

    /// Seconds since the Unix epoch by the keystore's clock, which every process using the
    /// keystore shares: the database server's for PostgreSQL (so nodes whose own clocks
    /// disagree still agree on how old a heartbeat is), this machine's for SQLite.
    fn clock(&self) -> Result<i64, Error> {
        Ok(local_clock())
    }
}

/// Seconds since the Unix epoch by this machine's clock (0 before it).
fn local_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `prefix` as the upper bound of a range scan: the smallest string greater than every
/// string starting with `prefix` (None when there is none, i.e. no upper bound).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        if let Some(next) = char::from_u32(c as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// An object as read from the database, its stored version checked (`location` names the
/// keystore if the version is not one that could have been stored).
pub(crate) fn stored_object(
    (kind, id, version, doc, blob): (String, String, i64, String, Vec<u8>),
    location: &str,
) -> Result<Object, Error> {
    let Ok(version) = u64::try_from(version) else {
        return Err(Error::Corrupt {
            location: location.to_owned(),
            what: format!("object {kind}/{id} has version {version}"),
        });
    };
    Ok(Object {
        kind,
        id,
        version,
        doc,
        blob,
    })
}

/// The contents of one object write: what is written to `(kind, id)`, and the version it is
/// written at (an insert) or from (an update).
pub(crate) struct Contents<'a> {
    /// Kind.
    pub(crate) kind: &'a str,
    /// Id.
    pub(crate) id: &'a str,
    /// The version.
    pub(crate) version: i64,
    /// Document.
    pub(crate) doc: &'a str,
    /// Blob.
    pub(crate) blob: &'a [u8],
}

impl<'a> Contents<'a> {
    /// The contents `doc` and `blob` of `(kind, id)` at `version`.
    pub(crate) fn new(
        kind: &'a str,
        id: &'a str,
        version: i64,
        doc: &'a str,
        blob: &'a [u8],
    ) -> Self {
        Self {
            kind,
            id,
            version,
            doc,
            blob,
        }
    }
}

/// The statements of object writes on one backend, inside a write transaction it holds:
/// what [`apply_changes`] and [`crate::replace::insert_objects`] are made of, so that both
/// backends apply the same rules.
pub(crate) trait ObjectWriter {
    /// Inserts `c` at `c.version` unless `(c.kind, c.id)` exists; whether it was inserted.
    fn insert(&mut self, c: &Contents<'_>) -> Result<bool, Error>;

    /// Replaces the contents of `(c.kind, c.id)` and bumps its version if it is at
    /// `c.version`; whether it was.
    fn update(&mut self, c: &Contents<'_>) -> Result<bool, Error>;

    /// The stored version of `(kind, id)`, if it exists.
    fn version(&mut self, kind: &str, id: &str) -> Result<Option<i64>, Error>;

    /// Deletes `(kind, id)` if it exists.
    fn delete(&mut self, kind: &str, id: &str) -> Result<(), Error>;

    /// Bumps [`ObjectStore::objects_generation`].
    fn bump_generation(&mut self) -> Result<(), Error>;
}

/// Applies `changes` in order through `w` ([`ObjectStore::apply_with`]), then bumps the
/// generation if `bump`. The caller commits, or rolls back on an error.
pub(crate) fn apply_changes(
    w: &mut impl ObjectWriter,
    changes: &[ObjectChange],
    bump: bool,
) -> Result<(), Error> {
    for c in changes {
        match c {
            ObjectChange::Create {
                kind,
                id,
                doc,
                blob,
            } => {
                if !w.insert(&Contents::new(kind, id, 1, doc, blob))? {
                    return Err(Error::AlreadyExists {
                        what: format!("{kind} {id}"),
                    });
                }
            }
            ObjectChange::Update {
                kind,
                id,
                version,
                doc,
                blob,
            } => {
                let v = i64::try_from(*version)
                    .map_err(|_| Error::Invalid(format!("version {version}")))?;
                if !w.update(&Contents::new(kind, id, v, doc, blob))? {
                    return Err(match w.version(kind, id)? {
                        None => Error::Invalid(format!("no {kind} {id}")),
                        Some(f) => Error::Conflict {
                            expected: *version,
                            found: u64::try_from(f).unwrap_or(0),
                        },
                    });
                }
            }
            ObjectChange::Delete { kind, id } => w.delete(kind, id)?,
        }
    }
    if bump {
        w.bump_generation()?;
    }
    Ok(())
}
