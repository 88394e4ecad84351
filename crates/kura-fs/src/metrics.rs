//! kura-fs's Prometheus metrics: encrypted files, the dictionary's size and how long its
//! changes take, with the key hierarchy's own (initialised, data keys, rotations).

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use std::collections::BTreeMap;
use std::path::Path;

use kura_keys::Keyring;
use kura_keys::background::{RotationStats, render_metrics};

use crate::dict::Dictionary;
use crate::{EncryptedFs, META_DIR};

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

/// Prometheus gauges of data roots other processes own, read without their lock
/// ([`Dictionary::peek`]): for each root, whether its dictionary read
/// (`kura_fs_root_up`), its encrypted files, its dictionary's size, and its files per data
/// key. `kura server` serves them for every root a `kura fs` command registered.
pub fn root_metrics(roots: &[&Path], keyring: &Keyring) -> String {
    let mut up = String::new();
    let mut files = String::new();
    let mut bytes = String::new();
    let mut by_key = String::new();
    for root in roots {
        let label = escape(&root.display().to_string());
        match Dictionary::peek(&root.join(META_DIR), keyring) {
            Ok(peek) => {
                let (entries, size) =
                    peek.map_or_else(|| (BTreeMap::new(), 0), |p| (p.entries, p.size_bytes));
                let _ = writeln!(up, "kura_fs_root_up{{root=\"{label}\"}} 1");
                let _ = writeln!(
                    files,
                    "kura_fs_root_encrypted_files{{root=\"{label}\"}} {}",
                    entries.len()
                );
                let _ = writeln!(
                    bytes,
                    "kura_fs_root_dictionary_bytes{{root=\"{label}\"}} {size}"
                );
                let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
                for info in entries.values() {
                    *counts.entry(info.key_id).or_default() += 1;
                }
                for (id, n) in counts {
                    let _ = writeln!(
                        by_key,
                        "kura_fs_root_files{{root=\"{label}\",data_key=\"{id}\"}} {n}"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(root = %root.display(), error = %e, "cannot read the file dictionary of a data root");
                let _ = writeln!(up, "kura_fs_root_up{{root=\"{label}\"}} 0");
            }
        }
    }
    let mut out = String::new();
    for (name, help, body) in [
        (
            "kura_fs_root_up",
            "1 if the file dictionary of the data root read, 0 if not (see the log).",
            up,
        ),
        (
            "kura_fs_root_encrypted_files",
            "Files the dictionary of the data root lists as encrypted.",
            files,
        ),
        (
            "kura_fs_root_dictionary_bytes",
            "Size of the data root's file dictionary.",
            bytes,
        ),
        (
            "kura_fs_root_files",
            "Files of the data root per data key they are encrypted under.",
            by_key,
        ),
    ] {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{body}");
    }
    out
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
