#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Crash test of `kura migrate-encryption` on SQLite: a table of 100 000 legacy values is
//! migrated by runs killed with SIGKILL at random instants, each rerun resuming the job.
//!
//! After every kill, the database is checked (as the application would find it, its hot
//! journal rolled back): every row is present; NULL, empty and already-sealed values are
//! untouched; every other value is byte for byte its legacy original or an envelope, and
//! exactly the rows up to the saved position are migrated (a batch and its progress record
//! commit together); the saved counts match; a random sample of 5 000 values, the rows
//! around the saved position, every sealed one and every legacy one whose text starts
//! with `KRE` (as an envelope's base64 does) are opened (dual reader) under their
//! row's context to their original plaintext (an envelope of an envelope or of legacy text
//! fails). Every `*.bak` file is a complete copy of the original table (a `.bak.partial`
//! may be left by a run killed during its backup); a resumed run reuses the backup its job
//! recorded and takes none.
//!
//! Kill delays are drawn over the span of an uninterrupted run from where the job stands
//! (measured once on a copy of the table), plus a quarter: the whole run for a new job
//! (half the time just its start and backup), the start and the rows left for a resumed
//! one. So kills land in the backup, in the middle and near the end, and some runs finish. Once a job is
//! complete, the next trial starts a new one on the original table. In the end a run
//! completes the job and every value is checked. The seed is printed; `KURA_CRASH_SEED`
//! replays the delays and the samples, `KURA_CRASH_TRIALS` sets the number of kills
//! (default 20).

mod common;
mod legacy;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use kura_keys::{LegacyFormat, Vault};
use kura_testkit::{CrashHarness, Kura, Rng, trials_from_env};
use legacy::{Legacy, Seen, ctx, migrate_args, plain, see, vault};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

const ROWS: i64 = 100_000;
const BATCH: i64 = 500;
const LEN: usize = 200;
const TABLE: &str = "secrets";
const COLUMN: &str = "body";
const TARGET: (&str, &str, &[&str]) = (TABLE, "id", &[COLUMN]);
const JOB: &str = "migrate-encryption:secrets:id:body";
const FORMAT: LegacyFormat = LegacyFormat::Base64IvCt;
const DB: &str = "app.db";
const PRISTINE: &str = "pristine.db";
const DEFAULT_TRIALS: usize = 20;
const SAMPLE: usize = 5_000;
/// Every 1000 rows: one NULL, one empty and one already-sealed value (and one legacy value
/// whose text starts with `KRE`).
const SPECIAL: i64 = ROWS / 1000;
/// The summary of a whole job (counts add up over resumed runs).
const SUMMARY: &str = "migrated 99700, already migrated 100, empty 200, failed 0";

/// What a row held before the migration.
enum Orig {
    Null,
    Empty,
    /// Legacy base64 text.
    Legacy(String),
    /// A base64 envelope sealed for the row beforehand.
    Sealed(String),
}

impl Orig {
    /// The value as stored.
    fn stored(&self) -> Option<&str> {
        match self {
            Orig::Null => None,
            Orig::Empty => Some(""),
            Orig::Legacy(s) | Orig::Sealed(s) => Some(s),
        }
    }
}

