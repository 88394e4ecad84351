#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Online master-key rotation into and within a KMS, under load: two `kura server` nodes
//! on one throwaway PostgreSQL keystore, started without master-key configuration (they use
//! the key `kura set-mode` recorded, having opted in with `KURA_USE_RECORDED_MASTER_KEY`), serve a steady Encrypt/Decrypt load while the master
//! key moves file → kms (moto, AWS's stand-in) → another kms key, and then the KEK is
//! rotated: no request fails, and every node takes each new master key by itself.

mod nodes;
mod server;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kura_testkit::MotoServer;
use nodes::*;
use serde_json::Value;
use server::REGION;

/// The KMS credentials, and the opt-in to the recorded master key for every command and node.
const AWS: [(&str, &str); 5] = [
    ("KURA_USE_RECORDED_MASTER_KEY", "true"),
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", REGION),
    ("AWS_DEFAULT_REGION", REGION),
];

/// Waits until every node holds the master key the KEK is wrapped by, and it starts with
/// `prefix`; returns that key's id.
fn all_nodes_on(c: &Cluster, prefix: &str, what: &str) -> String {
    let s = c.wait_status(Duration::from_secs(30), what, |s: &Value| {
        let wraps = s["kek"]["master_key_id"].as_str().unwrap_or_default();
        wraps.starts_with(prefix)
            && nodes(s).len() == 2
            && nodes(s)
                .iter()
                .all(|n| n["master_key_id"].as_str() == Some(wraps) && n["agrees"] == true)
    });
    s["kek"]["master_key_id"].as_str().unwrap().to_string()
}

#[test]
fn the_master_key_moves_file_to_kms_to_kms_under_load_with_no_failed_request() {
    let moto = MotoServer::start(server::py()).unwrap_or_else(|e| panic!("{e}"));
    let endpoint = moto.endpoint();
    let c = Cluster::with_env(&AWS);
    let rt = runtime();
    let [k1, k2] = rt.block_on(async {
        let moto = server::kms_client(&endpoint, "testing", "testing").await;
        [create_key(&moto).await, create_key(&moto).await]
    });

    // The file key recorded as the mode, then taken out of the configuration: from here on
    // every command and node uses the master key the keystore records.
    let m1 = c.dir.path().join("m1.key");
    run_ok(kura(&c).args(["set-mode", "local", "--key-file"]).arg(&m1));
    std::fs::write(&c.config, "").unwrap();
    let n = [c.start_node(), c.start_node()];
    let [a, b] = [0, 1].map(|i| rt.block_on(c.client(&n[i])));
    let key = rt.block_on(create_key(&a));
    let local = all_nodes_on(&c, "local:", "both nodes on the recorded key file");
    let live = Arc::new(AtomicBool::new(false));
    let load = Load::start(&rt, vec![(a, live.clone()), (b, live.clone())], &key);
    load.wait_for(100);

    // file → kms
    let kms = ["--endpoint", &endpoint, "--region", REGION];
    let r = json(
        &c,
        &[&["set-mode", "kms", "--key-id", &k1][..], &kms].concat(),
    );
    eprintln!("set-mode kms: {r}");
    let first = all_nodes_on(&c, "kms:", "both nodes on the first KMS key");
    assert!(first.contains(&k1), "{first}");
    load.wait_for(100);

    // kms → kms
    json(
        &c,
        &[&["rotate", "master-key", "--key-id", &k2][..], &kms].concat(),
    );
    let second = all_nodes_on(&c, "kms:", "both nodes on the second KMS key");
    assert!(second.contains(&k2), "{second}");
    load.wait_for(100);

    // A KEK made now is wrapped by the second KMS key; every node loads it.
    let kek = json(&c, &["rotate", "kek"]);
    load.wait_for(200);
    let (kept, done, failed) = load.finish(&rt);
    eprintln!(
        "master key {local} -> {first} -> {second} under load: {done} round trips, {failed} failed"
    );
    assert_eq!(failed, 0, "requests failed during the master-key moves");
    let s = c.wait_status(Duration::from_secs(20), "both nodes on the new KEK", |s| {
        nodes(s)
            .iter()
            .all(|n| n["kek_id"] == kek["id"] && n["agrees"] == true)
    });
    assert_eq!(s["master_key"]["mode"], "kms", "{s:#}");
    // A node started now finds everything through the recorded KMS key.
    let fresh = c.start_node();
    let f = rt.block_on(c.client(&fresh));
    for (ct, plain) in &kept {
        let pt = rt
            .block_on(
                f.decrypt()
                    .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(ct.clone()))
                    .send(),
            )
            .unwrap();
        assert_eq!(pt.plaintext().unwrap().as_ref(), &plain[..]);
    }
}
