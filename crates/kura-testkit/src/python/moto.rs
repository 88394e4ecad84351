//! A moto server (the AWS stand-in) from the pinned environment, on loopback.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A moto server (`moto_server -H 127.0.0.1 -p <port>`) from a [`PythonEnv`], on
/// loopback only; killed (SIGKILL, by its handle) and reaped on drop.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl MotoServer {
    /// Starts moto on a free loopback port and waits (at most [`MOTO_START_TIMEOUT`]) until
    /// `GET /moto-api/` answers 200. A server that exits at once (another process took the
    /// port in between) is retried on a new port, twice.
    pub fn start(env: &PythonEnv) -> io::Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(env) {
                Ok(s) => return Ok(s),
                Err((e, true)) if attempt < 3 => eprintln!("kura-testkit: {e}; retrying"),
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Starts moto once; the error's flag says whether it is worth a retry.
    fn try_start(env: &PythonEnv) -> Result<Self, (io::Error, bool)> {
        let port = free_port().map_err(|e| (e, false))?;
        let log = std::env::temp_dir().join(format!(
            "kura-moto-{}-{}-{port}.log",
            std::process::id(),
            now_nanos()
        ));
        let out = File::create(&log).map_err(|e| (context(e, "creating", &log), false))?;
        let err = out.try_clone().map_err(|e| (e, false))?;
        let program = env.moto_server();
        let child = env
            .command(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                let _ = fs::remove_file(&log);
                let msg = format!("kura-testkit: could not start {}: {e}", program.display());
                (io::Error::new(e.kind(), msg), false)
            })?;
        // From here on, dropping `server` kills the child and removes the log.
        let mut server = Self { child, port, log };
        let deadline = Instant::now() + MOTO_START_TIMEOUT;
        loop {
            match server.child.try_wait() {
                Ok(Some(status)) => {
                    let msg = format!(
                        "kura-testkit: moto_server on 127.0.0.1:{port} exited ({status}) before \
                         answering; its output:\n{}",
                        server.output()
                    );
                    return Err((io::Error::other(msg), true));
                }
                Ok(None) => {}
                Err(e) => return Err((e, false)),
            }
            if http_get_ok(port, "/moto-api/") {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                let msg = format!(
                    "kura-testkit: moto_server on 127.0.0.1:{port} did not answer GET /moto-api/ \
                     within {}s; its output:\n{}",
                    MOTO_START_TIMEOUT.as_secs(),
                    server.output()
                );
                return Err((io::Error::new(io::ErrorKind::TimedOut, msg), false));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The endpoint URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port moto listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server has printed so far (the end of it).
    pub fn output(&self) -> String {
        fs::read(&self.log).map_or_else(|e| format!("({e})"), |b| tail(&b))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Our own child, not yet reaped: its pid cannot have been reused.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}

/// Whether `GET path` on 127.0.0.1:`port` answers with status 200.
pub(super) fn http_get_ok(port: u16, path: &str) -> bool {
    crate::http_get(port, path).is_ok_and(|(status, _)| status == 200)
}
