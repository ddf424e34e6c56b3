//! The contract's own methods as proto3 JSON: `/v1/search`, `/v1/answers/{id}`, `/v1/info`,
//! the same messages as gRPC through the same conversions.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use mathrank_engine::SearchParams;
use mathrank_proto::v1;

use super::errors::{ApiError, ApiResult};
use super::shared::{Http, deadline_of, parse_json, timed_json};
use crate::convert;

pub(super) async fn search(
    State(http): State<Http>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let deadline = deadline_of(&headers, Instant::now())?;
    let request: v1::SearchRequest = parse_json(body)?;
    let engine = http.engine()?;
    let include_body = request.include_body;
    let outcome = engine.search(SearchParams { deadline, ..convert::search_params(request)? }).await?;
    http.state.metrics().record_outcome(&outcome.timings, outcome.partial_reason);
    let partial = outcome.partial_reason.map(|reason| (reason, outcome.reranked));
    Ok(timed_json(convert::search_response(&outcome, include_body), &outcome.timings, partial))
}

pub(super) async fn get_answer(State(http): State<Http>, Path(id): Path<String>) -> ApiResult<Response> {
    let answer_id: u64 = id.parse().map_err(|_| ApiError::invalid("answer_id", format!("{id:?} is not a post id")))?;
    let engine = http.engine()?;
    let hit = engine.get_answer(answer_id).await?;
    Ok(axum::Json(convert::answer_response(&hit)).into_response())
}

pub(super) async fn info(State(http): State<Http>) -> ApiResult<Response> {
    let engine = http.engine()?;
    Ok(axum::Json(convert::info_response(&engine)).into_response())
}
