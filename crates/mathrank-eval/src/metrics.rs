//! Retrieval metrics with ARQMath's conventions, matching trec_eval.
//!
//! Primed measures remove unjudged answers from the run before scoring (trec_eval `-J`):
//! nDCG' uses graded gains 0-3 (`-m ndcg`), MAP' and P'@10 count grade >= 2 as relevant
//! (`-l2`). Runs are ordered as trec_eval orders them: by score, descending, ties by document
//! id descending (string order). Recall@k and MRR@10 use the run as given (no removal) with
//! grade >= 2 as relevant.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::{Error, Result, read_text};

/// Grade at or above which an answer counts as relevant for binary measures.
pub const RELEVANT_GRADE: i32 = 2;

/// topic -> answer id -> grade.
pub type Qrels = BTreeMap<String, HashMap<String, i32>>;
/// topic -> (answer id, score) lines.
pub type Run = BTreeMap<String, Vec<(String, f64)>>;

/// The non-blank lines of a TREC file split on whitespace, each with exactly `shape.len()`
/// fields, and a maker of errors naming the path and line.
fn records<'t>(
    text: &'t str,
    path: &'t Path,
    shape: &'t str,
) -> impl Iterator<Item = Result<(Vec<&'t str>, impl Fn(String) -> Error + 't)>> + 't {
    let width = shape.split_whitespace().count();
    text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()).map(move |(number, line)| {
        let bad = move |message: String| Error::Line { path: path.display().to_string(), line: number + 1, message };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != width {
            return Err(bad(format!("a line is `{shape}`, got {line:?}")));
        }
        Ok((fields, bad))
    })
}

/// Reads TREC qrels (`topic iteration doc grade`, any whitespace, CRLF tolerated).
pub fn read_qrels(path: &Path) -> Result<Qrels> {
    let text = read_text(path)?;
    let mut qrels = Qrels::new();
    for record in records(&text, path, "topic iteration answer_id grade") {
        let (fields, bad) = record?;
        let grade: i32 = fields[3].parse().map_err(|_| bad(format!("grade {:?} is not an integer", fields[3])))?;
        qrels.entry(fields[0].to_owned()).or_default().insert(fields[2].to_owned(), grade);
    }
    Ok(qrels)
}

/// Reads a TREC run (`topic Q0 doc rank score tag`). A document twice in one topic is an error.
pub fn read_run(path: &Path) -> Result<Run> {
    parse_run(&read_text(path)?, path)
}

/// Parses the text of a TREC run; `path` names it in errors. Scores are read as trec_eval
/// reads them, as doubles from their decimal text.
pub fn parse_run(text: &str, path: &Path) -> Result<Run> {
    let mut run = Run::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for record in records(text, path, "topic Q0 answer_id rank score tag") {
        let (fields, bad) = record?;
        let score: f64 = fields[4].parse().map_err(|_| bad(format!("score {:?} is not a number", fields[4])))?;
        if !seen.insert((fields[0].to_owned(), fields[2].to_owned())) {
            return Err(bad(format!(
                "answer {} appears twice for topic {}; a run lists each answer once per topic",
                fields[2], fields[0]
            )));
        }
        run.entry(fields[0].to_owned()).or_default().push((fields[2].to_owned(), score));
    }
    Ok(run)
}

/// Metrics of one topic.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TopicMetrics {
    pub ndcg_prime: f64,
    pub map_prime: f64,
    pub p10_prime: f64,
    pub recall_100: f64,
    pub recall_1000: f64,
    pub mrr_10: f64,
    pub retrieved: usize,
    pub judged_retrieved: usize,
    pub relevant: usize,
}

/// trec_eval's order: score descending, then document id descending.
fn trec_order(lines: &[(String, f64)]) -> Vec<&(String, f64)> {
    let mut sorted: Vec<&(String, f64)> = lines.iter().collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    sorted
}

pub fn topic_metrics(lines: &[(String, f64)], judgments: &HashMap<String, i32>) -> TopicMetrics {
    let ranked = trec_order(lines);
    let relevant = judgments.values().filter(|&&g| g >= RELEVANT_GRADE).count();
    let judged: Vec<i32> = ranked.iter().filter_map(|(doc, _)| judgments.get(doc).copied()).collect();

    let dcg: f64 = judged.iter().enumerate().map(|(i, &g)| f64::from(g.max(0)) / ((i + 2) as f64).log2()).sum();
    let mut ideal: Vec<i32> = judgments.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().enumerate().map(|(i, &g)| f64::from(g) / ((i + 2) as f64).log2()).sum();

    let mut hits = 0usize;
    let mut precision_sum = 0.0;
    for (i, &grade) in judged.iter().enumerate() {
        if grade >= RELEVANT_GRADE {
            hits += 1;
            precision_sum += hits as f64 / (i + 1) as f64;
        }
    }
    let p10 = judged.iter().take(10).filter(|&&g| g >= RELEVANT_GRADE).count() as f64 / 10.0;
    let is_relevant = |doc: &str| judgments.get(doc).is_some_and(|&g| g >= RELEVANT_GRADE);
    let recall_at = |k: usize| {
        if relevant == 0 {
            0.0
        } else {
            ranked.iter().take(k).filter(|(doc, _)| is_relevant(doc)).count() as f64 / relevant as f64
        }
    };
    let mrr = ranked.iter().take(10).position(|(doc, _)| is_relevant(doc)).map_or(0.0, |i| 1.0 / (i + 1) as f64);
    TopicMetrics {
        ndcg_prime: if idcg > 0.0 { dcg / idcg } else { 0.0 },
        map_prime: if relevant > 0 { precision_sum / relevant as f64 } else { 0.0 },
        p10_prime: p10,
        recall_100: recall_at(100),
        recall_1000: recall_at(1000),
        mrr_10: mrr,
        retrieved: ranked.len(),
        judged_retrieved: judged.len(),
        relevant,
    }
}

