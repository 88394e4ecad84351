//! [`Store`] on the PostgreSQL keystore: the whole-keystore export and replacement of backup
//! and restore, each one transaction (the same rules as the SQLite keystore's).

use ::postgres::IsolationLevel;

use super::{GENERATION_SQL, PgKeystore, changes, generation_row};
use crate::{Change, Error, Export, NODE_KIND, Object, Snapshot, Store};

impl Store for PgKeystore {
    fn export(&self) -> Result<Option<Export>, Error> {
        let (meta, keks, data_keys, objects) = self.read(|client| {
            // One snapshot for the keys and the objects.
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let meta = generation_row(&tx.query(GENERATION_SQL, &[])?)?;
            let rows = if matches!(meta, Some((_, true))) {
                Some((
                    tx.query(
                        "SELECT id, wrapped, master_key_id, state, created_at, retired_at
                         FROM keks ORDER BY created_at, seq",
                        &[],
                    )?,
                    tx.query(
                        "SELECT id, keyring, method, wrapped, kek_id, state,
                                created_at, activated_at, retired_at, destroyed_at
                         FROM data_keys ORDER BY created_at, seq",
                        &[],
                    )?,
                    tx.query(
                        "SELECT kind, id, version, doc, blob FROM objects
                         WHERE kind <> $1 ORDER BY kind, id",
                        &[&NODE_KIND],
                    )?,
                ))
            } else {
                None
            };
            tx.commit()?;
            let (keks, data_keys, objects) = rows.unwrap_or_default();
            Ok((meta, keks, data_keys, objects))
        })?;
        let (generation, initialised) =
            meta.ok_or_else(|| self.corrupt("the meta row is missing".into()))?;
        let Some(generation) = self.checked_generation(generation, initialised)? else {
            return Ok(None);
        };
        let snapshot = Snapshot {
            generation,
            keks: keks
                .iter()
                .map(|r| self.kek_from_row(r))
                .collect::<Result<_, _>>()?,
            data_keys: data_keys
                .iter()
                .map(|r| self.data_key_from_row(r))
                .collect::<Result<_, _>>()?,
        };
        let objects = objects
            .iter()
            .map(|r| self.object(r))
            .collect::<Result<_, _>>()?;
        Ok(Some(Export { snapshot, objects }))
    }

    fn replace_all(
        &self,
        expected_generation: Option<u64>,
        changes: &[Change],
        objects: &[Object],
    ) -> Result<u64, Error> {
        self.write(|tx| {
            let db = |e: ::postgres::Error| self.db(&e);
            // The stored counter, also when no key is stored (then it may be 0).
            let stored = self.lock_meta(tx)?;
            let initialised = self.has_kek(tx)?;
            match (
                expected_generation,
                self.checked_generation(stored, initialised)?,
            ) {
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
            let generation = u64::try_from(stored)
                .ok()
                .and_then(|g| g.checked_add(1))
                .ok_or_else(|| self.corrupt(format!("generation {stored} cannot be bumped")))?;
            tx.execute("DELETE FROM data_keys", &[]).map_err(db)?;
            tx.execute("DELETE FROM keks", &[]).map_err(db)?;
            tx.execute("DELETE FROM objects WHERE kind <> $1", &[&NODE_KIND])
                .map_err(db)?;
            changes::apply_all(tx, self, changes)?;
            if !self.has_kek(tx)? {
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
                        "INSERT INTO objects (kind, id, version, doc, blob)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (kind, id) DO NOTHING",
                        &[&o.kind, &o.id, &version, &o.doc, &o.blob],
                    )
                    .map_err(db)?;
                if n != 1 {
                    return Err(Error::AlreadyExists {
                        what: format!("{} {}", o.kind, o.id),
                    });
                }
            }
            self.write_generation(tx, generation)?;
            tx.execute(
                "UPDATE meta SET objects_generation = objects_generation + 1 WHERE id = 1",
                &[],
            )
            .map_err(db)?;
            Ok(generation)
        })
        .inspect(|_| self.vacuum())
    }
}
