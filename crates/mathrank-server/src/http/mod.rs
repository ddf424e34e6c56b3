//! The HTTP/JSON adapter, a file per job: the rerank dialects that search engines call
//! ([`cohere`] `/v1|v2/rerank`, [`tei`] and [`weaviate`] `/rerank`, sharing [`rerank`]), the
//! contract's own methods as proto3 JSON ([`proto_json`]: `/v1/search`, `/v1/answers/{id}`,
//! `/v1/info`), the write API ([`posts`]: `/v1/posts:bulk`, `/v1/posts/{id}`,
//! `/v1/index:rebuild`, under a write token of its own), [`probes`] and metrics. Errors are JSON `{"error": {"code", "message",
//! "field"?}}`, mapped from the engine's errors in [`http_status_of`] ([`errors`]); [`shared`]
//! holds what every route shares. This file is the router: a new dialect is a file and a route.

mod cohere;
mod errors;
pub(crate) mod posts;
mod probes;
mod proto_json;
mod rerank;
mod shared;
mod tei;
mod weaviate;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
pub(crate) use errors::ApiError;
use errors::ApiResult;
pub use errors::http_status_of;
pub(crate) use probes::metrics_text;
use shared::{Http, deadline_of, from_value, parse_json};
pub use shared::{PARTIAL_HEADER, TIMEOUT_HEADER};

use crate::auth::{BearerToken, UNAUTHENTICATED};
use crate::state::ServerState;

/// The HTTP routes, ready to merge beside the gRPC services.
pub(crate) fn router(
    state: Arc<ServerState>,
    token: Option<BearerToken>,
    write_token: Option<BearerToken>,
    max_body_bytes: usize,
) -> Router {
    let writes = posts::router(Arc::clone(&state), write_token, token.clone(), max_body_bytes);
    let http = Http { state: Arc::clone(&state), token };
    let api = Router::new()
        .route("/v1/rerank", post(cohere::cohere_v1))
        .route("/v2/rerank", post(cohere::cohere_v2))
        .route("/rerank", post(rerank_tei_or_weaviate))
        .route("/v1/search", post(proto_json::search))
        .route("/v1/answers/{id}", get(proto_json::get_answer))
        .route("/v1/info", get(proto_json::info))
        .route_layer(axum::middleware::from_fn_with_state(http.clone(), require_token));
    let open = Router::new()
        .route("/health", get(probes::health))
        .route("/.well-known/ready", get(probes::ready))
        .route("/.well-known/live", get(probes::live))
        .route("/metrics", get(probes::metrics_text));
    api.with_state(http.clone())
        .merge(open.with_state(state))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        // After the body limit: the bulk route streams its body and sets no limit of its own.
        .merge(writes)
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
            "no route {} {}; see docs/http-api.md for / (the search page), /v1/rerank, /v2/rerank, /rerank, /v1/search, /v1/answers/ID, /v1/info, /health, /metrics, and docs/live-index.md for /v1/posts:bulk, /v1/posts/ID",
            request.method(),
            request.uri().path()
        ),
        field: None,
    };
    error.into_response()
}

/// `/rerank`: TEI (`texts`) or Weaviate's reranker-transformers (`documents`).
async fn rerank_tei_or_weaviate(
    State(http): State<Http>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let deadline = deadline_of(&headers, Instant::now())?;
    let value: serde_json::Value = parse_json(body)?;
    let has = |key: &str| value.get(key).is_some();
    match (has("texts"), has("documents")) {
        (true, false) => tei::tei(http, from_value(value)?, deadline).await,
        (false, true) => weaviate::weaviate(http, from_value(value)?, deadline).await,
        (true, true) => Err(ApiError::invalid("texts", "send `texts` (TEI) or `documents` (Weaviate), not both")),
        (false, false) => Err(ApiError::invalid(
            "texts",
            "missing: /rerank takes TEI's `{query, texts}` or Weaviate's `{query, documents}`",
        )),
    }
}
