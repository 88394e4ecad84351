#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Crash tests: run the debug `kura` binary, SIGKILL it at a random instant, then check
//! what it left behind.
//!
//! - Rotation: the keystore stays consistent (one active KEK, exactly one active data
//!   key, each kill adds a rotation wholly or not at all), and everything encrypted so
//!   far still decrypts.
//! - Encryption with `-o`: the output is absent or a complete stream that decrypts to the
//!   input, never a partial file. A killed run may leave its hidden temporary file
//!   (`.out.<pid>-<n>-<nanos>.tmp`): nothing can delete it after SIGKILL.
//! - `kura keygen`: the key file is absent or a complete key (64 hex digits and a
//!   newline, mode 0400). Likewise a killed run may leave its `.k.<pid>-…tmp`.
//!
//! Kill delays are drawn uniformly from 0 to 1.25 times the median uninterrupted run
//! (at least 30 ms), so that kills land everywhere in a run and some runs finish. The
//! seed is printed (shown when a test fails); `KURA_CRASH_SEED` replays the delays and
//! data, `KURA_CRASH_TRIALS` sets the number of trials (default 40 per test). The rotation
//! test re-checks every sample after every trial, so its cost grows with the square of the
//! trials (40: seconds; 400: minutes).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kura_testkit::{
    Crash, CrashHarness, Kura, atomic_tmp_pid, calibrate, dir_names, is_hex_key_file,
    trials_from_env, write_master_key,
};
use serde_json::Value;
use tempfile::TempDir;

const DEFAULT_TRIALS: usize = 40;
const MASTER_KEY: &str = "master.key";
const DATA_DIR: &str = "data";

fn kura_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kura"))
}

/// The span kill delays are drawn from: a quarter more than an uninterrupted run, so that
/// some runs finish, and at least 30 ms.
fn kill_span(median: Duration) -> Duration {
    (median * 5 / 4).max(Duration::from_millis(30))
}

/// A temporary directory holding a master key file and (if `init`) a keystore in `data/`;
/// every kura run uses it as its working directory.
struct Sandbox {
    dir: TempDir,
    kura: Kura,
}

