//! [`Store`] on the SQLite keystore: the whole-keystore export and replacement of backup
//! and restore, each one transaction.

use rusqlite::{TransactionBehavior, params};

use super::{SqliteKeystore, changes, objects::row};
use crate::{Change, Error, Export, NODE_KIND, Object, Snapshot, Store};

impl Store for SqliteKeystore {
    fn export(&self) -> Result<Option<Export>, Error> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        let Some(generation) = self.read_generation(&tx)? else {
            return Ok(None);
        };
        let snapshot = Snapshot {
            generation,
            keks: self.read_keks(&tx)?,
            data_keys: self.read_data_keys(&tx)?,
        };
        let mut objects = Vec::new();
        {
            let mut stmt = tx
                .prepare(
                    "SELECT kind, id, version, doc, blob FROM objects
                     WHERE kind <> ?1 ORDER BY kind, id",
                )
                .map_err(|e| self.db(e))?;
            let rows = stmt.query_map([NODE_KIND], row).map_err(|e| self.db(e))?;
            for r in rows {
                objects.push(self.object(r.map_err(|e| self.db(e))?)?);
            }
        }
        tx.commit().map_err(|e| self.db(e))?;
        Ok(Some(Export { snapshot, objects }))
    }

    fn replace_all(
        &self,
        expected_generation: Option<u64>,
        changes: &[Change],
        objects: &[Object],
    ) -> Result<u64, Error> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        match (expected_generation, self.read_generation(&tx)?) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(Error::AlreadyInitialized {
                    location: self.location.clone(),
                });
            }
            (Some(_), None) => {
                return Err(Error::NotInitialized {
                    location: self.location.clone(),
                });
            }
            (Some(expected), Some(found)) if expected != found => {
                return Err(Error::Conflict { expected, found });
            }
            (Some(_), Some(_)) => {}
        }
        // The stored counter, also when no key is stored (then it may be 0).
        let stored: i64 = tx
            .query_row("SELECT generation FROM meta WHERE id = 1", [], |r| r.get(0))
            .map_err(|e| self.db(e))?;
        let generation = u64::try_from(stored)
            .ok()
            .and_then(|g| g.checked_add(1))
            .ok_or_else(|| self.corrupt(format!("generation {stored} cannot be bumped")))?;
        tx.execute("DELETE FROM data_keys", [])
            .map_err(|e| self.db(e))?;
        tx.execute("DELETE FROM keks", []).map_err(|e| self.db(e))?;
        tx.execute("DELETE FROM objects WHERE kind <> ?1", [NODE_KIND])
            .map_err(|e| self.db(e))?;
        changes::apply_all(&tx, &self.location, changes)?;
        if !self.has_kek(&tx)? {
            return Err(Error::Invalid(
                "replacing a keystore's contents must add a KEK".into(),
            ));
        }
        for o in objects {
            if o.kind == NODE_KIND {
                return Err(Error::Invalid(format!(
                    "object {NODE_KIND}/{} is a node registration; those are never replaced",
                    o.id
                )));
            }
            let version = i64::try_from(o.version)
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "object {}/{} has version {}; versions are in 1..2^63",
                        o.kind, o.id, o.version
                    ))
                })?;
            let n = tx
                .execute(
                    "INSERT INTO objects (kind, id, version, doc, blob) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (kind, id) DO NOTHING",
                    params![o.kind, o.id, version, o.doc, o.blob],
                )
                .map_err(|e| self.db(e))?;
            if n != 1 {
                return Err(Error::AlreadyExists {
                    what: format!("{} {}", o.kind, o.id),
                });
            }
        }
        self.write_generation(&tx, generation)?;
        tx.execute(
            "UPDATE meta SET objects_generation = objects_generation + 1 WHERE id = 1",
            [],
        )
        .map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        // The old blobs were zeroed in the main file (secure_delete); drop the WAL's copies.
        Self::checkpoint(&conn);
        Ok(generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        DataKeyRecord, DataKeyState, KekRecord, KekState, Keystore, ObjectChange, ObjectStore,
    };

    fn kek(id: u64) -> KekRecord {
        KekRecord {
            id,
            wrapped: vec![1, 2, 3],
            master_key_id: "mk".into(),
            state: KekState::Active,
            created_at: 100,
            retired_at: None,
        }
    }

    fn dk(id: u64, kek_id: u64, state: DataKeyState) -> DataKeyRecord {
        DataKeyRecord {
            id,
            keyring: "default".into(),
            method: "aes256-ctr".into(),
            wrapped: if state == DataKeyState::Destroyed {
                Vec::new()
            } else {
                vec![9; 8]
            },
            kek_id,
            state,
            created_at: 100,
            activated_at: Some(100),
            retired_at: None,
            destroyed_at: None,
        }
    }

    fn object(kind: &str, id: &str, version: u64) -> Object {
        Object {
            kind: kind.into(),
            id: id.into(),
            version,
            doc: format!("{{\"v\":{version}}}"),
            blob: vec![7; 3],
        }
    }

    fn store() -> (tempfile::TempDir, SqliteKeystore) {
        let d = tempfile::tempdir().unwrap();
        let s = SqliteKeystore::open(&d.path().join("k.db")).unwrap();
        (d, s)
    }

    fn contents(kek_id: u64, dk_id: u64) -> Vec<Change> {
        vec![
            Change::InsertKek(kek(kek_id)),
            Change::InsertDataKey(dk(dk_id, kek_id, DataKeyState::Active)),
            Change::InsertDataKey(dk(dk_id + 1, kek_id, DataKeyState::Destroyed)),
        ]
    }

    #[test]
    fn into_an_empty_keystore_and_back_out() {
        let (_d, s) = store();
        assert!(s.export().unwrap().is_none());
        s.apply_quiet(&[ObjectChange::Create {
            kind: NODE_KIND.into(),
            id: "n1".into(),
            doc: "{}".into(),
            blob: Vec::new(),
        }])
        .unwrap();
        let objects = [object("kms-key", "b", 3), object("alias", "a", 1)];
        assert_eq!(s.replace_all(None, &contents(1, 10), &objects).unwrap(), 1);
        let e = s.export().unwrap().unwrap();
        assert_eq!(e.snapshot.generation, 1);
        assert_eq!(e.snapshot.keks, vec![kek(1)]);
        assert_eq!(e.snapshot.data_keys.len(), 2);
        // (kind, id) order, versions kept, the node left out.
        assert_eq!(e.objects, vec![objects[1].clone(), objects[0].clone()]);
        assert!(s.get(NODE_KIND, "n1").unwrap().is_some());
        assert_eq!(s.objects_generation().unwrap(), 1);
        // A second replacement into what is now initialised needs its generation.
        assert!(matches!(
            s.replace_all(None, &contents(2, 20), &[]),
            Err(Error::AlreadyInitialized { .. })
        ));
    }

    #[test]
    fn replaces_everything_but_nodes_at_the_expected_generation() {
        let (_d, s) = store();
        s.initialize(&contents(1, 10)).unwrap();
        s.apply(&[ObjectChange::Create {
            kind: "alias".into(),
            id: "old".into(),
            doc: "{}".into(),
            blob: Vec::new(),
        }])
        .unwrap();
        s.apply_quiet(&[ObjectChange::Create {
            kind: NODE_KIND.into(),
            id: "n1".into(),
            doc: "{}".into(),
            blob: Vec::new(),
        }])
        .unwrap();
        assert!(matches!(
            s.replace_all(Some(7), &contents(2, 20), &[]),
            Err(Error::Conflict {
                expected: 7,
                found: 1
            })
        ));
        let g = s
            .replace_all(Some(1), &contents(2, 20), &[object("user", "u", 2)])
            .unwrap();
        assert_eq!(g, 2);
        let e = s.export().unwrap().unwrap();
        assert_eq!(e.snapshot.keks, vec![kek(2)]);
        let ids: Vec<u64> = e.snapshot.data_keys.iter().map(|d| d.id).collect();
        assert_eq!(ids, [20, 21]);
        assert_eq!(e.objects, vec![object("user", "u", 2)]);
        assert!(s.get("alias", "old").unwrap().is_none());
        assert!(s.get(NODE_KIND, "n1").unwrap().is_some());
    }

    #[test]
    fn a_failed_replacement_changes_nothing() {
        let (_d, s) = store();
        s.initialize(&contents(1, 10)).unwrap();
        let before = s.export().unwrap().unwrap();
        // No KEK.
        let r = s.replace_all(Some(1), &[], &[]);
        assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
        // A duplicate object.
        let r = s.replace_all(
            Some(1),
            &contents(2, 20),
            &[object("a", "x", 1), object("a", "x", 2)],
        );
        assert!(matches!(r, Err(Error::AlreadyExists { .. })), "{r:?}");
        // A node, a version 0, a data key under a missing KEK.
        for (changes, objects) in [
            (contents(2, 20), vec![object(NODE_KIND, "n", 1)]),
            (contents(2, 20), vec![object("a", "x", 0)]),
            (
                vec![
                    Change::InsertKek(kek(2)),
                    Change::InsertDataKey(dk(20, 3, DataKeyState::Active)),
                ],
                vec![],
            ),
        ] {
            let r = s.replace_all(Some(1), &changes, &objects);
            assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
        }
        assert_eq!(s.export().unwrap().unwrap(), before);
        // Into an uninitialised keystore with a generation.
        let (_d2, empty) = store();
        assert!(matches!(
            empty.replace_all(Some(1), &contents(2, 20), &[]),
            Err(Error::NotInitialized { .. })
        ));
    }
}
