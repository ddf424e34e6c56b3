//! The score cache: a repeated (segment A, segment B) pair costs no inference.
//!
//! Engines page through results by re-sending the same window of candidates, and a Q&A site
//! sees its popular questions again and again. The key is a sha256 (cut to 128 bits) of the
//! model's fingerprint, the long-answer mode and the exact texts, so a cache can never hand one
//! model's score to another, and a crafted text cannot collide with someone else's pair. The
//! value is the score exactly as computed: the scheduler's scores do not depend on the batch a
//! pair ran in (tested bit for bit), so a cached score equals a fresh one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use mathrank_rerank::Score;
use sha2::Digest;

use crate::LongAnswers;

/// Memory one entry takes. Measured (resident memory of a process filling an `lru` cache of
/// 16-byte keys and scores twice over): 108.6 bytes per entry at 100,000 entries and 99.7 at
/// 1,000,000; `lru` boxes every entry with its list links and the hash table adds its
/// buckets. Rounded up.
pub const ENTRY_BYTES: usize = 112;

/// A cache key: 128 bits of sha256.
pub type CacheKey = [u8; 16];

/// Counters of a cache, for metrics and per-call timings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub entries: u64,
    pub capacity: u64,
}

/// A bounded LRU map from pair keys to scores.
pub struct ScoreCache {
    entries: Mutex<lru::LruCache<CacheKey, Score>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl std::fmt::Debug for ScoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreCache").field("capacity", &self.capacity).finish()
    }
}

impl ScoreCache {
    /// A cache of at most `megabytes` MiB; `None` for 0 (off).
    pub fn with_megabytes(megabytes: u64) -> Option<Self> {
        let bytes = usize::try_from(megabytes.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        Self::with_entries(bytes / ENTRY_BYTES)
    }

    /// A cache of at most `capacity` entries; `None` for 0.
    pub fn with_entries(capacity: usize) -> Option<Self> {
        let bounded = std::num::NonZeroUsize::new(capacity)?;
        Some(Self {
            entries: Mutex::new(lru::LruCache::new(bounded)),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<CacheKey, Score>> {
        // A panic while holding the lock cannot leave a half-written entry: use it as it is.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached score of each key, counting hits and misses.
    pub fn get_many(&self, keys: &[CacheKey]) -> Vec<Option<Score>> {
        let mut entries = self.lock();
        let found: Vec<Option<Score>> = keys.iter().map(|key| entries.get(key).copied()).collect();
        drop(entries);
        let hits = found.iter().filter(|s| s.is_some()).count() as u64;
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses.fetch_add(keys.len() as u64 - hits, Ordering::Relaxed);
        found
    }

    /// Remembers scores, evicting the least recently used entries beyond the capacity.
    pub fn insert_many(&self, scored: impl IntoIterator<Item = (CacheKey, Score)>) {
        let mut entries = self.lock();
        let mut evicted = 0;
        for (key, score) in scored {
            if let Some((old, _)) = entries.push(key, score)
                && old != key
            {
                evicted += 1;
            }
        }
        drop(entries);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self.lock().len() as u64,
            capacity: self.capacity as u64,
        }
    }
}

/// The key of a pair: the model's fingerprint, how long answers are scored (and with how many
/// windows), and both texts, each length-prefixed so that no two pairs of texts run together.
pub fn cache_key(
    fingerprint: &[u8; 32],
    mode: LongAnswers,
    max_windows: u32,
    question: &str,
    answer: &str,
) -> CacheKey {
    let mut hasher = sha2::Sha256::new();
    hasher.update(fingerprint);
    match mode {
        LongAnswers::Truncate => hasher.update([0u8]),
        LongAnswers::MaxWindow => {
            hasher.update([1u8]);
            hasher.update(max_windows.to_le_bytes());
        }
    }
    for text in [question, answer] {
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    let digest = hasher.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(question: &str, answer: &str) -> CacheKey {
        cache_key(&[7; 32], LongAnswers::Truncate, 4, question, answer)
    }

    #[test]
    fn keys_separate_models_modes_and_texts() {
        let base = key("q", "a");
        assert_eq!(base, key("q", "a"));
        assert_ne!(base, cache_key(&[8; 32], LongAnswers::Truncate, 4, "q", "a"));
        assert_ne!(base, cache_key(&[7; 32], LongAnswers::MaxWindow, 4, "q", "a"));
        assert_ne!(
            cache_key(&[7; 32], LongAnswers::MaxWindow, 4, "q", "a"),
            cache_key(&[7; 32], LongAnswers::MaxWindow, 8, "q", "a")
        );
        // Length prefixes: moving text between the segments changes the key.
        assert_ne!(key("ab", "c"), key("a", "bc"));
    }

    #[test]
    fn hits_misses_and_evictions_are_counted() {
        let cache = ScoreCache::with_entries(2).unwrap();
        let score = |x: f32| Score::from_logits([0.0, x]);
        let (a, b, c) = (key("q", "a"), key("q", "b"), key("q", "c"));
        assert_eq!(cache.get_many(&[a, b]), [None, None]);
        cache.insert_many([(a, score(1.0)), (b, score(2.0))]);
        assert_eq!(cache.get_many(&[a]), [Some(score(1.0))]);
        // `b` is now the least recently used: `c` evicts it.
        cache.insert_many([(c, score(3.0))]);
        assert_eq!(cache.get_many(&[a, b, c]), [Some(score(1.0)), None, Some(score(3.0))]);
        // Re-inserting a present key is not an eviction.
        cache.insert_many([(a, score(1.0))]);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.evictions, stats.entries), (3, 3, 1, 2));
        assert!(ScoreCache::with_megabytes(0).is_none());
        assert_eq!(ScoreCache::with_megabytes(1).unwrap().stats().capacity, (1 << 20) / ENTRY_BYTES as u64);
    }
}
