//! The crate's one error type.

use std::path::PathBuf;

/// What can go wrong. Every decryption or authentication failure is the one opaque
/// [`Error::Decrypt`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Altered, swapped, truncated or foreign data, or the wrong key.
    #[error(
        "decryption failed: the data was altered, truncated, or belongs to another file or key"
    )]
    Decrypt,
    /// An I/O error on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A dictionary that cannot be read: not a torn tail, real damage.
    #[error("the file dictionary {path} is damaged ({what}); restore it from a backup")]
    Dictionary {
        /// The dictionary file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A path that is not a plain relative path under the root.
    #[error(
        "'{0}' is not a relative path under the data root (no '..', no absolute paths, no empty components)"
    )]
    BadPath(String),
    /// A write inside a CTR file, or a truncation of one.
    #[error(
        "{path}: CTR files are append-only (a write at {offset} would re-encrypt bytes before the end, {len}); \
             write from the end, recreate the file, or use data-encryption-method aes256-gcm-page for files rewritten in place"
    )]
    CtrOverwrite {
        /// The file.
        path: PathBuf,
        /// Where the write or truncation was.
        offset: u64,
        /// The file's length.
        len: u64,
    },
    /// A length or buffer beyond what this platform addresses.
    #[error("a length beyond what this platform can address")]
    TooLarge,
    /// A keyring error (the data key of a file, the dictionary's keys).
    #[error(transparent)]
    Keys(#[from] kura_keys::Error),
    /// A cryptographic primitive failed.
    #[error(transparent)]
    Crypto(#[from] kura_crypto::Error),
}
