#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura bench server --quick`: the report's shape (never its timings). It runs once: it
//! takes about five seconds (two servers, 2 s each, after a warm-up).

mod common;

use common::*;

#[test]
fn quick_server_bench_reports_results_as_json() {
    // The in-process KMS keeps its keystore in a temporary directory, and removes it
    // (checked by `bench_report`).
    let (j, names) = bench_report(&["bench", "server", "--quick", "--output", "json"]);
    assert_eq!(j["quick"], true, "{j:#}");
    assert_eq!(j["mode"], "server", "{j:#}");
    assert_eq!(j["connections"], 16, "{j:#}");
    assert_eq!(j["plaintext_bytes"], 256, "{j:#}");
    assert!(j["response_bytes"].as_u64().unwrap() > 256, "{j:#}");
    for side in ["kura", "raw"] {
        assert!(j["requests"][side].as_u64().unwrap() > 0, "{j:#}");
    }
    assert_eq!(
        names,
        [
            "Encrypt 256 B over HTTP",
            "Encrypt p50 latency",
            "Encrypt p99 latency"
        ],
        "{j:#}"
    );
}

#[test]
fn plain_bench_still_measures_the_formats() {
    let sb = Sandbox::new();
    let out = sb
        .exec(sb.cmd().args(["bench", "--help"]))
        .ok()
        .stdout_str();
    assert!(out.contains("[default: formats]"), "{out}");
    sb.exec(sb.cmd().args(["bench", "nonsense"]))
        .usage_error(&["invalid value 'nonsense'"]);
}
