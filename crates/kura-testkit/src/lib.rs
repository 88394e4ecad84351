//! # kura-testkit (dev-only)
//!
//! Support for kura's tests, chiefly crash tests: "kill -9 a child process at a random
//! instant, then verify what it left behind".
//!
//! - [`Rng`]: a small seeded generator (SplitMix64 to seed, xorshift64* to run). Not for
//!   keys: only for kill delays and test data.
//! - [`CrashHarness`]: takes its seed from `KURA_CRASH_SEED` (or the clock), prints it so
//!   that a failure can be replayed, spawns a command, waits a random delay and sends it
//!   SIGKILL ([`std::process::Child::kill`]); it only ever kills children it spawned, by
//!   their handle.
//! - [`write_master_key`]: a master key file as kura wants it (64 hex digits and a newline,
//!   mode 0400).
//! - [`Kura`]: runs a `kura` binary (path given by the caller, typically
//!   `env!("CARGO_BIN_EXE_kura")`) with every kura environment variable removed.
//! - [`free_port`]: a free TCP port on 127.0.0.1.
//! - [`python`]: the real Python AWS clients (boto3, the AWS CLI v1, moto in server mode,
//!   the AWS Encryption SDK) at pinned versions, in a virtualenv cached in the target
//!   directory ([`python_env`]), and a [`MotoServer`] to compare kura against.
//! - [`postgres`]: a throwaway PostgreSQL 15 server ([`PgServer`]) on 127.0.0.1, stopped
//!   and removed on drop, or by its watchdog if the test process dies; or one server per
//!   test binary with a database per test ([`postgres::shared_database`]).
//! - [`tls`]: a throwaway CA and a server certificate it signed, for TLS tests.
//! - [`softhsm`]: throwaway SoftHSM2 tokens ([`SoftHsm`]) for the PKCS#11 tests, in a
//!   directory of their own with their own `SOFTHSM2_CONF`.
//!
//! Replaying a seed replays the delays and the generated data, not the scheduler: a crash
//! test is a random search, and a seed narrows a failure down rather than reproducing it
//! to the instruction.

#![forbid(unsafe_code)]

pub mod postgres;
pub mod python;
mod report;
pub mod softhsm;
pub mod tls;

pub use postgres::PgServer;
pub use python::{MotoServer, PythonEnv, python_env, with_aws_credentials};
pub use softhsm::SoftHsm;

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The environment variable holding the seed of a crash test (decimal, or hex after `0x`).
pub const SEED_VAR: &str = "KURA_CRASH_SEED";
/// The environment variable overriding the number of trials of a crash test.
pub const TRIALS_VAR: &str = "KURA_CRASH_TRIALS";
/// Every environment variable kura reads; [`Kura`] removes them all from its commands.
pub const KURA_VARS: [&str; 13] = [
    "KURA_MASTER_KEY_FILE",
    "KURA_MASTER_KEY_ENV",
    "KURA_PREVIOUS_MASTER_KEY_FILE",
    "KURA_PREVIOUS_MASTER_KEY_ENV",
    "KURA_DATA_DIR",
    "KURA_CONFIG",
    "KURA_LOG",
    "KURA_REDACT_INFO_LOG",
    "KURA_USE_RECORDED_MASTER_KEY",
    "KURA_DATABASE_URL",
    "KURA_AWS_CMK",
    "KURA_AWS_CMK_EC",
    "KURA_KMS_ENDPOINT",
];
/// SIGKILL's number (9 on every Unix kura runs on).
const SIGKILL: i32 = 9;

