//! The engine: validation, admission control, BM25 retrieval, anytime reranking.
//!
//! Admission gates the cheap work, not inference. Retrieval (with the HTML conversion and
//! tokenizing around it) runs under its own small bound, `max_concurrent` at once with
//! `max_queued` waiting; only beyond that is a call refused (`Overloaded`). Reranking then
//! waits for the inference queue, which serves calls earliest deadline first. Every call has a
//! deadline (the caller's, or `default_timeout_ms`, never more than `max_timeout_ms`), and when
//! it nears, the call returns what it has: the candidates scored so far, then the rest in
//! first-stage order, marked partial with the reason. So a call whose retrieval finished
//! always gets hits; only a call whose retrieval itself could not finish in time gets
//! `DeadlineExceeded`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mathrank_index::{AnswerIndex, FieldWeights, Filters, Hit, Indexer, IndexerStatus, LiveIndex, SearchRequest};
use mathrank_rerank::{EncodedPair, Reranker, Score};
use mathrank_store::PostStore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cache::{CacheKey, CacheStats, ScoreCache, cache_key};
use crate::ranking::{Fusion, compare_fused, compare_scored, normalize_candidate, normalize_question, ranking_value};
use crate::replica::{ReplicaStatus, StoreWatch};
use crate::write::{Committer, ItemOutcome, WriteItem, WriteOutcome, outcome_of};
use crate::{EngineError, Result, invalid};

/// How an answer longer than the model's 512 tokens is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongAnswers {
    /// The pair truncated `longest_first`, as the model's authors scored it.
    #[default]
    Truncate,
    /// The best of overlapping windows over the answer (the question kept as the first window
    /// has it). The first window is the truncated pair, so the score is never lower.
    MaxWindow,
}

impl LongAnswers {
    pub fn name(self) -> &'static str {
        match self {
            Self::Truncate => "truncate",
            Self::MaxWindow => "max_window",
        }
    }
}

impl std::fmt::Display for LongAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for LongAnswers {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "truncate" => Ok(Self::Truncate),
            "max_window" | "max-window" => Ok(Self::MaxWindow),
            other => Err(format!("unknown long-answer mode {other:?}; use truncate or max_window")),
        }
    }
}

/// Why a call came back with fewer candidates scored than asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartialReason {
    /// The deadline came first.
    Deadline,
    /// The inference queue was full: nothing more could wait.
    Overload,
}

impl PartialReason {
    pub fn name(self) -> &'static str {
        match self {
            Self::Deadline => "deadline",
            Self::Overload => "overload",
        }
    }
}

/// Request limits and defaults.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    pub default_top_k: u32,
    pub max_top_k: u32,
    pub default_rerank_depth: u32,
    pub max_rerank_depth: u32,
    pub max_candidates: u32,
    pub max_query_bytes: u32,
    /// Retrievals (with their HTML conversion and tokenizing) run at once.
    pub max_concurrent: u32,
    /// Calls waiting for a retrieval slot; beyond them callers get `Overloaded` at once.
    pub max_queued: u32,
    pub max_message_bytes: u32,
    /// The deadline of a call that sets none, in milliseconds.
    pub default_timeout_ms: u64,
    /// No call holds inference longer than this, whatever deadline it asks for.
    pub max_timeout_ms: u64,
    /// How long answers are scored when the call does not say.
    pub long_answers: LongAnswers,
    /// With `MaxWindow`: windows scored per answer at most (the first, truncated pair included).
    pub max_windows_per_answer: u32,
    /// With `MaxWindow`: pairs one call sends to the model at most. Every candidate's first
    /// window counts; extra windows go to the best-ranked candidates first.
    pub max_windows_per_call: u32,
    /// Memory of the score cache in MiB; 0 turns it off.
    pub score_cache_mb: u64,
}

/// The score cache's default size: about 600,000 pairs (20,000 distinct questions of 30
/// candidates) at the measured 112 bytes per entry.
pub const DEFAULT_SCORE_CACHE_MB: u64 = 64;

