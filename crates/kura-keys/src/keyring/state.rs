//! Turning a keystore snapshot into unwrapped keys in memory.

use std::collections::HashMap;
use std::sync::Arc;

use kura_crypto::{Key256, XaesCommitting, rng};
use kura_format::wrapped::{self, Kind};
use kura_store::{Change, DataKeyRecord, DataKeyState, KekRecord, KekState, Snapshot};

use crate::master_key::MasterKey;
use crate::{Error, KeyringSettings};

/// The KEK, unwrapped.
pub(crate) struct Kek {
    pub(crate) id: u64,
    pub(crate) xaes: XaesCommitting,
    pub(crate) key: Key256,
}

impl Kek {
    pub(crate) fn new(id: u64, key: Key256) -> Result<Self, Error> {
        Ok(Self {
            id,
            xaes: XaesCommitting::new(&key)?,
            key,
        })
    }

    /// A new KEK: a random key under a random id that `taken` does not hold, wrapped by
    /// `master`; with the record that inserts it as the active KEK, created at `now`.
    pub(crate) fn generate(
        master: &dyn MasterKey,
        taken: impl Fn(u64) -> bool,
        now: i64,
    ) -> Result<(Self, KekRecord), Error> {
        let id = new_id(taken)?;
        let key = Key256::generate()?;
        let record = KekRecord {
            id,
            wrapped: master.wrap_kek(id, &key)?,
            master_key_id: master.id().to_string(),
            state: KekState::Active,
            created_at: now,
            retired_at: None,
        };
        Ok((Self::new(id, key)?, record))
    }

    /// Wraps data key `id` under this KEK.
    pub(crate) fn wrap(&self, id: u64, key: &Key256) -> Result<Vec<u8>, Error> {
        Ok(wrapped::wrap(
            &self.xaes,
            &self.id.to_string(),
            Kind::DataKeyUnderKek,
            id,
            key.expose_secret(),
        )?)
    }
}

/// A data key, unwrapped and prepared for sealing.
pub struct DataKey {
    pub(crate) id: u64,
    pub(crate) key: Key256,
    pub(crate) xaes: XaesCommitting,
}

impl DataKey {
    pub(crate) fn new(id: u64, key: Key256) -> Result<Self, Error> {
        Ok(Self {
            id,
            xaes: XaesCommitting::new(&key)?,
            key,
        })
    }

    /// The key's id, as written in every ciphertext it seals.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Data key ids are random 63-bit numbers chosen by kura, so they need no hashing: the
/// id itself spreads evenly (and lookups of ids an attacker picks can only miss).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The data keys by id.
pub(crate) type KeyMap = HashMap<u64, Arc<DataKey>, std::hash::BuildHasherDefault<IdHasher>>;

/// What a process holds: the snapshot it was built from and the unwrapped keys.
pub(crate) struct State {
    pub(crate) snapshot: Snapshot,
    pub(crate) kek: Arc<Kek>,
    pub(crate) keys: KeyMap,
    pub(crate) active: Arc<DataKey>,
    pub(crate) active_record: DataKeyRecord,
    /// The instant (Unix seconds) from which the active key is rotated on its next use.
    pub(crate) rotate_at: i64,
}

/// A change the load wants committed: the KEK re-wrapped from the previous master key.
pub(crate) struct Rewrap {
    pub(crate) change: Change,
    pub(crate) from: String,
}

/// A random key id in `1..2⁶³` not in `taken`.
pub(crate) fn new_id(taken: impl Fn(u64) -> bool) -> Result<u64, Error> {
    loop {
        let mut b = [0u8; 8];
        rng::fill(&mut b)?;
        let id = u64::from_be_bytes(b) >> 1;
        if id != 0 && !taken(id) {
            return Ok(id);
        }
    }
}

fn corrupt(what: String) -> Error {
    Error::Store(kura_store::Error::Corrupt {
        location: "keystore".into(),
        what,
    })
}

/// The master keys and settings a state is built with.
pub(crate) struct Loader<'a> {
    pub(crate) master: &'a dyn MasterKey,
    pub(crate) previous: Option<&'a dyn MasterKey>,
    pub(crate) settings: &'a KeyringSettings,
}

