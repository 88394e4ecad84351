//! The command-line interface, declared with clap.

mod fs;
mod mode;
mod pkcs11;

use std::path::PathBuf;

use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

pub use fs::{
    FsAction, FsArgs, FsDumpArgs, FsMvArgs, FsPathArgs, FsPutArgs, FsReencryptArgs, FsRootArgs,
};
pub use mode::{Mode, NewMasterKeyArgs, SetModeArgs};
pub use pkcs11::{Pkcs11Action, Pkcs11Args, Pkcs11KeyArgs};

/// kura (蔵): a key management service and encryption-at-rest toolkit.
///
/// Keys form a hierarchy: a master key (from a file or an environment variable) wraps the
/// KEK, the KEK wraps the data keys, and each record or stream gets a key of its own.
#[derive(Debug, Parser)]
#[command(name = "kura", version, propagate_version = true)]
pub struct Cli {
    /// Directory of the keystore [env: KURA_DATA_DIR] [default: kura-data].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The keystore of a cluster: a PostgreSQL URL (postgres://user@host:port/db)
    /// [env: KURA_DATABASE_URL]; unset, the keystore is SQLite in the data directory.
    #[arg(long = "database-url", global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// TOML configuration file ([security.encryption] as in TiKV).
    // Parsed as a plain OS string: clap's path parser rejects an empty KURA_CONFIG ("a
    // value is required for '--config'"), while every other KURA_* variable that is set
    // but empty counts as unset; `env::settings` ignores an empty path.
    #[arg(
        long,
        global = true,
        env = "KURA_CONFIG",
        value_name = "FILE",
        value_parser = OsStringValueParser::new().map(PathBuf::from)
    )]
    pub config: Option<PathBuf>,

    /// Master key file (64 hex digits and a newline, or base64; mode 0400)
    /// [env: KURA_MASTER_KEY_FILE]; KURA_MASTER_KEY_ENV may hold the key itself in base64.
    #[arg(long, global = true, value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,

    /// Previous master key file, tried when the master key did not wrap the KEK
    /// [env: KURA_PREVIOUS_MASTER_KEY_FILE or KURA_PREVIOUS_MASTER_KEY_ENV].
    #[arg(long, global = true, value_name = "FILE")]
    pub previous_master_key_file: Option<PathBuf>,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a 32-byte master key file (mode 0400; never overwrites).
    Keygen(KeygenArgs),
    /// Master keys in a PKCS#11 token (an HSM): generate one inside the token.
    Pkcs11(Pkcs11Args),
    /// Create the keystore: a KEK wrapped by the master key, and the first data key.
    Init(InitArgs),
    /// Show the master key source, the KEK, every data key with its state, and every
    /// `kura server` node of the keystore (live or stale, and whether it uses the current
    /// keys).
    Status,
    /// List the `kura server` nodes registered with the keystore; stale entries expire.
    Nodes(NodesArgs),
    /// Rotate a level of the hierarchy, online.
    Rotate(RotateArgs),
    /// Switch the master key to another mode online (local, kms, pkcs11): the KEK is
    /// re-wrapped under the new key and the mode recorded in the keystore.
    SetMode(SetModeArgs),
    /// Manage individual data keys.
    DataKey(DataKeyArgs),
    /// Encrypt a file or stdin into the kura stream format.
    Encrypt(CryptArgs),
    /// Decrypt a kura stream.
    Decrypt(CryptArgs),
    /// Seal one value from stdin into a record envelope on stdout.
    Seal(SealArgs),
    /// Open one record envelope (or, with a legacy key, a legacy value) from stdin.
    Open(OpenArgs),
    /// Measure kura against a baseline in the same run: the formats against raw
    /// AES-256-GCM, or the KMS server against a bare HTTP server.
    Bench(BenchArgs),
    /// Serve the AWS KMS API (JSON 1.1, SigV4) for the AWS CLI, boto3 and the AWS SDKs.
    Server(ServerArgs),
    /// Manage the users (access keys) of the KMS server.
    User(UserArgs),
    /// Re-encrypt legacy AES-128-CBC columns of an application's SQLite or PostgreSQL
    /// table into kura record envelopes (AES-256-GCM), in place, after a backup.
    MigrateEncryption(MigrateArgs),
    /// Re-seal the kura envelopes of a table under the active data key (after a rotation
    /// or a restore), so that older data keys can be destroyed.
    Reencrypt(ReencryptArgs),
    /// Erase a decrypt-only data key for good; refused while anything known uses it.
    DestroyDataKey(DestroyArgs),
    /// Files under a data root encrypted transparently (kura-fs): put, get, mv, rm, ls,
    /// dump, and reencrypt after a rotation or a change of method.
    Fs(FsArgs),
    /// Back up the keystore to a file or to S3: only wrapped keys (every KEK and data key)
    /// and the KMS server's objects; restoring needs the same master key.
    Backup(BackupArgs),
    /// Restore a backup into an empty keystore: data keys come back decrypt-only under a
    /// new KEK, and every keyring gets a new active data key.
    Restore(RestoreArgs),
}

