//! The mathrank engine without any transport: request validation, admission control, BM25
//! retrieval, anytime reranking under a deadline, and the one place where queries and
//! candidates are turned into the text the model reads. The gRPC and HTTP adapters of
//! `mathrank-server`, and the CLI's local commands, all call it; it never sees tonic, axum,
//! hyper or rustls.
//!
//! ```
//! use std::sync::Arc;
//! use mathrank_engine::{Engine, Limits, SearchParams};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let answer = mathrank_dump::JoinedAnswer {
//!     answer_id: 2,
//!     question_id: 1,
//!     question_title: "Area under a parabola".into(),
//!     tags: vec!["calculus".into()],
//!     accepted: true,
//!     votes: 4,
//!     created: 1_600_000_000,
//!     body_html: r"<p>$\int_0^1 x^2\,dx = \frac{1}{3}$ by the power rule.</p>".into(),
//!     question_body_html: "<p>How do I find the area under $y = x^2$ from 0 to 1?</p>".into(),
//! };
//! let index = Arc::new(mathrank_index::AnswerIndex::build_in_ram(vec![answer])?);
//! let engine = Engine::new(index, None, Limits::default());
//! let runtime = tokio::runtime::Runtime::new()?;
//! let params = SearchParams { query: r"\int_0^1 x^2 dx".into(), ..SearchParams::default() };
//! let outcome = runtime.block_on(engine.search(params))?;
//! assert_eq!(outcome.hits[0].hit.answer_id, 2);
//! assert!(!outcome.partial);
//! # Ok(()) }
//! ```

mod cache;
mod engine;
mod ranking;
mod replica;
pub mod write;

pub use cache::{CacheKey, CacheStats, ENTRY_BYTES, ScoreCache, cache_key};
pub use engine::{
    Admission, DEFAULT_SCORE_CACHE_MB, Engine, Limits, LongAnswers, PartialReason, RankedHit, RerankOutcome,
    RerankParams, RerankedCandidate, SearchOutcome, SearchParams, Timings,
};
pub use ranking::{
    DEFAULT_LINEAR_WEIGHT, DEFAULT_RRF_K, Fusion, compare_fused, compare_scored, normalize_candidate,
    normalize_question, ranking_value,
};
pub use replica::{READY_LAG, ReplicaStatus, SAMPLE_EVERY};
pub use write::{ItemError, ItemOutcome, ItemResult, PostInput, WriteItem, WriteOutcome};

/// Domain errors of the engine. Each protocol adapter maps them to its statuses in one
/// function (gRPC codes, HTTP statuses).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid {field}: {message}")]
    InvalidArgument { field: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("overloaded: {0}")]
    Overloaded(String),
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    #[error("this server has no reranking model loaded; set rerank=false for the BM25 order")]
    NoModel,
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("the request was cancelled")]
    Cancelled,
    /// The index failed (I/O, a damaged segment): nothing the caller can fix.
    #[error("the index failed")]
    Index(#[source] mathrank_index::Error),
    /// The tokenizer or the model failed.
    #[error("the reranker failed")]
    Rerank(#[source] mathrank_rerank::Error),
    /// A worker task panicked.
    #[error("{0} failed")]
    Task(&'static str, #[source] tokio::task::JoinError),
}

impl EngineError {
    /// Whether the fault is the server's own (the index, the reranker, a worker task).
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Index(_) | Self::Rerank(_) | Self::Task(..))
    }

    /// The message with its causes, `what failed: why`, as callers read it.
    pub fn message(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            // Some causes already say what their own source said.
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        message
    }

    /// The request field at fault, for errors about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::InvalidArgument { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// An `InvalidArgument` naming `field`.
pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument { field, message: message.into() }
}
