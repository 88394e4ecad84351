//! [`Table`] on an SQLite database file.
//!
//! The backup is a copy of the whole database taken with SQLite's online backup API, next
//! to it: `<db>.pre-kura-migration-<unix time>.bak`. Restore it by copying it over the
//! database while the application is stopped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql, TransactionBehavior, params};

use super::{
    Cell, Counts, Id, PROGRESS_TABLE, Progress, ProgressSql, Redo, Row, Source, Storage, Table,
    Target, Update, id_columns, id_from_columns, id_range, keys_from_json, keys_to_json, to_i64,
    to_u64,
};

/// The schema name the backup is attached under for reading.
const BACKUP_SCHEMA: &str = "kura_backup";

pub(crate) struct SqliteTable {
    path: PathBuf,
    conn: Connection,
    target: Target,
    storage: Vec<Storage>,
    attached: Option<String>,
    progress_ready: bool,
    sql: ProgressSql,
}

impl ToSql for Id {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Self::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Self::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

impl ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Self::Null => ToSqlOutput::Owned(Value::Null),
            Self::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Self::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn id_of(v: ValueRef<'_>) -> rusqlite::Result<Id> {
    match v {
        ValueRef::Integer(i) => Ok(Id::Int(i)),
        ValueRef::Text(t) => Ok(Id::Text(String::from_utf8_lossy(t).into_owned())),
        other => Err(rusqlite::Error::InvalidColumnType(
            0,
            "row id (must be an integer or text)".into(),
            other.data_type(),
        )),
    }
}

fn cell_of(v: ValueRef<'_>) -> Cell {
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
        ValueRef::Integer(i) => Cell::Text(i.to_string()),
        ValueRef::Real(r) => Cell::Text(r.to_string()),
    }
}

/// How a declared column type stores envelopes (SQLite's affinity rules).
fn storage_of(declared: &str) -> Storage {
    let t = declared.to_ascii_uppercase();
    if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        Storage::Text
    } else if t.contains("BLOB") {
        Storage::Bytes
    } else {
        Storage::AsFound
    }
}

/// Copies the whole database with the online backup API in one step (one read
/// transaction: writers of a WAL database go on meanwhile, and a commit by another
/// connection does not restart the copy), retrying while a writer of a rollback-journal
/// database holds its lock.
fn copy_database(conn: &Connection, to: &Path) -> Result<()> {
    use rusqlite::backup::{Backup, StepResult};
    let mut dst = Connection::open(to)?;
    let backup = Backup::new(conn, &mut dst)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => bail!(
                "the database stayed locked by other writers for two minutes; try again when it is quieter"
            ),
        }
    }
}

impl SqliteTable {
    pub(crate) fn open(path: &Path, target: &Target) -> Result<Self> {
        if !path.is_file() {
            bail!(
                "the database {} does not exist (give an SQLite file or a postgres:// URL)",
                path.display()
            );
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.execute_batch(crate::cmd::migrate::SQLITE_TUNING)?;
        let mut declared = std::collections::HashMap::new();
        {
            let mut stmt = conn.prepare("SELECT name, type FROM pragma_table_info(?1)")?;
            let rows = stmt.query_map([&target.table], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (name, ty) = row?;
                declared.insert(name, ty);
            }
        }
        if declared.is_empty() {
            bail!(
                "{} has no table '{}'; check --table",
                path.display(),
                target.table
            );
        }
        if !declared.contains_key(&target.id_column) {
            bail!(
                "table '{}' has no column '{}'; check --id-column",
                target.table,
                target.id_column
            );
        }
        let mut storage = Vec::new();
        for c in &target.columns {
            match declared.get(c) {
                Some(ty) => storage.push(storage_of(ty)),
                None => bail!(
                    "table '{}' has no column '{c}'; check --column",
                    target.table
                ),
            }
        }
        Ok(Self {
            // Absolute, for the usage record and the messages that name it.
            path: path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
            conn,
            target: target.clone(),
            storage,
            attached: None,
            progress_ready: false,
            sql: ProgressSql::new(|n| format!("?{n}"), "INTEGER", "INTEGER"),
        })
    }

    fn has_progress_table(&self) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [PROGRESS_TABLE],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn attach(&mut self, backup: &str) -> Result<()> {
        if self.attached.as_deref() == Some(backup) {
            return Ok(());
        }
        if self.attached.is_some() {
            self.conn
                .execute(&format!("DETACH DATABASE {BACKUP_SCHEMA}"), [])?;
            self.attached = None;
        }
        self.conn
            .execute(&format!("ATTACH DATABASE ?1 AS {BACKUP_SCHEMA}"), [backup])
            .with_context(|| format!("cannot open the backup {backup}"))?;
        self.attached = Some(backup.to_string());
        Ok(())
    }
}

impl Table for SqliteTable {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn storage(&self) -> &[Storage] {
        &self.storage
    }

    fn count(&mut self) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            &format!("SELECT COUNT(*) FROM {}", self.target.table_q()),
            [],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }

