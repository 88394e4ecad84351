//! Legacy application data for the migration tests: an AES-128 key, values encrypted the
//! old way (by `openssl enc` and by the library's legacy encryptor), and a checker that
//! opens every value of a table the way the application would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kura_format::EncryptionContext;
use kura_keys::config::Overrides;
use kura_keys::{LegacyFormat, LegacyKey, Origin, Vault};

use crate::common::{Run, Sandbox, random_key};

/// A legacy key and its file in a sandbox.
pub(crate) struct Legacy {
    pub(crate) raw: Vec<u8>,
    pub(crate) key: LegacyKey,
    pub(crate) file: PathBuf,
}

impl Legacy {
    pub(crate) fn new(sb: &Sandbox) -> Self {
        let raw = random_key()[..16].to_vec();
        sb.secret(&raw);
        let file = sb.write_file(
            "legacy.key",
            format!("{}\n", hex::encode(&raw)).as_bytes(),
            0o400,
        );
        Self {
            key: LegacyKey::from_bytes(&raw).unwrap(),
            raw,
            file,
        }
    }

    /// `plain` encrypted by the library's legacy encryptor.
    pub(crate) fn encrypt(&self, plain: &[u8], format: LegacyFormat) -> Vec<u8> {
        self.key.encrypt(plain, format).unwrap()
    }

    /// `plain` under this key, as a value `theirs` does not decrypt. Under a wrong key the
    /// last block still has valid padding about once in 256 values: such a value would
    /// migrate as garbage, and no migration could tell; a fresh IV gives another value.
    pub(crate) fn encrypt_foreign(
        &self,
        plain: &[u8],
        format: LegacyFormat,
        theirs: &Legacy,
    ) -> Vec<u8> {
        loop {
            let v = self.encrypt(plain, format);
            if theirs.key.decrypt(&v, format).is_err() {
                return v;
            }
        }
    }

    /// `plain` encrypted by `openssl enc -aes-128-cbc -K … -iv …`, IV prepended, base64.
    pub(crate) fn openssl(&self, plain: &[u8], iv: [u8; 16]) -> String {
        let mut child = Command::new("openssl")
            .args(["enc", "-aes-128-cbc", "-K", &hex::encode(&self.raw), "-iv"])
            .arg(hex::encode(iv))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl must be installed");
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(plain).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl enc failed");
        let mut raw = iv.to_vec();
        raw.extend(out.stdout);
        STANDARD.encode(raw)
    }
}

/// The plaintext of `column` in row `id`: `len` bytes that name both.
pub(crate) fn plain(column: &str, id: i64, len: usize) -> Vec<u8> {
    let mut p = format!("{column} of row {id}:").into_bytes();
    while p.len() < len {
        p.push(b'a' + (p.len() % 26) as u8);
    }
    p.truncate(len.max(1));
    p
}

/// The context migrate-encryption binds a value to.
pub(crate) fn ctx(table: &str, column: &str, id: &str) -> EncryptionContext {
    let mut c = EncryptionContext::new();
    c.insert("table", table);
    c.insert("column", column);
    c.insert("row", id);
    c
}

/// The application's view: a vault on the sandbox's keystore.
pub(crate) fn vault(sb: &Sandbox, key: &Path) -> Vault {
    Vault::from_config(
        None,
        &Overrides {
            data_dir: Some(sb.data_dir()),
            master_key_file: Some(key.to_path_buf()),
            previous_master_key_file: None,
            database_url: None,
        },
    )
    .unwrap()
}

/// What a stored value holds, read the way the application does (dual reader).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    Empty,
    /// A kura envelope (raw, or base64 text) opening under the row's context to `.0`.
    Envelope(Vec<u8>),
    /// Still legacy, decrypting to `.0`.
    Legacy(Vec<u8>),
    /// Neither.
    Unreadable,
}

/// Reads one stored value (`None` is NULL) of `(table, column, id)`.
pub(crate) fn see(
    vault: &Vault,
    legacy: &Legacy,
    format: LegacyFormat,
    table: &str,
    column: &str,
    id: &str,
    value: Option<&[u8]>,
) -> Seen {
    let Some(v) = value.filter(|v| !v.trim_ascii().is_empty()) else {
        return Seen::Empty;
    };
    match vault.open_any(v, &ctx(table, column, id), Some((&legacy.key, format))) {
        Ok((p, Origin::Envelope)) => Seen::Envelope(p.to_vec()),
        Ok((p, Origin::Legacy)) => Seen::Legacy(p.to_vec()),
        Err(_) => Seen::Unreadable,
    }
}

/// `kura migrate-encryption` of `table(id_column; columns)` in `database`.
pub(crate) fn migrate(
    sb: &Sandbox,
    key: &Path,
    database: &str,
    target: (&str, &str, &[&str]),
    legacy: &Legacy,
    extra: &[&str],
) -> Run {
    sb.kura(key, &migrate_args(database, target, &legacy.file, extra))
}

/// The arguments of [`migrate`].
pub(crate) fn migrate_args(
    database: &str,
    (table, id, columns): (&str, &str, &[&str]),
    legacy_file: &Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args = table_args("migrate-encryption", database, (table, id, columns));
    args.push("--legacy-key-file".into());
    args.push(legacy_file.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `command --database … --table … --id-column … --column …`.
fn table_args(
    command: &str,
    database: &str,
    (table, id, columns): (&str, &str, &[&str]),
) -> Vec<String> {
    let mut args = vec![
        command.to_string(),
        "--database".into(),
        database.into(),
        "--table".into(),
        table.into(),
        "--id-column".into(),
        id.into(),
    ];
    for c in columns {
        args.push("--column".into());
        args.push((*c).into());
    }
    args
}

/// `kura reencrypt` of `table(id_column; columns)` in `database`.
pub(crate) fn reencrypt(
    sb: &Sandbox,
    key: &Path,
    database: &str,
    target: (&str, &str, &[&str]),
    extra: &[&str],
) -> Run {
    let mut args = table_args("reencrypt", database, target);
    args.extend(extra.iter().map(|s| s.to_string()));
    sb.kura(key, &args)
}

/// The envelope bytes of a stored value: raw, or decoded from base64 text.
pub(crate) fn envelope_bytes(value: &[u8]) -> Vec<u8> {
    if value.starts_with(b"KRE") {
        value.to_vec()
    } else {
        STANDARD.decode(value.trim_ascii()).unwrap()
    }
}
