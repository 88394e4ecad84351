//! Configuration: a TOML file shaped like TiKV's, environment variables shaped like
//! Looker's, and command-line flags. [`resolve`] merges them (flags, then environment,
//! then file, then defaults) into validated [`Settings`]; nothing else reads the
//! environment.
//!
//! ```toml
//! [storage]
//! data-dir = "/var/lib/kura"
//! # url = "postgres://kura@db.internal/kura"   # a cluster keystore instead of SQLite
//!
//! [security]
//! redact-info-log = false   # true: user data (row ids, paths) logged as "?"
//!
//! [security.encryption]
//! data-encryption-method = "aes256-ctr"
//! data-key-rotation-period = "168h"
//! enable-file-dictionary-log = true
//! # use-recorded-master-key = true   # trust the master key `kura set-mode` recorded in
//! #                                  # the keystore when none is configured (see below)
//!
//! [security.encryption.master-key]
//! type = "file"            # or "env" (variable = "KURA_MASTER_KEY_ENV"), "kms", "pkcs11"
//! path = "/etc/kura/master.key"
//!
//! # type = "kms"           # AWS KMS, or any service speaking its API (a `kura server`)
//! # key-id = "alias/kura"  # a key id, key ARN or alias
//! # region = "us-west-2"
//! # endpoint = "http://127.0.0.1:8600"              # optional
//! # encryption-context = { purpose = "kura" }      # optional (or a string)
//!
//! # type = "pkcs11"        # an HSM
//! # module = "/usr/lib/softhsm/libsofthsm2.so"
//! # token-label = "kura"
//! # key-label = "kura-master"
//! # pin-env = "KURA_PKCS11_PIN"                    # the PIN is never in the file
//!
//! [security.encryption.previous-master-key]
//! type = "file"
//! path = "/etc/kura/old-master.key"
//! ```
//!
//! `use-recorded-master-key` (or `KURA_USE_RECORDED_MASTER_KEY=true`) is off by default:
//! the record `kura set-mode` writes is not authenticated, so whoever can write the
//! keystore database could name their own KMS, key file or PKCS#11 module in it. Only a
//! local opt-in lets a process without master-key configuration load it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::Error;

/// Environment variable naming the master key file.
pub const ENV_MASTER_KEY_FILE: &str = "KURA_MASTER_KEY_FILE";
/// Environment variable holding the master key itself, base64.
pub const ENV_MASTER_KEY_ENV: &str = "KURA_MASTER_KEY_ENV";
/// Environment variable naming the previous master key file.
pub const ENV_PREVIOUS_MASTER_KEY_FILE: &str = "KURA_PREVIOUS_MASTER_KEY_FILE";
/// Environment variable holding the previous master key itself, base64.
pub const ENV_PREVIOUS_MASTER_KEY_ENV: &str = "KURA_PREVIOUS_MASTER_KEY_ENV";
/// Environment variable naming an AWS KMS key (id, ARN or `alias/…`) as master key
/// (Looker's `LKR_AWS_CMK`); the region comes from `AWS_REGION`.
pub const ENV_AWS_CMK: &str = "KURA_AWS_CMK";
/// Environment variable holding the encryption context used with [`ENV_AWS_CMK`]
/// (Looker's `LKR_AWS_CMK_EC`).
pub const ENV_AWS_CMK_EC: &str = "KURA_AWS_CMK_EC";
/// Environment variable naming the endpoint of the KMS (any AWS-KMS-compatible service).
pub const ENV_KMS_ENDPOINT: &str = "KURA_KMS_ENDPOINT";
/// The AWS region variables, in the order the AWS SDKs read them.
pub const ENV_AWS_REGIONS: [&str; 2] = ["AWS_REGION", "AWS_DEFAULT_REGION"];
/// The encryption context's value when none is configured (as Looker's
/// `Looker_Encryption_Context`), under the key [`KMS_CONTEXT_KEY`].
pub const DEFAULT_KMS_ENCRYPTION_CONTEXT: &str = "kura_encryption_context";
/// The encryption-context key a context given as one string is stored under.
pub const KMS_CONTEXT_KEY: &str = "context";
/// Environment variable naming the data directory.
pub const ENV_DATA_DIR: &str = "KURA_DATA_DIR";
/// Environment variable holding the keystore's database URL (`postgres://…`).
pub const ENV_DATABASE_URL: &str = "KURA_DATABASE_URL";
/// `true`/`false`: [`Settings::redact_info_log`].
pub const ENV_REDACT_INFO_LOG: &str = "KURA_REDACT_INFO_LOG";
/// `true`/`false`: [`Settings::use_recorded_master_key`].
pub const ENV_USE_RECORDED_MASTER_KEY: &str = "KURA_USE_RECORDED_MASTER_KEY";
/// The data directory when none is configured.
pub const DEFAULT_DATA_DIR: &str = "kura-data";
/// The default rotation period of data keys (7 days).
pub const DEFAULT_ROTATION_PERIOD: Duration = Duration::from_secs(168 * 3600);

