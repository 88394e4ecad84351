#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! redb on kura-fs: a workload of inserts, updates and deletes, SIGKILLed at random
//! points, reopened and checked against a model; no inserted plaintext on disk.
//!
//! The writer runs in a child process: this test binary itself, re-run with
//! `KURA_FS_REDB_CHILD` set. It appends the number of each committed transaction to a
//! log after the commit returns; after a kill the database must hold exactly the state
//! after the last logged transaction or the one after it (committed, not yet logged).
//! `KURA_CRASH_TRIALS` sets the number of kills (default 30), `KURA_CRASH_SEED` replays.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kura_crypto::Key256;
use kura_fs::{EncryptedFs, Method, Options, RedbBackend};
use kura_keys::clock::SystemClock;
use kura_keys::config::{DEFAULT_ROTATION_PERIOD, Method as KeyMethod};
use kura_keys::{Keyring, KeyringSettings, LocalMasterKey};
use kura_store::SqliteKeystore;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const T: TableDefinition<u64, &str> = TableDefinition::new("t");
const CHILD: &str = "KURA_FS_REDB_CHILD";
const MARK: &str = "secret-plaintext-marker";

fn master(dir: &Path) -> Key256 {
    let p = dir.join("master.key");
    if let Ok(b) = std::fs::read(&p) {
        return Key256::from_slice(&b, "test key").unwrap();
    }
    let k = Key256::generate().unwrap();
    std::fs::write(&p, k.expose_secret()).unwrap();
    k
}

fn keyring(dir: &Path) -> Arc<Keyring> {
    let store = Arc::new(SqliteKeystore::open(&dir.join("keystore.db")).unwrap());
    let master = Arc::new(LocalMasterKey::new(&master(dir), "test".into()).unwrap());
    let settings = KeyringSettings::new(KeyMethod::default(), DEFAULT_ROTATION_PERIOD);
    let clock = Arc::new(SystemClock);
    Arc::new(
        match Keyring::open(
            store.clone(),
            master.clone(),
            None,
            settings.clone(),
            clock.clone(),
        ) {
            Ok((k, _)) => k,
            Err(_) => Keyring::init(store, master, settings, clock).unwrap(),
        },
    )
}

fn database(dir: &Path) -> Database {
    let fs = EncryptedFs::open(
        &dir.join("root"),
        keyring(dir),
        Options {
            method: Method::Aes256GcmPage,
            file_dictionary_log: true,
        },
    )
    .unwrap();
    let backend = RedbBackend::open(&fs, "db.redb").unwrap();
    Database::builder().create_with_backend(backend).unwrap()
}

/// Transaction `t` of the workload, applied to `m`.
fn apply(t: u64, m: &mut BTreeMap<u64, String>) {
    for i in 0..20 {
        m.insert(
            t * 20 + i,
            format!("{MARK}-{t}-{i}-{}", "x".repeat((i * 37 % 300) as usize)),
        );
    }
    if t > 0 {
        let k = (t * 7919) % (t * 20);
        m.insert(k, format!("{MARK}-updated-{t}"));
        m.remove(&((t * 104_729 + 3) % (t * 20)));
    }
}

fn model(n: u64) -> BTreeMap<u64, String> {
    let mut m = BTreeMap::new();
    for t in 0..n {
        apply(t, &mut m);
    }
    m
}

fn contents(db: &Database) -> BTreeMap<u64, String> {
    let tx = db.begin_read().unwrap();
    match tx.open_table(T) {
        Ok(t) => t
            .iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value(), v.value().to_string())
            })
            .collect(),
        Err(redb::TableError::TableDoesNotExist(_)) => BTreeMap::new(),
        Err(e) => panic!("{e}"),
    }
}

fn logged(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse::<u64>().ok())
        .max()
        .map_or(0, |t| t + 1)
}

/// The child: continues the workload from what the database holds, forever.
fn child(dir: &Path) {
    let db = database(dir);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))
        .unwrap();
    let mut t = logged(dir);
    // A commit may have landed without its log line.
    if contents(&db) == model(t + 1) {
        writeln!(log, "{t}").unwrap();
        t += 1;
    }
    loop {
        let mut m = BTreeMap::new();
        apply(t, &mut m);
        let mut tx = db.begin_write().unwrap();
        tx.set_two_phase_commit(true);
        {
            let mut table = tx.open_table(T).unwrap();
            let before = model(t);
            let after = model(t + 1);
            for (k, v) in &after {
                if before.get(k) != Some(v) {
                    table.insert(*k, v.as_str()).unwrap();
                }
            }
            for k in before.keys() {
                if !after.contains_key(k) {
                    table.remove(*k).unwrap();
                }
            }
        }
        tx.commit().unwrap();
        writeln!(log, "{t}").unwrap();
        log.sync_data().unwrap();
        t += 1;
    }
}

fn seed() -> u64 {
    std::env::var("KURA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

#[test]
fn redb_survives_kill_9_and_keeps_no_plaintext_on_disk() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child(&PathBuf::from(dir));
        return;
    }
    let trials: usize = std::env::var("KURA_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed = seed();
    eprintln!("KURA_CRASH_SEED={seed}");
    let mut rng = kura_testkit::Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    for trial in 0..trials {
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "redb_survives_kill_9_and_keeps_no_plaintext_on_disk",
                "--nocapture",
            ])
            .env(CHILD, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + rng.below(300)));
        c.kill().unwrap();
        c.wait().unwrap();
        let n = logged(dir.path());
        let db = database(dir.path());
        let got = contents(&db);
        assert!(
            got == model(n) || got == model(n + 1),
            "trial {trial} (seed {seed}): the database holds neither the state after {n} nor {} transactions ({} keys)",
            n + 1,
            got.len()
        );
    }
    assert!(logged(dir.path()) > 0, "no transaction ever committed");
    // Nothing inserted is on disk in the clear.
    for f in walk(&dir.path().join("root")) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(MARK.len()).any(|w| w == MARK.as_bytes()),
            "{} holds plaintext",
            f.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
