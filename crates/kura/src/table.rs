//! Encrypted columns of an application's table, in SQLite or PostgreSQL: what
//! `kura migrate-encryption`, `kura reencrypt` and `kura bench migrate` read and rewrite.
//!
//! A [`Table`] reads rows in id order in batches and writes a batch of changed values in
//! one transaction, each with a compare-and-swap on the value it was computed from, so a
//! concurrent write by the application is never overwritten. The same transaction records
//! how far the job got (the `kura_migration_progress` table in the application database),
//! so a job killed at any point resumes where it stopped.

mod postgres;
mod sqlite;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{Result, bail};

/// The progress table kura creates in the application database.
pub(crate) const PROGRESS_TABLE: &str = "kura_migration_progress";

/// A row id: integers are compared as integers, anything else as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Id {
    Int(i64),
    Text(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// One stored value (ciphertext or envelope: never a plaintext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    Text(String),
    Bytes(Vec<u8>),
}

impl Cell {
    /// The stored bytes (`None` for NULL).
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Null => None,
            Self::Text(t) => Some(t.as_bytes()),
            Self::Bytes(b) => Some(b),
        }
    }
}

/// How a column stores envelopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storage {
    /// Base64 text (TEXT, VARCHAR, CLOB columns).
    Text,
    /// Raw bytes (BLOB, BYTEA columns).
    Bytes,
    /// As the value being replaced is stored (SQLite columns without a declared type).
    AsFound,
}

/// One row of a batch: its id and the values of the job's columns, in order.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) id: Id,
    pub(crate) cells: Vec<Cell>,
}

/// A new value for `(id, column)`, computed from `old`.
#[derive(Debug)]
pub(crate) struct Update {
    pub(crate) id: Id,
    pub(crate) column: usize,
    pub(crate) old: Cell,
    pub(crate) new: Cell,
}

/// Counts of a job, cumulative over its resumed runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) changed: u64,
    pub(crate) unchanged: u64,
    pub(crate) empty: u64,
    pub(crate) failed: u64,
    /// How many values each data key seals, by key id.
    pub(crate) data_keys: BTreeMap<u64, u64>,
}

/// How far a job got: saved with every batch.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    pub(crate) job: String,
    pub(crate) backup: String,
    pub(crate) last_id: Option<Id>,
    pub(crate) counts: Counts,
}

/// Which copy of the table to read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    Live,
    /// The backup a job took (as [`Table::backup`] named it).
    Backup(&'a str),
}

/// Called when a compare-and-swap finds another value than the one an update was computed
/// from: given the current value (read under a lock), returns what to store instead, if
/// anything.
pub(crate) type Redo<'a> = dyn FnMut(&Id, usize, &Cell) -> Option<Cell> + 'a;

/// The table, id column and columns of a job, checked to be plain identifiers.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) table: String,
    pub(crate) id_column: String,
    pub(crate) columns: Vec<String>,
}

impl Target {
    pub(crate) fn new(table: &str, id_column: &str, columns: &[String]) -> Result<Self> {
        identifier("table", table)?;
        identifier("id column", id_column)?;
        if columns.is_empty() {
            bail!("--column is required (at least one)");
        }
        for (i, c) in columns.iter().enumerate() {
            identifier("column", c)?;
            if c == id_column || columns[..i].contains(c) {
                bail!("column '{c}' is named twice (or is the id column)");
            }
        }
        Ok(Self {
            table: table.to_string(),
            id_column: id_column.to_string(),
            columns: columns.to_vec(),
        })
    }

    /// `"table"`.
    pub(crate) fn table_q(&self) -> String {
        quote(&self.table)
    }

    /// `"id"`.
    pub(crate) fn id_q(&self) -> String {
        quote(&self.id_column)
    }

    /// `"c1", "c2"`.
    pub(crate) fn columns_q(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `"c"` of column `i`.
    pub(crate) fn column_q(&self, i: usize) -> String {
        self.columns.get(i).map(|c| quote(c)).unwrap_or_default()
    }
}

fn identifier(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !ok {
        bail!(
            "{what} '{name}' is not a plain identifier (at most 63 letters, digits and underscores, not starting with a digit)"
        );
    }
    Ok(())
}

/// The `WHERE` clause of a read of ids in `(after, upto]` naming only the bounds given (so
/// that the database can seek on the id's index), and the ids it binds in order;
/// `placeholder(n)` writes the n-th parameter (1-based).
fn id_range<'a>(
    id: &str,
    after: Option<&'a Id>,
    upto: Option<&'a Id>,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<&'a Id>) {
    let mut bounds = Vec::new();
    let mut ids = Vec::new();
    for (bound, op) in [(after, ">"), (upto, "<=")] {
        if let Some(v) = bound {
            ids.push(v);
            bounds.push(format!("{id} {op} {}", placeholder(ids.len())));
        }
    }
    if bounds.is_empty() {
        (String::new(), ids)
    } else {
        (format!("WHERE {}", bounds.join(" AND ")), ids)
    }
}

/// Quotes a checked identifier.
fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// A table being migrated.
pub(crate) trait Table {
    /// Where the table is, for messages and records (never a password).
    fn location(&self) -> String;

    /// How each of the job's columns stores envelopes.
    fn storage(&self) -> &[Storage];