impl Default for Limits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
        Self {
            default_top_k: 10,
            max_top_k: 1000,
            default_rerank_depth: 30,
            max_rerank_depth: 1000,
            max_candidates: 1000,
            max_query_bytes: 32 * 1024,
            max_concurrent: (cores * 2).max(4),
            max_queued: 64,
            max_message_bytes: 16 * 1024 * 1024,
            default_timeout_ms: 10_000,
            max_timeout_ms: 60_000,
            long_answers: LongAnswers::Truncate,
            max_windows_per_answer: 4,
            max_windows_per_call: 256,
            score_cache_mb: DEFAULT_SCORE_CACHE_MB,
        }
    }
}

impl Limits {
    /// Limits for in-process batch work (`eval`, local `search`): calls without a deadline
    /// wait as long as reranking takes.
    pub fn unhurried() -> Self {
        Self { default_timeout_ms: u64::MAX, max_timeout_ms: u64::MAX, ..Self::default() }
    }
}

/// `at` plus `ms` milliseconds; a century when that overflows (no deadline to speak of).
fn after(at: Instant, ms: u64) -> Instant {
    at.checked_add(Duration::from_millis(ms.max(1)))
        .or_else(|| at.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(at)
}

/// A search as the engine sees it.
#[derive(Debug, Clone, Default)]
pub struct SearchParams {
    /// The question: HTML or plain text, converted once into segment A (see
    /// [`normalize_question`]), unless `query_is_text`.
    pub query: String,
    /// `query` is segment A already, exactly as the model should read it (`eval` converts
    /// topics itself): it is used as is, never parsed as HTML again.
    pub query_is_text: bool,
    /// 0 = default.
    pub top_k: u32,
    /// 0 = default.
    pub rerank_depth: u32,
    /// `None`: rerank when a model is loaded.
    pub rerank: Option<bool>,
    pub filters: Filters,
    /// `None`: the server's default timeout from now.
    pub deadline: Option<Instant>,
    /// `None`: the server's default.
    pub long_answers: Option<LongAnswers>,
    /// How the reranked hits are finally ordered; `None`: by the reranker (`Fusion::Rerank`).
    pub fusion: Option<Fusion>,
    /// First-stage field weights; `None`: the index's defaults (for tuning and measurement).
    pub field_weights: Option<FieldWeights>,
}

/// Candidates from another engine to score against a query.
#[derive(Debug, Clone, Default)]
pub struct RerankParams {
    /// The question, HTML or plain text.
    pub query: String,
    /// The candidates' texts, HTML or plain text, in the caller's (first-stage) order.
    pub candidates: Vec<String>,
    /// `None`: the server's default timeout from now.
    pub deadline: Option<Instant>,
    /// `None`: the server's default.
    pub long_answers: Option<LongAnswers>,
}

/// Where the time of a request went, and what its reranking cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub retrieve: Duration,
    pub tokenize: Duration,
    /// Time the call's pairs waited in the inference queue before the first were taken.
    pub queue: Duration,
    pub infer: Duration,
    /// Wall time spent waiting for the reranker (submit to last result).
    pub rerank: Duration,
    pub total: Duration,
    /// Candidates whose score came from the score cache.
    pub cache_hits: u32,
    /// Candidates that needed the model.
    pub cache_misses: u32,
    /// Pairs sent to the model: one per missed candidate, more with `MaxWindow`.
    pub windows: u32,
}

/// A hit with its cross-encoder score when it was reranked.
#[derive(Debug, Clone)]
pub struct RankedHit {
    pub hit: Hit,
    pub score: Option<Score>,
    /// The value reranked hits are ordered by (see [`Fusion`]); `None` for hits that keep
    /// their BM25 order after them.
    pub fused: Option<f32>,
}

#[derive(Debug, Clone)]
pub struct SearchOutcome {
    pub hits: Vec<RankedHit>,
    pub reranked: usize,
    pub partial: bool,
    /// Set when `partial`.
    pub partial_reason: Option<PartialReason>,
    pub timings: Timings,
}

/// A candidate's result in a Rerank call.
#[derive(Debug, Clone)]
pub struct RerankedCandidate {
    pub index: usize,
    pub score: Option<Score>,
}

