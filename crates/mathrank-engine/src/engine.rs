//! The engine: validation, admission control, BM25 retrieval, anytime reranking.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mathrank_index::{AnswerIndex, Filters, Hit, SearchRequest};
use mathrank_rerank::{EncodedPair, Reranker, Score};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ranking::{compare_scored, normalize_candidate, normalize_question};
use crate::{EngineError, Result, invalid};

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
    /// Requests executed at once.
    pub max_concurrent: u32,
    /// Requests waiting for a slot; beyond them callers get `Overloaded` at once.
    pub max_queued: u32,
    /// Pairs per reranking chunk: the granularity of anytime reranking under a deadline.
    pub rerank_chunk: u32,
    pub max_message_bytes: u32,
}

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
            rerank_chunk: 8,
            max_message_bytes: 16 * 1024 * 1024,
        }
    }
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
    pub deadline: Option<Instant>,
}

/// Where the time of a request went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub retrieve: Duration,
    pub tokenize: Duration,
    pub queue: Duration,
    pub infer: Duration,
    /// Wall time spent waiting for the reranker (first submit to last result).
    pub rerank: Duration,
    pub total: Duration,
}

/// A hit with its cross-encoder score when it was reranked.
#[derive(Debug, Clone)]
pub struct RankedHit {
    pub hit: Hit,
    pub score: Option<Score>,
}

#[derive(Debug, Clone)]
pub struct SearchOutcome {
    pub hits: Vec<RankedHit>,
    pub reranked: usize,
    pub partial: bool,
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
    /// Scored candidates by decreasing relevance (ties: input order), then unscored ones.
    pub results: Vec<RerankedCandidate>,
    pub reranked: usize,
    pub partial: bool,
    pub timings: Timings,
}

/// The engine: an index, optionally a reranker, and admission control.
pub struct Engine {
    index: Arc<AnswerIndex>,
    reranker: Option<Arc<Reranker>>,
    limits: Limits,
    slots: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("index", &self.index).field("reranker", &self.reranker).finish()
    }
}

/// Holds a request's place until it finishes.
#[derive(Debug)]
pub struct Admission {
    _slot: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

/// How much of the remaining time is kept for sending the response.
fn effective_deadline(deadline: Option<Instant>) -> Option<Instant> {
    let deadline = deadline?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    let margin = (remaining / 8).clamp(Duration::from_millis(5), Duration::from_millis(200));
    Some(deadline.checked_sub(margin).unwrap_or(deadline))
}

impl Engine {
    pub fn new(index: Arc<AnswerIndex>, reranker: Option<Arc<Reranker>>, limits: Limits) -> Self {
        let slots = Arc::new(Semaphore::new((limits.max_concurrent + limits.max_queued).max(1) as usize));
        let running = Arc::new(Semaphore::new(limits.max_concurrent.max(1) as usize));
        Self { index, reranker, limits, slots, running }
    }

    pub fn index(&self) -> &AnswerIndex {
        &self.index
    }

