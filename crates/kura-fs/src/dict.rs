//! The file dictionary: for every encrypted file under the data root, its path relative to
//! the root and how it is encrypted ([`FileInfo`]: method, data key id, salt). It holds no
//! key: a file's key is derived from the data key named by id, with the salt.
//!
//! On disk it is one file, `file.dict`, in the root's `.kura-fs` folder: a plaintext header
//! (magic, format version, a random dictionary id), then length-framed records, each a kura
//! record envelope sealed by the [`Keyring`] under an encryption context that names the
//! dictionary id, the format version and the record's sequence number. Record 0 is a
//! snapshot of every entry; in format 2 (`enable-file-dictionary-log = true`) changes are
//! appended after it, one record and one `fdatasync` each, and the whole is rewritten as a
//! new snapshot (new id, atomically) when the log grows long; in format 1 every change
//! rewrites the snapshot. The file shows sizes only: paths, methods, key ids and salts are
//! all sealed.
//!
//! Every change is durable before its call returns. After a crash the dictionary opens: an
//! interrupted append (only the last record can be one) is left out with a warning and the
//! file is rewritten; any other damage, and any reordered, dropped, replayed or edited
//! record, is [`Error::Dictionary`]. One process at a time: [`Dictionary::open`] takes an
//! exclusive lock on the file, held until the dictionary is dropped. `docs/format.md`
//! gives every byte; `docs/design.md` the crash and tamper properties.

mod codec;
mod load;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kura_keys::Keyring;
use kura_store::atomic::{AtomicFile, sync_dir};
use zeroize::Zeroizing;

use crate::{Error, Method};
use codec::{Change, SNAPSHOT_ONLY, WITH_LOG};

/// The dictionary's file name in its folder.
pub const FILE_NAME: &str = "file.dict";
/// The log is compacted into a snapshot once it holds more records than this, or than
/// twice the number of entries, whichever is more.
pub const COMPACT_MIN_LOG_RECORDS: u64 = 1000;

/// How one file is encrypted: enough to derive its key again from the keyring. Not secret
/// on its own (the salt is public, like an IV), but kept sealed in the dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// The method.
    pub method: Method,
    /// The data key the file key is derived from.
    pub key_id: u64,
    /// The file's random salt.
    pub salt: [u8; 16],
}

/// A dictionary as [`Dictionary::peek`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    /// Every entry, by path.
    pub entries: BTreeMap<String, FileInfo>,
    /// The size of the records that read, in bytes.
    pub size_bytes: u64,
}

/// The file dictionary of one data root. See the [module documentation](self).
pub struct Dictionary {
    path: PathBuf,
    keyring: Arc<Keyring>,
    log: bool,
    /// The open, locked dictionary file.
    file: File,
    version: u8,
    id: [u8; 16],
    entries: BTreeMap<String, FileInfo>,
    /// Log records after the snapshot.
    log_records: u64,
    /// Bytes in the file (all of them records that read).
    len: u64,
    /// An append failed, so what follows `len` on disk is uncertain: the next change
    /// rewrites the whole file instead of appending.
    rewrite_needed: bool,
    min_log_records: u64,
}

