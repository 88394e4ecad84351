//! `kura bench migrate`: the migration of an SQLite table against a plain read + update
//! pass over the same rows without crypto, in the same run.
//!
//! Two copies of one table are made: `id INTEGER PRIMARY KEY, v TEXT` holding base64 legacy
//! values of 200-byte plaintexts. "plain" reads the rows in id order in batches of 1000
//! and writes each row a new value of the length the migration writes (no crypto), one
//! transaction a batch, on a connection tuned like the migration's; "kura" is the whole
//! `migrate-encryption` job on the other copy (backup, compare-and-swap updates, progress
//! record, row binding). The ratio is kura's rows/s over plain's.

use std::time::Instant;

use anyhow::Result;
use kura_keys::{Keyring, LegacyFormat, LegacyKey, Vault};
use rusqlite::{Connection, params};
use serde::Serialize;

use super::{Binding, Migration, engine};
use crate::cli::{BenchArgs, Cli};
use crate::cmd::bench::{Row, table};
use crate::output::emit;
use crate::table::{self as tables, Target};

const BATCH: u32 = 1000;
const VALUE_LEN: usize = 200;

#[derive(Serialize)]
struct Report {
    rows: u64,
    results: Vec<Row>,
}

/// The table of `rows` legacy values.
fn build(path: &std::path::Path, key: &LegacyKey, rows: u64) -> Result<()> {
    let mut c = Connection::open(path)?;
    c.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
    )?;
    let tx = c.transaction()?;
    {
        let mut ins = tx.prepare("INSERT INTO t VALUES (?1, ?2)")?;
        let mut plain = [0u8; VALUE_LEN];
        for i in 0..rows {
            let n = i.to_le_bytes();
            for (j, b) in plain.iter_mut().enumerate() {
                *b = n[j % 8] ^ (j as u8);
            }
            let v = key.encrypt(&plain, LegacyFormat::Base64IvCt)?;
            ins.execute(params![i64::try_from(i)?, String::from_utf8(v)?])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The plain pass: read a batch, write each row a new value as long as the migration's
/// (the value with its first `grow` bytes appended), commit; returns rows.
fn plain_pass(path: &std::path::Path, grow: usize) -> Result<u64> {
    let mut c = Connection::open(path)?;
    c.execute_batch(super::SQLITE_TUNING)?;
    let mut last = -1i64;
    let mut n = 0u64;
    loop {
        let tx = c.transaction()?;
        let rows: Vec<(i64, String)> = tx
            .prepare_cached("SELECT id, v FROM t WHERE id > ?1 ORDER BY id LIMIT ?2")?
            .query_map(params![last, BATCH], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let Some(&(end, _)) = rows.last() else {
            break;
        };
        {
            let mut up = tx.prepare_cached("UPDATE t SET v = ?1 WHERE id = ?2")?;
            for (id, v) in &rows {
                let mut new = v.clone();
                new.push_str(v.get(..grow).unwrap_or(v));
                up.execute(params![new, id])?;
            }
        }
        tx.commit()?;
        n += rows.len() as u64;
        last = end;
    }
    Ok(n)
}

pub(crate) fn bench(cli: &Cli, a: &BenchArgs) -> Result<()> {
    let rows = a.rows.unwrap_or(if a.quick { 50_000 } else { 1_000_000 });
    let dir = tempfile::tempdir()?;
    let vault = Vault::from_keyring(Keyring::ephemeral(&dir.path().join("keystore.db"))?);
    let mut raw = [0u8; 16];
    kura_crypto::rng::fill(&mut raw)?;
    let legacy = LegacyKey::from_bytes(&raw)?;

    eprintln!("building two copies of a table of {rows} legacy values…");
    let kura_db = dir.path().join("kura.db");
    let plain_db = dir.path().join("plain.db");
    build(&kura_db, &legacy, rows)?;
    {
        let c = Connection::open(&kura_db)?;
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    }
    std::fs::copy(&kura_db, &plain_db)?;

    let start = Instant::now();
    // Base64 of IV ‖ CT (16 + 208 bytes) becomes base64 of an envelope (68 + 200 + 16).
    let grow = (68 + VALUE_LEN + 16).div_ceil(3) * 4 - (16 + 208usize).div_ceil(3) * 4;
    let n_plain = plain_pass(&plain_db, grow)?;
    let plain_secs = start.elapsed().as_secs_f64();

    let target = Target::new("t", "id", &["v".to_string()])?;
    let db = kura_db.display().to_string();
    let start = Instant::now();
    let mut t = tables::open(&db, &target)?;
    let m = Migration {
        vault: &vault,
        legacy: Some((&legacy, LegacyFormat::Base64IvCt)),
        binding: Binding {
            target: target.clone(),
            bind_rows: true,
        },
        storage: t.storage().to_vec(),
        refresh: false,
    };
    let columns = target.columns.clone();
    let pass = engine::Pass {
        job: "bench".into(),
        columns: &columns,
        batch: BATCH,
        dry_run: false,
        start_line: "",
        verb: "migrated",
        quiet: true,
    };
    let report = engine::run(t.as_mut(), &m, &pass)?;
    let kura_secs = start.elapsed().as_secs_f64();
    if report.counts.changed != rows || n_plain != rows {
        anyhow::bail!(
            "the benchmark migrated {} of {rows} rows (plain pass: {n_plain}); this is a bug",
            report.counts.changed
        );
    }
    let (k, p) = (rows as f64 / kura_secs, rows as f64 / plain_secs);
    let results = vec![Row {
        name: "migrate 200 B rows",
        kura: k,
        raw: p,
        unit: "rows/s",
        ratio: k / p,
    }];
    let text = format!(
        "{rows} rows: kura {kura_secs:.2} s (backup, legacy decrypt, seal, compare-and-swap update, progress), plain {plain_secs:.2} s (read + update)\n{}",
        table(&results, "plain")
    );
    emit(cli, &Report { rows, results }, || text)
}
