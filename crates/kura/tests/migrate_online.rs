#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura migrate-encryption --online` on SQLite while the application writes: a writer
//! thread (its own connection, as the application) keeps replacing random values, half of
//! them with legacy values and half with envelopes it seals itself, some just ahead of
//! the migration's position so that its compare-and-swap misses and decides again. No
//! write may be lost: afterwards every value reads (dual reader) to what the writer wrote
//! last, or to the original. A second, offline run then migrates what the writer left in
//! the legacy form. (That a live node blocks a run without `--online` is tested in
//! `migrate.rs`.)
//!
//! The writer starts once the run has taken its backup: the SQLite backup restarts at
//! every commit of another connection, and a writer committing every millisecond or so
//! keeps it from ever completing (the ignored test below shows it).

mod common;
mod legacy;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use kura_keys::{LegacyFormat, Vault};
use kura_testkit::{CrashHarness, Kura, Rng};
use legacy::{Legacy, Seen, ctx, migrate_args, plain, see, vault};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

const ROWS: i64 = 20_000;
const BATCH: i64 = 200;
const TABLE: &str = "accounts";
const COLUMN: &str = "card";
const TARGET: (&str, &str, &[&str]) = (TABLE, "id", &[COLUMN]);
const JOB: &str = "migrate-encryption:accounts:id:card";
const FORMAT: LegacyFormat = LegacyFormat::Base64IvCt;

/// A legacy value of `p`, as the application writes them.
fn legacy_text(lg: &Legacy, p: &[u8]) -> String {
    String::from_utf8(lg.encrypt(p, FORMAT)).unwrap()
}

/// `accounts(id INTEGER PRIMARY KEY, card TEXT)`: legacy values, NULL on every 500th row.
fn build(db: &Path, lg: &Legacy) {
    let mut c = Connection::open(db).unwrap();
    c.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, card TEXT)")
        .unwrap();
    let tx = c.transaction().unwrap();
    {
        let mut ins = tx.prepare("INSERT INTO accounts VALUES (?1, ?2)").unwrap();
        for i in 1..=ROWS {
            let v = (i % 500 != 0).then(|| legacy_text(lg, &plain(COLUMN, i, 120)));
            ins.execute(rusqlite::params![i, v]).unwrap();
        }
    }
    tx.commit().unwrap();
}

/// What the writer did.
#[derive(Debug, Default)]
struct Written {
    /// The last plaintext written to each row it wrote.
    last: HashMap<i64, Vec<u8>>,
    writes: u64,
    legacy: u64,
    sealed: u64,
    /// Writes made while the job's progress row existed (between its backup and its
    /// end), and of those, writes to a row of the batch being migrated or the next one.
    in_run: u64,
    ahead: u64,
    /// Writes to a row of the batch being migrated.
    in_batch: u64,
}

/// The job's progress, read by the application's connection: `None` without a progress
/// row, else the last row id done (0 before the first batch).
fn position(c: &Connection) -> Option<i64> {
    c.query_row(
        "SELECT last_id FROM kura_migration_progress WHERE job = ?1",
        [JOB],
        |r| r.get::<_, Option<String>>(0),
    )
    .optional()
    .unwrap_or(None) // the table is absent until kura's first write
    .map(|l| l.map_or(0, |s| s.parse().unwrap()))
}

