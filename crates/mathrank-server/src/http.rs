//! The HTTP/JSON adapter: the rerank dialects that search engines call (Cohere `/v1|v2/rerank`,
//! TEI and Weaviate `/rerank`), the contract's own methods as proto3 JSON (`/v1/search`,
//! `/v1/answers/{id}`, `/v1/info`), probes and metrics. Errors are JSON
//! `{"error": {"code", "message", "field"?}}`, mapped from the engine's errors in
//! [`http_status_of`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mathrank_engine::{
    Engine, EngineError, LongAnswers, PartialReason, RerankOutcome, RerankParams, SearchParams, Timings,
};
use mathrank_proto::v1;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{BearerToken, UNAUTHENTICATED};
use crate::state::ServerState;

/// The request header that carries an HTTP call's deadline, in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-timeout-ms";

/// The one mapping from domain errors to HTTP statuses (Google's gRPC-to-HTTP mapping).
pub fn http_status_of(err: &EngineError) -> StatusCode {
    match err {
        EngineError::InvalidArgument { .. } | EngineError::NoModel => StatusCode::BAD_REQUEST,
        EngineError::NotFound(_) => StatusCode::NOT_FOUND,
        EngineError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
        EngineError::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
        EngineError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        // 499 Client Closed Request: nobody reads it, but logs and metrics should say so.
        EngineError::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        EngineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn code_name(err: &EngineError) -> &'static str {
    match err {
        EngineError::InvalidArgument { .. } => "INVALID_ARGUMENT",
        EngineError::NotFound(_) => "NOT_FOUND",
        EngineError::Overloaded(_) => "RESOURCE_EXHAUSTED",
        EngineError::DeadlineExceeded(_) => "DEADLINE_EXCEEDED",
        EngineError::NoModel => "FAILED_PRECONDITION",
        EngineError::Unavailable(_) => "UNAVAILABLE",
        EngineError::Cancelled => "CANCELLED",
        EngineError::Internal(_) => "INTERNAL",
    }
}

/// An error as the HTTP API sends it.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_ARGUMENT",
            message: format!("invalid {field}: {}", message.into()),
            field: Some(field),
        }
    }

    /// The engine names its fields as the gRPC contract does; a dialect may call them otherwise.
    fn renamed(mut self, from: &str, to: &str) -> Self {
        if self.field.as_deref() == Some(from) {
            self.message = self.message.replacen(from, to, 1);
            self.field = Some(to.to_owned());
        }
        self
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        Self {
            status: http_status_of(&err),
            code: code_name(&err),
            message: err.to_string(),
            field: err.field().map(str::to_owned),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(field) = &self.field {
            error["field"] = field.as_str().into();
        }
        let mut response = (self.status, axum::Json(serde_json::json!({ "error": error }))).into_response();
        // Overload and an unavailable store (or a server still loading) are worth retrying.
        if self.status == StatusCode::TOO_MANY_REQUESTS || self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(crate::RETRY_AFTER_SECS));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The response header that says why an answer is partial (`deadline`, `overload`).
pub const PARTIAL_HEADER: &str = "x-mathrank-partial";

/// A JSON answer with the call's stage timings in the standard `Server-Timing` header
/// (milliseconds), the HTTP counterpart of gRPC's `StageTimings`; its cache hits and windows in
/// `X-Mathrank-Cache` and `X-Mathrank-Windows`; and, when partial, why and how many were
/// scored in `X-Mathrank-Partial` and `X-Mathrank-Reranked`.
fn timed_json(body: impl serde::Serialize, timings: &Timings, partial: Option<(PartialReason, usize)>) -> Response {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let value = format!(
        "retrieve;dur={:.3}, tokenize;dur={:.3}, queue;dur={:.3}, infer;dur={:.3}, rerank;dur={:.3}, total;dur={:.3}",
        ms(timings.retrieve),
        ms(timings.tokenize),
        ms(timings.queue),
        ms(timings.infer),
        ms(timings.rerank),
        ms(timings.total)
    );
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    let mut add = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    add("server-timing", value);
    add("x-mathrank-cache", format!("hits={}, misses={}", timings.cache_hits, timings.cache_misses));
    add("x-mathrank-windows", timings.windows.to_string());
    if let Some((reason, reranked)) = partial {
        add(PARTIAL_HEADER, reason.name().to_owned());
        add("x-mathrank-reranked", reranked.to_string());
    }
    response
}

/// The `long_answers` body field of every dialect (a mathrank extension).
fn long_answers(value: Option<&str>) -> ApiResult<Option<LongAnswers>> {
    Ok(mathrank_proto::parse_long_answers(value.unwrap_or(""))?)
}

/// Parses a JSON body, naming the field at fault (`documents[2]`, `top_n`) when it fails.
fn parse_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let body = body.map_err(|rejection| ApiError {
        status: rejection.status(),
        code: if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "PAYLOAD_TOO_LARGE"
        } else {
            "INVALID_ARGUMENT"
        },
        message: format!("request body: {}", rejection.body_text()),
        field: None,
    })?;
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(field_error)
}