impl Sandbox {
    fn new(h: &mut CrashHarness, init: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut key = [0u8; 32];
        h.rng().fill(&mut key);
        let mk = write_master_key(dir.path(), MASTER_KEY, &key).unwrap();
        let kura = Kura::new(kura_bin())
            .current_dir(dir.path())
            .global_arg("--data-dir")
            .global_arg(dir.path().join(DATA_DIR))
            .global_arg("--master-key-file")
            .global_arg(mk);
        if init {
            kura.success(["init"]).unwrap();
        }
        Self { dir, kura }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Counts of how trials ended.
#[derive(Debug, Default)]
struct Tally {
    killed: usize,
    finished: usize,
    /// Killed runs whose change (or output) was nevertheless complete.
    killed_after_commit: usize,
    stray_tmp: usize,
}

impl Tally {
    fn count(&mut self, c: &Crash) {
        if c.killed() {
            self.killed += 1;
        } else {
            self.finished += 1;
        }
    }
}

/// A run that exited by itself must have succeeded: SIGKILL is the only failure injected.
#[track_caller]
fn finished_runs_succeed(c: &Crash, what: &str) {
    if c.exited_before_kill {
        assert!(
            c.status.success(),
            "{what}: exited by itself with {}",
            c.status
        );
    }
}

// ---------------------------------------------------------------------------------------
// Rotation

/// What `kura status --output json` shows, checked for consistency.
#[derive(Debug)]
struct Keystore {
    generation: u64,
    kek: u64,
    keks: Vec<(u64, String)>,
    active_data_key: u64,
    data_keys: Vec<(u64, String)>,
}

fn id(v: &Value) -> u64 {
    let id: u64 = v
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a key id: {v}"));
    assert_ne!(id, 0, "key id 0");
    id
}

fn ids_and_states(v: &Value) -> Vec<(u64, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|k| (id(&k["id"]), k["state"].as_str().unwrap().to_string()))
        .collect()
}

/// The ids of the `active` entries of a list from [`ids_and_states`].
fn active_ids(entries: &[(u64, String)]) -> Vec<u64> {
    entries
        .iter()
        .filter(|(_, s)| s == "active")
        .map(|(i, _)| *i)
        .collect()
}

/// `kura status --output json` succeeds and shows one active KEK (the one named in
/// `kek.id`), exactly one active data key and nothing destroyed; the data directory holds
/// the database and its WAL files only.
#[track_caller]
fn keystore(s: &Sandbox, what: &str) -> Keystore {
    let out = s.kura.output(["--output", "json", "status"]).unwrap();
    assert!(
        out.status.success(),
        "{what}: kura status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kek = id(&v["kek"]["id"]);
    assert_eq!(v["kek"]["state"], "active", "{what}: {v}");
    let keks = ids_and_states(&v["keks"]);
    let active_keks = active_ids(&keks);
    assert_eq!(active_keks, [kek], "{what}: active KEKs: {v}");
    assert!(
        keks.iter().all(|(_, s)| s == "active" || s == "retired"),
        "{what}: {v}"
    );
    let data_keys = ids_and_states(&v["data_keys"]);
    let active = active_ids(&data_keys);
    assert_eq!(active.len(), 1, "{what}: active data keys: {v}");
    assert!(
        data_keys
            .iter()
            .all(|(_, s)| s == "active" || s == "decrypt-only"),
        "{what}: {v}"
    );
    let generation = v["generation"].as_u64().unwrap();
    let names = dir_names(&s.path(DATA_DIR)).unwrap();
    assert!(
        names
            .iter()
            .all(|n| ["keystore.db", "keystore.db-wal", "keystore.db-shm"].contains(&n.as_str())),
        "{what}: the data directory holds {names:?}"
    );
    Keystore {
        generation,
        kek,
        keks,
        active_data_key: active[0],
        data_keys,
    }
}

/// A file encrypted earlier, with its plaintext and context.
struct Sample {
    plain: Vec<u8>,
    enc: PathBuf,
    context: String,
}

/// Encrypts random data (0 to ~3 chunks) under context `n=<n>`, then checks that it
/// decrypts: the fresh round trip after each trial.
fn new_sample(s: &Sandbox, h: &mut CrashHarness, n: usize) -> Sample {
    let len = usize::try_from(h.rng().below(200_000)).unwrap();
    let plain = h.rng().bytes(len);
    let input = s.path(&format!("sample-{n}"));
    let enc = s.path(&format!("sample-{n}.enc"));
    fs::write(&input, &plain).unwrap();
    let context = format!("n={n}");
    s.kura
        .success([
            "encrypt".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            enc.as_os_str(),
            "--context".as_ref(),
            context.as_ref(),
        ])
        .unwrap();
    fs::remove_file(&input).unwrap();
    let sample = Sample {
        plain,
        enc,
        context,
    };
    check_sample(s, &sample, "fresh round trip");
    sample
}

#[track_caller]
fn check_sample(s: &Sandbox, sample: &Sample, what: &str) {
    let out = s
        .kura
        .output([
            "decrypt".as_ref(),
            sample.enc.as_os_str(),
            "--context".as_ref(),
            sample.context.as_ref(),
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: cannot decrypt {}: {}",
        sample.enc.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == sample.plain,
        "{what}: {} decrypts to other bytes",
        sample.enc.display()
    );
}

#[test]
fn rotation_survives_kill_9() {
    let start = Instant::now();
    let mut h = CrashHarness::from_env("rotation").unwrap();
    let trials = trials_from_env(DEFAULT_TRIALS).unwrap();
    let s = Sandbox::new(&mut h, true);
    let mut samples = vec![new_sample(&s, &mut h, 0)];
    let median = calibrate(|| s.kura.command(["rotate", "kek"]), 3)
        .unwrap()
        .max(calibrate(|| s.kura.command(["rotate", "data-key"]), 3).unwrap());
    let span = kill_span(median);
    let mut before = keystore(&s, "after calibration");
    let mut tally = Tally::default();

    for trial in 0..trials {
        let which = if trial % 2 == 0 { "kek" } else { "data-key" };
        let crash = h
            .run_and_kill(&mut s.kura.command(["rotate", which]), span)
            .unwrap();
        let what = format!(
            "seed {} trial {trial} (rotate {which}, {crash:?})",
            h.seed()
        );
        tally.count(&crash);
        finished_runs_succeed(&crash, &what);
        let after = keystore(&s, &what);

        // The rotation happened wholly (one commit) or not at all.
        let committed = after.generation != before.generation;
        assert!(
            after.generation == before.generation || after.generation == before.generation + 1,
            "{what}: generation {} -> {}",
            before.generation,
            after.generation
        );
        if crash.exited_before_kill {
            assert!(committed, "{what}: finished without a commit");
        } else if committed {
            tally.killed_after_commit += 1;
        }
        let (new_keks, new_data_keys) = if committed {
            match which {
                "kek" => (1, 0),
                _ => (0, 1),
            }
        } else {
            (0, 0)
        };
        assert_eq!(
            after.keks.len(),
            before.keks.len() + new_keks,
            "{what}: {after:?}"
        );
        assert_eq!(
            after.data_keys.len(),
            before.data_keys.len() + new_data_keys,
            "{what}: {after:?}"
        );
        assert_eq!(after.kek != before.kek, new_keks == 1, "{what}: {after:?}");
        assert_eq!(
            after.active_data_key != before.active_data_key,
            new_data_keys == 1,
            "{what}: {after:?}"
        );
        // Nothing that was there is lost.
        for (k, _) in &before.keks {
            assert!(
                after.keks.iter().any(|(a, _)| a == k),
                "{what}: KEK {k} lost"
            );
        }
        for (k, _) in &before.data_keys {
            assert!(
                after.data_keys.iter().any(|(a, _)| a == k),
                "{what}: data key {k} lost"
            );
        }

        for sample in &samples {
            check_sample(&s, sample, &what);
        }
        samples.push(new_sample(&s, &mut h, trial + 1));
        before = after;
    }
    eprintln!(
        "[rotation] {trials} trials in {:?}: kill span {span:?} (median run {median:?}); {tally:?}; {} KEKs, {} data keys, {} samples verified",
        start.elapsed(),
        before.keks.len(),
        before.data_keys.len(),
        samples.len()
    );
}

// ---------------------------------------------------------------------------------------
// Encryption

/// Removes the temporary files a killed run left, after checking that each one is the
/// hidden `.<dest>.<pid>-…tmp` of that run (`crash`) with mode `mode` and at most
/// `max_len` bytes. Returns their sizes.
#[track_caller]
fn clean_stray_tmp(
    dir: &Path,
    known: &[&str],
    dest: &str,
    crash: &Crash,
    mode: u32,
    max_len: u64,
    what: &str,
) -> Vec<u64> {
    let mut sizes = Vec::new();
    for name in dir_names(dir).unwrap() {
        if known.contains(&name.as_str()) {
            continue;
        }
        assert_eq!(
            atomic_tmp_pid(&name, dest),
            Some(crash.pid),
            "{what}: unexpected file {name:?}"
        );
        assert!(
            crash.killed(),
            "{what}: {name:?} left by a run that finished"
        );
        let p = dir.join(&name);
        let m = fs::symlink_metadata(&p).unwrap();
        assert!(m.is_file(), "{what}: {name:?}");
        assert_eq!(m.permissions().mode() & 0o777, mode, "{what}: {name:?}");
        assert!(
            m.len() <= max_len,
            "{what}: {name:?} holds {} bytes",
            m.len()
        );
        fs::remove_file(&p).unwrap();
        sizes.push(m.len());
    }
    sizes
}

#[test]
fn encrypt_output_is_never_partial() {
    let start = Instant::now();
    let mut h = CrashHarness::from_env("encrypt").unwrap();
    let trials = trials_from_env(DEFAULT_TRIALS).unwrap();
    let s = Sandbox::new(&mut h, true);
    let input = h.rng().bytes(32 << 20);
    fs::write(s.path("big"), &input).unwrap();
    let out = s.path("out");
    let encrypt = || s.kura.command(["encrypt", "big", "-o", "out"]);
    let decrypt_out = || s.kura.output(["decrypt", "out"]).unwrap();

    let median = calibrate(encrypt, 3).unwrap();
    let expected_len = fs::metadata(&out).unwrap().len();
    assert!(s.kura.success(["decrypt", "out"]).unwrap().stdout == input);
    fs::remove_file(&out).unwrap();
    let span = kill_span(median);
    let known = ["big", "out", MASTER_KEY, DATA_DIR];
    let mut tally = Tally::default();

    for trial in 0..trials {
        let crash = h.run_and_kill(&mut encrypt(), span).unwrap();
        let what = format!("seed {} trial {trial} ({crash:?})", h.seed());
        tally.count(&crash);
        finished_runs_succeed(&crash, &what);
        match fs::symlink_metadata(&out) {
            Ok(m) => {
                assert_eq!(m.len(), expected_len, "{what}: a partial output file");
                assert_eq!(m.permissions().mode() & 0o777, 0o600, "{what}");
                let d = decrypt_out();
                assert!(
                    d.status.success(),
                    "{what}: the output does not decrypt: {}",
                    String::from_utf8_lossy(&d.stderr)
                );
                assert!(
                    d.stdout == input,
                    "{what}: the output decrypts to other bytes"
                );
                if crash.killed() {
                    tally.killed_after_commit += 1;
                }
                fs::remove_file(&out).unwrap();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert!(crash.killed(), "{what}: finished but wrote no output");
            }
            Err(e) => panic!("{what}: {e}"),
        }
        tally.stray_tmp += clean_stray_tmp(
            s.dir.path(),
            &known,
            "out",
            &crash,
            0o600,
            expected_len,
            &what,
        )
        .len();
    }
    eprintln!(
        "[encrypt] {trials} trials in {:?}: kill span {span:?} (median run {median:?}); {tally:?} \
         (stray_tmp: hidden .out.<pid>-…tmp files of killed runs, checked and removed)",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// Key generation

#[test]
fn keygen_output_is_never_partial() {
    let start = Instant::now();
    let mut h = CrashHarness::from_env("keygen").unwrap();
    let trials = trials_from_env(DEFAULT_TRIALS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kura = Kura::new(kura_bin()).current_dir(dir.path());
    let mut n = 0;
    let median = calibrate(
        || {
            n += 1;
            kura.command(["keygen", "--out", &format!("calibration-{n}")])
        },
        3,
    )
    .unwrap();
    for name in dir_names(dir.path()).unwrap() {
        let content = fs::read(dir.path().join(&name)).unwrap();
        assert!(is_hex_key_file(&content), "{name}");
        fs::remove_file(dir.path().join(&name)).unwrap();
    }
    let span = kill_span(median);
    let k = dir.path().join("k");
    let mut tally = Tally::default();
    let mut tmp_linked_to_key = 0;
    // Stray temporary files holding a whole key (written, not yet or never linked).
    let mut tmp_with_whole_key = 0;

    for trial in 0..trials {
        let crash = h
            .run_and_kill(&mut kura.command(["keygen", "--out", "k"]), span)
            .unwrap();
        let what = format!("seed {} trial {trial} ({crash:?})", h.seed());
        tally.count(&crash);
        finished_runs_succeed(&crash, &what);
        match fs::symlink_metadata(&k) {
            Ok(m) => {
                assert!(m.is_file(), "{what}");
                assert_eq!(m.permissions().mode() & 0o777, 0o400, "{what}");
                let content = fs::read(&k).unwrap();
                assert!(
                    is_hex_key_file(&content),
                    "{what}: a partial or malformed key file: {} bytes",
                    content.len()
                );
                if crash.killed() {
                    tally.killed_after_commit += 1;
                }
                // Killed between link(2) and unlink(2) of the no-clobber commit, the
                // temporary name is a second link to the key.
                if m.nlink() > 1 {
                    tmp_linked_to_key += 1;
                }
                fs::remove_file(&k).unwrap();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert!(crash.killed(), "{what}: finished but wrote no key");
            }
            Err(e) => panic!("{what}: {e}"),
        }
        let strays = clean_stray_tmp(dir.path(), &["k"], "k", &crash, 0o400, 65, &what);
        tally.stray_tmp += strays.len();
        tmp_with_whole_key += strays.iter().filter(|n| **n == 65).count();
    }
    eprintln!(
        "[keygen] {trials} trials in {:?}: kill span {span:?} (median run {median:?}); {tally:?}; \
         of the stray tmp files, {tmp_with_whole_key} held a whole key and {tmp_linked_to_key} \
         were a second link to a committed key",
        start.elapsed()
    );
}