#[derive(Debug, Clone)]
pub struct RerankOutcome {
    /// Scored candidates by decreasing relevance (ties: input order), then unscored ones in
    /// input order.
    pub results: Vec<RerankedCandidate>,
    pub reranked: usize,
    pub partial: bool,
    /// Set when `partial`.
    pub partial_reason: Option<PartialReason>,
    pub timings: Timings,
}

/// The engine: an index, optionally a reranker and its score cache, admission control, and,
/// for a live index, its post store and indexer.
pub struct Engine {
    index: Arc<LiveIndex>,
    /// Tells waiters how far the index is searchable.
    searchable: tokio::sync::watch::Receiver<u64>,
    writes: Option<Writes>,
    reranker: Option<Arc<Reranker>>,
    cache: Option<Arc<ScoreCache>>,
    limits: Limits,
    slots: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

/// What a live index adds: the store written to, its group committer, the indexer, and the
/// watch of how far behind the store this replica is.
struct Writes {
    store: Arc<dyn PostStore>,
    committer: Committer,
    indexer: Option<Indexer>,
    watch: StoreWatch,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("index", &self.index).field("reranker", &self.reranker).finish()
    }
}

/// Holds a place among the calls retrieving (or converting and tokenizing) until dropped.
#[derive(Debug)]
pub struct Admission {
    _slot: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

/// The time by which reranking must stop so that the answer still reaches the caller before
/// its deadline: an eighth of the time left is kept for the reply (5 to 200 ms).
fn reply_deadline(deadline: Instant) -> Instant {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let margin = (remaining / 8).clamp(Duration::from_millis(5), Duration::from_millis(200));
    deadline.checked_sub(margin).unwrap_or(deadline)
}

/// The scores of one set of candidates, and why some are missing.
struct Scored {
    scores: Vec<Option<Score>>,
    reason: Option<PartialReason>,
}

/// What the tokenizing step hands on: cache keys and hits, and the pairs of the misses.
struct Prepared {
    keys: Vec<CacheKey>,
    scores: Vec<Option<Score>>,
    /// Candidate indices that need the model, best-ranked first, with their windows.
    misses: Vec<(usize, Vec<EncodedPair>)>,
}

fn internal(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> EngineError {
    move |err| EngineError::Task(what, err)
}

impl Engine {
    /// An engine over a fixed index.
    pub fn new(index: Arc<AnswerIndex>, reranker: Option<Arc<Reranker>>, limits: Limits) -> Self {
        Self::with_live(LiveIndex::fixed(index), reranker, limits)
    }

    /// An engine over a live index (what an [`Indexer`] keeps up to date).
    pub fn with_live(index: Arc<LiveIndex>, reranker: Option<Arc<Reranker>>, limits: Limits) -> Self {
        let (sender, searchable) = tokio::sync::watch::channel(index.searchable_seq());
        index.on_searchable(move |seq| {
            sender.send_replace(seq);
        });
        let slots = Arc::new(Semaphore::new((limits.max_concurrent + limits.max_queued).max(1) as usize));
        let running = Arc::new(Semaphore::new(limits.max_concurrent.max(1) as usize));
        // A cached score must be the score a fresh call would get: only for a model whose
        // scores do not depend on their batch (probed when it loads).
        let invariant = reranker.as_ref().is_some_and(|r| r.info().batch_invariant);
        if reranker.is_some() && !invariant && limits.score_cache_mb > 0 {
            tracing::warn!(
                "the score cache is off: this model's scores depend on their batch (checked at load), so a cached score could differ from a fresh one"
            );
        }
        let cache = if invariant { ScoreCache::with_megabytes(limits.score_cache_mb).map(Arc::new) } else { None };
        Self { index, searchable, writes: None, reranker, cache, limits, slots, running }
    }

    /// Turns writes on: they go to `store`, which `indexer` (when this process runs it)
    /// applies to the index.
    ///
    /// Blocks for a first read of the store's sequence number (for readiness): call it off
    /// the async workers.
    pub fn with_store(mut self, store: Arc<dyn PostStore>, indexer: Option<Indexer>) -> Result<Self> {
        let committer = Committer::start(Arc::clone(&store))?;
        let watch = StoreWatch::start(Arc::clone(&store))
            .map_err(|err| EngineError::Unavailable(format!("cannot start the store watch thread: {err}")))?;
        self.writes = Some(Writes { store, committer, indexer, watch });
        Ok(self)
    }

    /// How far behind its post store this replica is; `None` without a store.
    pub fn replica_status(&self) -> Option<ReplicaStatus> {
        self.writes.as_ref().map(|writes| writes.watch.status(&self.index))
    }

    /// Whether this server should take traffic: always without a store; with one, once every
    /// change the store held [`READY_LAG`](crate::READY_LAG) ago is searchable.
    pub fn is_ready(&self) -> bool {
        self.replica_status().is_none_or(|status| status.ready)
    }

    /// The index searched now.
    pub fn index(&self) -> Arc<AnswerIndex> {
        self.index.current()
    }

    pub fn live(&self) -> &Arc<LiveIndex> {
        &self.index
    }

    /// Every store change up to this sequence number is searchable.
    pub fn searchable_seq(&self) -> u64 {
        self.index.searchable_seq()
    }

    /// The post store, when writes are on.
    pub fn store(&self) -> Option<&Arc<dyn PostStore>> {
        self.writes.as_ref().map(|writes| &writes.store)
    }

    /// The indexer's state, when this process runs one.
    pub fn indexer_status(&self) -> Option<IndexerStatus> {
        self.writes.as_ref()?.indexer.as_ref().map(Indexer::status)
    }

    /// Starts a rebuild of the index from the store (in the background; searches go on).
    pub fn request_rebuild(&self) -> Result<()> {
        let indexer = self.writes.as_ref().and_then(|writes| writes.indexer.as_ref()).ok_or_else(|| {
            EngineError::Unavailable("this server does not index a post store, so it cannot rebuild".into())
        })?;
        indexer.request_rebuild();
        Ok(())
    }

    /// Validates and writes `items` in order; returns once the valid ones are durable in the
    /// store. Each item gets its own outcome: a bad one never spoils the rest.
    pub async fn write(&self, items: Vec<WriteItem>) -> Result<WriteOutcome> {
        let writes = self
            .writes
            .as_ref()
            .ok_or_else(|| EngineError::Unavailable("this server has no post store: writes are off".into()))?;
        let now = crate::write::unix_now();
        let mut outcomes: Vec<Option<ItemOutcome>> = Vec::with_capacity(items.len());
        let mut ops = Vec::new();
        let mut versions = Vec::new();
        for item in items {
            match crate::write::validate(item, now) {
                Ok(op) => {
                    versions.push(match &op {
                        mathrank_store::Op::Upsert { version, .. } | mathrank_store::Op::Delete { version, .. } => {
                            Some(*version)
                        }
                        _ => None,
                    });
                    ops.push(op);
                    outcomes.push(None);
                }
                Err(outcome) => outcomes.push(Some(outcome)),
            }
        }
        let seq = if ops.is_empty() {
            let store = Arc::clone(&writes.store);
            tokio::task::spawn_blocking(move || store.last_seq())
                .await
                .map_err(internal("the store task"))?
                .map_err(|err| EngineError::Unavailable(err.to_string()))?
        } else {
            let ids: Vec<u64> = ops.iter().map(mathrank_store::Op::id).collect();
            let applied = writes.committer.apply(ops).await?;
            let mut applied_outcomes =
                applied.outcomes.into_iter().zip(ids).zip(versions).map(|((o, id), v)| outcome_of(id, o, v));
            for slot in outcomes.iter_mut().filter(|slot| slot.is_none()) {
                *slot = applied_outcomes.next();
            }
            applied.seq
        };
        let items = outcomes.into_iter().flatten().collect();
        Ok(WriteOutcome { seq, items })
    }

    /// Waits until `seq` is searchable, or `deadline`; whether it is.
    pub async fn wait_visible(&self, seq: u64, deadline: Instant) -> bool {
        let mut searchable = self.searchable.clone();
        matches!(
            tokio::time::timeout_at(deadline.into(), searchable.wait_for(|current| *current >= seq)).await,
            Ok(Ok(_))
        )
    }

    pub fn reranker(&self) -> Option<&Reranker> {
        self.reranker.as_deref()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The score cache's counters; `None` when it is off (or there is no model).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|cache| cache.stats())
    }

    /// Calls waiting for a retrieval slot.
    pub fn queued_requests(&self) -> u64 {
        let total = (self.limits.max_concurrent + self.limits.max_queued) as usize;
        let in_system = total.saturating_sub(self.slots.available_permits());
        in_system.saturating_sub(self.limits.max_concurrent as usize) as u64
    }

    /// The deadline of a call received at `received`: the one it asked for, or the default
    /// timeout, and never beyond the ceiling.
    pub fn deadline_of(&self, requested: Option<Instant>, received: Instant) -> Instant {
        let default = after(received, self.limits.default_timeout_ms);
        let ceiling = after(received, self.limits.max_timeout_ms);
        requested.unwrap_or(default).min(ceiling)
    }

    /// Takes a retrieval place: at once `Overloaded` when the waiting room is full, else waits
    /// for a slot (not past the deadline).
    pub async fn admit(&self, deadline: Instant) -> Result<Admission> {
        let slot = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            EngineError::Overloaded(format!(
                "{} calls retrieving and {} waiting to; retry with backoff",
                self.limits.max_concurrent, self.limits.max_queued
            ))
        })?;
        let running = tokio::time::timeout_at(deadline.into(), Arc::clone(&self.running).acquire_owned())
            .await
            .map_err(|_| {
                EngineError::DeadlineExceeded("the deadline passed while waiting for a retrieval slot".into())
            })?
            .map_err(|_| EngineError::Unavailable("the server is shutting down".into()))?;
        Ok(Admission { _slot: slot, _running: running })
    }

