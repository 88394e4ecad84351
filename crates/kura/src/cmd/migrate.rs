//! `kura migrate-encryption` and `kura reencrypt`: rewrite the encrypted columns of an
//! application's table (SQLite or PostgreSQL) in place, in batches, after a backup.
//!
//! `migrate-encryption` turns legacy AES-128-CBC values into kura record envelopes;
//! `reencrypt` re-seals envelopes under the active data key. Each envelope is bound to its
//! row with the encryption context `{"table": T, "column": C, "row": <row id as text>}`
//! unless `--no-row-binding`. Values already in the wanted form are recognised and left
//! alone, and the job's progress is saved with every batch, so a killed run resumes.

mod bench;
mod engine;

pub(crate) use bench::bench;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::ValueEnum;
use kura_format::{EncryptionContext, envelope};
use kura_keys::{LegacyFormat, LegacyKey, Vault, find_envelope};
use serde::Deserialize;

use crate::cli::{Cli, LegacyFormatArg, MigrateArgs, OutputFormat, ReencryptArgs, TableArgs};
use crate::table::{self, Cell, Counts, Id, Storage, Target};
use crate::usage::{self, TableUsage};
use crate::{env, nodes, output};
use engine::{Check, Outcome, Pass, Transform, Verdict};

/// The refusal while a node is alive.
pub(crate) const LIVE_NODES: &str = "There are other live nodes connected to this backend database. If kura was shut down within the last minute, try again shortly, otherwise verify all nodes in the cluster are shut down.";

/// Connection settings of a migration on SQLite: a 64 MiB page cache (the table is read
/// and rewritten in id order). Durability stays the database's own.
pub(crate) const SQLITE_TUNING: &str = "PRAGMA cache_size = -65536";

/// The seed's start line.
const START: &str = "Starting migration from AES-128-CBC Legacy to AES-GCM-256";

/// The settings file of `-d FILE`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database: Option<String>,
    table: Option<String>,
    id_column: Option<String>,
    #[serde(default)]
    columns: Vec<String>,
    legacy_key_file: Option<PathBuf>,
    legacy_format: Option<String>,
    #[serde(default)]
    no_row_binding: bool,
}

/// A job's table, from flags and the settings file.
struct Plan {
    database: String,
    target: Target,
    bind_rows: bool,
    file: FileSettings,
}

fn plan(a: &TableArgs) -> Result<Plan> {
    let mut file = match &a.internal_db_creds {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            serde_yaml::from_str::<Option<FileSettings>>(&text)
                .with_context(|| format!("{} is not a valid settings file", p.display()))?
                .unwrap_or_default()
        }
        None => FileSettings::default(),
    };
    let need = |v: Option<String>, flag: &str, key: &str| {
        v.with_context(|| format!("{flag} is required (or `{key}` in the -d settings file)"))
    };
    let columns = if a.columns.is_empty() {
        std::mem::take(&mut file.columns)
    } else {
        a.columns.clone()
    };
    if columns.is_empty() {
        bail!("--column is required (at least one, or `columns` in the -d settings file)");
    }
    let database = need(
        a.database.clone().or(file.database.take()),
        "--database",
        "database",
    )?;
    let table = need(a.table.clone().or(file.table.take()), "--table", "table")?;
    let id = need(
        a.id_column.clone().or(file.id_column.take()),
        "--id-column",
        "id_column",
    )?;
    Ok(Plan {
        database,
        target: Target::new(&table, &id, &columns)?,
        bind_rows: !(a.no_row_binding || file.no_row_binding),
        file,
    })
}

/// The encryption context of a value: its table, column and row, or nothing.
struct Binding {
    target: Target,
    bind_rows: bool,
}

impl Binding {
    fn context(&self, id: &Id, column: usize) -> EncryptionContext {
        let mut ctx = EncryptionContext::new();
        if self.bind_rows {
            ctx.insert("table", self.target.table.as_str());
            ctx.insert(
                "column",
                self.target.columns.get(column).map_or("", String::as_str),
            );
            ctx.insert("row", id.to_string());
        }
        ctx
    }
}

