//! `kura fs`: put, get, mv, rm, ls, dump and reencrypt on a kura-fs data root.
//!
//! Every command opens the keyring from the global options, then the data root with
//! `EncryptedFs::open`, which takes the root's dictionary lock (one kura process at a time
//! works on a root) and reconciles the dictionary with the files after a crash. New files
//! get `[security.encryption] data-encryption-method`, the setting also recorded with each
//! data key; `enable-file-dictionary-log` chooses the dictionary's format.
//!
//! Writes are atomic: `put` and `reencrypt` write a hidden temporary file beside the
//! target through kura-fs (`.NAME.kura-tmp`), sync it, then `EncryptedFs::rename` it over
//! the target. A killed run leaves the target as it was and at worst that temporary file,
//! which the next `put` of the same path or any `reencrypt` removes.
//!
//! A redb database kept through `RedbBackend` is a page-mode file `NAME` with its header
//! slots in `NAME.kura-head`, sealed with the file's own key: the two go together, so
//! these commands never write, move or re-encrypt one without the other (`rm` deletes
//! both).

mod reencrypt;
mod scan;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kura_fs::{EncryptedFs, Method, Options, normalize};
use kura_keys::Keyring;
use kura_keys::config::Settings;
use serde::Serialize;

use crate::cli::{Cli, FsAction, FsArgs, FsMvArgs, FsPathArgs, FsPutArgs};
use crate::env;
use crate::output::emit;

/// Bytes copied per read and write.
const CHUNK: usize = 1 << 20;
/// The suffix of kura's temporary files (after a leading dot and the target's name).
const TMP_SUFFIX: &str = ".kura-tmp";
/// The suffix of a redb database's header slots (`RedbBackend`).
const HEAD_SUFFIX: &str = ".kura-head";

pub(crate) fn run(cli: &Cli, a: &FsArgs) -> Result<()> {
    match &a.action {
        FsAction::Put(p) => put(cli, p),
        FsAction::Get(p) => get(cli, p),
        FsAction::Mv(p) => mv(cli, p),
        FsAction::Rm(p) => rm(cli, p),
        FsAction::Ls(p) => scan::ls(cli, p),
        FsAction::Dump(p) => scan::dump(cli, p),
        FsAction::Reencrypt(p) => reencrypt::run(cli, p),
    }
}

/// An open data root and the dictionary setting it was opened with.
struct Root {
    fs: EncryptedFs,
    file_dictionary_log: bool,
}

/// Opens the data root `dir` with the configured keyring, method and dictionary format.
/// Unless `create`, the folder must exist: a mistyped --root must not look empty.
fn open_root(cli: &Cli, dir: &Path, create: bool) -> Result<Root> {
    if !create && !dir.is_dir() {
        bail!(
            "the data root {} does not exist or is not a folder; check --root (`kura fs put` creates it)",
            dir.display()
        );
    }
    // Opening registers the root in the keystore, so that `kura destroy-data-key` looks at
    // its files.
    let (keyring, _, s) = env::open(cli)?;
    let fs = open_with(dir, Arc::new(keyring), &s)?;
    Ok(Root {
        fs,
        file_dictionary_log: s.file_dictionary_log,
    })
}

/// Opens the data root `dir` with `keyring` and the configured method and dictionary
/// format.
fn open_with(dir: &Path, keyring: Arc<Keyring>, s: &Settings) -> Result<EncryptedFs> {
    let method: Method = s.method.as_str().parse()?;
    let opts = Options {
        method,
        file_dictionary_log: s.file_dictionary_log,
    };
    EncryptedFs::open(dir, keyring, opts)
        .with_context(|| format!("cannot open the data root {}", dir.display()))
}

