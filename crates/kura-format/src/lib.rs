//! # kura-format
//!
//! The bytes kura writes: every persisted format starts with a three-byte magic and a
//! version byte, is authenticated with its whole header bound as AAD, and is
//! key-committing. `docs/format.md` specifies every byte; `testdata/` holds frozen vectors
//! that every version of kura must keep reading.
//!
//! - [`envelope`]: one record (a database column value, a secret) sealed under a data key
//!   with committing XAES-256-GCM and a caller-supplied [`EncryptionContext`].
//! - [`stream`]: files and pipes of any size in 64 KiB chunks of AES-256-GCM under a
//!   per-stream key, with counter nonces and a last-chunk flag, so truncation, reordering
//!   and appending are all detected, in constant memory.
//! - [`wrapped`]: a key wrapped by another (KEK under a master key, data key under a KEK),
//!   with both keys' ids bound as AAD.
//!
//! This crate does no key management: callers pass the key to use, and [`envelope`] and
//! [`stream`] expose the data key id of a ciphertext so callers can look the key up.

#![forbid(unsafe_code)]

mod context;
pub mod envelope;
mod error;
pub mod stream;
pub mod wrapped;

pub use context::EncryptionContext;
pub use error::Error;

/// Reads a big-endian u64 at `at` (the caller has checked the length).
pub(crate) fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Checks magic and version; `what` names the format in errors.
pub(crate) fn check_magic(
    bytes: &[u8],
    magic: &[u8; 3],
    version: u8,
    what: &'static str,
) -> Result<(), Error> {
    if bytes.len() < 4 {
        return Err(Error::Truncated { what });
    }
    if &bytes[..3] != magic {
        return Err(Error::BadMagic { what });
    }
    if bytes[3] != version {
        return Err(Error::UnsupportedVersion {
            what,
            version: bytes[3],
            supported: version,
        });
    }
    Ok(())
}
