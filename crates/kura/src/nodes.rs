//! The registry of `kura server` nodes: one object of kind `node` per running server in
//! its keystore (SQLite, or the PostgreSQL database a cluster shares), its
//! `last_heartbeat` and the keys the node uses refreshed every [`HEARTBEAT`], deleted on a
//! clean shutdown. A node that missed three heartbeats ([`LIVE_WINDOW_SECS`]) is *stale*:
//! `kura status` and `kura nodes` flag it. `kura migrate-encryption` and `kura restore
//! --force` wait longer ([`SAFETY_WINDOW_SECS`]) before they stop counting a node as
//! running. Entries stale for [`EXPIRE_AFTER_SECS`] are removed by any server's heartbeat
//! and by `kura nodes`.

pub(crate) mod view;

use std::time::Duration;

use kura_store::{ObjectChange, ObjectStore};
use serde::{Deserialize, Serialize};

pub(crate) use view::{ClusterView, cluster_view};

/// The object kind of a node.
pub(crate) const NODE_KIND: &str = kura_store::NODE_KIND;
/// How often a server refreshes its heartbeat.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);
/// A node whose heartbeat is younger than this counts as alive (three heartbeats).
pub(crate) const LIVE_WINDOW_SECS: i64 = 15;
/// Safety checks (`kura migrate-encryption`, `kura restore --force`) count a node as
/// running for longer: a slow heartbeat or clocks a little apart must not let them go on
/// under a serving node.
pub(crate) const SAFETY_WINDOW_SECS: i64 = 60;
/// A node stale for this long is removed from the registry.
pub(crate) const EXPIRE_AFTER_SECS: i64 = 600;

/// A node's document. The fields after `last_heartbeat` came later: older documents lack
/// them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeInfo {
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) version: String,
    pub(crate) listen: String,
    pub(crate) started: i64,
    pub(crate) last_heartbeat: i64,
    /// The keyring the node serves (`kms` for `kura server`).
    #[serde(default)]
    pub(crate) keyring: Option<String>,
    /// The KEK the node uses now.
    #[serde(default)]
    pub(crate) kek_id: Option<String>,
    /// The active data key the node uses now.
    #[serde(default)]
    pub(crate) data_key_id: Option<String>,
    /// The master key the node holds.
    #[serde(default)]
    pub(crate) master_key_id: Option<String>,
    /// The keystore generation the node last loaded.
    #[serde(default)]
    pub(crate) generation: Option<u64>,
}

/// What a node reports about the keys it uses, refreshed with each heartbeat.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeKeys {
    pub(crate) keyring: String,
    pub(crate) kek_id: String,
    pub(crate) data_key_id: String,
    pub(crate) master_key_id: String,
    pub(crate) generation: u64,
}

impl NodeKeys {
    /// The keys `keyring` uses now.
    pub(crate) fn of(keyring: &kura_keys::Keyring) -> Self {
        let st = keyring.status();
        Self {
            keyring: keyring.name().to_string(),
            kek_id: st.kek.id,
            data_key_id: keyring.active_data_key_id().to_string(),
            master_key_id: st.master_key.id,
            generation: st.generation,
        }
    }
}

pub(crate) fn now() -> i64 {
    use kura_keys::clock::Clock;
    kura_keys::clock::SystemClock.now()
}

