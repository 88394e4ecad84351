//! [`ObjectStore`] on the PostgreSQL keystore (schema version 2).
//!
//! Ids compare byte by byte (`COLLATE "C"`), as SQLite's do, whatever the database's
//! collation: listing order and prefix ranges are the same on both backends.

use ::postgres::Row;
use ::postgres::types::Type;

use super::PgKeystore;
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
    pub(super) fn object(&self, r: &Row) -> Result<Object, Error> {
        let db = |e: ::postgres::Error| self.db(&e);
        let kind: String = r.try_get(0).map_err(db)?;
        let id: String = r.try_get(1).map_err(db)?;
        let version: i64 = r.try_get(2).map_err(db)?;
        let version = u64::try_from(version)
            .map_err(|_| self.corrupt(format!("object {kind}/{id} has version {version}")))?;
        Ok(Object {
            kind,
            id,
            version,
            doc: r.try_get(3).map_err(db)?,
            blob: r.try_get(4).map_err(db)?,
        })
    }
}

/// `prefix` as the upper bound of a range scan: the smallest string greater than every
/// string starting with `prefix` (None when there is none, i.e. no upper bound).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        if let Some(next) = char::from_u32(c as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
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
            let db = |e: ::postgres::Error| self.db(&e);
            // Object writers take turns, as on SQLite, and after any key change in progress.
            self.lock_meta(tx)?;
            for c in changes {
                match c {
                    ObjectChange::Create {
                        kind,
                        id,
                        doc,
                        blob,
                    } => {
                        let n = tx
                            .execute(
                                "INSERT INTO objects (kind, id, version, doc, blob)
                                 VALUES ($1, $2, 1, $3, $4)
                                 ON CONFLICT (kind, id) DO NOTHING",
                                &[kind, id, doc, blob],
                            )
                            .map_err(db)?;
                        if n != 1 {
                            return Err(Error::AlreadyExists {
                                what: format!("{kind} {id}"),
                            });
                        }
                    }
                    ObjectChange::Update {
                        kind,
                        id,
                        version,
                        doc,
                        blob,
                    } => {
                        let v = i64::try_from(*version)
                            .map_err(|_| Error::Invalid(format!("version {version}")))?;
                        let n = tx
                            .execute(
                                "UPDATE objects SET version = version + 1, doc = $3, blob = $4
                                 WHERE kind = $1 AND id = $2 AND version = $5",
                                &[kind, id, doc, blob, &v],
                            )
                            .map_err(db)?;
                        if n != 1 {
                            let found: Option<i64> = tx
                                .query_opt(
                                    "SELECT version FROM objects WHERE kind = $1 AND id = $2",
                                    &[kind, id],
                                )
                                .and_then(|r| r.map(|r| r.try_get(0)).transpose())
                                .map_err(db)?;
                            return Err(match found {
                                None => Error::Invalid(format!("no {kind} {id}")),
                                Some(f) => Error::Conflict {
                                    expected: *version,
                                    found: u64::try_from(f).unwrap_or(0),
                                },
                            });
                        }
                    }
                    ObjectChange::Delete { kind, id } => {
                        tx.execute(
                            "DELETE FROM objects WHERE kind = $1 AND id = $2",
                            &[kind, id],
                        )
                        .map_err(db)?;
                    }
                }
            }
            if bump {
                tx.execute(
                    "UPDATE meta SET objects_generation = objects_generation + 1 WHERE id = 1",
                    &[],
                )
                .map_err(db)?;
            }
            Ok(())
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
}
