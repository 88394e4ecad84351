//! The [`Keyring`]: the unwrapped hierarchy in memory, and every operation on it.
//!
//! A keyring is opened from a keystore and a master key. It unwraps the active KEK, and
//! with it every data key that is not destroyed; seals with the active data key; opens
//! with whichever key a ciphertext names. Every change (rotation, destruction) is one
//! keystore transaction guarded by the generation it was computed from; afterwards the
//! in-memory state is swapped atomically, so concurrent readers never wait.

mod master;
pub(crate) mod state;
mod status;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use kura_crypto::{Key256, SecretBytes};
use kura_format::{EncryptionContext, envelope, stream};
use kura_store::{Change, DataKeyRecord, DataKeyState, Keystore};

pub use state::DataKey;
pub use status::{DataKeyStatus, KekStatus, MasterKeyStatus, Status};

use crate::Error;
use crate::clock::Clock;
use crate::config::Method;
use crate::master_key::MasterKey;
use state::{Kek, Loader, State, new_id};

/// The keyring used for records and streams.
pub const DEFAULT_KEYRING: &str = "default";
const RETRIES: usize = 8;
/// How often (seconds) a keyring in use checks the keystore for changes made elsewhere.
pub const REFRESH_SECS: i64 = 2;

/// How a keyring behaves.
#[derive(Debug, Clone)]
pub struct KeyringSettings {
    /// The data encryption method recorded with new data keys.
    pub method: Method,
    /// How long a data key stays active before it is rotated on use.
    pub rotation_period: Duration,
    /// The keyring's name.
    pub keyring: String,
}

impl KeyringSettings {
    /// Settings for the default keyring.
    pub fn new(method: Method, rotation_period: Duration) -> Self {
        Self {
            method,
            rotation_period,
            keyring: DEFAULT_KEYRING.to_string(),
        }
    }
}

/// What [`Keyring::open`] did besides opening.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The KEK was wrapped by the previous master key (this id) and is now re-wrapped
    /// under the current one.
    pub kek_rewrapped_from: Option<String>,
}

/// The key hierarchy of one keystore, unwrapped in memory.
pub struct Keyring {
    store: Arc<dyn Keystore>,
    master: RwLock<Arc<dyn MasterKey>>,
    previous: RwLock<Option<Arc<dyn MasterKey>>>,
    settings: KeyringSettings,
    clock: Arc<dyn Clock>,
    state: ArcSwap<State>,
    writer: Mutex<()>,
    /// When the keystore was last checked for changes by other processes.
    checked_at: AtomicI64,
}

impl Keyring {
    /// Creates a new hierarchy in an empty keystore: a KEK wrapped by `master` and a first
    /// active data key.
    pub fn init(
        store: Arc<dyn Keystore>,
        master: Arc<dyn MasterKey>,
        settings: KeyringSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let now = clock.now();
        let (kek, kek_record) = Kek::generate(&*master, |_| false, now)?;
        let dk_id = new_id(|id| id == kek.id)?;
        let dk = Key256::generate()?;
        store.initialize(&[
            Change::InsertKek(kek_record),
            Change::InsertDataKey(new_data_key_record(&settings, &kek, dk_id, &dk, now)?),
        ])?;
        let (k, _) = Self::open(store, master, None, settings, clock)?;
        Ok(k)
    }