/// A new envelope as the column stores it.
fn stored(storage: Storage, old: &Cell, env: Vec<u8>) -> Cell {
    match (storage, old) {
        (Storage::Bytes, _) | (Storage::AsFound, Cell::Bytes(_)) => Cell::Bytes(env),
        _ => Cell::Text(STANDARD.encode(env)),
    }
}

/// The non-empty bytes of a value.
fn content(cell: &Cell) -> Option<&[u8]> {
    cell.bytes().filter(|b| !b.trim_ascii().is_empty())
}

/// The legacy format of one value: binary values (BLOB, BYTEA) that are not text of the
/// configured format hold `IV ‖ CT` raw.
fn value_format(format: LegacyFormat, cell: &Cell, bytes: &[u8]) -> LegacyFormat {
    let is_text = match format {
        LegacyFormat::Base64IvCt => STANDARD.decode(bytes.trim_ascii()).is_ok(),
        LegacyFormat::HexIvCt => hex::decode(bytes.trim_ascii()).is_ok(),
        _ => true,
    };
    match cell {
        Cell::Bytes(_) if !is_text => LegacyFormat::RawIvCt,
        _ => format,
    }
}

/// Re-seals `plain` for `(id, column)`.
fn reseal(v: &Migration<'_>, id: &Id, column: usize, old: &Cell, plain: &[u8]) -> Outcome {
    let ctx = v.binding.context(id, column);
    match v.vault.seal(plain, &ctx) {
        Ok(env) => {
            let key = envelope::key_id(&env).unwrap_or(0);
            let storage = v.storage.get(column).copied().unwrap_or(Storage::AsFound);
            Outcome::Changed(stored(storage, old, env), key)
        }
        Err(_) => Outcome::Failed("cannot seal it (the keystore's data keys are unusable)"),
    }
}

/// Both jobs: legacy values (if a legacy key is given) and envelopes not under the active
/// data key are re-sealed under it.
struct Migration<'a> {
    vault: &'a Vault,
    legacy: Option<(&'a LegacyKey, LegacyFormat)>,
    binding: Binding,
    storage: Vec<Storage>,
    /// Re-seal envelopes under older data keys (reencrypt); migrate leaves them.
    refresh: bool,
}

const NOT_OPENING: &str = "a kura envelope that does not open here (copied from another row or column, or sealed with another context or a destroyed data key)";

impl Transform for Migration<'_> {
    fn apply(&self, id: &Id, column: usize, cell: &Cell) -> Outcome {
        let Some(bytes) = content(cell) else {
            return Outcome::Empty;
        };
        let ctx = self.binding.context(id, column);
        if let Some(env) = find_envelope(bytes) {
            let key = envelope::key_id(&env).ok();
            if !self.refresh {
                // Checked, not just recognised: a value moved here from elsewhere shows.
                return match self.vault.open(&env, &ctx) {
                    Ok(_) => Outcome::Unchanged(key),
                    Err(_) => Outcome::Failed(NOT_OPENING),
                };
            }
            if key == Some(self.vault.keyring().active_data_key_id()) {
                return Outcome::Unchanged(key);
            }
            return match self.vault.open(&env, &ctx) {
                Ok(plain) => reseal(self, id, column, cell, &plain),
                Err(_) => Outcome::Failed(NOT_OPENING),
            };
        }
        match self.legacy {
            None => Outcome::Failed("not a kura envelope"),
            Some((key, format)) => match key.decrypt(bytes, value_format(format, cell, bytes)) {
                Ok(plain) => reseal(self, id, column, cell, &plain),
                Err(_) => Outcome::Failed("it does not decrypt under the legacy key"),
            },
        }
    }
}

