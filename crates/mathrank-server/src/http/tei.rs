//! Text Embeddings Inference's `/rerank` (`{query, texts}`), as Elasticsearch's
//! `hugging_face` inference service sends it.

use std::time::Instant;

use axum::response::Response;
use serde::Deserialize;

use super::errors::{ApiError, ApiResult};
use super::rerank::{Reported, partial_of, reported_scores, rerank_all};
use super::shared::{Http, long_answers, timed_json};

#[derive(Debug, Deserialize)]
pub(super) struct TeiRequest {
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

pub(super) async fn tei(http: Http, request: TeiRequest, deadline: Option<Instant>) -> ApiResult<Response> {
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