/// A seeded pseudo-random generator for tests: SplitMix64 turns the seed into a state,
/// xorshift64* advances it. Deterministic for a given seed; never use it for keys.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        // SplitMix64 of the seed: well mixed, and zero (a fixed point of xorshift) only for
        // one seed, which is mapped to a constant.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self {
            state: if z == 0 { 0x2545_F491_4F6C_DD1D } else { z },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (0 when `n` is 0). The modulo bias is irrelevant for tests.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A duration drawn uniformly from `0..=max`, at microsecond resolution.
    pub fn duration_up_to(&mut self, max: Duration) -> Duration {
        let micros = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(self.below(micros.saturating_add(1)))
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// Parses a seed: decimal, or hexadecimal after `0x`.
pub fn parse_seed(s: &str) -> io::Result<u64> {
    let s = s.trim();
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{SEED_VAR}={s:?} is not a seed (decimal or 0x-hex u64): {e}"),
        )
    })
}

/// The seed in [`SEED_VAR`], or one made from the clock and the process id.
pub fn seed_from_env() -> io::Result<u64> {
    match std::env::var(SEED_VAR) {
        Ok(s) => parse_seed(&s),
        Err(std::env::VarError::NotPresent) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            // Truncating the nanoseconds keeps their fast-moving low bits.
            #[allow(clippy::cast_possible_truncation)]
            let t = nanos as u64;
            Ok(t ^ u64::from(std::process::id()).rotate_left(32))
        }
        Err(e) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{SEED_VAR}: {e}"),
        )),
    }
}

/// The number of trials in [`TRIALS_VAR`], else `default`.
pub fn trials_from_env(default: usize) -> io::Result<usize> {
    match std::env::var(TRIALS_VAR) {
        Ok(s) => s.trim().parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{TRIALS_VAR}={s:?} is not a number of trials: {e}"),
            )
        }),
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{TRIALS_VAR}: {e}"),
        )),
    }
}

/// What happened to a child that [`CrashHarness`] set out to kill.
#[derive(Debug, Clone, Copy)]
pub struct Crash {
    /// The child's process id (the one in its temporary file names).
    pub pid: u32,
    /// How long after the spawn (the `exec` done) the kill was sent.
    pub delay: Duration,
    /// The child had exited by itself: it finished before the kill, or in the instant
    /// between the last check and the kill (which then hit a zombie and did nothing).
    pub exited_before_kill: bool,
    /// The child's final status: a normal exit, or death by SIGKILL.
    pub status: ExitStatus,
}

impl Crash {
    /// Whether SIGKILL ended the child (the opposite of [`Crash::exited_before_kill`]).
    pub fn killed(&self) -> bool {
        !self.exited_before_kill
    }

    /// Whether the child exited by itself with status 0.
    pub fn succeeded(&self) -> bool {
        self.exited_before_kill && self.status.success()
    }
}

/// Spawns `cmd` (stdin, stdout and stderr to `/dev/null`, so that it never blocks on a
/// pipe nobody reads), waits `delay`, and kills it with SIGKILL unless it has exited.
/// Only the child spawned here is ever signalled, through its handle, and it is always
/// reaped before this returns.
pub fn spawn_and_kill_after(cmd: &mut Command, delay: Duration) -> io::Result<Crash> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let start = Instant::now();
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let elapsed = start.elapsed();
    if let Some(status) = child.try_wait()? {
        return Ok(Crash {
            pid,
            delay: elapsed,
            exited_before_kill: true,
            status,
        });
    }
    // The child is ours and not reaped yet, so its pid cannot have been reused: if it
    // exited since `try_wait`, the signal reaches a zombie and changes nothing.
    let killed = child.kill();
    let status = child.wait()?;
    killed?;
    Ok(Crash {
        pid,
        delay: elapsed,
        exited_before_kill: status.signal() != Some(SIGKILL),
        status,
    })
}

/// Crash trials with a seeded random delay before each kill.
#[derive(Debug)]
pub struct CrashHarness {
    seed: u64,
    rng: Rng,
}

impl CrashHarness {
    /// A harness seeded from [`SEED_VAR`] or the clock. Prints the seed to stderr (a test
    /// shows it when it fails) with how to replay it; `label` names the test.
    pub fn from_env(label: &str) -> io::Result<Self> {
        let h = Self::with_seed(seed_from_env()?);
        eprintln!(
            "[{label}] crash seed {seed} (replay with {SEED_VAR}={seed})",
            seed = h.seed
        );
        Ok(h)
    }

