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
//!
//! [security.encryption.master-key]
//! type = "file"            # or "env" (variable = "KURA_MASTER_KEY_ENV")
//! path = "/etc/kura/master.key"
//!
//! [security.encryption.previous-master-key]
//! type = "file"
//! path = "/etc/kura/old-master.key"
//! ```

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
/// Environment variable naming the data directory.
pub const ENV_DATA_DIR: &str = "KURA_DATA_DIR";
/// Environment variable holding the keystore's database URL (`postgres://…`).
pub const ENV_DATABASE_URL: &str = "KURA_DATABASE_URL";
/// `true`/`false`: [`Settings::redact_info_log`].
pub const ENV_REDACT_INFO_LOG: &str = "KURA_REDACT_INFO_LOG";
/// The data directory when none is configured.
pub const DEFAULT_DATA_DIR: &str = "kura-data";
/// The default rotation period of data keys (7 days).
pub const DEFAULT_ROTATION_PERIOD: Duration = Duration::from_secs(168 * 3600);

/// The method of transparent file encryption (`kura-fs`, `kura fs`): new files are
/// encrypted with it, and it is recorded with each data key (the names are TiKV's, plus
/// `aes256-gcm-page` for files rewritten in place). Records and streams are always sealed
/// with AES-256-GCM whatever the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Method {
    /// No file encryption.
    Plaintext,
    /// AES-128-CTR.
    Aes128Ctr,
    /// AES-192-CTR.
    Aes192Ctr,
    /// AES-256-CTR.
    #[default]
    Aes256Ctr,
    /// SM4-CTR.
    Sm4Ctr,
    /// AES-256-GCM per 4 KiB page (kura-fs files rewritten in place, such as databases).
    Aes256GcmPage,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 6] = [
        Self::Plaintext,
        Self::Aes128Ctr,
        Self::Aes192Ctr,
        Self::Aes256Ctr,
        Self::Sm4Ctr,
        Self::Aes256GcmPage,
    ];

    /// The configuration name, e.g. `aes256-ctr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Aes128Ctr => "aes128-ctr",
            Self::Aes192Ctr => "aes192-ctr",
            Self::Aes256Ctr => "aes256-ctr",
            Self::Sm4Ctr => "sm4-ctr",
            Self::Aes256GcmPage => "aes256-gcm-page",
        }
    }

    /// Parses a configuration name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "data-encryption-method \"{s}\" is unknown; use plaintext, aes128-ctr, aes192-ctr, aes256-ctr, sm4-ctr or aes256-gcm-page"
                ))
            })
    }

    /// The method's number in kura-fs file headers and dictionaries (part of the format).
    pub fn code(self) -> u8 {
        match self {
            Self::Plaintext => 0,
            Self::Aes128Ctr => 1,
            Self::Aes192Ctr => 2,
            Self::Aes256Ctr => 3,
            Self::Sm4Ctr => 4,
            Self::Aes256GcmPage => 5,
        }
    }

    /// The method numbered `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }

    /// The CTR cipher of a CTR method.
    pub fn ctr(self) -> Option<kura_crypto::CtrMethod> {
        use kura_crypto::CtrMethod;
        match self {
            Self::Aes128Ctr => Some(CtrMethod::Aes128),
            Self::Aes192Ctr => Some(CtrMethod::Aes192),
            Self::Aes256Ctr => Some(CtrMethod::Aes256),
            Self::Sm4Ctr => Some(CtrMethod::Sm4),
            Self::Plaintext | Self::Aes256GcmPage => None,
        }
    }

    /// The length of a file key.
    pub fn key_len(self) -> usize {
        self.ctr().map_or(32, |c| c.key_len())
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// Where a master key comes from.
pub enum MasterKeySpec {
    /// A file: 64 hex digits and a newline, or base64; mode 0400.
    File {
        /// The file.
        path: PathBuf,
        /// Which setting named it (for error messages).
        origin: String,
    },
    /// An environment variable holding the key in base64 (captured at resolution).
    Env {
        /// The variable's name.
        variable: String,
        /// Its value.
        value: Zeroizing<String>,
    },
}

impl fmt::Debug for MasterKeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, .. } => write!(f, "file {}", path.display()),
            Self::Env { variable, .. } => write!(f, "env {variable}"),
        }
    }
}

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

/// `scheme://user:password@host/…` with the password replaced by `***`; a password given as
/// a `password=` query parameter is hidden the same way.
pub fn redact_url_password(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find("password=") {
        let end = out[q..].find('&').map_or(out.len(), |i| q + i);
        out.replace_range(q + "password=".len()..end, "***");
    }
    out
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

/// Values given as command-line flags; they win over everything else.
#[derive(Debug, Default, Clone)]
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
    master_key: Option<MasterKeyToml>,
    previous_master_key: Option<MasterKeyToml>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
enum MasterKeyToml {
    File { path: PathBuf },
    Env { variable: Option<String> },
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
    let redact_info_log = match nonempty(ENV_REDACT_INFO_LOG).as_deref() {
        Some("true" | "1") => true,
        Some("false" | "0") => false,
        Some(other) => {
            return Err(Error::Config(format!(
                "{ENV_REDACT_INFO_LOG}=\"{other}\" is neither true nor false"
            )));
        }
        None => cfg.security.redact_info_log.unwrap_or(false),
    };
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
    let master_key = pick(
        flags.master_key_file.as_deref(),
        "--master-key-file",
        (ENV_MASTER_KEY_FILE, ENV_MASTER_KEY_ENV),
        enc.master_key,
        "[security.encryption.master-key]",
        &nonempty,
    )?;
    let previous_master_key = pick(
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

fn pick(
    flag: Option<&Path>,
    flag_name: &str,
    (file_var, env_var): (&str, &str),
    toml: Option<MasterKeyToml>,
    section: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<MasterKeySpec>, Error> {
    if let Some(path) = flag {
        return Ok(Some(MasterKeySpec::File {
            path: path.to_path_buf(),
            origin: flag_name.to_string(),
        }));
    }
    match (env(file_var), env(env_var)) {
        (Some(_), Some(_)) => {
            return Err(Error::Config(format!(
                "both {file_var} and {env_var} are set; set only one"
            )));
        }
        (Some(path), None) => {
            return Ok(Some(MasterKeySpec::File {
                path: PathBuf::from(path),
                origin: file_var.to_string(),
            }));
        }
        (None, Some(value)) => {
            return Ok(Some(MasterKeySpec::Env {
                variable: env_var.to_string(),
                value: Zeroizing::new(value),
            }));
        }
        (None, None) => {}
    }
    match toml {
        None => Ok(None),
        Some(MasterKeyToml::File { path }) => Ok(Some(MasterKeySpec::File {
            path,
            origin: format!("{section} path"),
        })),
        Some(MasterKeyToml::Env { variable }) => {
            let variable = variable.unwrap_or_else(|| env_var.to_string());
            match env(&variable) {
                Some(value) => Ok(Some(MasterKeySpec::Env {
                    variable,
                    value: Zeroizing::new(value),
                })),
                None => Err(Error::MissingMasterKey(format!(
                    "{section} has type = \"env\", but the environment variable {variable} is not set"
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests;
