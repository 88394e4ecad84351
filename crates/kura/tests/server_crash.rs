#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Crash test of `kura server`: SIGKILL during a burst of key management.
//!
//! Each trial starts `kura server --dev` on the same data directory and a boto3 script in
//! the background whose four threads loop, as fast as they can, over CreateKey,
//! CreateAlias and then ScheduleKeyDeletion or Encrypt. The script appends the start of
//! every round and every acknowledged operation to a log (flushed after each line). At a random instant after
//! the first acknowledgement the server gets SIGKILL (only our child, by its pid); the
//! script stops on the connection errors. The server is started again on the same data
//! directory, and boto3 checks that the keystore is consistent and that nothing
//! acknowledged was lost:
//!
//! - ListKeys (paginated) works, DescribeKey works for every key listed, and every enabled
//!   key has its material (GenerateDataKey works);
//! - every alias targets a key that exists (and resolves through DescribeKey);
//! - every acknowledged CreateKey, CreateAlias and ScheduleKeyDeletion of every trial so
//!   far is there, and every acknowledged Encrypt still decrypts to its plaintext;
//! - new keys can be created and used.
//!
//! Whether a request was in flight at the kill cannot be seen from the client: botocore
//! (through urllib3) silently resends a request whose connection closed before the
//! response on a new connection, whatever its retry settings, and then reports the
//! refused connection (EndpointConnectionError). The log shows the rounds under way.
//!
//! The seed is printed; `KURA_CRASH_SEED` replays the kill delays, `KURA_CRASH_TRIALS`
//! sets the number of trials (default 3, about 15 s in all).

mod server;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kura_testkit::{CrashHarness, trials_from_env, with_aws_credentials};
use server::{PRELUDE, REGION, Server, kura, ok, py};

const DEFAULT_TRIALS: usize = 3;
/// Kills land up to this long after the burst's first acknowledged operation.
const MAX_KILL_DELAY: Duration = Duration::from_millis(1500);

/// The burst: four threads, each with its own client, no retries (a retry would only hit
/// the dead server), stopping by themselves after 30 s or 500 rounds at the latest.
const BURST: &str = r#"
import base64, json, os, sys, threading, time, boto3, botocore
from botocore.config import Config
cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=10)
trial = os.environ["TRIAL"]
log = open(os.environ["LOG"], "a")
lock = threading.Lock()
def record(**r):
    with lock:
        log.write(json.dumps(r) + "\n")
        log.flush()
b64 = lambda b: base64.b64encode(b).decode()
clients = [boto3.client("kms", endpoint_url=os.environ["ENDPOINT"], config=cfg) for _ in range(4)]
deadline = time.time() + 30
stopped_by, failures = [], []
def worker(w, kms):
    try:
        for i in range(500):
            if time.time() > deadline:
                return
            name = f"t{trial}-w{w}-{i}"
            record(op="begin", worker=w, round=i)
            k = kms.create_key(Description=name)["KeyMetadata"]["KeyId"]
            record(op="key", key=k)
            kms.create_alias(AliasName=f"alias/{name}", TargetKeyId=k)
            record(op="alias", alias=f"alias/{name}", key=k)
            if i % 2:
                d = kms.schedule_key_deletion(KeyId=k, PendingWindowInDays=7)
                assert d["KeyState"] == "PendingDeletion", d
                record(op="scheduled", key=k)
            else:
                pt, ctx = os.urandom(1 + i % 97), {"name": name}
                ct = kms.encrypt(KeyId=f"alias/{name}", Plaintext=pt, EncryptionContext=ctx)["CiphertextBlob"]
                record(op="encrypt", key=k, ct=b64(ct), pt=b64(pt), ctx=ctx)
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as e:
        stopped_by.append(type(e).__name__)  # the server is gone
    except Exception as e:
        failures.append(repr(e))
threads = [threading.Thread(target=worker, args=(w, c)) for w, c in enumerate(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"stopped_by": stopped_by, "failures": failures}))
sys.exit(1 if failures else 0)
"#;

/// The check after a restart; `LOGS` is set before it.
const VERIFY: &str = r#"
import glob
records = [json.loads(l) for p in sorted(glob.glob(os.path.join(LOGS, "*.jsonl"))) for l in open(p) if l.strip()]
keys = [k["KeyId"] for p in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 37}) for k in p["Keys"]]
assert len(keys) == len(set(keys)), "ListKeys repeats keys"
keys = set(keys)
states = {}
for k in keys:
    m = kms.describe_key(KeyId=k)["KeyMetadata"]
    assert m["KeyId"] == k, m
    assert m["KeyState"] in ("Enabled", "PendingDeletion"), m
    states[k] = m["KeyState"]
    if m["KeyState"] == "Enabled":
        # CreateKey stores a key and its material in one transaction.
        assert len(kms.generate_data_key(KeyId=k, KeySpec="AES_128")["Plaintext"]) == 16
aliases = {a["AliasName"]: a.get("TargetKeyId") for p in kms.get_paginator("list_aliases").paginate(PaginationConfig={"PageSize": 41}) for a in p["Aliases"]}
for name, target in aliases.items():
    assert target in keys, f"alias {name} targets {target}, which does not exist"
    assert kms.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == target