/// A legacy value of `p` whose base64 text starts with `KRE`, like an envelope's (as one
/// random IV in 2¹⁸ does): the IV starts 29 11 00.
fn kre_legacy(lg: &Legacy, p: &[u8], id: i64) -> String {
    let mut iv = [0x29, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    iv[8..].copy_from_slice(&id.to_le_bytes());
    let mut raw = iv.to_vec();
    raw.extend(kura_crypto::legacy::encrypt_cbc(&lg.raw, iv, p).unwrap());
    let text = STANDARD.encode(raw);
    assert!(text.starts_with("KRE"), "{text}");
    text
}

/// `secrets(id INTEGER PRIMARY KEY, body TEXT)`, written in one transaction: legacy
/// values of the library's encryptor, and the specials.
fn build(db: &Path, lg: &Legacy, v: &Vault) -> Vec<Orig> {
    let orig: Vec<Orig> = (1..=ROWS)
        .map(|id| {
            let (p, c) = (plain(COLUMN, id, LEN), ctx(TABLE, COLUMN, &id.to_string()));
            match id % 1000 {
                1 => Orig::Null,
                2 => Orig::Empty,
                3 => Orig::Sealed(STANDARD.encode(v.seal(&p, &c).unwrap())),
                4 => Orig::Legacy(kre_legacy(lg, &p, id)),
                _ => Orig::Legacy(String::from_utf8(lg.encrypt(&p, FORMAT)).unwrap()),
            }
        })
        .collect();
    let mut c = Connection::open(db).unwrap();
    c.execute_batch("CREATE TABLE secrets (id INTEGER PRIMARY KEY, body TEXT)")
        .unwrap();
    let tx = c.transaction().unwrap();
    {
        let mut ins = tx.prepare("INSERT INTO secrets VALUES (?1, ?2)").unwrap();
        for (id, o) in (1i64..).zip(&orig) {
            ins.execute(rusqlite::params![id, o.stored()]).unwrap();
        }
    }
    tx.commit().unwrap();
    orig
}

/// Every (id, body) of `db`'s table, in id order.
fn rows(c: &Connection) -> Vec<(i64, Option<String>)> {
    let mut s = c
        .prepare("SELECT id, body FROM secrets ORDER BY id")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Whether a stored value is the base64 text of a version-1 envelope.
fn is_envelope(v: &str) -> bool {
    v.get(..8)
        .and_then(|head| STANDARD.decode(head).ok())
        .is_some_and(|h| h.starts_with(b"KRE\x01"))
}

/// One run of kura, killed or not.
struct Ran {
    status: ExitStatus,
    killed: bool,
    stdout: String,
    /// Lines, with their time since the spawn.
    stderr: Vec<(Duration, String)>,
    took: Duration,
}

impl Ran {
    fn line(&self, start: &str) -> Option<&(Duration, String)> {
        self.stderr.iter().find(|(_, l)| l.starts_with(start))
    }

    fn stderr_text(&self) -> String {
        self.stderr.iter().map(|(_, l)| format!("{l}\n")).collect()
    }
}

/// Runs `cmd`, killing it with SIGKILL after `kill_after` unless it exits first; the
/// output is checked for key material.
fn run(sb: &Sandbox, mut cmd: Command, kill_after: Option<Duration>) -> Ran {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = String::new();
        out.read_to_string(&mut v).map(|_| v)
    });
    let err = std::thread::spawn(move || {
        BufReader::new(err)
            .lines()
            .map_while(Result::ok)
            .map(|l| (start.elapsed(), l))
            .collect::<Vec<_>>()
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if kill_after.is_some_and(|d| start.elapsed() >= d) {
            // Not reaped yet: if it has just exited, the signal reaches a zombie.
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let ran = Ran {
        status,
        killed: status.signal() == Some(9),
        took: start.elapsed(),
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap(),
    };
    sb.check(&Run {
        code: status.code(),
        stdout: ran.stdout.clone().into_bytes(),
        stderr: ran.stderr_text(),
    });
    ran
}

/// Where the job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Job {
    /// No progress record and nothing migrated.
    New,
    /// A progress record: rows up to `last` done (0: none yet), `backup` taken.
    Running { last: i64, backup: String },
    /// No progress record and everything migrated.
    Done,
}

/// What the checks need.
struct World<'a> {
    sb: &'a Sandbox,
    v: &'a Vault,
    lg: &'a Legacy,
    orig: &'a [Orig],
    /// `.bak` files checked so far, with their length.
    backups: HashMap<String, u64>,
}

impl World<'_> {
    /// Opens (dual reader) the values of `ids`, on two threads: the problems found.
    fn open(&self, all: &[(i64, Option<String>)], ids: &[i64]) -> Vec<String> {
        let check = |id: i64| -> Option<String> {
            let value = all[usize::try_from(id - 1).unwrap()].1.as_deref()?;
            let id_s = id.to_string();
            let want = plain(COLUMN, id, LEN);
            let seen = see(
                self.v,
                self.lg,
                FORMAT,
                TABLE,
                COLUMN,
                &id_s,
                Some(value.as_bytes()),
            );
            match seen {
                Seen::Empty if value.is_empty() => None,
                Seen::Envelope(p) | Seen::Legacy(p) if p == want => None,
                Seen::Envelope(p) => {
                    let inner = see(self.v, self.lg, FORMAT, TABLE, COLUMN, &id_s, Some(&p));
                    Some(match inner {
                        Seen::Envelope(_) | Seen::Legacy(_) => {
                            format!("row {id}: double-encrypted (an envelope of {inner:?})")
                        }
                        _ => format!("row {id}: opens to {:?}", String::from_utf8_lossy(&p)),
                    })
                }
                other => Some(format!("row {id}: {other:?}")),
            }
        };
        std::thread::scope(|s| {
            let half = ids.len() / 2;
            let (a, b) = ids.split_at(half);
            let t = s.spawn(move || a.iter().filter_map(|&id| check(id)).collect::<Vec<_>>());
            let mut bad: Vec<String> = b.iter().filter_map(|&id| check(id)).collect();
            bad.extend(t.join().unwrap());
            bad
        })
    }

    /// The invariants of the database; where the job stands. Opens `sample` random
    /// values, the rows around the saved position and the specials (every value if
    /// `sample` is `None`).
    fn check(&mut self, rng: &mut Rng, sample: Option<usize>) -> Job {
        // Opening rolls back what a killed run left uncommitted, as the application would.
        let c = Connection::open(self.sb.join(DB)).unwrap();
        // The progress table is absent until kura first writes (errors below: none).
        let jobs: i64 = c
            .query_row("SELECT COUNT(*) FROM kura_migration_progress", [], |r| {
                r.get(0)
            })
            .unwrap_or(0);
        assert!(jobs <= 1, "{jobs} progress records");
        let progress = c
            .query_row(
                "SELECT backup, last_id, changed, unchanged, empty, failed FROM kura_migration_progress WHERE job = ?1",
                [JOB],
                |r| {
                    let last: Option<String> = r.get(1)?;
                    Ok((
                        r.get::<_, String>(0)?,
                        last.map_or(0, |l| l.parse::<i64>().unwrap()),
                        [r.get::<_, i64>(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
                    ))
                },
            )
            .optional()
            .unwrap_or(None);
        let all = rows(&c);
        drop(c);
        assert_eq!(all.len(), usize::try_from(ROWS).unwrap(), "rows lost");
        let last = progress.as_ref().map_or(0, |p| p.1);
        let (mut migrated, mut untouched, mut counts) = (0, 0, [0i64; 4]);
        for ((id, value), (want_id, o)) in all.iter().zip((1..).zip(self.orig)) {
            assert_eq!(*id, want_id, "rows lost or added");
            let value = value.as_deref();
            let done = *id <= last;
            match o {
                Orig::Null | Orig::Empty | Orig::Sealed(_) => {
                    assert_eq!(value, o.stored(), "row {id}");
                }
                Orig::Legacy(s) if value == Some(s.as_str()) => {
                    untouched += 1;
                    assert!(
                        progress.is_none() || !done,
                        "row {id} is not migrated, but the progress record says rows up to {last} are"
                    );
                }
                Orig::Legacy(_) => {
                    if !value.is_some_and(is_envelope) {
                        let bad = self.open(&all, &[*id]);
                        panic!("row {id}: neither its legacy value nor an envelope: {bad:?}");
                    }
                    migrated += 1;
                    assert!(
                        progress.is_none() || done,
                        "row {id} is migrated, beyond the saved position {last}"
                    );
                }
            }
            if done {
                let k = match o {
                    Orig::Legacy(_) => 0,
                    Orig::Sealed(_) => 1,
                    Orig::Null | Orig::Empty => 2,
                };
                counts[k] += 1;
            }
        }
        let job = match progress {
            Some((backup, last, saved)) => {
                assert!(last % BATCH == 0 || last == ROWS, "saved position {last}");
                assert_eq!(
                    saved, counts,
                    "saved counts (changed, unchanged, empty, failed)"
                );
                assert!(
                    self.backups.contains_key(&backup) || self.check_backup(&backup),
                    "the progress record names {backup}, not a backup"
                );
                Job::Running { last, backup }
            }
            None if migrated == 0 => Job::New,
            None if untouched == 0 => Job::Done,
            None => panic!("{migrated} values migrated, {untouched} not, and no progress record"),
        };
        let mut ids: BTreeSet<i64> = match sample {
            None => (1..=ROWS).collect(),
            Some(n) => (0..n).map(|_| 1 + rng.below(ROWS as u64) as i64).collect(),
        };
        ids.extend((last - BATCH + 1).max(1)..=(last + BATCH).min(ROWS));
        ids.extend((0..SPECIAL).flat_map(|k| [k * 1000 + 3, k * 1000 + 4]));
        let ids: Vec<i64> = ids.into_iter().collect();
        let bad = self.open(&all, &ids);
        assert!(
            bad.is_empty(),
            "{} values wrong: {:#?}",
            bad.len(),
            &bad[..bad.len().min(20)]
        );
        job
    }

    /// Whether `path` is a complete backup: a database holding the original table and no
    /// progress of the job. Remembered, so each is read once.
    fn check_backup(&mut self, path: &str) -> bool {
        let Ok(meta) = fs::metadata(path) else {
            return false;
        };
        if self.backups.get(path) == Some(&meta.len()) {
            return true;
        }
        // Read-only: a backup left half-written (with its journal) fails to open.
        let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let ok = c.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0));
        let all = match ok {
            Ok(ok) if ok == "ok" => rows(&c),
            other => panic!("{path} is not a complete database: {other:?}"),
        };
        assert_eq!(all.len(), self.orig.len(), "{path}: rows missing");
        for ((id, value), o) in all.iter().zip(self.orig) {
            assert_eq!(value.as_deref(), o.stored(), "{path}: row {id}");
        }
        let progress: Option<i64> = c
            .query_row(
                "SELECT COUNT(*) FROM kura_migration_progress WHERE job = ?1",
                [JOB],
                |r| r.get(0),
            )
            .ok();
        assert!(
            progress.unwrap_or(0) == 0,
            "{path}: holds a progress record"
        );
        self.backups.insert(path.to_string(), meta.len());
        true
    }

    /// Checks every file beside the database: the `.bak` files (complete backups) and the
    /// `.bak.partial` ones (left by a run killed during its backup); returns the names of
    /// each kind.
    fn check_files(&mut self) -> (BTreeSet<String>, BTreeSet<String>) {
        let (mut full, mut partial) = (BTreeSet::new(), BTreeSet::new());
        let prefix = format!("{DB}.pre-kura-migration-");
        for name in self.sb.files() {
            // A run killed as it began a transaction may leave a journal whose header was
            // never written: not hot (SQLite ignores it), and not removed by a reader.
            let journal = format!("{DB}-journal");
            if ["master.key", "legacy.key", "data", DB, &journal, PRISTINE].contains(&name.as_str())
            {
                continue;
            }
            assert!(name.starts_with(&prefix), "unexpected file {name}");
            if name.ends_with(".bak") {
                let path = self.sb.join(&name).display().to_string();
                assert!(self.check_backup(&path), "{name}");
                full.insert(name);
            } else if name.ends_with(".bak.partial") {
                partial.insert(name);
            } else if !name.ends_with(".bak.partial-journal") {
                panic!("unexpected file {name}");
            }
        }
        (full, partial)
    }
}