/// A deserialisation error as an `INVALID_ARGUMENT` naming the field at fault.
fn field_error<E: std::fmt::Display>(err: serde_path_to_error::Error<E>) -> ApiError {
    let path = err.path().to_string();
    let message = err.into_inner().to_string();
    // A missing field is reported at its parent: name the field itself.
    let named = message.split('`').nth(1);
    let field = if path == "." {
        named.unwrap_or("body").to_owned()
    } else if message.starts_with("missing field") {
        format!("{path}.{}", named.unwrap_or(""))
    } else {
        path
    };
    ApiError::invalid(field, message)
}

/// The deadline of an HTTP call: `X-Timeout-Ms`, counted from when the request arrived.
pub(crate) fn deadline_of(headers: &HeaderMap, received: Instant) -> ApiResult<Option<Instant>> {
    let Some(value) = headers.get(TIMEOUT_HEADER) else { return Ok(None) };
    let millis: u64 = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&ms| ms > 0)
        .ok_or_else(|| ApiError::invalid(TIMEOUT_HEADER, "must be a positive whole number of milliseconds"))?;
    Ok(Some(received + Duration::from_millis(millis)))
}

#[derive(Clone)]
struct Http {
    state: Arc<ServerState>,
    token: Option<BearerToken>,
}

impl Http {
    fn engine(&self) -> ApiResult<Arc<Engine>> {
        Ok(self.state.ready_engine()?)
    }
}

/// The HTTP routes, ready to merge beside the gRPC services.
pub(crate) fn router(state: Arc<ServerState>, token: Option<BearerToken>, max_body_bytes: usize) -> Router {
    let http = Http { state: Arc::clone(&state), token };
    let api = Router::new()
        .route("/v1/rerank", post(cohere_v1))
        .route("/v2/rerank", post(cohere_v2))
        .route("/rerank", post(rerank_tei_or_weaviate))
        .route("/v1/search", post(search))
        .route("/v1/answers/{id}", get(get_answer))
        .route("/v1/info", get(info))
        .route_layer(axum::middleware::from_fn_with_state(http.clone(), require_token));
    let open = Router::new()
        .route("/health", get(health))
        .route("/.well-known/ready", get(ready))
        .route("/.well-known/live", get(live))
        .route("/metrics", get(metrics_text));
    api.with_state(http.clone())
        .merge(open.with_state(state))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(http, observe))
}

