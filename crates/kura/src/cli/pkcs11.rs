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
    /// (sensitive, not extractable, for encryption and decryption only). Settings not
    /// given as flags come from `[security.encryption.master-key]` (type = "pkcs11").
    Keygen(Pkcs11KeygenArgs),
}

/// `kura pkcs11 keygen`.
#[derive(Debug, Args)]
pub struct Pkcs11KeygenArgs {
    /// The PKCS#11 library of the HSM (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, value_name = "FILE")]
    pub module: Option<PathBuf>,
    /// The label of the token.
    #[arg(long, value_name = "LABEL")]
    pub token_label: Option<String>,
    /// The label of the new key (refused if a secret key has it already).
    #[arg(long, value_name = "LABEL")]
    pub key_label: Option<String>,
    /// The environment variable holding the token's user PIN (the PIN itself is never a
    /// flag).
    #[arg(long, value_name = "VARIABLE")]
    pub pin_env: Option<String>,
}
