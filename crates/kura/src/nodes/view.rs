//! The cluster as `kura status` and `kura nodes` show it: every registered node, whether
//! it is live, and whether the keys it reports are the ones the keystore holds now.

use std::fmt::Write as _;

use kura_keys::clock::rfc3339;
use kura_store::{DataKeyState, KekState, Snapshot, Store};
use serde::Serialize;

use super::{LIVE_WINDOW_SECS, NodeInfo, all_nodes, is_live};

/// One node as shown.
#[derive(Debug, Serialize)]
pub(crate) struct NodeView {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) version: String,
    pub(crate) listen: String,
    /// RFC 3339.
    pub(crate) started: String,
    /// RFC 3339.
    pub(crate) last_heartbeat: String,
    pub(crate) seconds_since_heartbeat: i64,
    /// Heartbeated within the live window.
    pub(crate) live: bool,
    /// Missed three heartbeats or more: dead, or cut off from the keystore.
    pub(crate) stale: bool,
    pub(crate) keyring: Option<String>,
    pub(crate) kek_id: Option<String>,
    pub(crate) data_key_id: Option<String>,
    pub(crate) master_key_id: Option<String>,
    pub(crate) generation: Option<u64>,
    /// Whether the live node uses the keystore's active KEK, active data key and master
    /// key (`null` for a stale node or one that reports no keys).
    pub(crate) agrees: Option<bool>,
    /// What is wrong with the node, in words.
    pub(crate) problems: Vec<String>,
}

/// Every node, and counts.
#[derive(Debug, Serialize)]
pub(crate) struct ClusterView {
    pub(crate) nodes: Vec<NodeView>,
    pub(crate) live: usize,
    pub(crate) stale: usize,
    pub(crate) disagreeing: usize,
}

/// The nodes registered in `store`, checked against the keystore's current keys.
pub(crate) fn cluster_view(store: &dyn Store) -> anyhow::Result<ClusterView> {
    let snapshot = store.snapshot()?;
    let t = store.clock()?;
    let nodes: Vec<NodeView> = all_nodes(store)?
        .into_iter()
        .map(|(id, n)| view(id, n, snapshot.as_ref(), t))
        .collect();
    Ok(ClusterView {
        live: nodes.iter().filter(|n| n.live).count(),
        stale: nodes.iter().filter(|n| n.stale).count(),
        disagreeing: nodes.iter().filter(|n| n.agrees == Some(false)).count(),
        nodes,
    })
}

fn view(id: String, n: NodeInfo, snapshot: Option<&Snapshot>, t: i64) -> NodeView {
    let live = is_live(n.last_heartbeat, t);
    let age = t - n.last_heartbeat;
    let mut problems = Vec::new();
    if !live {
        problems.push(format!(
            "stale: no heartbeat for {age} s (a node heartbeats every {} s; live means within {LIVE_WINDOW_SECS} s)",
            super::HEARTBEAT.as_secs()
        ));
    }
    let agrees = match (live, snapshot, &n.kek_id, &n.data_key_id) {
        (true, Some(s), Some(kek), Some(dk)) => {
            let before = problems.len();
            check(&n, s, kek, dk, &mut problems);
            Some(problems.len() == before)
        }
        _ => None,
    };
    if n.version != env!("CARGO_PKG_VERSION") {
        problems.push(format!(
            "runs kura {} (this is {})",
            n.version,
            env!("CARGO_PKG_VERSION")
        ));
    }
    NodeView {
        id,
        host: n.host,
        pid: n.pid,
        version: n.version,
        listen: n.listen,
        started: rfc3339(n.started),
        last_heartbeat: rfc3339(n.last_heartbeat),
        seconds_since_heartbeat: age,
        live,
        stale: !live,
        keyring: n.keyring,
        kek_id: n.kek_id,
        data_key_id: n.data_key_id,
        master_key_id: n.master_key_id,
        generation: n.generation,
        agrees,
        problems,
    }
}

/// Compares what a live node reports with the keystore.
fn check(n: &NodeInfo, s: &Snapshot, kek: &str, dk: &str, problems: &mut Vec<String>) {
    let active_kek = s.keks.iter().find(|k| k.state == KekState::Active);
    if let Some(k) = active_kek {
        if k.id.to_string() != kek {
            problems.push(format!(
                "uses KEK {kek}, but the keystore's active KEK is {}",
                k.id
            ));
        }
        if let Some(m) = &n.master_key_id
            && *m != k.master_key_id
        {
            problems.push(format!(
                "holds master key {m}, but the KEK is wrapped by {}; give the node the new master key (kill -HUP after changing its configuration)",
                k.master_key_id
            ));
        }
    }
    let keyring = n.keyring.as_deref().unwrap_or(kura_keys::DEFAULT_KEYRING);
    let active = s
        .data_keys
        .iter()
        .find(|d| d.keyring == keyring && d.state == DataKeyState::Active);
    if let Some(d) = active
        && d.id.to_string() != dk
    {
        problems.push(format!(
            "encrypts under data key {dk}, but the active data key of keyring {keyring} is {}",
            d.id
        ));
    }
}

