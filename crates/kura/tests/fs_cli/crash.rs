//! `kura fs reencrypt` killed with SIGKILL at random instants, then run again.
//!
//! 240 files (a fifth in page mode, some empty, some in sub-folders) start as plaintext.
//! Each trial rotates the data key (cycling the configured method through three CTR
//! methods), runs `kura fs reencrypt` and kills it after a delay drawn from 0 to 1.25
//! times an uninterrupted run, then:
//!
//! - on every other trial, right after the kill: the root opens, lists exactly the 240
//!   files (besides at most one temporary file), and every file reads to its content,
//!   under its old key or its new one, with its dictionary entry agreeing with its header;
//! - always: a second run finishes the job (nothing failed, rewritten + already current =
//!   240, no temporary file left) and every file reads to its content under the active data
//!   key and the configured method (page-mode files in page mode).
//!
//! `KURA_CRASH_SEED` replays the delays and data; `KURA_CRASH_TRIALS` sets the number of
//! trials (default 12).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kura_fs::{EncryptedFs, Method, Options};
use kura_keys::Keyring;
use kura_testkit::{CrashHarness, Kura, trials_from_env, write_master_key};
use serde_json::Value;
use tempfile::TempDir;

const FILES: usize = 240;
const DEFAULT_TRIALS: usize = 12;
const METHODS: [&str; 3] = ["sm4-ctr", "aes128-ctr", "aes256-ctr"];

struct Setup {
    dir: TempDir,
    kura: Kura,
    key: PathBuf,
    root: PathBuf,
}

impl Setup {
    fn new(h: &mut CrashHarness) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut k = [0u8; 32];
        h.rng().fill(&mut k);
        let key = write_master_key(dir.path(), "master.key", &k).unwrap();
        let kura = Kura::new(env!("CARGO_BIN_EXE_kura"))
            .current_dir(dir.path())
            .global_arg("--data-dir")
            .global_arg(dir.path().join("data"))
            .global_arg("--master-key-file")
            .global_arg(&key)
            .global_arg("--config")
            .global_arg(dir.path().join("kura.toml"));
        let s = Self {
            root: dir.path().join("root"),
            dir,
            kura,
            key,
        };
        s.configure("aes256-ctr");
        s.kura.success(["init"]).unwrap();
        s
    }

    fn configure(&self, method: &str) {
        fs::write(
            self.dir.path().join("kura.toml"),
            format!("[security.encryption]\ndata-encryption-method = \"{method}\"\n"),
        )
        .unwrap();
    }

    fn keyring(&self, method: &str) -> Arc<Keyring> {
        crate::keyring(&self.dir.path().join("data"), &self.key, method)
    }

    fn open(&self, method: &str) -> (EncryptedFs, u64) {
        let k = self.keyring(method);
        let opts = Options {
            method: method.parse().unwrap(),
            file_dictionary_log: true,
        };
        let active = k.active_data_key_id();
        (EncryptedFs::open(&self.root, k, opts).unwrap(), active)
    }

    /// A full `kura fs reencrypt`: its summary and how long it took.
    fn reencrypt(&self) -> (Value, Duration) {
        let start = Instant::now();
        let out = self
            .kura
            .success([
                "--output".as_ref(),
                "json".as_ref(),
                "fs".as_ref(),
                "reencrypt".as_ref(),
                "--root".as_ref(),
                self.root.as_os_str(),
            ])
            .unwrap();
        (
            serde_json::from_slice(&out.stdout).unwrap(),
            start.elapsed(),
        )
    }
}

/// The files: plaintext written straight into the root, and every fifth one in page mode
/// through kura-fs.
fn populate(s: &Setup, h: &mut CrashHarness) -> BTreeMap<String, Vec<u8>> {
    let (efs, _) = s.open("aes256-ctr");
    let mut files = BTreeMap::new();
    for i in 0..FILES {
        let len = match i % 11 {
            0 => 0,
            _ => usize::try_from(h.rng().below(30_000)).unwrap(),
        };
        let content = h.rng().bytes(len);
        let path = match i % 5 {
            0 => format!("d{}/f{i:03}.page", i % 4),
            1 | 2 => format!("d{}/sub/f{i:03}.sst", i % 3),
            _ => format!("f{i:03}.log"),
        };
        if path.ends_with(".page") {
            let f = efs.create_with(&path, Method::Aes256GcmPage).unwrap();
            f.write_at(&content, 0).unwrap();
            f.sync_data().unwrap();
        } else {
            let abs = s.root.join(&path);
            fs::create_dir_all(abs.parent().unwrap()).unwrap();
            fs::write(abs, &content).unwrap();
        }
        files.insert(path, content);
    }
    files
}

