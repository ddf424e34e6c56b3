//! Cohere's `/v1/rerank` and `/v2/rerank` (also Jina's shape), as Elasticsearch's and
//! OpenSearch's Cohere connectors send them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::errors::{ApiError, ApiResult};
use super::rerank::{Reported, partial_of, partial_warning, reported_scores, rerank_all};
use super::shared::{Http, deadline_of, long_answers, parse_json, timed_json};

#[derive(Debug, Deserialize)]
pub(super) struct CohereRequest {
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

pub(super) async fn cohere_v1(
    State(http): State<Http>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    // v1's `return_documents` defaults to true, v2's to false (Cohere's API reference).
    cohere(http, headers, body, 1, true).await
}

pub(super) async fn cohere_v2(
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

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use mathrank_proto::v1;

    use super::*;

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
}
