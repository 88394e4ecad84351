//! `kura fs reencrypt`: every file under the active data key and the configured method.
//!
//! A file is rewritten when it is plaintext, under another data key than the active one,
//! or under another method than configured. Page-mode files (`aes256-gcm-page`) stay in
//! page mode whatever is configured, since their application rewrites them in place,
//! which CTR refuses; they still move to the active data key. Left alone, and counted as
//! skipped: redb databases (a page-mode file with `NAME.kura-head` header slots sealed
//! with its key, or a plaintext file that starts like a redb database), which only redb
//! itself can copy, and their `.kura-head` files.
//!
//! Each rewrite writes `.NAME.kura-tmp` beside the file through kura-fs (a new salt, so a
//! new key, under the active data key), syncs it, gives it the file's permissions, then
//! `EncryptedFs::rename`s it over the file. A kill at any instant leaves every file whole,
//! under its old key or its new one: a rerun removes the temporary files left behind and
//! rewrites what is still not current. At the end the dictionary is compacted, so that
//! its records, too, are sealed under the active data key and older data keys can be
//! destroyed.

use std::collections::HashSet;
use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use kura_fs::page::Layout;
use kura_fs::{Dictionary, EncryptedFs, File, META_DIR, Method};
use serde::Serialize;

use super::scan::is_plain_redb;
use super::{CHUNK, HEAD_SUFFIX, is_temp, open_root, temp_name};
use crate::cli::{Cli, FsReencryptArgs, OutputFormat};
use crate::output::emit;

/// What to do with one file.
enum Plan {
    Current,
    Skip(String),
    Rewrite {
        /// The file's method and data key now.
        from: String,
        to: Method,
    },
}

/// Decides what to do with `rel`, opened as `f`.
fn plan(fs: &EncryptedFs, rel: &str, f: &File, all: &HashSet<&str>) -> Plan {
    let configured = fs.method();
    let active = fs.keyring().active_data_key_id();
    let redb = all.contains(format!("{rel}{HEAD_SUFFIX}").as_str());
    match f.info() {
        None if configured == Method::Plaintext => Plan::Current,
        None if redb || is_plain_redb(f) => Plan::Skip(
            "a redb database in plaintext: copy it into a new database opened through kura-fs (RedbBackend)"
                .into(),
        ),
        None => Plan::Rewrite {
            from: Method::Plaintext.to_string(),
            to: configured,
        },
        Some(i) if redb => {
            if i.key_id == active {
                Plan::Current
            } else {
                Plan::Skip(format!(
                    "a redb database (its header slots in {rel}{HEAD_SUFFIX} are sealed with its key): \
                     copy it into a new database opened through kura-fs to move it off data key {}",
                    i.key_id
                ))
            }
        }
        Some(i) => {
            // Page-mode files are rewritten in place by their application: they stay so.
            let to = if i.method == Method::Aes256GcmPage {
                Method::Aes256GcmPage
            } else {
                configured
            };
            // Page-mode files in the older layout (4128-byte units) move to the aligned one.
            let old_layout = f.page_layout() == Some(Layout::V1);
            if i.method == to && i.key_id == active && !old_layout {
                Plan::Current
            } else {
                Plan::Rewrite {
                    from: format!(
                        "{}{} under data key {}",
                        i.method,
                        if old_layout { " (page layout 1)" } else { "" },
                        i.key_id
                    ),
                    to,
                }
            }
        }
    }
}

/// Rewrites `rel` (open as `f`) as `to` under the active data key; returns the new data
/// key id. On failure the file is unchanged and the temporary file removed.
fn rewrite(fs: &EncryptedFs, rel: &str, f: &File, to: Method) -> Result<Option<u64>> {
    let tmp = temp_name(rel);
    let copy = || -> Result<Option<u64>> {
        let t = fs.create_with(&tmp, to)?;
        let mut buf = vec![0u8; CHUNK];
        let mut at = 0u64;
        loop {
            let n = f.read_at(&mut buf, at)?;
            if n == 0 {
                break;
            }
            t.write_at(&buf[..n], at)?;
            at += n as u64;
        }
        t.sync_data()?;
        let (src, dst) = (fs.root().join(rel), fs.root().join(&tmp));
        let perm = std::fs::metadata(&src)
            .with_context(|| format!("cannot read the permissions of {}", src.display()))?
            .permissions();
        std::fs::set_permissions(&dst, perm)
            .with_context(|| format!("cannot set the permissions of {}", dst.display()))?;
        Ok(t.info().map(|i| i.key_id))
    };
    match copy() {
        Ok(id) => {
            fs.rename(&tmp, rel)?;
            Ok(id)
        }
        Err(e) => {
            let _ = fs.remove(&tmp);
            Err(e)
        }
    }
}

/// Progress on stderr: a bar on a terminal, a line per file otherwise (files already
/// current are only counted).
struct Meter {
    bar: Option<indicatif::ProgressBar>,
}

