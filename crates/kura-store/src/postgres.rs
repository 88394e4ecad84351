//! The cluster keystore: one PostgreSQL database shared by every node.
//!
//! The schema is the SQLite keystore's, in PostgreSQL types (`BIGINT`, `BYTEA`, `TEXT`),
//! versioned in the one-row table `kura_schema_version` and migrated in one transaction under
//! a transaction-level advisory lock, so that nodes starting at once do not race.
//!
//! # Transactions
//! Every write runs at `READ COMMITTED` and begins by locking the one `meta` row
//! (`SELECT … FOR UPDATE`). That row lock serialises all writers of the database (key
//! changes and object writes, from every node), as `BEGIN IMMEDIATE` does for SQLite; the
//! generation check of [`Keystore::commit`] reads the row under that lock, and each later
//! statement of the transaction takes a fresh snapshot, so it sees everything committed by the
//! writers before it. There are no serialisation failures to retry and, since every writer
//! takes the `meta` lock first, no deadlocks. A [`Keystore::snapshot`] is one
//! `REPEATABLE READ READ ONLY` transaction; the cheap reads ([`Keystore::generation`],
//! [`crate::ObjectStore::objects_generation`], [`crate::ObjectStore::get`], [`crate::ObjectStore::list`]) are one
//! statement each.
//!
//! # Connections
//! A [`PgKeystore`] keeps up to [`PgKeystore::MAX_IDLE`] idle connections and opens new ones on demand,
//! so that threads do not wait for one another. A connection that fails (PostgreSQL
//! restarted, the network gone) is dropped together with the idle ones, which are likely dead
//! too; the call fails with [`Error::Database`] naming the URL (password hidden) and saying
//! that the database is unreachable, and the next call connects again. A call that finds an
//! idle connection dead before anything was sent on it (the server restarted while it was
//! idle) retries once on a new connection. TLS is used when the URL asks for it, always
//! verifying the server (`sslmode=verify-full` with `sslrootcert=PATH`; see `tls.rs`);
//! otherwise connections are unencrypted. The client is synchronous: call it from plain
//! threads (`spawn_blocking` in async code).

mod changes;
mod errors;
mod objects;
mod replace;
mod schema;
mod snapshot;
#[cfg(test)]
mod tests;
mod tls;
mod url;

use std::fmt;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ::postgres::{Client, Config, IsolationLevel, Row, Transaction};

use crate::{Change, Error, Keystore, Snapshot};
use errors::{DriverError, chain, is_connection_error};
pub use tls::connect_client;
use url::describe;
pub use url::redact_url_password;

impl Drop for PgKeystore {
    /// Closing a connection runs its runtime too: the idle ones are closed off any runtime
    /// the dropping thread may be running.
    fn drop(&mut self) {
        let idle = std::mem::take(&mut *self.lock_idle());
        if idle.is_empty() {
            return;
        }
        let mut idle = Some(idle);
        std::thread::scope(|s| {
            let slot = &mut idle;
            let _closed = std::thread::Builder::new().spawn_scoped(s, move || drop(slot.take()));
        });
        // No thread could be started: the connections are left to the operating system
        // rather than closed here, where a runtime may be running.
        if let Some(left) = idle {
            std::mem::forget(left);
        }
    }
}

/// TCP keepalive settings (unless the URL sets them): a peer gone silent is noticed within
/// about half a minute rather than the system's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;
/// Data sent and not acknowledged for this long breaks the connection.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// The server cancels a statement that runs (or waits for a lock) this long, unless the
/// URL's `options` say otherwise: keystore statements take milliseconds, so one that runs
/// for 30 s is stuck behind something (a client holding a lock and gone quiet) and fails
/// with SQLSTATE 57014 instead of holding a connection and its caller for ever.
const STATEMENT_TIMEOUT: &str = "-c statement_timeout=30s";

