//! `kura migrate-encryption`: re-encrypts legacy AES-128-CBC columns of an SQLite
//! application database into kura record envelopes (AES-256-GCM), in place.
//!
//! Each value is sealed with the encryption context `{"table": T, "column": C, "row": <row
//! id as text>}`, so an envelope moved to another row or column no longer opens. Before
//! any change the database is copied with SQLite's online backup API to
//! `<db>.pre-kura-migration-<unix time>.bak`. Rows are visited in id order, one
//! transaction per batch; values already sealed are left alone, so a re-run is a no-op.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::ValueEnum;
use kura_format::EncryptionContext;
use kura_keys::{LegacyFormat, LegacyKey, Origin, Vault};
use kura_store::SqliteKeystore;
use rusqlite::types::Value;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::cli::{Cli, LegacyFormatArg, MigrateArgs, OutputFormat};
use crate::{env, nodes, output};

/// The refusal while a node is alive.
pub(crate) const LIVE_NODES: &str = "There are other live nodes connected to this backend database. If kura was shut down within the last minute, try again shortly, otherwise verify all nodes in the cluster are shut down.";

/// The settings file of `-d FILE`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database: Option<PathBuf>,
    table: Option<String>,
    id_column: Option<String>,
    #[serde(default)]
    columns: Vec<String>,
    legacy_key_file: Option<PathBuf>,
    legacy_format: Option<String>,
}

struct Plan {
    database: PathBuf,
    table: String,
    id_column: String,
    columns: Vec<String>,
    legacy_key_file: PathBuf,
    legacy_format: LegacyFormat,
}

fn identifier(what: &str, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !ok {
        bail!(
            "{what} '{name}' is not a plain identifier (letters, digits and underscore, not starting with a digit)"
        );
    }
    // Validated above, quoted anyway.
    Ok(format!("\"{name}\""))
}

fn plan(a: &MigrateArgs) -> Result<Plan> {
    let file = match &a.internal_db_creds {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            serde_yaml::from_str::<Option<FileSettings>>(&text)
                .with_context(|| format!("{} is not a valid settings file", p.display()))?
                .unwrap_or_default()
        }
        None => FileSettings::default(),
    };
    let need = |v: Option<String>, flag: &str| {
        v.with_context(|| format!("{flag} is required (or its key in the -d settings file)"))
    };
    let legacy_format = match a.legacy_format {
        Some(f) => f,
        None => match &file.legacy_format {
            Some(s) => LegacyFormatArg::from_str(s, false).map_err(|_| {
                anyhow::anyhow!("legacy_format '{s}' is not base64-iv-ct or hex-iv-ct")
            })?,
            None => LegacyFormatArg::Base64IvCt,
        },
    };
    let columns = if a.columns.is_empty() {
        file.columns
    } else {
        a.columns.clone()
    };
    if columns.is_empty() {
        bail!("--column is required (at least one, or `columns` in the -d settings file)");
    }
    Ok(Plan {
        database: a
            .database
            .clone()
            .or(file.database)
            .context("--database is required (or `database` in the -d settings file)")?,
        table: need(a.table.clone().or(file.table), "--table")?,
        id_column: need(a.id_column.clone().or(file.id_column), "--id-column")?,
        columns,
        legacy_key_file: a.legacy_key_file.clone().or(file.legacy_key_file).context(
            "--legacy-key-file is required (or `legacy_key_file` in the -d settings file)",
        )?,
        legacy_format: match legacy_format {
            LegacyFormatArg::Base64IvCt => LegacyFormat::Base64IvCt,
            LegacyFormatArg::HexIvCt => LegacyFormat::HexIvCt,
        },
    })
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    migrated: u64,
    already_migrated: u64,
    empty: u64,
    failed: u64,
    backup: String,
}

fn backup(conn: &Connection, db: &Path) -> Result<PathBuf> {
    let name = db
        .file_name()
        .context("--database names no file")?
        .to_string_lossy()
        .into_owned();
    let path = db.with_file_name(format!("{name}.pre-kura-migration-{}.bak", nodes::now()));
    if path.exists() {
        bail!(
            "the backup {} already exists; try again in a second",
            path.display()
        );
    }
    conn.backup(
        rusqlite::MAIN_DB,
        &path,
        None::<fn(rusqlite::backup::Progress)>,
    )
    .with_context(|| format!("cannot back up the database to {}", path.display()))?;
    Ok(path)
}

fn id_text(v: &Value) -> Result<String> {
    match v {
        Value::Integer(i) => Ok(i.to_string()),
        Value::Text(t) => Ok(t.clone()),
        _ => bail!("the id column must hold integers or text"),
    }
}

enum Outcome {
    Empty,
    Already,
    Migrated(String),
    Failed,
}

fn migrate_value(
    vault: &Vault,
    legacy: (&LegacyKey, LegacyFormat),
    ctx: &EncryptionContext,
    v: &Value,
) -> Outcome {
    let bytes: &[u8] = match v {
        Value::Null => return Outcome::Empty,
        Value::Text(t) => t.as_bytes(),
        Value::Blob(b) => b,
        Value::Integer(_) | Value::Real(_) => return Outcome::Failed,
    };
    if bytes.trim_ascii().is_empty() {
        return Outcome::Empty;
    }
    match vault.open_any(bytes, ctx, Some(legacy)) {
        Ok((_, Origin::Envelope)) => Outcome::Already,
        Ok((plain, Origin::Legacy)) => match vault.seal(&plain, ctx) {
            Ok(env) => Outcome::Migrated(STANDARD.encode(env)),
            Err(_) => Outcome::Failed,
        },
        Err(_) => Outcome::Failed,
    }
}

