//! Weaviate's reranker-transformers module: `/rerank` with `{query, documents}`, the scores in
//! request order.

use std::time::Instant;

use axum::response::Response;
use serde::Deserialize;

use super::errors::{ApiError, ApiResult};
use super::rerank::{Reported, partial_of, reported_scores, rerank_all};
use super::shared::{Http, long_answers, timed_json};

#[derive(Debug, Deserialize)]
pub(super) struct WeaviateRequest {
    query: String,
    documents: Vec<String>,
    /// Weaviate's single-property form; mathrank expects `documents`.
    #[serde(default)]
    property: Option<String>,
    /// mathrank's extension: "truncate" or "max_window".
    #[serde(default)]
    long_answers: Option<String>,
}

pub(super) async fn weaviate(http: Http, request: WeaviateRequest, deadline: Option<Instant>) -> ApiResult<Response> {
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
