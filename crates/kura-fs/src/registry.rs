//! Data roots recorded in the keystore they take their keys from, so that the keystore
//! knows whose file dictionaries to read before a data key is destroyed (`kura
//! destroy-data-key` refuses while a file under a registered root is under the key) and
//! `kura server` can report them in its metrics.
//!
//! [`crate::EncryptedFs::open`] registers its root: `kura fs` commands, applications and
//! examples alike.

use std::path::Path;

use kura_store::{ObjectChange, ObjectStore};

use crate::Error;

/// The object kind of registered data roots. The id is the root's absolute, canonical
/// path; the document `{"registered_at":<unix seconds>}`.
pub const KIND: &str = "fs-root";

/// Registers `root` (absolute and canonical), once.
pub fn register(store: &dyn ObjectStore, root: &Path) -> Result<(), Error> {
    let id = root.display().to_string();
    if store.get(KIND, &id).map_err(keys)?.is_some() {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match store.apply_quiet(&[ObjectChange::Create {
        kind: KIND.into(),
        id,
        doc: format!("{{\"registered_at\":{now}}}"),
        blob: Vec::new(),
    }]) {
        // Another process registered it at the same moment.
        Ok(()) | Err(kura_store::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(keys(e)),
    }
}

fn keys(e: kura_store::Error) -> Error {
    Error::Keys(e.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::Arc;

    use kura_keys::Keyring;

    use super::*;
    use crate::{EncryptedFs, Options};

    #[test]
    fn opening_a_root_registers_it_once_by_its_canonical_path() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Arc::new(Keyring::ephemeral(&dir.path().join("keystore.db")).unwrap());
        std::fs::create_dir(dir.path().join("a")).unwrap();
        // Through a path with a `..` in it: registered as the folder it names.
        let root = dir.path().join("a/../root");
        for _ in 0..2 {
            drop(EncryptedFs::open(&root, keyring.clone(), Options::default()).unwrap());
        }
        let objects = keyring.objects().unwrap();
        let listed = objects.list(KIND, "", None, 10).unwrap();
        let want = std::fs::canonicalize(dir.path().join("root")).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, want.display().to_string());
        assert!(
            listed[0].doc.starts_with("{\"registered_at\":"),
            "{}",
            listed[0].doc
        );
    }
}
