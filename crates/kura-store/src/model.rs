//! The records a keystore holds. Key ids are random and in `1..2⁶³` so that they fit a
//! signed 64-bit SQL integer; timestamps are Unix seconds (UTC).

/// State of a key-encryption key. Exactly one KEK is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KekState {
    /// Wraps new data keys; the only KEK data keys are wrapped under.
    Active,
    /// Replaced by a newer KEK; wraps nothing any more and is kept for the record.
    Retired,
}

impl KekState {
    /// The name stored and shown (`active`, `retired`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// State of a data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataKeyState {
    /// Encrypts and decrypts. Exactly one per keyring.
    Active,
    /// Decrypts only (rotated out, or restored from a backup).
    DecryptOnly,
    /// Its material is erased; data under it can never be decrypted again.
    Destroyed,
}

impl DataKeyState {
    /// The name stored and shown (`active`, `decrypt-only`, `destroyed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::DecryptOnly => "decrypt-only",
            Self::Destroyed => "destroyed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "decrypt-only" => Some(Self::DecryptOnly),
            "destroyed" => Some(Self::Destroyed),
            _ => None,
        }
    }
}

/// A key-encryption key, wrapped by a master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekRecord {
    /// Random id in `1..2⁶³`.
    pub id: u64,
    /// The wrapped-key blob (kura-format), opaque here.
    pub wrapped: Vec<u8>,
    /// Which master key wrapped it (a fingerprint or KMS key id; never secret).
    pub master_key_id: String,
    /// Life-cycle state.
    pub state: KekState,
    /// When it was generated.
    pub created_at: i64,
    /// When it was replaced, if it was.
    pub retired_at: Option<i64>,
}

/// A data key, wrapped by a KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRecord {
    /// Random id in `1..2⁶³`.
    pub id: u64,
    /// The keyring it belongs to (`default` for records and streams).
    pub keyring: String,
    /// The data encryption method configured when it was made (e.g. `aes256-ctr`).
    pub method: String,
    /// The wrapped-key blob; empty once destroyed.
    pub wrapped: Vec<u8>,
    /// The KEK that wraps it.
    pub kek_id: u64,
    /// Life-cycle state.
    pub state: DataKeyState,
    /// When it was generated.
    pub created_at: i64,
    /// When it became active, if it ever was.
    pub activated_at: Option<i64>,
    /// When it stopped being active, if it did.
    pub retired_at: Option<i64>,
    /// When its material was erased, if it was.
    pub destroyed_at: Option<i64>,
}

/// Everything a keystore holds, as of one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Bumped by every commit.
    pub generation: u64,
    /// All KEKs, oldest first.
    pub keks: Vec<KekRecord>,
    /// All data keys, oldest first.
    pub data_keys: Vec<DataKeyRecord>,
}

/// One change in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Adds a KEK.
    InsertKek(KekRecord),
    /// Replaces a KEK's wrapped blob (master-key rotation).
    RewrapKek {
        /// The KEK.
        id: u64,
        /// The new blob.
        wrapped: Vec<u8>,
        /// The master key that wrapped it.
        master_key_id: String,
    },
    /// Marks a KEK retired.
    RetireKek {
        /// The KEK.
        id: u64,
        /// When.
        at: i64,
    },
    /// Adds a data key.
    InsertDataKey(DataKeyRecord),
    /// Replaces a data key's wrapped blob (KEK rotation).
    RewrapDataKey {
        /// The data key.
        id: u64,
        /// The new blob.
        wrapped: Vec<u8>,
        /// The KEK that wraps it now.
        kek_id: u64,
    },
    /// Moves an active data key to decrypt-only.
    RetireDataKey {
        /// The data key.
        id: u64,
        /// When.
        at: i64,
    },
    /// Makes a data key active (its `activated_at` is set).
    ActivateDataKey {
        /// The data key.
        id: u64,
        /// When.
        at: i64,
    },
    /// Erases a data key's material for good.
    DestroyDataKey {
        /// The data key.
        id: u64,
        /// When.
        at: i64,
    },
}