/// Opens the root in this process (its recovery runs) and checks every file. Returns how
/// many files are current (active data key, configured method) and how many temporary
/// files there are.
#[track_caller]
fn check(s: &Setup, method: &str, files: &BTreeMap<String, Vec<u8>>, what: &str) -> (usize, usize) {
    let (efs, active) = s.open(method);
    let mut listed = efs.list().unwrap();
    let temps = listed.iter().filter(|p| p.ends_with(".kura-tmp")).count();
    listed.retain(|p| !p.ends_with(".kura-tmp"));
    assert!(
        listed.iter().eq(files.keys()),
        "{what}: the root lists {} files",
        listed.len()
    );
    let configured: Method = method.parse().unwrap();
    let mut current = 0;
    for (path, content) in files {
        let f = efs
            .open_file(path)
            .unwrap_or_else(|e| panic!("{what}: cannot open {path}: {e}"));
        let mut buf = vec![0u8; usize::try_from(f.len()).unwrap()];
        f.read_exact_at(&mut buf, 0)
            .unwrap_or_else(|e| panic!("{what}: cannot read {path}: {e}"));
        assert!(buf == *content, "{what}: {path} reads to other bytes");
        assert_eq!(
            efs.info(path).unwrap(),
            f.info(),
            "{what}: the dictionary entry of {path} disagrees with its header"
        );
        let want = if path.ends_with(".page") {
            Method::Aes256GcmPage
        } else {
            configured
        };
        if f.info()
            .is_some_and(|i| i.method == want && i.key_id == active)
        {
            current += 1;
        }
    }
    (current, temps)
}

#[derive(Debug, Default)]
struct Tally {
    killed: usize,
    finished: usize,
    /// Kills after which some files were rewritten and some not (checked trials only).
    killed_midway: usize,
    /// Reruns that found work already done.
    resumed: usize,
}

#[test]
fn reencrypt_survives_kill_9_and_a_rerun_finishes() {
    let start = Instant::now();
    let mut h = CrashHarness::from_env("fs reencrypt").unwrap();
    let trials = trials_from_env(DEFAULT_TRIALS).unwrap();
    let s = Setup::new(&mut h);
    let files = populate(&s, &mut h);

    // Two uninterrupted runs (all plaintext, then all after a rotation) time the span.
    let (j, first) = s.reencrypt();
    assert_eq!(j["rewritten"].as_array().unwrap().len(), FILES * 4 / 5);
    s.kura.success(["rotate", "data-key"]).unwrap();
    let (j, second) = s.reencrypt();
    assert_eq!(j["rewritten"].as_array().unwrap().len(), FILES);
    assert_eq!(check(&s, "aes256-ctr", &files, "calibration"), (FILES, 0));
    let median = first.max(second);
    let span = (median * 5 / 4).max(Duration::from_millis(30));

    let mut tally = Tally::default();
    for trial in 0..trials {
        let method = METHODS[trial % METHODS.len()];
        s.configure(method);
        s.kura.success(["rotate", "data-key"]).unwrap();
        let crash = h
            .run_and_kill(
                &mut s.kura.command([
                    "fs".as_ref(),
                    "reencrypt".as_ref(),
                    "--root".as_ref(),
                    s.root.as_os_str(),
                ]),
                span,
            )
            .unwrap();
        let what = format!("seed {} trial {trial} ({method}, {crash:?})", h.seed());
        if crash.killed() {
            tally.killed += 1;
        } else {
            tally.finished += 1;
            assert!(
                crash.status.success(),
                "{what}: exited with {}",
                crash.status
            );
        }
        if trial % 2 == 1 {
            let (current, temps) = check(&s, method, &files, &format!("{what}, after the kill"));
            assert!(temps <= 1, "{what}: {temps} temporary files");
            if current > 0 && current < FILES {
                tally.killed_midway += 1;
            }
        }
        let (j, _) = s.reencrypt();
        let rewritten = j["rewritten"].as_array().unwrap().len();
        let current = j["already_current"].as_u64().unwrap() as usize;
        assert_eq!(rewritten + current, FILES, "{what}: {j}");
        assert!(j["failed"].as_array().unwrap().is_empty(), "{what}: {j}");
        assert!(j["skipped"].as_array().unwrap().is_empty(), "{what}: {j}");
        if current > 0 && rewritten > 0 {
            tally.resumed += 1;
        }
        assert_eq!(
            check(&s, method, &files, &format!("{what}, after the rerun")),
            (FILES, 0),
            "{what}"
        );
    }
    eprintln!(
        "[fs reencrypt] {trials} trials over {FILES} files in {:?}: kill span {span:?} (full run {median:?}); {tally:?}",
        start.elapsed()
    );
}
