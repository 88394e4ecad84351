//! Backups of a keystore, and restoring them (Tableau's rules).
//!
//! A backup holds only wrapped keys: every KEK (wrapped by the master key), every data key
//! (wrapped by the active KEK, or emptied if destroyed), every object of the services
//! (KMS keys and their sealed material, aliases, policies, tags, users with sealed
//! secrets) except node registrations, the generation, when it was made and which master
//! key wrapped the KEK. The layout is in [`format`] and `docs/format.md`.
//!
//! A backup is checksummed (SHA-256, to tell damage from a wrong master key before any
//! key is needed) and authenticated (HMAC-SHA256 under a key derived from the active KEK,
//! so nobody without the master key can change it unseen). Any change is
//! [`Error::BackupDamaged`], one opaque error; a backup whose KEK the configured master
//! key did not wrap is [`Error::BackupWrongMasterKey`], naming both.
//!
//! [`restore`] brings every data key back decrypt-only (destroyed ones stay destroyed),
//! re-wrapped under a newly generated KEK, adds a new active data key to every keyring
//! that had one, and puts the objects back, in one keystore transaction
//! ([`kura_store::Store::replace_all`]). Everything encrypted before the backup still
//! decrypts; nothing new is ever encrypted under a restored key.

mod format;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use kura_crypto::{Key256, hkdf_sha256, hmac_sha256, sha256};
use kura_format::wrapped::{self, Kind};
use kura_store::{Change, DataKeyRecord, DataKeyState, KekRecord, KekState, Store};
use serde::Serialize;
use zeroize::Zeroizing;

pub use format::{MAGIC, SALT_LEN, VERSION};

use crate::Error;
use crate::clock::rfc3339;
use crate::config::Method;
use crate::keyring::state::{Kek, new_id};
use crate::master_key::MasterKey;
use format::{Body, Header, TRAILER_LEN};

/// The HKDF `info` of the authentication key.
const MAC_INFO: &[u8] = b"kura backup v1 mac";

/// How many data keys of each state a backup holds.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DataKeyCounts {
    /// Active (one per keyring).
    pub active: usize,
    /// Decrypt-only.
    pub decrypt_only: usize,
    /// Destroyed (no material).
    pub destroyed: usize,
}

/// What a backup holds, for messages: ids, counts and times, never a key.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackupSummary {
    /// The format version.
    pub format_version: u8,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// The keystore generation it was made at.
    pub generation: u64,
    /// The master key that wrapped its active KEK.
    pub master_key_id: String,
    /// Where that master key was read from when the backup was made.
    pub master_key_source: String,
    /// The active KEK in the backup.
    pub kek_id: String,
    /// KEKs (active and retired).
    pub keks: usize,
    /// Data keys by state.
    pub data_keys: DataKeyCounts,
    /// The keyrings that have data keys.
    pub keyrings: Vec<String>,
    /// Objects (node registrations are never backed up).
    pub objects: usize,
    /// Objects by kind.
    pub object_kinds: BTreeMap<String, usize>,
}

/// A backup that passed its checksum and its authentication, with its KEK unwrapped.
pub struct Verified {
    body: Body,
    kek: Kek,
}

impl Verified {
    /// What it holds.
    pub fn summary(&self) -> BackupSummary {
        summary(&self.body)
    }

    /// Its KEKs, as they were stored.
    pub fn keks(&self) -> &[KekRecord] {
        &self.body.keks
    }

    /// Its data keys, as they were stored.
    pub fn data_keys(&self) -> &[DataKeyRecord] {
        &self.body.data_keys
    }

    /// Its objects.
    pub fn objects(&self) -> &[kura_store::Object] {
        &self.body.objects
    }
}