/// Per-topic and mean metrics over the topics that have judgments and a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Evaluation {
    pub ndcg_prime: f64,
    pub map_prime: f64,
    pub p10_prime: f64,
    pub recall_100: f64,
    pub recall_1000: f64,
    pub mrr_10: f64,
    /// Topics averaged over.
    pub evaluated_topics: usize,
    /// Topics of the run that have no judgments (not averaged).
    pub unjudged_topics: Vec<String>,
    pub topics: BTreeMap<String, TopicMetrics>,
}

pub fn evaluate(run: &Run, qrels: &Qrels) -> Evaluation {
    let mut evaluation = Evaluation::default();
    for (topic, lines) in run {
        match qrels.get(topic) {
            Some(judgments) => {
                evaluation.topics.insert(topic.clone(), topic_metrics(lines, judgments));
            }
            None => evaluation.unjudged_topics.push(topic.clone()),
        }
    }
    let n = evaluation.topics.len();
    evaluation.evaluated_topics = n;
    if n > 0 {
        let mean = |f: fn(&TopicMetrics) -> f64| evaluation.topics.values().map(f).sum::<f64>() / n as f64;
        evaluation.ndcg_prime = mean(|m| m.ndcg_prime);
        evaluation.map_prime = mean(|m| m.map_prime);
        evaluation.p10_prime = mean(|m| m.p10_prime);
        evaluation.recall_100 = mean(|m| m.recall_100);
        evaluation.recall_1000 = mean(|m| m.recall_1000);
        evaluation.mrr_10 = mean(|m| m.mrr_10);
    }
    evaluation
}

/// The metrics as a table: one line per topic (with `per_topic`), then the mean.
pub fn format_evaluation(evaluation: &Evaluation, per_topic: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if per_topic {
        let _ = writeln!(
            out,
            "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "topic", "nDCG'", "MAP'", "P'@10", "R@100", "R@1000", "MRR@10"
        );
        for (topic, m) in &evaluation.topics {
            let _ = writeln!(
                out,
                "{topic:<10} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
                m.ndcg_prime, m.map_prime, m.p10_prime, m.recall_100, m.recall_1000, m.mrr_10
            );
        }
    }
    let _ = writeln!(
        out,
        "{:<10} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4}   ({} topics{})",
        "mean",
        evaluation.ndcg_prime,
        evaluation.map_prime,
        evaluation.p10_prime,
        evaluation.recall_100,
        evaluation.recall_1000,
        evaluation.mrr_10,
        evaluation.evaluated_topics,
        if evaluation.unjudged_topics.is_empty() {
            String::new()
        } else {
            format!("; {} without judgments skipped", evaluation.unjudged_topics.len())
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgments(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, g)| ((*d).to_owned(), *g)).collect()
    }

    fn lines(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
        pairs.iter().map(|(d, s)| ((*d).to_owned(), *s)).collect()
    }

    #[test]
    fn hand_computed_topic() {
        // Run: a(3) x(unjudged) b(0) c(2); qrels also hold d(1).
        let qrels = judgments(&[("a", 3), ("b", 0), ("c", 2), ("d", 1)]);
        let run = lines(&[("a", 4.0), ("x", 3.0), ("b", 2.0), ("c", 1.0)]);
        let m = topic_metrics(&run, &qrels);
        // Judged-only order: a, b, c.
        let dcg = 3.0 / 2f64.log2() + 0.0 + 2.0 / 4f64.log2();
        let idcg = 3.0 / 2f64.log2() + 2.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((m.ndcg_prime - dcg / idcg).abs() < 1e-12);
        assert!((m.map_prime - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((m.p10_prime - 0.2).abs() < 1e-12);
        assert_eq!(m.mrr_10, 1.0);
        assert_eq!((m.retrieved, m.judged_retrieved, m.relevant), (4, 3, 2));
        assert!((m.recall_100 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ties_follow_trec_eval_docno_descending() {
        let qrels = judgments(&[("10", 2), ("20", 0)]);
        // Equal scores: trec_eval ranks "20" before "10".
        let m = topic_metrics(&lines(&[("10", 1.0), ("20", 1.0)]), &qrels);
        assert!((m.map_prime - 0.5).abs() < 1e-12);
        assert!((m.mrr_10 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn topics_without_judgments_are_reported_not_averaged() {
        let mut qrels = Qrels::new();
        qrels.insert("A.1".into(), judgments(&[("a", 2)]));
        let mut run = Run::new();
        run.insert("A.1".into(), lines(&[("a", 1.0)]));
        run.insert("A.2".into(), lines(&[("b", 1.0)]));
        let evaluation = evaluate(&run, &qrels);
        assert_eq!(evaluation.evaluated_topics, 1);
        assert_eq!(evaluation.unjudged_topics, ["A.2"]);
        assert_eq!(evaluation.map_prime, 1.0);
    }

    #[test]
    fn files_with_crlf_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let qrels_path = dir.path().join("qrels.txt");
        std::fs::write(&qrels_path, "A.1\t0\t5\t3\r\nA.1\t0\t6\t0\r\n").unwrap();
        let qrels = read_qrels(&qrels_path).unwrap();
        assert_eq!(qrels["A.1"]["5"], 3);
        let run_path = dir.path().join("run.txt");
        std::fs::write(&run_path, "A.1 Q0 5 1 2.0 t\nA.1 Q0 5 2 1.0 t\n").unwrap();
        let err = read_run(&run_path).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
    }
}