/// What in the registered data roots is encrypted under data key `id`, one line per root
/// (for `kura destroy-data-key`). Each root's dictionary is read without its lock, so a
/// root in use by another process is checked too; one that cannot be read counts as a use:
/// destroying is refused rather than done unchecked.
pub(crate) fn files_under(
    keyring: &Keyring,
    store: &dyn kura_store::ObjectStore,
    id: u64,
) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for root in crate::usage::fs_roots(store)? {
        if !root.is_dir() {
            continue;
        }
        match kura_fs::Dictionary::peek(&root.join(kura_fs::META_DIR), keyring) {
            Ok(peek) => {
                let n = peek.map_or(0, |p| {
                    p.entries.values().filter(|i| i.key_id == id).count()
                });
                if n > 0 {
                    lines.push(format!(
                        "{n} files in the data root {}; re-encrypt them with `kura fs reencrypt --root {}`",
                        root.display(),
                        root.display()
                    ));
                }
            }
            Err(e) => lines.push(format!(
                "the file dictionary of the data root {} could not be read ({e}); fix it, or remove the root, and try again",
                root.display()
            )),
        }
    }
    Ok(lines)
}

/// The temporary name of `rel` (normalized): `.NAME.kura-tmp` in the same folder.
fn temp_name(rel: &str) -> String {
    match rel.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/.{name}{TMP_SUFFIX}"),
        None => format!(".{rel}{TMP_SUFFIX}"),
    }
}

/// Whether `rel` is one of kura's temporary files.
fn is_temp(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name.len() > 1 + TMP_SUFFIX.len() && name.starts_with('.') && name.ends_with(TMP_SUFFIX)
}

/// Whether `rel` is a redb database kept through `RedbBackend` (it has header slots).
fn is_redb(fs: &EncryptedFs, rel: &str) -> bool {
    fs.root().join(format!("{rel}{HEAD_SUFFIX}")).exists()
}

/// Refuses a path `put` or `mv` must not write: kura's temporary files, redb header slots,
/// and redb databases.
fn refuse_reserved(fs: &EncryptedFs, rel: &str) -> Result<()> {
    if is_temp(rel) {
        bail!(
            "'{rel}' is the name of a kura temporary file (.NAME{TMP_SUFFIX}); choose another name"
        );
    }
    if rel.ends_with(HEAD_SUFFIX) {
        bail!(
            "'{rel}' ends in {HEAD_SUFFIX}, the header slots of a redb database kept with kura-fs; choose another name"
        );
    }
    if is_redb(fs, rel) {
        bail!(
            "'{rel}' is a redb database (its header slots are in '{rel}{HEAD_SUFFIX}', sealed with its key); \
             write and move it through the application that opens it with kura-fs"
        );
    }
    Ok(())
}

/// Fails unless `rel` is a file under the root.
fn existing(fs: &EncryptedFs, rel: &str) -> Result<()> {
    if !fs.root().join(rel).is_file() {
        bail!(
            "there is no file '{rel}' under the data root {root}; `kura fs ls --root {root}` lists its files",
            root = fs.root().display()
        );
    }
    Ok(())
}

/// Reads from `r` until `buf` is full or the input ends; returns how many bytes.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A data key id as shown (decimal, a string in JSON like everywhere in kura).
fn key_id(info: Option<kura_fs::FileInfo>) -> Option<String> {
    info.map(|i| i.key_id.to_string())
}

/// What `put`, `mv` and `rm` report.
#[derive(Serialize)]
struct Done {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    message: String,
}