    /// The number of rows.
    fn count(&mut self) -> Result<u64>;

    /// Copies the whole table aside before anything changes; returns where the copy is.
    fn backup(&mut self) -> Result<String>;

    /// At most `limit` rows with ids in `(after, upto]`, in id order.
    fn read(
        &mut self,
        source: Source<'_>,
        after: Option<&Id>,
        upto: Option<&Id>,
        limit: u32,
    ) -> Result<Vec<Row>>;

    /// The saved progress of `job`, if it was started and not finished.
    fn progress(&mut self, job: &str) -> Result<Option<Progress>>;

    /// In one transaction: applies `updates` (each a compare-and-swap on its old value;
    /// on a miss, `redo` decides from the current value) and saves `progress`.
    fn write(&mut self, updates: &[Update], redo: &mut Redo<'_>, progress: &Progress)
    -> Result<()>;

    /// Forgets the progress of a finished job.
    fn finish(&mut self, job: &str) -> Result<()>;
}

/// Opens `database` (an SQLite file, or a `postgres://` / `postgresql://` URL) for `target`.
pub(crate) fn open(database: &str, target: &Target) -> Result<Box<dyn Table>> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        Ok(Box::new(postgres::PgTable::open(database, target)?))
    } else {
        Ok(Box::new(sqlite::SqliteTable::open(
            Path::new(database),
            target,
        )?))
    }
}

/// `postgres://user:secret@host/db` without the secret, for messages.
pub(crate) fn redact(database: &str) -> String {
    kura_keys::config::redact_url_password(database)
}

/// The statements on the progress table, with `p(n)` writing the n-th parameter and
/// `int`/`flag` the column types of the database.
struct ProgressSql {
    create: String,
    select: String,
    upsert: String,
    delete: String,
}

impl ProgressSql {
    fn new(p: impl Fn(usize) -> String, int: &str, flag: &str) -> Self {
        let params: Vec<String> = (1..=10).map(&p).collect();
        Self {
            create: format!(
                "CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (job TEXT PRIMARY KEY, backup TEXT NOT NULL, \
                 last_id TEXT, last_id_is_int {flag} NOT NULL, changed {int} NOT NULL, unchanged {int} NOT NULL, \
                 empty {int} NOT NULL, failed {int} NOT NULL, data_keys TEXT NOT NULL, updated_at {int} NOT NULL)"
            ),
            select: format!(
                "SELECT backup, last_id, last_id_is_int, changed, unchanged, empty, failed, data_keys FROM {PROGRESS_TABLE} WHERE job = {}",
                p(1)
            ),
            upsert: format!(
                "INSERT INTO {PROGRESS_TABLE} VALUES ({}) ON CONFLICT (job) DO UPDATE SET \
                 backup = excluded.backup, last_id = excluded.last_id, last_id_is_int = excluded.last_id_is_int, \
                 changed = excluded.changed, unchanged = excluded.unchanged, empty = excluded.empty, failed = excluded.failed, \
                 data_keys = excluded.data_keys, updated_at = excluded.updated_at",
                params.join(", ")
            ),
            delete: format!("DELETE FROM {PROGRESS_TABLE} WHERE job = {}", p(1)),
        }
    }
}

/// The progress record as stored: ids as text, with a flag telling integers.
fn id_columns(id: Option<&Id>) -> (Option<String>, bool) {
    match id {
        None => (None, false),
        Some(Id::Int(i)) => (Some(i.to_string()), true),
        Some(Id::Text(t)) => (Some(t.clone()), false),
    }
}

fn id_from_columns(text: Option<String>, is_int: bool) -> Result<Option<Id>> {
    Ok(match text {
        None => None,
        Some(t) if is_int => Some(Id::Int(t.parse().map_err(|_| {
            anyhow::anyhow!("the progress record holds a bad row id '{t}'; delete its row from {PROGRESS_TABLE} to start over")
        })?)),
        Some(t) => Some(Id::Text(t)),
    })
}

fn keys_to_json(keys: &BTreeMap<u64, u64>) -> String {
    serde_json::to_string(keys).unwrap_or_else(|_| "{}".into())
}

fn keys_from_json(text: &str) -> BTreeMap<u64, u64> {
    serde_json::from_str(text).unwrap_or_default()
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        let cols = vec!["a".to_string()];
        assert!(Target::new("t", "id", &cols).is_ok());
        for bad in ["", "1t", "t;drop", "t\"", "é", &"x".repeat(64)] {
            assert!(Target::new(bad, "id", &cols).is_err(), "{bad}");
            assert!(Target::new("t", bad, &cols).is_err(), "{bad}");
            assert!(Target::new("t", "id", &[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(Target::new("t", "id", &["id".into()]).is_err());
        assert!(Target::new("t", "id", &["a".into(), "a".into()]).is_err());
        assert!(Target::new("t", "id", &[]).is_err());
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact("/srv/app.db"), "/srv/app.db");
    }

    #[test]
    fn progress_ids_round_trip() {
        for id in [None, Some(Id::Int(-5)), Some(Id::Text("a b".into()))] {
            let (t, i) = id_columns(id.as_ref());
            assert_eq!(id_from_columns(t, i).unwrap(), id);
        }
        assert!(id_from_columns(Some("x".into()), true).is_err());
    }
}
