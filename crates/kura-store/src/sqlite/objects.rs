//! [`ObjectStore`] on the SQLite keystore (schema version 2).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::SqliteKeystore;
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
    pub(super) fn object(
        &self,
        (kind, id, version, doc, blob): (String, String, i64, String, Vec<u8>),
    ) -> Result<Object, Error> {
        let version = u64::try_from(version)
            .map_err(|_| self.corrupt(format!("object {kind}/{id} has version {version}")))?;
        Ok(Object {
            kind,
            id,
            version,
            doc,
            blob,
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
                            "INSERT INTO objects (kind, id, version, doc, blob) VALUES (?1, ?2, 1, ?3, ?4)
                             ON CONFLICT (kind, id) DO NOTHING",
                            params![kind, id, doc, blob],
                        )
                        .map_err(|e| self.db(e))?;
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
                            "UPDATE objects SET version = version + 1, doc = ?3, blob = ?4
                             WHERE kind = ?1 AND id = ?2 AND version = ?5",
                            params![kind, id, doc, blob, v],
                        )
                        .map_err(|e| self.db(e))?;
                    if n != 1 {
                        let found: Option<i64> = tx
                            .query_row(
                                "SELECT version FROM objects WHERE kind = ?1 AND id = ?2",
                                params![kind, id],
                                |r| r.get(0),
                            )
                            .optional()
                            .map_err(|e| self.db(e))?;
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
                        "DELETE FROM objects WHERE kind = ?1 AND id = ?2",
                        params![kind, id],
                    )
                    .map_err(|e| self.db(e))?;
                }
            }
        }
        if bump {
            tx.execute(
                "UPDATE meta SET objects_generation = objects_generation + 1 WHERE id = 1",
                [],
            )
            .map_err(|e| self.db(e))?;
        }
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

    fn store() -> (tempfile::TempDir, SqliteKeystore) {
        let d = tempfile::tempdir().unwrap();
        let s = SqliteKeystore::open(&d.path().join("k.db")).unwrap();
        (d, s)
    }

    fn create(kind: &str, id: &str, doc: &str) -> ObjectChange {
        ObjectChange::Create {
            kind: kind.into(),
            id: id.into(),
            doc: doc.into(),
            blob: vec![1, 2, 3],
        }
    }

    #[test]
    fn create_get_update_delete() {
        let (_d, s) = store();
        assert_eq!(s.objects_generation().unwrap(), 0);
        s.apply(&[create("k", "a", "{}")]).unwrap();
        let o = s.get("k", "a").unwrap().unwrap();
        assert_eq!(
            (o.version, o.doc.as_str(), o.blob.as_slice()),
            (1, "{}", &[1u8, 2, 3][..])
        );
        assert!(matches!(
            s.apply(&[create("k", "a", "{}")]),
            Err(Error::AlreadyExists { .. })
        ));
        let up = |v| ObjectChange::Update {
            kind: "k".into(),
            id: "a".into(),
            version: v,
            doc: "{\"x\":1}".into(),
            blob: vec![],
        };
        s.apply(&[up(1)]).unwrap();
        assert!(matches!(
            s.apply(&[up(1)]),
            Err(Error::Conflict {
                expected: 1,
                found: 2
            })
        ));
        assert_eq!(s.get("k", "a").unwrap().unwrap().version, 2);
        s.apply(&[ObjectChange::Delete {
            kind: "k".into(),
            id: "a".into(),
        }])
        .unwrap();
        assert!(s.get("k", "a").unwrap().is_none());
        assert_eq!(s.objects_generation().unwrap(), 3);
    }

    #[test]
    fn a_version_1_keystore_is_upgraded_in_place() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("k.db");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(super::super::schema::V1_FOR_TESTS).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
        }
        let s = SqliteKeystore::open(&path).unwrap();
        s.apply(&[create("k", "a", "{}")]).unwrap();
        assert_eq!(s.objects_generation().unwrap(), 1);
    }

    #[test]
    fn quiet_writes_leave_the_generation_alone() {
        let (_d, s) = store();
        s.apply_quiet(&[create("node", "n1", "{}")]).unwrap();
        assert_eq!(s.objects_generation().unwrap(), 0);
        assert!(s.get("node", "n1").unwrap().is_some());
        s.apply(&[create("k", "a", "{}")]).unwrap();
        assert_eq!(s.objects_generation().unwrap(), 1);
    }

    #[test]
    fn batches_are_atomic() {
        let (_d, s) = store();
        s.apply(&[create("k", "a", "1")]).unwrap();
        let r = s.apply(&[create("k", "b", "2"), create("k", "a", "dup")]);
        assert!(r.is_err());
        assert!(s.get("k", "b").unwrap().is_none());
        assert_eq!(s.get("k", "a").unwrap().unwrap().doc, "1");
    }

    #[test]
    fn list_by_prefix_and_page() {
        let (_d, s) = store();
        let ids = ["a/1", "a/2", "a/3", "ab", "b/1"];
        s.apply(&ids.iter().map(|i| create("m", i, "{}")).collect::<Vec<_>>())
            .unwrap();
        s.apply(&[create("other", "a/9", "{}")]).unwrap();
        let ids_of = |v: Vec<Object>| v.into_iter().map(|o| o.id).collect::<Vec<_>>();
        assert_eq!(
            ids_of(s.list("m", "a/", None, 10).unwrap()),
            ["a/1", "a/2", "a/3"]
        );
        assert_eq!(
            ids_of(s.list("m", "a/", Some("a/1"), 10).unwrap()),
            ["a/2", "a/3"]
        );
        assert_eq!(ids_of(s.list("m", "", None, 2).unwrap()), ["a/1", "a/2"]);
        assert_eq!(
            ids_of(s.list("m", "", Some("a/3"), 10).unwrap()),
            ["ab", "b/1"]
        );
        assert_eq!(
            ids_of(s.list("m", "zz", None, 10).unwrap()),
            Vec::<String>::new()
        );
    }
}