/// The application: replaces random values in short transactions, pausing `pause` after
/// each, until `stop`; half the time (once the pass has begun) a row of the batch being
/// migrated or the next one. With `wait_for_run`, it starts once the run has taken its
/// backup.
fn writer(
    db: &Path,
    (v, lg): (&Vault, &Legacy),
    seed: u64,
    pause: Duration,
    wait_for_run: bool,
    stop: &AtomicBool,
) -> Written {
    let mut c = Connection::open(db).unwrap();
    // A busy timeout of 30 s, polling every millisecond (SQLite's own handler backs off to
    // 100 ms sleeps and would rarely find the table free between kura's batches); and
    // commits without waiting for the disk: more writes while the run lasts.
    c.busy_handler(Some(|n| {
        std::thread::sleep(Duration::from_millis(1));
        n < 30_000
    }))
    .unwrap();
    c.pragma_update(None, "synchronous", "OFF").unwrap();
    let mut rng = Rng::new(seed);
    let mut w = Written::default();
    while wait_for_run && position(&c).is_none() && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(2));
    }
    while !stop.load(Ordering::SeqCst) {
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        // Under the write lock: exact for this transaction.
        let at = position(&tx);
        let mut done = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let ahead = at.is_some() && rng.below(2) == 0;
            let id = match at {
                Some(l) if ahead => (l + 1 + rng.below(2 * BATCH as u64) as i64).min(ROWS),
                _ => 1 + rng.below(ROWS as u64) as i64,
            };
            w.writes += 1;
            let p = format!(
                "{COLUMN} of row {id}, write {} of the application",
                w.writes
            );
            let value = if rng.below(2) == 0 {
                w.legacy += 1;
                legacy_text(lg, p.as_bytes())
            } else {
                w.sealed += 1;
                let env = v.seal(p.as_bytes(), &ctx(TABLE, COLUMN, &id.to_string()));
                STANDARD.encode(env.unwrap())
            };
            tx.execute(
                "UPDATE accounts SET card = ?1 WHERE id = ?2",
                rusqlite::params![value, id],
            )
            .unwrap();
            w.in_run += u64::from(at.is_some());
            w.ahead += u64::from(ahead);
            w.in_batch += u64::from(at.is_some_and(|l| id > l && id <= l + BATCH));
            done.push((id, p.into_bytes()));
        }
        tx.commit().unwrap();
        w.last.extend(done);
        std::thread::sleep(pause + rng.duration_up_to(pause));
    }
    w
}

/// Every value of the table, in id order.
fn values(db: &Path) -> Vec<(i64, Option<String>)> {
    let c = Connection::open(db).unwrap();
    let mut s = c
        .prepare("SELECT id, card FROM accounts ORDER BY id")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Runs `cmd` to completion and checks its output for key material.
fn run(sb: &Sandbox, cmd: &mut Command) -> Run {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    sb.check(&run);
    run
}

struct Setup {
    sb: Sandbox,
    lg: Legacy,
    v: Vault,
    db: PathBuf,
    kura: Kura,
}

fn setup() -> Setup {
    let (sb, key) = Sandbox::initialised();
    let lg = Legacy::new(&sb);
    let v = vault(&sb, &key);
    let db = sb.join("app.db");
    build(&db, &lg);
    let kura = Kura::new(env!("CARGO_BIN_EXE_kura"))
        .current_dir(sb.path())
        .global_arg("--data-dir")
        .global_arg(sb.data_dir())
        .global_arg("--master-key-file")
        .global_arg(&key);
    Setup {
        sb,
        lg,
        v,
        db,
        kura,
    }
}

/// Runs `migrate-encryption --online --batch 200` while [`writer`] writes; returns the
/// run and what the writer did.
fn online_run(s: &Setup, seed: u64, pause: Duration, wait_for_run: bool) -> (Run, Written) {
    let args = migrate_args(
        s.db.to_str().unwrap(),
        TARGET,
        &s.lg.file,
        &["--online", "--batch", "200", "--output", "json"],
    );
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (db, v, lg, stop) = (&s.db, &s.v, &s.lg, &stop);
        let w = scope.spawn(move || writer(db, (v, lg), seed, pause, wait_for_run, stop));
        let first = run(&s.sb, &mut s.kura.command(&args));
        stop.store(true, Ordering::SeqCst);
        (first, w.join().unwrap())
    })
}

/// What row `id` held before the migration: `None` for NULL.
fn original(id: i64) -> Option<Vec<u8>> {
    (id % 500 != 0).then(|| plain(COLUMN, id, 120))
}

