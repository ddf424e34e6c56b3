//! Probes and metrics, open without auth like gRPC health: `/health`, Weaviate's
//! `/.well-known/ready` and `/.well-known/live`, and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::ServerState;

pub(super) async fn health(State(state): State<Arc<ServerState>>) -> Response {
    if state.is_serving() {
        (StatusCode::OK, axum::Json(serde_json::json!({ "status": "SERVING" }))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "status": "NOT_SERVING" }))).into_response()
    }
}

/// Weaviate's module probe: 204 once serving.
pub(super) async fn ready(State(state): State<Arc<ServerState>>) -> StatusCode {
    if state.is_serving() { StatusCode::NO_CONTENT } else { StatusCode::SERVICE_UNAVAILABLE }
}

pub(super) async fn live() -> StatusCode {
    StatusCode::NO_CONTENT
}

pub(crate) async fn metrics_text(State(state): State<Arc<ServerState>>) -> Response {
    let mut response = state.metrics().render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