/// A [`Keystore`] and [`crate::ObjectStore`] in a PostgreSQL database, shared by the nodes
/// of a cluster: one transaction per call, a small pool of connections, errors naming the
/// URL with its password hidden (see the crate documentation and `docs/design.md`).
///
/// `Send + Sync`: share one between threads; each call takes a connection of its own from a
/// small pool. Several nodes (several `PgKeystore`s) may use one database at once; the
/// generation number and row locks keep them consistent.
pub struct PgKeystore {
    config: Config,
    /// TLS with a verified server, when the URL asks for it (see [`tls`]).
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The URL with any password hidden, as shown in errors.
    location: String,
    /// The password, to scrub from driver messages (which should never hold it anyway).
    password: Option<zeroize::Zeroizing<String>>,
    idle: Mutex<Vec<Client>>,
    /// Connections in use now (at most [`PgKeystore::MAX_BUSY`]), and the signal that one
    /// was given back.
    busy: Mutex<usize>,
    freed: Condvar,
}

/// A connection slot, held while a call uses its connection; given back on drop.
struct Permit<'a>(&'a PgKeystore);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(PoisonError::into_inner);
        *busy = busy.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

impl fmt::Debug for PgKeystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgKeystore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// How a read-write transaction ended, before its connection is given back.
enum Outcome<T> {
    /// `BEGIN` failed: nothing was sent that could change anything.
    BeginFailed(::postgres::Error),
    /// The transaction ran (and committed, if `Ok`).
    Finished(Result<T, Error>),
}

