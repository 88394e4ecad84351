//! Where a master key comes from: the `[security.encryption.master-key]` tables, the
//! Looker-shaped variables and the flags.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{
    DEFAULT_KMS_ENCRYPTION_CONTEXT, ENV_AWS_CMK, ENV_AWS_CMK_EC, ENV_AWS_REGIONS, ENV_KMS_ENDPOINT,
    ENV_MASTER_KEY_ENV, ENV_MASTER_KEY_FILE, KMS_CONTEXT_KEY,
};
use crate::Error;

/// A master key held by AWS KMS or a service speaking its API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsSpec {
    /// Key id, key ARN or `alias/…`.
    pub key_id: String,
    /// The region; `None` leaves it to the AWS SDK (`AWS_REGION`, the profile).
    pub region: Option<String>,
    /// Another endpoint than AWS's (a VPC endpoint, a `kura server`).
    pub endpoint: Option<String>,
    /// The encryption context of every Encrypt and Decrypt (the provider adds the KEK id).
    pub encryption_context: BTreeMap<String, String>,
    /// Which setting named it (for error messages).
    pub origin: String,
}

/// A master key held in a PKCS#11 token (an HSM).
pub struct Pkcs11Spec {
    /// The PKCS#11 library.
    pub module: PathBuf,
    /// The label of the token.
    pub token_label: String,
    /// The label of the AES key in the token.
    pub key_label: String,
    /// The environment variable holding the user PIN.
    pub pin_env: String,
    /// Its value, captured at resolution (`None` if unset: loading then fails clearly).
    pub pin: Option<Zeroizing<String>>,
    /// Which setting named it (for error messages).
    pub origin: String,
}

impl fmt::Debug for Pkcs11Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pkcs11 {} token {:?} key {:?} (PIN from {})",
            self.module.display(),
            self.token_label,
            self.key_label,
            self.pin_env
        )
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
    /// A KMS key.
    Kms(KmsSpec),
    /// A key in a PKCS#11 token.
    Pkcs11(Pkcs11Spec),
}

impl fmt::Debug for MasterKeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, .. } => write!(f, "file {}", path.display()),
            Self::Env { variable, .. } => write!(f, "env {variable}"),
            Self::Kms(k) => write!(f, "kms {} ({})", k.key_id, k.origin),
            Self::Pkcs11(p) => p.fmt(f),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub(super) enum MasterKeyToml {
    File {
        path: PathBuf,
    },
    Env {
        variable: Option<String>,
    },
    Kms {
        key_id: String,
        region: Option<String>,
        endpoint: Option<String>,
        encryption_context: Option<ContextToml>,
    },
    Pkcs11 {
        module: PathBuf,
        token_label: String,
        key_label: String,
        pin_env: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ContextToml {
    One(String),
    Pairs(BTreeMap<String, String>),
}

impl ContextToml {
    fn into_map(self) -> BTreeMap<String, String> {
        match self {
            Self::One(s) => context_of(s),
            Self::Pairs(m) => m,
        }
    }
}

/// An encryption context given as one string: `{"context": s}`.
fn context_of(s: String) -> BTreeMap<String, String> {
    BTreeMap::from([(KMS_CONTEXT_KEY.to_string(), s)])
}

/// The current master key: `--master-key-file`, then `KURA_AWS_CMK`, the key file and key
/// variables, then the file's table.
pub(super) fn current(
    flag: Option<&Path>,
    toml: Option<MasterKeyToml>,
    nonempty: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<MasterKeySpec>, Error> {
    Ok(match (nonempty(ENV_AWS_CMK), flag.is_some()) {
        (Some(key_id), false) => {
            for other in [ENV_MASTER_KEY_FILE, ENV_MASTER_KEY_ENV] {
                if nonempty(other).is_some() {
                    return Err(Error::Config(format!(
                        "both {ENV_AWS_CMK} and {other} are set; set only one"
                    )));
                }
            }
            Some(MasterKeySpec::Kms(KmsSpec {
                key_id,
                region: ENV_AWS_REGIONS.iter().find_map(|v| nonempty(v)),
                endpoint: nonempty(ENV_KMS_ENDPOINT),
                encryption_context: context_of(
                    nonempty(ENV_AWS_CMK_EC)
                        .unwrap_or_else(|| DEFAULT_KMS_ENCRYPTION_CONTEXT.to_string()),
                ),
                origin: ENV_AWS_CMK.to_string(),
            }))
        }
        _ => pick(
            flag,
            "--master-key-file",
            (ENV_MASTER_KEY_FILE, ENV_MASTER_KEY_ENV),
            toml,
            "[security.encryption.master-key]",
            nonempty,
        )?,
    })
}

pub(super) fn pick(
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
        Some(MasterKeyToml::Kms {
            key_id,
            region,
            endpoint,
            encryption_context,
        }) => Ok(Some(MasterKeySpec::Kms(KmsSpec {
            key_id,
            region: region.or_else(|| ENV_AWS_REGIONS.iter().find_map(|v| env(v))),
            endpoint: endpoint.or_else(|| env(ENV_KMS_ENDPOINT)),
            encryption_context: encryption_context.map_or_else(
                || context_of(DEFAULT_KMS_ENCRYPTION_CONTEXT.to_string()),
                ContextToml::into_map,
            ),
            origin: section.to_string(),
        }))),
        Some(MasterKeyToml::Pkcs11 {
            module,
            token_label,
            key_label,
            pin_env,
        }) => Ok(Some(MasterKeySpec::Pkcs11(Pkcs11Spec {
            module,
            token_label,
            key_label,
            pin: env(&pin_env).map(Zeroizing::new),
            pin_env,
            origin: section.to_string(),
        }))),
    }
}