impl Check for Migration<'_> {
    fn check(&self, id: &Id, column: usize, now: &Cell, before: Option<&Cell>) -> Verdict {
        let before_cell = before;
        let before = before.and_then(content);
        let Some(bytes) = content(now) else {
            return if before.is_none() {
                Verdict::Empty
            } else {
                Verdict::Changed
            };
        };
        let ctx = self.binding.context(id, column);
        let Some(env) = find_envelope(bytes) else {
            return Verdict::Bad("not a kura envelope after the run");
        };
        let Ok(plain) = self.vault.open(&env, &ctx) else {
            return Verdict::Bad(NOT_OPENING);
        };
        let legacy = |b: &[u8]| {
            self.legacy.map(|(k, f)| {
                let old = Cell::Bytes(Vec::new());
                (k, value_format(f, before_cell.unwrap_or(&old), b))
            })
        };
        match before.map(|b| self.vault.open_any(b, &ctx, legacy(b))) {
            Some(Ok((old, _))) if old[..] == plain[..] => Verdict::Good,
            _ => Verdict::Changed,
        }
    }
}

/// How a job speaks.
struct Words<'a> {
    /// Its command (names the job and the usage record).
    by: &'a str,
    /// Logged once the backup is taken.
    start_line: &'a str,
    /// Of the progress line.
    verb: &'a str,
    /// Of the summary: the changed and unchanged values, as text and as JSON keys.
    did: (&'a str, &'a str),
    had: (&'a str, &'a str),
}

/// Runs a job and prints its summary.
fn run_job(
    cli: &Cli,
    a: &TableArgs,
    p: &Plan,
    migration: Migration<'_>,
    w: &Words<'_>,
) -> Result<()> {
    let by = w.by;
    let mut t = table::open(&p.database, &p.target)?;
    // A resumed job must go on exactly as it began: the binding is part of its name.
    let job = format!(
        "{by}:{}:{}:{}{}",
        p.target.table,
        p.target.id_column,
        p.target.columns.join(","),
        if p.bind_rows { "" } else { ":unbound" }
    );
    let migration = Migration {
        storage: t.storage().to_vec(),
        binding: Binding {
            target: p.target.clone(),
            bind_rows: p.bind_rows,
        },
        ..migration
    };
    let pass = Pass {
        job,
        columns: &p.target.columns,
        batch: a.batch,
        dry_run: a.dry_run,
        start_line: w.start_line,
        verb: w.verb,
        quiet: false,
    };
    let report = engine::run(t.as_mut(), &migration, &pass)?;
    let c: Counts = report.counts;
    let verified = match (&report.backup, a.verify) {
        (Some(b), true) => Some(engine::verify(t.as_mut(), &migration, b, &pass)?),
        _ => None,
    };
    if !a.dry_run {
        let settings = env::settings(cli)?;
        let store = env::store(&settings, false)?;
        usage::record(
            &*store,
            &TableUsage {
                location: t.location(),
                table: p.target.table.clone(),
                columns: p.target.columns.clone(),
                data_keys: c.data_keys.clone(),
                by: by.to_string(),
                at: nodes::now(),
            },
        )?;
    }
    let ((did, did_key), (had, had_key)) = (w.did, w.had);
    let mut line = format!(
        "{}{did} {}, {had} {}, empty {}, failed {}",
        if a.dry_run {
            "dry run: would have "
        } else {
            ""
        },
        c.changed,
        c.unchanged,
        c.empty,
        c.failed
    );
    if let Some(v) = &verified {
        line.push_str(&format!(
            "\nverified: {} open to what the backup held, {} empty, {} changed by the application since the backup, {} bad",
            v.good, v.empty, v.changed, v.bad
        ));
    }
    let bad = verified.as_ref().map_or(0, |v| v.bad);
    match cli.output {
        OutputFormat::Json => {
            let sum = serde_json::json!({
                "dry_run": a.dry_run,
                did_key: c.changed,
                had_key: c.unchanged,
                "empty": c.empty,
                "failed": c.failed,
                "backup": report.backup,
                "data_keys": c.data_keys,
                "verify": verified,
            });
            output::emit(cli, &sum, String::new)?;
        }
        OutputFormat::Text => output::emit(cli, &(), || line.clone())?,
    }
    let backup = report.backup.as_deref().unwrap_or("not taken (dry run)");
    if c.failed > 0 {
        bail!(
            "{} values could not be {did} and were left unchanged (their row ids are logged above); the backup is {backup}",
            c.failed
        );
    }
    if bad > 0 {
        bail!(
            "{bad} values failed verification (their row ids are logged above); the backup is {backup}"
        );
    }
    Ok(())
}