/// Reads every value with the dual reader: the ids still in the legacy form, and every
/// value that does not read to the writer's last plaintext or the original.
fn read_back(s: &Setup, w: &Written) -> (Vec<i64>, Vec<String>) {
    let (mut legacy, mut bad) = (Vec::new(), Vec::new());
    for (id, value) in values(&s.db) {
        let want = w.last.get(&id).cloned().or_else(|| original(id));
        let seen = see(
            &s.v,
            &s.lg,
            FORMAT,
            TABLE,
            COLUMN,
            &id.to_string(),
            value.as_deref().map(str::as_bytes),
        );
        match (&want, seen) {
            (None, Seen::Empty) if value.is_none() => {}
            (Some(p), Seen::Envelope(x)) if &x == p => {}
            (Some(p), Seen::Legacy(x)) if &x == p => legacy.push(id),
            (want, seen) => bad.push(format!(
                "row {id}: wanted {:?}, read {}",
                want.as_deref().map(String::from_utf8_lossy),
                match seen {
                    Seen::Envelope(x) =>
                        format!("an envelope of {:?}", String::from_utf8_lossy(&x)),
                    Seen::Legacy(x) => format!("legacy text of {:?}", String::from_utf8_lossy(&x)),
                    other => format!("{other:?}"),
                }
            )),
        }
    }
    (legacy, bad)
}

#[test]
fn online_migration_loses_no_concurrent_write() {
    let mut h = CrashHarness::from_env("migrate_online").unwrap();
    let started = Instant::now();
    let s = setup();
    let before = values(&s.db);
    // The writer starts once the run has taken its backup (see the module's comment).
    let seed = h.rng().next_u64();
    let t = Instant::now();
    let (first, w) = online_run(&s, seed, Duration::from_millis(1), true);
    let took = t.elapsed();
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let j = first.json();
    assert_eq!(j["failed"], 0, "{j}");
    // Counts follow the values decided again after a compare-and-swap miss.
    let counted = ["migrated", "already_migrated", "empty"]
        .map(|k| j[k].as_i64().unwrap())
        .iter()
        .sum::<i64>();
    assert_eq!(counted, ROWS, "{j}");
    assert!(
        w.in_run >= 20 && w.in_batch >= 5,
        "the writer hardly wrote during the run: {} writes, {} during it, {} to the batch \
         being migrated",
        w.writes,
        w.in_run,
        w.in_batch
    );
    // The backup was taken before the writer began: the original table.
    let backup = Path::new(j["backup"].as_str().unwrap());
    assert!(backup.to_str().unwrap().ends_with(".bak"), "{j}");
    assert_eq!(values(backup), before);

    // No write lost: each row reads to what the writer wrote last, or to the original.
    let (leftovers, bad) = read_back(&s, &w);
    assert!(
        bad.is_empty(),
        "{} rows wrong: {:#?}",
        bad.len(),
        &bad[..bad.len().min(20)]
    );

    // The writer's legacy values behind the pass are left: an offline run takes them.
    let second = run(
        &s.sb,
        &mut s.kura.command(migrate_args(
            s.db.to_str().unwrap(),
            TARGET,
            &s.lg.file,
            &["--output", "json"],
        )),
    );
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let j2 = second.json();
    assert_eq!(j2["failed"], 0, "{j2}");
    assert_eq!(j2["migrated"], leftovers.len(), "{j2}");
    let (legacy, bad) = read_back(&s, &w);
    assert!(
        bad.is_empty(),
        "{} rows wrong: {:#?}",
        bad.len(),
        &bad[..bad.len().min(20)]
    );
    assert!(
        legacy.is_empty(),
        "still legacy after the offline run: {legacy:?}"
    );
    eprintln!(
        "[migrate_online] {ROWS} rows; online run {took:?}: {} writes by the application \
         ({} legacy, {} sealed; {} during the run, {} to the batch being migrated or the \
         next, {} to the batch being migrated), {} rows written, {} legacy values left for \
         the offline run; {j}; test {:?}",
        w.writes,
        w.legacy,
        w.sealed,
        w.in_run,
        w.ahead,
        w.in_batch,
        w.last.len(),
        leftovers.len(),
        started.elapsed()
    );
}

/// The backup of an `--online` run completes while the application commits about every
/// quarter millisecond (copied in one step; a copy in small steps restarted at every
/// commit and gave up on SQLITE_BUSY).
#[test]
fn the_backup_completes_while_the_application_writes() {
    let mut h = CrashHarness::from_env("migrate_online_backup").unwrap();
    let s = setup();
    let seed = h.rng().next_u64();
    let (run, w) = online_run(&s, seed, Duration::from_micros(250), false);
    assert_eq!(run.code, Some(0), "{} writes: {}", w.writes, run.stderr);
    let (_, bad) = read_back(&s, &w);
    assert!(bad.is_empty(), "{bad:#?}");
}
