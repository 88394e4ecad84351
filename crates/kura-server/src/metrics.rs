//! Prometheus metrics: requests by operation and outcome, a latency histogram, and keys by
//! state (counted when scraped). No label ever carries a key id, a user or a payload.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; 12],
    sum: f64,
    count: u64,
}

/// The server's counters.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, String), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    /// Records one request: its operation, its outcome (`ok` or the error type) and how long
    /// it took.
    pub(crate) fn record(&self, operation: &str, outcome: &str, took: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((operation.to_string(), outcome.to_string()))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let mut l = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let h = l.entry(operation.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The Prometheus text exposition, with `keys_by_state` appended as a gauge.
    pub(crate) fn render(&self, keys_by_state: &BTreeMap<String, u64>) -> String {
        let mut out = String::new();
        out.push_str("# HELP kura_kms_requests_total KMS requests by operation and outcome.\n");
        out.push_str("# TYPE kura_kms_requests_total counter\n");
        for ((op, outcome), n) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "kura_kms_requests_total{{operation=\"{op}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP kura_kms_request_duration_seconds Time to answer a KMS request.\n");
        out.push_str("# TYPE kura_kms_request_duration_seconds histogram\n");
        for (op, h) in self
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "kura_kms_request_duration_seconds_bucket{{operation=\"{op}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "kura_kms_request_duration_seconds_bucket{{operation=\"{op}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "kura_kms_request_duration_seconds_sum{{operation=\"{op}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "kura_kms_request_duration_seconds_count{{operation=\"{op}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP kura_kms_keys KMS keys by state.\n");
        out.push_str("# TYPE kura_kms_keys gauge\n");
        for (state, n) in keys_by_state {
            let _ = writeln!(out, "kura_kms_keys{{state=\"{state}\"}} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.record("Encrypt", "ok", Duration::from_micros(300));
        m.record("Encrypt", "ok", Duration::from_millis(3));
        m.record(
            "Decrypt",
            "InvalidCiphertextException",
            Duration::from_millis(1),
        );
        let text = m.render(&[("Enabled".to_string(), 2)].into_iter().collect());
        assert!(text.contains("kura_kms_requests_total{operation=\"Encrypt\",outcome=\"ok\"} 2"));
        assert!(text.contains(
            "kura_kms_request_duration_seconds_bucket{operation=\"Encrypt\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains("kura_kms_request_duration_seconds_count{operation=\"Encrypt\"} 2"));
        assert!(text.contains("kura_kms_keys{state=\"Enabled\"} 2"));
    }
}
