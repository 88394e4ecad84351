//! `kura pkcs11`: master keys in a PKCS#11 token (an HSM).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `kura pkcs11`.
#[derive(Debug, Args)]
pub struct Pkcs11Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Pkcs11Action,
}

/// The `kura pkcs11` commands.
#[derive(Debug, Subcommand)]
pub enum Pkcs11Action {
    /// Generate the master key inside the token: an AES-256 key that never leaves it
    /// (sensitive, not extractable, for encryption and decryption only), under a key label
    /// that no secret key of the token has yet. Settings not given as flags come from
    /// `[security.encryption.master-key]` (type = "pkcs11").
    Keygen(Pkcs11KeyArgs),
}

/// A key in a PKCS#11 token: the flags that `kura pkcs11 keygen`, `kura set-mode pkcs11`
/// and `kura rotate master-key` share.
#[derive(Debug, Args, Default)]
pub struct Pkcs11KeyArgs {
    /// pkcs11: the PKCS#11 library of the HSM (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, value_name = "PATH")]
    pub module: Option<PathBuf>,
    /// pkcs11: the token's label.
    #[arg(long, value_name = "LABEL")]
    pub token_label: Option<String>,
    /// pkcs11: the key's label.
    #[arg(long, value_name = "LABEL")]
    pub key_label: Option<String>,
    /// pkcs11: the environment variable holding the token's user PIN (the PIN itself is
    /// never a flag, and never recorded).
    #[arg(long, value_name = "VAR")]
    pub pin_env: Option<String>,
}
