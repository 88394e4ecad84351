//! The embedded keystore: one SQLite database file.
//!
//! The file is created with mode `0600` (and its directory with `0700`) before SQLite
//! writes anything to it; SQLite gives its `-wal` and `-shm` files the same mode. The
//! database runs in WAL mode with `synchronous=FULL`, so a commit is durable once it
//! returns, and with foreign keys enforced. Writes take the lock up front
//! (`BEGIN IMMEDIATE`), so two processes committing at once are serialised and the second
//! one sees the first one's generation ([`Error::Conflict`]).

mod changes;
mod objects;
mod replace;
mod schema;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::generation::{check_commit, from_stored};
use crate::ids::from_db_id;
use crate::{Change, DataKeyRecord, DataKeyState, Error, KekRecord, KekState, Keystore, Snapshot};

/// A [`Keystore`] in a SQLite database file.
///
/// One connection, behind a mutex: the type is `Send + Sync` and may be shared between
/// threads, which then take turns. Several processes (or several `SqliteKeystore`s) may
/// open the same file; SQLite's locking and the generation number keep them consistent.
pub struct SqliteKeystore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// The path as shown in errors.
    location: String,
}

impl fmt::Debug for SqliteKeystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteKeystore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteKeystore {
    /// Opens the keystore at `path`, creating it if needed.
    ///
    /// A missing parent directory is created with mode `0700` and a missing database file
    /// with mode `0600`, before any data is written to it. Existing ones are used as they
    /// are. The schema is created or migrated to the newest version.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory or file cannot be created, [`Error::SchemaTooNew`] if
    /// the database was written by a newer kura, [`Error::Database`] if SQLite fails (for
    /// example, the file is not a SQLite database).
    pub fn open(path: &Path) -> Result<Self, Error> {
        let location = path.display().to_string();
        let io_error = |source| Error::Io {
            location: location.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io_error)?;
        }
        // Create the file ourselves so that it never exists with a wider mode.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io_error)?;
        Self::connect(path, location)
    }

    /// Opens the keystore at `path`, which must exist; never creates anything.
    ///
    /// # Errors
    ///
    /// [`Error::NotInitialized`] if there is no file at `path`; otherwise as
    /// [`SqliteKeystore::open`].
    pub fn open_existing(path: &Path) -> Result<Self, Error> {
        let location = path.display().to_string();
        match path.try_exists() {
            Ok(true) => Self::connect(path, location),
            Ok(false) => Err(Error::NotInitialized { location }),
            Err(source) => Err(Error::Io { location, source }),
        }
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a connection to an existing file and prepares the schema.
    fn connect(path: &Path, location: String) -> Result<Self, Error> {
        // No SQLITE_OPEN_CREATE: SQLite must never create the file with its default mode.
        // No mutex in SQLite either: the connection is only used under our own.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn =
            Connection::open_with_flags(path, flags).map_err(|e| db_error(&location, e))?;
        schema::prepare(&mut conn, &location)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            location,
        })
    }

    /// The connection. A panic while it was held cannot have left a transaction open (the
    /// transaction rolls back when dropped), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn db(&self, e: rusqlite::Error) -> Error {
        db_error(&self.location, e)
    }

    fn corrupt(&self, what: String) -> Error {
        Error::Corrupt {
            location: self.location.clone(),
            what,
        }
    }

    /// The generation, or `None` if the keystore holds no KEK (is not initialised).
    fn read_generation(&self, conn: &Connection) -> Result<Option<u64>, Error> {
        let row = conn.query_row(
            "SELECT generation, EXISTS (SELECT 1 FROM keks) FROM meta WHERE id = 1",
            [],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, bool>(1)?)),
        );
        let (generation, initialised) = match row {
            Ok(row) => row,
            Err(rusqlite::Error::QueryReturnedNoRows) => {
                return Err(self.corrupt("the meta row is missing".into()));
            }
            Err(e) => return Err(self.db(e)),
        };
        from_stored(generation, initialised, &self.location)
    }

    /// Whether the keystore holds at least one KEK.
    fn has_kek(&self, conn: &Connection) -> Result<bool, Error> {
        conn.query_row("SELECT EXISTS (SELECT 1 FROM keks)", [], |row| row.get(0))
            .map_err(|e| self.db(e))
    }

    /// Stores `generation` in the meta row.
    fn write_generation(&self, conn: &Connection, generation: u64) -> Result<(), Error> {
        let value = i64::try_from(generation)
            .map_err(|_| self.corrupt(format!("generation {generation} overflows")))?;
        let rows = conn
            .execute("UPDATE meta SET generation = ?1 WHERE id = 1", [value])
            .map_err(|e| self.db(e))?;
        if rows == 1 {
            Ok(())
        } else {
            Err(self.corrupt("the meta row is missing".into()))
        }
    }

    fn read_keks(&self, conn: &Connection) -> Result<Vec<KekRecord>, Error> {
        let mut stmt = conn
            .prepare(
                "SELECT id, wrapped, master_key_id, state, created_at, retired_at
                 FROM keks ORDER BY created_at, seq",
            )
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Option<i64>>(5)?,
                ))
            })
            .map_err(|e| self.db(e))?;
        rows.map(|row| {
            let (id, wrapped, master_key_id, state, created_at, retired_at) =
                row.map_err(|e| self.db(e))?;
            Ok(KekRecord {
                id: from_db_id(id, &self.location)?,
                wrapped,
                master_key_id,
                state: KekState::parse(&state)
                    .ok_or_else(|| self.corrupt(format!("unknown KEK state '{state}'")))?,
                created_at,
                retired_at,
            })
        })
        .collect()
    }

    fn read_data_keys(&self, conn: &Connection) -> Result<Vec<DataKeyRecord>, Error> {
        let mut stmt = conn
            .prepare(
                "SELECT id, keyring, method, wrapped, kek_id, state,
                        created_at, activated_at, retired_at, destroyed_at
                 FROM data_keys ORDER BY created_at, seq",
            )
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(StoredDataKey {
                    id: row.get(0)?,
                    keyring: row.get(1)?,
                    method: row.get(2)?,
                    wrapped: row.get(3)?,
                    kek_id: row.get(4)?,
                    state: row.get(5)?,
                    created_at: row.get(6)?,
                    activated_at: row.get(7)?,
                    retired_at: row.get(8)?,
                    destroyed_at: row.get(9)?,
                })
            })
            .map_err(|e| self.db(e))?;
        rows.map(|row| {
            let row = row.map_err(|e| self.db(e))?;
            let state = DataKeyState::parse(&row.state)
                .ok_or_else(|| self.corrupt(format!("unknown data key state '{}'", row.state)))?;
            Ok(DataKeyRecord {
                id: from_db_id(row.id, &self.location)?,
                keyring: row.keyring,
                method: row.method,
                wrapped: row.wrapped,
                kek_id: from_db_id(row.kek_id, &self.location)?,
                state,
                created_at: row.created_at,
                activated_at: row.activated_at,
                retired_at: row.retired_at,
                destroyed_at: row.destroyed_at,
            })
        })
        .collect()
    }

    /// The generation and every key, or `None` if the keystore is not initialised; `conn`
    /// must be in a transaction, so that they are from the same moment.
    fn read_snapshot(&self, conn: &Connection) -> Result<Option<Snapshot>, Error> {
        let Some(generation) = self.read_generation(conn)? else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            generation,
            keks: self.read_keks(conn)?,
            data_keys: self.read_data_keys(conn)?,
        }))
    }

    /// Best effort, after a commit that destroyed key material: copy the WAL into the main
    /// file (where `secure_delete` has zeroed the old blob) and truncate the WAL, so that
    /// older copies of the page do not linger there. Failure (say, a reader holding the
    /// WAL) is not an error: the commit is already durable, and the WAL is overwritten and
    /// checkpointed again later in any case.
    fn checkpoint(conn: &Connection) {
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

/// A data key row as stored, before validation.
struct StoredDataKey {
    id: i64,
    keyring: String,
    method: String,
    wrapped: Vec<u8>,
    kek_id: i64,
    state: String,
    created_at: i64,
    activated_at: Option<i64>,
    retired_at: Option<i64>,
    destroyed_at: Option<i64>,
}

impl Keystore for SqliteKeystore {
    fn objects(&self) -> Option<&dyn crate::ObjectStore> {
        Some(self)
    }

    fn snapshot(&self) -> Result<Option<Snapshot>, Error> {
        let mut conn = self.lock();
        // One read transaction, so the generation and the rows are from the same moment.
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        let snapshot = self.read_snapshot(&tx)?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(snapshot)
    }

    fn generation(&self) -> Result<Option<u64>, Error> {
        let conn = self.lock();
        self.read_generation(&conn)
    }

    fn initialize(&self, changes: &[Change]) -> Result<u64, Error> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        if self.has_kek(&tx)? {
            return Err(Error::AlreadyInitialized {
                location: self.location.clone(),
            });
        }
        changes::apply_all(&tx, &self.location, changes)?;
        if !self.has_kek(&tx)? {
            return Err(Error::Invalid(
                "initialising a keystore must add a KEK".into(),
            ));
        }
        self.write_generation(&tx, 1)?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(1)
    }

    fn commit(&self, expected_generation: u64, changes: &[Change]) -> Result<u64, Error> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        // On an error, dropping `tx` rolls back.
        let found = check_commit(
            expected_generation,
            self.read_generation(&tx)?,
            &self.location,
        )?;
        changes::apply_all(&tx, &self.location, changes)?;
        let generation = found
            .checked_add(1)
            .ok_or_else(|| self.corrupt(format!("generation {found} overflows")))?;
        self.write_generation(&tx, generation)?;
        tx.commit().map_err(|e| self.db(e))?;
        if changes
            .iter()
            .any(|c| matches!(c, Change::DestroyDataKey { .. }))
        {
            Self::checkpoint(&conn);
        }
        Ok(generation)
    }
}

/// Wraps a driver error.
fn db_error(location: &str, e: rusqlite::Error) -> Error {
    Error::Database {
        location: location.to_owned(),
        source: Box::new(e),
    }
}
