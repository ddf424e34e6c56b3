//! The one output format of `mathrank search`, whether in-process or over gRPC.

use serde::Serialize;

/// A hit as printed by `mathrank search`.
#[derive(Debug, Clone, Serialize)]
pub struct HitOut {
    pub rank: usize,
    pub answer_id: u64,
    pub question_id: u64,
    pub title: String,
    pub tags: Vec<String>,
    pub bm25_score: f32,
    pub bm25_rank: usize,
    /// logits[1], the raw logit of "relevant": reranked hits are sorted by it (unless
    /// another fusion was asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relevant_logit: Option<f32>,
    /// logits[1] - logits[0], the log-odds of "relevant".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_logit: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relevance: Option<f32>,
    pub votes: i64,
    pub accepted: bool,
    pub snippet: String,
}

#[derive(Debug, Serialize)]
pub struct SearchOut {
    pub hits: Vec<HitOut>,
    pub reranked: usize,
    pub partial: bool,
}

pub fn print(out: &SearchOut, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(out)?);
        return Ok(());
    }
    if out.hits.is_empty() {
        println!("no answers matched");
        return Ok(());
    }
    for hit in &out.hits {
        let rerank = match (hit.relevance, hit.relevant_logit, hit.rerank_logit) {
            (Some(relevance), Some(relevant), Some(margin)) => {
                format!("  relevance {relevance:.4} (relevant logit {relevant:.3}, margin {margin:.3})")
            }
            _ => String::new(),
        };
        println!(
            "{:>3}. answer {} (question {}) bm25 {:.3} #{}{}  votes {}{}",
            hit.rank,
            hit.answer_id,
            hit.question_id,
            hit.bm25_score,
            hit.bm25_rank,
            rerank,
            hit.votes,
            if hit.accepted { "  accepted" } else { "" }
        );
        println!("     {}  [{}]", hit.title, hit.tags.join(", "));
        println!("     {}", hit.snippet);
    }
    if out.partial {
        println!("(partial: only {} hits were reranked before the deadline)", out.reranked);
    }
    Ok(())
}
