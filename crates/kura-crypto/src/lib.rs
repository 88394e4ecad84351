//! # kura-crypto
//!
//! The cryptographic primitives of kura, and nothing else: no I/O, no formats, no policy.
//! Everything is built on aws-lc-rs, except SM4, which comes from RustCrypto's `sm4` and
//! `ctr` crates.
//!
//! - [`Key256`] and [`SecretBytes`]: key material. Zeroized on drop, locked in memory where
//!   the OS allows, and deliberately without `Debug`, `Clone`, `PartialEq` or `Serialize`.
//! - [`Aes256Gcm`]: AES-256-GCM under one pre-built key with caller-chosen 96-bit nonces
//!   (used with counter nonces only, e.g. the chunks of a stream).
//! - [`XaesCommitting`]: XAES-256-GCM (C2SP) with a 32-byte key commitment: a fresh
//!   AES-256-GCM key per 192-bit random nonce, so one data key can seal 2⁸⁰ records.
//! - [`CtrCipher`]: AES-128/192/256-CTR and SM4-CTR keystreams at any byte offset
//!   (TiKV-compatible 128-bit big-endian counters).
//! - [`hmac_sha256`] and [`sha256`] (authenticating and checksumming backups),
//!   [`hkdf_sha256`], [`rng`] (system randomness and a fork-safe nonce pool), and
//!   [`legacy`] AES-128-CBC/PKCS#7 for migrating old data.
//!
//! Any authentication failure is the one opaque [`Error::Decrypt`]: callers cannot tell a
//! wrong key from a flipped bit, and neither can an attacker.

#![forbid(unsafe_code)]

mod aead;
mod ctr;
mod error;
mod hkdf;
pub mod legacy;
mod mac;
pub mod rng;
mod secret;

pub use aead::{
    Aes256Gcm, GCM_NONCE_LEN, TAG_LEN, XAES_COMMITMENT_LEN, XAES_NONCE_LEN, XaesCommitting,
    XaesMessage,
};
pub use ctr::{CtrCipher, CtrMethod};
pub use error::Error;
pub use hkdf::hkdf_sha256;
pub use mac::{SHA256_LEN, hmac_sha256, hmac_sha256_verify, sha256};
pub use secret::{Key256, SecretBytes};

/// Compares two byte strings in constant time (for tags, commitments and key checks);
/// aws-lc's `CRYPTO_memcmp`, which compares a word at a time.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
