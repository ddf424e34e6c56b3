//! Conversions between the contract and the engine's types, written once for the gRPC
//! service, the HTTP/JSON API (which speaks the same messages) and the CLI's client.

use std::time::Duration;

use mathrank_engine::{
    Engine, EngineError, Fusion, LongAnswers, PartialReason, RerankOutcome, RerankParams, SearchOutcome, SearchParams,
    Timings,
};
use mathrank_index::{Filters, Hit, snippet};
use mathrank_rerank::Score;

use crate::v1;

/// Characters of `Hit.body` when the full body was not asked for.
pub const SNIPPET_CHARS: usize = 240;

impl From<v1::Filters> for Filters {
    fn from(filters: v1::Filters) -> Self {
        Self {
            tags_any: filters.tags_any,
            tags_all: filters.tags_all,
            min_votes: filters.min_votes,
            accepted_only: filters.accepted_only,
            created_from: filters.created_from,
            created_to: filters.created_to,
        }
    }
}

impl From<&Filters> for v1::Filters {
    fn from(filters: &Filters) -> Self {
        Self {
            tags_any: filters.tags_any.clone(),
            tags_all: filters.tags_all.clone(),
            min_votes: filters.min_votes,
            accepted_only: filters.accepted_only,
            created_from: filters.created_from,
            created_to: filters.created_to,
        }
    }
}

impl From<&Timings> for v1::StageTimings {
    fn from(timings: &Timings) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Self {
            retrieve_ms: ms(timings.retrieve),
            tokenize_ms: ms(timings.tokenize),
            queue_ms: ms(timings.queue),
            infer_ms: ms(timings.infer),
            total_ms: ms(timings.total),
            rerank_ms: ms(timings.rerank),
            cache_hits: timings.cache_hits,
            cache_misses: timings.cache_misses,
            windows: timings.windows,
        }
    }
}

/// The `long_answers` field: empty for the server's default.
pub fn parse_long_answers(value: &str) -> Result<Option<LongAnswers>, EngineError> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|message| EngineError::InvalidArgument { field: "long_answers", message })
}

/// `partial_reason` as the contract spells it ("" when complete).
pub fn partial_reason_name(reason: Option<PartialReason>) -> String {
    reason.map_or_else(String::new, |reason| reason.name().to_owned())
}

/// A search request without its deadline, which each transport sets from its own metadata.
impl TryFrom<v1::SearchRequest> for SearchParams {
    type Error = EngineError;

    fn try_from(request: v1::SearchRequest) -> Result<Self, EngineError> {
        let fusion = Fusion::from_parts(&request.fusion, request.fusion_weight, request.rrf_k)
            .map_err(|(field, message)| EngineError::InvalidArgument { field, message })?;
        Ok(Self {
            long_answers: parse_long_answers(&request.long_answers)?,
            fusion: Some(fusion),
            field_weights: None,
            query: request.query,
            query_is_text: false,
            top_k: request.top_k,
            rerank_depth: request.rerank_depth,
            rerank: request.rerank,
            filters: request.filters.map(Filters::from).unwrap_or_default(),
            deadline: None,
        })
    }
}

/// A rerank request without its deadline; the candidates' ids stay with the caller.
impl TryFrom<&v1::RerankRequest> for RerankParams {
    type Error = EngineError;

    fn try_from(request: &v1::RerankRequest) -> Result<Self, EngineError> {
        Ok(Self {
            query: request.query.clone(),
            candidates: request.candidates.iter().map(|c| c.text.clone()).collect(),
            deadline: None,
            long_answers: parse_long_answers(&request.long_answers)?,
        })
    }
}

impl v1::Hit {
    /// The hit at 1-based `rank`, with its body whole or as a snippet.
    pub fn new(rank: usize, hit: &Hit, score: Option<&Score>, fused: Option<f32>, include_body: bool) -> Self {
        Self {
            rank: rank as u32,
            answer_id: hit.answer_id,
            question_id: hit.question_id,
            title: hit.title.clone(),
            tags: hit.tags.clone(),
            votes: hit.votes,
            accepted: hit.accepted,
            created: hit.created,
            body: if include_body { hit.body.clone() } else { snippet(&hit.body, SNIPPET_CHARS) },
            bm25_score: hit.bm25_score,
            bm25_rank: hit.bm25_rank as u32,
            rerank_logit: score.map(Score::margin),
            relevance: score.map(|s| s.relevance),
            relevant_logit: score.map(|s| s.logits[1]),
            fused_score: fused,
        }
    }
}

impl v1::SearchResponse {
    pub fn new(outcome: &SearchOutcome, include_body: bool) -> Self {
        Self {
            hits: outcome
                .hits
                .iter()
                .enumerate()
                .map(|(i, ranked)| v1::Hit::new(i + 1, &ranked.hit, ranked.score.as_ref(), ranked.fused, include_body))
                .collect(),
            reranked: outcome.reranked as u32,
            partial: outcome.partial,
            timings: Some((&outcome.timings).into()),
            partial_reason: partial_reason_name(outcome.partial_reason),
        }
    }
}