/// `kura destroy-data-key` and `kura data-key destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The data key id (see `kura status`).
    pub id: u64,
    /// Confirm that data encrypted under this key becomes unreadable.
    #[arg(long)]
    pub yes: bool,
}

/// `kura keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key (must not exist).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Encoding of the key in the file.
    #[arg(long, value_enum, default_value_t = KeyEncoding::Hex)]
    pub format: KeyEncoding,
}

/// Encoding of a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyEncoding {
    /// 64 hex digits and a newline (TiKV).
    Hex,
    /// Base64 and a newline (Looker, `openssl rand -base64 32`).
    Base64,
}

/// `kura init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Development mode: keystore in ./kura-dev (or --data-dir) with a generated master key
    /// file beside it, created or reused. Never for production: the key sits next to the
    /// data it protects.
    #[arg(long)]
    pub dev: bool,
}

/// `kura nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Remove every stale node now (nodes stale for 10 minutes are removed anyway).
    #[arg(long)]
    pub prune: bool,
}

/// `kura rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// What to rotate.
    #[arg(value_enum)]
    pub what: RotateWhat,
    /// master-key: the new master key (--key-id … for a KMS key, --key-file for a local
    /// one); the key in use is recorded as the previous one. Without these flags the KEK is
    /// re-wrapped under the configured master key.
    #[command(flatten)]
    pub new_master_key: NewMasterKeyArgs,
}

/// The levels that rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RotateWhat {
    /// A new active data key; the old one becomes decrypt-only.
    DataKey,
    /// A new KEK; every data key is re-wrapped under it in one transaction.
    Kek,
    /// Re-wrap the KEK under the configured master key; configure the new key as the
    /// master key and the old one as the previous master key.
    MasterKey,
}

/// `kura data-key`.
#[derive(Debug, Args)]
pub struct DataKeyArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: DataKeyAction,
}

/// Actions on one data key.
#[derive(Debug, Subcommand)]
pub enum DataKeyAction {
    /// Erase a decrypt-only data key for good: data under it can never be read again.
    /// Refused while anything known uses it.
    Destroy(DestroyArgs),
}

/// `kura encrypt` and `kura decrypt`.
#[derive(Debug, Args)]
pub struct CryptArgs {
    /// Input file [default: stdin].
    pub input: Option<PathBuf>,
    /// Output file [default: stdout]; written to a temporary file and renamed only on
    /// success.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The encryption context.
    #[command(flatten)]
    pub context: ContextArgs,
}

/// `--context KEY=VALUE`, repeatable (each key once).
#[derive(Debug, Args)]
pub struct ContextArgs {
    /// Encryption context pair bound to the data; decryption must give the same pairs.
    #[arg(long = "context", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub pairs: Vec<(String, String)>,
}

/// `kura seal`.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// The encryption context.
    #[command(flatten)]
    pub context: ContextArgs,
    /// Write the envelope as base64 text and a newline instead of raw bytes.
    #[arg(long)]
    pub base64: bool,
}

/// `kura open`.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The encryption context.
    #[command(flatten)]
    pub context: ContextArgs,
    /// The input is base64 text (a trailing newline is ignored).
    #[arg(long)]
    pub base64: bool,
    /// File holding a legacy AES-128 key (32 hex digits or base64): input that is not an
    /// envelope is then read as a legacy value.
    #[arg(long, value_name = "FILE", requires = "legacy_format")]
    pub legacy_key_file: Option<PathBuf>,
    /// How legacy values are stored: text of the 16-byte IV followed by the AES-128-CBC
    /// (PKCS#7) ciphertext.
    #[arg(long, value_enum, requires = "legacy_key_file")]
    pub legacy_format: Option<LegacyFormatArg>,
}