impl PgKeystore {
    /// The most idle connections a [`PgKeystore`] keeps.
    pub const MAX_IDLE: usize = 8;
    /// The most connections a [`PgKeystore`] uses at once: with the idle ones, one node never
    /// opens more than `MAX_BUSY + MAX_IDLE`, so a cluster stays within PostgreSQL's
    /// `max_connections` (100 by default) for a few nodes.
    pub const MAX_BUSY: usize = 24;
    /// How long a call waits for a connection slot when all are in use.
    pub const BUSY_WAIT: Duration = Duration::from_secs(10);
    /// How long connecting may take when the URL sets no `connect_timeout`.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Connects to the PostgreSQL database at `url` (a `postgres://` URL or a `key=value`
    /// connection string) and creates or migrates the schema.
    ///
    /// A `connect_timeout` of [`PgKeystore::CONNECT_TIMEOUT`] applies unless the URL sets one.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the URL is invalid or the database cannot be reached (the
    /// message names the URL with its password hidden), [`Error::SchemaTooNew`] if a newer
    /// kura wrote the schema.
    pub fn connect(url: &str) -> Result<Self, Error> {
        let location = redact_url_password(url);
        let bad_url = |text: String| Error::Database {
            location: location.clone(),
            source: Box::new(DriverError(format!("{text}; fix the database URL"))),
        };
        let (mut config, tls) = tls::configure(url).map_err(bad_url)?;
        let password = config
            .get_password()
            .filter(|p| !p.is_empty())
            .map(|p| zeroize::Zeroizing::new(String::from_utf8_lossy(p).into_owned()));
        // The location must never show the password, whatever form the URL had.
        let location = match &password {
            Some(p) if location.contains(p.as_str()) => describe(&config),
            _ => location,
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Self::CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_keepalives_interval().is_none() {
            config
                .keepalives(true)
                .keepalives_idle(KEEPALIVE_IDLE)
                .keepalives_interval(KEEPALIVE_INTERVAL)
                .keepalives_retries(KEEPALIVE_RETRIES);
        }
        if config.get_options().is_none() {
            config.options(STATEMENT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("kura");
        }
        let store = Self {
            config,
            tls,
            location,
            password,
            idle: Mutex::new(Vec::new()),
            busy: Mutex::new(0),
            freed: Condvar::new(),
        };
        store.off_runtime(|| {
            let mut client = store.new_client()?;
            schema::prepare(&mut client, &store)?;
            store.release(client, false);
            Ok(())
        })?;
        Ok(store)
    }

    /// Runs `f` on a short-lived thread of its own and waits for it. The `postgres` client
    /// drives each connection with a small async runtime of its own, which must not be
    /// entered from a thread that is running an async runtime already (an async worker of
    /// the KMS server answering from its caches, a library user's async code): a scoped
    /// thread is outside any runtime whatever the caller's thread is. It costs a thread
    /// start (tens of microseconds), small beside a round trip to the database.
    fn off_runtime<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, Error> + Send,
    ) -> Result<T, Error> {
        std::thread::scope(|s| {
            match std::thread::Builder::new()
                .name("kura-pg".into())
                .spawn_scoped(s, f)
            {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err(self.database_error("a keystore call panicked".into()))
                }),
                Err(e) => Err(self
                    .database_error(format!("cannot start a thread for the database call: {e}"))),
            }
        })
    }

    /// The database URL with any password replaced by `***` (what errors show).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The idle connections. A panic while the lock was held cannot have left a connection
    /// half-used (connections are taken out of the list to be used), so a poisoned lock is
    /// still usable.
    fn lock_idle(&self) -> MutexGuard<'_, Vec<Client>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection.
    fn new_client(&self) -> Result<Client, Error> {
        tls::connect(&self.config, self.tls.as_ref()).map_err(|e| {
            let m = self.message(&e);
            if e.code() == Some(&::postgres::error::SqlState::TOO_MANY_CONNECTIONS) {
                self.database_error(format!(
                    "the database refuses more connections ({m}); raise its max_connections, \
                     or run fewer kura nodes against it (each uses at most {} at once)",
                    Self::MAX_BUSY + Self::MAX_IDLE
                ))
            } else if self.tls.is_some() && m.contains("TLS handshake") {
                let what = if m.contains("does not support TLS") {
                    "turn ssl on in the server's configuration, or leave sslmode out of the \
                     database URL"
                } else {
                    "give the CA that signed the server's certificate with sslrootcert=PATH \
                     in the database URL, and connect by a name or address the certificate \
                     holds"
                };
                self.database_error(format!(
                    "TLS to the database failed ({m}): the server was not verified; {what}"
                ))
            } else if e.as_db_error().is_some() && !is_connection_error(&e) {
                // The server answered: wrong credentials, no such database, …
                self.database_error(format!(
                    "cannot connect: {m}; check the database URL and the server's access rules"
                ))
            } else {
                self.database_error(format!(
                    "the database is unreachable ({m}); check that PostgreSQL is running and \
                     reachable (kura connects again on the next call)"
                ))
            }
        })
    }

    /// A connection slot, waiting up to [`PgKeystore::BUSY_WAIT`] while all
    /// [`PgKeystore::MAX_BUSY`] are in use.
    fn permit(&self) -> Result<Permit<'_>, Error> {
        let deadline = std::time::Instant::now() + Self::BUSY_WAIT;
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy >= Self::MAX_BUSY {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(self.database_error(format!(
                    "all {} connections this process may use were busy for {} s: the database \
                     answers slowly or this process is overloaded; check the database's load",
                    Self::MAX_BUSY,
                    Self::BUSY_WAIT.as_secs()
                )));
            }
            busy = self
                .freed
                .wait_timeout(busy, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *busy += 1;
        Ok(Permit(self))
    }

    /// An idle connection if there is one (and whether it was), else a new one.
    fn checkout(&self) -> Result<(Client, bool), Error> {
        let pooled = self.lock_idle().pop();
        match pooled {
            Some(client) if !client.is_closed() => Ok((client, true)),
            Some(dead) => {
                drop(dead);
                self.drop_idle();
                Ok((self.new_client()?, false))
            }
            None => Ok((self.new_client()?, false)),
        }
    }

    /// Gives `client` back to the pool, or drops it (and the idle ones) if it is `broken`
    /// or closed.
    fn release(&self, client: Client, broken: bool) {
        if broken || client.is_closed() {
            drop(client);
            self.drop_idle();
            return;
        }
        let mut idle = self.lock_idle();
        if idle.len() < Self::MAX_IDLE {
            idle.push(client);
        }
    }

    /// Drops every idle connection (outside the lock: closing one may wait on the network).
    fn drop_idle(&self) {
        let idle = std::mem::take(&mut *self.lock_idle());
        drop(idle);
    }

    /// Runs `f`, a read (one statement, or a read-only transaction of its own), on a pooled
    /// connection. A read changes nothing, so a connection found dead is replaced and `f`
    /// run again, once.
    fn read<T: Send>(
        &self,
        f: impl FnMut(&mut Client) -> Result<T, ::postgres::Error> + Send,
    ) -> Result<T, Error> {
        self.off_runtime(|| self.read_here(f))
    }

    /// [`PgKeystore::read`] on the calling thread.
    fn read_here<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, ::postgres::Error>,
    ) -> Result<T, Error> {
        let _slot = self.permit()?;
        let mut retried = false;
        loop {
            let (mut client, reused) = self.checkout()?;
            let result = f(&mut client);
            let broken = result.as_ref().err().is_some_and(is_connection_error);
            self.release(client, broken);
            match result {
                Ok(v) => return Ok(v),
                Err(_) if broken && reused && !retried => retried = true,
                Err(e) => return Err(self.db(&e)),
            }
        }
    }

    /// Runs `f` in a `READ COMMITTED` transaction and commits it if `f` succeeds. `f` must
    /// lock the `meta` row first ([`PgKeystore::lock_meta`]). If `BEGIN` finds a pooled
    /// connection dead, the call is retried once on a new one; a connection lost later fails
    /// the call (the commit's outcome is then unknown).
    fn write<T: Send>(
        &self,
        f: impl FnMut(&mut Transaction<'_>) -> Result<T, Error> + Send,
    ) -> Result<T, Error> {
        self.off_runtime(|| self.write_here(f))
    }

    /// [`PgKeystore::write`] on the calling thread.
    fn write_here<T>(
        &self,
        mut f: impl FnMut(&mut Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let _slot = self.permit()?;
        let mut retried = false;
        loop {
            let (mut client, reused) = self.checkout()?;
            let outcome = match client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start()
            {
                Err(e) => Outcome::BeginFailed(e),
                Ok(mut tx) => Outcome::Finished(match f(&mut tx) {
                    // Dropping `tx` rolls back.
                    Err(e) => Err(e),
                    Ok(v) => tx.commit().map(|()| v).map_err(|e| {
                        if is_connection_error(&e) {
                            self.database_error(format!(
                                "the connection was lost while committing ({}), so the change \
                                 may or may not have been applied; reload and check (kura \
                                 connects again on the next call)",
                                self.message(&e)
                            ))
                        } else {
                            self.db(&e)
                        }
                    }),
                }),
            };
            match outcome {
                Outcome::BeginFailed(e) => {
                    let broken = is_connection_error(&e);
                    self.release(client, broken);
                    if broken && reused && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(self.db(&e));
                }
                Outcome::Finished(result) => {
                    let broken = client.is_closed();
                    self.release(client, broken);
                    return result;
                }
            }
        }
    }

    /// Best effort, after a commit that destroyed key material: `VACUUM` the key tables so
    /// that the old row versions holding the erased blobs are removed rather than left until
    /// autovacuum gets to them. Failure is not an error (the commit is durable already).
    /// PostgreSQL's WAL, its archives and replicas may keep copies of the old rows for longer;
    /// the blobs there are still wrapped under a KEK.
    fn vacuum(&self) {
        let _ = self.read(|client| client.batch_execute("VACUUM keks, data_keys"));
    }

    /// Locks the `meta` row for the rest of `tx` and returns the stored generation.
    fn lock_meta(&self, tx: &mut Transaction<'_>) -> Result<i64, Error> {
        let row = tx
            .query_opt("SELECT generation FROM meta WHERE id = 1 FOR UPDATE", &[])
            .map_err(|e| self.db(&e))?
            .ok_or_else(|| self.corrupt("the meta row is missing".into()))?;
        row.try_get(0).map_err(|e| self.db(&e))
    }

    /// Whether the keystore holds at least one KEK.
    fn has_kek(&self, tx: &mut Transaction<'_>) -> Result<bool, Error> {
        tx.query_one("SELECT EXISTS (SELECT 1 FROM keks)", &[])
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.db(&e))
    }

    /// Stores `generation` in the (locked) meta row.
    fn write_generation(&self, tx: &mut Transaction<'_>, generation: u64) -> Result<(), Error> {
        let value = i64::try_from(generation)
            .map_err(|_| self.corrupt(format!("generation {generation} overflows")))?;
        tx.execute("UPDATE meta SET generation = $1 WHERE id = 1", &[&value])
            .map_err(|e| self.db(&e))
            .map(drop)
    }

    /// The generation as [`Keystore::generation`] reports it, from `generation` and
    /// whether the keystore holds a KEK.
    fn checked_generation(&self, generation: i64, initialised: bool) -> Result<Option<u64>, Error> {
        crate::generation::from_stored(generation, initialised, &self.location)
    }

    /// The driver's error as a message, with the password (if any) scrubbed out.
    fn message(&self, e: &::postgres::Error) -> String {
        let text = chain(e);
        match &self.password {
            Some(p) => text.replace(p.as_str(), "***"),
            None => text,
        }
    }

    /// A database error with `message` (which must not hold the password).
    fn database_error(&self, message: String) -> Error {
        Error::Database {
            location: self.location.clone(),
            source: Box::new(DriverError(message)),
        }
    }

    /// Wraps a driver error, saying so plainly when the database is unreachable.
    fn db(&self, e: &::postgres::Error) -> Error {
        if is_connection_error(e) {
            self.database_error(format!(
                "the database is unreachable ({}); check that PostgreSQL is running and \
                 reachable (kura connects again on the next call)",
                self.message(e)
            ))
        } else {
            self.database_error(self.message(e))
        }
    }

    fn corrupt(&self, what: String) -> Error {
        Error::Corrupt {
            location: self.location.clone(),
            what,
        }
    }
}

