//! [`EncryptedFs`]: the files under a data root, encrypted as configured.
//!
//! Paths are relative to the root (the dictionary never holds an absolute path, so the
//! root can move). The order of every operation makes a crash at any instant harmless:
//!
//! - create: the file is truncated (unlinked first if it has other hard links, which keep
//!   the old file) and its header written and synced, then the dictionary entry is
//!   recorded (a file's header, not the dictionary, says how it is encrypted, so a missing
//!   entry loses nothing); a new plaintext file's path loses its entry before the
//!   truncation, and a file found empty without a header gets a new salt, never its old one;
//! - hard link: the link, then the entry;
//! - rename: the file is renamed, then the entry linked to the new path and the old one
//!   removed (not TiKV's link-rename-delete: a header overrules a stale entry, while an
//!   entry linked onto a plaintext file not yet replaced would make it unreadable);
//! - delete: the file first, then its entry.
//!
//! At open, entries are reconciled with the files: entries of files that no longer exist
//! are dropped, and an entry that disagrees with its file's header takes the header's.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use kura_keys::Keyring;

use crate::dict::{Dictionary, FileInfo};
use crate::file::{File, HEADER, header, parse_header};
use crate::{Error, Method};

/// The folder under the root that holds kura-fs's own files.
pub const META_DIR: &str = ".kura-fs";

/// How an [`EncryptedFs`] is set up.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `data-encryption-method` of new files.
    pub method: Method,
    /// `enable-file-dictionary-log`.
    pub file_dictionary_log: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            method: Method::Plaintext,
            file_dictionary_log: true,
        }
    }
}

/// The encrypted files under one data root.
pub struct EncryptedFs {
    root: PathBuf,
    keyring: Arc<Keyring>,
    dict: Mutex<Dictionary>,
    method: RwLock<Method>,
    timings: crate::metrics::DictTimings,
}

impl std::fmt::Debug for EncryptedFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedFs")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `path` as the dictionary names it: relative, `/`-separated, no `.`/`..`, not under
/// [`META_DIR`].
pub fn normalize(path: &str) -> Result<String, Error> {
    let bad = || Error::BadPath(path.to_string());
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(bad)?),
            Component::CurDir => {}
            _ => return Err(bad()),
        }
    }
    if parts.is_empty() || parts.first() == Some(&META_DIR) {
        return Err(bad());
    }
    Ok(parts.join("/"))
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    kura_store::atomic::sync_dir(dir).map_err(io(dir))
}

impl EncryptedFs {
    /// Opens the data root `root` (created if missing) with keys from `keyring`.
    pub fn open(root: &Path, keyring: Arc<Keyring>, opts: Options) -> Result<Self, Error> {
        fs::create_dir_all(root).map_err(io(root))?;
        let dict = Dictionary::open(
            &root.join(META_DIR),
            keyring.clone(),
            opts.file_dictionary_log,
        )?;
        let fs = Self {
            root: root.to_path_buf(),
            keyring,
            dict: Mutex::new(dict),
            method: RwLock::new(opts.method),
            timings: crate::metrics::DictTimings::default(),
        };
        fs.reconcile()?;
        // Recorded in the keystore, so that a data key its files use is not destroyed.
        if let Some(objects) = fs.keyring.objects() {
            let absolute = fs::canonicalize(root).map_err(io(root))?;
            crate::registry::register(objects, &absolute)?;
        }
        Ok(fs)
    }

