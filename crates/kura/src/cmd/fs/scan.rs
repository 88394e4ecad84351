//! `kura fs ls` and `kura fs dump`: what every file under a data root is, read from its
//! header (the truth kura-fs decrypts by) and compared with its dictionary entry.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Result;
use kura_fs::{EncryptedFs, FileInfo, META_DIR, Method};
use serde::Serialize;
use zeroize::Zeroizing;

use super::{HEAD_SUFFIX, is_temp, key_id, open_root};
use crate::cli::{Cli, FsDumpArgs, FsRootArgs, OutputFormat};
use crate::output::emit;

/// The first bytes of every redb database file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// One file under the root.
pub(super) struct Entry {
    pub(super) path: String,
    /// How it is encrypted (`None`: plaintext, or unknown when `error` is set and the
    /// dictionary has no entry).
    pub(super) info: Option<FileInfo>,
    /// The plaintext length, when the file opened.
    pub(super) len: Option<u64>,
    /// Whether the dictionary agrees with the header.
    pub(super) dictionary: &'static str,
    /// What this file is besides an ordinary file.
    pub(super) note: Option<String>,
    /// Why it could not be opened.
    pub(super) error: Option<String>,
    /// The redb database whose header slots this file holds.
    pub(super) head_of: Option<String>,
}

impl Entry {
    pub(super) fn method(&self) -> &'static str {
        match (&self.info, &self.error) {
            (Some(i), _) => i.method.as_str(),
            (None, None) => Method::Plaintext.as_str(),
            (None, Some(_)) => "unknown",
        }
    }
}

/// Whether an open plaintext file starts like a redb database.
pub(super) fn is_plain_redb(f: &kura_fs::File) -> bool {
    let mut head = [0u8; REDB_MAGIC.len()];
    f.info().is_none() && f.read_at(&mut head, 0).ok() == Some(head.len()) && head == REDB_MAGIC
}

/// Every file under the root, sorted by path.
pub(super) fn scan(fs: &EncryptedFs) -> Result<Vec<Entry>> {
    let paths = fs.list()?;
    let all: HashSet<&str> = paths.iter().map(String::as_str).collect();
    let mut out = Vec::with_capacity(paths.len());
    for path in &paths {
        let entry = fs.info(path)?;
        let mut e = Entry {
            path: path.clone(),
            info: entry,
            len: None,
            dictionary: "agrees",
            note: None,
            error: None,
            head_of: None,
        };
        if let Some(db) = path.strip_suffix(HEAD_SUFFIX)
            && all.contains(db)
        {
            // Sealed with the database file's key: shown with it (filled in below).
            e.note = Some(format!("header slots of the redb database {db}"));
            e.dictionary = "-";
            e.head_of = Some(db.to_string());
            out.push(e);
            continue;
        }
        if is_temp(path) {
            e.note = Some(
                "temporary file of an interrupted put or reencrypt; `kura fs reencrypt` removes it"
                    .into(),
            );
        }
        match fs.open_file(path) {
            Ok(f) => {
                e.len = Some(f.len());
                e.dictionary = match (entry, f.info()) {
                    (a, b) if a == b => "agrees",
                    (None, Some(_)) => "missing (the header decides)",
                    _ => "differs (the header decides)",
                };
                e.info = f.info();
                if all.contains(format!("{path}{HEAD_SUFFIX}").as_str()) {
                    e.note = Some(format!(
                        "redb database (header slots in {path}{HEAD_SUFFIX})"
                    ));
                } else if is_plain_redb(&f) {
                    e.note = Some("redb database in plaintext".into());
                }
            }
            Err(err) => e.error = Some(err.to_string()),
        }
        out.push(e);
    }
    let by_path: BTreeMap<String, Option<FileInfo>> =
        out.iter().map(|e| (e.path.clone(), e.info)).collect();
    for e in &mut out {
        if let Some(db) = &e.head_of {
            e.info = by_path.get(db).copied().flatten();
        }
    }
    Ok(out)
}

