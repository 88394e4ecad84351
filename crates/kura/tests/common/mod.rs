//! Helpers shared by the CLI tests: a sandbox (a fresh temporary directory used as the
//! working directory and the data directory), running the debug `kura` binary with every
//! inherited kura variable cleared, and a check, after every run, that no master key ever
//! appears on stdout or stderr in any encoding.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use kura_testkit::KURA_VARS;
use kura_testkit::postgres::shared_database;
use serde_json::Value;
use tempfile::TempDir;

/// The master key of TiKV's encryption-at-rest documentation, as its key file holds it.
pub(crate) const TIKV_KEY_FILE: &str =
    "3b5896b5be691006e0f71c3040a29495ddcad20b14aff61806940ebd780d3c62\n";

/// Header of the stream format, and one full 64 KiB chunk with its tag.
pub(crate) const HEADER_LEN: usize = 80;
pub(crate) const FULL_SLOT: usize = 65536 + 16;

/// The outcome of one run of kura (already checked for leaked key material).
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

impl Run {
    /// Exit status 0, and nothing on stderr but warnings (an environment may refuse
    /// `mlock`, which kura reports as a warning).
    #[track_caller]
    pub(crate) fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "kura failed: {}", self.stderr);
        for line in self.stderr.lines() {
            assert!(line.contains("WARN"), "unexpected stderr: {}", self.stderr);
        }
        self
    }

    /// Exit status 0 with logging on: stderr holds log lines, but no error.
    #[track_caller]
    pub(crate) fn ok_logged(self) -> Self {
        assert_eq!(self.code, Some(0), "kura failed: {}", self.stderr);
        assert!(!self.stderr.contains("error"), "{}", self.stderr);
        self
    }

    /// Exit status 1 (an error the user can fix), nothing on stdout, and one
    /// `kura: error:` message on stderr containing every one of `needles`.
    #[track_caller]
    pub(crate) fn fails_with(self, needles: &[&str]) -> Self {
        assert_eq!(
            self.code,
            Some(1),
            "expected exit status 1: stdout {:?} stderr {:?}",
            self.stdout_str(),
            self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "stdout on failure: {:?}",
            self.stdout_str()
        );
        assert!(
            self.stderr.contains("kura: error: "),
            "stderr: {}",
            self.stderr
        );
        self.stderr_has(needles)
    }

    /// A usage error reported by the argument parser (exit status 2).
    #[track_caller]
    pub(crate) fn usage_error(self, needles: &[&str]) -> Self {
        assert_eq!(self.code, Some(2), "stderr: {}", self.stderr);
        assert!(self.stdout.is_empty());
        self.stderr_has(needles)
    }

    #[track_caller]
    pub(crate) fn stderr_has(self, needles: &[&str]) -> Self {
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr lacks {n:?}: {}",
                self.stderr
            );
        }
        self
    }

    pub(crate) fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout_str()))
    }
}

/// The text spellings of a key a careless message could contain.
fn spellings(key: &[u8]) -> Vec<String> {
    vec![
        hex::encode(key),
        hex::encode_upper(key),
        STANDARD.encode(key),
        STANDARD_NO_PAD.encode(key),
        URL_SAFE.encode(key),
        URL_SAFE_NO_PAD.encode(key),
    ]
}

/// Whether `needle` occurs in `hay`: a plain loop, fast enough unoptimised on the
/// megabytes of a large stream.
fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if hay[i] == first && &hay[i..i + needle.len()] == needle {
            return true;
        }
        i += 1;
    }
    false
}

/// Asserts that none of `keys` appears in `bytes` (`what` names it in the message), raw or
/// as hex or base64.
#[track_caller]
pub(crate) fn assert_no_key_material(keys: &[Vec<u8>], what: &str, bytes: &[u8]) {
    // ASCII survives a lossy conversion unchanged, and std's (optimised) substring search
    // then does the work.
    let text = String::from_utf8_lossy(bytes);
    for k in keys {
        let leaked = contains_bytes(bytes, k) || spellings(k).iter().any(|s| text.contains(s));
        assert!(
            !leaked,
            "{what} contains master key material: {}",
            text.chars().take(4000).collect::<String>()
        );
    }
}

/// The keystore the sandboxes of a test use: SQLite in `data/`, or a database of its own
/// on the test binary's throwaway PostgreSQL server (`KURA_DATABASE_URL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    static BACKEND: Cell<Backend> = const { Cell::new(Backend::Sqlite) };
}

