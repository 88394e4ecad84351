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