impl fmt::Debug for Dictionary {
    /// Sizes and the file's name only: the entries are what the dictionary keeps sealed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dictionary")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("entries", &self.entries.len())
            .field("log_records", &self.log_records)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Dictionary {
    /// Opens (or creates) the dictionary in `dir` (the root's `.kura-fs` folder, created
    /// if missing). `log` is `enable-file-dictionary-log`: `true` appends a record per
    /// change (format 2); `false` rewrites the whole file per change (format 1), and a
    /// format-2 dictionary found here is rewritten in format 1 (the downgrade path).
    pub fn open(dir: &Path, keyring: Arc<Keyring>, log: bool) -> Result<Self, Error> {
        ensure_dir(dir)?;
        let path = dir.join(FILE_NAME);
        let version = if log { WITH_LOG } else { SNAPSHOT_ONLY };
        // A few rounds: another process may create the file between our look and our
        // creation (then we open its file instead).
        for _ in 0..3 {
            let Some(file) = open_locked(&path)? else {
                let entries = BTreeMap::new();
                let written = match write_snapshot(&path, &keyring, version, &entries, true) {
                    Err(Error::Io { source, .. })
                        if source.kind() == io::ErrorKind::AlreadyExists =>
                    {
                        continue;
                    }
                    r => r?,
                };
                remove_stray_temps(dir)?;
                return Ok(Self::new(path, keyring, log, written, entries));
            };
            remove_stray_temps(dir)?;
            let mut bytes = Vec::new();
            (&file).read_to_end(&mut bytes).map_err(io_at(&path))?;
            let loaded = load::load(&path, &bytes, &keyring)?;
            let mut d = Self {
                path,
                keyring,
                log,
                file,
                version: loaded.version,
                id: loaded.id,
                entries: loaded.entries,
                log_records: loaded.log_records,
                len: loaded.valid_len,
                rewrite_needed: false,
                min_log_records: COMPACT_MIN_LOG_RECORDS,
            };
            if let Some(t) = &loaded.torn {
                tracing::warn!(
                    dictionary = %d.path.display(),
                    offset = t.offset,
                    dropped_bytes = t.bytes,
                    reason = t.reason,
                    "file dictionary: left out a torn last record (an interrupted write); rewriting the dictionary"
                );
                d.compact()?;
            } else if d.version != version {
                tracing::info!(
                    dictionary = %d.path.display(),
                    from = d.version,
                    to = version,
                    enable_file_dictionary_log = log,
                    "file dictionary: rewriting in the configured format"
                );
                d.compact()?;
            } else if d.log_too_long() {
                d.compact()?;
            }
            return Ok(d);
        }
        Err(Error::Io {
            path,
            source: io::Error::other("the file dictionary kept being replaced while opening it"),
        })
    }

    /// Reads the dictionary in `dir` without taking its lock, for a look from another
    /// process (metrics, `kura destroy-data-key` checks) while its owner goes on working:
    /// the owner replaces the file only by an atomic rename and appends whole records, so
    /// this reads one consistent dictionary (a record being appended is left out, as a torn
    /// tail is). `None` if the root has no dictionary.
    pub fn peek(dir: &Path, keyring: &Keyring) -> Result<Option<Peek>, Error> {
        let path = dir.join(FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let loaded = load::load(&path, &bytes, keyring)?;
        Ok(Some(Peek {
            entries: loaded.entries,
            size_bytes: loaded.valid_len,
        }))
    }

    fn new(
        path: PathBuf,
        keyring: Arc<Keyring>,
        log: bool,
        written: Written,
        entries: BTreeMap<String, FileInfo>,
    ) -> Self {
        Self {
            path,
            keyring,
            log,
            file: written.file,
            version: written.version,
            id: written.id,
            entries,
            log_records: 0,
            len: written.len,
            rewrite_needed: false,
            min_log_records: COMPACT_MIN_LOG_RECORDS,
        }
    }

    /// The entry of `path` (a normalised relative path, `/`-separated).
    pub fn get(&self, path: &str) -> Option<FileInfo> {
        self.entries.get(path).copied()
    }

    /// Gives `path` the entry `info`, replacing any; durable before this returns.
    pub fn insert(&mut self, path: &str, info: FileInfo) -> Result<(), Error> {
        codec::check_path(path)?;
        if self.get(path) == Some(info) {
            return Ok(());
        }
        self.change(Change::Insert(path.to_string(), info))
    }

    /// Removes the entry of `path` and returns it; durable before this returns.
    pub fn remove(&mut self, path: &str) -> Result<Option<FileInfo>, Error> {
        codec::check_path(path)?;
        let old = self.get(path);
        if old.is_some() {
            self.change(Change::Remove(path.to_string()))?;
        }
        Ok(old)
    }

    /// Gives `to` the entry of `from` (a rename is `link`, the file system's rename, then
    /// `remove(from)`). If `from` has no entry, `to` loses its own: afterwards
    /// `get(to) == get(from)` either way. Durable before this returns.
    pub fn link(&mut self, from: &str, to: &str) -> Result<(), Error> {
        codec::check_path(from)?;
        codec::check_path(to)?;
        let info = self.get(from);
        if self.get(to) == info {
            return Ok(());
        }
        self.change(match info {
            Some(_) => Change::Link {
                from: from.to_string(),
                to: to.to_string(),
            },
            None => Change::Remove(to.to_string()),
        })
    }

    /// Every entry, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FileInfo)> {
        self.entries.iter().map(|(p, i)| (p.as_str(), i))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The dictionary file's size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.len
    }

    /// Rewrites the dictionary as one snapshot under a new dictionary id, sealed with the
    /// active data key, atomically (temporary file, fsync, rename, fsync of the folder).
    pub fn compact(&mut self) -> Result<(), Error> {
        let version = if self.log { WITH_LOG } else { SNAPSHOT_ONLY };
        let written = write_snapshot(&self.path, &self.keyring, version, &self.entries, false)?;
        self.replace_file(written);
        Ok(())
    }

    fn replace_file(&mut self, w: Written) {
        // Dropping the old handle releases the lock on the old (now unlinked) file; the
        // new one was locked before it got its name.
        self.file = w.file;
        self.version = w.version;
        self.id = w.id;
        self.len = w.len;
        self.log_records = 0;
        self.rewrite_needed = false;
    }

    fn log_too_long(&self) -> bool {
        let entries = u64::try_from(self.entries.len()).unwrap_or(u64::MAX);
        self.log_records > self.min_log_records.max(entries.saturating_mul(2))
    }

    /// Makes `change` durable, then applies it in memory.
    fn change(&mut self, change: Change) -> Result<(), Error> {
        if self.version == SNAPSHOT_ONLY || self.rewrite_needed {
            let mut next = self.entries.clone();
            codec::apply(&mut next, change);
            let version = if self.log { WITH_LOG } else { SNAPSHOT_ONLY };
            let written = write_snapshot(&self.path, &self.keyring, version, &next, false)?;
            self.replace_file(written);
            self.entries = next;
            return Ok(());
        }
        let mut body = Zeroizing::new(Vec::new());
        codec::encode_change(&change, &mut body);
        let context = codec::context(self.version, &self.id, self.log_records + 1);
        let record = seal_record(&self.path, &self.keyring, &context, &body)?;
        if let Err(e) = self
            .file
            .write_all_at(&record, self.len)
            .and_then(|()| self.file.sync_data())
        {
            // The record may be partly on disk, or wholly but not durably: cut it off (so
            // the file ends on a record boundary again), and rewrite the whole file at the
            // next change rather than append after bytes whose state is unknown.
            self.rewrite_needed = true;
            let _ = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data());
            return Err(io_at(&self.path)(e));
        }
        self.len += record.len() as u64;
        self.log_records += 1;
        codec::apply(&mut self.entries, change);
        if self.log_too_long() {
            // The change is durable already: a failed compaction must not report it lost.
            if let Err(e) = self.compact() {
                tracing::warn!(
                    dictionary = %self.path.display(),
                    error = %e,
                    "file dictionary: compaction failed; it is retried at the next change"
                );
            }
        }
        Ok(())
    }

