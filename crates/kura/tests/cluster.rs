#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Several `kura server` nodes on one throwaway PostgreSQL keystore: a key made on one
//! node is usable on the others at once, a disable on one is refused on the others within
//! 5 s, `kura status` shows every node, a node killed with SIGKILL under load turns stale
//! while the others go on serving and nothing is lost, and the master key is rotated under
//! load (configuration changed, `kura rotate master-key`, SIGHUP) with no failed request.

mod nodes;
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use kura_testkit::write_master_key;
use nodes::*;

#[test]
fn three_nodes_share_keys_states_and_status_and_survive_a_kill() {
    let c = Cluster::new();
    let mut n = [c.start_node(), c.start_node(), c.start_node()];
    let rt = runtime();
    let [a, b, z] = [0, 1, 2].map(|i| rt.block_on(c.client(&n[i])));

    // A key made on node A is usable on B and C at once.
    let key = rt
        .block_on(a.create_key().description("cluster").send())
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_string();
    let ct = rt
        .block_on(
            b.encrypt()
                .key_id(&key)
                .plaintext(Blob::new("hello"))
                .send(),
        )
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    let pt = rt
        .block_on(z.decrypt().ciphertext_blob(ct.clone()).send())
        .unwrap();
    assert_eq!(pt.plaintext().unwrap().as_ref(), b"hello");

    // kura status lists the three nodes, live and agreeing on the keys.
    let s = c.wait_status(Duration::from_secs(20), "three live nodes", |s| {
        nodes(s).len() == 3
            && nodes(s)
                .iter()
                .all(|n| n["live"] == true && n["agrees"] == true)
    });
    for node in nodes(&s) {
        assert!(node["id"].as_str().is_some_and(|i| !i.is_empty()), "{node}");
        assert!(node["last_heartbeat"].as_str().is_some(), "{node}");
        assert_eq!(node["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(node["kek_id"], s["kek"]["id"], "{node}");
    }
    let text = run_ok(kura(&c).args(["nodes"]));
    assert!(text.contains("3 live, 0 stale, 0 disagreeing"), "{text}");

    // A disable on A is refused on B within 5 s.
    let disabled_at = Instant::now();
    rt.block_on(a.disable_key().key_id(&key).send()).unwrap();
    loop {
        match rt.block_on(b.encrypt().key_id(&key).plaintext(Blob::new("x")).send()) {
            Err(e) if e.code() == Some("DisabledException") => break,
            Err(e) => panic!("unexpected error: {e:?}"),
            Ok(_) => {
                assert!(
                    disabled_at.elapsed() < Duration::from_secs(5),
                    "B still encrypts under a disabled key"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    eprintln!(
        "cluster: a disable on A was seen by B after {:?}",
        disabled_at.elapsed()
    );
    rt.block_on(z.enable_key().key_id(&key).send()).unwrap();
    // The enable reaches every node within 5 s too.
    for kms in [&a, &b, &z] {
        let deadline = Instant::now() + Duration::from_secs(5);
        while rt
            .block_on(kms.encrypt().key_id(&key).plaintext(Blob::new("x")).send())
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "a node still refuses an enabled key"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // kill -9 of node C under load: A and B keep serving, nothing is lost, C turns stale.
    let dead = Arc::new(AtomicBool::new(false));
    let alive = Arc::new(AtomicBool::new(false));
    let clients = vec![
        (a.clone(), alive.clone()),
        (b.clone(), alive.clone()),
        (z.clone(), dead.clone()),
        (a.clone(), alive.clone()),
    ];
    let load = Load::start(&rt, clients, &key);
    load.wait_for(200);
    let killed = n[2].pid();
    dead.store(true, Ordering::Relaxed);
    n[2].kill9();
    load.wait_for(200);
    let (kept, done, failed) = load.finish(&rt);
    eprintln!(
        "cluster: {done} encrypt+decrypt round trips, {failed} failed on live nodes, {} kept",
        kept.len()
    );
    assert_eq!(failed, 0, "requests to live nodes failed");
    for (ct, plain) in &kept {
        let pt = rt
            .block_on(b.decrypt().ciphertext_blob(Blob::new(ct.clone())).send())
            .unwrap();
        assert_eq!(pt.plaintext().unwrap().as_ref(), &plain[..]);
    }
    let s = c.wait_status(
        Duration::from_secs(40),
        "the killed node turns stale",
        |s| {
            nodes(s)
                .iter()
                .any(|n| n["pid"] == killed && n["live"] == false)
        },
    );
    assert_eq!(s["cluster"]["live"], 2, "{s:#}");
    assert_eq!(s["cluster"]["stale"], 1, "{s:#}");
    let text = run_ok(kura(&c).args(["status"]));
    assert!(
        text.contains("STALE") && text.contains("stale: no heartbeat"),
        "{text}"
    );
    // --prune removes it.
    let pruned = json(&c, &["nodes", "--prune"]);
    assert_eq!(pruned["removed"].as_array().unwrap().len(), 1, "{pruned:#}");
    assert_eq!(pruned["nodes"].as_array().unwrap().len(), 2, "{pruned:#}");
    drop(n);
}

#[test]
fn the_master_key_rotates_under_load_with_no_failed_request() {
    let c = Cluster::new();
    let n = [c.start_node(), c.start_node()];
    let rt = runtime();
    let [a, b] = [0, 1].map(|i| rt.block_on(c.client(&n[i])));
    let key = rt.block_on(create_key(&a));
    let before = c.status();
    let m1_id = before["master_key"]["id"].as_str().unwrap().to_string();
    let live = Arc::new(AtomicBool::new(false));
    let load = Load::start(
        &rt,
        vec![(a.clone(), live.clone()), (b.clone(), live.clone())],
        &key,
    );
    load.wait_for(100);

    // file → file: the new key in the configuration, the old one as previous, then one
    // `kura rotate master-key` (the KEK is re-wrapped) and SIGHUP to every node.
    let m1 = c.dir.path().join("m1.key");
    let m2 = write_master_key(c.dir.path(), "m2.key", &[2u8; 32]).unwrap();
    write_config(&c.config, &m2, Some(&m1));
    let r = json(&c, &["rotate", "master-key"]);
    assert!(
        r["message"].as_str().unwrap().contains("re-wrapped"),
        "{r:#}"
    );
    load.wait_for(100);
    for node in &n {
        node.signal("-HUP");
    }
    let s = c.wait_status(
        Duration::from_secs(30),
        "every node holds the new master key",
        |s| {
            let m = s["master_key"]["id"].as_str().unwrap_or_default();
            m != m1_id
                && nodes(s).len() == 2
                && nodes(s)
                    .iter()
                    .all(|n| n["master_key_id"].as_str() == Some(m) && n["agrees"] == true)
        },
    );
    assert_eq!(s["kek"]["master_key_id"], s["master_key"]["id"]);
    load.wait_for(100);
    // The old key file can go: the configuration names only the new key, and a new KEK
    // made now is unwrapped by every node after its reload.
    write_config(&c.config, &m2, None);
    for node in &n {
        node.signal("-HUP");
    }
    let k = json(&c, &["rotate", "kek"]);
    load.wait_for(200);
    let (kept, done, failed) = load.finish(&rt);
    eprintln!(
        "master-key rotation: {done} round trips, {failed} failed, {} kept",
        kept.len()
    );
    assert_eq!(failed, 0);
    let s = c.wait_status(Duration::from_secs(20), "every node on the new KEK", |s| {
        nodes(s)
            .iter()
            .all(|n| n["kek_id"] == k["id"] && n["agrees"] == true)
    });
    assert_eq!(s["cluster"]["disagreeing"], 0);
    // A node started now needs only the new key.
    let fresh = c.start_node();
    let f = rt.block_on(c.client(&fresh));
    for (ct, plain) in &kept {
        let pt = rt
            .block_on(f.decrypt().ciphertext_blob(Blob::new(ct.clone())).send())
            .unwrap();
        assert_eq!(pt.plaintext().unwrap().as_ref(), &plain[..]);
    }
}

/// PostgreSQL stopped under a node: requests are refused with a clear error within a few
/// seconds (no node goes on answering from caches a state it cannot check), heartbeats
/// fail, and everything works again once PostgreSQL is back, with no restart.
#[test]
fn a_node_refuses_while_postgresql_is_down_and_recovers_when_it_returns() {
    let c = Cluster::new();
    let node = c.start_node();
    let rt = runtime();
    let kms = rt.block_on(c.client(&node));
    let key = rt.block_on(create_key(&kms));
    // The error, if any, as its code and message.
    let encrypt = || {
        rt.block_on(kms.encrypt().key_id(&key).plaintext(Blob::new("x")).send())
            .map(drop)
            .map_err(|e| {
                (
                    e.code().unwrap_or_default().to_string(),
                    e.message().unwrap_or_default().to_string(),
                )
            })
    };
    encrypt().unwrap();
    c.pg.stop_server().unwrap();
    let down = Instant::now();
    let e = loop {
        match encrypt() {
            Err(e) => break e,
            Ok(_) => {
                assert!(
                    down.elapsed()
                        < Duration::from_secs(kura_server::MAX_UNCHECKED_SECS as u64 + 4),
                    "still answering from caches long after PostgreSQL went away"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    eprintln!(
        "cluster: PostgreSQL down, requests refused after {:?}",
        down.elapsed()
    );
    assert_eq!(e.0, "KMSInternalException", "{e:?}");
    assert!(e.1.contains("keystore has not been reachable"), "{e:?}");
    let o = kura(&c).arg("status").output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unreachable") && err.contains("127.0.0.1"),
        "{err}"
    );
    assert_eq!(err.matches("unreachable").count(), 1, "said once: {err}");
    c.pg.start_server().unwrap();
    let back = Instant::now();
    while encrypt().is_err() {
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "no recovery after PostgreSQL returned"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "cluster: PostgreSQL back, requests served again after {:?}",
        back.elapsed()
    );
    c.wait_status(Duration::from_secs(20), "the node heartbeats again", |s| {
        nodes(s).len() == 1 && nodes(s)[0]["live"] == true
    });
}
