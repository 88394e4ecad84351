//! Python AWS clients for kura's tests: a virtualenv with boto3, the AWS CLI (v1), moto
//! (server mode) and the AWS Encryption SDK, at the versions pinned in
//! `crates/kura-testkit/python/requirements.txt`, and a [`MotoServer`] to run beside kura.
//!
//! # The cache
//! [`python_env`] builds the virtualenv once, in the cargo target directory, as
//! `kura-pyenv-<key>`, where the key hashes the requirements file, the interpreter (its
//! version, path and machine) and the layout of this code: a change to any of them makes a
//! new environment, and an unchanged one is reused by every later test run.
//!
//! A virtualenv cannot be moved once made (its scripts name their interpreter by absolute
//! path), so it is built in a directory of its own, `kura-pyenv-<key>.build-<pid>-<nanos>`,
//! which it never leaves, and published when complete by creating the symlink
//! `kura-pyenv-<key>` to it. Creating a symlink is atomic and fails if the name exists, so
//! when several test processes build at once the first to finish wins and the others remove
//! their own build and use the winner's. The `ready` file, written last, holds the key.
//! A lock file (`kura-pyenv-<key>.lock`, holding its owner's pid) makes the other processes
//! wait instead of building in parallel; it is only an optimisation: a dead owner's lock is
//! taken over, and after [`LOCK_WAIT`] a waiter builds anyway.
//!
//! Nothing is skipped: when Python, venv or pip fails, [`python_env`] returns an error that
//! says what failed and how to fix it.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::free_port;

/// The pinned requirements (`python/requirements.txt`), installed into the environment.
pub const REQUIREMENTS: &str = include_str!("../python/requirements.txt");
/// The environment variable naming the Python interpreter that makes the virtualenv
/// (default `python3`, found on `PATH`).
pub const PYTHON_VAR: &str = "KURA_TEST_PYTHON";
/// How long a process waits for another one's build before building itself.
pub const LOCK_WAIT: Duration = Duration::from_secs(20 * 60);
/// How long [`MotoServer::start`] waits for moto to answer.
pub const MOTO_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Part of the cache key: change it when the way the environment is built changes.
const LAYOUT: &str = "kura-pyenv layout 1";
/// The modules that must import for an environment to be ready.
const MODULES: &str = "boto3, botocore, moto, aws_encryption_sdk, cryptography";
/// The entry points that must exist for an environment to be ready.
const ENTRY_POINTS: [&str; 2] = ["aws", "moto_server"];
/// Where the pins and their README live, for error messages.
const PINS: &str = "crates/kura-testkit/python/requirements.txt";

/// Variables of the AWS SDKs and CLI that [`PythonEnv::command`] always removes (with any
/// other `AWS_*` variable set in this process).
pub const AWS_VARS: [&str; 27] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_KMS",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_CA_BUNDLE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_STS_REGIONAL_ENDPOINTS",
];
/// Proxy variables, removed in both spellings by [`PythonEnv::command`].
const PROXY_VARS: [&str; 5] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "FTP_PROXY",
];
/// Python variables that would let the caller's setup leak into the environment.
const PYTHON_VARS: [&str; 5] = [
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "VIRTUAL_ENV",
];
/// pip variables that would send an install outside the virtualenv.
const PIP_VARS: [&str; 4] = ["PIP_USER", "PIP_TARGET", "PIP_PREFIX", "PIP_ROOT"];

/// A virtualenv with the pinned Python clients; see [`python_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonEnv {
    root: PathBuf,
}