seen = {}
for r in records:
    op = r["op"]
    seen[op] = seen.get(op, 0) + 1
    if op == "begin":
        pass
    elif op == "key":
        assert r["key"] in keys, f"acknowledged key {r['key']} is lost"
    elif op == "alias":
        assert aliases.get(r["alias"]) == r["key"], f"acknowledged alias {r['alias']} is lost"
    elif op == "scheduled":
        assert states[r["key"]] == "PendingDeletion", f"acknowledged deletion of {r['key']} is lost"
    elif op == "encrypt":
        d = kms.decrypt(CiphertextBlob=base64.b64decode(r["ct"]), EncryptionContext=r["ctx"])
        assert d["Plaintext"] == base64.b64decode(r["pt"]), r
        assert d["KeyId"].endswith("/" + r["key"]), (d["KeyId"], r)
new = kms.create_key(Description="after the crash")["KeyMetadata"]["KeyId"]
kms.create_alias(AliasName=f"alias/after-{len(keys)}", TargetKeyId=new)
ct = kms.encrypt(KeyId=f"alias/after-{len(keys)}", Plaintext=b"after the crash", EncryptionContext={"a": "b"})["CiphertextBlob"]
assert kms.decrypt(CiphertextBlob=ct, EncryptionContext={"a": "b"})["Plaintext"] == b"after the crash"
print(json.dumps({"keys": len(keys), "pending_deletion": sum(1 for s in states.values() if s == "PendingDeletion"), "aliases": len(aliases), "acknowledged": seen}))
"#;

/// Starts the burst against `s`, logging to `log`; its stdout and stderr go to files
/// beside the log.
fn start_burst(s: &Server, log: &Path, trial: usize) -> Child {
    let env = py();
    let mut c = env.command(env.python());
    with_aws_credentials(&mut c, &s.access_key_id, &s.secret, REGION);
    c.env("ENDPOINT", &s.endpoint)
        .env("LOG", log)
        .env("TRIAL", trial.to_string())
        .arg("-c")
        .arg(BURST)
        .stdin(Stdio::null())
        .stdout(fs::File::create(log.with_extension("out")).unwrap())
        .stderr(fs::File::create(log.with_extension("err")).unwrap());
    c.spawn().unwrap()
}

/// What the burst printed.
fn burst_output(log: &Path) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        fs::read_to_string(log.with_extension("out")).unwrap_or_default(),
        fs::read_to_string(log.with_extension("err")).unwrap_or_default()
    )
}

/// Waits up to `limit` for `child` to exit; kills it (our child, by its handle) after.
fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Rounds begun and operations acknowledged in the log `p`.
fn progress(p: &Path) -> (usize, usize) {
    let text = fs::read_to_string(p).unwrap_or_default();
    let begun = text
        .lines()
        .filter(|l| l.contains(r#""op": "begin""#))
        .count();
    (begun, text.lines().count() - begun)
}

#[test]
fn keystore_survives_kill_9_during_a_burst_of_key_operations() {
    let started = Instant::now();
    let mut h = CrashHarness::from_env("server-crash").unwrap();
    let trials = trials_from_env(DEFAULT_TRIALS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let verify = format!("{PRELUDE}LOGS = {:?}\n{VERIFY}", logs.to_str().unwrap());

    for trial in 0..trials {
        let what = format!("seed {} trial {trial}", h.seed());
        let s = Server::start_in(&data);
        let log = logs.join(format!("trial-{trial}.jsonl"));
        let mut burst = start_burst(&s, &log, trial);

        // Python takes a moment to import boto3: the clock starts at the first
        // acknowledged operation.
        let deadline = Instant::now() + Duration::from_secs(60);
        while progress(&log).1 == 0 {
            if let Some(st) = burst.try_wait().unwrap() {
                panic!(
                    "{what}: the burst ended ({st}) before the kill\n{}",
                    burst_output(&log)
                );
            }
            assert!(Instant::now() < deadline, "{what}: the burst never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        let delay = h.rng().duration_up_to(MAX_KILL_DELAY);
        std::thread::sleep(delay);
        let running = burst.try_wait().unwrap().is_none();
        let (begun, acked) = progress(&log);
        // Our child, not yet reaped (so its pid cannot have been reused).
        let st = Command::new("kill")
            .arg("-KILL")
            .arg(s.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "{what}: kill -KILL failed");
        drop(s); // reaps it
        assert!(
            running,
            "{what}: the burst ended before the kill\n{}",
            burst_output(&log)
        );

        let st = wait_for(&mut burst, Duration::from_secs(30));
        let out = burst_output(&log);
        assert!(
            st.is_some_and(|st| st.success()),
            "{what}: the burst failed ({st:?}) instead of stopping on connection errors\n{out}"
        );
        eprintln!(
            "[server-crash] {what}: killed {delay:?} after the first acknowledgement, \
             with {begun} rounds begun and {acked} operations acknowledged ({} in the end); {}",
            progress(&log).1,
            out.lines().next().unwrap_or("")
        );

        let s = Server::start_in(&data);
        let report = ok(&s.python(&verify, None));
        eprintln!("[server-crash] {what}: after restart: {}", report.trim());
        assert_eq!(s.stop().code(), Some(0), "{what}: SIGTERM ends the server");
        let status = kura(&data)
            .args(["--output", "json", "status"])
            .output()
            .unwrap();
        ok(&status);
    }
    eprintln!("[server-crash] {trials} trials in {:?}", started.elapsed());
}
