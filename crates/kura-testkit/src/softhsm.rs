//! Throwaway SoftHSM2 tokens for the PKCS#11 tests: [`SoftHsm`].
//!
//! [`SoftHsm::new`] makes a fresh directory (`kura-softhsm-<pid>-<n>` in the system
//! temporary directory) holding a `softhsm2.conf` of its own and a `tokens/` directory, so
//! nothing touches the machine's tokens. SoftHSM reads its configuration from the
//! environment variable [`CONF_VAR`] when a process loads the module: pass
//! [`SoftHsm::env`] to every child process that loads it (a `kura` run, or a test re-run
//! by [`SoftHsm::run_test`]). [`SoftHsm::init_token`] runs `softhsm2-util --init-token
//! --free`; [`SoftHsm::module`] is the PKCS#11 library, found in the usual places
//! ([`MODULE_PATHS`]). Dropping a [`SoftHsm`] removes its directory.
//!
//! A process that loads the module while another creates a token in the same directory
//! may get `CKR_GENERAL_ERROR` from `C_GetSlotList`: tests that run at once should each
//! have a [`SoftHsm`] of their own (a few milliseconds each).
//!
//! # Installing
//! When `softhsm2-util` is missing, the Debian package [`PACKAGE`] is installed with
//! `apt-get` (as root; after an `apt-get update` if the first attempt fails). If that fails
//! too, [`SoftHsm::new`] returns an error giving the command to run: nothing is skipped.
//!
//! # Testing a library in-process
//! SoftHSM reads [`CONF_VAR`] once, when the module is initialised, and a test process
//! cannot safely set a variable for itself while other test threads run. So a test that
//! loads the module in its own process re-runs itself in a child with the variable set:
//! [`SoftHsm::run_test`] runs the current test binary with `--exact <name>` and
//! [`CHILD_VAR`] set; the test's body checks [`in_child`] to tell which side it is on.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

/// The variable SoftHSM2 reads its configuration file from.
pub const CONF_VAR: &str = "SOFTHSM2_CONF";
/// Set (to `1`) in a test re-run by [`SoftHsm::run_test`].
pub const CHILD_VAR: &str = "KURA_TEST_SOFTHSM_CHILD";
/// The Debian package installed when `softhsm2-util` is missing.
pub const PACKAGE: &str = "softhsm2";
/// Where the PKCS#11 module is looked for, in order.
pub const MODULE_PATHS: [&str; 4] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// A SoftHSM2 configuration and token directory of its own, removed on drop; see the
/// [module docs](self).
#[derive(Debug)]
pub struct SoftHsm {
    dir: PathBuf,
    conf: PathBuf,
    module: PathBuf,
    // `softhsm2-util --init-token --free` picks the first free slot: one at a time.
    init: Mutex<()>,
}

impl SoftHsm {
    /// A fresh configuration with no token, installing SoftHSM2 first if need be.
    pub fn new() -> io::Result<Self> {
        ensure_installed()?;
        let module = module_path()?;
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kura-softhsm-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(dir.join("tokens"))?;
        let conf = dir.join("softhsm2.conf");
        fs::write(&conf, conf_text(&dir.join("tokens")))?;
        Ok(Self {
            dir,
            conf,
            module,
            init: Mutex::new(()),
        })
    }

    /// The PKCS#11 library.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// The configuration file (the value of [`CONF_VAR`]).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The directory holding the configuration and the tokens.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The environment every process loading the module needs: [`CONF_VAR`].
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        vec![(CONF_VAR.into(), self.conf.clone().into_os_string())]
    }

    /// `softhsm2-util` with this configuration.
    pub fn util(&self) -> Command {
        let mut c = Command::new("softhsm2-util");
        c.env(CONF_VAR, &self.conf).stdin(Stdio::null());
        c
    }

    /// Initialises a token labelled `label` in the first free slot, with user PIN `pin` and
    /// security officer PIN `so_pin`.
    pub fn init_token(&self, label: &str, pin: &str, so_pin: &str) -> io::Result<()> {
        let _one = self.init.lock().unwrap_or_else(PoisonError::into_inner);
        let out = self
            .util()
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", pin, "--so-pin", so_pin])
            .output()?;
        check(
            &out,
            &format!("softhsm2-util --init-token --free --label {label}"),
        )
    }

    /// The labels of the initialised tokens, from `softhsm2-util --show-slots`.
    pub fn token_labels(&self) -> io::Result<Vec<String>> {
        let out = self.util().arg("--show-slots").output()?;
        check(&out, "softhsm2-util --show-slots")?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Label:"))
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Re-runs test `name` of the current test binary in a child process with
    /// [`SoftHsm::env`], [`CHILD_VAR`] and `extra` set, and fails unless exactly that test
    /// ran and passed. Its output is printed (a test shows it when it fails).
    pub fn run_test(&self, name: &str, extra: &[(&str, &OsStr)]) -> io::Result<()> {
        let exe = std::env::current_exe()?;
        let mut c = Command::new(exe);
        c.args([name, "--exact", "--nocapture", "--test-threads=1"])
            .envs(self.env())
            .env(CHILD_VAR, "1")
            .stdin(Stdio::null());
        for (k, v) in extra {
            c.env(k, v);
        }
        let out = c.output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "--- {name} in a child ({CONF_VAR}={}) ---\n{stdout}{stderr}",
            self.conf.display()
        );
        if !out.status.success() || !stdout.contains("1 passed") {
            return Err(io::Error::other(format!(
                "test {name} failed in its child process ({}):\n{stdout}{stderr}",
                out.status
            )));
        }
        Ok(())
    }
}

impl Drop for SoftHsm {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether this process is a test re-run by [`SoftHsm::run_test`].
pub fn in_child() -> bool {
    std::env::var_os(CHILD_VAR).is_some()
}

/// The configuration file's text for tokens in `tokens`.
pub fn conf_text(tokens: &Path) -> String {
    format!(
        "# kura-testkit: a throwaway SoftHSM2 configuration\n\
         directories.tokendir = {}\n\
         objectstore.backend = file\n\
         log.level = ERROR\n\
         slots.removable = false\n",
        tokens.display()
    )
}

/// The first of [`MODULE_PATHS`] that exists.
pub fn module_path() -> io::Result<PathBuf> {
    MODULE_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            io::Error::other(format!(
                "kura-testkit: the SoftHSM2 PKCS#11 module is in none of {}; install it as \
                 root: DEBIAN_FRONTEND=noninteractive apt-get install -y {PACKAGE}",
                MODULE_PATHS.join(", ")
            ))
        })
}

/// Whether `softhsm2-util` runs.
fn util_present() -> bool {
    Command::new("softhsm2-util")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs [`PACKAGE`] with `apt-get` unless `softhsm2-util` is there (once per process).
pub fn ensure_installed() -> io::Result<()> {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if *installed || util_present() {
        *installed = true;
        return Ok(());
    }
    eprintln!("kura-testkit: softhsm2-util is missing; installing the Debian package {PACKAGE}");
    let (out, log) = crate::report::apt_install(PACKAGE)?;
    if !out.status.success() || !util_present() {
        return Err(io::Error::other(format!(
            "kura-testkit: SoftHSM2 is needed for the PKCS#11 tests, and installing it failed \
             (`apt-get install -y {PACKAGE}`: {}):\n{log}\nFix: install it yourself (as root: \
             DEBIAN_FRONTEND=noninteractive apt-get install -y {PACKAGE}), with network access \
             to the Debian mirrors.",
            out.status
        )));
    }
    *installed = true;
    Ok(())
}

fn check(out: &Output, what: &str) -> io::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

#[cfg(test)]
mod tests;