pub(crate) fn run(cli: &Cli, a: &MigrateArgs) -> Result<()> {
    let p = plan(a)?;
    let table = identifier("table", &p.table)?;
    let id_col = identifier("id column", &p.id_column)?;
    let cols = p
        .columns
        .iter()
        .map(|c| identifier("column", c))
        .collect::<Result<Vec<_>>>()?;
    let key = LegacyKey::from_file(&p.legacy_key_file)?;
    let settings = env::settings(cli)?;
    if !a.online {
        let store = SqliteKeystore::open_existing(&env::keystore_path(&settings))?;
        let live = nodes::live_nodes(&store)?;
        if !live.is_empty() {
            for (id, n) in &live {
                tracing::warn!(node = %id, host = %n.host, pid = n.pid, listen = %n.listen, "live kura node");
            }
            bail!("{LIVE_NODES}");
        }
    }
    let (keyring, _, _) = env::open(cli)?;
    let vault = Vault::from_keyring(keyring);
    if !p.database.is_file() {
        bail!("the database {} does not exist", p.database.display());
    }
    let mut conn = Connection::open(&p.database)
        .with_context(|| format!("cannot open {}", p.database.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let select = format!(
        "SELECT {id_col}, {} FROM {table} WHERE {id_col} > ?1 ORDER BY {id_col} LIMIT ?2",
        cols.join(", ")
    );
    let first = format!(
        "SELECT {id_col}, {} FROM {table} ORDER BY {id_col} LIMIT ?1",
        cols.join(", ")
    );
    // Checks the table and columns before taking the backup.
    conn.prepare(&select).with_context(|| {
        format!(
            "table {} with columns {} and {}",
            p.table,
            p.id_column,
            p.columns.join(", ")
        )
    })?;
    let total: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
    let total = u64::try_from(total).unwrap_or(0);

    let backup_path = backup(&conn, &p.database)?;
    eprintln!(
        "backup of {} written to {}",
        p.database.display(),
        backup_path.display()
    );

    tracing::info!("Starting migration from AES-128-CBC Legacy to AES-GCM-256");
    eprintln!("Starting migration from AES-128-CBC Legacy to AES-GCM-256");
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} rows  {per_sec}  ETA {eta}",
        ) {
            b.set_style(style);
        }
        b
    });

    let mut sum = Summary {
        backup: backup_path.display().to_string(),
        ..Summary::default()
    };
    let updates: Vec<String> = cols
        .iter()
        .map(|c| format!("UPDATE {table} SET {c} = ?1 WHERE {id_col} = ?2"))
        .collect();
    let batch = i64::from(a.batch);
    let mut last: Option<Value> = None;
    let mut done = 0u64;
    loop {
        let tx = conn.transaction()?;
        let rows: Vec<(Value, Vec<Value>)> = {
            let mut stmt = tx.prepare(if last.is_some() { &select } else { &first })?;
            let map = |r: &rusqlite::Row<'_>| {
                let id: Value = r.get(0)?;
                let vals = (1..=cols.len())
                    .map(|i| r.get(i))
                    .collect::<rusqlite::Result<Vec<Value>>>()?;
                Ok((id, vals))
            };
            match &last {
                Some(l) => stmt
                    .query_map(params![l, batch], map)?
                    .collect::<rusqlite::Result<_>>()?,
                None => stmt
                    .query_map(params![batch], map)?
                    .collect::<rusqlite::Result<_>>()?,
            }
        };
        let Some((last_id, _)) = rows.last() else {
            break;
        };
        last = Some(last_id.clone());
        for (id, vals) in &rows {
            let id_s = id_text(id)?;
            for ((name, update), v) in p.columns.iter().zip(&updates).zip(vals) {
                let mut ctx = EncryptionContext::new();
                ctx.insert("table", p.table.as_str());
                ctx.insert("column", name.as_str());
                ctx.insert("row", id_s.as_str());
                match migrate_value(&vault, (&key, p.legacy_format), &ctx, v) {
                    Outcome::Empty => sum.empty += 1,
                    Outcome::Already => sum.already_migrated += 1,
                    Outcome::Failed => {
                        sum.failed += 1;
                        tracing::warn!(table = %p.table, column = %name, id = %id_s, "cannot decrypt this value; it is left unchanged");
                    }
                    Outcome::Migrated(text) => {
                        tx.execute(update, params![text, id])?;
                        sum.migrated += 1;
                    }
                }
            }
        }
        tx.commit()?;
        done += rows.len() as u64;
        match &bar {
            Some(b) => b.set_position(done),
            None => eprintln!("migrated {done}/{total} rows"),
        }
    }
    if let Some(b) = &bar {
        b.finish();
    }
    let line = format!(
        "migrated {}, already migrated {}, empty {}, failed {}",
        sum.migrated, sum.already_migrated, sum.empty, sum.failed
    );
    tracing::info!("{line}");
    match cli.output {
        OutputFormat::Json => output::emit(cli, &sum, String::new)?,
        OutputFormat::Text => output::emit(cli, &(), || line.clone())?,
    }
    if sum.failed > 0 {
        bail!(
            "{} values could not be decrypted and were left unchanged (their row ids are logged above); the backup is {}",
            sum.failed,
            sum.backup
        );
    }
    Ok(())
}
