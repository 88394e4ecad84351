//! A throwaway PostgreSQL 15 server for tests: [`PgServer`].
//!
//! [`PgServer::start`] makes a fresh directory (`kura-pg-<pid>-<n>` in the system temporary
//! directory, or in a directory given to [`PgServer::start_in`]), runs `initdb` in it (trust
//! authentication, superuser `postgres`, UTF-8, locale C, no fsync) and starts the server
//! with `pg_ctl` on a free port of 127.0.0.1 (TCP on loopback only; its Unix socket lives in
//! the directory too), tuned for tests: `fsync`, `full_page_writes` and
//! `synchronous_commit` off. Connect to [`PgServer::url`], or make a database per test with
//! [`PgServer::create_database`].
//!
//! # Binaries
//! The PostgreSQL 15 programs are taken from [`PG_BIN_DIR`] (Debian's layout). When they are
//! missing, the Debian package `postgresql-15` is installed with `apt-get` (as root; after an
//! `apt-get update` if the first attempt fails). If that fails too, [`PgServer::start`]
//! returns an error saying so: nothing is skipped.
//!
//! # Root
//! PostgreSQL refuses to run as root. When the effective uid is 0, `initdb` and `pg_ctl` run
//! as the `postgres` user (`runuser -u postgres --`) and the server's directory is handed to
//! it (`chown -R postgres:`); the directory given to [`PgServer::start_in`] must then be one
//! the `postgres` user can reach (the system temporary directory always is).
//!
//! # Stopping
//! Dropping a [`PgServer`] stops it (`pg_ctl stop -m immediate`, then SIGKILL to the
//! postmaster if it is somehow still there) and removes its directory; [`PgServer::stop`]
//! does the same and reports errors. For the cases where `Drop` never runs (the test process
//! is killed, calls `exit`, or keeps the server in a `static`), every server has a watchdog:
//! a small `sh` process, in a process group of its own and deaf to SIGINT and SIGHUP, that
//! waits for end-of-file on a pipe whose only writer is the test process. The kernel closes
//! that pipe when the test process dies, however it dies; the watchdog then stops the server
//! and removes its directory. A normal drop kills the watchdog (by its handle) first.
//!
//! [`shared_server`] and [`shared_database`] give each test binary one server, started on
//! first use, with a database of its own for each test.
//!
//! [`PgServer::stop_server`] and [`PgServer::start_server`] stop the server process and
//! start it again on the same port with the same data, for tests of clients that must
//! survive a database restart.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::free_port;

mod shared;
mod system;

use crate::report::{context, output_tail};
pub use system::pg_bin_dir;
use system::{
    check, clean_command, effective_uid, file_tail, is_our_postmaster, make_dir, postmaster_pid,
    run, runuser, shell_quote,
};

pub use shared::{shared_database, shared_server};

/// Where the PostgreSQL 15 programs (`initdb`, `pg_ctl`, `psql`, `postgres`) are looked for.
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The Debian package installed when they are missing.
pub const PG_PACKAGE: &str = "postgresql-15";
/// How long `pg_ctl` may wait for the server to start, or to stop.
pub const PG_CTL_TIMEOUT: Duration = Duration::from_secs(60);
/// The superuser made by `initdb` (trust authentication: no password).
pub const SUPERUSER: &str = "postgres";

/// The programs that must be in [`PG_BIN_DIR`].
const PROGRAMS: [&str; 4] = ["initdb", "pg_ctl", "psql", "postgres"];
/// How many ports a start tries when another process takes the free port first.
const START_ATTEMPTS: u32 = 3;
/// The longest path of a Unix socket (`sun_path` holds 108 bytes, the last one a NUL).
const MAX_SOCKET_PATH: usize = 107;
/// The watchdog: waits for end-of-file on its stdin (the test process died, or dropped the
/// server without killing it first), then runs the stop command given as its arguments and
/// removes the server's directory (`$1`).
const WATCHDOG: &str = r#"trap '' HUP INT QUIT PIPE
base=$1
shift
while read -r line; do :; done
"$@" >/dev/null 2>&1
rm -rf -- "$base"
"#;

/// A PostgreSQL 15 server of its own, on 127.0.0.1, stopped and removed on drop; see the
/// [module docs](self).
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Run `initdb` and `pg_ctl` as the `postgres` user (this process is root).
    as_postgres: bool,
    /// The watchdog; its stdin is the pipe whose end-of-file sets it off.
    watchdog: Option<Child>,
    /// Stopped and removed already ([`PgServer::stop`]).
    stopped: bool,
}

