//! The build lock of the shared environment, and small helpers (hashes, times, the ends of
//! outputs, error context).

#[allow(clippy::wildcard_imports)]
use super::*;

/// The lock that keeps concurrent test processes from building the same environment.
#[derive(Debug)]
pub(super) struct BuildLock {
    path: PathBuf,
}

pub(super) enum TryLock {
    Acquired(BuildLock),
    /// Held by a live process (its pid, or 0 while its file is being written).
    Held(u32),
    /// Was held by a dead process, and has been removed: try again.
    Stale,
}

impl BuildLock {
    pub(super) fn try_acquire(path: &Path) -> io::Result<TryLock> {
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut f) => {
                f.write_all(format!("{}\n", std::process::id()).as_bytes())
                    .map_err(|e| context(e, "writing", path))?;
                Ok(TryLock::Acquired(Self {
                    path: path.to_path_buf(),
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok());
                let age = fs::metadata(path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .unwrap_or_default();
                let alive = match owner {
                    // Only this thread builds in this process: our own pid is a leftover.
                    Some(pid) if pid == std::process::id() => false,
                    Some(pid) if Path::new("/proc/self").exists() => pid_alive(pid),
                    Some(_) => age < LOCK_WAIT,
                    // Created but not yet written, unless that was long ago.
                    None => age < Duration::from_secs(10),
                };
                if alive {
                    return Ok(TryLock::Held(owner.unwrap_or(0)));
                }
                match fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        Err(context(e, "removing the stale lock", path))
                    }
                    _ => Ok(TryLock::Stale),
                }
            }
            Err(e) => Err(context(e, "creating", path)),
        }
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        let ours = fs::read_to_string(&self.path)
            .is_ok_and(|s| s.trim().parse::<u32>().ok() == Some(std::process::id()));
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether a process `pid` exists (Linux: `/proc/<pid>`).
pub(super) fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// FNV-1a (64 bits) of `parts`, each followed by a 0xff byte (never in UTF-8) so that the
/// boundaries count. A cache key, not a security measure.
pub(super) fn fnv1a64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

pub(super) fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
