//! The pass over a table shared by `migrate-encryption`, `reencrypt` and the migration
//! benchmark: read a batch in id order, transform its values on every core, write the
//! changes and the progress in one transaction, repeat.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::table::{Cell, Counts, Id, Progress, Row, Source, Table, Update};

/// What a transform decided for one value.
pub(crate) enum Outcome {
    /// NULL or empty: nothing to do.
    Empty,
    /// Already in the wanted form, sealed by data key `.0` if known.
    Unchanged(Option<u64>),
    /// Replace it by `.0`, sealed by data key `.1`.
    Changed(Cell, u64),
    /// Cannot be handled (the reason names no secret); it is left as it is.
    Failed(&'static str),
}

/// Decides the new form of each value.
pub(crate) trait Transform: Sync {
    /// The outcome for the value of column `column` (an index into the job's columns) of
    /// row `id`.
    fn apply(&self, id: &Id, column: usize, cell: &Cell) -> Outcome;
}

/// How to run a pass.
pub(crate) struct Pass<'a> {
    /// Names the job in the progress table.
    pub(crate) job: String,
    /// Column names, for messages.
    pub(crate) columns: &'a [String],
    /// Rows per transaction.
    pub(crate) batch: u32,
    /// Count and check without writing (no backup, no progress record).
    pub(crate) dry_run: bool,
    /// Printed once the backup is taken (the seed's start line).
    pub(crate) start_line: &'a str,
    /// The verb of the progress line (`migrated`, `re-encrypted`).
    pub(crate) verb: &'a str,
    /// Say nothing on stderr (benchmarks).
    pub(crate) quiet: bool,
}

/// What a pass did.
pub(crate) struct Report {
    pub(crate) counts: Counts,
    /// Where the backup is (`None` on a dry run).
    pub(crate) backup: Option<String>,
}

fn count(c: &mut Counts, o: &Outcome) {
    match o {
        Outcome::Empty => c.empty += 1,
        Outcome::Unchanged(k) => {
            c.unchanged += 1;
            if let Some(k) = k {
                *c.data_keys.entry(*k).or_default() += 1;
            }
        }
        Outcome::Changed(_, k) => {
            c.changed += 1;
            *c.data_keys.entry(*k).or_default() += 1;
        }
        Outcome::Failed(_) => c.failed += 1,
    }
}

fn uncount(c: &mut Counts, o: &Outcome) {
    let key = match o {
        Outcome::Empty => {
            c.empty = c.empty.saturating_sub(1);
            None
        }
        Outcome::Unchanged(k) => {
            c.unchanged = c.unchanged.saturating_sub(1);
            *k
        }
        Outcome::Changed(_, k) => {
            c.changed = c.changed.saturating_sub(1);
            Some(*k)
        }
        Outcome::Failed(_) => {
            c.failed = c.failed.saturating_sub(1);
            None
        }
    };
    if let Some(k) = key
        && let Some(n) = c.data_keys.get_mut(&k)
    {
        *n = n.saturating_sub(1);
    }
}

/// `f` of every row, computed on every core, in order.
fn par_map<R: Send>(rows: &[Row], f: &(dyn Fn(&Row) -> R + Sync)) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if threads < 2 || rows.len() < 64 {
        return rows.iter().map(f).collect();
    }
    let per = rows.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().map(f).collect::<Vec<_>>()))
            .collect();
        // A worker cannot panic (no panics outside tests); an empty result would only
        // shorten the batch, and the caller zips rows with results.
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The outcomes of a batch.
fn transform_rows(t: &dyn Transform, rows: &[Row]) -> Vec<Vec<Outcome>> {
    par_map(rows, &|r: &Row| {
        r.cells
            .iter()
            .enumerate()
            .map(|(i, c)| t.apply(&r.id, i, c))
            .collect()
    })
}

/// Progress on stderr: a bar on a terminal, a line a second otherwise.
struct Meter {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    verb: String,
    started: Instant,
    last_line: Instant,
    quiet: bool,
}