impl v1::RerankResponse {
    /// The best `top_n` (0: all) results of `outcome` for the request's `candidates`.
    pub fn new(outcome: &RerankOutcome, candidates: &[v1::Candidate], top_n: u32, return_text: bool) -> Self {
        let top_n = if top_n == 0 { outcome.results.len() } else { top_n as usize };
        Self {
            results: outcome
                .results
                .iter()
                .take(top_n)
                .map(|result| {
                    let candidate = &candidates[result.index];
                    v1::RerankResult {
                        id: candidate.id.clone(),
                        index: result.index as u32,
                        relevance: result.score.map(|s| s.relevance),
                        logit: result.score.as_ref().map(Score::margin),
                        text: if return_text { candidate.text.clone() } else { String::new() },
                        relevant_logit: result.score.map(|s| s.logits[1]),
                    }
                })
                .collect(),
            reranked: outcome.reranked as u32,
            partial: outcome.partial,
            timings: Some((&outcome.timings).into()),
            partial_reason: partial_reason_name(outcome.partial_reason),
        }
    }
}

impl From<&Hit> for v1::GetAnswerResponse {
    fn from(hit: &Hit) -> Self {
        let mut answer = v1::Hit::new(1, hit, None, None, true);
        answer.bm25_score = 0.0;
        answer.bm25_rank = 0;
        Self { answer: Some(answer) }
    }
}

impl From<&Engine> for v1::InfoResponse {
    fn from(engine: &Engine) -> Self {
        let index = engine.index();
        let meta = index.meta();
        let limits = engine.limits();
        let model = match engine.reranker() {
            Some(reranker) => {
                let info = reranker.info();
                v1::ModelInfo {
                    loaded: true,
                    name: info.name.clone(),
                    path: info.path.display().to_string(),
                    max_length: info.max_length as u32,
                    provider: info.provider.name().into(),
                    threads: info.intra_threads as u32,
                    batch_tokens: info.batch_tokens as u32,
                    max_batch: info.max_batch as u32,
                }
            }
            None => v1::ModelInfo::default(),
        };
        Self {
            model: Some(model),
            index: Some(v1::IndexInfo {
                answers: index.num_answers(),
                questions: meta.questions,
                source: meta.source.clone(),
                built_at: meta.built_at,
                format_version: meta.format_version,
                schema_version: meta.schema_version,
                analyzer_version: meta.analyzer_version,
                built_by: meta.mathrank_version.clone(),
                skipped_rows: meta.skipped_total(),
            }),
            limits: Some(v1::Limits {
                max_top_k: limits.max_top_k,
                max_rerank_depth: limits.max_rerank_depth,
                max_candidates: limits.max_candidates,
                max_query_bytes: limits.max_query_bytes,
                max_concurrent_requests: limits.max_concurrent,
                max_queued_requests: limits.max_queued,
                max_message_bytes: limits.max_message_bytes,
                default_timeout_ms: limits.default_timeout_ms,
                max_timeout_ms: limits.max_timeout_ms,
                long_answers: limits.long_answers.name().into(),
                max_windows_per_answer: limits.max_windows_per_answer,
                max_windows_per_call: limits.max_windows_per_call,
                score_cache_mb: if engine.cache_stats().is_some() { limits.score_cache_mb } else { 0 },
            }),
            server_version: env!("CARGO_PKG_VERSION").into(),
            searchable_seq: engine.searchable_seq(),
            live: live_info(engine),
        }
    }
}

/// The live index's state; `None` without a post store.
fn live_info(engine: &Engine) -> Option<v1::LiveInfo> {
    let status = engine.indexer_status().unwrap_or_default();
    // Not `store.last_seq()`: this runs on an async worker, and a PostgreSQL read blocks.
    let replica = engine.replica_status()?;
    Some(v1::LiveInfo {
        store_seq: replica.store_seq,
        indexer: status.role.into(),
        committed_seq: status.committed_seq,
        commits: status.commits,
        rebuilding: status.rebuilding,
        rebuilds: status.rebuilds,
        last_error: status.last_error.unwrap_or_default(),
        caught_up: replica.ready,
        lag_seconds: replica.lag_seconds,
        store_error: replica.store_error.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip() {
        let filters = Filters {
            tags_any: vec!["algebra".into()],
            tags_all: vec!["proof".into()],
            min_votes: Some(2),
            accepted_only: true,
            created_from: Some(10),
            created_to: Some(20),
        };
        let back: Filters = v1::Filters::from(&filters).into();
        assert_eq!(back, filters);
    }

    #[test]
    fn json_uses_proto3_names_and_accepts_proto_names() {
        let camel: v1::SearchRequest =
            serde_json::from_str(r#"{"query":"q","topK":3,"filters":{"tagsAny":["a"],"minVotes":1}}"#).unwrap();
        let snake: v1::SearchRequest =
            serde_json::from_str(r#"{"query":"q","top_k":3,"filters":{"tags_any":["a"],"min_votes":1}}"#).unwrap();
        assert_eq!(camel, snake);
        assert_eq!(camel.top_k, 3);
        let err = serde_json::from_str::<v1::SearchRequest>(r#"{"query":"q","topk":3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `topk`"), "{err}");
        let json = serde_json::to_value(v1::Hit { answer_id: 7, relevance: None, ..Default::default() }).unwrap();
        assert_eq!(json["answerId"], 7);
        assert!(json.get("relevance").is_none());
    }
}
