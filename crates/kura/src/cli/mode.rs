//! `kura set-mode` and the new-master-key flags of `kura rotate master-key`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::Pkcs11KeyArgs;

/// `kura set-mode`.
///
/// Switches the keystore's master key online: the KEK is unwrapped with the master key in
/// use (configured, or recorded by an earlier set-mode) and re-wrapped under the new one,
/// and the new mode is recorded in the keystore (never a secret), so that `kura status`
/// shows it and processes started without master-key configuration use it. Running
/// processes keep working. The key in use until now is recorded as the previous one.
#[derive(Debug, Args)]
pub struct SetModeArgs {
    /// The mode.
    #[arg(value_enum)]
    pub mode: Mode,
    /// The new master key.
    #[command(flatten)]
    pub key: NewMasterKeyArgs,
}

/// Where a master key is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A key file (--key-file).
    Local,
    /// AWS KMS or any service speaking its API (--key-id, --region, --endpoint,
    /// --encryption-context).
    Kms,
    /// A key in a PKCS#11 token (--module, --token-label, --key-label, --pin-env).
    Pkcs11,
}

/// A new master key: the flags of one mode.
#[derive(Debug, Args, Default)]
pub struct NewMasterKeyArgs {
    /// local: the key file (64 hex digits or base64; mode 0400).
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// kms: key id, key ARN or alias/NAME.
    #[arg(long, value_name = "ID")]
    pub key_id: Option<String>,
    /// kms: the region [default: AWS_REGION, else AWS_DEFAULT_REGION].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// kms: the KMS endpoint (another than AWS's: a VPC endpoint, a kura server).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// kms: an encryption-context pair (repeatable) [default: context=kura_encryption_context].
    #[arg(long = "encryption-context", value_name = "KEY=VALUE", value_parser = super::parse_pair)]
    pub encryption_context: Vec<(String, String)>,
    /// pkcs11: the key in a token.
    #[command(flatten)]
    pub pkcs11: Pkcs11KeyArgs,
}

impl NewMasterKeyArgs {
    /// Whether any flag is given.
    pub fn any(&self) -> bool {
        self.key_file.is_some()
            || self.key_id.is_some()
            || self.region.is_some()
            || self.endpoint.is_some()
            || !self.encryption_context.is_empty()
            || self.pkcs11.module.is_some()
            || self.pkcs11.token_label.is_some()
            || self.pkcs11.key_label.is_some()
            || self.pkcs11.pin_env.is_some()
    }
}