    pub fn reranker(&self) -> Option<&Reranker> {
        self.reranker.as_deref()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Requests waiting for an execution slot.
    pub fn queued_requests(&self) -> u64 {
        let total = (self.limits.max_concurrent + self.limits.max_queued) as usize;
        let in_system = total.saturating_sub(self.slots.available_permits());
        in_system.saturating_sub(self.limits.max_concurrent as usize) as u64
    }

    /// Takes a place: at once `Overloaded` when the queue is full, else waits for a slot (not
    /// past the deadline).
    pub async fn admit(&self, deadline: Option<Instant>) -> Result<Admission> {
        let slot = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            EngineError::Overloaded(format!(
                "{} requests running and {} waiting; retry with backoff",
                self.limits.max_concurrent, self.limits.max_queued
            ))
        })?;
        let acquire = Arc::clone(&self.running).acquire_owned();
        let running = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), acquire).await.map_err(|_| {
                EngineError::DeadlineExceeded("the deadline passed while waiting for a free slot".into())
            })?,
            None => acquire.await,
        }
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
        let deadline = effective_deadline(params.deadline);
        let _admission = self.admit(deadline).await?;
        let question =
            if params.query_is_text { params.query.trim().to_owned() } else { normalize_question(&params.query) };
        let retrieve_count = if rerank { top_k.max(depth) } else { top_k };
        let mut request = SearchRequest::new(question.clone(), retrieve_count);
        request.filters = params.filters.clone();
        let index = Arc::clone(&self.index);
        let retrieve_started = Instant::now();
        let hits = tokio::task::spawn_blocking(move || index.search(&request))
            .await
            .map_err(|err| EngineError::Internal(format!("search task failed: {err}")))?
            .map_err(|err| match err {
                mathrank_index::Error::InvalidFilter(message) => invalid("filters", message),
                other => EngineError::Internal(other.to_string()),
            })?;
        let mut timings = Timings { retrieve: retrieve_started.elapsed(), ..Timings::default() };
        if let Some(deadline) = deadline
            && Instant::now() >= deadline
        {
            return Err(EngineError::DeadlineExceeded("the deadline passed during retrieval".into()));
        }
        let mut ranked: Vec<RankedHit> = hits.into_iter().map(|hit| RankedHit { hit, score: None }).collect();
        let (mut reranked, mut partial) = (0, false);
        if rerank && !ranked.is_empty() {
            let reranker = self.reranker.as_ref().ok_or(EngineError::NoModel)?;
            let count = depth.min(ranked.len());
            let texts: Vec<String> = ranked[..count].iter().map(|r| r.hit.body.clone()).collect();
            let scores = self.score_anytime(reranker, question, texts, deadline, &mut timings).await?;
            for (slot, score) in ranked.iter_mut().zip(&scores) {
                slot.score = *score;
            }
            reranked = scores.iter().filter(|s| s.is_some()).count();
            partial = reranked < count;
            ranked.sort_by(|a, b| {
                compare_scored(a.score.as_ref(), b.score.as_ref(), a.hit.bm25_rank.cmp(&b.hit.bm25_rank))
            });
        }
        ranked.truncate(top_k);
        timings.total = started.elapsed();
        Ok(SearchOutcome { hits: ranked, reranked, partial, timings })
    }

    /// Scores candidates from another engine.
    pub async fn rerank(
        &self,
        query: &str,
        candidates: Vec<String>,
        deadline: Option<Instant>,
    ) -> Result<RerankOutcome> {
        let started = Instant::now();
        self.check_query(query)?;
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
        let deadline = effective_deadline(deadline);
        let _admission = self.admit(deadline).await?;
        let question = normalize_question(query);
        // HTML parsing of up to a whole message's worth of candidates is CPU work: off the
        // async workers. Each candidate is cut first to what the tokenizer could use.
        // HTML markup takes bytes that text does not: a margin of 4x.
        let max_bytes = reranker.encoder().max_input_bytes().saturating_mul(4);
        let texts = tokio::task::spawn_blocking(move || {
            candidates.iter().map(|text| normalize_candidate(text, max_bytes)).collect::<Vec<_>>()
        })
        .await
        .map_err(|err| EngineError::Internal(format!("candidate conversion failed: {err}")))?;
        let mut timings = Timings::default();
        let scores = self.score_anytime(reranker, question, texts, deadline, &mut timings).await?;
        let reranked = scores.iter().filter(|s| s.is_some()).count();
        let mut results: Vec<RerankedCandidate> =
            scores.into_iter().enumerate().map(|(index, score)| RerankedCandidate { index, score }).collect();
        results.sort_by(|a, b| compare_scored(a.score.as_ref(), b.score.as_ref(), a.index.cmp(&b.index)));
        timings.total = started.elapsed();
        Ok(RerankOutcome { partial: reranked < results.len(), reranked, results, timings })
    }

    /// Scores `texts` against `question` in chunks, in order, until done or the deadline.
    /// Chunks not scored by the deadline are `None`; their queued work is cancelled.
    async fn score_anytime(
        &self,
        reranker: &Arc<Reranker>,
        question: String,
        texts: Vec<String>,
        deadline: Option<Instant>,
        timings: &mut Timings,
    ) -> Result<Vec<Option<Score>>> {
        let count = texts.len();
        let tokenize_started = Instant::now();
        let encoder_owner = Arc::clone(reranker);
        let encoded = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            encoder_owner.encoder().encode_many(&question, &refs)
        })
        .await
        .map_err(|err| EngineError::Internal(format!("tokenizer task failed: {err}")))?
        .map_err(|err| EngineError::Internal(err.to_string()))?;
        timings.tokenize = tokenize_started.elapsed();

        let chunk = self.limits.rerank_chunk.max(1) as usize;
        let mut chunks: std::collections::VecDeque<(usize, Vec<EncodedPair>)> = std::collections::VecDeque::new();
        let mut encoded = encoded;
        let mut offset = 0;
        while !encoded.is_empty() {
            let rest = encoded.split_off(chunk.min(encoded.len()));
            chunks.push_back((offset, std::mem::replace(&mut encoded, rest)));
            offset += chunk;
        }
        let mut scores: Vec<Option<Score>> = vec![None; count];
        let rerank_started = Instant::now();
        // Two chunks in flight keep the inference thread busy while results come back in
        // order, so a deadline cuts after the best-ranked candidates.
        let mut in_flight: std::collections::VecDeque<(usize, mathrank_rerank::JobHandle)> =
            std::collections::VecDeque::new();
        loop {
            while in_flight.len() < 2 {
                let Some((start, pairs)) = chunks.pop_front() else { break };
                let handle = reranker.submit(pairs).map_err(map_rerank_error)?;
                in_flight.push_back((start, handle));
            }
            let Some((start, mut handle)) = in_flight.pop_front() else { break };
            let output = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline.into(), handle.output()).await {
                    Ok(output) => output,
                    Err(_) => break,
                },
                None => handle.output().await,
            }
            .map_err(map_rerank_error)?;
            timings.queue += output.queued;
            timings.infer += output.infer;
            for (i, score) in output.scores.into_iter().enumerate() {
                scores[start + i] = Some(score);
            }
        }
        timings.rerank = rerank_started.elapsed();
        Ok(scores)
    }

    /// One answer by id.
    pub async fn get_answer(&self, answer_id: u64) -> Result<Hit> {
        if answer_id == 0 {
            return Err(invalid("answer_id", "must be set (a Stack Exchange post id)"));
        }
        let index = Arc::clone(&self.index);
        tokio::task::spawn_blocking(move || index.get_answer(answer_id))
            .await
            .map_err(|err| EngineError::Internal(format!("lookup task failed: {err}")))?
            .map_err(|err| EngineError::Internal(err.to_string()))?
            .ok_or_else(|| EngineError::NotFound(format!("no answer with id {answer_id} in the index")))
    }
}

fn map_rerank_error(err: mathrank_rerank::Error) -> EngineError {
    match err {
        mathrank_rerank::Error::Overloaded { .. } => EngineError::Overloaded(err.to_string()),
        mathrank_rerank::Error::Cancelled => EngineError::Cancelled,
        other => EngineError::Internal(other.to_string()),
    }
}