/// `--legacy-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LegacyFormatArg {
    /// base64(IV ‖ ciphertext).
    Base64IvCt,
    /// hex(IV ‖ ciphertext).
    HexIvCt,
    /// The bytes IV ‖ ciphertext (BLOB/BYTEA columns).
    RawIvCt,
}

impl From<LegacyFormatArg> for kura_keys::LegacyFormat {
    fn from(a: LegacyFormatArg) -> Self {
        match a {
            LegacyFormatArg::Base64IvCt => Self::Base64IvCt,
            LegacyFormatArg::HexIvCt => Self::HexIvCt,
            LegacyFormatArg::RawIvCt => Self::RawIvCt,
        }
    }
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

/// `kura server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8600")]
    pub listen: std::net::SocketAddr,
    /// AWS region this server answers for (it appears in ARNs; requests signed for
    /// another region are refused).
    #[arg(long, default_value = kura_server::DEFAULT_REGION)]
    pub region: String,
    /// 12-digit account id in ARNs.
    #[arg(long, default_value = kura_server::DEFAULT_ACCOUNT)]
    pub account_id: String,
    /// TLS certificate chain (PEM); with --tls-key, the server speaks HTTPS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Development mode: keystore, master key and a `dev` user under ./kura-dev (or
    /// --data-dir), created or reused; loopback only.
    #[arg(long, conflicts_with = "database")]
    pub dev: bool,
    /// The PostgreSQL keystore this node shares with the other nodes of a cluster
    /// (postgres://user@host:port/db); the same as the global --database-url.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

/// `kura user`.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: UserAction,
    /// 12-digit account id in the users' ARNs.
    #[arg(long, global = true, default_value = kura_server::DEFAULT_ACCOUNT)]
    pub account_id: String,
}

/// User actions.
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create a user and print its access key id and secret (shown only this once).
    Create {
        /// The user name (letters, digits and +=,.@_-).
        name: String,
    },
    /// List the users.
    List,
    /// Delete a user; requests signed with its key fail from then on.
    Delete {
        /// The user name.
        name: String,
    },
}

/// `kura bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value_t = BenchMode::Formats)]
    pub mode: BenchMode,
    /// A short run instead of the full one (formats: about a second in all; server: 2 s
    /// per server instead of 10 s; fs: about 2 s instead of about a minute).
    #[arg(long)]
    pub quick: bool,
    /// Rows of the migration benchmark [default: 1000000, or 50000 with --quick].
    #[arg(long)]
    pub rows: Option<u64>,
}

/// What `kura bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// The record envelope and stream format against raw AES-256-GCM.
    Formats,
    /// The KMS server over HTTP (16 keep-alive connections sending SigV4-signed Encrypt
    /// requests) against a bare HTTP server that does no work; all on 127.0.0.1.
    Server,
    /// `migrate-encryption` of an SQLite table of 200-byte legacy values against a plain
    /// read + update pass over the same rows without crypto.
    Migrate,
    /// kura-fs against plain files on a temporary directory (in memory when possible; see
    /// the report): sequential 1 MiB writes and reads of each CTR method against the raw
    /// keystream with the same I/O, random 4 KiB page-mode reads and writes against a
    /// plaintext file, and a redb workload on `RedbBackend` against redb on a plain file.
    Fs,
}

