//! Durable file replacement: write a temporary file beside the target, `fsync` it, move it
//! into place, `fsync` the directory. A crash at any instant leaves either the old file or
//! the new one, never a mix, and an abandoned write leaves nothing behind.
//!
//! Where the file system supports it the temporary file has no name at all (`O_TMPFILE`):
//! a process killed while writing leaves no trace, and a no-clobber commit is one
//! `linkat`. Elsewhere it is a hidden `.<name>.<pid>-<n>-<nanos>.tmp` beside the target.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A file being written that appears at its path only on [`AtomicFile::commit`]. Dropped
/// without a commit, it removes its temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    /// The temporary file's name, unless it is anonymous.
    tmp: Option<PathBuf>,
    dest: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl AtomicFile {
    /// Starts writing `dest` with permission bits `mode` (applied at creation).
    pub fn create(dest: &Path, mode: u32) -> io::Result<Self> {
        Self::create_in(dest, mode, true)
    }

    fn create_in(dest: &Path, mode: u32, anonymous: bool) -> io::Result<Self> {
        // Replacing is for regular files: renaming over /dev/null or a FIFO would destroy it.
        if std::fs::metadata(dest).is_ok_and(|m| !m.is_file()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} exists and is not a regular file; it cannot be replaced atomically",
                    dest.display()
                ),
            ));
        }
        let dir = parent_of(dest);
        dest.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the output path names no file")
        })?;
        if let Some(file) = anonymous
            .then(|| kura_sys::open_anonymous(dir, mode).ok())
            .flatten()
        {
            return Ok(Self {
                file: Some(file),
                tmp: None,
                dest: dest.to_path_buf(),
            });
        }
        let tmp = temp_name(dest);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        Ok(Self {
            file: Some(file),
            tmp: Some(tmp),
            dest: dest.to_path_buf(),
        })
    }

    /// The file being written.
    pub fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("the atomic file was already committed"))
    }

    /// Makes the contents durable and moves them to the destination, replacing any file
    /// there.
    pub fn commit(self) -> io::Result<()> {
        self.finish(false)
    }

    /// Like [`AtomicFile::commit`], but fails with `AlreadyExists` instead of replacing an
    /// existing file (the check and the move are one atomic step).
    pub fn commit_no_clobber(self) -> io::Result<()> {
        self.finish(true)
    }

    fn finish(mut self, no_clobber: bool) -> io::Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("the atomic file was already committed"))?;
        (&file).flush()?;
        file.sync_all()?;
        match (&self.tmp, no_clobber) {
            // link(2) fails if the destination exists, so nothing is ever overwritten.
            (None, true) => kura_sys::link_anonymous(&file, &self.dest)?,
            (None, false) => {
                let tmp = temp_name(&self.dest);
                kura_sys::link_anonymous(&file, &tmp)?;
                self.tmp = Some(tmp.clone());
                std::fs::rename(&tmp, &self.dest)?;
                self.tmp = None;
            }
            (Some(tmp), true) => {
                std::fs::hard_link(tmp, &self.dest)?;
                std::fs::remove_file(tmp)?;
                self.tmp = None;
            }
            (Some(tmp), false) => {
                std::fs::rename(tmp, &self.dest)?;
                self.tmp = None;
            }
        }
        drop(file);
        sync_dir(parent_of(&self.dest))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// A hidden name beside `dest` no other writer uses.
fn temp_name(dest: &Path) -> PathBuf {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    parent_of(dest).join(format!(
        ".{name}.{}-{}-{nanos}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    ))
}

fn parent_of(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `fsync` of a directory, so a rename or a new entry in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    #[test]
    fn device_files_are_never_replaced() {
        let e = AtomicFile::create(Path::new("/dev/null"), 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    #[test]
    fn commit_replaces_and_drop_cleans_up() {
        for anonymous in [true, false] {
            replaces_and_cleans_up(anonymous);
        }
    }

    #[test]
    fn no_clobber_refuses_existing() {
        for anonymous in [true, false] {
            refuses_existing(anonymous);
        }
    }

    fn replaces_and_cleans_up(anonymous: bool) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out");
        std::fs::write(&p, b"old").unwrap();
        let mut f = AtomicFile::create_in(&p, 0o600, anonymous).unwrap();
        f.file().unwrap().write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let mut f = AtomicFile::create_in(&p, 0o600, anonymous).unwrap();
        f.file().unwrap().write_all(b"abandoned").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    fn refuses_existing(anonymous: bool) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        std::fs::write(&p, b"keep").unwrap();
        let mut f = AtomicFile::create_in(&p, 0o400, anonymous).unwrap();
        f.file().unwrap().write_all(b"x").unwrap();
        let e = f.commit_no_clobber().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"keep");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