async fn require_token(State(http): State<Http>, request: Request, next: Next) -> Response {
    if let Some(token) = &http.token {
        let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if !token.accepts(header) {
            let error = ApiError {
                status: StatusCode::UNAUTHORIZED,
                code: "UNAUTHENTICATED",
                message: UNAUTHENTICATED.into(),
                field: None,
            };
            let mut response = error.into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// Counts every HTTP request by route pattern and status; API routes also count as requests
/// of their method, beside the gRPC ones. (This layer wraps the HTTP routes only: the gRPC
/// services are merged in after it and count themselves.)
async fn observe(State(http): State<Http>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".into(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status();
    http.state.metrics().record_http(&route, status.as_u16());
    if route.starts_with("/v") || route == "/rerank" {
        let code = status.canonical_reason().unwrap_or("Unknown");
        http.state.metrics().record_request(&format!("HTTP {route}"), code, started.elapsed());
    }
    response
}

// ---- Cohere `/v1/rerank` and `/v2/rerank` (also Jina's shape).

#[derive(Debug, Deserialize)]
struct CohereRequest {
    #[serde(default)]
    #[allow(dead_code)]
    model: Option<String>,
    query: String,
    documents: Vec<CohereDocument>,
    #[serde(default)]
    top_n: Option<u32>,
    #[serde(default)]
    return_documents: Option<bool>,
    #[serde(default)]
    max_tokens_per_doc: Option<u32>,
    /// mathrank's extension: "truncate" or "max_window".
    #[serde(default)]
    long_answers: Option<String>,
}

/// A document as a string or as `{"text": ...}` (other keys are ignored).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CohereDocument {
    Text(String),
    Object { text: String },
}

impl CohereDocument {
    fn into_text(self) -> String {
        match self {
            Self::Text(text) | Self::Object { text } => text,
        }
    }
}

async fn cohere_v1(
    State(http): State<Http>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    // v1's `return_documents` defaults to true, v2's to false (Cohere's API reference).
    cohere(http, headers, body, 1, true).await
}

async fn cohere_v2(
    State(http): State<Http>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    cohere(http, headers, body, 2, false).await
}

static RESPONSE_IDS: AtomicU64 = AtomicU64::new(0);

/// A response id unique within this process's life (Cohere clients only echo it).
fn response_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    format!("{nanos:016x}-{:08x}", RESPONSE_IDS.fetch_add(1, Ordering::Relaxed))
}

async fn cohere(
    http: Http,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    version: u8,
    default_return_documents: bool,
) -> ApiResult<Response> {
    let deadline = deadline_of(&headers, Instant::now())?;
    let request: CohereRequest = parse_json(body)?;
    if request.top_n == Some(0) {
        return Err(ApiError::invalid("top_n", "must be at least 1"));
    }
    if request.max_tokens_per_doc == Some(0) {
        return Err(ApiError::invalid("max_tokens_per_doc", "must be at least 1"));
    }
    let texts: Vec<String> = request.documents.into_iter().map(CohereDocument::into_text).collect();
    let mode = long_answers(request.long_answers.as_deref())?;
    let outcome = rerank_all(&http, &request.query, texts.clone(), deadline, mode, "documents").await?;
    let return_documents = request.return_documents.unwrap_or(default_return_documents);
    let top_n = request.top_n.map_or(usize::MAX, |n| n as usize);
    let results: Vec<serde_json::Value> = reported_scores(&outcome, Reported::Relevance)
        .into_iter()
        .take(top_n)
        .map(|(index, score)| {
            let mut item = serde_json::json!({ "index": index, "relevance_score": score });
            if return_documents {
                item["document"] = serde_json::json!({ "text": texts[index] });
            }
            item
        })
        .collect();
    let mut meta = serde_json::json!({
        "api_version": { "version": version.to_string() },
        "billed_units": { "search_units": 1 },
    });
    if let Some(reason) = outcome.partial_reason {
        meta["warnings"] = serde_json::json!([partial_warning(&outcome, reason, "documents")]);
    }
    let body = serde_json::json!({ "id": response_id(), "results": results, "meta": meta });
    Ok(timed_json(body, &outcome.timings, partial_of(&outcome)))
}

fn partial_of(outcome: &RerankOutcome) -> Option<(PartialReason, usize)> {
    outcome.partial_reason.map(|reason| (reason, outcome.reranked))
}

/// What a partial answer says about itself, in words.
fn partial_warning(outcome: &RerankOutcome, reason: PartialReason, field: &str) -> String {
    let why = match reason {
        PartialReason::Deadline => format!("before the deadline ({TIMEOUT_HEADER} or the server's default)"),
        PartialReason::Overload => "because the inference queue was full".to_owned(),
    };
    format!(
        "scored {} of {} {field} {why}; the rest follow in request order with scores below every scored one",
        outcome.reranked,
        outcome.results.len()
    )
}

/// Scores every candidate it can by the deadline. The rerank dialects have no way to mark a
/// document as unscored, so a partial answer still lists every document (see
/// [`reported_scores`]) and says so in `X-Mathrank-Partial`: an engine keeps its first-stage
/// order for what could not be scored, instead of failing the user's whole search.
async fn rerank_all(
    http: &Http,
    query: &str,
    texts: Vec<String>,
    deadline: Option<Instant>,
    long_answers: Option<LongAnswers>,
    candidates_field: &str,
) -> ApiResult<RerankOutcome> {
    let engine = http.engine()?;
    let params = RerankParams { query: query.to_owned(), candidates: texts, deadline, long_answers };
    let outcome =
        engine.rerank(params).await.map_err(|err| ApiError::from(err).renamed("candidates", candidates_field))?;
    http.state.metrics().record_outcome(&outcome.timings, outcome.partial_reason);
    Ok(outcome)
}

/// Which score a dialect reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    /// `softmax(logits)[1]`, in [0, 1] (Cohere, TEI, Weaviate).
    Relevance,
    /// `logits[1] - logits[0]`, any real number (TEI's `raw_scores`).
    Margin,
}

