//! ARQMath evaluation: Task 1 topics, TREC qrels and runs, and the metrics ARQMath reports
//! (nDCG', MAP', P'@10), computed as trec_eval computes them; and known-item evaluation
//! (MRR@10, Recall@10, Recall@100 of a thread each query was written for).
//!
//! ```
//! use std::collections::HashMap;
//! use mathrank_eval::topic_metrics;
//!
//! let judgments: HashMap<String, i32> = [("7".to_owned(), 3), ("8".to_owned(), 0)].into();
//! let run = vec![("8".to_owned(), 2.0), ("7".to_owned(), 1.0), ("9".to_owned(), 0.5)];
//! let m = topic_metrics(&run, &judgments);
//! assert_eq!(m.judged_retrieved, 2); // "9" is unjudged: removed for the primed measures
//! assert!((m.map_prime - 0.5).abs() < 1e-12);
//! ```

mod known;
mod metrics;
mod topics;

use std::path::Path;

pub use known::{KnownItem, KnownItemResult, KnownItemSummary, rank_of, read_known_items, summarize};
pub use metrics::{
    Evaluation, Qrels, RELEVANT_GRADE, Run, TopicMetrics, evaluate, format_evaluation, parse_run, read_qrels, read_run,
    topic_metrics,
};
pub use topics::{Topic, read_topics};

/// Errors of reading evaluation files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path} (check the path)")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line { path: String, line: usize, message: String },
    #[error("{path} is not ARQMath topics XML: {reason}")]
    Topics { path: String, reason: String },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })
}
