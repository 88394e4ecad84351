//! Durable file replacement: write a temporary file beside the target, `fsync` it, rename
//! it into place, `fsync` the directory. A crash at any instant leaves either the old file
//! or the new one, never a mix, and an abandoned write leaves nothing behind.

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
    tmp: PathBuf,
    dest: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl AtomicFile {
    /// Starts writing `dest` with permission bits `mode` (applied at creation).
    pub fn create(dest: &Path, mode: u32) -> io::Result<Self> {
        let dir = parent_of(dest);
        let name = dest.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the output path names no file")
        })?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = dir.join(format!(
            ".{}.{}-{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        Ok(Self {
            file: Some(file),
            tmp,
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
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("the atomic file was already committed"))?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        if no_clobber {
            // link(2) fails if the destination exists, so nothing is ever overwritten.
            std::fs::hard_link(&self.tmp, &self.dest)?;
            std::fs::remove_file(&self.tmp)?;
        } else {
            std::fs::rename(&self.tmp, &self.dest)?;
        }
        sync_dir(parent_of(&self.dest))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
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
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn commit_replaces_and_drop_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out");
        std::fs::write(&p, b"old").unwrap();
        let mut f = AtomicFile::create(&p, 0o600).unwrap();
        f.file().unwrap().write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let mut f = AtomicFile::create(&p, 0o600).unwrap();
        f.file().unwrap().write_all(b"abandoned").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn no_clobber_refuses_existing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        std::fs::write(&p, b"keep").unwrap();
        let mut f = AtomicFile::create(&p, 0o400).unwrap();
        f.file().unwrap().write_all(b"x").unwrap();
        let e = f.commit_no_clobber().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"keep");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