    /// Lowers the compaction threshold (tests only).
    #[cfg(test)]
    fn set_min_log_records(&mut self, n: u64) {
        self.min_log_records = n;
    }
}

/// A snapshot just written.
struct Written {
    /// The new file, open and locked.
    file: File,
    version: u8,
    id: [u8; 16],
    len: u64,
}

/// Seals `body` under `context` and frames it.
fn seal_record(
    path: &Path,
    keyring: &Keyring,
    context: &kura_format::EncryptionContext,
    body: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut record = vec![0u8; codec::FRAME_LEN];
    record.reserve(kura_format::envelope::sealed_len(body.len()) + codec::ALIGN);
    keyring.seal(context, body, &mut record)?;
    codec::finish_frame(&mut record).ok_or_else(|| Error::Io {
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::FileTooLarge,
            "a dictionary record would exceed 4 GiB",
        ),
    })?;
    Ok(record)
}

/// Writes a new dictionary file at `path` holding a snapshot of `entries` under a new id,
/// atomically; with `no_clobber`, fails with `AlreadyExists` if there is one.
fn write_snapshot(
    path: &Path,
    keyring: &Keyring,
    version: u8,
    entries: &BTreeMap<String, FileInfo>,
    no_clobber: bool,
) -> Result<Written, Error> {
    let mut id = [0u8; 16];
    kura_crypto::rng::fill(&mut id)?;
    let mut body = Zeroizing::new(Vec::new());
    codec::encode_snapshot(entries, &mut body);
    let mut bytes = codec::header(version, &id).to_vec();
    bytes.extend_from_slice(&seal_record(
        path,
        keyring,
        &codec::context(version, &id, 0),
        &body,
    )?);
    let io = io_at(path);
    let mut out = AtomicFile::create(path, 0o600).map_err(&io)?;
    let file = out.file().map_err(&io)?;
    file.write_all(&bytes).map_err(&io)?;
    // A second handle on the same open file keeps the lock once the atomic file's own
    // handle is closed by the commit, so the file is never unlocked under its name.
    let file = file.try_clone().map_err(&io)?;
    lock(path, &file)?;
    if no_clobber {
        out.commit_no_clobber().map_err(&io)?;
    } else {
        out.commit().map_err(&io)?;
    }
    Ok(Written {
        file,
        version,
        id,
        len: bytes.len() as u64,
    })
}

