//! What kura knows to be sealed under each data key, so that a data key still in use is
//! not destroyed.
//!
//! Every completed `migrate-encryption` or `reencrypt` pass records, per table, how many
//! values each data key sealed (kind `data-key-usage` in the keystore's object table).
//! The KMS's key material and user secrets are sealed envelopes in the same object table
//! and are read directly. Every data root a `kura fs` command opened is registered (kind
//! `fs-root`), and its file dictionary is read at destruction time. `kura destroy-data-key`
//! refuses while any of these uses the key.

use std::collections::BTreeMap;

use anyhow::Result;
use kura_format::envelope;
use kura_store::{ObjectChange, ObjectStore};
use serde::{Deserialize, Serialize};

/// The object kind of usage records.
const KIND_USAGE: &str = "data-key-usage";
/// Object kinds whose blobs are envelopes sealed by the KMS.
const SEALED_KINDS: [(&str, &str); 2] = [
    ("kms-material", "KMS key material"),
    ("user", "KMS user secrets"),
];
const PAGE: usize = 500;

/// One table's use of data keys, as of its last complete pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TableUsage {
    pub(crate) location: String,
    pub(crate) table: String,
    pub(crate) columns: Vec<String>,
    /// Values per data key id.
    pub(crate) data_keys: BTreeMap<u64, u64>,
    /// The command that counted them.
    pub(crate) by: String,
    /// Unix time of the count.
    pub(crate) at: i64,
}

impl TableUsage {
    fn id(&self) -> String {
        format!(
            "{}#{}({})",
            self.location,
            self.table,
            self.columns.join(",")
        )
    }
}

/// Records (replacing any earlier record of the same table and columns) `usage`.
pub(crate) fn record(store: &dyn ObjectStore, usage: &TableUsage) -> Result<()> {
    let id = usage.id();
    let doc = serde_json::to_string(usage)?;
    let change = match store.get(KIND_USAGE, &id)? {
        Some(o) => ObjectChange::Update {
            kind: KIND_USAGE.into(),
            id,
            version: o.version,
            doc,
            blob: Vec::new(),
        },
        None => ObjectChange::Create {
            kind: KIND_USAGE.into(),
            id,
            doc,
            blob: Vec::new(),
        },
    };
    store.apply_quiet(&[change])?;
    Ok(())
}

/// Every object of `kind`.
fn all(store: &dyn ObjectStore, kind: &str) -> Result<Vec<kura_store::Object>> {
    let mut out: Vec<kura_store::Object> = Vec::new();
    loop {
        let after = out.last().map(|o| o.id.clone());
        let page = store.list(kind, "", after.as_deref(), PAGE)?;
        let n = page.len();
        out.extend(page);
        if n < PAGE {
            return Ok(out);
        }
    }
}

/// What still uses data key `id`, one line each; empty if nothing known does.
pub(crate) fn users_of(store: &dyn ObjectStore, id: u64) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for o in all(store, KIND_USAGE)? {
        let Ok(u) = serde_json::from_str::<TableUsage>(&o.doc) else {
            continue;
        };
        if let Some(&n) = u.data_keys.get(&id).filter(|n| **n > 0) {
            lines.push(format!(
                "{n} values in table {} ({}) of {} (counted by {} at {}); re-encrypt them with \
                 `kura reencrypt --database {} --table {} --column {}` (and its --id-column)",
                u.table,
                u.columns.join(", "),
                u.location,
                u.by,
                kura_keys::clock::rfc3339(u.at),
                u.location,
                u.table,
                u.columns.join(" --column "),
            ));
        }
    }
    for (kind, what) in SEALED_KINDS {
        let n = all(store, kind)?
            .iter()
            .filter(|o| {
                o.blob.starts_with(&envelope::MAGIC) && envelope::key_id(&o.blob).ok() == Some(id)
            })
            .count();
        if n > 0 {
            lines.push(format!("{n} {what} sealed by the KMS"));
        }
    }
    Ok(lines)
}

/// The registered data roots.
pub(crate) fn fs_roots(store: &dyn ObjectStore) -> Result<Vec<std::path::PathBuf>> {
    Ok(all(store, kura_fs::registry::KIND)?
        .into_iter()
        .map(|o| std::path::PathBuf::from(o.id))
        .collect())
}