/// Runs `test` with every sandbox it makes on `backend` (each test has a thread of its own).
pub(crate) fn on_backend(backend: Backend, test: fn()) {
    BACKEND.with(|b| b.set(backend));
    test();
}

/// Runs each named test function (no `#[test]` of its own) on both keystores, as
/// `sqlite::NAME` and `postgres::NAME`.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                crate::common::on_backend(crate::common::Backend::Sqlite, super::$name);
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                crate::common::on_backend(crate::common::Backend::Postgres, super::$name);
            })*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_backends;

/// A new database on the test binary's one PostgreSQL server; a test that cannot have one
/// fails.
fn new_database() -> String {
    shared_database("kura_cli")
        .map(|(_, url)| url)
        .unwrap_or_else(|e| panic!("the PostgreSQL variant of this test needs PostgreSQL: {e}"))
}

/// A fresh temporary directory: the working directory of every run, with the keystore in
/// `data/` under it (or, on [`Backend::Postgres`], in a database of its own).
pub(crate) struct Sandbox {
    dir: TempDir,
    secrets: RefCell<Vec<Vec<u8>>>,
    database: Option<String>,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = match BACKEND.with(Cell::get) {
            Backend::Sqlite => None,
            Backend::Postgres => {
                // The data directory exists on both backends, so listings compare alike.
                fs::create_dir(dir.path().join("data")).unwrap();
                Some(new_database())
            }
        };
        Self {
            dir,
            secrets: RefCell::new(Vec::new()),
            database,
        }
    }

    /// The keystore database URL on [`Backend::Postgres`].
    pub(crate) fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The data directory the keyed helpers pass as `--data-dir`.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.join("data")
    }

    /// Remembers key bytes that must never be printed.
    pub(crate) fn secret(&self, key: &[u8]) {
        self.secrets.borrow_mut().push(key.to_vec());
    }

    /// `kura` with no kura variable inherited (none of [`KURA_VARS`], the one list of every
    /// variable kura reads), run in the sandbox.
    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("kura").unwrap();
        for v in KURA_VARS {
            c.env_remove(v);
        }
        if let Some(url) = &self.database {
            c.env("KURA_DATABASE_URL", url);
        }
        c.current_dir(self.path());
        c
    }

    /// Runs `cmd` and checks its output for every key registered so far.
    pub(crate) fn exec(&self, cmd: &mut Command) -> Run {
        let out = cmd.output().unwrap();
        let run = Run {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.check(&run);
        run
    }

    /// Asserts that no registered key appears in `run`'s output.
    #[track_caller]
    pub(crate) fn check(&self, run: &Run) {
        let keys = self.secrets.borrow();
        assert_no_key_material(&keys, "stdout", &run.stdout);
        assert_no_key_material(&keys, "stderr", run.stderr.as_bytes());
    }

    /// `kura ARGS` with nothing else configured.
    pub(crate) fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        self.exec(self.cmd().args(args))
    }

    /// `kura --data-dir data --master-key-file KEY ARGS`.
    pub(crate) fn kura<S: AsRef<OsStr>>(&self, key: &Path, args: &[S]) -> Run {
        self.exec(self.keyed(key).args(args))
    }

    /// `kura --data-dir data --master-key-file KEY ARGS` reading `stdin`.
    pub(crate) fn kura_stdin<S: AsRef<OsStr>>(&self, key: &Path, args: &[S], stdin: &[u8]) -> Run {
        self.exec(self.keyed(key).args(args).write_stdin(stdin.to_vec()))
    }

    /// The command of [`Sandbox::kura`], for more options.
    pub(crate) fn keyed(&self, key: &Path) -> Command {
        let mut c = self.cmd();
        c.arg("--data-dir")
            .arg(self.data_dir())
            .arg("--master-key-file")
            .arg(key);
        c
    }

    /// A new key file made by `kura keygen --out NAME` (hex).
    pub(crate) fn keygen(&self, name: &str) -> PathBuf {
        let path = self.join(name);
        let run = self.run(&["keygen", "--out", name]).ok();
        self.secret(&read_key(&path));
        self.check(&run);
        path
    }

    /// Writes `content` to a new file with permission bits `mode`.
    pub(crate) fn write_file(&self, name: &str, content: &[u8], mode: u32) -> PathBuf {
        let path = self.join(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(content).unwrap();
        drop(f);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// A hex key file (mode 0400) holding `key`, registered as a secret.
    pub(crate) fn key_file(&self, name: &str, key: &[u8]) -> PathBuf {
        self.secret(key);
        self.write_file(name, format!("{}\n", hex::encode(key)).as_bytes(), 0o400)
    }

    /// `kura init` with `key`; returns `status --output json`.
    pub(crate) fn init(&self, key: &Path) -> Value {
        self.kura(key, &["init"]).ok();
        self.status(key)
    }

    /// `kura status --output json` with `key`.
    pub(crate) fn status(&self, key: &Path) -> Value {
        self.kura(key, &["--output", "json", "status"]).ok().json()
    }

    /// A sandbox with a key file `master.key` (made by `kura keygen`) and no keystore yet.
    pub(crate) fn with_key() -> (Self, PathBuf) {
        let sb = Self::new();
        let key = sb.keygen("master.key");
        (sb, key)
    }

    /// A sandbox with a key file `master.key` and an initialised keystore.
    pub(crate) fn initialised() -> (Self, PathBuf) {
        let (sb, key) = Self::with_key();
        sb.init(&key);
        (sb, key)
    }

    /// A sandbox with two key files, `old.key` and `new.key`, and a keystore initialised
    /// with `old.key`; returns its `status --output json` too.
    pub(crate) fn two_keys() -> (Self, PathBuf, PathBuf, Value) {
        let sb = Self::new();
        let old = sb.keygen("old.key");
        let new = sb.keygen("new.key");
        let st = sb.init(&old);
        (sb, old, new, st)
    }

    /// `kura --previous-master-key-file PREVIOUS rotate master-key` with `key`.
    pub(crate) fn rotate_master_key(&self, key: &Path, previous: &str) -> Run {
        self.kura(
            key,
            &[
                "--previous-master-key-file",
                previous,
                "rotate",
                "master-key",
            ],
        )
    }

    /// Names in the sandbox directory, sorted.
    pub(crate) fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Writes a plaintext file.
    pub(crate) fn plain(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.join(name);
        fs::write(&path, content).unwrap();
        path
    }
}

/// Decodes a key file (hex or base64, one trailing newline).
pub(crate) fn read_key(path: &Path) -> Vec<u8> {
    let text = fs::read_to_string(path).unwrap();
    let t = text.trim_end_matches('\n');
    hex::decode(t)
        .or_else(|_| STANDARD.decode(t))
        .unwrap_or_else(|e| panic!("{} holds no key: {e}", path.display()))
}

/// A 32-byte key from the operating system (like `openssl rand 32`).
pub(crate) fn random_key() -> Vec<u8> {
    let mut k = vec![0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut k))
        .unwrap();
    k
}