impl Meter {
    fn new(total: u64, verb: &str, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} rows  {per_sec}  ETA {eta}",
            ) {
                b.set_style(style);
            }
            b
        });
        let now = Instant::now();
        Self {
            bar,
            total,
            verb: verb.to_string(),
            started: now,
            last_line: now,
            quiet,
        }
    }

    fn at(&mut self, done: u64, last: bool) {
        if let Some(b) = &self.bar {
            b.set_position(done);
            if last {
                b.finish();
            }
            return;
        }
        if self.quiet || (!last && self.last_line.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.last_line = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let left = self.total.saturating_sub(done) as f64 / rate.max(1e-9);
        eprintln!(
            "{} {done}/{} rows ({rate:.0} rows/s, ETA {:.0}s)",
            self.verb, self.total, left
        );
    }
}

fn report_failure(pass: &Pass<'_>, id: &Id, col: usize, why: &str) {
    let name = pass.columns.get(col).map_or("?", String::as_str);
    let row = kura_keys::redact::user_data(id);
    tracing::warn!(row = %row, column = name, "{why}; the value is left unchanged");
}

/// Counts a transformed batch and writes its changes with the progress.
fn apply_batch(
    table: &mut dyn Table,
    transform: &dyn Transform,
    pass: &Pass<'_>,
    progress: &mut Progress,
    rows: Vec<Row>,
    outcomes: Vec<Vec<Outcome>>,
) -> Result<()> {
    let last_id = rows.last().map(|r| r.id.clone());
    let mut updates = Vec::new();
    let mut keys = Vec::new();
    for (row, outs) in rows.into_iter().zip(outcomes) {
        for ((col, cell), out) in row.cells.into_iter().enumerate().zip(outs) {
            count(&mut progress.counts, &out);
            match out {
                Outcome::Changed(new, key) => {
                    keys.push(key);
                    updates.push(Update {
                        id: row.id.clone(),
                        column: col,
                        old: cell,
                        new,
                    });
                }
                Outcome::Failed(why) => report_failure(pass, &row.id, col, why),
                Outcome::Empty | Outcome::Unchanged(_) => {}
            }
        }
    }
    progress.last_id = last_id;
    if pass.dry_run {
        return Ok(());
    }
    // A value the application changed meanwhile is decided again from its new contents;
    // the counts follow.
    let mut redone: Vec<(u64, Outcome)> = Vec::new();
    let mut redo = |id: &Id, col: usize, current: &Cell| {
        let first = updates
            .iter()
            .zip(&keys)
            .find(|(u, _)| u.column == col && &u.id == id)
            .map_or(0, |(_, k)| *k);
        let out = transform.apply(id, col, current);
        let new = match &out {
            Outcome::Changed(c, _) => Some(c.clone()),
            Outcome::Failed(why) => {
                report_failure(pass, id, col, why);
                None
            }
            Outcome::Empty | Outcome::Unchanged(_) => None,
        };
        redone.push((first, out));
        new
    };
    table.write(&updates, &mut redo, progress)?;
    for (key, new) in redone {
        uncount(&mut progress.counts, &Outcome::Changed(Cell::Null, key));
        count(&mut progress.counts, &new);
    }
    Ok(())
}

