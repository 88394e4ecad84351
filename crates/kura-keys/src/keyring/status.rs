//! `kura status`: what the keyring holds, without a single secret byte.

use kura_store::{DataKeyRecord, KekRecord};
use serde::Serialize;

use crate::Keyring;
use crate::clock::rfc3339;
use crate::config::format_duration;

/// A master key as shown: its id and where it comes from.
#[derive(Debug, Clone, Serialize)]
pub struct MasterKeyStatus {
    /// `local`, `kms` or `pkcs11`.
    pub mode: String,
    /// The id stored with the KEK (a fingerprint for local keys).
    pub id: String,
    /// Where it is read from.
    pub source: String,
}

/// A KEK as shown.
#[derive(Debug, Clone, Serialize)]
pub struct KekStatus {
    /// Its id (decimal).
    pub id: String,
    /// `active` or `retired`.
    pub state: &'static str,
    /// The master key that wraps it.
    pub master_key_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once retired.
    pub retired_at: Option<String>,
}

/// A data key as shown.
#[derive(Debug, Clone, Serialize)]
pub struct DataKeyStatus {
    /// Its id (decimal), as written in ciphertexts.
    pub id: String,
    /// `active`, `decrypt-only` or `destroyed`.
    pub state: &'static str,
    /// The keyring.
    pub keyring: String,
    /// The data encryption method it was made for.
    pub method: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub activated_at: Option<String>,
    /// RFC 3339.
    pub retired_at: Option<String>,
    /// RFC 3339.
    pub destroyed_at: Option<String>,
}

/// Everything `kura status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The keystore generation (bumped by every change).
    pub generation: u64,
    /// The master key in use.
    pub master_key: MasterKeyStatus,
    /// The previous master key, if configured.
    pub previous_master_key: Option<MasterKeyStatus>,
    /// The configured data encryption method.
    pub data_encryption_method: &'static str,
    /// The configured rotation period, e.g. `168h`.
    pub data_key_rotation_period: String,
    /// When the active data key is rotated on its next use after this instant.
    pub next_rotation_due: String,
    /// The active KEK.
    pub kek: KekStatus,
    /// Every KEK, oldest first.
    pub keks: Vec<KekStatus>,
    /// Every data key, oldest first.
    pub data_keys: Vec<DataKeyStatus>,
}

fn kek_status(k: &KekRecord) -> KekStatus {
    KekStatus {
        id: k.id.to_string(),
        state: k.state.as_str(),
        master_key_id: k.master_key_id.clone(),
        created_at: rfc3339(k.created_at),
        retired_at: k.retired_at.map(rfc3339),
    }
}

fn data_key_status(d: &DataKeyRecord) -> DataKeyStatus {
    DataKeyStatus {
        id: d.id.to_string(),
        state: d.state.as_str(),
        keyring: d.keyring.clone(),
        method: d.method.clone(),
        created_at: rfc3339(d.created_at),
        activated_at: d.activated_at.map(rfc3339),
        retired_at: d.retired_at.map(rfc3339),
        destroyed_at: d.destroyed_at.map(rfc3339),
    }
}

impl Keyring {
    /// The status of the hierarchy as this process sees it.
    pub fn status(&self) -> Status {
        let st = self.state.load();
        let master = self.master();
        let a = &st.active_record;
        let due = a
            .activated_at
            .unwrap_or(a.created_at)
            .saturating_add(self.settings.rotation_period.as_secs() as i64);
        let keks: Vec<KekStatus> = st.snapshot.keks.iter().map(kek_status).collect();
        let kek = st
            .snapshot
            .keks
            .iter()
            .find(|k| k.id == st.kek.id)
            .map(kek_status)
            .unwrap_or_else(|| KekStatus {
                id: st.kek.id.to_string(),
                state: "active",
                master_key_id: master.id().to_string(),
                created_at: String::new(),
                retired_at: None,
            });
        Status {
            generation: st.snapshot.generation,
            master_key: MasterKeyStatus {
                mode: master.mode().to_string(),
                id: master.id().to_string(),
                source: master.source().to_string(),
            },
            previous_master_key: self.previous().map(|p| MasterKeyStatus {
                mode: p.mode().to_string(),
                id: p.id().to_string(),
                source: p.source().to_string(),
            }),
            data_encryption_method: self.settings.method.as_str(),
            data_key_rotation_period: format_duration(self.settings.rotation_period),
            next_rotation_due: rfc3339(due),
            kek,
            keks,
            data_keys: st.snapshot.data_keys.iter().map(data_key_status).collect(),
        }
    }
}