impl ClusterView {
    /// The nodes as a table, one line each, then one line per problem.
    pub(crate) fn text(&self) -> String {
        let mut t = String::new();
        if self.nodes.is_empty() {
            t.push_str("  (no kura server has registered with this keystore)\n");
            return t;
        }
        let _ = writeln!(
            t,
            "  {:<16} {:<6} {:<22} {:<20} {:<8} {:<20} {:<20} STATE",
            "ID", "LIVE", "LISTEN", "LAST HEARTBEAT", "VERSION", "KEK", "DATA KEY"
        );
        for n in &self.nodes {
            let state = match (n.live, n.agrees) {
                (false, _) => "STALE",
                (true, Some(false)) => "DISAGREES",
                (true, _) => "ok",
            };
            let _ = writeln!(
                t,
                "  {:<16} {:<6} {:<22} {:<20} {:<8} {:<20} {:<20} {state}",
                n.id,
                if n.live { "yes" } else { "no" },
                n.listen,
                n.last_heartbeat,
                n.version,
                n.kek_id.as_deref().unwrap_or("-"),
                n.data_key_id.as_deref().unwrap_or("-"),
            );
        }
        for n in &self.nodes {
            for p in &n.problems {
                let _ = writeln!(t, "  ! node {} ({}, pid {}): {p}", n.id, n.host, n.pid);
            }
        }
        let _ = writeln!(
            t,
            "  {} live, {} stale, {} disagreeing",
            self.live, self.stale, self.disagreeing
        );
        t
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kura_store::{DataKeyRecord, KekRecord};

    fn snapshot() -> Snapshot {
        Snapshot {
            generation: 7,
            keks: vec![KekRecord {
                id: 11,
                wrapped: vec![1],
                master_key_id: "local:aa".into(),
                state: KekState::Active,
                created_at: 0,
                retired_at: None,
            }],
            data_keys: vec![DataKeyRecord {
                id: 21,
                keyring: "kms".into(),
                method: "aes256-ctr".into(),
                wrapped: vec![1],
                kek_id: 11,
                state: DataKeyState::Active,
                created_at: 0,
                activated_at: Some(0),
                retired_at: None,
                destroyed_at: None,
            }],
        }
    }

    fn node(last: i64, kek: &str, dk: &str) -> NodeInfo {
        let mut n = NodeInfo::new("127.0.0.1:1".into());
        n.last_heartbeat = last;
        n.keyring = Some("kms".into());
        n.kek_id = Some(kek.into());
        n.data_key_id = Some(dk.into());
        n.master_key_id = Some("local:aa".into());
        n
    }

    #[test]
    fn live_agreeing_disagreeing_and_stale_nodes() {
        let s = snapshot();
        let t = 1_000_000;
        let ok = view("a".into(), node(t - 2, "11", "21"), Some(&s), t);
        assert!(ok.live && !ok.stale);
        assert_eq!(ok.agrees, Some(true));
        assert!(ok.problems.is_empty(), "{:?}", ok.problems);
        let old_dk = view("b".into(), node(t, "11", "20"), Some(&s), t);
        assert_eq!(old_dk.agrees, Some(false));
        assert!(
            old_dk.problems[0].contains("data key 20"),
            "{:?}",
            old_dk.problems
        );
        let mut other_master = node(t, "11", "21");
        other_master.master_key_id = Some("kms:arn".into());
        let m = view("c".into(), other_master, Some(&s), t);
        assert_eq!(m.agrees, Some(false));
        let dead = view(
            "d".into(),
            node(t - LIVE_WINDOW_SECS, "11", "21"),
            Some(&s),
            t,
        );
        assert!(!dead.live && dead.stale);
        assert_eq!(dead.agrees, None);
        assert!(dead.problems[0].starts_with("stale"), "{:?}", dead.problems);
        let c = ClusterView {
            live: 3,
            stale: 1,
            disagreeing: 2,
            nodes: vec![ok, old_dk, m, dead],
        };
        let text = c.text();
        assert!(
            text.contains("DISAGREES") && text.contains("STALE"),
            "{text}"
        );
        assert!(text.contains("3 live, 1 stale, 2 disagreeing"), "{text}");
    }
}
