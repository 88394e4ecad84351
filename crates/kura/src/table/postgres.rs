//! [`Table`] in a PostgreSQL database.
//!
//! The backup is a copy of the table in the same database, taken in one statement
//! (`CREATE TABLE kura_backup_<table>_<unix time> AS TABLE <table>`); restore it with
//! `BEGIN; DELETE FROM <table>; INSERT INTO <table> SELECT * FROM <backup>; COMMIT;` while
//! the application is stopped, and drop it once the migration is verified.
//! Connections follow the keystore's TLS rules ([`kura_store::connect_client`]): TLS with
//! a verified server when the URL has `sslmode=verify-full` (or `require`) and
//! `sslrootcert`.

use anyhow::{Context, Result, bail};
use postgres::Client;
use postgres::types::ToSql;

use super::{
    Cell, Counts, Id, PROGRESS_TABLE, Progress, ProgressSql, Redo, Row, Source, Storage, Table,
    Target, Update, id_columns, id_from_columns, id_range, identifier, keys_from_json,
    keys_to_json, quote, redact, to_i64, to_u64,
};

type Param = Box<dyn ToSql + Sync>;

pub(crate) struct PgTable {
    url: String,
    client: Client,
    target: Target,
    storage: Vec<Storage>,
    /// The id column's SQL type (ids travel as text and are cast to it).
    id_type: String,
    id_is_int: bool,
    progress_ready: bool,
    sql: ProgressSql,
}

impl PgTable {
    pub(crate) fn open(url: &str, target: &Target) -> Result<Self> {
        let mut client = kura_store::connect_client(url)?;
        let cols = client.query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&quote(&target.table)],
        )?;
        let find = |name: &str| {
            cols.iter()
                .find(|r| r.get::<_, String>(0) == name)
                .map(|r| (r.get::<_, String>(1), r.get::<_, String>(2)))
        };
        if cols.is_empty() {
            bail!(
                "{} has no table '{}'; check --table",
                redact(url),
                target.table
            );
        }
        let Some((id_type, id_typname)) = find(&target.id_column) else {
            bail!(
                "table '{}' has no column '{}'; check --id-column",
                target.table,
                target.id_column
            );
        };
        let mut storage = Vec::new();
        for c in &target.columns {
            let Some((full, typname)) = find(c) else {
                bail!(
                    "table '{}' has no column '{c}'; check --column",
                    target.table
                );
            };
            storage.push(match (typname.as_str(), full.as_str()) {
                ("bytea", _) => Storage::Bytes,
                ("text", _) | ("varchar", "character varying") => Storage::Text,
                _ => bail!(
                    "column '{c}' is {full}: kura stores envelopes in text or bytea columns, which have no length limit; \
                     change it with ALTER TABLE {} ALTER COLUMN {c} TYPE text (or bytea) first",
                    target.table
                ),
            });
        }
        Ok(Self {
            url: redact(url),
            client,
            target: target.clone(),
            storage,
            id_is_int: matches!(id_typname.as_str(), "int2" | "int4" | "int8"),
            id_type,
            progress_ready: false,
            sql: ProgressSql::new(|n| format!("${n}"), "BIGINT", "BOOLEAN"),
        })
    }

    fn id_of(&self, text: String) -> Result<Id> {
        Ok(if self.id_is_int {
            Id::Int(text.parse().context("an integer row id")?)
        } else {
            Id::Text(text)
        })
    }

    /// `"id" = $n::text::<type>`.
    fn id_is(&self, n: usize) -> String {
        format!("{} = ${n}::text::{}", self.target.id_q(), self.id_type)
    }

    fn cell_param(&self, column: usize, cell: &Cell) -> Param {
        let bytes = self.storage.get(column) == Some(&Storage::Bytes);
        match cell {
            Cell::Null if bytes => Box::new(None::<Vec<u8>>),
            Cell::Null => Box::new(None::<String>),
            Cell::Text(t) if bytes => Box::new(t.as_bytes().to_vec()),
            Cell::Text(t) => Box::new(t.clone()),
            Cell::Bytes(b) if bytes => Box::new(b.clone()),
            Cell::Bytes(b) => Box::new(String::from_utf8_lossy(b).into_owned()),
        }
    }

    fn cell_of(&self, row: &postgres::Row, i: usize, column: usize) -> Result<Cell> {
        Ok(if self.storage.get(column) == Some(&Storage::Bytes) {
            row.try_get::<_, Option<Vec<u8>>>(i)?
                .map_or(Cell::Null, Cell::Bytes)
        } else {
            row.try_get::<_, Option<String>>(i)?
                .map_or(Cell::Null, Cell::Text)
        })
    }

    fn has_progress_table(&mut self) -> Result<bool> {
        let row = self
            .client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&PROGRESS_TABLE])?;
        Ok(row.get(0))
    }
}

impl Table for PgTable {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn storage(&self) -> &[Storage] {
        &self.storage
    }

    fn count(&mut self) -> Result<u64> {
        let row = self.client.query_one(
            &format!("SELECT count(*) FROM {}", self.target.table_q()),
            &[],
        )?;
        Ok(to_u64(row.get(0)))
    }