/// The query of [`Keystore::generation`]: one primary-key read and one row probe.
const GENERATION_SQL: &str =
    "SELECT generation, EXISTS (SELECT 1 FROM keks) FROM meta WHERE id = 1";

/// Reads the result of [`GENERATION_SQL`]: `None` if the meta row is missing.
fn generation_row(rows: &[Row]) -> Result<Option<(i64, bool)>, ::postgres::Error> {
    rows.first()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
}

impl Keystore for PgKeystore {
    fn objects(&self) -> Option<&dyn crate::ObjectStore> {
        Some(self)
    }

    fn snapshot(&self) -> Result<Option<Snapshot>, Error> {
        let rows = self.read(|client| {
            // One snapshot for the generation and the rows.
            let mut tx = snapshot::read_only(client)?;
            let rows = snapshot::key_rows(&mut tx)?;
            tx.commit()?;
            Ok(rows)
        })?;
        self.snapshot_from(rows)
    }

    fn generation(&self) -> Result<Option<u64>, Error> {
        // `query_typed`: one round trip, no separate prepare.
        let meta = self.read(|client| generation_row(&client.query_typed(GENERATION_SQL, &[])?))?;
        let (generation, initialised) =
            meta.ok_or_else(|| self.corrupt("the meta row is missing".into()))?;
        self.checked_generation(generation, initialised)
    }