    /// Opens an initialised keystore. If the KEK is wrapped by `previous`, it is re-wrapped
    /// under `master` before this returns.
    pub fn open(
        store: Arc<dyn Keystore>,
        master: Arc<dyn MasterKey>,
        previous: Option<Arc<dyn MasterKey>>,
        settings: KeyringSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, OpenReport), Error> {
        let mut report = OpenReport::default();
        let loader = Loader {
            master: &*master,
            previous: previous.as_deref(),
            settings: &settings,
        };
        for _ in 0..RETRIES {
            let snapshot = snapshot_of(&*store)?;
            let generation = snapshot.generation;
            if !loader.has_active_key(&snapshot) {
                // A keyring used for the first time (e.g. the KMS's) gets its first key.
                let (kek, _) = loader.kek(&snapshot, None)?;
                let now = clock.now();
                let id = new_id(|id| snapshot.data_keys.iter().any(|r| r.id == id))?;
                let key = Key256::generate()?;
                let first =
                    Change::InsertDataKey(new_data_key_record(&settings, &kek, id, &key, now)?);
                match store.commit(generation, &[first]) {
                    Ok(_) | Err(kura_store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let (state, rewrap) = loader.build(snapshot, None)?;
            let Some(r) = rewrap else {
                let checked_at = AtomicI64::new(clock.now());
                return Ok((
                    Self {
                        store,
                        master: RwLock::new(master.clone()),
                        previous: RwLock::new(previous.clone()),
                        settings,
                        clock,
                        state: ArcSwap::from_pointee(state),
                        writer: Mutex::new(()),
                        checked_at,
                    },
                    report,
                ));
            };
            match store.commit(generation, &[r.change]) {
                Ok(_) => {
                    tracing::info!(from = %r.from, to = %master.id(), "KEK re-wrapped under the current master key");
                    report.kek_rewrapped_from = Some(r.from);
                }
                Err(kura_store::Error::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contention("open"))
    }

    pub(crate) fn master(&self) -> Arc<dyn MasterKey> {
        self.master
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn previous(&self) -> Option<Arc<dyn MasterKey>> {
        self.previous
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `f` with the active data key, rotating it first if it is due (older than the
    /// rotation period, or made for another method), and picking up changes made by other
    /// processes at most [`REFRESH_SECS`] late. The hot path is one coarse clock read and
    /// one atomic load.
    fn with_active<T>(&self, f: impl FnOnce(&DataKey) -> Result<T, Error>) -> Result<T, Error> {
        let now = self.clock.now();
        self.refresh_if_stale(now)?;
        let st = self.state.load();
        if now < st.rotate_at {
            return f(&st.active);
        }
        drop(st);
        self.mutate("data key rotation", |st, now| {
            if now >= st.rotate_at {
                self.data_key_rotation(st, now)
            } else {
                Ok(Vec::new())
            }
        })?;
        f(&self.state.load().active)
    }

    /// Runs `f` with the data key named `id`, refreshing from the keystore once if it is
    /// unknown (another process may have rotated).
    fn with_key<T>(
        &self,
        id: u64,
        f: impl FnOnce(&DataKey) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.refresh_if_stale(self.clock.now())?;
        if let Some(k) = self.state.load().keys.get(&id) {
            return f(k);
        }
        self.refresh()?;
        let st = self.state.load();
        if let Some(k) = st.keys.get(&id) {
            return f(k);
        }
        if st.snapshot.data_keys.iter().any(|r| r.id == id) {
            return Err(Error::DataKeyDestroyed(id));
        }
        Err(Error::UnknownDataKey(id))
    }

    fn refresh_if_stale(&self, now: i64) -> Result<(), Error> {
        let last = self.checked_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= REFRESH_SECS
            && self.checked_at.swap(now, Ordering::Relaxed) == last
        {
            self.refresh()?;
        }
        Ok(())
    }

    /// Seals one record and appends the envelope to `out`.
    pub fn seal(
        &self,
        context: &EncryptionContext,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.with_active(|dk| Ok(envelope::seal(&dk.xaes, dk.id, context, plaintext, out)?))
    }

    /// Seals one record into `out`, which must hold at least
    /// `envelope::sealed_len(plaintext.len())` bytes; returns the envelope's length. Reads
    /// the plaintext once, writes the envelope once, allocates nothing.
    pub fn seal_into(
        &self,
        context: &EncryptionContext,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        self.with_active(|dk| {
            Ok(envelope::seal_into(
                &dk.xaes, dk.id, context, plaintext, out,
            )?)
        })
    }

    /// Opens one record envelope and appends the plaintext to `out`.
    pub fn open_envelope(
        &self,
        context: &EncryptionContext,
        envelope_bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.with_key(envelope::key_id(envelope_bytes)?, |dk| {
            Ok(envelope::open(&dk.xaes, context, envelope_bytes, out)?)
        })
    }

    /// Opens one record envelope into `out`, which must hold at least
    /// `envelope::opened_len(envelope)` bytes; returns the plaintext's length.
    pub fn open_envelope_into(
        &self,
        context: &EncryptionContext,
        envelope_bytes: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        self.with_key(envelope::key_id(envelope_bytes)?, |dk| {
            Ok(envelope::open_into(&dk.xaes, context, envelope_bytes, out)?)
        })
    }

    /// Starts a stream under the active data key.
    pub fn stream_sealer(&self, context: &EncryptionContext) -> Result<stream::Sealer, Error> {
        self.with_active(|dk| {
            Ok(stream::Sealer::new(
                &dk.key,
                dk.id,
                context,
                stream::DEFAULT_CHUNK_LOG2,
            )?)
        })
    }

    /// Opens a stream whose header was read.
    pub fn stream_opener(
        &self,
        header: stream::Header,
        context: &EncryptionContext,
    ) -> Result<stream::Opener, Error> {
        self.with_key(header.data_key_id(), |dk| {
            Ok(stream::Opener::new(header, &dk.key, context)?)
        })
    }

    /// The keystore's object table (both keystore backends have one).
    pub fn objects(&self) -> Option<&dyn kura_store::ObjectStore> {
        self.store.objects()
    }

    /// A new keystore at `path` (an SQLite file that must not exist yet) under a freshly
    /// generated master key that lives only in this process, with the default method and
    /// rotation period: for benchmarks, examples and tests, never for data to keep (the
    /// master key is gone when the process ends).
    pub fn ephemeral(path: &std::path::Path) -> Result<Self, Error> {
        let store = Arc::new(kura_store::SqliteKeystore::open(path)?);
        let master = Arc::new(crate::LocalMasterKey::new(
            &Key256::generate().map_err(kura_format::Error::from)?,
            "ephemeral".into(),
        )?);
        Self::init(
            store,
            master,
            KeyringSettings::new(Method::default(), crate::config::DEFAULT_ROTATION_PERIOD),
            Arc::new(crate::clock::SystemClock),
        )
    }

    /// A key of `len` bytes for one object (a file, a page store), derived from the active
    /// data key: HKDF-SHA256 with `salt` (the object's random id) and `info` (what the key
    /// is for). Returns the data key's id, which the caller stores to derive it again.
    pub fn derive_active(
        &self,
        salt: &[u8],
        info: &[u8],
        len: usize,
    ) -> Result<(u64, SecretBytes), Error> {
        self.with_active(|dk| Ok((dk.id, derive(dk, salt, info, len)?)))
    }

    /// The key [`Keyring::derive_active`] returned, again, from data key `id`.
    pub fn derive(
        &self,
        id: u64,
        salt: &[u8],
        info: &[u8],
        len: usize,
    ) -> Result<SecretBytes, Error> {
        self.with_key(id, |dk| derive(dk, salt, info, len))
    }

    /// Reloads from the keystore if another process changed it. Returns whether it did.
    pub fn refresh(&self) -> Result<bool, Error> {
        // A caller refreshing on its own (a background poller) spares the seal and open
        // paths their own check.
        self.checked_at.store(self.clock.now(), Ordering::Relaxed);
        let current = self.state.load().snapshot.generation;
        match self.store.generation()? {
            Some(g) if g != current => {
                self.reload()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn reload(&self) -> Result<(), Error> {
        let snapshot = snapshot_of(&*self.store)?;
        let old = self.state.load_full();
        let master = self.master();
        let previous = self.previous();
        let loader = Loader {
            master: &*master,
            previous: previous.as_deref(),
            settings: &self.settings,
        };
        let (state, _) = loader.build(snapshot, Some(&old))?;
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// Applies the changes `plan` computes from the current state as one transaction,
    /// retrying on conflicts with other processes, then swaps in the new state.
    fn mutate(
        &self,
        what: &'static str,
        plan: impl Fn(&State, i64) -> Result<Vec<Change>, Error>,
    ) -> Result<(), Error> {
        self.mutate_then(what, plan, || {})
    }

    /// [`Keyring::mutate`], running `committed` after the commit and before the reload
    /// (which must already see what the commit changed, such as the master key).
    fn mutate_then(
        &self,
        what: &'static str,
        plan: impl Fn(&State, i64) -> Result<Vec<Change>, Error>,
        committed: impl FnOnce(),
    ) -> Result<(), Error> {
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.refresh()?;
        for _ in 0..RETRIES {
            let st = self.state.load_full();
            let changes = plan(&st, self.clock.now())?;
            if changes.is_empty() {
                return Ok(());
            }
            match self.store.commit(st.snapshot.generation, &changes) {
                Ok(_) => {
                    committed();
                    return self.reload();
                }
                Err(kura_store::Error::Conflict { .. }) => self.reload()?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contention(what))
    }

    fn data_key_rotation(&self, st: &State, now: i64) -> Result<Vec<Change>, Error> {
        let id = new_id(|id| st.snapshot.data_keys.iter().any(|r| r.id == id))?;
        let key = Key256::generate()?;
        Ok(vec![
            Change::RetireDataKey {
                id: st.active.id,
                at: now,
            },
            Change::InsertDataKey(new_data_key_record(&self.settings, &st.kek, id, &key, now)?),
        ])
    }

    /// Makes a new active data key; the old one becomes decrypt-only. Returns the new id.
    pub fn rotate_data_key(&self) -> Result<u64, Error> {
        self.mutate("data key rotation", |st, now| {
            self.data_key_rotation(st, now)
        })?;
        Ok(self.state.load().active.id)
    }

    /// Generates a new KEK, re-wraps every data key under it and retires the old one, in one
    /// transaction. No data is touched. Returns the new KEK id.
    pub fn rotate_kek(&self) -> Result<u64, Error> {
        self.mutate("KEK rotation", |st, now| {
            let taken = |id| st.snapshot.keks.iter().any(|k| k.id == id);
            let (kek, record) = Kek::generate(&*self.master(), taken, now)?;
            let mut changes = vec![
                Change::RetireKek {
                    id: st.kek.id,
                    at: now,
                },
                Change::InsertKek(record),
            ];
            for dk in st.keys.values() {
                changes.push(Change::RewrapDataKey {
                    id: dk.id,
                    wrapped: kek.wrap(dk.id, &dk.key)?,
                    kek_id: kek.id,
                });
            }
            Ok(changes)
        })?;
        Ok(self.state.load().kek.id)
    }

    /// Erases a decrypt-only data key for good.
    pub fn destroy_data_key(&self, id: u64) -> Result<(), Error> {
        self.mutate("data key destruction", |st, now| {
            match st.snapshot.data_keys.iter().find(|r| r.id == id) {
                None => Err(Error::UnknownDataKey(id)),
                Some(r) if r.state == DataKeyState::Active => Err(Error::DestroyActive(id)),
                Some(r) if r.state == DataKeyState::Destroyed => Ok(Vec::new()),
                Some(_) => Ok(vec![Change::DestroyDataKey { id, at: now }]),
            }
        })
    }

    /// Rotates the active data key if it is due (for a background task: otherwise the
    /// first use after the due time rotates it); returns the new key's id if it did.
    pub fn rotate_if_due(&self) -> Result<Option<u64>, Error> {
        let before = self.active_data_key_id();
        self.with_active(|_| Ok(()))?;
        let after = self.active_data_key_id();
        Ok((after != before).then_some(after))
    }

    /// The id of the active data key.
    pub fn active_data_key_id(&self) -> u64 {
        self.state.load().active.id
    }

    /// The keyring's name.
    pub fn name(&self) -> &str {
        &self.settings.keyring
    }
}

fn derive(dk: &DataKey, salt: &[u8], info: &[u8], len: usize) -> Result<SecretBytes, Error> {
    let mut out = SecretBytes::new(vec![0u8; len]);
    kura_crypto::hkdf_sha256(
        salt,
        dk.key.expose_secret(),
        // The length is bound too: HKDF's shorter outputs are prefixes of longer ones.
        &[
            b"kura derived key v1\0",
            &u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes(),
            info,
        ],
        out.expose_secret_mut(),
    )
    .map_err(kura_format::Error::from)?;
    Ok(out)
}

/// The record of a new active data key `id` of the configured keyring, wrapped by `kek`.
fn new_data_key_record(
    settings: &KeyringSettings,
    kek: &Kek,
    id: u64,
    key: &Key256,
    now: i64,
) -> Result<DataKeyRecord, Error> {
    Ok(DataKeyRecord {
        id,
        keyring: settings.keyring.clone(),
        method: settings.method.as_str().to_string(),
        wrapped: kek.wrap(id, key)?,
        kek_id: kek.id,
        state: DataKeyState::Active,
        created_at: now,
        activated_at: Some(now),
        retired_at: None,
        destroyed_at: None,
    })
}

fn snapshot_of(store: &dyn Keystore) -> Result<kura_store::Snapshot, Error> {
    store.snapshot()?.ok_or_else(|| {
        Error::Store(kura_store::Error::NotInitialized {
            location: "the configured data directory".into(),
        })
    })
}
