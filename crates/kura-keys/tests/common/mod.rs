//! Helpers shared by the integration tests: a keystore in a temporary directory (SQLite) or
//! a database of its own (PostgreSQL, [`Backend`]), master keys, a manual clock, and
//! sealing/opening records and streams through a keyring.

#![allow(dead_code, unused_imports, unused_macros)]

pub(crate) mod backend;

pub(crate) use backend::{Backend, both_backends};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kura_crypto::Key256;
use kura_format::{EncryptionContext, envelope, stream};
use kura_keys::clock::{Clock, ManualClock};
use kura_keys::config::Method;
use kura_keys::{Error, Keyring, KeyringSettings, LocalMasterKey, MasterKey, OpenReport};
use kura_store::{Keystore, PgKeystore, SqliteKeystore};
use tempfile::TempDir;

/// The start of every manual clock (2023-11-14T22:13:20Z).
pub(crate) const T0: i64 = 1_700_000_000;
/// A rotation period long enough never to trigger in a test that does not move the clock.
pub(crate) const LONG: Duration = Duration::from_secs(365 * 24 * 3600);
pub(crate) const HOUR: Duration = Duration::from_secs(3600);

/// A master key together with its bytes (which a test may look for in output).
pub(crate) struct Master {
    pub(crate) bytes: [u8; 32],
    pub(crate) key: Arc<LocalMasterKey>,
}

impl Master {
    pub(crate) fn generate(source: &str) -> Self {
        let k = Key256::generate().unwrap();
        let bytes = *k.expose_secret();
        Self {
            bytes,
            key: Arc::new(LocalMasterKey::new(&k, source.into()).unwrap()),
        }
    }

    pub(crate) fn dyn_key(&self) -> Arc<dyn MasterKey> {
        self.key.clone()
    }

    pub(crate) fn id(&self) -> String {
        self.key.id().to_string()
    }
}

/// A keystore (a file in a temporary directory, or a PostgreSQL database), and a manual
/// clock.
pub(crate) struct Env {
    pub(crate) dir: TempDir,
    pub(crate) clock: Arc<ManualClock>,
    /// The PostgreSQL database's name and URL, if the keystore is there.
    database: Option<(String, String)>,
}

impl Env {
    /// A SQLite keystore.
    pub(crate) fn new() -> Self {
        Self::on(Backend::Sqlite)
    }

