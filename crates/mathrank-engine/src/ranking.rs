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

/// How the final order of the reranked hits is formed from the two stages' scores.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    /// The cross-encoder's order, by [`ranking_value`] (its relevant logit), as the model's
    /// authors ranked their ARQMath runs.
    #[default]
    Rerank,
    /// `weight * r + (1 - weight) * b`, where `r` and `b` are the relevant logit and the BM25
    /// score min-max normalised to [0, 1] over the reranked hits (1 for all when they are
    /// equal): approach0's fusion of its ARQMath-3 runs, at weight 0.5.
    Linear { weight: f32 },
    /// Reciprocal rank fusion: `1 / (k + BM25 rank) + 1 / (k + rerank rank)`, both ranks
    /// 1-based among the reranked hits (Cormack et al. 2009, k = 60).
    Rrf { k: u32 },
}

/// The weight of the reranker in `linear` fusion when the call does not set one.
pub const DEFAULT_LINEAR_WEIGHT: f32 = 0.5;
/// `k` of `rrf` fusion when the call does not set one.
pub const DEFAULT_RRF_K: u32 = 60;

impl Fusion {
    /// A fusion by name (`rerank`, `linear`, `rrf`) with its parameter or the default.
    pub fn from_parts(name: &str, weight: Option<f32>, k: Option<u32>) -> Result<Self, (&'static str, String)> {
        let fusion = match name {
            "" | "rerank" => Fusion::Rerank,
            "linear" => Fusion::Linear { weight: weight.unwrap_or(DEFAULT_LINEAR_WEIGHT) },
            "rrf" => Fusion::Rrf { k: k.unwrap_or(DEFAULT_RRF_K) },
            other => return Err(("fusion", format!("unknown fusion {other:?}; use rerank, linear or rrf"))),
        };
        if let Fusion::Linear { weight } = fusion
            && !(0.0..=1.0).contains(&weight)
        {
            return Err(("fusion_weight", format!("is {weight}; must be between 0 and 1")));
        }
        if fusion == (Fusion::Rrf { k: 0 }) {
            return Err(("rrf_k", "must be at least 1".into()));
        }
        Ok(fusion)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Fusion::Rerank => "rerank",
            Fusion::Linear { .. } => "linear",
            Fusion::Rrf { .. } => "rrf",
        }
    }

    /// The value each reranked candidate is ordered by, from its score and its BM25 score
    /// (`None` stays `None`: unscored candidates follow in BM25 order). `candidates` must be in
    /// BM25 order.
    pub fn fuse(&self, candidates: &[(Option<&Score>, f32)]) -> Vec<Option<f32>> {
        let scored: Vec<(usize, f32, f32)> = candidates
            .iter()
            .enumerate()
            .filter_map(|(i, (score, bm25))| score.map(|s| (i, ranking_value(s), *bm25)))
            .collect();
        let mut fused = vec![None; candidates.len()];
        match *self {
            Fusion::Rerank => {
                for (i, value, _) in scored {
                    fused[i] = Some(value);
                }
            }
            Fusion::Linear { weight } => {
                let normalize = |values: Vec<f32>| -> Vec<f32> {
                    let (low, high) =
                        values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
                    values.iter().map(|&v| if high > low { (v - low) / (high - low) } else { 1.0 }).collect()
                };
                let rerank = normalize(scored.iter().map(|s| s.1).collect());
                let bm25 = normalize(scored.iter().map(|s| s.2).collect());
                for (k, (i, _, _)) in scored.iter().enumerate() {
                    fused[*i] = Some(weight * rerank[k] + (1.0 - weight) * bm25[k]);
                }
            }
            Fusion::Rrf { k } => {
                // BM25 ranks: the candidates' order; rerank ranks: by the relevant logit, ties
                // by BM25 order.
                let mut by_rerank: Vec<usize> = (0..scored.len()).collect();
                by_rerank.sort_by(|&a, &b| scored[b].1.total_cmp(&scored[a].1).then(a.cmp(&b)));
                let k = k as f32;
                for (rerank_rank, &position) in by_rerank.iter().enumerate() {
                    let bm25_rank = position as f32 + 1.0;
                    fused[scored[position].0] = Some(1.0 / (k + bm25_rank) + 1.0 / (k + rerank_rank as f32 + 1.0));
                }
            }
        }
        fused
    }
}

/// Fused values first, by decreasing value; unfused after; `tie` decides the rest.
pub fn compare_fused(a: Option<f32>, b: Option<f32>, tie: Ordering) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => y.total_cmp(&x).then(tie),
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
    fn fusions_order_as_documented() {
        // BM25 order: a, b, c. The reranker prefers c, then a, then b.
        let (a, b, c) =
            (Score::from_logits([0.0, 1.0]), Score::from_logits([0.0, -3.0]), Score::from_logits([0.0, 2.0]));
        let candidates = [(Some(&a), 10.0), (Some(&b), 9.0), (Some(&c), 2.0), (None, 1.0)];
        let order = |fusion: Fusion| {
            let fused = fusion.fuse(&candidates);
            let mut order: Vec<usize> = (0..candidates.len()).collect();
            order.sort_by(|&x, &y| compare_fused(fused[x], fused[y], x.cmp(&y)));
            (order, fused)
        };
        assert_eq!(order(Fusion::Rerank).0, [2, 0, 1, 3]);
        // Linear at 0.5: a = 0.5*0.8 + 0.5*1 = 0.9, b = 0 + 0.5*0.875, c = 0.5*1 + 0 = 0.5.
        let (linear, fused) = order(Fusion::Linear { weight: 0.5 });
        assert_eq!(linear, [0, 2, 1, 3]);
        assert!((fused[0].unwrap() - 0.9).abs() < 1e-6 && fused[3].is_none());
        assert_eq!(order(Fusion::Linear { weight: 1.0 }).0, order(Fusion::Rerank).0);
        assert_eq!(order(Fusion::Linear { weight: 0.0 }).0, [0, 1, 2, 3]);
        // RRF with k = 1: a = 1/2 + 1/3, b = 1/3 + 1/4, c = 1/4 + 1/2.
        assert_eq!(order(Fusion::Rrf { k: 1 }).0, [0, 2, 1, 3]);
        assert_eq!(Fusion::from_parts("linear", None, None), Ok(Fusion::Linear { weight: DEFAULT_LINEAR_WEIGHT }));
        assert_eq!(Fusion::from_parts("rrf", None, Some(5)), Ok(Fusion::Rrf { k: 5 }));
        assert_eq!(Fusion::from_parts("", None, None), Ok(Fusion::Rerank));
        assert_eq!(Fusion::from_parts("linear", Some(1.5), None).unwrap_err().0, "fusion_weight");
        assert_eq!(Fusion::from_parts("rrf", None, Some(0)).unwrap_err().0, "rrf_k");
        assert_eq!(Fusion::from_parts("borda", None, None).unwrap_err().0, "fusion");
    }

    #[test]
    fn candidates_are_cut_at_a_char_boundary_then_converted() {
        assert_eq!(normalize_candidate("<p>ab <b>c</b></p>", 1000), "ab c");
        assert_eq!(normalize_candidate("ééé", 3), "é");
        assert_eq!(normalize_candidate("$a<b$", 1000), "$a<b$");
        assert_eq!(normalize_question("<p>Why $x^2$?</p>"), "Why $x^2$?");
    }
}