    /// A harness with a given seed.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            seed,
            rng: Rng::new(seed),
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The generator, for test data drawn from the same seed.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Spawns `cmd` and kills it after a delay drawn uniformly from `0..=max_delay`.
    pub fn run_and_kill(&mut self, cmd: &mut Command, max_delay: Duration) -> io::Result<Crash> {
        let delay = self.rng.duration_up_to(max_delay);
        spawn_and_kill_after(cmd, delay)
    }
}

/// Runs `cmd` to completion `runs` times (output discarded) and returns the median wall
/// time, failing if any run fails: the span over which to draw kill delays.
pub fn calibrate(mut cmd: impl FnMut() -> Command, runs: usize) -> io::Result<Duration> {
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let out = cmd().stdin(Stdio::null()).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "calibration run failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times.get(times.len() / 2).copied().unwrap_or_default())
}

/// Writes `key` as a master key file `dir/name` (64 lowercase hex digits and a newline,
/// mode 0400, never replacing a file) and returns its path.
pub fn write_master_key(dir: &Path, name: &str, key: &[u8; 32]) -> io::Result<PathBuf> {
    let path = dir.join(name);
    let mut text = String::with_capacity(65);
    for b in key {
        text.push(char::from(HEX[usize::from(b >> 4)]));
        text.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    text.push('\n');
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(&path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    // The umask may have taken bits away; kura wants exactly 0400.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400))?;
    Ok(path)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `content` is a hex master key file as `kura keygen` writes it: 64 lowercase hex
/// digits and a newline, 65 bytes in all.
pub fn is_hex_key_file(content: &[u8]) -> bool {
    content.len() == 65
        && content.last() == Some(&b'\n')
        && content
            .iter()
            .take(64)
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// If `name` is a temporary file of kura's atomic writer for the destination file name
/// `dest` (`.<dest>.<pid>-<n>-<nanos>.tmp`), the pid of the process that made it.
pub fn atomic_tmp_pid(name: &str, dest: &str) -> Option<u32> {
    let rest = name
        .strip_prefix('.')?
        .strip_prefix(dest)?
        .strip_prefix('.')?;
    let rest = rest.strip_suffix(".tmp")?;
    let mut parts = rest.split('-');
    let pid = parts.next()?.parse().ok()?;
    let counter_ok = parts.next()?.parse::<u64>().is_ok();
    let nanos_ok = parts.next()?.parse::<u64>().is_ok();
    (counter_ok && nanos_ok && parts.next().is_none()).then_some(pid)
}

/// The names in `dir`, sorted.
pub fn dir_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir)? {
        names.push(e?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// `GET path` on 127.0.0.1:`port` over plain HTTP/1.0: the status code and the body.
/// Connecting and each read or write time out after a few seconds.
pub fn http_get(port: u16, path: &str) -> io::Result<(u16, String)> {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpStream};
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut words = head.split_whitespace();
    let status = match (words.next(), words.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code.parse().ok(),
        _ => None,
    };
    let status = status.ok_or_else(|| io::Error::other("the answer is not an HTTP response"))?;
    Ok((status, body.to_string()))
}

/// A TCP port that was free on 127.0.0.1 a moment ago (bound to port 0, then released).
/// Another process may take it before the caller binds it: servers started on it should be
/// retried on a new port if they fail to bind.
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// A `kura` binary and the global options every run gets (say `--data-dir`), run with a
/// clean environment: every variable in [`KURA_VARS`] removed.
#[derive(Debug, Clone)]
pub struct Kura {
    bin: PathBuf,
    global: Vec<std::ffi::OsString>,
    cwd: Option<PathBuf>,
}

impl Kura {
    /// The binary at `bin`, with no global options.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            global: Vec::new(),
            cwd: None,
        }
    }

    /// Adds a global option (or its value) given before every command's own arguments.
    #[must_use]
    pub fn global_arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.global.push(arg.as_ref().to_owned());
        self
    }

    /// Runs every command in `dir`.
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// A command for `kura <global options> <args>` with the kura variables removed.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(&self.bin);
        for v in KURA_VARS {
            c.env_remove(v);
        }
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        c.args(&self.global).args(args);
        c
    }

    /// Runs `kura <global options> <args>` to completion (stdin from `/dev/null`).
    pub fn output<I, S>(&self, args: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(args).stdin(Stdio::null()).output()
    }

    /// Runs `kura <global options> <args>` like [`Kura::output`], which must succeed: a
    /// failure is an error with the exit status and the end of what kura said.
    pub fn success<I, S>(&self, args: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.output(args)?;
        if out.status.success() {
            return Ok(out);
        }
        Err(io::Error::other(format!(
            "kura failed ({}): {}",
            out.status,
            report::tail(&out.stderr)
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn rng_is_deterministic_and_spreads() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(Rng::new(0).next_u64(), Rng::new(1).next_u64());
        let mut r = Rng::new(0);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[usize::try_from(r.below(10)).unwrap()] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(r.below(0), 0);
        let max = Duration::from_millis(3);
        assert!((0..1000).all(|_| r.duration_up_to(max) <= max));
        assert_eq!(r.duration_up_to(Duration::ZERO), Duration::ZERO);
        for n in 0..20 {
            assert_eq!(r.bytes(n).len(), n);
        }
    }

    #[test]
    fn seeds_parse() {
        assert_eq!(parse_seed("12345").unwrap(), 12345);
        assert_eq!(parse_seed(" 0xff\n").unwrap(), 255);
        assert!(parse_seed("nope").is_err());
    }

    #[test]
    fn kills_a_running_child_and_reports_an_exited_one() {
        let c = spawn_and_kill_after(Command::new("sleep").arg("30"), Duration::from_millis(10))
            .unwrap();
        assert!(c.killed());
        assert_eq!(c.status.signal(), Some(SIGKILL));

        let c =
            spawn_and_kill_after(&mut Command::new("true"), Duration::from_millis(300)).unwrap();
        assert!(c.exited_before_kill);
        assert!(c.succeeded());
    }

    #[test]
    fn master_key_file_is_0400_hex() {
        let d = tempfile::tempdir().unwrap();
        let p = write_master_key(d.path(), "mk", &[0xab; 32]).unwrap();
        let content = fs::read(&p).unwrap();
        assert!(is_hex_key_file(&content));
        assert_eq!(&content[..4], b"abab");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o400);
        assert!(write_master_key(d.path(), "mk", &[0; 32]).is_err());
        assert!(!is_hex_key_file(b"ABAB\n"));
    }

    #[test]
    fn tmp_names() {
        assert_eq!(atomic_tmp_pid(".out.123-0-456.tmp", "out"), Some(123));
        assert_eq!(atomic_tmp_pid(".out.123-0-456.tmp", "k"), None);
        assert_eq!(atomic_tmp_pid(".out.x-0-456.tmp", "out"), None);
        assert_eq!(atomic_tmp_pid("out.123-0-456.tmp", "out"), None);
        assert_eq!(atomic_tmp_pid(".out.123-0-456-7.tmp", "out"), None);
    }

    #[test]
    fn free_ports_are_loopback_ports_that_can_be_bound() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[test]
    fn kura_commands_have_a_clean_environment() {
        let k = Kura::new("/bin/kura")
            .global_arg("--data-dir")
            .global_arg("d");
        let c = k.command(["status"]);
        let args: Vec<_> = c.get_args().collect();
        assert_eq!(args, ["--data-dir", "d", "status"]);
        let removed: Vec<_> = c
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        for v in KURA_VARS {
            assert!(removed.iter().any(|r| r == v), "{v} not removed");
        }
    }
}