fn summary(body: &Body) -> BackupSummary {
    let h = &body.header;
    let mut counts = DataKeyCounts::default();
    for d in &body.data_keys {
        match d.state {
            DataKeyState::Active => counts.active += 1,
            DataKeyState::Destroyed => counts.destroyed += 1,
            _ => counts.decrypt_only += 1,
        }
    }
    let keyrings: BTreeSet<&str> = body.data_keys.iter().map(|d| d.keyring.as_str()).collect();
    let mut object_kinds = BTreeMap::new();
    for o in &body.objects {
        *object_kinds.entry(o.kind.clone()).or_insert(0) += 1;
    }
    BackupSummary {
        format_version: VERSION,
        created_at: rfc3339(h.created_at),
        generation: h.generation,
        master_key_id: h.master_key_id.clone(),
        master_key_source: h.master_key_source.clone(),
        kek_id: h.kek_id.to_string(),
        keks: body.keks.len(),
        data_keys: counts,
        keyrings: keyrings.into_iter().map(str::to_string).collect(),
        objects: body.objects.len(),
        object_kinds,
    }
}

/// The master key (current or previous) whose id is `id`.
fn master_named<'a>(
    id: &str,
    master: &'a dyn MasterKey,
    previous: Option<&'a dyn MasterKey>,
) -> Option<&'a dyn MasterKey> {
    if master.id() == id {
        return Some(master);
    }
    previous.filter(|p| p.id() == id)
}

/// Backs up everything in `store` as of one moment. The active KEK is unwrapped with
/// `master`, or `previous` if that wrapped it (it keys the authentication). Returns the
/// file's bytes and what they hold.
pub fn create(
    store: &dyn Store,
    master: &dyn MasterKey,
    previous: Option<&dyn MasterKey>,
    now: i64,
) -> Result<(Vec<u8>, BackupSummary), Error> {
    let mut salt = [0u8; SALT_LEN];
    kura_crypto::rng::fill(&mut salt)?;
    create_with_salt(store, master, previous, now, salt)
}

/// [`create`] with a given salt: for known-answer vectors only.
pub fn create_with_salt(
    store: &dyn Store,
    master: &dyn MasterKey,
    previous: Option<&dyn MasterKey>,
    now: i64,
    salt: [u8; SALT_LEN],
) -> Result<(Vec<u8>, BackupSummary), Error> {
    let export = store.export()?.ok_or_else(|| {
        Error::Store(kura_store::Error::NotInitialized {
            location: "the configured data directory".into(),
        })
    })?;
    let snapshot = export.snapshot;
    let rec = crate::keyring::state::active_kek(&snapshot)?;
    let wrapped_by = wrapped::parse(&rec.wrapped)?.wrapping_key_id.to_string();
    let Some(mk) = master_named(&wrapped_by, master, previous) else {
        return Err(Error::WrongMasterKey {
            kek_id: rec.id,
            wrapped_by,
            current: master.id().to_string(),
            previous: previous
                .map(|p| format!(", and the previous master key is {}", p.id()))
                .unwrap_or_default(),
        });
    };
    let kek = mk.unwrap_kek(rec.id, &rec.wrapped)?;
    let body = Body {
        header: Header {
            salt,
            created_at: now,
            generation: snapshot.generation,
            kek_id: rec.id,
            master_key_id: wrapped_by,
            master_key_source: mk.source().to_string(),
        },
        keks: snapshot.keks,
        data_keys: snapshot.data_keys,
        objects: export.objects,
    };
    let bytes = seal(&body, &kek)?;
    Ok((bytes, summary(&body)))
}

/// The authentication key of a backup with salt `salt` made under `kek`.
fn mac_key(salt: &[u8; SALT_LEN], kek: &Key256) -> Result<Zeroizing<[u8; 32]>, Error> {
    let mut k = Zeroizing::new([0u8; 32]);
    hkdf_sha256(salt, kek.expose_secret(), &[MAC_INFO], &mut k[..])?;
    Ok(k)
}