impl PgServer {
    /// Starts a server in a fresh directory under [`std::env::temp_dir`]: `initdb`, then
    /// `pg_ctl start` on a free port of 127.0.0.1, waiting until it accepts connections. A
    /// port taken by another process in between is retried with a new one. Installs
    /// PostgreSQL 15 first if it is missing (see the [module docs](self)).
    ///
    /// Errors say what failed, with the end of the server's log when it got that far.
    pub fn start() -> io::Result<Self> {
        Self::start_in(&std::env::temp_dir())
    }

    /// [`PgServer::start`], with the server's directory made in `parent` (which must exist,
    /// and be reachable by the `postgres` user when this process is root). The path of the
    /// server's socket, `<parent>/kura-pg-<pid>-<n>/socket/.s.PGSQL.<port>`, must fit in
    /// 107 bytes.
    pub fn start_in(parent: &Path) -> io::Result<Self> {
        let bin = pg_bin_dir()?;
        let as_postgres = effective_uid()? == 0;
        let dir = make_dir(parent)?;
        let socket = dir.join("socket");
        let longest = socket.join(".s.PGSQL.65535");
        if longest.as_os_str().len() > MAX_SOCKET_PATH {
            let _ = fs::remove_dir_all(&dir);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "kura-testkit: {} is too long for a Unix socket path (at most \
                     {MAX_SOCKET_PATH} bytes); start the server in a directory with a shorter \
                     path",
                    longest.display()
                ),
            ));
        }
        // From here on, dropping `server` stops whatever was started and removes `dir`.
        let mut server = Self {
            bin,
            dir,
            port: 0,
            as_postgres,
            watchdog: None,
            stopped: false,
        };
        if let Err(e) = fs::create_dir(&socket) {
            return Err(context(e, "creating", &socket));
        }
        server.watchdog = Some(server.spawn_watchdog()?);
        if as_postgres {
            let mut chown = Command::new("chown");
            chown
                .arg("-R")
                .arg(format!("{SUPERUSER}:"))
                .arg(&server.dir);
            let shown = format!("chown -R {SUPERUSER}: {}", server.dir.display());
            check(&shown, run(&mut chown, &shown)?, "")?;
        }
        server.initdb()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match server.try_start() {
                Ok(()) => return Ok(server),
                Err((e, true)) if attempt < START_ATTEMPTS => {
                    eprintln!("kura-testkit: {e}\nkura-testkit: retrying on another port");
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// The URL of the `postgres` database, as the superuser:
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of the database `name` (which [`PgServer::create_database`] made, say).
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// The port the server listens on (on 127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory: `data` (the cluster), `socket`, `server.log`. Removed when
    /// the server stops.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The directory of the PostgreSQL programs this server runs.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        file_tail(&self.log_path())
    }

    /// Makes the database `name` (1 to 63 ASCII letters, digits, `_` or `-`) and returns
    /// its URL.
    pub fn create_database(&self, name: &str) -> io::Result<String> {
        let valid = (1..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "kura-testkit: {name:?} is not a database name for tests (1 to 63 ASCII \
                     letters, digits, '_' or '-')"
                ),
            ));
        }
        let sql = format!("CREATE DATABASE \"{name}\"");
        let mut psql = self.psql("postgres");
        psql.args(["-q", "-c", &sql]);
        let shown = format!("psql -p {} -c '{sql}'", self.port);
        check(&shown, run(&mut psql, &shown)?, "")?;
        Ok(self.database_url(name))
    }

    /// A `psql` command (from the server's own binaries) connected to the database
    /// `database` as the superuser, over TCP to 127.0.0.1: `-X` (no psqlrc),
    /// `-v ON_ERROR_STOP=1`, no password prompt; every `PG*` variable removed. Add `-c`,
    /// `-f`, `-At` and the like.
    pub fn psql(&self, database: &str) -> Command {
        let mut c = clean_command(self.bin.join("psql"));
        c.args(["-X", "-w", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", database])
            .env("PGCONNECT_TIMEOUT", "10");
        c
    }

    /// Stops the server (`pg_ctl stop -m immediate`) and removes its directory, like
    /// dropping it, but reporting errors.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    /// Stops the server process (`pg_ctl stop -m fast`) but keeps its directory and port, so
    /// that [`PgServer::start_server`] can bring the same cluster back: for tests of what
    /// clients do while the database is down and once it returns. Clients connected at the
    /// time lose their connections. Dropping the server still removes everything.
    pub fn stop_server(&self) -> io::Result<()> {
        if self.stopped {
            return Err(io::Error::other(
                "kura-testkit: this PostgreSQL server was removed",
            ));
        }
        let mut c = self.server_command("pg_ctl");
        c.args(["stop", "-m", "fast", "-w", "-t"])
            .arg(PG_CTL_TIMEOUT.as_secs().to_string())
            .arg("-D")
            .arg(self.data_dir());
        let shown = "pg_ctl stop -m fast";
        check(shown, run(&mut c, shown)?, "")
            .map_err(|e| io::Error::new(e.kind(), format!("{e}\nserver log:\n{}", self.log_tail())))
    }

    /// Turns TLS on with the server certificate `cert` and its key `key` (PEM files, copied
    /// into the data directory), restarting the server on the same port. Clients that do
    /// not ask for TLS still connect without it.
    pub fn enable_tls(&self, cert: &Path, key: &Path) -> io::Result<()> {
        self.configure_tls(
            &[(cert, "server.crt"), (key, "server.key")],
            "ssl = on",
            None,
        )
    }

    /// With TLS on ([`PgServer::enable_tls`]): TCP clients must connect over TLS with a
    /// certificate `ca` signed whose common name is their user name (`cert`
    /// authentication); restarts the server.
    pub fn require_client_certificates(&self, ca: &Path) -> io::Result<()> {
        self.configure_tls(
            &[(ca, "root.crt")],
            "ssl_ca_file = 'root.crt'",
            Some("local all all trust\nhostssl all all 127.0.0.1/32 cert\n"),
        )
    }

    /// Copies `files` into the data directory (readable by the server only), appends
    /// `setting` to `postgresql.conf`, replaces `pg_hba.conf` with `hba` if given, and
    /// restarts the server.
    fn configure_tls(
        &self,
        files: &[(&Path, &str)],
        setting: &str,
        hba: Option<&str>,
    ) -> io::Result<()> {
        let data = self.data_dir();
        for &(from, to) in files {
            let to = data.join(to);
            fs::copy(from, &to).map_err(|e| context(e, "copying", from))?;
            fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| context(e, "restricting", &to))?;
            if self.as_postgres {
                let mut chown = Command::new("chown");
                chown.arg(format!("{SUPERUSER}:")).arg(&to);
                let shown = format!("chown {SUPERUSER}: {}", to.display());
                check(&shown, run(&mut chown, &shown)?, "")?;
            }
        }
        let conf = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).map_err(|e| context(e, "reading", &conf))?;
        text.push_str(&format!("\n{setting}\n"));
        fs::write(&conf, text).map_err(|e| context(e, "writing", &conf))?;
        if let Some(hba) = hba {
            let path = data.join("pg_hba.conf");
            fs::write(&path, hba).map_err(|e| context(e, "writing", &path))?;
        }
        self.stop_server()?;
        self.start_server()
    }

    /// Starts a server stopped by [`PgServer::stop_server`] again, on the same port with the
    /// same data, waiting until it accepts connections. Fails if another process took the
    /// port in the meantime.
    pub fn start_server(&self) -> io::Result<()> {
        if self.stopped {
            return Err(io::Error::other(
                "kura-testkit: this PostgreSQL server was removed",
            ));
        }
        self.start_on_port().map_err(|(e, _)| e)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// `program` from the binaries, run as the `postgres` user when this process is root,
    /// with the `PG*` variables removed and the server's directory as working directory
    /// (the caller's may be one `postgres` cannot enter).
    fn server_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut c = if self.as_postgres {
            let mut c = clean_command(runuser());
            c.args(["-u", SUPERUSER, "--"]).arg(program);
            c
        } else {
            clean_command(program)
        };
        c.current_dir(&self.dir);
        c
    }

    /// `pg_ctl stop -m immediate -D <data> -w -t <timeout>`.
    fn stop_command(&self) -> Command {
        let mut c = self.server_command("pg_ctl");
        c.args(["stop", "-m", "immediate", "-w", "-t"])
            .arg(PG_CTL_TIMEOUT.as_secs().to_string())
            .arg("-D")
            .arg(self.data_dir());
        c
    }

    fn spawn_watchdog(&self) -> io::Result<Child> {
        let stop = self.stop_command();
        let mut c = Command::new("sh");
        c.args(["-c", WATCHDOG, "kura-pg-watchdog"])
            .arg(&self.dir)
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the test's process group: a Ctrl-C to the test does not reach it.
            .process_group(0);
        for (k, v) in stop.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("kura-testkit: could not start the PostgreSQL watchdog (sh): {e}"),
            )
        })
    }

    fn initdb(&self) -> io::Result<()> {
        let mut c = self.server_command("initdb");
        c.args([
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "--no-sync",
            "--no-instructions",
            "-E",
            "UTF8",
            "--locale=C",
            "-D",
        ])
        .arg(self.data_dir());
        let shown = format!("initdb -D {}", self.data_dir().display());
        let fix = if self.as_postgres {
            format!(
                "\n(run as the {SUPERUSER} user, who must be able to reach {})",
                self.dir.display()
            )
        } else {
            String::new()
        };
        check(&shown, run(&mut c, &shown)?, &fix)
    }

    /// Starts the server on a free port; the error's flag says whether another port is
    /// worth a try (the port was taken).
    fn try_start(&mut self) -> Result<(), (io::Error, bool)> {
        self.port = free_port().map_err(|e| (e, false))?;
        self.start_on_port()
    }

    /// Starts the server on [`PgServer::port`]; the error's flag says whether the port was
    /// taken.
    fn start_on_port(&self) -> Result<(), (io::Error, bool)> {
        let log = self.log_path();
        let log_start = fs::metadata(&log).map_or(0, |m| m.len());
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
             -c synchronous_commit=off -c max_connections=100",
            self.port,
            shell_quote(&self.dir.join("socket"))
        );
        let mut c = self.server_command("pg_ctl");
        c.args(["start", "-w", "-t"])
            .arg(PG_CTL_TIMEOUT.as_secs().to_string())
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(options);
        let shown = format!("pg_ctl start (port {})", self.port);
        let out = run(&mut c, &shown).map_err(|e| (e, false))?;
        if out.status.success() {
            return Ok(());
        }
        let new_log = fs::read(&log)
            .ok()
            .and_then(|b| {
                b.get(usize::try_from(log_start).unwrap_or(0)..)
                    .map(<[u8]>::to_vec)
            })
            .unwrap_or_default();
        let new_log = String::from_utf8_lossy(&new_log);
        let port_taken = ["could not bind", "Address already in use"]
            .iter()
            .any(|m| new_log.contains(m));
        let msg = format!(
            "kura-testkit: PostgreSQL did not start on 127.0.0.1:{} (`{shown}` failed, {}): \
             {}\nThe end of the server log ({}):\n{}",
            self.port,
            out.status,
            output_tail(&out),
            log.display(),
            file_tail(&log)
        );
        Err((io::Error::other(msg), port_taken))
    }

    /// Kills the watchdog, stops the server, makes sure the postmaster is gone, removes the
    /// directory. Idempotent.
    fn shutdown(&mut self) -> io::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        if let Some(mut w) = self.watchdog.take() {
            // Our own child, not yet reaped: its pid cannot have been reused. Killed before
            // its stdin closes, so that it does not set off on its own.
            let _ = w.kill();
            let _ = w.wait();
        }
        let mut result = Ok(());
        let pid = postmaster_pid(&self.data_dir());
        if self.data_dir().join("postmaster.pid").exists() {
            let shown = "pg_ctl stop -m immediate";
            result = run(&mut self.stop_command(), shown)
                .and_then(|out| check(shown, out, ""))
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("{e}\nserver log:\n{}", self.log_tail()))
                });
        }
        if let Some(pid) = pid {
            // Should pg_ctl have failed, kill the postmaster (it is ours: it runs the
            // `postgres` binary of this server's data directory, from its pid file).
            let deadline = Instant::now() + Duration::from_secs(10);
            while is_our_postmaster(pid, &self.bin) {
                if Instant::now() >= deadline {
                    let _ = Command::new("sh")
                        .args(["-c", "kill -KILL \"$1\"", "sh", &pid.to_string()])
                        .stdin(Stdio::null())
                        .output();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            result = result.and(Err(context(e, "removing", &self.dir)));
        }
        result
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("kura-testkit: stopping PostgreSQL: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
