//! The operating-system calls kura needs, and the only crate with `unsafe`.
//!
//! - [`disable_core_dumps`]: `prctl(PR_SET_DUMPABLE, 0)` and `RLIMIT_CORE = 0`, so a crash
//!   of a process that holds keys never writes them to a core file.
//! - [`lock_memory`]: best-effort `mlock` of the pages that hold long-lived keys, so they
//!   are never written to swap. A refusal is reported once and is not an error.
//! - [`open_anonymous`] and [`link_anonymous`]: a file with no name (`O_TMPFILE`) that
//!   gets one only when complete, so a process killed while writing leaves nothing behind.
//! - [`fork_epoch`]: a counter bumped in every child after `fork`, so that buffered
//!   randomness is thrown away instead of being shared by parent and child.
//!
//! Every `unsafe` block carries a `SAFETY:` comment. Nothing here panics.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What [`disable_core_dumps`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpState {
    /// The process is no longer dumpable (`PR_GET_DUMPABLE` answers 0).
    pub not_dumpable: bool,
    /// The core file size limit is 0.
    pub core_limit_zero: bool,
}

/// Turns off core dumps of this process: `prctl(PR_SET_DUMPABLE, 0)` and a soft and hard
/// `RLIMIT_CORE` of 0. Returns the first OS error; both calls are always attempted.
pub fn disable_core_dumps() -> io::Result<DumpState> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory of ours.
    let r1 = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    let e1 = (r1 != 0).then(io::Error::last_os_error);
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `zero` is a valid, initialised rlimit that outlives the call.
    let r2 = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
    let e2 = (r2 != 0).then(io::Error::last_os_error);
    if let Some(e) = e1.or(e2) {
        return Err(e);
    }
    dump_state()
}

/// Reads back whether the process is dumpable and its core size limit.
pub fn dump_state() -> io::Result<DumpState> {
    // SAFETY: PR_GET_DUMPABLE takes no pointer arguments.
    let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    if dumpable < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut lim = libc::rlimit {
        rlim_cur: 1,
        rlim_max: 1,
    };
    // SAFETY: `lim` is a valid, writable rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(DumpState {
        not_dumpable: dumpable == 0,
        core_limit_zero: lim.rlim_cur == 0 && lim.rlim_max == 0,
    })
}

static MLOCK_REFUSED: AtomicBool = AtomicBool::new(false);
static MLOCK_REPORTED: AtomicBool = AtomicBool::new(false);

/// Tries to `mlock` the pages spanning `bytes`. Best effort: if the OS refuses (for
/// example `RLIMIT_MEMLOCK`), returns `false`; the first refusal is reported once through
/// [`take_mlock_refusal`]. Pages are never unlocked, since another key may share them.
pub fn lock_memory(bytes: &[u8]) -> bool {
    if bytes.is_empty() || MLOCK_REFUSED.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: the range is the memory of a live slice we borrow for the duration of the
    // call; mlock only changes paging attributes and never reads or writes it.
    let r = unsafe { libc::mlock(bytes.as_ptr().cast(), bytes.len()) };
    if r != 0 {
        MLOCK_REFUSED.store(true, Ordering::Relaxed);
        return false;
    }
    true
}

/// `Some(message)` the first time it is called after `mlock` was refused, so the caller can
/// log it once; `None` otherwise.
pub fn take_mlock_refusal() -> Option<&'static str> {
    if MLOCK_REFUSED.load(Ordering::Relaxed) && !MLOCK_REPORTED.swap(true, Ordering::Relaxed) {
        Some(
            "mlock of key memory was refused (RLIMIT_MEMLOCK); keys may reach swap: raise the \
             memlock limit or disable swap",
        )
    } else {
        None
    }
}

/// Opens an unnamed regular file in directory `dir` (`O_TMPFILE`), readable and writable,
/// with permission bits `mode`. Fails on file systems without `O_TMPFILE` support; callers
/// fall back to a named temporary file.
pub fn open_anonymous(dir: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .mode(mode)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
}

/// Gives the file made by [`open_anonymous`] the name `dest` (`linkat` through
/// `/proc/self/fd`). Fails with `AlreadyExists` if `dest` exists: nothing is replaced.
pub fn link_anonymous(file: &File, dest: &Path) -> io::Result<()> {
    let src = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let dst = CString::new(dest.as_os_str().as_bytes())?;
    // SAFETY: `src` and `dst` are NUL-terminated strings that outlive the call; linkat only
    // reads them, and the descriptor named in `src` stays open (borrowed `file`).
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            src.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();

extern "C" fn bump_fork_epoch() {
    FORK_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// A number that changes in a child process after every `fork`. Buffers of randomness
/// remember the epoch they were filled in and are discarded when it changes.
pub fn fork_epoch() -> u64 {
    ATFORK.call_once(|| {
        // SAFETY: registers a child handler that only does an atomic add, which is
        // async-signal-safe; the function pointer has 'static lifetime.
        unsafe {
            libc::pthread_atfork(None, None, Some(bump_fork_epoch));
        }
    });
    FORK_EPOCH.load(Ordering::Relaxed)
}

/// The wall clock in whole seconds since the Unix epoch, read from
/// `CLOCK_REALTIME_COARSE` (a few nanoseconds through the vDSO, millisecond resolution):
/// cheap enough to check key rotation on every use. Falls back to 0 if the call fails.
pub fn realtime_coarse_secs() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if r == 0 { ts.tv_sec } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_dumps_can_be_disabled() {
        let st = disable_core_dumps().unwrap();
        assert!(st.not_dumpable);
        assert!(st.core_limit_zero);
        assert_eq!(dump_state().unwrap(), st);
    }

    #[test]
    fn lock_memory_is_best_effort() {
        let v = vec![7u8; 64];
        let _ = lock_memory(&v);
        assert!(!lock_memory(&[]));
    }

    #[test]
    fn coarse_clock_is_close_to_the_system_clock() {
        let sys = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((realtime_coarse_secs() - sys).abs() <= 1);
    }

    #[test]
    fn anonymous_files_get_a_name_only_when_linked() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("kura-sys-anon-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut f = open_anonymous(&dir, 0o600).unwrap();
        f.write_all(b"done").unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let dest = dir.join("out");
        link_anonymous(&f, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"done");
        let again = link_anonymous(&f, &dest).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fork_epoch_is_stable_without_fork() {
        assert_eq!(fork_epoch(), fork_epoch());
    }
}