    /// A data root `dir/root` writing new files with `method`, its keys from a new keystore
    /// `dir/keystore.db` under a master key that lives only in this process
    /// ([`Keyring::ephemeral`]): for benchmarks, examples and tests, never for data to keep.
    pub fn ephemeral(dir: &Path, method: Method) -> Result<Self, Error> {
        let keyring = Keyring::ephemeral(&dir.join("keystore.db"))?;
        Self::open(
            &dir.join("root"),
            Arc::new(keyring),
            Options {
                method,
                file_dictionary_log: true,
            },
        )
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The keyring the files' keys come from.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The method of new files.
    pub fn method(&self) -> Method {
        *self.method.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the method of new files; existing files keep theirs.
    pub fn set_method(&self, method: Method) {
        *self.method.write().unwrap_or_else(PoisonError::into_inner) = method;
    }

    pub(crate) fn timings(&self) -> &crate::metrics::DictTimings {
        &self.timings
    }

    /// Runs one dictionary change, timing it for the metrics.
    fn timed<T>(&self, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        let started = std::time::Instant::now();
        let r = f();
        self.timings.record(started.elapsed());
        r
    }

    fn dict(&self) -> MutexGuard<'_, Dictionary> {
        self.dict.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn abs(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The dictionary entry of `path` (`None`: a plaintext or unknown file).
    pub fn info(&self, path: &str) -> Result<Option<FileInfo>, Error> {
        Ok(self.dict().get(&normalize(path)?))
    }

    /// Every dictionary entry, by path.
    pub fn entries(&self) -> Vec<(String, FileInfo)> {
        self.dict()
            .iter()
            .map(|(p, i)| (p.to_string(), *i))
            .collect()
    }

    /// The dictionary's size on disk in bytes.
    pub fn dictionary_size(&self) -> u64 {
        self.dict().size_bytes()
    }

    /// Creates `path` (or empties it; a file with other hard links is replaced, and they
    /// keep it), encrypted with the current method under a new per-file key, and opens it
    /// for reading and writing.
    pub fn create(&self, path: &str) -> Result<File, Error> {
        self.create_with(path, self.method())
    }

    /// [`EncryptedFs::create`] with `method` instead of the configured one.
    pub fn create_with(&self, path: &str, method: Method) -> Result<File, Error> {
        let rel = normalize(path)?;
        let abs = self.abs(&rel);
        let parent = abs.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&parent).map_err(io(&parent))?;
        let info = if method == Method::Plaintext {
            None
        } else {
            let mut salt = [0u8; 16];
            kura_crypto::rng::fill(&mut salt)?;
            let (key_id, _) =
                self.keyring
                    .derive_active(&salt, method.as_str().as_bytes(), method.key_len())?;
            Some(FileInfo {
                method,
                key_id,
                salt,
            })
        };
        let mut d = self.dict();
        if info.is_none() {
            // A plaintext file has no header to overrule its path's entry: the entry goes
            // first (a crash then leaves the old file, which its header still describes).
            self.timed(|| d.remove(&rel))?;
        }
        // Other hard links of an existing file keep it, and their entries keep describing
        // it: truncated under them, it would be read with the old file's entry (a new
        // plaintext file as `Decrypt`).
        if fs::symlink_metadata(&abs).is_ok_and(|m| m.nlink() > 1) {
            fs::remove_file(&abs).map_err(io(&abs))?;
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&abs)
            .map_err(io(&abs))?;
        if let Some(i) = &info {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&header(i), 0).map_err(io(&abs))?;
        }
        file.sync_all().map_err(io(&abs))?;
        sync_dir(&parent)?;
        if let Some(i) = &info {
            self.timed(|| d.insert(&rel, *i))?;
        }
        drop(d);
        File::open(abs, file, &self.keyring, info)
    }

    /// Opens the existing file `path` for reading and writing.
    pub fn open_file(&self, path: &str) -> Result<File, Error> {
        let rel = normalize(path)?;
        let abs = self.abs(&rel);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&abs)
            .map_err(io(&abs))?;
        let expect = self.dict().get(&rel);
        let f = File::open(abs, file, &self.keyring, expect)?;
        if let Some(i) = f.info()
            && Some(i) != expect
        {
            // The header overrules the entry, or an emptied file got a new salt.
            let mut d = self.dict();
            self.timed(|| d.insert(&rel, i))?;
        }
        Ok(f)
    }

