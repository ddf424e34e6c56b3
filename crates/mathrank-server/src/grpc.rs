//! The thin gRPC adapter: proto <-> engine types, errors -> `Status` in one place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mathrank_index::{Filters, Hit, snippet};
use mathrank_proto::v1::{self, answer_search_server::AnswerSearch};
use tonic::{Code, Request, Response, Status};

use crate::EngineError;
use crate::engine::{Engine, SearchParams, Timings};
use crate::metrics::Metrics;
use crate::serve::ServerState;

/// Characters of `Hit.body` when the full body was not asked for.
const SNIPPET_CHARS: usize = 240;

/// The one mapping from domain errors to gRPC statuses.
pub fn status_of(err: &EngineError) -> Status {
    let code = match err {
        EngineError::InvalidArgument { .. } => Code::InvalidArgument,
        EngineError::NotFound(_) => Code::NotFound,
        EngineError::Overloaded(_) => Code::ResourceExhausted,
        EngineError::DeadlineExceeded(_) => Code::DeadlineExceeded,
        EngineError::NoModel => Code::FailedPrecondition,
        EngineError::Unavailable(_) => Code::Unavailable,
        EngineError::Cancelled => Code::Cancelled,
        EngineError::Internal(_) => Code::Internal,
    };
    Status::new(code, err.to_string())
}

/// Parses the `grpc-timeout` header (`100m`, `5S`, ...) of the gRPC HTTP/2 protocol.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

fn deadline_of<T>(request: &Request<T>, received: Instant) -> Option<Instant> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    parse_grpc_timeout(value).map(|timeout| received + timeout)
}

/// The `mathrank.v1.AnswerSearch` service over the shared server state.
#[derive(Clone)]
pub struct AnswerSearchService {
    state: Arc<ServerState>,
}

impl AnswerSearchService {
    pub fn new(state: Arc<ServerState>) -> Self {
        Self { state }
    }

    fn engine(&self) -> Result<Arc<Engine>, Status> {
        self.state.engine().ok_or_else(|| {
            Status::unavailable(
                "the index and model are still loading; retry shortly (the health service says SERVING when ready)",
            )
        })
    }

    fn metrics(&self) -> &Metrics {
        self.state.metrics()
    }
}

fn timings_proto(timings: &Timings) -> v1::StageTimings {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    v1::StageTimings {
        retrieve_ms: ms(timings.retrieve),
        tokenize_ms: ms(timings.tokenize),
        queue_ms: ms(timings.queue),
        infer_ms: ms(timings.infer),
        total_ms: ms(timings.total),
        rerank_ms: ms(timings.rerank),
    }
}

fn hit_proto(rank: usize, hit: &Hit, score: Option<mathrank_rerank::Score>, include_body: bool) -> v1::Hit {
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
        rerank_logit: score.map(|s| s.logits[1] - s.logits[0]),
        relevance: score.map(|s| s.relevance),
    }
}

/// The proto form of engine filters (for clients such as `mathrank search --addr`).
pub fn filters_to_proto(filters: &Filters) -> v1::Filters {
    v1::Filters {
        tags_any: filters.tags_any.clone(),
        tags_all: filters.tags_all.clone(),
        min_votes: filters.min_votes,
        accepted_only: filters.accepted_only,
        created_from: filters.created_from,
        created_to: filters.created_to,
    }
}

fn filters_of(filters: Option<v1::Filters>) -> Filters {
    let filters = filters.unwrap_or_default();
    Filters {
        tags_any: filters.tags_any,
        tags_all: filters.tags_all,
        min_votes: filters.min_votes,
        accepted_only: filters.accepted_only,
        created_from: filters.created_from,
        created_to: filters.created_to,
    }
}

