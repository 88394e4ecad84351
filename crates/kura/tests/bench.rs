#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura bench --quick`: the report's shape (never its timings). It runs once: it takes
//! a few seconds.

mod common;

use common::*;

#[test]
fn quick_bench_reports_results_as_json() {
    let sb = Sandbox::new();
    let tmp = sb.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let j = sb
        .exec(
            sb.cmd()
                .env("TMPDIR", &tmp)
                .args(["--output", "json", "bench", "--quick"]),
        )
        .ok()
        .json();
    assert_eq!(j["quick"], true);
    let results = j["results"].as_array().unwrap();
    assert!(!results.is_empty(), "{j:#}");
    let mut names = Vec::new();
    for r in results {
        let name = r["name"].as_str().unwrap();
        assert!(!name.is_empty());
        names.push(name.to_string());
        assert!(!r["unit"].as_str().unwrap().is_empty(), "{r}");
        for field in ["kura", "raw", "ratio"] {
            let v = r[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} in {r}"));
            assert!(v.is_finite() && v > 0.0, "{field} in {r}");
        }
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), results.len(), "duplicate names: {j:#}");
    // The benchmark uses a keystore of its own in a temporary directory, and removes it.
    assert_eq!(sb.files(), ["tmp"]);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}
