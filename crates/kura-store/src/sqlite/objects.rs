//! [`ObjectStore`] on the SQLite keystore (schema version 2).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::SqliteKeystore;
use crate::objects::{Contents, ObjectWriter, apply_changes, prefix_end, stored_object};
use crate::{Error, Object, ObjectChange, ObjectStore};

/// Version 2: the object table and its generation.
pub(crate) const V2: &str = "
CREATE TABLE objects (
    kind    TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    doc     TEXT    NOT NULL,
    blob    BLOB    NOT NULL,
    PRIMARY KEY (kind, id)
) STRICT, WITHOUT ROWID;

ALTER TABLE meta ADD COLUMN objects_generation INTEGER NOT NULL DEFAULT 0;
";

pub(super) fn row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, i64, String, Vec<u8>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

impl SqliteKeystore {
    /// An object row (as [`row`] reads it), its version checked.
    pub(super) fn object(
        &self,
        r: (String, String, i64, String, Vec<u8>),
    ) -> Result<Object, Error> {
        stored_object(r, &self.location)
    }
}

/// Object writes in `tx`, a write transaction of `store`'s connection.
pub(super) struct Writer<'a> {
    pub(super) tx: &'a Connection,
    pub(super) store: &'a SqliteKeystore,
}

impl ObjectWriter for Writer<'_> {
    fn insert(&mut self, c: &Contents<'_>) -> Result<bool, Error> {
        self.tx
            .execute(
                "INSERT INTO objects (kind, id, version, doc, blob) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (kind, id) DO NOTHING",
                params![c.kind, c.id, c.version, c.doc, c.blob],
            )
            .map(|n| n == 1)
            .map_err(|e| self.store.db(e))
    }

    fn update(&mut self, c: &Contents<'_>) -> Result<bool, Error> {
        self.tx
            .execute(
                "UPDATE objects SET version = version + 1, doc = ?3, blob = ?4
                 WHERE kind = ?1 AND id = ?2 AND version = ?5",
                params![c.kind, c.id, c.doc, c.blob, c.version],
            )
            .map(|n| n == 1)
            .map_err(|e| self.store.db(e))
    }

    fn version(&mut self, kind: &str, id: &str) -> Result<Option<i64>, Error> {
        self.tx
            .query_row(
                "SELECT version FROM objects WHERE kind = ?1 AND id = ?2",
                params![kind, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.store.db(e))
    }

    fn delete(&mut self, kind: &str, id: &str) -> Result<(), Error> {
        self.tx
            .execute(
                "DELETE FROM objects WHERE kind = ?1 AND id = ?2",
                params![kind, id],
            )
            .map(drop)
            .map_err(|e| self.store.db(e))
    }

    fn bump_generation(&mut self) -> Result<(), Error> {
        self.tx
            .execute(
                "UPDATE meta SET objects_generation = objects_generation + 1 WHERE id = 1",
                [],
            )
            .map(drop)
            .map_err(|e| self.store.db(e))
    }
}

impl ObjectStore for SqliteKeystore {
    fn get(&self, kind: &str, id: &str) -> Result<Option<Object>, Error> {
        let conn = self.lock();
        let r = conn
            .query_row(
                "SELECT kind, id, version, doc, blob FROM objects WHERE kind = ?1 AND id = ?2",
                params![kind, id],
                row,
            )
            .optional()
            .map_err(|e| self.db(e))?;
        r.map(|r| self.object(r)).transpose()
    }

    fn list(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Object>, Error> {
        let conn = self.lock();
        let lower = match after {
            Some(a) if a >= prefix => a.to_string(),
            _ => String::new(),
        };
        let strict = after.is_some_and(|a| a >= prefix);
        let upper = prefix_end(prefix);
        let mut stmt = conn
            .prepare_cached(
                "SELECT kind, id, version, doc, blob FROM objects
                 WHERE kind = ?1 AND id >= ?2 AND (?3 = 0 OR id > ?4) AND (?5 IS NULL OR id < ?5)
                   AND substr(id, 1, length(?2)) = ?2
                 ORDER BY id LIMIT ?6",
            )
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map(
                params![
                    kind,
                    prefix,
                    i64::from(strict),
                    lower,
                    upper,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                row,
            )
            .map_err(|e| self.db(e))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(self.object(r.map_err(|e| self.db(e))?)?);
        }
        Ok(out)
    }

    fn apply_with(&self, changes: &[ObjectChange], bump: bool) -> Result<(), Error> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        let mut writer = Writer {
            tx: &tx,
            store: self,
        };
        apply_changes(&mut writer, changes, bump)?;
        tx.commit().map_err(|e| self.db(e))
    }

    fn objects_generation(&self) -> Result<u64, Error> {
        let conn = self.lock();
        let g: i64 = conn
            .query_row(
                "SELECT objects_generation FROM meta WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.db(e))?;
        u64::try_from(g).map_err(|_| self.corrupt(format!("objects generation {g}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_keystore_is_upgraded_in_place() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("k.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(super::super::schema::V1_FOR_TESTS).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
        }
        let s = SqliteKeystore::open(&path).unwrap();
        s.apply(&[ObjectChange::Create {
            kind: "k".into(),
            id: "a".into(),
            doc: "{}".into(),
            blob: vec![1, 2, 3],
        }])
        .unwrap();
        assert_eq!(s.objects_generation().unwrap(), 1);
    }
}
