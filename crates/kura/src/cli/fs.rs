//! `kura fs`: the files under a data root, encrypted with kura-fs.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};

/// `kura fs`.
///
/// A data root is a directory whose files kura-fs encrypts, each under a key of its own
/// derived from a data key; `DIR/.kura-fs` holds its file dictionary. New files get
/// `[security.encryption] data-encryption-method` (default `aes256-ctr`); files already
/// in the directory without encryption stay readable as plaintext until `kura fs
/// reencrypt` encrypts them. One kura process at a time works on a data root.
#[derive(Debug, Args)]
pub struct FsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: FsAction,
}

/// The `kura fs` commands.
#[derive(Debug, Subcommand)]
pub enum FsAction {
    /// Write stdin to the encrypted file PATH under the root, atomically (a temporary file
    /// beside it, synced, then renamed over PATH).
    Put(FsPutArgs),
    /// Write the plaintext of PATH to stdout (page-mode files are authenticated page by
    /// page as they are read).
    Get(FsPathArgs),
    /// Rename FROM to TO (replacing TO); the file keeps its key.
    Mv(FsMvArgs),
    /// Delete PATH and its dictionary entry.
    Rm(FsPathArgs),
    /// List every file with its method and data key.
    Ls(FsRootArgs),
    /// Every file with its method, data key and salt, the file dictionary, and the data
    /// keys with their states. Never key bytes, unless --show-keys.
    Dump(FsDumpArgs),
    /// Rewrite every file that is plaintext, or under an older data key or another method
    /// than configured, under the active data key and the configured method. Resumable:
    /// after an interruption, run it again.
    Reencrypt(FsReencryptArgs),
}

/// `--root DIR`.
#[derive(Debug, Args)]
pub struct FsRootArgs {
    /// The data root (its dictionary is DIR/.kura-fs); paths are relative to it.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
}

/// `kura fs get` and `kura fs rm`.
#[derive(Debug, Args)]
pub struct FsPathArgs {
    /// The data root.
    #[command(flatten)]
    pub root: FsRootArgs,
    /// The file, relative to the root (no `..`, not absolute).
    pub path: String,
}

/// `kura fs put`.
#[derive(Debug, Args)]
pub struct FsPutArgs {
    /// The data root (created if missing).
    #[command(flatten)]
    pub root: FsRootArgs,
    /// The file, relative to the root (no `..`, not absolute); missing folders are made.
    pub path: String,
    /// The method of this file instead of the configured data-encryption-method
    /// (`aes256-gcm-page` for files an application rewrites in place).
    #[arg(
        long,
        value_name = "METHOD",
        value_parser = PossibleValuesParser::new(kura_fs::Method::ALL.map(kura_fs::Method::as_str))
            .try_map(|s| s.parse::<kura_fs::Method>())
    )]
    pub method: Option<kura_fs::Method>,
}

/// `kura fs mv`.
#[derive(Debug, Args)]
pub struct FsMvArgs {
    /// The data root.
    #[command(flatten)]
    pub root: FsRootArgs,
    /// The file to rename, relative to the root.
    pub from: String,
    /// Its new path, relative to the root (replaced if it exists).
    pub to: String,
}

/// `kura fs dump`.
#[derive(Debug, Args)]
pub struct FsDumpArgs {
    /// The data root.
    #[command(flatten)]
    pub root: FsRootArgs,
    /// Also print each file's key in hex. Anyone who sees them can decrypt the files:
    /// never store or share this output.
    #[arg(long)]
    pub show_keys: bool,
}

/// `kura fs reencrypt`.
#[derive(Debug, Args)]
pub struct FsReencryptArgs {
    /// The data root.
    #[command(flatten)]
    pub root: FsRootArgs,
    /// Only say what would be rewritten.
    #[arg(long)]
    pub dry_run: bool,
}