/// Runs `pass` over `table` with `transform`, resuming a job that was interrupted.
pub(crate) fn run(
    table: &mut dyn Table,
    transform: &dyn Transform,
    pass: &Pass<'_>,
) -> Result<Report> {
    let say = |line: String| {
        if !pass.quiet {
            eprintln!("{line}");
        }
    };
    let total = table.count()?;
    let mut progress = match (pass.dry_run, table.progress(&pass.job)?) {
        (true, _) => Progress {
            job: pass.job.clone(),
            backup: String::new(),
            last_id: None,
            counts: Counts::default(),
        },
        (false, Some(p)) => {
            say(format!(
                "resuming an interrupted run after row {}; the backup taken when it began is {}",
                p.last_id.as_ref().map_or_else(
                    || "-".to_string(),
                    |id| kura_keys::redact::user_data(id).to_string()
                ),
                p.backup
            ));
            p
        }
        (false, None) => {
            let backup = table.backup()?;
            say(format!(
                "backup of {} written to {backup}",
                table.location()
            ));
            let p = Progress {
                job: pass.job.clone(),
                backup,
                last_id: None,
                counts: Counts::default(),
            };
            table.write(&[], &mut |_, _, _| None, &p)?;
            p
        }
    };
    tracing::info!("{}", pass.start_line);
    say(pass.start_line.to_string());
    let mut meter = Meter::new(total, pass.verb, pass.quiet);
    let mut rows_done = 0u64;
    // A pipeline: while batch N is written (one core), batch N+1 is transformed.
    std::thread::scope(|s| -> Result<()> {
        let spawn = |rows: Vec<Row>| {
            s.spawn(move || {
                let outcomes = transform_rows(transform, &rows);
                (rows, outcomes)
            })
        };
        let first = table.read(Source::Live, progress.last_id.as_ref(), None, pass.batch)?;
        let mut next = spawn(first);
        loop {
            let (rows, outcomes) = next
                .join()
                .map_err(|_| anyhow::anyhow!("a worker thread failed"))?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            let ahead = table.read(Source::Live, Some(&last.id), None, pass.batch)?;
            next = spawn(ahead);
            rows_done += rows.len() as u64;
            apply_batch(table, transform, pass, &mut progress, rows, outcomes)?;
            meter.at(rows_done, false);
        }
    })?;
    meter.at(rows_done, true);
    if !pass.dry_run {
        table.finish(&pass.job)?;
    }
    Ok(Report {
        counts: progress.counts,
        backup: (!pass.dry_run).then_some(progress.backup),
    })
}

/// What `--verify` found for one value.
pub(crate) enum Verdict {
    /// Opens, to what the backup held.
    Good,
    /// NULL or empty.
    Empty,
    /// Opens, but not to what the backup held (or the row is new): the application
    /// changed it.
    Changed,
    /// Does not open; why.
    Bad(&'static str),
}

/// Checks one value against its copy in the backup.
pub(crate) trait Check: Sync {
    fn check(&self, id: &Id, column: usize, now: &Cell, before: Option<&Cell>) -> Verdict;
}

/// What `--verify` found.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Verified {
    pub(crate) good: u64,
    pub(crate) empty: u64,
    pub(crate) changed: u64,
    pub(crate) bad: u64,
}

/// Re-reads every value of the table and checks it against the backup.
pub(crate) fn verify(
    table: &mut dyn Table,
    check: &dyn Check,
    backup: &str,
    pass: &Pass<'_>,
) -> Result<Verified> {
    let mut v = Verified::default();
    let mut last: Option<Id> = None;
    loop {
        let rows = table.read(Source::Live, last.as_ref(), None, pass.batch)?;
        let Some(end) = rows.last().map(|r| r.id.clone()) else {
            break;
        };
        let before: std::collections::HashMap<Id, Vec<Cell>> = table
            .read(Source::Backup(backup), last.as_ref(), Some(&end), u32::MAX)?
            .into_iter()
            .map(|r| (r.id, r.cells))
            .collect();
        let verdicts = par_map(&rows, &|r: &Row| {
            let old = before.get(&r.id);
            r.cells
                .iter()
                .enumerate()
                .map(|(i, c)| check.check(&r.id, i, c, old.and_then(|o| o.get(i))))
                .collect::<Vec<_>>()
        });
        for (row, vs) in rows.iter().zip(verdicts) {
            for (col, verdict) in vs.into_iter().enumerate() {
                match verdict {
                    Verdict::Good => v.good += 1,
                    Verdict::Empty => v.empty += 1,
                    Verdict::Changed => v.changed += 1,
                    Verdict::Bad(why) => {
                        v.bad += 1;
                        report_failure(pass, &row.id, col, why);
                    }
                }
            }
        }
        last = Some(end);
    }
    Ok(v)
}