impl PythonEnv {
    /// The virtualenv's directory (the build directory the published symlink points to).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The virtualenv's `bin` directory.
    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }

    /// The program `name` in the virtualenv's `bin` directory (whether it exists or not).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir().join(name)
    }

    /// The virtualenv's Python interpreter.
    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }

    /// The AWS CLI (v1) entry point, `aws`.
    pub fn aws_cli(&self) -> PathBuf {
        self.bin("aws")
    }

    /// moto's server entry point, `moto_server`.
    pub fn moto_server(&self) -> PathBuf {
        self.bin("moto_server")
    }

    /// A command for `program` (a path, or a name looked up first in the virtualenv's
    /// `bin`, then on `PATH`) with a clean environment for AWS clients:
    /// - every `AWS_*` variable removed, then `AWS_CONFIG_FILE` and
    ///   `AWS_SHARED_CREDENTIALS_FILE` set to `/dev/null` and `AWS_EC2_METADATA_DISABLED`
    ///   to `true`, so that no profile, file or instance metadata is ever read;
    /// - every proxy variable removed (both spellings), so loopback traffic goes direct;
    /// - `PYTHONPATH`, `PYTHONHOME` and the like removed, `PYTHONNOUSERSITE=1`,
    ///   `VIRTUAL_ENV` set, and the virtualenv's `bin` first on `PATH`.
    ///
    /// Set credentials and a region with [`with_aws_credentials`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let program = program.as_ref();
        let in_venv = self.bin_dir().join(program);
        let resolved = if !program.as_encoded_bytes().contains(&b'/') && in_venv.is_file() {
            in_venv.into_os_string()
        } else {
            program.to_owned()
        };
        let mut c = Command::new(resolved);
        for (k, _) in std::env::vars_os() {
            let name = k.to_string_lossy();
            if name.starts_with("AWS_") || name.to_ascii_uppercase().ends_with("_PROXY") {
                c.env_remove(&k);
            }
        }
        for v in AWS_VARS.iter().chain(&PYTHON_VARS).chain(&PIP_VARS) {
            c.env_remove(v);
        }
        for v in PROXY_VARS {
            c.env_remove(v);
            c.env_remove(v.to_ascii_lowercase());
        }
        c.env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("PYTHONNOUSERSITE", "1")
            .env("VIRTUAL_ENV", &self.root)
            .env("PATH", self.path_var());
        c
    }

    /// `PATH` with the virtualenv's `bin` first.
    fn path_var(&self) -> OsString {
        let mut dirs = vec![self.bin_dir()];
        if let Some(p) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&p));
        }
        // Joining fails only on a directory name holding ':', which PATH could not have.
        std::env::join_paths(dirs).unwrap_or_else(|_| self.bin_dir().into_os_string())
    }
}

/// Sets `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION` and `AWS_REGION`
/// on `cmd` (a [`PythonEnv::command`]). moto takes any credentials (`testing` is usual).
pub fn with_aws_credentials<'a>(
    cmd: &'a mut Command,
    access_key_id: &str,
    secret_access_key: &str,
    region: &str,
) -> &'a mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret_access_key)
        .env("AWS_DEFAULT_REGION", region)
        .env("AWS_REGION", region)
}

/// The virtualenv with the pinned Python clients, created on first use and then cached (in
/// this process, and on disk for every later process: see the [module docs](self)).
///
/// The first call in a fresh target directory runs `python3 -m venv` and `pip install`
/// (network access to the package index, a minute or so); later ones take milliseconds.
/// Errors say what failed and how to fix it; callers should fail on them, not skip.
pub fn python_env() -> io::Result<PythonEnv> {
    static CACHE: Mutex<Option<PythonEnv>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(env) = cache.as_ref() {
        return Ok(env.clone());
    }
    let env = find_or_build()?;
    *cache = Some(env.clone());
    Ok(env)
}

