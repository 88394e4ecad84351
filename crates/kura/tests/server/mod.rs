//! A `kura server --dev` child on a free loopback port, stopped on drop, and helpers to
//! drive it with the pinned Python clients.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kura_testkit::{PythonEnv, free_port, python_env, with_aws_credentials};

pub(crate) const REGION: &str = "us-east-1";

/// A running server.
pub(crate) struct Server {
    child: Child,
    pub(crate) endpoint: String,
    pub(crate) access_key_id: String,
    pub(crate) secret: String,
    pub(crate) data_dir: PathBuf,
    /// The variables the banner's `export` line sets.
    pub(crate) exports: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

fn kura_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kura"))
}

/// A `kura` command with a clean environment.
pub(crate) fn kura(data_dir: &Path) -> Command {
    let mut c = Command::new(kura_bin());
    for v in kura_testkit::KURA_VARS {
        c.env_remove(v);
    }
    c.env("KURA_LOG", "warn")
        .env("KURA_DATA_DIR", data_dir)
        .env("KURA_MASTER_KEY_FILE", data_dir.join("master.key"));
    c
}

impl Server {
    /// Starts `kura server --dev` in a new temporary directory.
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("dev");
        let mut s = Self::start_in(&data);
        s._dir = Some(dir);
        s
    }

    /// Starts `kura server --dev` on `data_dir` (created or reused).
    pub(crate) fn start_in(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// Starts `kura server --dev` on `data_dir` with `extra` arguments.
    pub(crate) fn start_with(data_dir: &Path, extra: &[&str]) -> Self {
        let port = free_port().unwrap();
        let mut child = kura(data_dir)
            .args(["server", "--dev", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut akid, mut secret) = (String::new(), String::new());
        let mut endpoint = format!("http://127.0.0.1:{port}");
        let mut exports = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "server did not print its banner");
            let Some(Ok(line)) = lines.next() else {
                panic!(
                    "server exited before printing its banner: {:?}",
                    child.wait()
                );
            };
            if let Some(rest) = line.strip_prefix("kura KMS listening on ") {
                endpoint = rest.split_whitespace().next().unwrap().to_string();
            }
            if let Some(rest) = line.strip_prefix("export ") {
                exports = rest
                    .split_whitespace()
                    .filter_map(|w| w.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
            }
            for word in line.split_whitespace() {
                if let Some(v) = word.strip_prefix("AWS_ACCESS_KEY_ID=") {
                    akid = v.to_string();
                }
                if let Some(v) = word.strip_prefix("AWS_SECRET_ACCESS_KEY=") {
                    secret = v.to_string();
                }
            }
            if line.starts_with("aws --endpoint-url") {
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        assert!(
            akid.starts_with("AKIA") && secret.len() == 40,
            "banner credentials"
        );
        Self {
            child,
            endpoint,
            access_key_id: akid,
            secret,
            data_dir: data_dir.to_path_buf(),
            exports,
            _dir: None,
        }
    }

    /// The child's pid (to signal it).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a Python script with boto3 pointed at this server (credentials `akid`/`secret`,
    /// or the dev user's). The script gets `ENDPOINT` in its environment.
    pub(crate) fn python(&self, script: &str, creds: Option<(&str, &str)>) -> Output {
        let env = py();
        let mut c = env.command(env.python());
        let (a, s) = creds.unwrap_or((&self.access_key_id, &self.secret));
        with_aws_credentials(&mut c, a, s, REGION);
        c.env("ENDPOINT", &self.endpoint).arg("-c").arg(script);
        c.output().unwrap()
    }

    /// [`Server::python`] for a script that must succeed and print `OK`: its stdout.
    pub(crate) fn python_ok(&self, script: &str, creds: Option<(&str, &str)>) -> String {
        let out = ok(&self.python(script, creds));
        assert!(out.contains("OK"), "{out}");
        out
    }

    /// [`Server::aws`] with `--output text`, which must succeed: its stdout, trimmed.
    pub(crate) fn aws_text(&self, args: &[&str]) -> String {
        let mut a = args.to_vec();
        a.extend(["--output", "text"]);
        ok(&self.aws(&a)).trim().to_string()
    }

    /// Runs the AWS CLI against this server.
    pub(crate) fn aws(&self, args: &[&str]) -> Output {
        let env = py();
        let mut c = env.command(env.aws_cli());
        with_aws_credentials(&mut c, &self.access_key_id, &self.secret, REGION);
        c.args(["--endpoint-url", &self.endpoint]).args(args);
        c.output().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An AWS SDK KMS client on `endpoint` (region [`REGION`]) with the access key `akid` and
/// its secret.
pub(crate) async fn kms_client(endpoint: &str, akid: &str, secret: &str) -> aws_sdk_kms::Client {
    use aws_sdk_kms::config::{Credentials, Region};
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(akid, secret, None, None, "t"))
        .load()
        .await;
    aws_sdk_kms::Client::new(&conf)
}

pub(crate) fn py() -> &'static PythonEnv {
    static ENV: std::sync::OnceLock<PythonEnv> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        python_env().unwrap_or_else(|e| panic!("the Python test environment is required: {e}"))
    })
}

/// Asserts a script or command succeeded, showing its output otherwise.
pub(crate) fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "failed: {}\nstdout:\n{out}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Python prelude: a boto3 KMS client on `ENDPOINT` and `expect_error`.
pub(crate) const PRELUDE: &str = r#"
import base64, json, os, sys, boto3, botocore
kms = boto3.client("kms", endpoint_url=os.environ["ENDPOINT"])
def expect_error(code, f, *a, **k):
    try:
        f(*a, **k)
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}: {e}"
        return e
    raise AssertionError(f"expected {code}, but the call succeeded")
"#;

/// `GET path` on a plain-HTTP server; the body of a 200 answer.
pub(crate) fn http_get(endpoint: &str, path: &str) -> String {
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let (status, body) = kura_testkit::http_get(port, path).unwrap();
    assert_eq!(status, 200, "{body}");
    body
}