    fn check_query(&self, query: &str) -> Result<()> {
        if query.trim().is_empty() {
            return Err(invalid("query", "must not be empty"));
        }
        if query.len() > self.limits.max_query_bytes as usize {
            return Err(invalid(
                "query",
                format!("is {} bytes; at most {} allowed", query.len(), self.limits.max_query_bytes),
            ));
        }
        Ok(())
    }

    fn resolve_count(value: u32, default: u32, max: u32, field: &'static str) -> Result<usize> {
        let value = if value == 0 { default } else { value };
        if value > max {
            return Err(invalid(field, format!("is {value}; must be between 1 and {max}")));
        }
        Ok(value as usize)
    }

    fn wants_rerank(&self, requested: Option<bool>) -> Result<bool> {
        match (requested, self.reranker.is_some()) {
            (Some(true), false) => Err(EngineError::NoModel),
            (Some(explicit), _) => Ok(explicit),
            (None, loaded) => Ok(loaded),
        }
    }

    /// Validates a search without running it.
    pub fn validate_search(&self, params: &SearchParams) -> Result<(usize, usize, bool)> {
        self.check_query(&params.query)?;
        let top_k = Self::resolve_count(params.top_k, self.limits.default_top_k, self.limits.max_top_k, "top_k")?;
        let depth = Self::resolve_count(
            params.rerank_depth,
            self.limits.default_rerank_depth,
            self.limits.max_rerank_depth,
            "rerank_depth",
        )?;
        let filters = &params.filters;
        if let (Some(from), Some(to)) = (filters.created_from, filters.created_to)
            && from >= to
        {
            return Err(invalid("filters.created_to", format!("({to}) must be after filters.created_from ({from})")));
        }
        for (field, tags) in [("filters.tags_any", &filters.tags_any), ("filters.tags_all", &filters.tags_all)] {
            if tags.iter().any(|tag| tag.trim().is_empty()) {
                return Err(invalid(field, "holds an empty tag"));
            }
        }
        Ok((top_k, depth, self.wants_rerank(params.rerank)?))
    }