/// `kura fs ls`.
#[derive(Serialize)]
struct Listing {
    root: String,
    method: &'static str,
    files: Vec<Listed>,
}

#[derive(Serialize)]
struct Listed {
    path: String,
    method: &'static str,
    data_key_id: Option<String>,
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn listed(e: &Entry) -> Listed {
    Listed {
        path: e.path.clone(),
        method: e.method(),
        data_key_id: key_id(e.info),
        size: e.len,
        note: e.note.clone(),
        error: e.error.clone(),
    }
}

fn dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn remark(l: &Listed) -> String {
    match (&l.error, &l.note) {
        (Some(e), _) => format!("  ({e})"),
        (None, Some(n)) => format!("  ({n})"),
        (None, None) => String::new(),
    }
}

pub(super) fn ls(cli: &Cli, a: &FsRootArgs) -> Result<()> {
    let root = open_root(cli, &a.root, false)?;
    let files: Vec<Listed> = scan(&root.fs)?.iter().map(listed).collect();
    let out = Listing {
        root: root.fs.root().display().to_string(),
        method: root.fs.method().as_str(),
        files,
    };
    emit(cli, &out, || {
        if out.files.is_empty() {
            return format!("no files under {}", out.root);
        }
        let w = out
            .files
            .iter()
            .map(|f| f.path.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut t = format!(
            "{:<w$}  {:<15}  {:<20}  SIZE\n",
            "PATH", "METHOD", "DATA KEY"
        );
        for f in &out.files {
            let _ = writeln!(
                t,
                "{:<w$}  {:<15}  {:<20}  {}{}",
                f.path,
                f.method,
                dash(f.data_key_id.as_ref()),
                dash(f.size),
                remark(f)
            );
        }
        t
    })
}

/// A file as `kura fs dump` shows it.
#[derive(Serialize)]
struct Dumped {
    #[serde(flatten)]
    listed: Listed,
    salt: Option<String>,
    dictionary: &'static str,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "secret_hex")]
    file_key: Option<Zeroizing<String>>,
}

fn secret_hex<S: serde::Serializer>(
    v: &Option<Zeroizing<String>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(k) => s.serialize_str(k),
        None => s.serialize_none(),
    }
}

#[derive(Serialize)]
struct DumpedKey {
    id: String,
    state: String,
    method: String,
    created_at: String,
    files: usize,
}

#[derive(Serialize)]
struct Dump {
    root: String,
    method: &'static str,
    active_data_key: String,
    file_dictionary: DictionaryInfo,
    files: Vec<Dumped>,
    data_keys: Vec<DumpedKey>,
}

#[derive(Serialize)]
struct DictionaryInfo {
    path: String,
    entries: usize,
    bytes: u64,
    enable_file_dictionary_log: bool,
}

/// The warning before key material is printed (after tikv-ctl's).
const SHOW_KEYS_WARNING: &str = "WARNING: --show-keys prints the key of every encrypted file in plaintext hex; \
anyone who sees them can decrypt those files. Do not keep this output in a file on disk, a terminal log or a ticket.";

pub(super) fn dump(cli: &Cli, a: &FsDumpArgs) -> Result<()> {
    let root = open_root(cli, &a.root.root, false)?;
    let fs = &root.fs;
    let entries = scan(fs)?;
    if a.show_keys {
        eprintln!("{SHOW_KEYS_WARNING}");
    }
    let mut per_key: BTreeMap<u64, usize> = BTreeMap::new();
    let mut files = Vec::with_capacity(entries.len());
    for e in &entries {
        if let Some(i) = &e.info {
            *per_key.entry(i.key_id).or_default() += 1;
        }
        let file_key = match (&e.info, a.show_keys) {
            (Some(i), true) => Some(
                match fs.keyring().derive(
                    i.key_id,
                    &i.salt,
                    i.method.as_str().as_bytes(),
                    i.method.key_len(),
                ) {
                    Ok(k) => Zeroizing::new(hex::encode(k.expose_secret())),
                    Err(err) => Zeroizing::new(format!("unavailable: {err}")),
                },
            ),
            _ => None,
        };
        files.push(Dumped {
            listed: listed(e),
            salt: e.info.map(|i| hex::encode(i.salt)),
            dictionary: e.dictionary,
            file_key,
        });
    }
    let status = fs.keyring().status();
    let mut data_keys: Vec<DumpedKey> = status
        .data_keys
        .iter()
        .map(|d| DumpedKey {
            files: d
                .id
                .parse::<u64>()
                .ok()
                .and_then(|id| per_key.get(&id).copied())
                .unwrap_or(0),
            id: d.id.clone(),
            state: d.state.to_string(),
            method: d.method.clone(),
            created_at: d.created_at.clone(),
        })
        .collect();
    for (id, n) in &per_key {
        if !status.data_keys.iter().any(|d| d.id == id.to_string()) {
            data_keys.push(DumpedKey {
                id: id.to_string(),
                state: "unknown (not in this keystore)".into(),
                method: "-".into(),
                created_at: "-".into(),
                files: *n,
            });
        }
    }
    let out = Dump {
        root: fs.root().display().to_string(),
        method: fs.method().as_str(),
        active_data_key: fs.keyring().active_data_key_id().to_string(),
        file_dictionary: DictionaryInfo {
            path: fs
                .root()
                .join(META_DIR)
                .join(kura_fs::dict::FILE_NAME)
                .display()
                .to_string(),
            entries: fs.entries().len(),
            bytes: fs.dictionary_size(),
            enable_file_dictionary_log: root.file_dictionary_log,
        },
        files,
        data_keys,
    };
    if !a.show_keys {
        return emit(cli, &out, || dump_text(&out, false));
    }
    // Key material goes straight to stdout, never through one more copy in a String that
    // is not wiped.
    let mut stdout = std::io::stdout().lock();
    match cli.output {
        // (As an I/O error, so that a closed pipe is recognised as one.)
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut stdout, &out).map_err(std::io::Error::from)?
        }
        OutputFormat::Text => stdout.write_all(Zeroizing::new(dump_text(&out, true)).as_bytes())?,
    }
    writeln!(stdout)?;
    stdout.flush()?;
    Ok(())
}