    fn backup(&mut self) -> Result<String> {
        let short: String = self.target.table.chars().take(30).collect();
        let stamp = crate::nodes::now();
        for n in 1..100 {
            let name = match n {
                1 => format!("kura_backup_{short}_{stamp}"),
                _ => format!("kura_backup_{short}_{stamp}_{n}"),
            };
            let exists: bool = self
                .client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quote(&name)])?
                .get(0);
            if exists {
                continue;
            }
            self.client
                .batch_execute(&format!(
                    "CREATE TABLE {} AS TABLE {}",
                    quote(&name),
                    self.target.table_q()
                ))
                .with_context(|| format!("cannot copy table '{}' to {name}", self.target.table))?;
            return Ok(name);
        }
        bail!("cannot find a free name for the backup table; drop old kura_backup_ tables")
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
                identifier("backup table", b)?;
                quote(b)
            }
        };
        let id = self.target.id_q();
        let (filter, ids) = id_range(&id, after, upto, |n| {
            format!("${n}::text::{}", self.id_type)
        });
        let mut args: Vec<Param> = ids
            .into_iter()
            .map(|i| Box::new(i.to_string()) as Param)
            .collect();
        args.push(Box::new(i64::from(limit)));
        // The text form of the id gets another name: ORDER BY would otherwise sort by it
        // (as text) instead of by the id column.
        let sql = format!(
            "SELECT {id}::text AS kura_row_id, {} FROM {from} {filter} ORDER BY {id} LIMIT ${}",
            self.target.columns_q(),
            args.len()
        );
        let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
        let rows = self.client.query(&sql, &refs)?;
        rows.iter()
            .map(|r| {
                Ok(Row {
                    id: self.id_of(r.try_get(0)?)?,
                    cells: (0..self.target.columns.len())
                        .map(|c| self.cell_of(r, c + 1, c))
                        .collect::<Result<_>>()?,
                })
            })
            .collect()
    }

    fn progress(&mut self, job: &str) -> Result<Option<Progress>> {
        if !self.has_progress_table()? {
            return Ok(None);
        }
        let Some(r) = self.client.query_opt(&self.sql.select, &[&job])? else {
            return Ok(None);
        };
        Ok(Some(Progress {
            job: job.to_string(),
            backup: r.try_get(0)?,
            last_id: id_from_columns(r.try_get(1)?, r.try_get(2)?)?,
            counts: Counts {
                changed: to_u64(r.try_get(3)?),
                unchanged: to_u64(r.try_get(4)?),
                empty: to_u64(r.try_get(5)?),
                failed: to_u64(r.try_get(6)?),
                data_keys: keys_from_json(&r.try_get::<_, String>(7)?),
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
            self.client.batch_execute(&self.sql.create)?;
            self.progress_ready = true;
        }
        let table = self.target.table_q();
        let statements: Vec<(String, String, String)> = (0..self.target.columns.len())
            .map(|i| {
                let col = self.target.column_q(i);
                (
                    format!(
                        "UPDATE {table} SET {col} = $1 WHERE {} AND {col} IS NOT DISTINCT FROM $3",
                        self.id_is(2)
                    ),
                    format!(
                        "SELECT {col} FROM {table} WHERE {} FOR UPDATE",
                        self.id_is(1)
                    ),
                    format!("UPDATE {table} SET {col} = $1 WHERE {}", self.id_is(2)),
                )
            })
            .collect();
        let params: Vec<(Param, Param)> = updates
            .iter()
            .map(|u| {
                (
                    self.cell_param(u.column, &u.new),
                    self.cell_param(u.column, &u.old),
                )
            })
            .collect();
        let bytes: Vec<bool> = self.storage.iter().map(|s| *s == Storage::Bytes).collect();
        let mut tx = self.client.transaction()?;
        for (u, (new, old)) in updates.iter().zip(&params) {
            let Some((cas, select, set)) = statements.get(u.column) else {
                continue;
            };
            let id = u.id.to_string();
            if tx.execute(cas.as_str(), &[new.as_ref(), &id, old.as_ref()])? > 0 {
                continue;
            }
            // Changed since it was read: decide again from what is there now, under the
            // row lock taken by FOR UPDATE.
            let Some(row) = tx.query_opt(select.as_str(), &[&id])? else {
                // Deleted meanwhile: decided as a NULL (nothing to write).
                redo(&u.id, u.column, &Cell::Null);
                continue;
            };
            let current = if bytes.get(u.column) == Some(&true) {
                row.try_get::<_, Option<Vec<u8>>>(0)?
                    .map_or(Cell::Null, Cell::Bytes)
            } else {
                row.try_get::<_, Option<String>>(0)?
                    .map_or(Cell::Null, Cell::Text)
            };
            if let Some(new) = redo(&u.id, u.column, &current) {
                let p: Param = match new {
                    Cell::Bytes(b) => Box::new(b),
                    Cell::Text(t) => Box::new(t),
                    Cell::Null => Box::new(None::<String>),
                };
                tx.execute(set.as_str(), &[p.as_ref(), &id])?;
            }
        }
        let (last, is_int) = id_columns(progress.last_id.as_ref());
        let c = &progress.counts;
        tx.execute(
            &self.sql.upsert,
            &[
                &progress.job,
                &progress.backup,
                &last,
                &is_int,
                &to_i64(c.changed),
                &to_i64(c.unchanged),
                &to_i64(c.empty),
                &to_i64(c.failed),
                &keys_to_json(&c.data_keys),
                &crate::nodes::now(),
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn finish(&mut self, job: &str) -> Result<()> {
        if self.has_progress_table()? {
            self.client.execute(&self.sql.delete, &[&job])?;
        }
        Ok(())
    }
}
