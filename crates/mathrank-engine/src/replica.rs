//! How far a replica is behind its post store, and whether it is ready to take traffic.
//!
//! A thread samples the store's last sequence number every [`SAMPLE_EVERY`] (one indexed
//! `max(seq)` read; never on an async worker, since a PostgreSQL call blocks). A replica is
//! **ready** when every change the store held [`READY_LAG`] ago is searchable here: its
//! searchable sequence number has reached the store's last sequence number as sampled at least
//! `READY_LAG` before now (or, in the first `READY_LAG` after start, the first sample). So a
//! replica that starts behind (a new one building from the store, or one replaying after a
//! crash) stays unready until it has caught up, and one that keeps up under load (it commits
//! every second) stays ready.
//!
//! When the store cannot be read (PostgreSQL restarting), the samples stop and readiness keeps
//! its last answer: the index still serves searches, so an outage of the store does not take
//! every replica out of a load balancer at once. [`ReplicaStatus::store_error`] says why.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mathrank_index::LiveIndex;
use mathrank_store::PostStore;

/// A replica is ready when the changes the store held this long ago are searchable.
pub const READY_LAG: Duration = Duration::from_secs(5);

/// How often the store's last sequence number is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// What a replica knows about its lag, for `Info`, metrics and readiness.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaStatus {
    /// The store's last sequence number at the latest sample.
    pub store_seq: u64,
    /// Every change up to this is searchable here.
    pub searchable_seq: u64,
    /// Every change the store held [`READY_LAG`] ago is searchable.
    pub ready: bool,
    /// How long the oldest change not yet searchable has been in the store, at least (0 when
    /// caught up with the latest sample).
    pub lag_seconds: f64,
    /// Why the last sample failed, while the store is unreachable.
    pub store_error: Option<String>,
}

/// Samples of `(when, store's last sequence number)`, oldest first.
#[derive(Debug, Default)]
struct Samples {
    samples: VecDeque<(Instant, u64)>,
    error: Option<String>,
}

impl Samples {
    /// Adds a sample and drops those no longer needed: only the newest sample at or before
    /// `now - bound` matters for readiness, and none older.
    fn push(&mut self, at: Instant, seq: u64, bound: Duration) {
        self.samples.push_back((at, seq));
        self.error = None;
        let horizon = at.checked_sub(bound);
        while self.samples.len() > 2
            && horizon.is_some_and(|horizon| self.samples.get(1).is_some_and(|&(second, _)| second <= horizon))
        {
            self.samples.pop_front();
        }
    }

    /// The sequence number that must be searchable to be ready at `now`: the store's as
    /// sampled `bound` ago, or the first sample when there is none that old.
    fn target(&self, now: Instant, bound: Duration) -> Option<u64> {
        let horizon = now.checked_sub(bound);
        let old_enough = self.samples.iter().rev().find(|&&(at, _)| horizon.is_some_and(|horizon| at <= horizon));
        old_enough.or_else(|| self.samples.front()).map(|&(_, seq)| seq)
    }

    fn status(&self, now: Instant, bound: Duration, searchable: u64) -> ReplicaStatus {
        let store_seq = self.samples.back().map_or(0, |&(_, seq)| seq);
        let ready = self.target(now, bound).is_some_and(|target| searchable >= target);
        let behind_since = self.samples.iter().find(|&&(_, seq)| seq > searchable).map(|&(at, _)| at);
        ReplicaStatus {
            store_seq,
            searchable_seq: searchable,
            ready,
            lag_seconds: behind_since.map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64()),
            store_error: self.error.clone(),
        }
    }
}

/// Watches the store for one replica; the sampling thread stops when this is dropped.
#[derive(Debug)]
pub(crate) struct StoreWatch {
    samples: Arc<Mutex<Samples>>,
    stop: Arc<AtomicBool>,
}

impl StoreWatch {
    /// Takes a first sample now (so readiness is known from the start), then samples on a
    /// thread of its own. Blocks: call it off the async workers.
    pub(crate) fn start(store: Arc<dyn PostStore>) -> std::io::Result<Self> {
        let samples = Arc::new(Mutex::new(Samples::default()));
        sample(store.as_ref(), &samples);
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_samples, thread_stop) = (Arc::clone(&samples), Arc::clone(&stop));
        std::thread::Builder::new().name("store-watch".into()).spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                std::thread::sleep(SAMPLE_EVERY);
                sample(store.as_ref(), &thread_samples);
            }
        })?;
        Ok(Self { samples, stop })
    }

    pub(crate) fn status(&self, live: &LiveIndex) -> ReplicaStatus {
        // Read the searchable number first: a sample taken after it can only make the
        // replica look further behind, never caught up when it is not.
        let searchable = live.searchable_seq();
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.status(Instant::now(), READY_LAG, searchable)
    }
}

impl Drop for StoreWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn sample(store: &dyn PostStore, samples: &Mutex<Samples>) {
    let result = store.last_seq();
    let mut samples = samples.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(seq) => samples.push(Instant::now(), seq, READY_LAG),
        Err(err) => {
            if samples.error.is_none() {
                tracing::warn!(error = %err, "cannot read the post store's sequence number; search keeps serving the current index");
            }
            samples.error = Some(err.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(5);

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_replica_without_samples_is_not_ready() {
        let samples = Samples::default();
        assert!(!samples.status(Instant::now(), BOUND, 100).ready);
    }

    #[test]
    fn at_start_the_first_sample_must_be_reached() {
        let start = Instant::now();
        let mut samples = Samples::default();
        samples.push(start, 50, BOUND);
        samples.push(at(start, 1000), 60, BOUND);
        assert!(!samples.status(at(start, 1000), BOUND, 49).ready);
        let status = samples.status(at(start, 1000), BOUND, 50);
        assert!(status.ready);
        assert_eq!((status.store_seq, status.searchable_seq), (60, 50));
        assert!((status.lag_seconds - 0.0).abs() < 1e-9, "the change after 50 came at 1 s, now");
    }

    #[test]
    fn later_what_the_store_held_bound_ago_must_be_searchable() {
        let start = Instant::now();
        let mut samples = Samples::default();
        for second in 0..=20u64 {
            samples.push(at(start, second * 1000), second * 10, BOUND);
        }
        let now = at(start, 20_000);
        // The store held 150 at 15 s, 5 s ago.
        assert!(!samples.status(now, BOUND, 149).ready);
        let status = samples.status(now, BOUND, 150);
        assert!(status.ready);
        assert!((status.lag_seconds - 4.0).abs() < 1e-9, "{status:?}: 160 arrived at 16 s");
        assert!(samples.status(now, BOUND, 200).lag_seconds == 0.0);
        // Only what readiness needs is kept.
        assert!(samples.samples.len() <= 7, "{}", samples.samples.len());
        assert_eq!(samples.samples.front().map(|&(_, seq)| seq), Some(150));
    }

    #[test]
    fn an_unreachable_store_keeps_the_last_answer() {
        let start = Instant::now();
        let mut samples = Samples::default();
        samples.push(start, 10, BOUND);
        samples.error = Some("connection refused".into());
        let status = samples.status(at(start, 60_000), BOUND, 10);
        assert!(status.ready);
        assert_eq!(status.store_error.as_deref(), Some("connection refused"));
        samples.push(at(start, 61_000), 12, BOUND);
        assert_eq!(samples.status(at(start, 61_000), BOUND, 10).store_error, None);
    }
}