/// The table a job works on, and how.
///
/// Settings may also come from a YAML file (`-d FILE`, keys `database`, `table`,
/// `id_column`, `columns`, `legacy_key_file`, `legacy_format`, `no_row_binding`); flags
/// win.
#[derive(Debug, Args)]
pub struct TableArgs {
    /// YAML file with the job's settings (flags given as well win).
    #[arg(short = 'd', long = "internal-db-creds", value_name = "FILE")]
    pub internal_db_creds: Option<PathBuf>,
    /// The application database: an SQLite file, or a postgres:// URL.
    #[arg(long, value_name = "PATH|URL")]
    pub database: Option<String>,
    /// The table holding the encrypted columns (letters, digits, underscore).
    #[arg(long)]
    pub table: Option<String>,
    /// The table's unique row id column; rows are visited in its order.
    #[arg(long)]
    pub id_column: Option<String>,
    /// An encrypted column (repeatable).
    #[arg(long = "column", value_name = "C")]
    pub columns: Vec<String>,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Seal without binding each value to its table, column and row (by default an
    /// envelope copied into another row or column does not open there).
    #[arg(long)]
    pub no_row_binding: bool,
    /// Count and check every value without writing anything (no backup either).
    #[arg(long)]
    pub dry_run: bool,
    /// After the run, re-read every value and check it opens to what the backup held.
    #[arg(long, conflicts_with = "dry_run")]
    pub verify: bool,
}

/// `kura migrate-encryption`.
///
/// Each value is sealed with the encryption context {"table": T, "column": C, "row": the row
/// id as text} (unless --no-row-binding): an envelope copied to another row or column
/// does not open there. Text columns get base64 envelopes, binary columns raw ones.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The table and how to go over it.
    #[command(flatten)]
    pub table: TableArgs,
    /// File holding the legacy AES-128 key (32 hex digits or base64).
    #[arg(long, value_name = "FILE")]
    pub legacy_key_file: Option<PathBuf>,
    /// How legacy values are stored [default: base64-iv-ct].
    #[arg(long, value_enum)]
    pub legacy_format: Option<LegacyFormatArg>,
    /// Migrate while the application runs: skip the check that no other kura node is
    /// alive; every value is replaced by compare-and-swap, so no concurrent write is lost.
    /// The application must read with the dual reader meanwhile.
    #[arg(long)]
    pub online: bool,
}

/// `kura reencrypt`: always online (every value is replaced by compare-and-swap).
#[derive(Debug, Args)]
pub struct ReencryptArgs {
    /// The table and how to go over it.
    #[command(flatten)]
    pub table: TableArgs,
}

/// `kura backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the backup: a new file (mode 0600), or an S3 object
    /// (s3://BUCKET/KEY).
    #[arg(long, value_name = "FILE|s3://BUCKET/KEY")]
    pub out: String,
    /// Replace the file or the S3 object if it exists.
    #[arg(long)]
    pub force: bool,
    /// S3 server-side encryption of the uploaded backup.
    #[arg(long = "s3-sse", value_enum, value_name = "ALGORITHM")]
    pub s3_sse: Option<S3Sse>,
    /// The KMS key (id, ARN or alias) for --s3-sse aws:kms; without it S3 uses the
    /// account's default key.
    #[arg(long = "s3-sse-kms-key-id", value_name = "ID")]
    pub s3_sse_kms_key_id: Option<String>,
    /// S3 connection options.
    #[command(flatten)]
    pub s3: S3Args,
}

/// `kura restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup to restore: a file, or an S3 object (s3://BUCKET/KEY).
    #[arg(value_name = "FILE|s3://BUCKET/KEY")]
    pub from: String,
    /// Replace an initialised keystore; its contents are first backed up to a file in the
    /// data directory, whose path is printed.
    #[arg(long)]
    pub force: bool,
    /// S3 connection options.
    #[command(flatten)]
    pub s3: S3Args,
}

/// Where S3 is, for s3:// backup locations. Credentials come from the standard AWS chain.
#[derive(Debug, Args)]
pub struct S3Args {
    /// An S3-compatible endpoint (http(s)://host:port), addressed path-style.
    #[arg(long = "s3-endpoint", value_name = "URL")]
    pub endpoint: Option<String>,
    /// The bucket's region [default: AWS_REGION, else AWS_DEFAULT_REGION].
    #[arg(long = "s3-region", value_name = "REGION")]
    pub region: Option<String>,
}

/// S3 server-side encryption (`x-amz-server-side-encryption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum S3Sse {
    /// SSE-KMS: encrypted under a KMS key (--s3-sse-kms-key-id, or the default key).
    #[value(name = "aws:kms")]
    AwsKms,
    /// SSE-S3: encrypted under keys S3 manages.
    #[value(name = "AES256")]
    Aes256,
}
