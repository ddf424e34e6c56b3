//! Known-item evaluation: queries written for one existing thread each, and how high the
//! search puts that thread.
//!
//! A query file is JSON lines, `{"id", "question_id", "query", "kind"?, "split"?}`: the query
//! as someone else with the same need would ask it, and the question whose thread it looks
//! for. A hit counts when it is an answer of that question (the known item is the thread:
//! finding any of its answers finds it). `split` (`tune` or `test`) lets weights be tuned on
//! one half and reported on the other.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result, read_text};

/// One known-item query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownItem {
    pub id: String,
    /// The question whose thread the query looks for.
    pub question_id: u64,
    pub query: String,
    /// How it is phrased: `keywords`, `sentence`, `latex`, `latex-bare` (free text).
    #[serde(default)]
    pub kind: String,
    /// `tune` or `test` (free text; empty for none).
    #[serde(default)]
    pub split: String,
}

/// Reads a known-item file; blank lines are skipped, and ids must be unique.
pub fn read_known_items(path: &Path) -> Result<Vec<KnownItem>> {
    let text = read_text(path)?;
    let mut items: Vec<KnownItem> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let error = |message: String| Error::Line { path: path.display().to_string(), line: number + 1, message };
        let item: KnownItem = serde_json::from_str(line)
            .map_err(|err| error(format!("not a known item {{\"id\", \"question_id\", \"query\"}}: {err}")))?;
        if item.query.trim().is_empty() {
            return Err(error(format!("{} has an empty query", item.id)));
        }
        if items.iter().any(|other| other.id == item.id) {
            return Err(error(format!("duplicate id {}", item.id)));
        }
        items.push(item);
    }
    Ok(items)
}

/// Where one query found its thread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnownItemResult {
    pub id: String,
    pub kind: String,
    pub split: String,
    /// 1-based rank of the first answer of the thread; `None` when it is not in the list.
    pub rank: Option<usize>,
}

/// Mean figures over a set of queries.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KnownItemSummary {
    pub queries: usize,
    /// Mean reciprocal rank of the thread, counting only ranks 1 to 10.
    pub mrr_at_10: f64,
    /// Share of queries whose thread is in the top 10.
    pub recall_at_10: f64,
    /// Share of queries whose thread is in the top 100.
    pub recall_at_100: f64,
}

/// The 1-based rank of the first hit of `question_id` among `question_ids` (the hits' questions
/// in ranked order).
pub fn rank_of(question_ids: &[u64], question_id: u64) -> Option<usize> {
    question_ids.iter().position(|&q| q == question_id).map(|i| i + 1)
}

/// MRR@10, Recall@10 and Recall@100 of the given results.
pub fn summarize<'a>(results: impl IntoIterator<Item = &'a KnownItemResult>) -> KnownItemSummary {
    let mut summary = KnownItemSummary::default();
    for result in results {
        summary.queries += 1;
        if let Some(rank) = result.rank {
            if rank <= 10 {
                summary.mrr_at_10 += 1.0 / rank as f64;
                summary.recall_at_10 += 1.0;
            }
            if rank <= 100 {
                summary.recall_at_100 += 1.0;
            }
        }
    }
    if summary.queries > 0 {
        let n = summary.queries as f64;
        summary.mrr_at_10 /= n;
        summary.recall_at_10 /= n;
        summary.recall_at_100 /= n;
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rank: Option<usize>) -> KnownItemResult {
        KnownItemResult { id: "k".into(), kind: String::new(), split: String::new(), rank }
    }

    #[test]
    fn ranks_and_means() {
        assert_eq!(rank_of(&[5, 7, 7, 9], 7), Some(2));
        assert_eq!(rank_of(&[5, 9], 7), None);
        let results = [result(Some(1)), result(Some(2)), result(Some(11)), result(None)];
        let summary = summarize(&results);
        assert_eq!(summary.queries, 4);
        assert!((summary.mrr_at_10 - (1.0 + 0.5) / 4.0).abs() < 1e-12);
        assert!((summary.recall_at_10 - 0.5).abs() < 1e-12);
        assert!((summary.recall_at_100 - 0.75).abs() < 1e-12);
        assert_eq!(summarize(&[]), KnownItemSummary::default());
    }

    #[test]
    fn files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known.jsonl");
        std::fs::write(&path, "{\"id\":\"a\",\"question_id\":3,\"query\":\"q\",\"split\":\"test\"}\n\n").unwrap();
        let items = read_known_items(&path).unwrap();
        assert_eq!((items.len(), items[0].question_id, items[0].split.as_str()), (1, 3, "test"));
        std::fs::write(
            &path,
            "{\"id\":\"a\",\"question_id\":3,\"query\":\"q\"}\n{\"id\":\"a\",\"question_id\":4,\"query\":\"r\"}\n",
        )
        .unwrap();
        assert!(read_known_items(&path).unwrap_err().to_string().contains(":2: duplicate id a"));
        std::fs::write(&path, "{\"id\":\"a\",\"query\":\"q\"}\n").unwrap();
        assert!(read_known_items(&path).unwrap_err().to_string().contains("question_id"));
    }
}
