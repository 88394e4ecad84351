use std::path::PathBuf;

/// Errors of the key hierarchy. Wordings a user meets at start-up follow the documents
/// operators already know (Looker's "Missing backing keystore", "Size of the Master Key is
/// invalid", "Permission for backing key file").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No master key is configured, or its file does not exist.
    #[error("Missing backing keystore: {0}")]
    MissingMasterKey(String),
    /// The master key decodes to other than 32 bytes.
    #[error(
        "Size of the Master Key is invalid it must be 32 bytes however is {actual} (from {source_name})"
    )]
    MasterKeySize {
        /// Bytes found.
        actual: usize,
        /// Where the key came from.
        source_name: String,
    },
    /// The key file is readable or writable by others, or writable by its owner.
    #[error("Permission for backing key file must be 0400, but is {mode:o}: run `chmod 0400 {}`", path.display())]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The master key is not 64 hex digits or base64.
    #[error(
        "the master key in {source_name} is neither 64 hex digits nor base64; generate one with `kura keygen`"
    )]
    MasterKeyEncoding {
        /// Where the key came from.
        source_name: String,
    },
    /// The KEK was wrapped by a master key that is not configured.
    #[error(
        "wrong master key: KEK {kek_id} is wrapped by master key {wrapped_by}, but the configured master key is {current}{previous}; \
         if the master key was rotated, configure the old one as previous-master-key \
         (KURA_PREVIOUS_MASTER_KEY_FILE, KURA_PREVIOUS_MASTER_KEY_ENV or [security.encryption.previous-master-key])"
    )]
    WrongMasterKey {
        /// The KEK.
        kek_id: u64,
        /// The master key id stored with the KEK.
        wrapped_by: String,
        /// The configured master key id.
        current: String,
        /// ", and the previous one is …" or empty.
        previous: String,
    },
    /// No master key is configured and the keystore records one (`kura set-mode`), but
    /// this process did not opt in to using the record, which is not authenticated.
    #[error(
        "no master key is configured, and the keystore records the master key {recorded} (kura set-mode), \
         which is not used without an opt-in because anyone who can write the keystore database can change that record; \
         configure that master key (--master-key-file, KURA_MASTER_KEY_FILE, KURA_MASTER_KEY_ENV, KURA_AWS_CMK \
         or [security.encryption.master-key]), or set use-recorded-master-key = true in [security.encryption] \
         (or KURA_USE_RECORDED_MASTER_KEY=true) if you trust everyone who can write the keystore database"
    )]
    RecordedMasterKeyNotTrusted {
        /// The recorded key, as `kura status` shows it.
        recorded: String,
    },
    /// A master-key switch found the active KEK wrapped by a master key this process
    /// does not hold (another process switched it meanwhile, say).
    #[error(
        "cannot switch the master key: the active KEK {kek_id} is wrapped by master key {wrapped_by}, \
         which this process does not hold (it holds {held}); {written}; another process may have switched \
         the master key meanwhile: check with `kura status`, configure the master key that wraps the KEK \
         (or as previous-master-key), and switch again"
    )]
    SwitchKekNotHeld {
        /// The active KEK.
        kek_id: u64,
        /// The master key id stored with it.
        wrapped_by: String,
        /// The ids of the master keys this process holds.
        held: String,
        /// What was written before the check failed.
        written: &'static str,
    },
    /// The KEK blob names the configured master key but does not authenticate.
    #[error(
        "KEK {kek_id} does not unwrap under master key {master_key_id}: the keystore was altered or the key is wrong; restore the keystore from a backup"
    )]
    KekUnwrap {
        /// The KEK.
        kek_id: u64,
        /// The master key tried.
        master_key_id: String,
    },
    /// A ciphertext names a data key this keystore does not hold.
    #[error(
        "unknown data key id {0}: this keystore has no such key; the data was encrypted with another keystore, or the key id is corrupt"
    )]
    UnknownDataKey(u64),
    /// A ciphertext names a data key that was destroyed.
    #[error("data key {0} was destroyed: data encrypted under it can no longer be decrypted")]
    DataKeyDestroyed(u64),
    /// The active data key cannot be destroyed.
    #[error("data key {0} is active; rotate it first with `kura rotate data-key`")]
    DestroyActive(u64),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A KMS holding the master key failed or refused; the message names the key and the
    /// KMS and says what to do.
    #[error(transparent)]
    Kms(#[from] crate::master_key::KmsError),
    /// Rotation kept losing races against other processes.
    #[error("the keystore kept changing under {0}; another process is rotating keys, try again")]
    Contention(&'static str),
    /// A legacy AES-128-CBC key is not 32 hex digits or base64 of 16 bytes.
    #[error("invalid legacy key: {0}")]
    LegacyKey(String),
    /// A legacy value is not text of the format it was read as, or is too short to hold
    /// an IV and a block.
    #[error("invalid legacy value: {0}")]
    LegacyValue(String),
    /// A value is no kura envelope (raw or base64 text), and no legacy key was given.
    #[error(
        "the value is neither a kura record envelope (raw bytes starting with \"KRE\" and version 1, or base64 text of one) \
         nor readable as a legacy value: no legacy key and format were given"
    )]
    UnrecognisedValue,
    /// A backup fails its checksum or its authentication, or is malformed: it was damaged
    /// or changed (or is no kura backup). Deliberately says no more.
    #[error(
        "the backup is damaged or was changed (or is not a kura backup); nothing was restored: use another copy"
    )]
    BackupDamaged,
    /// A backup of a format version this build does not read.
    #[error(
        "the backup has format version {found}, but this kura reads version {supported}; upgrade kura to restore it"
    )]
    BackupVersion {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// A backup whose KEK was wrapped by a master key that is not configured.
    #[error(
        "the backup's KEK is wrapped by master key {recorded} (read from {recorded_source} when the backup was made), \
         but the configured master key is {configured}{previous}; restoring needs the master key that made the backup: \
         configure it (KURA_MASTER_KEY_FILE, --master-key-file or [security.encryption.master-key]), or as previous-master-key"
    )]
    BackupWrongMasterKey {
        /// The master key id recorded in the backup.
        recorded: String,
        /// Where that key was read from when the backup was made.
        recorded_source: String,
        /// The configured master key id.
        configured: String,
        /// " (and the previous master key is …)" or empty.
        previous: String,
    },
    /// The keystore failed.
    #[error(transparent)]
    Store(#[from] kura_store::Error),
    /// A format error, including the opaque decryption failure.
    #[error(transparent)]
    Format(#[from] kura_format::Error),
    /// A primitive failed.
    #[error(transparent)]
    Crypto(#[from] kura_crypto::Error),
    /// Reading a key file failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A PKCS#11 module cannot be loaded or initialised.
    #[error(
        "cannot load the PKCS#11 module {} (module in {origin}): {detail}; set module to the HSM vendor's \
         PKCS#11 library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)",
        module.display()
    )]
    Pkcs11Module {
        /// The library.
        module: PathBuf,
        /// Which setting named it.
        origin: String,
        /// What went wrong.
        detail: String,
    },
    /// No token has the configured label.
    #[error(
        "no PKCS#11 token labelled {token:?} in {}; tokens present: {present}; fix token-label in {origin}, \
         or initialise the token (SoftHSM2: softhsm2-util --init-token --free --label {token:?})",
        module.display()
    )]
    Pkcs11TokenMissing {
        /// The label looked for.
        token: String,
        /// The module searched.
        module: PathBuf,
        /// Which setting named it.
        origin: String,
        /// The labels present, quoted and comma-separated, or "none".
        present: String,
    },
    /// The variable that should hold the token's PIN is not set.
    #[error(
        "the PKCS#11 user PIN is read from the environment variable {variable} (pin-env in {origin}), \
         which is not set; set {variable} to the token's user PIN"
    )]
    Pkcs11PinUnset {
        /// The variable.
        variable: String,
        /// Which setting named it.
        origin: String,
    },
    /// The token refused the PIN.
    #[error(
        "the token refused the user PIN in {variable} (PKCS#11 token {token:?}, CKR_PIN_INCORRECT): \
         set {variable} to the token's user PIN; repeated wrong PINs may lock it"
    )]
    Pkcs11PinIncorrect {
        /// The token.
        token: String,
        /// The variable holding the PIN.
        variable: String,
    },
    /// The user PIN is locked after too many wrong attempts.
    #[error(
        "the user PIN of PKCS#11 token {token:?} is locked after too many wrong PINs (CKR_PIN_LOCKED): \
         have the token's security officer reset it, then set the new PIN"
    )]
    Pkcs11PinLocked {
        /// The token.
        token: String,
    },
    /// The key is missing, ambiguous or unsuitable.
    #[error("PKCS#11 key {key:?} in token {token:?}: {detail}")]
    Pkcs11Key {
        /// The token.
        token: String,
        /// The key label.
        key: String,
        /// What is wrong and what to do.
        detail: String,
    },
    /// A PKCS#11 call failed (the HSM, its connection, or the module).
    #[error("PKCS#11 {operation} failed: {detail}; check that the HSM is reachable and healthy")]
    Pkcs11 {
        /// The function.
        operation: &'static str,
        /// The return value's name or the error.
        detail: String,
    },
}
