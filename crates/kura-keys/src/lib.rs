//! # kura-keys
//!
//! The key hierarchy: **master key (CMK) → KEK → data keys → a key per record or stream**.
//!
//! - [`master_key`]: where the master key comes from (a file, an environment variable;
//!   a KMS later) behind the [`MasterKey`] trait. It only ever wraps and unwraps the KEK.
//! - [`Keyring`]: opens a keystore, unwraps the active KEK and the data keys, seals and
//!   opens records ([`Keyring::seal`]) and streams ([`Keyring::stream_sealer`]), and
//!   rotates every level online: data key (new active, old decrypt-only), KEK (every data
//!   key re-wrapped in one transaction), master key (the KEK re-wrapped, O(1)).
//! - [`config`]: TOML file, environment and flags resolved into [`config::Settings`].
//! - [`Status`]: what `kura status` shows. It holds ids, states, timestamps and sources,
//!   never a key.
//! - [`backup`]: backups holding only wrapped keys (checksummed, authenticated under the
//!   KEK), and restoring them: data keys decrypt-only under a new KEK (Tableau's rules).
//! - [`Vault`]: the API for applications: [`Vault::from_config`] opens the keystore
//!   configured as for the CLI, [`Vault::seal`] and [`Vault::open`] handle record
//!   envelopes, and [`Vault::open_any`] also reads legacy AES-128-CBC values.
//! - [`aws`]: what a failed AWS SDK call amounts to (the KMS master key here, S3 backups in
//!   the CLI), so that every message says what to check.
//!
//! ## Using kura from an application
//!
//! ```text
//! cargo run -p kura-keys --example seal_open
//! ```
//!
//! runs `examples/seal_open.rs`: it creates a throwaway keystore with a generated master
//! key, seals values from 8 threads sharing one [`Vault`], opens them, and reads a legacy
//! AES-128-CBC value with the dual reader.
//!
//! Plaintext keys exist only in memory, in zeroizing types; the keystore sees wrapped
//! blobs. A configured previous master key is tried when the current one did not wrap the
//! KEK, and the KEK is then re-wrapped under the current one.

#![forbid(unsafe_code)]

pub mod aws;
pub mod background;
pub mod backup;
pub mod clock;
pub mod config;
mod error;
mod keyring;
pub mod master_key;
pub mod redact;
mod vault;

pub use error::Error;
pub use keyring::{
    DEFAULT_KEYRING, DataKey, DataKeyStatus, KekStatus, Keyring, KeyringSettings, MasterKeyStatus,
    OpenReport, REFRESH_SECS, Status,
};
pub use master_key::{LocalMasterKey, MasterKey};
pub use vault::{LEGACY_KEY_LEN, LegacyFormat, LegacyKey, Origin, Vault, find_envelope};