    /// A new, empty keystore on `backend`.
    pub(crate) fn on(backend: Backend) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(T0)),
            database: (backend == Backend::Postgres).then(backend::new_database),
        }
    }

    /// A new SQLite keystore initialised with a new master key `m` (rotation period
    /// [`LONG`]), with the master key and the keyring.
    pub(crate) fn initialised() -> (Self, Master, Keyring) {
        Self::initialised_on(Backend::Sqlite)
    }

    /// [`Env::initialised`] on `backend`.
    pub(crate) fn initialised_on(backend: Backend) -> (Self, Master, Keyring) {
        let env = Self::on(backend);
        let m = Master::generate("m");
        let k = env.init(&m);
        (env, m, k)
    }

    /// A word the keystore's location (in errors) contains: the file name or the database
    /// name.
    pub(crate) fn location_word(&self) -> &str {
        self.database
            .as_ref()
            .map_or("keystore.db", |(name, _)| name.as_str())
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("keystore.db")
    }

    /// A new handle on the keystore (as another process would have).
    pub(crate) fn store(&self) -> Arc<dyn Keystore> {
        match &self.database {
            Some((_, url)) => Arc::new(PgKeystore::connect(url).unwrap()),
            None => store_at(&self.path()),
        }
    }

    pub(crate) fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    pub(crate) fn init(&self, master: &Master) -> Keyring {
        self.init_with(master, settings(LONG))
    }

    pub(crate) fn init_with(&self, master: &Master, settings: KeyringSettings) -> Keyring {
        Keyring::init(self.store(), master.dyn_key(), settings, self.clock()).unwrap()
    }

    /// Opens the keystore through a new handle with `master` alone.
    pub(crate) fn open(&self, master: &Master) -> Keyring {
        let (k, report) = self.try_open(master, None).unwrap();
        assert_eq!(report, OpenReport::default());
        k
    }

    pub(crate) fn try_open(
        &self,
        master: &Master,
        previous: Option<&Master>,
    ) -> Result<(Keyring, OpenReport), Error> {
        self.try_open_with(master, previous, settings(LONG))
    }

    pub(crate) fn try_open_with(
        &self,
        master: &Master,
        previous: Option<&Master>,
        settings: KeyringSettings,
    ) -> Result<(Keyring, OpenReport), Error> {
        Keyring::open(
            self.store(),
            master.dyn_key(),
            previous.map(Master::dyn_key),
            settings,
            self.clock(),
        )
    }

    /// A raw SQLite connection on the keystore file, for tampering (SQLite only).
    pub(crate) fn sql(&self) -> rusqlite::Connection {
        assert!(self.database.is_none(), "tampering is for SQLite keystores");
        rusqlite::Connection::open(self.path()).unwrap()
    }

    /// The active KEK's id and wrapped blob, read directly from the database.
    pub(crate) fn kek_blob(&self) -> (i64, Vec<u8>) {
        self.active_blob("keks")
    }

    /// Replaces the wrapped blob of KEK `id` in the database.
    pub(crate) fn set_kek_blob(&self, id: i64, blob: &[u8]) {
        self.set_blob("keks", id, blob);
    }

    /// The active data key's id and wrapped blob, read directly from the database.
    pub(crate) fn active_data_key_blob(&self) -> (u64, Vec<u8>) {
        let (id, blob) = self.active_blob("data_keys");
        (id as u64, blob)
    }

    /// The wrapped blob of data key `id`, read directly from the database.
    pub(crate) fn data_key_blob(&self, id: u64) -> Vec<u8> {
        self.sql()
            .query_row(
                "SELECT wrapped FROM data_keys WHERE id = ?1",
                [id as i64],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// Replaces the wrapped blob of data key `id` in the database.
    pub(crate) fn set_data_key_blob(&self, id: u64, blob: &[u8]) {
        self.set_blob("data_keys", id as i64, blob);
    }

    /// The id and wrapped blob of the active row of `table` (a constant table name).
    fn active_blob(&self, table: &str) -> (i64, Vec<u8>) {
        self.sql()
            .query_row(
                &format!("SELECT id, wrapped FROM {table} WHERE state = 'active'"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    }

    /// Replaces the wrapped blob of row `id` of `table` (a constant table name), asserting
    /// that the row exists.
    fn set_blob(&self, table: &str, id: i64, blob: &[u8]) {
        let n = self
            .sql()
            .execute(
                &format!("UPDATE {table} SET wrapped = ?1 WHERE id = ?2"),
                rusqlite::params![blob, id],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
}

pub(crate) fn store_at(path: &Path) -> Arc<dyn Keystore> {
    Arc::new(SqliteKeystore::open(path).unwrap())
}

pub(crate) fn settings(rotation_period: Duration) -> KeyringSettings {
    KeyringSettings::new(Method::Aes256Ctr, rotation_period)
}

pub(crate) fn ctx() -> EncryptionContext {
    [("table", "users"), ("column", "ssn")]
        .into_iter()
        .collect()
}

pub(crate) fn no_ctx() -> EncryptionContext {
    EncryptionContext::new()
}

pub(crate) fn seal(k: &Keyring, context: &EncryptionContext, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    k.seal(context, plaintext, &mut out).unwrap();
    out
}

pub(crate) fn open(
    k: &Keyring,
    context: &EncryptionContext,
    envelope_bytes: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    k.open_envelope(context, envelope_bytes, &mut out)?;
    Ok(out)
}

/// The id of the data key an envelope or a stream names.
pub(crate) fn envelope_key_id(envelope_bytes: &[u8]) -> u64 {
    envelope::key_id(envelope_bytes).unwrap()
}

pub(crate) fn stream_key_id(ciphertext: &[u8]) -> u64 {
    stream::Header::parse(&ciphertext[..stream::HEADER_LEN])
        .unwrap()
        .data_key_id()
}

/// Some bytes spanning several 64 KiB chunks.
pub(crate) fn stream_plaintext(tag: u8) -> Vec<u8> {
    (0..200_000u32)
        .map(|i| (i.wrapping_mul(31) as u8) ^ tag)
        .collect()
}

pub(crate) fn seal_stream(k: &Keyring, context: &EncryptionContext, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let n = stream::encrypt(data, &mut out, k.stream_sealer(context).unwrap()).unwrap();
    assert_eq!(n, data.len() as u64);
    out
}

/// Decrypts a stream; a keyring error from the key lookup is returned as is.
pub(crate) fn open_stream(
    k: &Keyring,
    context: &EncryptionContext,
    ciphertext: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut lookup_error = None;
    let mut out = Vec::new();
    let r = stream::decrypt(ciphertext, &mut out, |h| {
        k.stream_opener(h, context).map_err(|e| {
            lookup_error = Some(e);
            kura_format::Error::Decrypt
        })
    });
    if let Some(e) = lookup_error {
        return Err(e);
    }
    r?;
    Ok(out)
}

/// The ids of the data keys in `state`, oldest first.
pub(crate) fn data_keys_in(k: &Keyring, state: &str) -> Vec<u64> {
    k.status()
        .data_keys
        .iter()
        .filter(|d| d.state == state)
        .map(|d| d.id.parse().unwrap())
        .collect()
}

/// The one active data key, checking there is exactly one.
pub(crate) fn only_active(k: &Keyring) -> u64 {
    let active = data_keys_in(k, "active");
    assert_eq!(active.len(), 1, "{:#?}", k.status().data_keys);
    active[0]
}
