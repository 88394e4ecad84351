//! [`Store`] on the PostgreSQL keystore: the whole-keystore export and replacement of backup
//! and restore, each one transaction (the same rules as the SQLite keystore's).

use super::objects::Writer;
use super::{PgKeystore, changes, snapshot};
use crate::generation::{after_replace, check_replace};
use crate::objects::ObjectWriter;
use crate::replace::{check_has_kek, insert_objects};
use crate::{Change, Error, Export, NODE_KIND, Object, Store};

impl Store for PgKeystore {
    fn export(&self) -> Result<Option<Export>, Error> {
        let (rows, objects) = self.read(|client| {
            // One snapshot for the keys and the objects.
            let mut tx = snapshot::read_only(client)?;
            let rows = snapshot::key_rows(&mut tx)?;
            let objects = if rows.initialised() {
                tx.query(
                    "SELECT kind, id, version, doc, blob FROM objects
                     WHERE kind <> $1 ORDER BY kind, id",
                    &[&NODE_KIND],
                )?
            } else {
                Vec::new()
            };
            tx.commit()?;
            Ok((rows, objects))
        })?;
        let Some(snapshot) = self.snapshot_from(rows)? else {
            return Ok(None);
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
            check_replace(
                expected_generation,
                self.checked_generation(stored, initialised)?,
                &self.location,
            )?;
            let generation = after_replace(stored, &self.location)?;
            tx.execute("DELETE FROM data_keys", &[]).map_err(db)?;
            tx.execute("DELETE FROM keks", &[]).map_err(db)?;
            tx.execute("DELETE FROM objects WHERE kind <> $1", &[&NODE_KIND])
                .map_err(db)?;
            changes::apply_all(tx, self, changes)?;
            check_has_kek(self.has_kek(tx)?)?;
            insert_objects(&mut Writer { tx, store: self }, objects)?;
            self.write_generation(tx, generation)?;
            Writer { tx, store: self }.bump_generation()?;
            Ok(generation)
        })
        .inspect(|_| self.vacuum())
    }
}
