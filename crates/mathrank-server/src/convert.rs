//! Conversions between the contract and the engine's types, written once for the gRPC
//! service and the HTTP/JSON API, which speak the same messages. They live here, not in
//! `mathrank-proto`, so that the contract stays a leaf crate that gRPC clients build without
//! the engine; free functions, since neither side's types are this crate's.

use std::time::Duration;

use mathrank_engine::{
    Engine, EngineError, Fusion, LongAnswers, PartialReason, RerankOutcome, RerankParams, SearchOutcome, SearchParams,
    Timings,
};
use mathrank_index::{Filters, Hit, snippet};
use mathrank_rerank::Score;

use mathrank_proto::v1;

/// Characters of `Hit.body` when the full body was not asked for.
pub const SNIPPET_CHARS: usize = 240;

/// The contract's filters as the index takes them.
pub fn filters(filters: v1::Filters) -> Filters {
    Filters {
        tags_any: filters.tags_any,
        tags_all: filters.tags_all,
        min_votes: filters.min_votes,
        accepted_only: filters.accepted_only,
        created_from: filters.created_from,
        created_to: filters.created_to,
    }
}

/// The index's filters as the contract writes them (the CLI's client sends them).
pub fn proto_filters(filters: &Filters) -> v1::Filters {
    v1::Filters {
        tags_any: filters.tags_any.clone(),
        tags_all: filters.tags_all.clone(),
        min_votes: filters.min_votes,
        accepted_only: filters.accepted_only,
        created_from: filters.created_from,
        created_to: filters.created_to,
    }
}

fn stage_timings(timings: &Timings) -> v1::StageTimings {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    v1::StageTimings {
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
pub fn search_params(request: v1::SearchRequest) -> Result<SearchParams, EngineError> {
    let fusion = Fusion::from_parts(&request.fusion, request.fusion_weight, request.rrf_k)
        .map_err(|(field, message)| EngineError::InvalidArgument { field, message })?;
    Ok(SearchParams {
        long_answers: parse_long_answers(&request.long_answers)?,
        fusion: Some(fusion),
        field_weights: None,
        query: request.query,
        query_is_text: false,
        top_k: request.top_k,
        rerank_depth: request.rerank_depth,
        rerank: request.rerank,
        filters: request.filters.map(filters).unwrap_or_default(),
        deadline: None,
    })
}

/// A rerank request without its deadline; the candidates' ids stay with the caller.
pub fn rerank_params(request: &v1::RerankRequest) -> Result<RerankParams, EngineError> {
    Ok(RerankParams {
        query: request.query.clone(),
        candidates: request.candidates.iter().map(|c| c.text.clone()).collect(),
        deadline: None,
        long_answers: parse_long_answers(&request.long_answers)?,
    })
}

/// The hit at 1-based `rank`, with its body whole or as a snippet.
pub fn hit(rank: usize, hit: &Hit, score: Option<&Score>, fused: Option<f32>, include_body: bool) -> v1::Hit {
    v1::Hit {
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

/// A search's answer.
pub fn search_response(outcome: &SearchOutcome, include_body: bool) -> v1::SearchResponse {
    v1::SearchResponse {
        hits: outcome
            .hits
            .iter()
            .enumerate()
            .map(|(i, ranked)| hit(i + 1, &ranked.hit, ranked.score.as_ref(), ranked.fused, include_body))
            .collect(),
        reranked: outcome.reranked as u32,
        partial: outcome.partial,
        timings: Some(stage_timings(&outcome.timings)),
        partial_reason: partial_reason_name(outcome.partial_reason),
    }
}

/// The best `top_n` (0: all) results of `outcome` for the request's `candidates`.
pub fn rerank_response(
    outcome: &RerankOutcome,
    candidates: &[v1::Candidate],
    top_n: u32,
    return_text: bool,
) -> v1::RerankResponse {
    let top_n = if top_n == 0 { outcome.results.len() } else { top_n as usize };
    v1::RerankResponse {
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
        timings: Some(stage_timings(&outcome.timings)),
        partial_reason: partial_reason_name(outcome.partial_reason),
    }
}

/// One answer by id: the whole body, no search scores.
pub fn answer_response(answer: &Hit) -> v1::GetAnswerResponse {
    let mut answer = hit(1, answer, None, None, true);
    answer.bm25_score = 0.0;
    answer.bm25_rank = 0;
    v1::GetAnswerResponse { answer: Some(answer) }
}

/// What the server runs: its model, index and limits.
pub fn info_response(engine: &Engine) -> v1::InfoResponse {
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
    v1::InfoResponse {
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
        let original = Filters {
            tags_any: vec!["algebra".into()],
            tags_all: vec!["proof".into()],
            min_votes: Some(2),
            accepted_only: true,
            created_from: Some(10),
            created_to: Some(20),
        };
        assert_eq!(filters(proto_filters(&original)), original);
    }
}