    /// BM25 retrieval, then anytime reranking of the top `rerank_depth`.
    pub async fn search(&self, params: SearchParams) -> Result<SearchOutcome> {
        let started = Instant::now();
        let (top_k, depth, rerank) = self.validate_search(&params)?;
        let mode = params.long_answers.unwrap_or(self.limits.long_answers);
        let deadline = self.deadline_of(params.deadline, started);
        let admission = self.admit(deadline).await?;
        let retrieve_count = if rerank { top_k.max(depth) } else { top_k };
        let index = self.index.current();
        let fusion = params.fusion.unwrap_or_default();
        let SearchParams { query, query_is_text, filters, field_weights, .. } = params;
        let retrieve_started = Instant::now();
        // The slot travels with the work: a retrieval still running when its caller's deadline
        // passed keeps it until it really ends, so the bound holds.
        let retrieval = tokio::task::spawn_blocking(move || {
            let question = if query_is_text { query.trim().to_owned() } else { normalize_question(&query) };
            let mut request = SearchRequest::new(question.clone(), retrieve_count);
            request.filters = filters;
            if let Some(weights) = field_weights {
                request.weights = weights;
            }
            index.search(&request).map(|hits| (question, hits, admission))
        });
        let (question, hits, admission) = tokio::time::timeout_at(deadline.into(), retrieval)
            .await
            .map_err(|_| EngineError::DeadlineExceeded("retrieval did not finish before the deadline".into()))?
            .map_err(internal("the search task"))?
            .map_err(|err| match err {
                mathrank_index::Error::InvalidFilter(message) => invalid("filters", message),
                other => EngineError::Index(other),
            })?;
        let mut timings = Timings { retrieve: retrieve_started.elapsed(), ..Timings::default() };
        let mut ranked: Vec<RankedHit> =
            hits.into_iter().map(|hit| RankedHit { hit, score: None, fused: None }).collect();
        let (mut reranked, mut partial_reason) = (0, None);
        if rerank && !ranked.is_empty() {
            let reranker = self.reranker.as_ref().ok_or(EngineError::NoModel)?;
            let count = depth.min(ranked.len());
            let texts: Vec<String> = ranked[..count].iter().map(|r| r.hit.body.clone()).collect();
            let scored = self
                .score_anytime(reranker, question, texts, mode, reply_deadline(deadline), admission, &mut timings)
                .await?;
            for (slot, score) in ranked.iter_mut().zip(&scored.scores) {
                slot.score = *score;
            }
            let candidates: Vec<(Option<&Score>, f32)> =
                ranked[..count].iter().map(|r| (r.score.as_ref(), r.hit.bm25_score)).collect();
            let fused = fusion.fuse(&candidates);
            for (slot, value) in ranked.iter_mut().zip(fused) {
                slot.fused = value;
            }
            reranked = scored.scores.iter().filter(|s| s.is_some()).count();
            partial_reason = scored.reason.filter(|_| reranked < count);
            ranked.sort_by(|a, b| compare_fused(a.fused, b.fused, a.hit.bm25_rank.cmp(&b.hit.bm25_rank)));
        } else {
            drop(admission);
        }
        ranked.truncate(top_k);
        timings.total = started.elapsed();
        Ok(SearchOutcome { hits: ranked, reranked, partial: partial_reason.is_some(), partial_reason, timings })
    }