impl Loader<'_> {
    /// Builds the in-memory state for `snapshot`, reusing keys already unwrapped in `old`.
    pub(crate) fn build(
        &self,
        snapshot: Snapshot,
        old: Option<&State>,
    ) -> Result<(State, Option<Rewrap>), Error> {
        let (kek, rewrap) = self.kek(&snapshot, old)?;
        let mut keys = KeyMap::default();
        let mut active = None;
        for r in &snapshot.data_keys {
            if r.state == DataKeyState::Destroyed {
                continue;
            }
            if r.kek_id != kek.id {
                return Err(corrupt(format!(
                    "data key {} is wrapped by KEK {}, not by the active KEK {}",
                    r.id, r.kek_id, kek.id
                )));
            }
            let reuse = old
                .filter(|o| o.kek.id == kek.id)
                .and_then(|o| o.keys.get(&r.id).cloned());
            let dk = match reuse {
                Some(dk) => dk,
                None => {
                    let secret =
                        wrapped::unwrap(&kek.xaes, Kind::DataKeyUnderKek, r.id, &r.wrapped)?;
                    Arc::new(DataKey::new(
                        r.id,
                        Key256::from_slice(secret.expose_secret(), "data key")?,
                    )?)
                }
            };
            if r.state == DataKeyState::Active && r.keyring == self.settings.keyring {
                active = Some((dk.clone(), r.clone()));
            }
            keys.insert(r.id, dk);
        }
        let Some((active, active_record)) = active else {
            return Err(corrupt(format!(
                "keyring {} has no active data key",
                self.settings.keyring
            )));
        };
        // Due when older than the period, or made for another method than configured.
        let rotate_at = if active_record.method == self.settings.method.as_str() {
            active_record
                .activated_at
                .unwrap_or(active_record.created_at)
                .saturating_add(self.settings.rotation_period.as_secs() as i64)
        } else {
            i64::MIN
        };
        Ok((
            State {
                snapshot,
                kek,
                keys,
                active,
                active_record,
                rotate_at,
            },
            rewrap,
        ))
    }

    /// The active KEK of `snapshot`, reused from `old` when unchanged.
    pub(crate) fn kek(
        &self,
        snapshot: &Snapshot,
        old: Option<&State>,
    ) -> Result<(Arc<Kek>, Option<Rewrap>), Error> {
        let rec = active_kek(snapshot)?;
        // A KEK's material never changes for its id: a KEK re-wrapped under a new master
        // key by another process is the one already in memory, so a running process goes
        // on across an online master-key rotation without being given the new key.
        match old.filter(|o| o.kek.id == rec.id) {
            Some(o) => Ok((o.kek.clone(), None)),
            None => {
                let (kek, rewrap) = self.unwrap_kek(rec)?;
                Ok((Arc::new(kek), rewrap))
            }
        }
    }

    /// Whether `snapshot` has an active data key in this loader's keyring.
    pub(crate) fn has_active_key(&self, snapshot: &Snapshot) -> bool {
        snapshot
            .data_keys
            .iter()
            .any(|r| r.state == DataKeyState::Active && r.keyring == self.settings.keyring)
    }

    /// Unwraps the KEK with the master key that wrapped it: the current one, or the
    /// previous one (then asks for a re-wrap under the current one).
    fn unwrap_kek(&self, rec: &KekRecord) -> Result<(Kek, Option<Rewrap>), Error> {
        let (master, previous) = (self.master, self.previous);
        let h = wrapped::parse(&rec.wrapped)?;
        if h.wrapping_key_id == master.id() {
            let key = master.unwrap_kek(rec.id, &rec.wrapped)?;
            return Ok((Kek::new(rec.id, key)?, None));
        }
        if let Some(prev) = previous.as_ref().filter(|p| p.id() == h.wrapping_key_id) {
            let key = prev.unwrap_kek(rec.id, &rec.wrapped)?;
            let blob = master.wrap_kek(rec.id, &key)?;
            let change = Change::RewrapKek {
                id: rec.id,
                wrapped: blob.clone(),
                master_key_id: master.id().to_string(),
            };
            return Ok((
                Kek::new(rec.id, key)?,
                Some(Rewrap {
                    change,
                    from: prev.id().to_string(),
                }),
            ));
        }
        Err(Error::WrongMasterKey {
            kek_id: rec.id,
            wrapped_by: h.wrapping_key_id.to_string(),
            current: master.id().to_string(),
            previous: previous
                .map(|p| format!(", and the previous master key is {}", p.id()))
                .unwrap_or_default(),
        })
    }
}

pub(crate) fn active_kek(snapshot: &Snapshot) -> Result<&KekRecord, Error> {
    snapshot
        .keks
        .iter()
        .find(|k| k.state == KekState::Active)
        .ok_or_else(|| corrupt("no active KEK".into()))
}
