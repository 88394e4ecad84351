//! Several `kura server` nodes on one throwaway PostgreSQL keystore, driven with the AWS
//! SDK for Rust: the cluster, its nodes, and a steady Encrypt/Decrypt load.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use kura_testkit::{PgServer, free_port, write_master_key};
use serde_json::Value;

/// One keystore database, its master key configuration and a user.
pub(crate) struct Cluster {
    pub(crate) pg: PgServer,
    pub(crate) url: String,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
    pub(crate) akid: String,
    pub(crate) secret: String,
    /// More variables for every command and node (AWS credentials for a KMS, say).
    pub(crate) env: Vec<(String, String)>,
}

/// A `kura` command with a clean environment, on the cluster's keystore and configuration.
pub(crate) fn kura(c: &Cluster) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kura"));
    for v in kura_testkit::KURA_VARS {
        cmd.env_remove(v);
    }
    cmd.env("KURA_LOG", "warn")
        .env("KURA_DATABASE_URL", &c.url)
        .env("KURA_CONFIG", &c.config)
        .env("KURA_DATA_DIR", c.dir.path().join("unused"))
        .envs(c.env.iter().map(|(k, v)| (k, v)));
    cmd
}

pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

pub(crate) fn json(c: &Cluster, args: &[&str]) -> Value {
    serde_json::from_str(&run_ok(kura(c).args(args).args(["--output", "json"]))).unwrap()
}

/// Writes the configuration naming `master` (and `previous`) as master key files.
pub(crate) fn write_config(path: &Path, master: &Path, previous: Option<&Path>) {
    let mut t = format!(
        "[security.encryption.master-key]\ntype = \"file\"\npath = \"{}\"\n",
        master.display()
    );
    if let Some(p) = previous {
        t.push_str(&format!(
            "[security.encryption.previous-master-key]\ntype = \"file\"\npath = \"{}\"\n",
            p.display()
        ));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, t).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

impl Cluster {
    pub(crate) fn new() -> Self {
        Self::with_env(&[])
    }

    /// A cluster whose commands and nodes also get the variables `env`.
    pub(crate) fn with_env(env: &[(&str, &str)]) -> Self {
        let pg = PgServer::start().unwrap_or_else(|e| panic!("PostgreSQL is required: {e}"));
        let url = pg.create_database("kura_cluster").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = write_master_key(dir.path(), "m1.key", &[1u8; 32]).unwrap();
        let config = dir.path().join("kura.toml");
        write_config(&config, &key, None);
        let mut c = Self {
            pg,
            url,
            dir,
            config,
            akid: String::new(),
            secret: String::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        run_ok(kura(&c).arg("init"));
        let user = json(&c, &["user", "create", "ops"]);
        c.akid = user["AccessKeyId"].as_str().unwrap().to_string();
        c.secret = user["SecretAccessKey"].as_str().unwrap().to_string();
        c
    }

    pub(crate) fn start_node(&self) -> Node {
        let port = free_port().unwrap();
        let mut child = kura(self)
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--database", &self.url])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let banner = lines.next().unwrap().unwrap();
        assert!(banner.starts_with("kura KMS listening on"), "{banner}");
        std::thread::spawn(move || for _ in lines {});
        Node {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// An SDK client on node `n`, as the cluster's user.
    pub(crate) async fn client(&self, n: &Node) -> Client {
        crate::server::kms_client(&n.endpoint, &self.akid, &self.secret).await
    }

    /// `kura status --output json`.
    pub(crate) fn status(&self) -> Value {
        json(self, &["status"])
    }

    /// Waits until `kura status` satisfies `ok`, at most `limit`.
    pub(crate) fn wait_status(
        &self,
        limit: Duration,
        what: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.status();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}: {s:#}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

pub(crate) struct Node {
    child: Child,
    endpoint: String,
}

impl Node {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new symmetric key (`CreateKey` with no options) made with `kms`: its id.
pub(crate) async fn create_key(kms: &Client) -> String {
    let out = kms.create_key().send().await.unwrap();
    out.key_metadata().unwrap().key_id().to_string()
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn nodes(s: &Value) -> &Vec<Value> {
    s["nodes"].as_array().unwrap()
}

/// A ciphertext the load kept, and its plaintext.
pub(crate) type Kept = (Vec<u8>, Vec<u8>);

/// Steady Encrypt/Decrypt load spread over `clients` until `stop`; counts requests and
/// failures per client. A client whose node is `dead` no longer counts its failures.
pub(crate) struct Load {
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Kept>>>,
}

impl Load {
    pub(crate) fn start(
        rt: &tokio::runtime::Runtime,
        clients: Vec<(Client, Arc<AtomicBool>)>,
        key: &str,
    ) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (i, (kms, dead)) in clients.into_iter().enumerate() {
            let (done, failed, stop, key) =
                (done.clone(), failed.clone(), stop.clone(), key.to_string());
            tasks.push(rt.spawn(async move {
                let mut kept = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let plain = format!("client {i} request {n}").into_bytes();
                    let r = async {
                        let ct = kms
                            .encrypt()
                            .key_id(&key)
                            .plaintext(Blob::new(plain.clone()))
                            .send()
                            .await?;
                        let blob = ct.ciphertext_blob().unwrap().clone();
                        let pt = kms.decrypt().ciphertext_blob(blob.clone()).send().await?;
                        Ok::<_, aws_sdk_kms::Error>((
                            blob.into_inner(),
                            pt.plaintext().unwrap().as_ref().to_vec(),
                        ))
                    }
                    .await;
                    match r {
                        Ok((ct, pt)) => {
                            assert_eq!(pt, plain);
                            done.fetch_add(1, Ordering::Relaxed);
                            if n.is_multiple_of(25) {
                                kept.push((ct, plain));
                            }
                        }
                        Err(e) if !dead.load(Ordering::Relaxed) => {
                            eprintln!("client {i}: {e:?}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                kept
            }));
        }
        Self {
            done,
            failed,
            stop,
            tasks,
        }
    }

    /// Waits until `n` more requests succeeded.
    pub(crate) fn wait_for(&self, n: u64) {
        let target = self.done.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.done.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "the load stalled");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the load; the ciphertexts kept and the number of failures.
    pub(crate) fn finish(self, rt: &tokio::runtime::Runtime) -> (Vec<Kept>, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let mut kept = Vec::new();
        for t in self.tasks {
            kept.extend(rt.block_on(t).unwrap());
        }
        (
            kept,
            self.done.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