impl Meter {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} files  {per_sec}  ETA {eta}  {msg}",
            ) {
                b.set_style(style);
            }
            b
        });
        Self { bar }
    }

    /// Reports one file: `line` is printed as is without a terminal, and above the bar
    /// with one unless the file was only rewritten.
    fn file(&self, line: Option<&str>, quiet_on_bar: bool) {
        match (&self.bar, line) {
            (Some(b), Some(l)) => {
                if !quiet_on_bar {
                    b.println(l);
                }
                b.set_message(l.to_string());
                b.inc(1);
            }
            (Some(b), None) => b.inc(1),
            (None, Some(l)) => eprintln!("{l}"),
            (None, None) => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[derive(Serialize)]
struct Skipped {
    path: String,
    reason: String,
}

#[derive(Serialize)]
struct Failed {
    path: String,
    error: String,
}

#[derive(Serialize, Default)]
struct Summary {
    dry_run: bool,
    method: &'static str,
    data_key: String,
    rewritten: Vec<String>,
    already_current: usize,
    skipped: Vec<Skipped>,
    failed: Vec<Failed>,
    temporary_files_removed: usize,
}

pub(super) fn run(cli: &Cli, a: &FsReencryptArgs) -> Result<()> {
    let root = open_root(cli, &a.root.root, false)?;
    let fs = &root.fs;
    if !a.dry_run {
        // A data key due for rotation (by age, or made for another method) is rotated on
        // its next use: rotate it now, so that files under it are not counted current.
        fs.keyring().rotate_if_due()?;
    }
    let mut sum = Summary {
        dry_run: a.dry_run,
        method: fs.method().as_str(),
        ..Summary::default()
    };
    // What an interrupted put or reencrypt left: the file it was replacing is whole.
    let mut paths = Vec::new();
    for p in fs.list()? {
        if !is_temp(&p) {
            paths.push(p);
        } else if !a.dry_run {
            fs.remove(&p)
                .with_context(|| format!("cannot remove the temporary file {p}"))?;
            sum.temporary_files_removed += 1;
        }
    }
    let all: HashSet<&str> = paths.iter().map(String::as_str).collect();
    let meter = Meter::new(paths.len() as u64);
    let verb = if a.dry_run {
        "would rewrite"
    } else {
        "rewrote"
    };
    for rel in &paths {
        if let Some(db) = rel.strip_suffix(HEAD_SUFFIX)
            && all.contains(db)
        {
            let reason = format!("header slots of the redb database {db}, kept with it");
            meter.file(Some(&format!("skipped {rel}: {reason}")), false);
            sum.skipped.push(Skipped {
                path: rel.clone(),
                reason,
            });
            continue;
        }
        let f = match fs.open_file(rel) {
            Ok(f) => f,
            Err(e) => {
                meter.file(Some(&format!("failed {rel}: {e}")), false);
                sum.failed.push(Failed {
                    path: rel.clone(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        match plan(fs, rel, &f, &all) {
            Plan::Current => {
                sum.already_current += 1;
                meter.file(None, true);
            }
            Plan::Skip(reason) => {
                meter.file(Some(&format!("skipped {rel}: {reason}")), false);
                sum.skipped.push(Skipped {
                    path: rel.clone(),
                    reason,
                });
            }
            Plan::Rewrite { from, to } => {
                let done = if a.dry_run {
                    Ok(None)
                } else {
                    rewrite(fs, rel, &f, to)
                };
                match done {
                    Ok(id) => {
                        let key = id
                            .map(|k| format!(" under data key {k}"))
                            .unwrap_or_default();
                        meter.file(Some(&format!("{verb} {rel}: {from} -> {to}{key}")), true);
                        sum.rewritten.push(rel.clone());
                    }
                    Err(e) => {
                        let error = crate::report(&e);
                        meter.file(Some(&format!("failed {rel}: {error}")), false);
                        sum.failed.push(Failed {
                            path: rel.clone(),
                            error,
                        });
                    }
                }
            }
        }
    }
    meter.finish();
    sum.data_key = fs.keyring().active_data_key_id().to_string();
    if !a.dry_run {
        // Reseal the dictionary's records under the active data key too.
        let keyring = fs.keyring().clone();
        let dir = fs.root().join(META_DIR);
        drop(root.fs);
        Dictionary::open(&dir, keyring, root.file_dictionary_log)
            .and_then(|mut d| d.compact())
            .with_context(|| format!("cannot compact the file dictionary in {}", dir.display()))?;
    }
    let text = format!(
        "{}{verb} {}, {} already current, {} skipped, {} failed (method {}, data key {}){}",
        if a.dry_run { "dry run: " } else { "" },
        files(sum.rewritten.len()),
        sum.already_current,
        sum.skipped.len(),
        sum.failed.len(),
        sum.method,
        sum.data_key,
        match sum.temporary_files_removed {
            0 => String::new(),
            n => format!(
                "; removed {} of an interrupted run",
                match n {
                    1 => "1 temporary file".to_string(),
                    n => format!("{n} temporary files"),
                }
            ),
        }
    );
    match cli.output {
        OutputFormat::Json => emit(cli, &sum, String::new)?,
        OutputFormat::Text => emit(cli, &(), || text.clone())?,
    }
    if !sum.failed.is_empty() {
        bail!(
            "{} could not be re-encrypted and left as they were (listed above); fix them and run `kura fs reencrypt` again",
            files(sum.failed.len())
        );
    }
    Ok(())
}

/// "1 file", "2 files".
fn files(n: usize) -> String {
    if n == 1 {
        "1 file".into()
    } else {
        format!("{n} files")
    }
}
