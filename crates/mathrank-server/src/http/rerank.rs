//! What the rerank dialects share: scoring every candidate by the deadline, and the scores
//! each dialect reports, partial answers included.

use std::time::Instant;

use mathrank_engine::{LongAnswers, PartialReason, RerankOutcome, RerankParams};

use super::errors::{ApiError, ApiResult};
use super::shared::{Http, TIMEOUT_HEADER};

pub(super) fn partial_of(outcome: &RerankOutcome) -> Option<(PartialReason, usize)> {
    outcome.partial_reason.map(|reason| (reason, outcome.reranked))
}

/// What a partial answer says about itself, in words.
pub(super) fn partial_warning(outcome: &RerankOutcome, reason: PartialReason, field: &str) -> String {
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
pub(super) async fn rerank_all(
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
pub(super) enum Reported {
    /// `softmax(logits)[1]`, in [0, 1] (Cohere, TEI, Weaviate).
    Relevance,
    /// `logits[1] - logits[0]`, any real number (TEI's `raw_scores`).
    Margin,
}

/// Every candidate with the score a dialect reports, best first: the scored ones by that score
/// (which the dialects promise to sort by), then the unscored ones in request order (the
/// caller's first-stage order) with scores strictly below every scored one, each below the
/// one before. With nothing scored, relevances run down from just under 1.
pub(super) fn reported_scores(outcome: &RerankOutcome, reported: Reported) -> Vec<(usize, f32)> {
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