fn dump_text(d: &Dump, keys: bool) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "data root:        {}", d.root);
    let _ = writeln!(t, "method:           {}", d.method);
    let _ = writeln!(t, "active data key:  {}", d.active_data_key);
    let f = &d.file_dictionary;
    let _ = writeln!(
        t,
        "file dictionary:  {} ({} entries, {} bytes, enable-file-dictionary-log = {})",
        f.path, f.entries, f.bytes, f.enable_file_dictionary_log
    );
    let _ = writeln!(t, "files:");
    if d.files.is_empty() {
        let _ = writeln!(t, "  (none)");
    }
    for x in &d.files {
        let l = &x.listed;
        let _ = writeln!(
            t,
            "  {}\n    method {}, data key {}, salt {}, size {}, dictionary {}{}",
            l.path,
            l.method,
            dash(l.data_key_id.as_ref()),
            dash(x.salt.as_ref()),
            dash(l.size),
            x.dictionary,
            remark(l)
        );
        if keys && let Some(k) = &x.file_key {
            let _ = writeln!(t, "    file key {}", k.as_str());
        }
    }
    let _ = writeln!(t, "data keys:");
    let _ = writeln!(
        t,
        "  {:<20} {:<13} {:<16} {:<21} FILES",
        "ID", "STATE", "METHOD", "CREATED"
    );
    for k in &d.data_keys {
        let _ = writeln!(
            t,
            "  {:<20} {:<13} {:<16} {:<21} {}",
            k.id, k.state, k.method, k.created_at, k.files
        );
    }
    t
}
