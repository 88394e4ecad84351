#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura bench --quick`: the report's shape (never its timings). It runs once: it takes
//! a few seconds.

mod common;

use common::*;

#[test]
fn quick_bench_reports_results_as_json() {
    // The benchmark uses a keystore of its own in a temporary directory, and removes it
    // (checked by `bench_report`).
    let (j, mut names) = bench_report(&["--output", "json", "bench", "--quick"]);
    assert_eq!(j["quick"], true);
    let results = j["results"].as_array().unwrap();
    assert!(!results.is_empty(), "{j:#}");
    for name in &names {
        assert!(!name.is_empty());
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), results.len(), "duplicate names: {j:#}");
}

#[test]
fn quick_fs_bench_reports_every_pair_as_json() {
    // Run in the sandbox's $TMPDIR (an explicit $TMPDIR is where it runs), which it must
    // leave empty (checked by `bench_report`).
    let (j, names) = bench_report(&["bench", "fs", "--quick", "--output", "json"]);
    assert_eq!(j["quick"], true);
    assert!(!j["dir"].as_str().unwrap().is_empty(), "{j:#}");
    assert!(!j["filesystem"].as_str().unwrap().is_empty(), "{j:#}");
    assert!(j["in_memory"].is_boolean(), "{j:#}");
    // The `(disk)` rows come only from a run in memory (here $TMPDIR is both places).
    assert!(j["disk"].is_null(), "{j:#}");
    for field in [
        "sequential_mib",
        "sm4_sequential_mib",
        "page_file_mib",
        "redb_records",
    ] {
        assert!(j[field].as_u64().unwrap() > 0, "{field}: {j:#}");
    }
    let mut want = Vec::new();
    for m in ["aes128-ctr", "aes192-ctr", "aes256-ctr", "sm4-ctr"] {
        want.push(format!("{m} seq write"));
        want.push(format!("{m} seq read"));
    }
    for n in [
        "page random read 4 KiB",
        "page random write 4 KiB",
        "redb insert 100 B",
        "redb random get",
    ] {
        want.push(n.to_string());
    }
    assert_eq!(names, want, "{j:#}");
    let units: Vec<&str> = j["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["unit"].as_str().unwrap())
        .collect();
    assert_eq!(&units[..8], ["MiB/s"; 8]);
    assert_eq!(&units[8..], ["ops/s"; 4]);
}