fn find_or_build() -> io::Result<PythonEnv> {
    let python = std::env::var_os(PYTHON_VAR).unwrap_or_else(|| OsString::from("python3"));
    let identity = python_identity(&python)?;
    let key = format!("{:016x}", fnv1a64(&[LAYOUT, REQUIREMENTS, &identity]));
    let target = target_dir()?;
    fs::create_dir_all(&target).map_err(|e| context(e, "creating", &target))?;
    let link = target.join(format!("kura-pyenv-{key}"));
    let lock_path = target.join(format!("kura-pyenv-{key}.lock"));

    let deadline = Instant::now() + LOCK_WAIT;
    let mut announced = false;
    let _lock = loop {
        if let Some(env) = ready_env(&link, &key)? {
            return Ok(env);
        }
        match BuildLock::try_acquire(&lock_path)? {
            TryLock::Acquired(lock) => break Some(lock),
            TryLock::Stale => continue,
            TryLock::Held(_) if Instant::now() >= deadline => {
                eprintln!(
                    "kura-testkit: waited {}s for {}; building anyway",
                    LOCK_WAIT.as_secs(),
                    lock_path.display()
                );
                break None;
            }
            TryLock::Held(owner) => {
                if !announced {
                    eprintln!(
                        "kura-testkit: waiting for process {owner} to finish building {}",
                        link.display()
                    );
                    announced = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    // The owner of the lock may have finished between the check and the acquisition.
    if let Some(env) = ready_env(&link, &key)? {
        return Ok(env);
    }
    remove_unready(&link)?;
    remove_dead_builds(&target, &key);
    build(&python, &target, &key, &link)
}

/// What `python` is: version, executable and machine, one a line (part of the cache key).
fn python_identity(python: &OsStr) -> io::Result<String> {
    const SCRIPT: &str = "import sys, platform\n\
        if sys.version_info < (3, 9): sys.exit('Python 3.9 or newer is needed, this is ' + sys.version)\n\
        print(sys.version); print(sys.executable); print(platform.machine())";
    let shown = python.to_string_lossy();
    let fix = format!(
        "Fix: install CPython 3.9 or newer with the venv module (Debian/Ubuntu: \
         apt-get install python3 python3-venv), or set {PYTHON_VAR} to such an interpreter."
    );
    let mut cmd = Command::new(python);
    clean_python_env(&mut cmd);
    let out = cmd
        .args(["-c", SCRIPT])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "kura-testkit: could not run the Python interpreter `{shown}` \
                     (for the Python client tests): {e}.\n{fix}"
                ),
            )
        })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "kura-testkit: `{shown}` failed ({}) when asked its version: {}\n{fix}",
            out.status,
            tail(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The environment at `link` if it is complete (its `ready` file holds `key`).
fn ready_env(link: &Path, key: &str) -> io::Result<Option<PythonEnv>> {
    match fs::read_to_string(link.join("ready")) {
        Ok(s) if s.trim() == key => {
            let root = fs::canonicalize(link).map_err(|e| context(e, "resolving", link))?;
            Ok(Some(PythonEnv { root }))
        }
        Ok(_) => Ok(None),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(context(e, "reading", &link.join("ready"))),
    }
}

/// Removes whatever is at `link` (a dangling symlink, or one to an incomplete build).
fn remove_unready(link: &Path) -> io::Result<()> {
    let res = match fs::symlink_metadata(link) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(link),
        Ok(_) => fs::remove_file(link),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    match res {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(context(e, "removing", link)),
        _ => Ok(()),
    }
}

/// Removes the build directories for `key` left by processes that died building them.
/// Best effort, and only where `/proc` tells which processes are alive.
fn remove_dead_builds(target: &Path, key: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!("kura-pyenv-{key}.build-");
    let Ok(entries) = fs::read_dir(target) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !pid_alive(pid) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Builds the environment in a fresh directory beside `link`, then publishes it there.
fn build(python: &OsStr, target: &Path, key: &str, link: &Path) -> io::Result<PythonEnv> {
    let name = format!(
        "kura-pyenv-{key}.build-{}-{}",
        std::process::id(),
        now_nanos()
    );
    let dir = target.join(&name);
    let packages = REQUIREMENTS.lines().filter(|l| l.contains("==")).count();
    eprintln!(
        "kura-testkit: creating the Python test environment {} ({packages} pinned packages \
         from {PINS}; pip needs a minute or so, once)",
        link.display()
    );
    let start = Instant::now();
    let result = populate(python, &dir, key).and_then(|()| publish(&name, &dir, link, key));
    match result {
        Ok(env) => {
            eprintln!(
                "kura-testkit: Python test environment ready in {:.1}s",
                start.elapsed().as_secs_f64()
            );
            Ok(env)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// `python -m venv dir`, `pip install -r requirements.txt`, checks, then the `ready` file.
fn populate(python: &OsStr, dir: &Path, key: &str) -> io::Result<()> {
    let shown = python.to_string_lossy();
    let mut venv = Command::new(python);
    clean_python_env(&mut venv);
    venv.arg("-m").arg("venv").arg(dir);
    let out = run(&mut venv, &format!("{shown} -m venv {}", dir.display()))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "kura-testkit: `{shown} -m venv {}` failed ({}): {}\n\
             Fix: install Python's venv module and ensurepip (Debian/Ubuntu: apt-get install \
             python3-venv), or set {PYTHON_VAR} to an interpreter that has them.",
            dir.display(),
            out.status,
            tail(&out.stderr)
        )));
    }

    let requirements = dir.join("requirements.txt");
    fs::write(&requirements, REQUIREMENTS).map_err(|e| context(e, "writing", &requirements))?;
    let venv_python = dir.join("bin").join("python");
    let mut pip = Command::new(&venv_python);
    clean_python_env(&mut pip);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--no-input",
        "-r",
    ])
    .arg(&requirements)
    .env("PIP_NO_INPUT", "1");
    let shown_pip = format!(
        "{} -m pip install -r {}",
        venv_python.display(),
        requirements.display()
    );
    let out = run(&mut pip, &shown_pip)?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "kura-testkit: installing the pinned Python test clients failed ({}): \
             `{shown_pip}`\n{}\n\
             Fix: this needs network access to the Python package index (PyPI, or the index \
             in pip's configuration: `pip config list`, PIP_INDEX_URL). If a pinned version \
             can no longer be had, refresh the pins in {PINS} \
             (crates/kura-testkit/python/README.md says how).",
            out.status,
            tail_both(&out)
        )));
    }

    let mut check = Command::new(&venv_python);
    clean_python_env(&mut check);
    check.args(["-c", &format!("import {MODULES}")]);
    let out = run(&mut check, "the import check")?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "kura-testkit: pip installed {PINS}, but `import {MODULES}` then failed in {} ({}): \
             {}\nFix: the pins are inconsistent; refresh them (crates/kura-testkit/python/\
             README.md says how).",
            dir.display(),
            out.status,
            tail(&out.stderr)
        )));
    }
    for ep in ENTRY_POINTS {
        let p = dir.join("bin").join(ep);
        if !p.is_file() {
            return Err(io::Error::other(format!(
                "kura-testkit: pip installed {PINS}, but {} is missing.\nFix: the pins must \
                 include awscli and moto[server]; refresh them (crates/kura-testkit/python/\
                 README.md says how).",
                p.display()
            )));
        }
    }
    let ready = dir.join("ready");
    let mut f = File::create(&ready).map_err(|e| context(e, "creating", &ready))?;
    f.write_all(format!("{key}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| context(e, "writing", &ready))
}

/// Publishes the complete build `dir` (named `name`, beside `link`) by creating `link`, a
/// symlink to it; if another process published first, removes `dir` and uses theirs.
fn publish(name: &str, dir: &Path, link: &Path, key: &str) -> io::Result<PythonEnv> {
    for _ in 0..2 {
        match std::os::unix::fs::symlink(name, link) {
            Ok(()) => {
                return ready_env(link, key)?.ok_or_else(|| {
                    io::Error::other(format!(
                        "kura-testkit: {} was published but is not ready",
                        link.display()
                    ))
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if let Some(env) = ready_env(link, key)? {
                    let _ = fs::remove_dir_all(dir);
                    return Ok(env);
                }
                remove_unready(link)?;
            }
            Err(e) => return Err(context(e, "creating the symlink", link)),
        }
    }
    Err(io::Error::other(format!(
        "kura-testkit: could not publish {} as {}: something else keeps creating it",
        dir.display(),
        link.display()
    )))
}

/// Runs `cmd` (stdin from `/dev/null`) and collects its output.
fn run(cmd: &mut Command, shown: &str) -> io::Result<Output> {
    cmd.stdin(Stdio::null()).output().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("kura-testkit: could not run `{shown}`: {e}"),
        )
    })
}

