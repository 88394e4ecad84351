//! [`Store`] on the SQLite keystore: the whole-keystore export and replacement of backup
//! and restore, each one transaction.

use rusqlite::TransactionBehavior;

use super::objects::{Writer, row};
use super::{SqliteKeystore, changes};
use crate::generation::{after_replace, check_replace};
use crate::objects::ObjectWriter;
use crate::replace::{check_has_kek, insert_objects};
use crate::{Change, Error, Export, NODE_KIND, Object, Store};

impl Store for SqliteKeystore {
    fn export(&self) -> Result<Option<Export>, Error> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        let Some(snapshot) = self.read_snapshot(&tx)? else {
            return Ok(None);
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
        check_replace(
            expected_generation,
            self.read_generation(&tx)?,
            &self.location,
        )?;
        // The stored counter, also when no key is stored (then it may be 0).
        let stored: i64 = tx
            .query_row("SELECT generation FROM meta WHERE id = 1", [], |r| r.get(0))
            .map_err(|e| self.db(e))?;
        let generation = after_replace(stored, &self.location)?;
        tx.execute("DELETE FROM data_keys", [])
            .map_err(|e| self.db(e))?;
        tx.execute("DELETE FROM keks", []).map_err(|e| self.db(e))?;
        tx.execute("DELETE FROM objects WHERE kind <> ?1", [NODE_KIND])
            .map_err(|e| self.db(e))?;
        changes::apply_all(&tx, &self.location, changes)?;
        check_has_kek(self.has_kek(&tx)?)?;
        let mut writer = Writer {
            tx: &tx,
            store: self,
        };
        insert_objects(&mut writer, objects)?;
        self.write_generation(&tx, generation)?;
        writer.bump_generation()?;
        tx.commit().map_err(|e| self.db(e))?;
        // The old blobs were zeroed in the main file (secure_delete); drop the WAL's copies.
        Self::checkpoint(&conn);
        Ok(generation)
    }
}