    /// Scores candidates from another engine.
    pub async fn rerank(&self, params: RerankParams) -> Result<RerankOutcome> {
        let started = Instant::now();
        let RerankParams { query, candidates, deadline, long_answers } = params;
        self.check_query(&query)?;
        if candidates.is_empty() {
            return Err(invalid("candidates", "must hold at least one candidate"));
        }
        if candidates.len() > self.limits.max_candidates as usize {
            return Err(invalid(
                "candidates",
                format!("holds {}; at most {} allowed", candidates.len(), self.limits.max_candidates),
            ));
        }
        let reranker = self.reranker.as_ref().ok_or(EngineError::NoModel)?;
        let mode = long_answers.unwrap_or(self.limits.long_answers);
        let deadline = self.deadline_of(deadline, started);
        let admission = self.admit(deadline).await?;
        // HTML parsing of up to a whole message's worth of candidates is CPU work: off the
        // async workers, under the admission bound. Each candidate is cut first to what the
        // tokenizer could use (HTML markup takes bytes that text does not: a margin of 4x).
        let windows = match mode {
            LongAnswers::Truncate => 1,
            LongAnswers::MaxWindow => self.limits.max_windows_per_answer.max(1) as usize,
        };
        let max_bytes = reranker.encoder().max_input_bytes().saturating_mul(4 * windows);
        let convert_started = Instant::now();
        let conversion = tokio::task::spawn_blocking(move || {
            let question = normalize_question(&query);
            let texts: Vec<String> = candidates.iter().map(|text| normalize_candidate(text, max_bytes)).collect();
            (question, texts, admission)
        });
        let (question, texts, admission) = tokio::time::timeout_at(deadline.into(), conversion)
            .await
            .map_err(|_| {
                EngineError::DeadlineExceeded("converting the candidates did not finish before the deadline".into())
            })?
            .map_err(internal("candidate conversion"))?;
        let mut timings = Timings { retrieve: convert_started.elapsed(), ..Timings::default() };
        let scored = self
            .score_anytime(reranker, question, texts, mode, reply_deadline(deadline), admission, &mut timings)
            .await?;
        let reranked = scored.scores.iter().filter(|s| s.is_some()).count();
        let partial_reason = scored.reason.filter(|_| reranked < scored.scores.len());
        let mut results: Vec<RerankedCandidate> =
            scored.scores.into_iter().enumerate().map(|(index, score)| RerankedCandidate { index, score }).collect();
        results.sort_by(|a, b| compare_scored(a.score.as_ref(), b.score.as_ref(), a.index.cmp(&b.index)));
        timings.total = started.elapsed();
        Ok(RerankOutcome { partial: partial_reason.is_some(), partial_reason, reranked, results, timings })
    }

