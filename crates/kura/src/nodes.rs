//! The registry of live `kura server` nodes: one object of kind `node` per running server
//! in its keystore, its `last_heartbeat` refreshed every [`HEARTBEAT`], deleted on a clean
//! shutdown. `kura migrate-encryption` refuses to run while a node heartbeated within
//! [`LIVE_WINDOW_SECS`].

use std::time::Duration;

use kura_store::{ObjectChange, ObjectStore};
use serde::{Deserialize, Serialize};

/// The object kind of a node.
pub(crate) const NODE_KIND: &str = "node";
/// How often a server refreshes its heartbeat.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);
/// A node whose heartbeat is younger than this counts as alive.
pub(crate) const LIVE_WINDOW_SECS: i64 = 60;

/// A node's document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeInfo {
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) version: String,
    pub(crate) listen: String,
    pub(crate) started: i64,
    pub(crate) last_heartbeat: i64,
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
        }
    }
}

/// Creates or refreshes the node's object with `last_heartbeat = now`.
pub(crate) fn heartbeat(
    store: &dyn ObjectStore,
    id: &str,
    node: &mut NodeInfo,
) -> anyhow::Result<()> {
    node.last_heartbeat = now();
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

/// The nodes that heartbeated within the last [`LIVE_WINDOW_SECS`].
pub(crate) fn live_nodes(store: &dyn ObjectStore) -> anyhow::Result<Vec<(String, NodeInfo)>> {
    let t = now();
    let mut live = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(NODE_KIND, "", after.as_deref(), 100)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for o in &page {
            // A document that does not parse is some other writer's; it cannot be alive.
            if let Ok(n) = serde_json::from_str::<NodeInfo>(&o.doc)
                && t - n.last_heartbeat < LIVE_WINDOW_SECS
            {
                live.push((o.id.clone(), n));
            }
        }
        if page.len() < 100 {
            break;
        }
    }
    Ok(live)
}
