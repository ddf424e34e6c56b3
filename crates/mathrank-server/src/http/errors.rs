//! The HTTP API's errors: the one mapping from the engine's errors to HTTP statuses, and the
//! JSON error body `{"error": {"code", "message", "field"?}}` every route answers with.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mathrank_engine::EngineError;

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
        EngineError::Index(_) | EngineError::Rerank(_) | EngineError::Task(..) => StatusCode::INTERNAL_SERVER_ERROR,
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
        EngineError::Index(_) | EngineError::Rerank(_) | EngineError::Task(..) => "INTERNAL",
    }
}

/// An error as the HTTP API sends it.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    pub(super) field: Option<String>,
}

impl ApiError {
    pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_ARGUMENT",
            message: format!("invalid {field}: {}", message.into()),
            field: Some(field),
        }
    }

    /// The engine names its fields as the gRPC contract does; a dialect may call them otherwise.
    pub(super) fn renamed(mut self, from: &str, to: &str) -> Self {
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
            message: err.message(),
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
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(crate::error::RETRY_AFTER_SECS));
        }
        response
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// A deserialisation error as an `INVALID_ARGUMENT` naming the field at fault.
pub(super) fn field_error<E: std::fmt::Display>(err: serde_path_to_error::Error<E>) -> ApiError {
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
            (EngineError::Index(mathrank_index::Error::InvalidFilter("x".into())), 500),
            (EngineError::Rerank(mathrank_rerank::Error::ShutDown), 500),
        ];
        for (err, status) in cases {
            assert_eq!(http_status_of(&err).as_u16(), status, "{err}");
        }
    }
}