    /// The whole plaintext of `path`.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, Error> {
        let f = self.open_file(path)?;
        let mut buf = vec![0u8; usize::try_from(f.len()).map_err(|_| Error::TooLarge)?];
        f.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    /// Creates `path` holding `data`, durably.
    pub fn write(&self, path: &str, data: &[u8]) -> Result<(), Error> {
        let f = self.create(path)?;
        f.write_at(data, 0)?;
        f.sync_data()
    }

    /// Renames `from` to `to` (replacing it); the file keeps its key.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        let (from, to) = (normalize(from)?, normalize(to)?);
        let (a, b) = (self.abs(&from), self.abs(&to));
        let parent = b.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&parent).map_err(io(&parent))?;
        let mut d = self.dict();
        let had = d.get(&from);
        if had.is_none() && d.get(&to).is_some() {
            self.timed(|| d.remove(&to))?;
        }
        // The file first: `to` keeps its own entry until the file it names is `from`'s,
        // whose header overrules that entry if a crash comes before the link (linked
        // first, a plaintext `to` not yet replaced would read as `Decrypt`).
        fs::rename(&a, &b).map_err(io(&a))?;
        sync_dir(&parent)?;
        if let Some(p) = a.parent() {
            sync_dir(p)?;
        }
        if had.is_some() {
            self.timed(|| d.link(&from, &to))?;
            self.timed(|| d.remove(&from))?;
        }
        Ok(())
    }

    /// Makes `to` a hard link of `from`; both keep the file's key.
    pub fn hard_link(&self, from: &str, to: &str) -> Result<(), Error> {
        let (from, to) = (normalize(from)?, normalize(to)?);
        let (a, b) = (self.abs(&from), self.abs(&to));
        let parent = b.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&parent).map_err(io(&parent))?;
        let mut d = self.dict();
        // The link first: it fails if `to` exists, and `to` keeps its entry. A crash
        // before the entry leaves `to` without one, which its header makes up for.
        fs::hard_link(&a, &b).map_err(io(&a))?;
        sync_dir(&parent)?;
        if d.get(&from).is_some() {
            self.timed(|| d.link(&from, &to))?;
        }
        Ok(())
    }

    /// Deletes `path` and its entry.
    pub fn remove(&self, path: &str) -> Result<(), Error> {
        let rel = normalize(path)?;
        let abs = self.abs(&rel);
        let mut d = self.dict();
        fs::remove_file(&abs).map_err(io(&abs))?;
        sync_dir(abs.parent().unwrap_or(&self.root))?;
        self.timed(|| d.remove(&rel))?;
        Ok(())
    }

    /// Every file under the root (relative paths, sorted), kura-fs's own excepted.
    pub fn list(&self) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            for e in fs::read_dir(&dir).map_err(io(&dir))? {
                let e = e.map_err(io(&dir))?;
                let path = e.path();
                let ty = e.file_type().map_err(io(&path))?;
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let Some(rel) = rel.to_str() else { continue };
                if rel == META_DIR {
                    continue;
                }
                if ty.is_dir() {
                    dirs.push(path);
                } else if ty.is_file() {
                    out.push(rel.replace(std::path::MAIN_SEPARATOR, "/"));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Makes the dictionary agree with the files after a crash: drops entries of missing
    /// files and takes each file's header over a disagreeing entry.
    fn reconcile(&self) -> Result<(), Error> {
        let mut d = self.dict();
        let entries: Vec<(String, FileInfo)> = d.iter().map(|(p, i)| (p.to_string(), *i)).collect();
        for (rel, info) in entries {
            let abs = self.abs(&rel);
            let mut head = [0u8; HEADER];
            match fs::File::open(&abs) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.timed(|| d.remove(&rel))?;
                }
                Err(e) => return Err(io(&abs)(e)),
                Ok(f) => {
                    use std::os::unix::fs::FileExt;
                    if f.read_exact_at(&mut head, 0).is_ok()
                        && let Some((h, _)) = parse_header(&head)
                        && h != info
                    {
                        self.timed(|| d.insert(&rel, h))?;
                    }
                }
            }
        }
        Ok(())
    }
}