/// Every candidate with the score a dialect reports, best first: the scored ones by that score
/// (which the dialects promise to sort by), then the unscored ones in request order (the
/// caller's first-stage order) with scores strictly below every scored one, each below the
/// one before. With nothing scored, relevances run down from just under 1.
fn reported_scores(outcome: &RerankOutcome, reported: Reported) -> Vec<(usize, f32)> {
    let value = |score: &mathrank_rerank::Score| match reported {
        Reported::Relevance => score.relevance,
        Reported::Margin => score.margin(),
    };
    let mut scored: Vec<(usize, f32)> =
        outcome.results.iter().filter_map(|r| r.score.as_ref().map(|s| (r.index, value(s)))).collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut unscored: Vec<usize> = outcome.results.iter().filter(|r| r.score.is_none()).map(|r| r.index).collect();
    unscored.sort_unstable();
    let floor = scored.last().map(|&(_, s)| s);
    let count = unscored.len() as f32;
    let filled = unscored.into_iter().enumerate().map(|(k, index)| {
        let k = k as f32;
        let score = match reported {
            Reported::Relevance => floor.unwrap_or(1.0) * (count - k) / (count + 1.0),
            Reported::Margin => floor.unwrap_or(0.0) - (k + 1.0),
        };
        (index, score)
    });
    scored.into_iter().chain(filled).collect()
}

// ---- `/rerank`: TEI (`texts`) or Weaviate's reranker-transformers (`documents`).