/// Puts the original table back for a new job (no run is alive; a journal left is not hot,
/// since the checks have opened the database since).
fn restore(sb: &Sandbox) {
    let _ = fs::remove_file(sb.join(&format!("{DB}-journal")));
    fs::copy(sb.join(PRISTINE), sb.join(DB)).unwrap();
}

/// An uninterrupted run, measured on a copy of the table.
#[derive(Debug)]
struct Calibration {
    /// Until the backup is written, then until the pass begins, then until the end.
    backup: Duration,
    start: Duration,
    total: Duration,
}

#[derive(Debug, Default)]
struct Tally {
    /// Kills that left the job new (in the start or the backup), mid-way, or done.
    killed_new: usize,
    /// Kills that left a `.bak.partial`.
    killed_in_backup: usize,
    killed_running: usize,
    killed_done: usize,
    finished: usize,
    resumed: usize,
    jobs_completed: usize,
}

#[test]
fn killed_runs_resume_and_lose_nothing() {
    let mut h = CrashHarness::from_env("migrate_crash").unwrap();
    let trials = trials_from_env(DEFAULT_TRIALS).unwrap();
    let started = Instant::now();
    let (sb, key) = Sandbox::initialised();
    let lg = Legacy::new(&sb);
    let v = vault(&sb, &key);
    let db = sb.join(DB);
    let orig = build(&db, &lg, &v);
    fs::copy(&db, sb.join(PRISTINE)).unwrap();
    let built = started.elapsed();
    let kura = Kura::new(env!("CARGO_BIN_EXE_kura"))
        .current_dir(sb.path())
        .global_arg("--data-dir")
        .global_arg(sb.data_dir())
        .global_arg("--master-key-file")
        .global_arg(&key);
    let migrate = |db: &Path| {
        kura.command(migrate_args(
            db.to_str().unwrap(),
            TARGET,
            &lg.file,
            &["--batch", "500"],
        ))
    };

    // One uninterrupted run on a copy: the span kills are drawn over.
    let copy = sb.join("calibration.db");
    fs::copy(&db, &copy).unwrap();
    let ran = run(&sb, migrate(&copy), None);
    assert!(ran.status.success(), "{}", ran.stderr_text());
    assert_eq!(ran.stdout.trim(), SUMMARY);
    let at = |start: &str| ran.line(start).expect(start).0;
    let cal = Calibration {
        backup: at("backup of"),
        start: at("Starting migration"),
        total: ran.took,
    };
    assert!(cal.backup <= cal.start && cal.start <= cal.total, "{cal:?}");
    for name in sb.files() {
        if name.starts_with("calibration.db") {
            fs::remove_file(sb.join(&name)).unwrap();
        }
    }

    let mut w = World {
        sb: &sb,
        v: &v,
        lg: &lg,
        orig: &orig,
        backups: HashMap::new(),
    };
    let mut tally = Tally::default();
    let mut job = Job::New;
    for trial in 0..trials {
        if job == Job::Done {
            restore(&sb);
            job = Job::New;
        }
        let rng = h.rng();
        let delay = match &job {
            // A resumed run: its start (taken as long as a new run's), then the rows left.
            Job::Running { last, .. } => {
                let left = (ROWS - last) as f64 / ROWS as f64;
                let span = cal.start + (cal.total - cal.start).mul_f64(left);
                rng.duration_up_to(span * 5 / 4)
            }
            _ if rng.below(2) == 0 => rng.duration_up_to(cal.start * 5 / 4),
            _ => rng.duration_up_to(cal.total * 5 / 4),
        };
        let (baks, partials) = w.check_files();
        let ran = run(&sb, migrate(&db), Some(delay));
        let what = format!("trial {trial} (killed after {delay:?}, job {job:?})");
        if !ran.killed {
            assert!(ran.status.success(), "{what}: {}", ran.stderr_text());
            assert_eq!(ran.stdout.trim(), SUMMARY, "{what}");
        }
        if let Some((_, line)) = ran.line("resuming an interrupted run") {
            let Job::Running { last, backup } = &job else {
                panic!("{what}: resumed a job that was not running: {line}");
            };
            let at = if *last == 0 {
                "-".into()
            } else {
                last.to_string()
            };
            let said = format!(
                "resuming an interrupted run after row {at}; the backup taken when it began is {backup}"
            );
            assert_eq!(line, &said, "{what}");
            tally.resumed += 1;
        } else {
            assert!(
                ran.killed || !matches!(job, Job::Running { .. }),
                "{what}: finished without resuming: {}",
                ran.stderr_text()
            );
        }
        let after = w.check(h.rng(), Some(SAMPLE));
        // Shown if the test fails.
        let end = if ran.killed { "killed" } else { "finished" };
        eprintln!(
            "[migrate_crash] {what}: {end} at {:?}, job {after:?}",
            ran.took
        );
        let (baks_after, partials_after) = w.check_files();
        tally.killed_in_backup += partials_after.difference(&partials).count();
        if matches!(job, Job::Running { .. }) {
            assert_eq!(baks_after, baks, "{what}: a resumed run took a backup");
        }
        match (&after, ran.killed) {
            (_, false) => {
                assert_eq!(after, Job::Done, "{what}: finished");
                tally.finished += 1;
            }
            (Job::New, true) => tally.killed_new += 1,
            (Job::Running { .. }, true) => tally.killed_running += 1,
            (Job::Done, true) => tally.killed_done += 1,
        }
        tally.jobs_completed += usize::from(after == Job::Done);
        job = after;
    }
    let trials_took = started.elapsed();

    // The last run completes the job.
    if job == Job::Done {
        restore(&sb);
        job = Job::New;
    }
    let ran = run(&sb, migrate(&db), None);
    assert!(ran.status.success(), "{}", ran.stderr_text());
    assert_eq!(ran.stdout.trim(), SUMMARY);
    let resumed = ran.line("resuming an interrupted run").is_some();
    assert_eq!(
        resumed,
        matches!(job, Job::Running { .. }),
        "{}",
        ran.stderr_text()
    );
    tally.resumed += usize::from(resumed);
    // Half the kills of a new job leave it running: with 10 trials, none resumes once in
    // a thousand.
    if trials >= 10 {
        assert!(tally.resumed > 0, "no run resumed: {tally:?}");
    }
    assert_eq!(w.check(h.rng(), None), Job::Done);
    let (baks, partials) = w.check_files();
    assert!(!baks.is_empty());
    eprintln!(
        "[migrate_crash] {ROWS} rows, {trials} trials: {tally:?}; {} backups, {} partial ones \
         left; uninterrupted run {cal:?}; built in {built:?}, trials done at {trials_took:?}, \
         test {:?}",
        baks.len(),
        partials.len(),
        started.elapsed()
    );
}