/// A random node id (16 hex digits).
pub(crate) fn new_node_id() -> anyhow::Result<String> {
    let mut b = [0u8; 8];
    kura_crypto::rng::fill(&mut b)?;
    Ok(hex::encode(b))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

impl NodeInfo {
    pub(crate) fn new(listen: String) -> Self {
        let t = now();
        Self {
            host: hostname(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            listen,
            started: t,
            last_heartbeat: t,
            keyring: None,
            kek_id: None,
            data_key_id: None,
            master_key_id: None,
            generation: None,
        }
    }

    fn set_keys(&mut self, k: NodeKeys) {
        self.keyring = Some(k.keyring);
        self.kek_id = Some(k.kek_id);
        self.data_key_id = Some(k.data_key_id);
        self.master_key_id = Some(k.master_key_id);
        self.generation = Some(k.generation);
    }
}

/// Creates or refreshes the node's object with `last_heartbeat` = now by the keystore's
/// clock ([`ObjectStore::clock`], shared by every node) and the keys it uses.
pub(crate) fn heartbeat(
    store: &dyn ObjectStore,
    id: &str,
    node: &mut NodeInfo,
    keys: Option<NodeKeys>,
) -> anyhow::Result<()> {
    node.last_heartbeat = store.clock()?;
    if let Some(k) = keys {
        node.set_keys(k);
    }
    let doc = serde_json::to_string(node)?;
    let change = match store.get(NODE_KIND, id)? {
        Some(o) => ObjectChange::Update {
            kind: NODE_KIND.into(),
            id: id.into(),
            version: o.version,
            doc,
            blob: Vec::new(),
        },
        None => ObjectChange::Create {
            kind: NODE_KIND.into(),
            id: id.into(),
            doc,
            blob: Vec::new(),
        },
    };
    store.apply_quiet(&[change])?;
    Ok(())
}

/// Removes the node's object (clean shutdown).
pub(crate) fn deregister(store: &dyn ObjectStore, id: &str) -> anyhow::Result<()> {
    store.apply_quiet(&[ObjectChange::Delete {
        kind: NODE_KIND.into(),
        id: id.into(),
    }])?;
    Ok(())
}

/// Every registered node, in id order; a document that does not parse is some other
/// writer's and is skipped.
pub(crate) fn all_nodes(store: &dyn ObjectStore) -> anyhow::Result<Vec<(String, NodeInfo)>> {
    let mut nodes = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(NODE_KIND, "", after.as_deref(), 100)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for o in &page {
            if let Ok(n) = serde_json::from_str::<NodeInfo>(&o.doc) {
                nodes.push((o.id.clone(), n));
            }
        }
        if page.len() < 100 {
            break;
        }
    }
    Ok(nodes)
}

/// Whether a node that heartbeated at `last` is alive at `now`.
pub(crate) fn is_live(last: i64, now: i64) -> bool {
    now - last < LIVE_WINDOW_SECS
}

/// The nodes that may still be running: a heartbeat within [`SAFETY_WINDOW_SECS`].
pub(crate) fn live_nodes(store: &dyn ObjectStore) -> anyhow::Result<Vec<(String, NodeInfo)>> {
    let t = store.clock()?;
    let mut nodes = all_nodes(store)?;
    nodes.retain(|(_, n)| t - n.last_heartbeat < SAFETY_WINDOW_SECS);
    Ok(nodes)
}

/// Removes the nodes stale for longer than [`EXPIRE_AFTER_SECS`] (or, with `all_stale`,
/// every stale node); returns their ids.
pub(crate) fn expire(store: &dyn ObjectStore, all_stale: bool) -> anyhow::Result<Vec<String>> {
    let t = store.clock()?;
    let limit = if all_stale {
        LIVE_WINDOW_SECS
    } else {
        EXPIRE_AFTER_SECS
    };
    let gone: Vec<String> = all_nodes(store)?
        .into_iter()
        .filter(|(_, n)| t - n.last_heartbeat >= limit)
        .map(|(id, _)| id)
        .collect();
    if !gone.is_empty() {
        let changes: Vec<ObjectChange> = gone
            .iter()
            .map(|id| ObjectChange::Delete {
                kind: NODE_KIND.into(),
                id: id.clone(),
            })
            .collect();
        store.apply_quiet(&changes)?;
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    //! Heartbeats are stamped and aged by the keystore's clock, not the node's.

    use std::sync::atomic::{AtomicI64, Ordering};

    use kura_store::{Object, SqliteKeystore};

    use super::*;

    /// A keystore whose clock is far from this machine's and can be moved.
    struct Skewed {
        store: SqliteKeystore,
        clock: AtomicI64,
    }

    impl ObjectStore for Skewed {
        fn get(&self, kind: &str, id: &str) -> Result<Option<Object>, kura_store::Error> {
            self.store.get(kind, id)
        }

        fn list(
            &self,
            kind: &str,
            prefix: &str,
            after: Option<&str>,
            limit: usize,
        ) -> Result<Vec<Object>, kura_store::Error> {
            self.store.list(kind, prefix, after, limit)
        }

        fn apply_with(&self, c: &[ObjectChange], bump: bool) -> Result<(), kura_store::Error> {
            self.store.apply_with(c, bump)
        }

        fn objects_generation(&self) -> Result<u64, kura_store::Error> {
            self.store.objects_generation()
        }

        fn clock(&self) -> Result<i64, kura_store::Error> {
            Ok(self.clock.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn heartbeats_follow_the_keystore_clock() {
        let dir = tempfile::tempdir().unwrap();
        // A day behind this machine's clock.
        let t0 = now() - 86_400;
        let store = Skewed {
            store: SqliteKeystore::open(&dir.path().join("keys.db")).unwrap(),
            clock: AtomicI64::new(t0),
        };
        let mut node = NodeInfo::new("127.0.0.1:1".into());
        heartbeat(&store, "n1", &mut node, None).unwrap();
        assert_eq!(node.last_heartbeat, t0);
        assert_eq!(live_nodes(&store).unwrap().len(), 1, "live by the keystore");
        assert!(expire(&store, true).unwrap().is_empty());
        // Time passes for the keystore only: the node goes stale, then is removed.
        store.clock.store(t0 + SAFETY_WINDOW_SECS, Ordering::SeqCst);
        assert!(live_nodes(&store).unwrap().is_empty());
        store.clock.store(t0 + EXPIRE_AFTER_SECS, Ordering::SeqCst);
        assert_eq!(expire(&store, false).unwrap(), vec!["n1".to_string()]);
        assert!(all_nodes(&store).unwrap().is_empty());
    }
}
