/// Errors of kura-format. Every authentication failure is the one opaque [`Error::Decrypt`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data does not start with the format's magic.
    #[error("not a kura {what}: the data does not start with the expected magic bytes")]
    BadMagic {
        /// The format expected.
        what: &'static str,
    },
    /// A version this build does not read.
    #[error(
        "unsupported {what} version {version}: this kura reads version {supported}; upgrade kura to read newer data"
    )]
    UnsupportedVersion {
        /// The format.
        what: &'static str,
        /// The version found.
        version: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// Shorter than its fixed parts.
    #[error("{what} is truncated: it is shorter than its header and tag")]
    Truncated {
        /// The format.
        what: &'static str,
    },
    /// A header field holds a value no writer produces.
    #[error("invalid {what}: {detail}")]
    Malformed {
        /// The format.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A wrapped key whose header names another key than the one it is stored for.
    #[error(
        "wrapped key blob is for {found}, but was stored as {expected}; the keystore was altered"
    )]
    KeyMismatch {
        /// What the keystore said.
        expected: String,
        /// What the blob says.
        found: String,
    },
    /// Authentication failed: altered, truncated or reordered data, or the wrong key or
    /// encryption context. Deliberately says no more.
    #[error(
        "decryption failed: the data was altered or truncated, or was encrypted under another key or encryption context"
    )]
    Decrypt,
    /// A cryptographic error other than authentication.
    #[error(transparent)]
    Crypto(kura_crypto::Error),
    /// Reading input or writing output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<kura_crypto::Error> for Error {
    fn from(e: kura_crypto::Error) -> Self {
        match e {
            kura_crypto::Error::Decrypt => Self::Decrypt,
            other => Self::Crypto(other),
        }
    }
}
