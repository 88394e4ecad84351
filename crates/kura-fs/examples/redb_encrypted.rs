//! A redb database on kura-fs: everything it writes is encrypted and authenticated.
//!
//! ```sh
//! # a keystore first (or point --data-dir/--master-key-file at yours):
//! cargo run --release -p kura -- init --dev
//! cargo run --release -p kura-fs --example redb_encrypted -- --root DIR --records N
//! cargo run --release -p kura-fs --example redb_encrypted -- --root DIR --verify
//! ```
//!
//! Writing puts keys `0..N` with values `value-<i>` in batches of 1000, one transaction
//! (two-phase commit) per batch, continuing after the last complete batch found. `--verify`
//! checks that the database holds exactly the keys of complete batches, each with its
//! value, and prints how many records it found. The master key is taken the way the
//! `kura` CLI takes it: `--config`, `--data-dir`, `--master-key-file` or their `KURA_*`
//! variables (`kura init --dev` keeps both under ./kura-dev).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use kura_fs::{EncryptedFs, Method, Options, RedbBackend};
use kura_keys::Vault;
use kura_keys::config::Overrides;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const RECORDS: TableDefinition<u64, &str> = TableDefinition::new("records");
const BATCH: u64 = 1000;
const DB: &str = "records.redb";

struct Args {
    root: PathBuf,
    records: Option<u64>,
    verify: bool,
    config: Option<PathBuf>,
    overrides: Overrides,
}

fn usage() -> String {
    "usage: redb_encrypted --root DIR (--records N | --verify) [--config FILE] [--data-dir DIR] [--master-key-file FILE]".into()
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        root: PathBuf::new(),
        records: None,
        verify: false,
        config: std::env::var_os("KURA_CONFIG").map(PathBuf::from),
        overrides: Overrides::default(),
    };
    let mut it = std::env::args().skip(1);
    let mut root = None;
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))
        };
        match flag.as_str() {
            "--root" => root = Some(PathBuf::from(value()?)),
            "--records" => {
                let v = value()?;
                a.records = Some(
                    v.parse()
                        .map_err(|_| format!("--records {v}: not a number"))?,
                );
            }
            "--verify" => a.verify = true,
            "--config" => a.config = Some(PathBuf::from(value()?)),
            "--data-dir" => a.overrides.data_dir = Some(PathBuf::from(value()?)),
            "--master-key-file" => a.overrides.master_key_file = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {flag}\n{}", usage())),
        }
    }
    a.root = root.ok_or_else(usage)?;
    // Exactly one of --records and --verify.
    if a.records.is_some() == a.verify {
        return Err(usage());
    }
    Ok(a)
}

fn open(a: &Args) -> Result<Database, Box<dyn std::error::Error>> {
    let keyring = Vault::from_config(a.config.as_deref(), &a.overrides)?.into_keyring();
    let fs = EncryptedFs::open(
        &a.root,
        Arc::new(keyring),
        Options {
            method: Method::Aes256GcmPage,
            file_dictionary_log: true,
        },
    )?;
    let backend = RedbBackend::open(&fs, DB)?;
    Ok(Database::builder().create_with_backend(backend)?)
}

/// The records present, checked: keys `0..n` for a multiple of the batch (or the target),
/// each holding its value.
fn count(db: &Database) -> Result<u64, Box<dyn std::error::Error>> {
    let tx = db.begin_read()?;
    let table = match tx.open_table(RECORDS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut n = 0u64;
    for item in table.iter()? {
        let (k, v) = item?;
        let (k, v) = (k.value(), v.value());
        if k != n {
            return Err(format!("key {n} is missing (found {k} next)").into());
        }
        if v != format!("value-{k}") {
            return Err(format!("key {k} holds {v:?}").into());
        }
        n += 1;
    }
    Ok(n)
}

fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let db = open(a)?;
    let found = count(&db)?;
    if a.verify {
        if found % BATCH != 0 {
            // Only the final batch of a run may be short: say so rather than fail.
            println!(
                "found {found} records (the last batch holds {})",
                found % BATCH
            );
        } else {
            println!("found {found} records");
        }
        return Ok(());
    }
    let target = a.records.unwrap_or(0);
    let mut next = found;
    while next < target {
        let end = (next + BATCH).min(target);
        let mut tx = db.begin_write()?;
        tx.set_two_phase_commit(true);
        {
            let mut table = tx.open_table(RECORDS)?;
            for i in next..end {
                table.insert(i, format!("value-{i}").as_str())?;
            }
        }
        tx.commit()?;
        next = end;
    }
    println!(
        "wrote {} records; {target} in all",
        target.saturating_sub(found)
    );
    Ok(())
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redb_encrypted: error: {e}");
            ExitCode::FAILURE
        }
    }
}