/// A keystore database URL (`postgres://user:password@host:port/db`). It may hold a
/// password, so it is printed only through [`DatabaseUrl::redacted`].
pub struct DatabaseUrl(Zeroizing<String>);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: String) -> Self {
        Self(Zeroizing::new(url))
    }

    /// The URL itself (to connect with; never to print).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, for messages.
    pub fn redacted(&self) -> String {
        redact_url_password(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `url` with any password replaced by `***`, for messages: the password of the user
/// information (`scheme://user:password@host/…`), `password=` query parameters, and the
/// `password` of a PostgreSQL `key=value` connection string ([`kura_store::redact_url_password`],
/// the one the keystore's own errors use).
pub fn redact_url_password(url: &str) -> String {
    kura_store::redact_url_password(url)
}

/// Validated settings.
#[derive(Debug)]
pub struct Settings {
    /// Where the keystore lives.
    pub data_dir: PathBuf,
    /// A PostgreSQL keystore shared by a cluster (`[storage] url`, `KURA_DATABASE_URL`,
    /// `--database`); `None` means the SQLite keystore in [`Settings::data_dir`].
    pub database_url: Option<DatabaseUrl>,
    /// The data encryption method.
    pub method: Method,
    /// How long a data key stays active.
    pub rotation_period: Duration,
    /// `enable-file-dictionary-log`: kura-fs appends one record per change to its file
    /// dictionary (`true`, the default) instead of rewriting it whole.
    pub file_dictionary_log: bool,
    /// `security.redact-info-log`: user data in logs (row ids, file paths) is written as
    /// `?` (see [`crate::redact`]).
    pub redact_info_log: bool,
    /// `security.encryption.use-recorded-master-key` (`KURA_USE_RECORDED_MASTER_KEY`): with
    /// no master key configured, load the one `kura set-mode` recorded in the keystore.
    /// Off by default: the record is not authenticated, so this trusts everyone who can
    /// write the keystore database with the choice of master key (its KMS endpoint, key
    /// file or PKCS#11 module).
    pub use_recorded_master_key: bool,
    /// The current master key.
    pub master_key: Option<MasterKeySpec>,
    /// The previous master key, tried when the current one does not unwrap the KEK.
    pub previous_master_key: Option<MasterKeySpec>,
}

impl Settings {
    /// The keystore database inside the data directory.
    pub fn keystore_path(&self) -> PathBuf {
        self.data_dir.join("keystore.db")
    }
}

/// Values given as command-line flags; they win over everything else. `Debug` hides a
/// password in the database URL.
#[derive(Default, Clone)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--database`.
    pub database_url: Option<String>,
    /// `--master-key-file`.
    pub master_key_file: Option<PathBuf>,
    /// `--previous-master-key-file`.
    pub previous_master_key_file: Option<PathBuf>,
}

impl fmt::Debug for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overrides")
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url_password),
            )
            .field("master_key_file", &self.master_key_file)
            .field("previous_master_key_file", &self.previous_master_key_file)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    #[serde(default)]
    storage: StorageSection,
    #[serde(default)]
    security: SecuritySection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct StorageSection {
    data_dir: Option<PathBuf>,
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SecuritySection {
    #[serde(default)]
    encryption: EncryptionSection,
    redact_info_log: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct EncryptionSection {
    data_encryption_method: Option<String>,
    data_key_rotation_period: Option<String>,
    enable_file_dictionary_log: Option<bool>,
    use_recorded_master_key: Option<bool>,
    master_key: Option<MasterKeyToml>,
    previous_master_key: Option<MasterKeyToml>,
}

/// Parses a duration such as `168h`, `30m` or `7days`.
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        Error::Config(format!(
            "data-key-rotation-period \"{s}\" is not a duration like \"168h\": {e}"
        ))
    })?;
    if d.is_zero() {
        return Err(Error::Config(
            "data-key-rotation-period must be longer than zero".into(),
        ));
    }
    Ok(d)
}

