//! What every route shares: the server's state, JSON bodies parsed with the field at fault named, the call's
//! deadline from `X-Timeout-Ms`, and answers with their stage timings in `Server-Timing`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mathrank_engine::{Engine, LongAnswers, PartialReason, Timings};
use serde::de::DeserializeOwned;

use super::errors::{ApiError, ApiResult, field_error};
use crate::auth::BearerToken;
use crate::connections::BodyTimeout;
use crate::state::ServerState;

/// What the routes share: the server's state and, with auth on, the token.
#[derive(Clone)]
pub(super) struct Http {
    pub(super) state: Arc<ServerState>,
    pub(super) token: Option<BearerToken>,
}

impl Http {
    pub(super) fn engine(&self) -> ApiResult<Arc<Engine>> {
        Ok(self.state.ready_engine()?)
    }
}

/// The request header that carries an HTTP call's deadline, in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-timeout-ms";

/// The response header that says why an answer is partial (`deadline`, `overload`).
pub const PARTIAL_HEADER: &str = "x-mathrank-partial";

/// A JSON answer with the call's stage timings in the standard `Server-Timing` header
/// (milliseconds), the HTTP counterpart of gRPC's `StageTimings`; its cache hits and windows in
/// `X-Mathrank-Cache` and `X-Mathrank-Windows`; and, when partial, why and how many were
/// scored in `X-Mathrank-Partial` and `X-Mathrank-Reranked`.
pub(super) fn timed_json(
    body: impl serde::Serialize,
    timings: &Timings,
    partial: Option<(PartialReason, usize)>,
) -> Response {
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
pub(super) fn long_answers(value: Option<&str>) -> ApiResult<Option<LongAnswers>> {
    Ok(crate::convert::parse_long_answers(value.unwrap_or(""))?)
}

/// Whether a body was refused because it did not arrive in time (see `connections`).
fn body_timed_out(rejection: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(err) = source {
        if err.is::<BodyTimeout>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Parses a JSON body, naming the field at fault (`documents[2]`, `top_n`) when it fails.
pub(super) fn parse_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let body = body.map_err(|rejection| {
        if body_timed_out(&rejection) {
            return ApiError {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "DEADLINE_EXCEEDED",
                message: format!("request body: {BodyTimeout}"),
                field: None,
            };
        }
        ApiError {
            status: rejection.status(),
            code: if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "PAYLOAD_TOO_LARGE"
            } else {
                "INVALID_ARGUMENT"
            },
            message: format!("request body: {}", rejection.body_text()),
            field: None,
        }
    })?;
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(field_error)
}

pub(super) fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(value).map_err(field_error)
}

/// The deadline of an HTTP call: `X-Timeout-Ms`, counted from when the request arrived.
pub(super) fn deadline_of(headers: &HeaderMap, received: Instant) -> ApiResult<Option<Instant>> {
    let Some(value) = headers.get(TIMEOUT_HEADER) else { return Ok(None) };
    let millis: u64 = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&ms| ms > 0)
        .ok_or_else(|| ApiError::invalid(TIMEOUT_HEADER, "must be a positive whole number of milliseconds"))?;
    Ok(Some(received + Duration::from_millis(millis)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
