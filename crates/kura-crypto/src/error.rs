/// Errors of kura-crypto. Every failure to authenticate is the single opaque
/// [`Error::Decrypt`], whatever its cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Authentication failed: the data was altered or truncated, or it was encrypted under
    /// another key or context. Deliberately says no more.
    #[error(
        "decryption failed: the data was altered or truncated, or was encrypted under another key or encryption context"
    )]
    Decrypt,
    /// A key of the wrong length was supplied.
    #[error("wrong key size for {what}: it must be {expected} bytes, but is {actual}")]
    KeySize {
        /// What the key was for.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length supplied.
        actual: usize,
    },
    /// A message is larger than one AES-GCM invocation may process.
    #[error("message of {0} bytes is too large for one AES-GCM operation (limit 64 GiB); split it")]
    TooLarge(u64),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed; check /dev/urandom and getrandom(2)")]
    Random,
    /// The underlying cryptographic library refused an operation that should not fail.
    #[error("the cryptographic library failed in {0}")]
    Library(&'static str),
}