    /// Scores `texts` against `question` by `reply_by`: cached scores first, the rest through
    /// the inference queue, best-ranked first. What is not scored by then is `None`, and its
    /// queued work is cancelled. `admission` is held while tokenizing, then released: waiting
    /// for inference takes no retrieval slot.
    #[allow(clippy::too_many_arguments)]
    async fn score_anytime(
        &self,
        reranker: &Arc<Reranker>,
        question: String,
        texts: Vec<String>,
        mode: LongAnswers,
        reply_by: Instant,
        admission: Admission,
        timings: &mut Timings,
    ) -> Result<Scored> {
        let count = texts.len();
        if Instant::now() >= reply_by {
            return Ok(Scored { scores: vec![None; count], reason: Some(PartialReason::Deadline) });
        }
        let max_windows = match mode {
            LongAnswers::Truncate => 1,
            LongAnswers::MaxWindow => self.limits.max_windows_per_answer.max(1),
        };
        let cache = self.cache.clone();
        let owner = Arc::clone(reranker);
        let tokenize_started = Instant::now();
        let prepared = tokio::task::spawn_blocking(move || -> mathrank_rerank::Result<Prepared> {
            let _admission = admission;
            let fingerprint = owner.fingerprint();
            let keys: Vec<CacheKey> = match &cache {
                Some(_) => {
                    texts.iter().map(|text| cache_key(fingerprint, mode, max_windows, &question, text)).collect()
                }
                None => Vec::new(),
            };
            let scores = match &cache {
                Some(cache) => cache.get_many(&keys),
                None => vec![None; texts.len()],
            };
            let missing: Vec<usize> = (0..texts.len()).filter(|&i| scores[i].is_none()).collect();
            let encoder = owner.encoder();
            let misses = match mode {
                LongAnswers::Truncate => {
                    let answers: Vec<&str> = missing.iter().map(|&i| texts[i].as_str()).collect();
                    let pairs = encoder.encode_many(&question, &answers)?;
                    missing.into_iter().zip(pairs).map(|(i, pair)| (i, vec![pair])).collect()
                }
                LongAnswers::MaxWindow => missing
                    .into_iter()
                    .map(|i| Ok((i, encoder.encode_windows(&question, &texts[i], max_windows as usize)?)))
                    .collect::<mathrank_rerank::Result<_>>()?,
            };
            Ok(Prepared { keys, scores, misses })
        })
        .await
        .map_err(internal("the tokenizer task"))?
        .map_err(EngineError::Rerank)?;
        timings.tokenize = tokenize_started.elapsed();
        let Prepared { keys, mut scores, misses } = prepared;
        timings.cache_hits = (count - misses.len()) as u32;
        timings.cache_misses = misses.len() as u32;
        if misses.is_empty() {
            return Ok(Scored { scores, reason: None });
        }

        // Every missed candidate's first window, best-ranked first; then extra windows, again
        // best-ranked first, while the call's window budget lasts.
        let mut budget = (self.limits.max_windows_per_call as usize).saturating_sub(misses.len());
        let mut pairs: Vec<EncodedPair> = Vec::with_capacity(misses.len());
        let mut owners: Vec<usize> = Vec::with_capacity(misses.len());
        let mut extra: Vec<(usize, EncodedPair)> = Vec::new();
        let mut expected = vec![0usize; count];
        let mut available = vec![0usize; count];
        for (candidate, windows) in misses {
            available[candidate] = windows.len();
            let mut windows = windows.into_iter();
            if let Some(first) = windows.next() {
                pairs.push(first);
                owners.push(candidate);
                expected[candidate] = 1;
            }
            for window in windows.take(budget) {
                extra.push((candidate, window));
                expected[candidate] += 1;
                budget -= 1;
            }
        }
        for (candidate, window) in extra {
            pairs.push(window);
            owners.push(candidate);
        }
        timings.windows = pairs.len() as u32;

        let rerank_started = Instant::now();
        let mut handle = match reranker.submit_by(pairs, Some(reply_by)) {
            Ok(handle) => handle,
            Err(mathrank_rerank::Error::Overloaded { capacity }) => {
                tracing::debug!(capacity, "inference queue full: answering with first-stage order");
                return Ok(Scored { scores, reason: Some(PartialReason::Overload) });
            }
            Err(err) => return Err(map_rerank_error(err)),
        };
        let (window_scores, reason) = match tokio::time::timeout_at(reply_by.into(), handle.output()).await {
            Ok(Ok(output)) => {
                timings.queue = output.queued;
                timings.infer = output.infer;
                (output.scores.into_iter().map(Some).collect(), None)
            }
            Ok(Err(mathrank_rerank::Error::Expired { .. })) | Err(_) => {
                handle.cancel();
                let progress = handle.progress();
                timings.queue = progress.queued;
                timings.infer = progress.infer;
                (progress.scores, Some(PartialReason::Deadline))
            }
            Ok(Err(err)) => return Err(map_rerank_error(err)),
        };
        timings.rerank = rerank_started.elapsed();

        // A candidate's score is its best window's (by the value results are ranked by).
        let mut best: Vec<Option<Score>> = vec![None; count];
        let mut done = vec![0usize; count];
        for (candidate, score) in owners.iter().zip(window_scores) {
            let Some(score) = score else { continue };
            done[*candidate] += 1;
            let slot = &mut best[*candidate];
            if slot.is_none_or(|current| ranking_value(&score) > ranking_value(&current)) {
                *slot = Some(score);
            }
        }
        let mut fresh: Vec<(CacheKey, Score)> = Vec::new();
        for (candidate, score) in best.into_iter().enumerate() {
            let Some(score) = score else { continue };
            scores[candidate] = Some(score);
            // Only a finished score is remembered: a best-of-windows that missed some windows
            // (the deadline, or the call's window budget) is a lower bound.
            if done[candidate] == available[candidate]
                && expected[candidate] == available[candidate]
                && !keys.is_empty()
            {
                fresh.push((keys[candidate], score));
            }
        }
        if let Some(cache) = &self.cache {
            cache.insert_many(fresh);
        }
        Ok(Scored { scores, reason })
    }

    /// One answer by id.
    pub async fn get_answer(&self, answer_id: u64) -> Result<Hit> {
        if answer_id == 0 {
            return Err(invalid("answer_id", "must be set (a Stack Exchange post id)"));
        }
        let index = self.index.current();
        tokio::task::spawn_blocking(move || index.get_answer(answer_id))
            .await
            .map_err(internal("the lookup task"))?
            .map_err(EngineError::Index)?
            .ok_or_else(|| EngineError::NotFound(format!("no answer with id {answer_id} in the index")))
    }
}

fn map_rerank_error(err: mathrank_rerank::Error) -> EngineError {
    match err {
        mathrank_rerank::Error::Overloaded { .. } => EngineError::Overloaded(err.to_string()),
        mathrank_rerank::Error::Cancelled => EngineError::Cancelled,
        other => EngineError::Rerank(other),
    }
}