/// Pseudo-random bytes (a simple LCG; the content only has to be varied).
pub(crate) fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as u8
        })
        .collect()
}

/// The data keys of a status document as (id, state).
pub(crate) fn data_keys(status: &Value) -> Vec<(String, String)> {
    status["data_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_string(),
                d["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The id of the one active data key (asserting there is exactly one).
#[track_caller]
pub(crate) fn active_id(status: &Value) -> String {
    let active: Vec<String> = data_keys(status)
        .into_iter()
        .filter(|(_, s)| s == "active")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(active.len(), 1, "{status:#}");
    active[0].clone()
}

/// The KEK id of a status document.
pub(crate) fn kek_id(status: &Value) -> String {
    status["kek"]["id"].as_str().unwrap().to_string()
}

/// The mode bits of a file.
pub(crate) fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `kura ARGS` (a `kura bench … --output json`) in a fresh sandbox with a TMPDIR of its
/// own: the JSON report and its result names, after checking that every result has a unit
/// and finite, positive `kura`, `raw` and `ratio`, and that the run left nothing behind
/// (its keystore lived in a temporary directory, now removed).
pub(crate) fn bench_report(args: &[&str]) -> (Value, Vec<String>) {
    let sb = Sandbox::new();
    let tmp = sb.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let j = sb.exec(sb.cmd().env("TMPDIR", &tmp).args(args)).ok().json();
    let mut names = Vec::new();
    for r in j["results"].as_array().unwrap() {
        names.push(r["name"].as_str().unwrap().to_string());
        assert!(!r["unit"].as_str().unwrap().is_empty(), "{r}");
        for field in ["kura", "raw", "ratio"] {
            let v = r[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} in {r}"));
            assert!(v.is_finite() && v > 0.0, "{field} in {r}");
        }
    }
    assert_eq!(sb.files(), ["tmp"]);
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    (j, names)
}
