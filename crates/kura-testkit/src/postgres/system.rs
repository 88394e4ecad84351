//! The machine side of the throwaway server: finding or installing PostgreSQL 15, running
//! commands as the `postgres` user, and reading the ends of logs and outputs.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The directory of the PostgreSQL 15 programs, [`PG_BIN_DIR`], after installing
/// [`PG_PACKAGE`] with `apt-get` if they are missing (once per process).
pub fn pg_bin_dir() -> io::Result<PathBuf> {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let bin = PathBuf::from(PG_BIN_DIR);
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if *installed || missing_programs(&bin).is_empty() {
        *installed = true;
        return Ok(bin);
    }
    eprintln!(
        "kura-testkit: PostgreSQL 15 is not in {PG_BIN_DIR} (missing: {}); installing the \
         Debian package {PG_PACKAGE}",
        missing_programs(&bin).join(", ")
    );
    let (out, log) = crate::report::apt_install(PG_PACKAGE)?;
    let missing = missing_programs(&bin);
    if !out.status.success() || !missing.is_empty() {
        return Err(io::Error::other(format!(
            "kura-testkit: PostgreSQL 15 is needed in {PG_BIN_DIR} for the PostgreSQL tests, \
             and installing it failed (`apt-get install -y {PG_PACKAGE}`: {}; still missing: \
             {}):\n{log}\nFix: install it yourself (as root: DEBIAN_FRONTEND=noninteractive \
             apt-get install -y {PG_PACKAGE}), with network access to the Debian mirrors.",
            out.status,
            missing.join(", ")
        )));
    }
    *installed = true;
    Ok(bin)
}

/// The programs of [`PROGRAMS`] missing from `bin`.
fn missing_programs(bin: &Path) -> Vec<&'static str> {
    PROGRAMS
        .into_iter()
        .filter(|p| !bin.join(p).is_file())
        .collect()
}

/// This process's effective uid (from `/proc/self/status`, else `id -u`).
pub(super) fn effective_uid() -> io::Result<u32> {
    if let Ok(status) = fs::read_to_string("/proc/self/status")
        && let Some(uid) = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .and_then(|e| e.parse().ok())
    {
        return Ok(uid);
    }
    let out = run(Command::new("id").arg("-u"), "id -u")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| io::Error::other(format!("kura-testkit: `id -u` gave no uid: {e}")))
}

/// A new directory `kura-pg-<pid>-<n>` in `parent`.
pub(super) fn make_dir(parent: &Path) -> io::Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("kura-pg-{}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            // A leftover of a dead process that had this pid: take the next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100_000 => {}
            Err(e) => return Err(context(e, "creating", &dir)),
        }
    }
}

/// `runuser`, by its full path when it is in a usual place (not every `PATH` has `sbin`).
pub(super) fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}

/// A command for `program` with every `PG*` variable removed (so that nothing from the
/// caller's PostgreSQL setup applies), `LC_ALL=C` (English messages) and stdin from
/// `/dev/null`.
pub(super) fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.as_encoded_bytes().starts_with(b"PG") {
            c.env_remove(&k);
        }
    }
    c.env("LC_ALL", "C").stdin(Stdio::null());
    c
}

/// The postmaster's pid, from the first line of `data/postmaster.pid`.
pub(super) fn postmaster_pid(data: &Path) -> Option<u32> {
    fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` is a live (not zombie) process running the `postgres` binary of `bin`.
pub(super) fn is_our_postmaster(pid: u32, bin: &Path) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    let Ok(stat) = fs::read_to_string(proc.join("stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X") | None) {
        return false;
    }
    let postgres = bin.join("postgres");
    fs::read(proc.join("cmdline")).is_ok_and(|c| {
        c.split(|b| *b == 0)
            .next()
            .is_some_and(|argv0| argv0 == postgres.as_os_str().as_encoded_bytes())
    })
}

/// `path` quoted for a POSIX shell (pg_ctl passes `-o` through one).
pub(super) fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

/// Runs `cmd` to completion and collects its output.
pub(super) fn run(cmd: &mut Command, shown: &str) -> io::Result<Output> {
    cmd.stdin(Stdio::null()).output().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("kura-testkit: could not run `{shown}`: {e}"),
        )
    })
}

/// `Ok` if `out` is a success, else an error with its output (and `extra`).
pub(super) fn check(shown: &str, out: Output, extra: &str) -> io::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "kura-testkit: `{shown}` failed ({}): {}{extra}",
        out.status,
        output_tail(&out)
    )))
}

/// The last 4000 bytes of the file at `path`, as text.
pub(super) fn file_tail(path: &Path) -> String {
    let read = || -> io::Result<Vec<u8>> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(4000)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(buf)
    };
    read().map_or_else(|e| format!("({e})"), |b| crate::report::tail(&b))
}