/// Removes the variables that would make Python or pip look outside the virtualenv.
fn clean_python_env(cmd: &mut Command) {
    for v in PYTHON_VARS.iter().chain(&PIP_VARS) {
        cmd.env_remove(v);
    }
    cmd.env("PYTHONNOUSERSITE", "1");
}

/// The cargo target directory: `CARGO_TARGET_DIR` if absolute, else the ancestor of the
/// running executable that holds cargo's `CACHEDIR.TAG` (or is named `target`), else the
/// `target` directory of the workspace this crate was built in.
pub fn target_dir() -> io::Result<PathBuf> {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && d.is_absolute()
    {
        return Ok(d);
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dirs = exe.ancestors().skip(1);
        if let Some(d) = dirs.find(|d| d.join("CACHEDIR.TAG").is_file()) {
            return Ok(d.to_path_buf());
        }
        if let Some(d) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.file_name() == Some(OsStr::new("target")))
        {
            return Ok(d.to_path_buf());
        }
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .map(|root| root.join("target"))
        .ok_or_else(|| {
            io::Error::other(
                "kura-testkit: cannot find the cargo target directory; set CARGO_TARGET_DIR \
                 to an absolute path",
            )
        })
}

mod moto;
mod support;

use crate::report::{context, output_tail as tail_both, tail};
use support::{BuildLock, TryLock, fnv1a64, now_nanos, pid_alive};

pub use moto::MotoServer;
#[cfg(test)]
use moto::http_get_ok;

#[cfg(test)]
mod tests;