    fn backup(&mut self) -> Result<String> {
        let name = self
            .path
            .file_name()
            .context("the database path names no file")?
            .to_string_lossy()
            .into_owned();
        let stamp = crate::nodes::now();
        let mut path = self
            .path
            .with_file_name(format!("{name}.pre-kura-migration-{stamp}.bak"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = self
                .path
                .with_file_name(format!("{name}.pre-kura-migration-{stamp}-{n}.bak"));
        }
        // Written under a temporary name and renamed once complete and on disk: a run
        // killed meanwhile leaves no half backup under the final name.
        let partial = path.with_extension("bak.partial");
        copy_database(&self.conn, &partial)
            .with_context(|| format!("cannot back up the database to {}", partial.display()))?;
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&partial, &path))
            .and_then(|()| match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => kura_store::atomic::sync_dir(dir),
                _ => Ok(()),
            })
            .with_context(|| format!("cannot complete the backup {}", path.display()))?;
        Ok(path.display().to_string())
    }

    fn read(
        &mut self,
        source: Source<'_>,
        after: Option<&Id>,
        upto: Option<&Id>,
        limit: u32,
    ) -> Result<Vec<Row>> {
        let from = match source {
            Source::Live => self.target.table_q(),
            Source::Backup(b) => {
                self.attach(b)?;
                format!("{BACKUP_SCHEMA}.{}", self.target.table_q())
            }
        };
        let id = self.target.id_q();
        let (filter, ids) = id_range(&id, after, upto, |n| format!("?{n}"));
        let mut args: Vec<&dyn ToSql> = ids.into_iter().map(|i| i as &dyn ToSql).collect();
        args.push(&limit);
        let sql = format!(
            "SELECT {id}, {} FROM {from} {filter} ORDER BY {id} LIMIT ?{}",
            self.target.columns_q(),
            args.len()
        );
        let n = self.target.columns.len();
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(args.as_slice(), |r| {
            Ok(Row {
                id: id_of(r.get_ref(0)?)?,
                cells: (1..=n)
                    .map(|i| r.get_ref(i).map(cell_of))
                    .collect::<rusqlite::Result<_>>()?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn progress(&mut self, job: &str) -> Result<Option<Progress>> {
        if !self.has_progress_table()? {
            return Ok(None);
        }
        let row = self
            .conn
            .query_row(&self.sql.select, [job], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, bool>(2)?,
                    [r.get::<_, i64>(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
                    r.get::<_, String>(7)?,
                ))
            })
            .optional()?;
        let Some((backup, last, is_int, c, keys)) = row else {
            return Ok(None);
        };
        Ok(Some(Progress {
            job: job.to_string(),
            backup,
            last_id: id_from_columns(last, is_int)?,
            counts: Counts {
                changed: to_u64(c[0]),
                unchanged: to_u64(c[1]),
                empty: to_u64(c[2]),
                failed: to_u64(c[3]),
                data_keys: keys_from_json(&keys),
            },
        }))
    }

    fn write(
        &mut self,
        updates: &[Update],
        redo: &mut Redo<'_>,
        progress: &Progress,
    ) -> Result<()> {
        if !self.progress_ready {
            self.conn.execute(&self.sql.create, [])?;
            self.progress_ready = true;
        }
        let t = &self.target;
        let (table, id) = (t.table_q(), t.id_q());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let cas: Vec<String> = (0..t.columns.len())
            .map(|i| {
                let col = t.column_q(i);
                format!("UPDATE {table} SET {col} = ?1 WHERE {id} = ?2 AND {col} IS ?3")
            })
            .collect();
        for u in updates {
            let col = t.column_q(u.column);
            let sql = cas.get(u.column).map_or("", String::as_str);
            let n = tx
                .prepare_cached(sql)?
                .execute(params![u.new, u.id, u.old])?;
            if n > 0 {
                continue;
            }
            // Changed since it was read: decide again from what is there now (the
            // transaction holds the write lock, so it cannot change again).
            let current = tx
                .prepare_cached(&format!("SELECT {col} FROM {table} WHERE {id} = ?1"))?
                .query_row([&u.id], |r| r.get_ref(0).map(cell_of))
                .optional()?;
            // A deleted row is decided as a NULL (nothing to write, counted as empty).
            if let Some(new) = redo(&u.id, u.column, &current.unwrap_or(Cell::Null)) {
                tx.prepare_cached(&format!("UPDATE {table} SET {col} = ?1 WHERE {id} = ?2"))?
                    .execute(params![new, u.id])?;
            }
        }
        let (last, is_int) = id_columns(progress.last_id.as_ref());
        let c = &progress.counts;
        tx.prepare_cached(&self.sql.upsert)?.execute(params![
            progress.job,
            progress.backup,
            last,
            is_int,
            to_i64(c.changed),
            to_i64(c.unchanged),
            to_i64(c.empty),
            to_i64(c.failed),
            keys_to_json(&c.data_keys),
            crate::nodes::now(),
        ])?;
        tx.commit()?;
        Ok(())
    }

    fn finish(&mut self, job: &str) -> Result<()> {
        if self.has_progress_table()? {
            self.conn.execute(&self.sql.delete, [job])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_decide_storage() {
        assert_eq!(storage_of("TEXT"), Storage::Text);
        assert_eq!(storage_of("varchar(255)"), Storage::Text);
        assert_eq!(storage_of("BLOB"), Storage::Bytes);
        assert_eq!(storage_of(""), Storage::AsFound);
        assert_eq!(storage_of("NUMERIC"), Storage::AsFound);
    }
}
