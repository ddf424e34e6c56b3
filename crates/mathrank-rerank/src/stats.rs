//! The reranker's counters, for metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) batches: AtomicU64,
    pub(crate) pairs: AtomicU64,
    pub(crate) real_tokens: AtomicU64,
    pub(crate) padded_tokens: AtomicU64,
    pub(crate) infer_nanos: AtomicU64,
    pub(crate) cancelled_jobs: AtomicU64,
    pub(crate) expired_jobs: AtomicU64,
    pub(crate) skipped_pairs: AtomicU64,
    pub(crate) batch_size_buckets: [AtomicU64; BATCH_BUCKETS.len()],
}

impl Counters {
    /// Back to zero (after the load-time probe, which is not service).
    pub(crate) fn reset(&self) {
        for counter in [
            &self.batches,
            &self.pairs,
            &self.real_tokens,
            &self.padded_tokens,
            &self.infer_nanos,
            &self.cancelled_jobs,
            &self.expired_jobs,
            &self.skipped_pairs,
        ]
        .into_iter()
        .chain(&self.batch_size_buckets)
        {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// Upper bounds of the batch-size histogram buckets (the last is +Inf).
pub const BATCH_BUCKETS: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, u64::MAX];

/// A snapshot of the reranker's counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RerankerStats {
    /// Jobs waiting (wholly or partly) for an inference thread.
    pub queue_depth: u64,
    pub batches: u64,
    pub pairs: u64,
    pub real_tokens: u64,
    pub padded_tokens: u64,
    pub infer_seconds: f64,
    /// Jobs dropped because their caller left.
    pub cancelled_jobs: u64,
    /// Jobs that ended with pairs unscored because their deadline came or could not be met.
    pub expired_jobs: u64,
    /// Pairs never run because their job was cancelled or expired.
    pub skipped_pairs: u64,
    /// The learned speed: seconds per unit of the cost model (0 until a batch has run).
    pub seconds_per_cost_unit: f64,
    /// Cumulative counts per bucket of [`BATCH_BUCKETS`] (Prometheus style).
    pub batch_size_cumulative: Vec<u64>,
}

/// Real tokens / padded tokens (1.0 when nothing ran).
pub fn efficiency(real: u64, padded: u64) -> f64 {
    if padded == 0 { 1.0 } else { real as f64 / padded as f64 }
}
