//! kura-fs's Prometheus metrics: encrypted files, the dictionary's size and how long its
//! changes take, with the key hierarchy's own (initialised, data keys, rotations).

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kura_keys::background::{RotationStats, render_metrics};

use crate::EncryptedFs;

const BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// Durations of dictionary changes (each one durable before it returns).
#[derive(Debug, Default)]
pub(crate) struct DictTimings(Mutex<([u64; BUCKETS.len()], f64, u64)>);

impl DictTimings {
    pub(crate) fn record(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let mut h = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.0[i] += 1;
            }
        }
        h.1 += secs;
        h.2 += 1;
    }

    fn render(&self, out: &mut String) {
        let h = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        out.push_str("# HELP kura_fs_dictionary_operation_duration_seconds Time to make one file dictionary change durable.\n");
        out.push_str("# TYPE kura_fs_dictionary_operation_duration_seconds histogram\n");
        for (b, n) in BUCKETS.iter().zip(h.0) {
            let _ = writeln!(
                out,
                "kura_fs_dictionary_operation_duration_seconds_bucket{{le=\"{b}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "kura_fs_dictionary_operation_duration_seconds_bucket{{le=\"+Inf\"}} {}\n\
             kura_fs_dictionary_operation_duration_seconds_sum {}\n\
             kura_fs_dictionary_operation_duration_seconds_count {}",
            h.2, h.1, h.2
        );
    }
}

impl EncryptedFs {
    /// The Prometheus text exposition of this file system and its key hierarchy;
    /// `rotation` adds the counters of a background [`kura_keys::background::Rotator`].
    pub fn metrics(&self, rotation: Option<&RotationStats>) -> String {
        let mut out = render_metrics(&self.keyring().status(), rotation);
        let _ = write!(
            out,
            "# HELP kura_fs_encrypted_files Files the dictionary lists as encrypted.\n\
             # TYPE kura_fs_encrypted_files gauge\nkura_fs_encrypted_files {}\n\
             # HELP kura_fs_dictionary_bytes Size of the file dictionary on disk.\n\
             # TYPE kura_fs_dictionary_bytes gauge\nkura_fs_dictionary_bytes {}\n",
            self.entries().len(),
            self.dictionary_size()
        );
        self.timings().render(&mut out);
        out
    }
}
