//! Data-key rotation in the background, for long-running processes (the KMS server, an
//! application using kura-fs), and the hierarchy's Prometheus metrics.
//!
//! A [`Rotator`] checks every `interval` (and once at start) whether the active data key is
//! due and rotates it if so. A failed check never stops it: it is logged, counted and
//! retried at the next tick. Stopping (or dropping) the rotator ends the thread.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{Error, Status};

/// What the background rotation did.
#[derive(Debug, Default)]
pub struct RotationStats {
    /// Data keys rotated.
    pub rotations: AtomicU64,
    /// Checks that failed (each retried at the next tick).
    pub failures: AtomicU64,
}

/// A thread rotating data keys when they are due.
pub struct Rotator {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
    stats: Arc<RotationStats>,
}

impl std::fmt::Debug for Rotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotator")
            .field("stats", &self.stats)
            .finish()
    }
}

impl Rotator {
    /// Runs `check` (e.g. `move || keyring.rotate_if_due()`) now and every `interval`.
    pub fn spawn(
        name: &str,
        interval: Duration,
        check: impl Fn() -> Result<Option<u64>, Error> + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stats = Arc::new(RotationStats::default());
        let (s, st) = (stop.clone(), stats.clone());
        let label = name.to_string();
        let handle = std::thread::Builder::new()
            .name(format!("kura-rotate-{name}"))
            .spawn(move || {
                loop {
                    match check() {
                        Ok(Some(id)) => {
                            st.rotations.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(keyring = %label, data_key = id, "data key rotated");
                        }
                        Ok(None) => {}
                        Err(e) => {
                            st.failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(keyring = %label, error = %e, "data key rotation check failed; retrying at the next tick");
                        }
                    }
                    let (lock, cv) = &*s;
                    let stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                    let (stopped, _) = cv
                        .wait_timeout_while(stopped, interval, |stop| !*stop)
                        .unwrap_or_else(PoisonError::into_inner);
                    if *stopped {
                        return;
                    }
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
            stats,
        })
    }

    /// The interval TiKV uses: the rotation period, at most 10 minutes.
    pub fn interval_for(period: Duration) -> Duration {
        period
            .min(Duration::from_secs(600))
            .max(Duration::from_secs(1))
    }

    /// The counters.
    pub fn stats(&self) -> Arc<RotationStats> {
        self.stats.clone()
    }
}

impl Drop for Rotator {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The hierarchy's metrics in the Prometheus text format: whether encryption is
/// initialised, data keys by state, and the background rotation's counters.
pub fn render_metrics(status: &Status, stats: Option<&RotationStats>) -> String {
    let mut out = String::new();
    out.push_str("# HELP kura_encryption_initialized 1 once the key hierarchy is open (master key, KEK and an active data key).\n");
    out.push_str("# TYPE kura_encryption_initialized gauge\nkura_encryption_initialized 1\n");
    out.push_str("# HELP kura_encryption_data_keys Data keys by state.\n");
    out.push_str("# TYPE kura_encryption_data_keys gauge\n");
    for state in ["active", "decrypt-only", "destroyed"] {
        let n = status.data_keys.iter().filter(|d| d.state == state).count();
        let _ = writeln!(out, "kura_encryption_data_keys{{state=\"{state}\"}} {n}");
    }
    if let Some(s) = stats {
        let _ = write!(
            out,
            "# HELP kura_encryption_rotations_total Data keys rotated in the background.\n\
             # TYPE kura_encryption_rotations_total counter\nkura_encryption_rotations_total {}\n\
             # HELP kura_encryption_rotation_failures_total Background rotation checks that failed (retried).\n\
             # TYPE kura_encryption_rotation_failures_total counter\nkura_encryption_rotation_failures_total {}\n",
            s.rotations.load(Ordering::Relaxed),
            s.failures.load(Ordering::Relaxed)
        );
    }
    out
}
