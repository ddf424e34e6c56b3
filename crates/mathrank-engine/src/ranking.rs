//! Ranking helpers and text normalisation, written once for every caller.

use std::cmp::Ordering;

use mathrank_rerank::Score;

/// The value reranked results are sorted by: the raw logit of the `relevant` class, as the
/// model's authors ranked their ARQMath runs. (`relevance`, its softmax, is for display and
/// thresholds; the two orders agree whenever the logits are antisymmetric.)
pub fn ranking_value(score: &Score) -> f32 {
    score.logits[1]
}

/// Scored before unscored; scored by decreasing [`ranking_value`]; `tie` decides the rest
/// (BM25 rank for search hits, request order for candidates).
pub fn compare_scored(a: Option<&Score>, b: Option<&Score>, tie: Ordering) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => ranking_value(y).total_cmp(&ranking_value(x)).then(tie),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => tie,
    }
}

/// A question (plain text or Stack Exchange HTML, title and body together) as the index and
/// the model read it: converted once by the authors' recipe.
pub fn normalize_question(query: &str) -> String {
    mathrank_dump::html_to_text(query)
}

/// A candidate answer (plain text or HTML) as the model reads it. `max_bytes` cuts it first,
/// at a character boundary, so that a huge candidate costs no more than the tokenizer can use.
pub fn normalize_candidate(text: &str, max_bytes: usize) -> String {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text[..end];
    if mathrank_dump::looks_like_html(text) { mathrank_dump::html_to_text(text) } else { text.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scored_first_then_by_value_then_tie() {
        let high = Score::from_logits([0.0, 2.0]);
        let low = Score::from_logits([0.0, -2.0]);
        // The relevant logit decides, not the softmax: [5, 3] is less probable than [-5, 1]
        // but has the higher relevant logit.
        let (logit_high, prob_high) = (Score::from_logits([5.0, 3.0]), Score::from_logits([-5.0, 1.0]));
        assert!(prob_high.relevance > logit_high.relevance);
        assert_eq!(compare_scored(Some(&logit_high), Some(&prob_high), Ordering::Greater), Ordering::Less);
        assert_eq!(compare_scored(Some(&high), Some(&low), Ordering::Greater), Ordering::Less);
        assert_eq!(compare_scored(Some(&low), Some(&high), Ordering::Less), Ordering::Greater);
        assert_eq!(compare_scored(Some(&low), Some(&low), Ordering::Greater), Ordering::Greater);
        assert_eq!(compare_scored(Some(&low), None, Ordering::Greater), Ordering::Less);
        assert_eq!(compare_scored(None, Some(&low), Ordering::Less), Ordering::Greater);
        assert_eq!(compare_scored(None, None, Ordering::Less), Ordering::Less);
    }

    #[test]
    fn candidates_are_cut_at_a_char_boundary_then_converted() {
        assert_eq!(normalize_candidate("<p>ab <b>c</b></p>", 1000), "ab c");
        assert_eq!(normalize_candidate("ééé", 3), "é");
        assert_eq!(normalize_candidate("$a<b$", 1000), "$a<b$");
        assert_eq!(normalize_question("<p>Why $x^2$?</p>"), "Why $x^2$?");
    }
}