/// Refuses while another kura node on this keystore is alive.
fn refuse_if_live(cli: &Cli) -> Result<()> {
    let settings = env::settings(cli)?;
    let store = env::store(&settings, false)?;
    let live = nodes::live_nodes(&*store)?;
    if !live.is_empty() {
        for (id, n) in &live {
            tracing::warn!(node = %id, host = %n.host, pid = n.pid, listen = %n.listen, "live kura node");
        }
        bail!("{LIVE_NODES}");
    }
    Ok(())
}

pub(crate) fn run(cli: &Cli, a: &MigrateArgs) -> Result<()> {
    let mut p = plan(&a.table)?;
    let key_file = a
        .legacy_key_file
        .clone()
        .or(p.file.legacy_key_file.take())
        .context("--legacy-key-file is required (or `legacy_key_file` in the -d settings file)")?;
    let format = match (a.legacy_format, &p.file.legacy_format) {
        (Some(f), _) => f,
        (None, Some(s)) => LegacyFormatArg::from_str(s, false).map_err(|_| {
            anyhow::anyhow!("legacy_format '{s}' is not base64-iv-ct, hex-iv-ct or raw-iv-ct")
        })?,
        (None, None) => LegacyFormatArg::Base64IvCt,
    };
    let format = LegacyFormat::from(format);
    let key = LegacyKey::from_file(&key_file)?;
    if !a.online && !a.table.dry_run {
        refuse_if_live(cli)?;
    }
    let (keyring, _, _) = env::open(cli)?;
    let vault = Vault::from_keyring(keyring);
    let m = Migration {
        vault: &vault,
        legacy: Some((&key, format)),
        binding: Binding {
            target: p.target.clone(),
            bind_rows: p.bind_rows,
        },
        storage: Vec::new(),
        refresh: false,
    };
    let w = Words {
        by: "migrate-encryption",
        start_line: START,
        verb: "migrated",
        did: ("migrated", "migrated"),
        had: ("already migrated", "already_migrated"),
    };
    run_job(cli, &a.table, &p, m, &w)
}

pub(crate) fn reencrypt(cli: &Cli, a: &ReencryptArgs) -> Result<()> {
    let p = plan(&a.table)?;
    if p.file.legacy_key_file.is_some() || p.file.legacy_format.is_some() {
        bail!("reencrypt takes no legacy key: run migrate-encryption for legacy values");
    }
    let (keyring, _, _) = env::open(cli)?;
    let active = keyring.active_data_key_id();
    let vault = Vault::from_keyring(keyring);
    let m = Migration {
        vault: &vault,
        legacy: None,
        binding: Binding {
            target: p.target.clone(),
            bind_rows: p.bind_rows,
        },
        storage: Vec::new(),
        refresh: true,
    };
    let start = format!(
        "Re-encrypting table {} under data key {active}",
        p.target.table
    );
    let w = Words {
        by: "reencrypt",
        start_line: &start,
        verb: "re-encrypted",
        did: ("re-encrypted", "reencrypted"),
        had: ("already under the active data key", "already_current"),
    };
    run_job(cli, &a.table, &p, m, &w)
}
