//! The thin gRPC adapter: requests and responses through the contract's conversions, errors
//! to `Status` in one place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mathrank_engine::{Engine, EngineError, RerankParams, SearchParams};
use mathrank_proto::v1::{self, answer_search_server::AnswerSearch};
use tonic::{Code, Request, Response, Status};

use crate::convert;
use crate::state::ServerState;

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
        EngineError::Index(_) | EngineError::Rerank(_) | EngineError::Task(..) => Code::Internal,
    };
    if matches!(code, Code::ResourceExhausted | Code::Unavailable) {
        // gRPC's retry-policy hint (gRFC A6): clients with a retry policy wait this long
        // before trying again (overload, or a post store that is down).
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(RETRY_PUSHBACK, tonic::metadata::MetadataValue::from(crate::error::RETRY_AFTER_SECS * 1000));
        return Status::with_metadata(code, err.message(), metadata);
    }
    Status::new(code, err.message())
}

/// The metadata key of the retry hint on `RESOURCE_EXHAUSTED`, in milliseconds.
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";

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
        self.state.ready_engine().map_err(|err| status_of(&err))
    }

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
        self.state.metrics().record_request(method, &format!("{code:?}"), started.elapsed());
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
            let params = SearchParams { deadline, ..convert::search_params(request).map_err(|err| status_of(&err))? };
            let outcome = engine.search(params).await.map_err(|err| status_of(&err))?;
            self.state.metrics().record_outcome(&outcome.timings, outcome.partial_reason);
            Ok(convert::search_response(&outcome, include_body))
        })
        .await
    }

    async fn rerank(&self, request: Request<v1::RerankRequest>) -> Result<Response<v1::RerankResponse>, Status> {
        let deadline = deadline_of(&request, Instant::now());
        let request = request.into_inner();
        self.observe("Rerank", async {
            let engine = self.engine()?;
            let params = RerankParams { deadline, ..convert::rerank_params(&request).map_err(|err| status_of(&err))? };
            let outcome = engine.rerank(params).await.map_err(|err| status_of(&err))?;
            self.state.metrics().record_outcome(&outcome.timings, outcome.partial_reason);
            Ok(convert::rerank_response(&outcome, &request.candidates, request.top_n, request.return_text))
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
            let hit = engine.get_answer(answer_id).await.map_err(|err| status_of(&err))?;
            Ok(convert::answer_response(&hit))
        })
        .await
    }

    async fn info(&self, _request: Request<v1::InfoRequest>) -> Result<Response<v1::InfoResponse>, Status> {
        self.observe("Info", async {
            let engine = self.engine()?;
            Ok(convert::info_response(&engine))
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
            (EngineError::Index(mathrank_index::Error::InvalidFilter("x".into())), Code::Internal),
            (EngineError::Rerank(mathrank_rerank::Error::ShutDown), Code::Internal),
        ];
        for (err, code) in cases {
            let status = status_of(&err);
            assert_eq!(status.code(), code, "{err}");
            let pushback = status.metadata().get(RETRY_PUSHBACK).map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(pushback.is_some(), matches!(code, Code::ResourceExhausted | Code::Unavailable), "{err}");
        }
        assert_eq!(status_of(&EngineError::Overloaded("x".into())).metadata().get(RETRY_PUSHBACK).unwrap(), "1000");
        assert!(
            status_of(&EngineError::InvalidArgument { field: "top_k", message: "x".into() })
                .message()
                .contains("top_k")
        );
    }
}