/// Encodes `body` and appends the tag under `kek` and the checksum.
fn seal(body: &Body, kek: &Key256) -> Result<Vec<u8>, Error> {
    let mut bytes = format::encode(body).map_err(|_| {
        Error::Config(
            "the keystore holds a field longer than 4 GiB or a key state backup format 1 has no code for; \
             it cannot be backed up"
                .into(),
        )
    })?;
    let tag = hmac_sha256(&mac_key(&body.header.salt, kek)?[..], &[&bytes]);
    bytes.extend_from_slice(&tag);
    let sum = sha256(&[&bytes]);
    bytes.extend_from_slice(&sum);
    Ok(bytes)
}

/// Checks and reads a backup. The checksum is checked first, so that any damage, the
/// magic and version byte included, is [`Error::BackupDamaged`]; then the version; then
/// the master key: `master` or `previous` must be the one the backup names
/// ([`Error::BackupWrongMasterKey`] otherwise); then the KEK is unwrapped and the tag
/// checked.
pub fn open(
    bytes: &[u8],
    master: &dyn MasterKey,
    previous: Option<&dyn MasterKey>,
) -> Result<Verified, Error> {
    let Some(t) = bytes.len().checked_sub(TRAILER_LEN).filter(|t| *t >= 4) else {
        return Err(Error::BackupDamaged);
    };
    let (signed, sum) = bytes.split_at(bytes.len() - kura_crypto::SHA256_LEN);
    if !kura_crypto::ct_eq(&sha256(&[signed]), sum) {
        return Err(Error::BackupDamaged);
    }
    if bytes[..3] != MAGIC {
        return Err(Error::BackupDamaged);
    }
    if bytes[3] != VERSION {
        return Err(Error::BackupVersion {
            found: bytes[3],
            supported: VERSION,
        });
    }
    let (body_bytes, tag) = (&bytes[..t], &signed[t..]);
    let body = format::decode(body_bytes).map_err(|_| Error::BackupDamaged)?;
    let h = &body.header;
    let Some(mk) = master_named(&h.master_key_id, master, previous) else {
        return Err(Error::BackupWrongMasterKey {
            recorded: h.master_key_id.clone(),
            recorded_source: h.master_key_source.clone(),
            configured: master.id().to_string(),
            previous: previous
                .map(|p| format!(" (and the previous master key is {})", p.id()))
                .unwrap_or_default(),
        });
    };
    let rec = body
        .keks
        .iter()
        .find(|k| k.id == h.kek_id && k.state == KekState::Active)
        .ok_or(Error::BackupDamaged)?;
    // The checksum already held, so a KEK that does not authenticate means a changed
    // file; a KMS or token that cannot be reached, or refuses, is reported as itself.
    let kek = mk.unwrap_kek(rec.id, &rec.wrapped).map_err(|e| match e {
        Error::KekUnwrap { .. } | Error::Format(_) | Error::Crypto(_) => Error::BackupDamaged,
        Error::Kms(k) if k.kind() == crate::master_key::KmsErrorKind::WrongContext => {
            Error::BackupDamaged
        }
        other => other,
    })?;
    kura_crypto::hmac_sha256_verify(&mac_key(&h.salt, &kek)?[..], &[body_bytes], tag)
        .map_err(|_| Error::BackupDamaged)?;
    let kek = Kek::new(rec.id, kek)?;
    Ok(Verified { body, kek })
}

/// A new active data key made by a restore.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NewActiveKey {
    /// Its keyring.
    pub keyring: String,
    /// Its id.
    pub id: String,
}

/// What [`restore`] did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RestoreReport {
    /// What the backup held.
    pub backup: BackupSummary,
    /// The keystore generation after the restore.
    pub generation: u64,
    /// The new KEK (the backup's KEKs are not carried over).
    pub kek_id: String,
    /// The master key that wraps it.
    pub master_key_id: String,
    /// Data keys restored decrypt-only.
    pub decrypt_only: usize,
    /// Data keys restored destroyed.
    pub destroyed: usize,
    /// The new active data key of every keyring that had one.
    pub new_active: Vec<NewActiveKey>,
    /// Objects restored.
    pub objects: usize,
}