fn put(cli: &Cli, a: &FsPutArgs) -> Result<()> {
    let rel = normalize(&a.path)?;
    let root = open_root(cli, &a.root.root, true)?;
    let fs = &root.fs;
    refuse_reserved(fs, &rel)?;
    let method = a.method.unwrap_or_else(|| fs.method());
    let tmp = temp_name(&rel);
    let write = || -> Result<(u64, Option<kura_fs::FileInfo>)> {
        let f = fs.create_with(&tmp, method)?;
        let mut input = std::io::stdin().lock();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = fill(&mut input, &mut buf).context("cannot read stdin")?;
            if n == 0 {
                break;
            }
            f.append(&buf[..n])?;
        }
        f.sync_data()?;
        Ok((f.len(), f.info()))
    };
    let (bytes, info) = match write() {
        Ok(r) => r,
        Err(e) => {
            // The target is untouched; the temporary file would only be cleaned up later.
            let _ = fs.remove(&tmp);
            return Err(e.context(format!("cannot put '{rel}'; it was not changed")));
        }
    };
    fs.rename(&tmp, &rel)
        .with_context(|| format!("cannot put '{rel}'; it was not changed"))?;
    let key = key_id(info);
    let message = format!(
        "wrote {rel}: {bytes} bytes, {method}{}",
        key.as_ref()
            .map(|k| format!(", data key {k}"))
            .unwrap_or_default()
    );
    let done = Done {
        path: rel,
        from: None,
        method: Some(method.as_str()),
        data_key_id: key,
        bytes: Some(bytes),
        message,
    };
    emit(cli, &done, || done.message.clone())
}

fn get(cli: &Cli, a: &FsPathArgs) -> Result<()> {
    let rel = normalize(&a.path)?;
    let root = open_root(cli, &a.root.root, false)?;
    let fs = &root.fs;
    existing(fs, &rel)?;
    let what = || format!("cannot read '{rel}'");
    let f = fs.open_file(&rel).with_context(what)?;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    loop {
        let n = f.read_at(&mut buf, at).with_context(what)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        at += n as u64;
    }
    out.flush()?;
    Ok(())
}

fn mv(cli: &Cli, a: &FsMvArgs) -> Result<()> {
    let (from, to) = (normalize(&a.from)?, normalize(&a.to)?);
    if from == to {
        bail!("'{from}' and '{to}' are the same file; nothing to move");
    }
    let root = open_root(cli, &a.root.root, false)?;
    let fs = &root.fs;
    existing(fs, &from)?;
    refuse_reserved(fs, &from)?;
    refuse_reserved(fs, &to)?;
    if fs.root().join(&to).is_dir() {
        bail!("'{to}' is a folder; give the new path of the file itself");
    }
    fs.rename(&from, &to)
        .with_context(|| format!("cannot move '{from}' to '{to}'"))?;
    let done = Done {
        message: format!("moved {from} to {to}"),
        path: to,
        from: Some(from),
        method: None,
        data_key_id: None,
        bytes: None,
    };
    emit(cli, &done, || done.message.clone())
}

fn rm(cli: &Cli, a: &FsPathArgs) -> Result<()> {
    let rel = normalize(&a.path)?;
    let root = open_root(cli, &a.root.root, false)?;
    let fs = &root.fs;
    existing(fs, &rel)?;
    if let Some(db) = rel.strip_suffix(HEAD_SUFFIX)
        && fs.root().join(db).is_file()
    {
        bail!(
            "'{rel}' holds the header slots of the redb database '{db}', which cannot be read without them; \
             `kura fs rm` the database instead (it removes both)"
        );
    }
    let head = is_redb(fs, &rel).then(|| fs.root().join(format!("{rel}{HEAD_SUFFIX}")));
    fs.remove(&rel)
        .with_context(|| format!("cannot remove '{rel}'"))?;
    let mut message = format!("removed {rel}");
    if let Some(h) = head {
        std::fs::remove_file(&h).with_context(|| format!("cannot remove {}", h.display()))?;
        message.push_str(&format!(" and its redb header slots {rel}{HEAD_SUFFIX}"));
    }
    let done = Done {
        path: rel,
        from: None,
        method: None,
        data_key_id: None,
        bytes: None,
        message,
    };
    emit(cli, &done, || done.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names() {
        assert_eq!(temp_name("a"), ".a.kura-tmp");
        assert_eq!(temp_name("d/e/f.sst"), "d/e/.f.sst.kura-tmp");
        assert!(is_temp(&temp_name("d/e/f.sst")));
        assert!(is_temp(&temp_name("x")));
        for not in ["a.kura-tmp", ".kura-tmp", "d/.kura-tmp", "d/x", ".x"] {
            assert!(!is_temp(not), "{not}");
        }
    }
}
