/// Errors of the keystore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The keystore has no keys yet.
    #[error("the keystore at {location} is not initialised; run `kura init` first")]
    NotInitialized {
        /// Where the keystore is (a path or a database name).
        location: String,
    },
    /// `initialize` on a keystore that already holds keys.
    #[error(
        "the keystore at {location} is already initialised; use `kura rotate` to change keys, or choose another --data-dir"
    )]
    AlreadyInitialized {
        /// Where the keystore is.
        location: String,
    },
    /// Another process changed the keystore since it was read.
    #[error(
        "the keystore was changed by another process (generation {found}, expected {expected}); reload and retry"
    )]
    Conflict {
        /// The generation the caller read.
        expected: u64,
        /// The generation now stored.
        found: u64,
    },
    /// An object that must be new exists already.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What.
        what: String,
    },
    /// The schema is newer than this build understands.
    #[error(
        "the keystore at {location} has schema version {found}, newer than the {supported} this kura supports; upgrade kura"
    )]
    SchemaTooNew {
        /// Where the keystore is.
        location: String,
        /// Version found.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// A change refers to a key that does not exist, or breaks an invariant (two active keys,
    /// a duplicate id).
    #[error("keystore change rejected: {0}")]
    Invalid(String),
    /// Stored data that cannot be interpreted.
    #[error("the keystore at {location} holds invalid data ({what}); restore it from a backup")]
    Corrupt {
        /// Where the keystore is.
        location: String,
        /// What is wrong.
        what: String,
    },
    /// The database itself failed.
    #[error("keystore database error at {location}: {source}")]
    Database {
        /// Where the keystore is.
        location: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file system error (creating the data directory or the database file).
    #[error("cannot access the keystore at {location}: {source}")]
    Io {
        /// Where the keystore is.
        location: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another PostgreSQL database (an application's) cannot be connected to
    /// ([`crate::connect_client`]).
    #[error("cannot connect to {location}: {message}")]
    Connect {
        /// The database URL, its password hidden.
        location: String,
        /// Why, and what to do.
        message: String,
    },
}