    fn initialize(&self, changes: &[Change]) -> Result<u64, Error> {
        self.write(|tx| {
            self.lock_meta(tx)?;
            if self.has_kek(tx)? {
                return Err(Error::AlreadyInitialized {
                    location: self.location.clone(),
                });
            }
            changes::apply_all(tx, self, changes)?;
            if !self.has_kek(tx)? {
                return Err(Error::Invalid(
                    "initialising a keystore must add a KEK".into(),
                ));
            }
            self.write_generation(tx, 1)?;
            Ok(1)
        })
    }

    fn commit(&self, expected_generation: u64, changes: &[Change]) -> Result<u64, Error> {
        self.write(|tx| {
            let stored = self.lock_meta(tx)?;
            let initialised = self.has_kek(tx)?;
            let found = crate::generation::check_commit(
                expected_generation,
                self.checked_generation(stored, initialised)?,
                &self.location,
            )?;
            changes::apply_all(tx, self, changes)?;
            let generation = found
                .checked_add(1)
                .ok_or_else(|| self.corrupt(format!("generation {found} overflows")))?;
            self.write_generation(tx, generation)?;
            Ok(generation)
        })
        .inspect(|_| {
            if changes
                .iter()
                .any(|c| matches!(c, Change::DestroyDataKey { .. }))
            {
                self.vacuum();
            }
        })
    }
}