#[derive(Debug, Deserialize)]
struct TeiRequest {
    query: String,
    texts: Vec<String>,
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    return_text: bool,
    /// Accepted: pairs are always truncated (`longest_first`), as the model was trained.
    #[serde(default)]
    #[allow(dead_code)]
    truncate: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    truncation_direction: Option<String>,
    #[serde(default)]
    top_n: Option<u32>,
    /// mathrank's extension: "truncate" or "max_window".
    #[serde(default)]
    long_answers: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WeaviateRequest {
    query: String,
    documents: Vec<String>,
    /// Weaviate's single-property form; mathrank expects `documents`.
    #[serde(default)]
    property: Option<String>,
    /// mathrank's extension: "truncate" or "max_window".
    #[serde(default)]
    long_answers: Option<String>,
}

async fn rerank_tei_or_weaviate(
    State(http): State<Http>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let deadline = deadline_of(&headers, Instant::now())?;
    let value: serde_json::Value = parse_json(body)?;
    let has = |key: &str| value.get(key).is_some();
    match (has("texts"), has("documents")) {
        (true, false) => tei(http, from_value(value)?, deadline).await,
        (false, true) => weaviate(http, from_value(value)?, deadline).await,
        (true, true) => Err(ApiError::invalid("texts", "send `texts` (TEI) or `documents` (Weaviate), not both")),
        (false, false) => Err(ApiError::invalid(
            "texts",
            "missing: /rerank takes TEI's `{query, texts}` or Weaviate's `{query, documents}`",
        )),
    }
}

fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(value).map_err(field_error)
}

async fn tei(http: Http, request: TeiRequest, deadline: Option<Instant>) -> ApiResult<Response> {
    if request.top_n == Some(0) {
        return Err(ApiError::invalid("top_n", "must be at least 1"));
    }
    let mode = long_answers(request.long_answers.as_deref())?;
    let outcome = rerank_all(&http, &request.query, request.texts.clone(), deadline, mode, "texts").await?;
    let top_n = request.top_n.map_or(usize::MAX, |n| n as usize);
    // TEI's `score` is the relevance probability; `raw_scores` asks for the logit whose
    // sigmoid it is (logits[1] - logits[0]).
    let reported = if request.raw_scores { Reported::Margin } else { Reported::Relevance };
    let results: Vec<serde_json::Value> = reported_scores(&outcome, reported)
        .into_iter()
        .take(top_n)
        .map(|(index, score)| {
            let mut item = serde_json::json!({ "index": index, "score": score });
            if request.return_text {
                item["text"] = request.texts[index].clone().into();
            }
            item
        })
        .collect();
    Ok(timed_json(results, &outcome.timings, partial_of(&outcome)))
}

async fn weaviate(http: Http, request: WeaviateRequest, deadline: Option<Instant>) -> ApiResult<Response> {
    if request.property.is_some() {
        return Err(ApiError::invalid("property", "is not supported: send the texts to score as `documents`"));
    }
    let mode = long_answers(request.long_answers.as_deref())?;
    let outcome = rerank_all(&http, &request.query, request.documents.clone(), deadline, mode, "documents").await?;
    let mut scores = vec![0.0f32; request.documents.len()];
    for (index, score) in reported_scores(&outcome, Reported::Relevance) {
        scores[index] = score;
    }
    // Weaviate reads the scores in request order, one per document.
    let body = serde_json::json!({
        "query": request.query,
        "scores": request
            .documents
            .iter()
            .zip(scores)
            .map(|(document, score)| serde_json::json!({ "document": document, "score": score }))
            .collect::<Vec<_>>(),
    });
    Ok(timed_json(body, &outcome.timings, partial_of(&outcome)))
}

// ---- The contract's methods as proto3 JSON.

async fn search(
    State(http): State<Http>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let deadline = deadline_of(&headers, Instant::now())?;
    let request: v1::SearchRequest = parse_json(body)?;
    let engine = http.engine()?;
    let include_body = request.include_body;
    let outcome = engine.search(SearchParams { deadline, ..SearchParams::try_from(request)? }).await?;
    http.state.metrics().record_outcome(&outcome.timings, outcome.partial_reason);
    let partial = outcome.partial_reason.map(|reason| (reason, outcome.reranked));
    Ok(timed_json(v1::SearchResponse::new(&outcome, include_body), &outcome.timings, partial))
}

async fn get_answer(State(http): State<Http>, Path(id): Path<String>) -> ApiResult<Response> {
    let answer_id: u64 = id.parse().map_err(|_| ApiError::invalid("answer_id", format!("{id:?} is not a post id")))?;
    let engine = http.engine()?;
    let hit = engine.get_answer(answer_id).await?;
    Ok(axum::Json(v1::GetAnswerResponse::from(&hit)).into_response())
}

