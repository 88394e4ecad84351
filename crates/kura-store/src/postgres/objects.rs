//! [`ObjectStore`] on the PostgreSQL keystore (schema version 2).
//!
//! Ids compare byte by byte (`COLLATE "C"`), as SQLite's do, whatever the database's
//! collation: listing order and prefix ranges are the same on both backends.

use ::postgres::types::Type;
use ::postgres::{Row, Transaction};

use super::PgKeystore;
use crate::objects::{Contents, ObjectWriter, apply_changes, prefix_end, stored_object};
use crate::{Error, Object, ObjectChange, ObjectStore};

/// Version 2: the object table and its generation.
pub(crate) const V2: &str = r#"
CREATE TABLE objects (
    kind    TEXT COLLATE "C" NOT NULL,
    id      TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL CHECK (version >= 1),
    doc     TEXT   NOT NULL,
    blob    BYTEA  NOT NULL,
    PRIMARY KEY (kind, id)
);

ALTER TABLE meta ADD COLUMN objects_generation BIGINT NOT NULL DEFAULT 0;
"#;

impl PgKeystore {
    /// An object row (`kind, id, version, doc, blob`), its version checked.
    pub(super) fn object(&self, r: &Row) -> Result<Object, Error> {
        let db = |e: ::postgres::Error| self.db(&e);
        let fields = (
            r.try_get(0).map_err(db)?,
            r.try_get(1).map_err(db)?,
            r.try_get(2).map_err(db)?,
            r.try_get(3).map_err(db)?,
            r.try_get(4).map_err(db)?,
        );
        stored_object(fields, &self.location)
    }
}

/// Object writes in `tx`, a write transaction of `store` holding the `meta` lock.
pub(super) struct Writer<'a, 't> {
    pub(super) tx: &'a mut Transaction<'t>,
    pub(super) store: &'a PgKeystore,
}

impl ObjectWriter for Writer<'_, '_> {
    fn insert(&mut self, c: &Contents<'_>) -> Result<bool, Error> {
        self.tx
            .execute(
                "INSERT INTO objects (kind, id, version, doc, blob)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (kind, id) DO NOTHING",
                &[&c.kind, &c.id, &c.version, &c.doc, &c.blob],
            )
            .map(|n| n == 1)
            .map_err(|e| self.store.db(&e))
    }

    fn update(&mut self, c: &Contents<'_>) -> Result<bool, Error> {
        self.tx
            .execute(
                "UPDATE objects SET version = version + 1, doc = $3, blob = $4
                 WHERE kind = $1 AND id = $2 AND version = $5",
                &[&c.kind, &c.id, &c.doc, &c.blob, &c.version],
            )
            .map(|n| n == 1)
            .map_err(|e| self.store.db(&e))
    }

    fn version(&mut self, kind: &str, id: &str) -> Result<Option<i64>, Error> {
        self.tx
            .query_opt(
                "SELECT version FROM objects WHERE kind = $1 AND id = $2",
                &[&kind, &id],
            )
            .and_then(|r| r.map(|r| r.try_get(0)).transpose())
            .map_err(|e| self.store.db(&e))
    }

    fn delete(&mut self, kind: &str, id: &str) -> Result<(), Error> {
        self.tx
            .execute(
                "DELETE FROM objects WHERE kind = $1 AND id = $2",
                &[&kind, &id],
            )
            .map(drop)
            .map_err(|e| self.store.db(&e))
    }

    fn bump_generation(&mut self) -> Result<(), Error> {
        self.tx
            .execute(
                "UPDATE meta SET objects_generation = objects_generation + 1 WHERE id = 1",
                &[],
            )
            .map(drop)
            .map_err(|e| self.store.db(&e))
    }
}

impl ObjectStore for PgKeystore {
    fn get(&self, kind: &str, id: &str) -> Result<Option<Object>, Error> {
        let rows = self.read(|client| {
            client.query_typed(
                "SELECT kind, id, version, doc, blob FROM objects WHERE kind = $1 AND id = $2",
                &[(&kind, Type::TEXT), (&id, Type::TEXT)],
            )
        })?;
        rows.first().map(|r| self.object(r)).transpose()
    }

    fn list(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Object>, Error> {
        let upper = prefix_end(prefix);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.read(|client| {
            client.query_typed(
                "SELECT kind, id, version, doc, blob FROM objects
                 WHERE kind = $1 AND id >= $2 AND ($3::text IS NULL OR id > $3)
                   AND ($4::text IS NULL OR id < $4) AND starts_with(id, $2)
                 ORDER BY id LIMIT $5",
                &[
                    (&kind, Type::TEXT),
                    (&prefix, Type::TEXT),
                    (&after, Type::TEXT),
                    (&upper, Type::TEXT),
                    (&limit, Type::INT8),
                ],
            )
        })?;
        rows.iter().map(|r| self.object(r)).collect()
    }

    fn apply_with(&self, changes: &[ObjectChange], bump: bool) -> Result<(), Error> {
        self.write(|tx| {
            // Object writers take turns, as on SQLite, and after any key change in progress.
            self.lock_meta(tx)?;
            apply_changes(&mut Writer { tx, store: self }, changes, bump)
        })
    }

    fn objects_generation(&self) -> Result<u64, Error> {
        let rows = self.read(|client| {
            client.query_typed("SELECT objects_generation FROM meta WHERE id = 1", &[])
        })?;
        let row = rows
            .first()
            .ok_or_else(|| self.corrupt("the meta row is missing".into()))?;
        let g: i64 = row.try_get(0).map_err(|e| self.db(&e))?;
        u64::try_from(g).map_err(|_| self.corrupt(format!("objects generation {g}")))
    }

    fn clock(&self) -> Result<i64, Error> {
        let rows = self.read(|client| {
            client.query_typed(
                "SELECT floor(extract(epoch FROM clock_timestamp()))::int8",
                &[],
            )
        })?;
        let row = rows
            .first()
            .ok_or_else(|| self.corrupt("the database returned no time".into()))?;
        row.try_get(0).map_err(|e| self.db(&e))
    }
}