/// The dictionary file, open and locked, or `None` if there is none.
fn open_locked(path: &Path) -> Result<Option<File>, Error> {
    let io = io_at(path);
    for _ in 0..3 {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        lock(path, &file)?;
        // The holder of the lock may have replaced the file between our open and our lock:
        // then the file we locked is no longer the dictionary.
        let ours = file.metadata().map_err(&io)?;
        match fs::metadata(path) {
            Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => return Ok(Some(file)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    Err(Error::Io {
        path: path.to_path_buf(),
        source: io::Error::other("the file dictionary kept being replaced while opening it"),
    })
}

/// How long an open waits for a lock held elsewhere. A lock is on the open file, and a
/// process forking (any `Command::spawn` in the holder, or in this process) shares it
/// with the child until the child's `exec` closes it: so a lock just released can
/// linger for a moment.
const LOCK_WAIT: Duration = Duration::from_secs(1);

fn lock(path: &Path, file: &File) -> Result<(), Error> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return lock_result(path, other),
        }
    }
}

fn lock_result(path: &Path, r: Result<(), TryLockError>) -> Result<(), Error> {
    match r {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(Error::Io {
            path: path.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::WouldBlock,
                "the file dictionary is in use by another process (or another open in this one)",
            ),
        }),
        Err(TryLockError::Error(e)) => Err(io_at(path)(e)),
    }
}

/// Creates `dir` (mode 0700) if it is missing, durably.
fn ensure_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_at(dir))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_dir(parent).map_err(io_at(parent))
}

/// Removes temporary files a killed compaction left behind (`AtomicFile`'s named ones,
/// `.file.dict.<…>.tmp`; its unnamed ones vanish by themselves). Called with the lock
/// held, so no live compaction is writing one.
fn remove_stray_temps(dir: &Path) -> Result<(), Error> {
    let prefix = format!(".{FILE_NAME}.");
    let mut removed = false;
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            let p = entry.path();
            fs::remove_file(&p).map_err(io_at(&p))?;
            tracing::info!(file = %p.display(), "file dictionary: removed a temporary file left by an interrupted compaction");
            removed = true;
        }
    }
    if removed {
        sync_dir(dir).map_err(io_at(dir))?;
    }
    Ok(())
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
