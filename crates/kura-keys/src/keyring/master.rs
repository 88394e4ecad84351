//! Master keys of a running keyring: rotating to a new one, and taking the ones a reloaded
//! configuration names.

use std::sync::{Arc, PoisonError};

use kura_store::Change;

use super::Keyring;
use crate::Error;
use crate::master_key::MasterKey;

impl Keyring {
    /// Re-wraps the KEK under `new_master` (O(1): no data key or data is touched) and uses
    /// it from now on; the master key in use until now becomes the previous one.
    pub fn rotate_master_key(&self, new_master: Arc<dyn MasterKey>) -> Result<(), Error> {
        // The master keys are swapped as soon as the re-wrap is committed: the reload that
        // follows must unwrap the KEK with the new one.
        self.mutate_then(
            "master key rotation",
            |st, _| {
                Ok(vec![Change::RewrapKek {
                    id: st.kek.id,
                    wrapped: new_master.wrap_kek(st.kek.id, &st.kek.key)?,
                    master_key_id: new_master.id().to_string(),
                }])
            },
            || {
                let old = std::mem::replace(
                    &mut *self.master.write().unwrap_or_else(PoisonError::into_inner),
                    new_master.clone(),
                );
                *self
                    .previous
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(old);
            },
        )
    }

    /// Uses `master` (and `previous`) from now on, as a running process does when its
    /// master-key configuration is reloaded (SIGHUP). If the KEK is wrapped by another
    /// master key than `master`, it is re-wrapped under `master` first (the unwrapped KEK
    /// is in memory, so the old master key need not be reachable). Returns the id of the
    /// master key the KEK was re-wrapped from, if it was.
    pub fn use_master_keys(
        &self,
        master: Arc<dyn MasterKey>,
        previous: Option<Arc<dyn MasterKey>>,
    ) -> Result<Option<String>, Error> {
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(
            &mut *self.master.write().unwrap_or_else(PoisonError::into_inner),
            master.clone(),
        );
        let old_previous = std::mem::replace(
            &mut *self
                .previous
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            previous.clone(),
        );
        // A KEK made since under the new master key can only be loaded now.
        let checked = self.reload().and_then(|()| {
            let st = self.state.load_full();
            match st.snapshot.keks.iter().find(|k| k.id == st.kek.id) {
                Some(k) if k.master_key_id == master.id() => {
                    // The new key must really unwrap what is stored before it is trusted.
                    master.unwrap_kek(k.id, &k.wrapped).map(|_| None)
                }
                Some(k) => Ok(Some(k.master_key_id.clone())),
                None => Ok(None),
            }
        });
        let from = match checked {
            Ok(f) => f,
            Err(e) => {
                *self.master.write().unwrap_or_else(PoisonError::into_inner) = old;
                *self
                    .previous
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = old_previous;
                return Err(e);
            }
        };
        drop(_w);
        if from.is_some() {
            if let Err(e) = self.rotate_master_key(master) {
                // Not re-wrapped: the keyring goes on with the keys it had.
                *self.master.write().unwrap_or_else(PoisonError::into_inner) = old;
                *self
                    .previous
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = old_previous;
                return Err(e);
            }
            // The key the KEK was wrapped by stays usable as the previous one unless
            // another previous key was configured.
            *self
                .previous
                .write()
                .unwrap_or_else(PoisonError::into_inner) = previous.or(Some(old));
        }
        Ok(from)
    }
}