/// Restores `backup` into `store` in one transaction (see the module documentation).
/// `expected_generation` is `None` for a keystore that must not be initialised, or the
/// generation of the keystore being replaced. New data keys are made for `method`; the new
/// KEK is wrapped by `master`.
pub fn restore(
    store: &dyn Store,
    backup: &Verified,
    master: &dyn MasterKey,
    method: Method,
    expected_generation: Option<u64>,
    now: i64,
) -> Result<RestoreReport, Error> {
    let body = &backup.body;
    let old = &backup.kek;
    let (kek, kek_record) = Kek::generate(master, |id| body.keks.iter().any(|k| k.id == id), now)?;
    let kek_id = kek.id;
    let mut changes = vec![Change::InsertKek(kek_record)];
    let (mut decrypt_only, mut destroyed) = (0, 0);
    let mut had_active = BTreeSet::new();
    for d in &body.data_keys {
        let mut r = d.clone();
        r.kek_id = kek_id;
        match d.state {
            DataKeyState::Destroyed => {
                r.wrapped = Vec::new();
                destroyed += 1;
            }
            state => {
                if state == DataKeyState::Active {
                    had_active.insert(d.keyring.clone());
                    r.state = DataKeyState::DecryptOnly;
                    r.retired_at = Some(now);
                }
                r.wrapped = rewrap(old, &kek, d)?;
                decrypt_only += 1;
            }
        }
        changes.push(Change::InsertDataKey(r));
    }
    let mut new_active = Vec::new();
    let mut taken: BTreeSet<u64> = body.data_keys.iter().map(|d| d.id).collect();
    for keyring in had_active {
        let id = new_id(|id| taken.contains(&id))?;
        taken.insert(id);
        let key = Key256::generate()?;
        changes.push(Change::InsertDataKey(DataKeyRecord {
            id,
            keyring: keyring.clone(),
            method: method.as_str().to_string(),
            wrapped: kek.wrap(id, &key)?,
            kek_id,
            state: DataKeyState::Active,
            created_at: now,
            activated_at: Some(now),
            retired_at: None,
            destroyed_at: None,
        }));
        new_active.push(NewActiveKey {
            keyring,
            id: id.to_string(),
        });
    }
    // The master-key mode `kura set-mode` recorded describes the backed-up keystore's
    // master key: it is kept only if that is the key restoring now, else a process started
    // without master-key configuration would look for a key that no longer wraps the KEK.
    let same_master = body
        .keks
        .iter()
        .any(|k| k.state == KekState::Active && k.master_key_id == master.id());
    let objects: Vec<kura_store::Object> = body
        .objects
        .iter()
        .filter(|o| same_master || o.kind != crate::master_key::descriptor::MASTER_KEY_KIND)
        .cloned()
        .collect();
    let generation = store.replace_all(expected_generation, &changes, &objects)?;
    Ok(RestoreReport {
        backup: summary(body),
        generation,
        kek_id: kek_id.to_string(),
        master_key_id: master.id().to_string(),
        decrypt_only,
        destroyed,
        new_active,
        objects: objects.len(),
    })
}

/// Data key `d` of a backup, unwrapped from the backup's KEK and wrapped under `new`.
fn rewrap(old: &Kek, new: &Kek, d: &DataKeyRecord) -> Result<Vec<u8>, Error> {
    if d.kek_id != old.id {
        return Err(Error::Store(kura_store::Error::Corrupt {
            location: "the backup".into(),
            what: format!(
                "data key {} is wrapped by KEK {}, not by the active KEK {}",
                d.id, d.kek_id, old.id
            ),
        }));
    }
    let secret = wrapped::unwrap(&old.xaes, Kind::DataKeyUnderKek, d.id, &d.wrapped)?;
    let key = Key256::from_slice(secret.expose_secret(), "data key")?;
    new.wrap(d.id, &key)
}