/// Formats a duration the way it is usually configured (`168h`, `90m`, `45s`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Merges `flags`, the environment (through `env`) and the TOML `file` (with its path, for
/// messages) into settings.
pub fn resolve(
    file: Option<(&Path, &str)>,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &Overrides,
) -> Result<Settings, Error> {
    let cfg: FileConfig = match file {
        Some((path, text)) => toml::from_str(text).map_err(|e| {
            Error::Config(format!(
                "{}: {}",
                path.display(),
                redact_strings(e.message())
            ))
        })?,
        None => FileConfig::default(),
    };
    let enc = cfg.security.encryption;
    let nonempty = |name: &str| env(name).filter(|v| !v.is_empty());
    let flag = |name: &str, file: Option<bool>| -> Result<bool, Error> {
        match nonempty(name).as_deref() {
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(Error::Config(format!(
                "{name}=\"{other}\" is neither true nor false"
            ))),
            None => Ok(file.unwrap_or(false)),
        }
    };
    let redact_info_log = flag(ENV_REDACT_INFO_LOG, cfg.security.redact_info_log)?;
    let use_recorded_master_key = flag(ENV_USE_RECORDED_MASTER_KEY, enc.use_recorded_master_key)?;
    let data_dir = flags
        .data_dir
        .clone()
        .or_else(|| nonempty(ENV_DATA_DIR).map(PathBuf::from))
        .or(cfg.storage.data_dir.filter(|d| !d.as_os_str().is_empty()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let database_url = flags
        .database_url
        .clone()
        .filter(|u| !u.is_empty())
        .or_else(|| nonempty(ENV_DATABASE_URL))
        .or(cfg.storage.url.filter(|u| !u.is_empty()))
        .map(|u| {
            if u.starts_with("postgres://") || u.starts_with("postgresql://") {
                Ok(DatabaseUrl::new(u))
            } else {
                Err(Error::Config(format!(
                    "the keystore database URL \"{}\" is not a postgres:// URL; \
                     use postgres://user@host:port/database, or leave it unset for the SQLite keystore in the data directory",
                    redact_url_password(&u)
                )))
            }
        })
        .transpose()?;
    let method = match enc.data_encryption_method {
        Some(m) => Method::parse(&m)?,
        None => Method::default(),
    };
    let rotation_period = match enc.data_key_rotation_period {
        Some(p) => parse_duration(&p)?,
        None => DEFAULT_ROTATION_PERIOD,
    };
    let master_key =
        master_key::current(flags.master_key_file.as_deref(), enc.master_key, &nonempty)?;
    let previous_master_key = master_key::pick(
        flags.previous_master_key_file.as_deref(),
        "--previous-master-key-file",
        (ENV_PREVIOUS_MASTER_KEY_FILE, ENV_PREVIOUS_MASTER_KEY_ENV),
        enc.previous_master_key,
        "[security.encryption.previous-master-key]",
        &nonempty,
    )?;
    Ok(Settings {
        data_dir,
        database_url,
        method,
        rotation_period,
        file_dictionary_log: enc.enable_file_dictionary_log.unwrap_or(true),
        redact_info_log,
        use_recorded_master_key,
        master_key,
        previous_master_key,
    })
}

/// A TOML error message with its quoted string values hidden: a master key pasted where a
/// table belongs (`master-key = "<base64>"`) must not be echoed into a terminal or a log.
fn redact_strings(message: &str) -> String {
    // Everything from the first to the last double quote: a value holding quotes itself
    // (a TOML literal string) cannot leak its tail.
    let quoted = match (message.find('"'), message.rfind('"')) {
        (Some(a), Some(b)) if a < b => format!("{}\"…\"{}", &message[..a], &message[b + 1..]),
        _ => message.to_string(),
    };
    // serde names a bad enum value in backticks (`type = "<key>"`); field names, also in
    // backticks, are kept because they say what to fix.
    const VARIANT: &str = "unknown variant `";
    match quoted.split_once(VARIANT) {
        Some((before, after)) => match after.split_once('`') {
            Some((_, rest)) => format!("{before}{VARIANT}…`{rest}"),
            None => quoted,
        },
        None => quoted,
    }
}

mod master_key;
mod method;

use master_key::MasterKeyToml;
pub use master_key::{KmsSpec, MasterKeySpec, Pkcs11Spec};
pub use method::Method;

#[cfg(test)]
mod tests;