impl AnswerSearchService {
    async fn observe<T>(
        &self,
        method: &'static str,
        work: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let outcome = work.await;
        let code = match &outcome {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        self.metrics().record_request(method, code, started.elapsed());
        if let Err(status) = &outcome
            && matches!(status.code(), Code::Internal)
        {
            tracing::error!(method, message = status.message(), "request failed");
        }
        outcome.map(Response::new)
    }
}

#[tonic::async_trait]
impl AnswerSearch for AnswerSearchService {
    async fn search(&self, request: Request<v1::SearchRequest>) -> Result<Response<v1::SearchResponse>, Status> {
        let deadline = deadline_of(&request, Instant::now());
        let request = request.into_inner();
        self.observe("Search", async {
            let engine = self.engine()?;
            let include_body = request.include_body;
            let params = SearchParams {
                query: request.query,
                top_k: request.top_k,
                rerank_depth: request.rerank_depth,
                rerank: request.rerank,
                filters: filters_of(request.filters),
                deadline,
            };
            let outcome = engine.search(params).await.map_err(|err| status_of(&err))?;
            self.metrics().record_stages(&outcome.timings);
            Ok(v1::SearchResponse {
                hits: outcome
                    .hits
                    .iter()
                    .enumerate()
                    .map(|(i, ranked)| hit_proto(i + 1, &ranked.hit, ranked.score, include_body))
                    .collect(),
                reranked: outcome.reranked as u32,
                partial: outcome.partial,
                timings: Some(timings_proto(&outcome.timings)),
            })
        })
        .await
    }

    async fn rerank(&self, request: Request<v1::RerankRequest>) -> Result<Response<v1::RerankResponse>, Status> {
        let deadline = deadline_of(&request, Instant::now());
        let request = request.into_inner();
        self.observe("Rerank", async {
            let engine = self.engine()?;
            let texts: Vec<String> = request.candidates.iter().map(|c| c.text.clone()).collect();
            let outcome = engine.rerank(&request.query, texts, deadline).await.map_err(|err| status_of(&err))?;
            self.metrics().record_stages(&outcome.timings);
            let top_n = if request.top_n == 0 { outcome.results.len() } else { request.top_n as usize };
            Ok(v1::RerankResponse {
                results: outcome
                    .results
                    .iter()
                    .take(top_n)
                    .map(|result| {
                        let candidate = &request.candidates[result.index];
                        v1::RerankResult {
                            id: candidate.id.clone(),
                            index: result.index as u32,
                            relevance: result.score.map(|s| s.relevance),
                            logit: result.score.map(|s| s.logits[1] - s.logits[0]),
                            text: if request.return_text { candidate.text.clone() } else { String::new() },
                        }
                    })
                    .collect(),
                reranked: outcome.reranked as u32,
                partial: outcome.partial,
                timings: Some(timings_proto(&outcome.timings)),
            })
        })
        .await
    }

    async fn get_answer(
        &self,
        request: Request<v1::GetAnswerRequest>,
    ) -> Result<Response<v1::GetAnswerResponse>, Status> {
        let answer_id = request.into_inner().answer_id;
        self.observe("GetAnswer", async {
            let engine = self.engine()?;
            if answer_id == 0 {
                return Err(status_of(&EngineError::InvalidArgument {
                    field: "answer_id",
                    message: "must be set".into(),
                }));
            }
            let hit = engine.get_answer(answer_id).await.map_err(|err| status_of(&err))?;
            let mut answer = hit_proto(1, &hit, None, true);
            answer.bm25_score = 0.0;
            answer.bm25_rank = 0;
            Ok(v1::GetAnswerResponse { answer: Some(answer) })
        })
        .await
    }

    async fn info(&self, _request: Request<v1::InfoRequest>) -> Result<Response<v1::InfoResponse>, Status> {
        self.observe("Info", async {
            let engine = self.engine()?;
            let meta = engine.index().meta();
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
                    }
                }
                None => v1::ModelInfo::default(),
            };
            Ok(v1::InfoResponse {
                model: Some(model),
                index: Some(v1::IndexInfo {
                    answers: engine.index().num_answers(),
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
                }),
                server_version: env!("CARGO_PKG_VERSION").into(),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("12x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }

    #[test]
    fn every_error_has_its_code() {
        let cases = [
            (EngineError::InvalidArgument { field: "top_k", message: "too big".into() }, Code::InvalidArgument),
            (EngineError::NotFound("x".into()), Code::NotFound),
            (EngineError::Overloaded("x".into()), Code::ResourceExhausted),
            (EngineError::DeadlineExceeded("x".into()), Code::DeadlineExceeded),
            (EngineError::NoModel, Code::FailedPrecondition),
            (EngineError::Unavailable("x".into()), Code::Unavailable),
            (EngineError::Cancelled, Code::Cancelled),
            (EngineError::Internal("x".into()), Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(status_of(&err).code(), code, "{err}");
        }
        assert!(
            status_of(&EngineError::InvalidArgument { field: "top_k", message: "x".into() })
                .message()
                .contains("top_k")
        );
    }
}