async fn info(State(http): State<Http>) -> ApiResult<Response> {
    let engine = http.engine()?;
    Ok(axum::Json(v1::InfoResponse::from(engine.as_ref())).into_response())
}

// ---- Probes and metrics (no auth, like gRPC health).

async fn health(State(state): State<Arc<ServerState>>) -> Response {
    if state.is_serving() {
        (StatusCode::OK, axum::Json(serde_json::json!({ "status": "SERVING" }))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "status": "NOT_SERVING" }))).into_response()
    }
}

/// Weaviate's module probe: 204 once serving.
async fn ready(State(state): State<Arc<ServerState>>) -> StatusCode {
    if state.is_serving() { StatusCode::NO_CONTENT } else { StatusCode::SERVICE_UNAVAILABLE }
}

async fn live() -> StatusCode {
    StatusCode::NO_CONTENT
}

pub(crate) async fn metrics_text(State(state): State<Arc<ServerState>>) -> Response {
    let mut response = state.metrics().render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// Anything else: `UNIMPLEMENTED` for gRPC callers, a JSON 404 for the rest.
pub(crate) async fn fallback(request: Request) -> Response {
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        return tonic::Status::unimplemented(format!("no method {}", request.uri().path())).into_http();
    }
    let error = ApiError {
        status: StatusCode::NOT_FOUND,
        code: "NOT_FOUND",
        message: format!(
            "no route {} {}; see the README for /v1/rerank, /v2/rerank, /rerank, /v1/search, /v1/answers/ID, /v1/info, /health, /metrics",
            request.method(),
            request.uri().path()
        ),
        field: None,
    };
    error.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_status() {
        let cases = [
            (EngineError::InvalidArgument { field: "query", message: "x".into() }, 400),
            (EngineError::NoModel, 400),
            (EngineError::NotFound("x".into()), 404),
            (EngineError::Overloaded("x".into()), 429),
            (EngineError::DeadlineExceeded("x".into()), 504),
            (EngineError::Unavailable("x".into()), 503),
            (EngineError::Cancelled, 499),
            (EngineError::Internal("x".into()), 500),
        ];
        for (err, status) in cases {
            assert_eq!(http_status_of(&err).as_u16(), status, "{err}");
        }
    }

    #[test]
    fn body_errors_name_the_field() {
        let bad = |json: &str| parse_json::<CohereRequest>(Ok(Bytes::from(json.to_owned()))).unwrap_err();
        assert_eq!(bad(r#"{"documents": []}"#).field.as_deref(), Some("query"));
        assert_eq!(bad(r#"{"query": "q", "documents": ["a", 3]}"#).field.as_deref(), Some("documents[1]"));
        assert_eq!(bad(r#"{"query": "q", "documents": [], "top_n": -1}"#).field.as_deref(), Some("top_n"));
        assert_eq!(bad(r#"{"query": "q", "documents": [], "top_n": NaN}"#).status, StatusCode::BAD_REQUEST);
        let nested = parse_json::<v1::SearchRequest>(Ok(Bytes::from(r#"{"query":"q","filters":{"minVotes":"x"}}"#)))
            .unwrap_err();
        assert_eq!(nested.field.as_deref(), Some("filters.minVotes"));
    }

    #[test]
    fn deadlines_come_from_the_timeout_header() {
        let now = Instant::now();
        let mut headers = HeaderMap::new();
        assert_eq!(deadline_of(&headers, now).unwrap(), None);
        headers.insert(TIMEOUT_HEADER, HeaderValue::from_static("250"));
        assert_eq!(deadline_of(&headers, now).unwrap(), Some(now + Duration::from_millis(250)));
        headers.insert(TIMEOUT_HEADER, HeaderValue::from_static("-5"));
        assert_eq!(deadline_of(&headers, now).unwrap_err().field.as_deref(), Some(TIMEOUT_HEADER));
    }
}
