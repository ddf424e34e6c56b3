//! ALBERT cross-encoder reranking on ONNX Runtime.
//!
//! The model runs behind a [`Backend`]: [`OrtBackend`] (ONNX Runtime's CPU or CUDA execution
//! provider) in service, the deterministic [`FakeModel`] in tests.
//!
//! A model directory holds `model.onnx` (inputs `input_ids`, `attention_mask`,
//! `token_type_ids`, int64 `[batch, sequence]`; output `logits` float32 `[batch, 2]`),
//! `tokenizer.json` and `config.json`. Pairs are encoded exactly as the model was trained —
//! `[CLS] question [SEP] answer [SEP]`, token types 0/1, `longest_first` truncation — then
//! sorted by length and cut into the micro-batches of least estimated cost, each padded only to
//! its own longest pair ([`plan_by_cost`]). Concurrent callers share micro-batches through a
//! bounded queue served earliest deadline first by dedicated inference threads ([`Reranker`]).
//!
//! ```no_run
//! use mathrank_rerank::{Reranker, RerankerOptions};
//!
//! let reranker = Reranker::load("models/albert".as_ref(), &RerankerOptions::default())?;
//! let scores = reranker.score_blocking("What is $\\int_0^1 x\\,dx$?", &["It is $1/2$.", "Use induction."])?;
//! assert!(scores.scores[0].relevance >= 0.0 && scores.scores[0].relevance <= 1.0);
//! # Ok::<(), mathrank_rerank::Error>(())
//! ```

mod backend;
mod batch;
mod clock;
mod encode;
mod jobs;
mod manifest;
mod model;
pub mod packing;
mod reranker;
mod rounds;
mod runtime;
mod stats;
mod worker;

pub use backend::{AttentionKernels, Backend, FakeBatch, FakeModel, OrtBackend, SessionOptions, write_optimized_model};
pub use batch::{CostModel, MicroBatch, Planner, Planning, plan_by_cost, plan_micro_batches};
pub use encode::{EncodedPair, PairEncoder};
pub use jobs::{JobHandle, JobOutput, JobProgress};
pub use manifest::{Manifest, SourceFile, sha256_file, sha256_hex};
pub use model::{ModelConfig, ModelInfo, check_model_dir};
pub use reranker::{Reranker, RerankerOptions, ScoreReport};
pub use runtime::{Provider, RuntimeInfo, find_ort_library, init_runtime};
pub use stats::{BATCH_BUCKETS, RerankerStats, efficiency};

use std::path::PathBuf;

/// Errors of the reranker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "ONNX Runtime library not found (looked in: {searched}); point ORT_DYLIB_PATH (or the reranker's library path) at libonnxruntime.so from ONNX Runtime >= 1.31 (e.g. `pip download --no-deps onnxruntime` and unzip onnxruntime/capi/libonnxruntime.so.*)"
    )]
    LibraryNotFound { searched: String },
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    LibraryLoad { path: PathBuf, reason: String },
    #[error(
        "model directory {path} is missing {file}; a model directory holds model.onnx, tokenizer.json and config.json"
    )]
    MissingFile { path: PathBuf, file: &'static str },
    #[error("invalid model {path}: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    #[error("invalid tokenizer {path}: {reason}")]
    InvalidTokenizer { path: PathBuf, reason: String },
    #[error(
        "max_length {max_length} is longer than the model's max_position_embeddings ({limit}); use a max_length of {limit} or less"
    )]
    TooLong { max_length: usize, limit: usize },
    #[error("tokenizing failed: {0}")]
    Tokenize(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the reranker queue is full ({capacity} jobs waiting); retry later or lower the load")]
    Overloaded { capacity: usize },
    #[error("the reranker is shut down")]
    ShutDown,
    #[error("the rerank job was cancelled")]
    Cancelled,
    #[error("the deadline came before {} of {total} pairs could be scored", total - scored)]
    Expired { scored: usize, total: usize },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The score of one (question, answer) pair.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Score {
    /// Raw logits `[not relevant, relevant]`.
    pub logits: [f32; 2],
    /// `softmax(logits)[1]`: the model card's probability of "relevant".
    pub relevance: f32,
}

impl Score {
    pub fn from_logits(logits: [f32; 2]) -> Self {
        Self { logits, relevance: relevance(logits) }
    }

    /// `logits[1] - logits[0]`: the log-odds of "relevant" (the logit of `relevance`).
    pub fn margin(&self) -> f32 {
        self.logits[1] - self.logits[0]
    }
}

/// `softmax(logits)[1]`, computed stably.
pub fn relevance(logits: [f32; 2]) -> f32 {
    // softmax([a, b])[1] = 1 / (1 + e^(a - b)); the logistic form never overflows.
    let diff = logits[0] - logits[1];
    if diff > 0.0 {
        let e = (-diff).exp();
        e / (1.0 + e)
    } else {
        1.0 / (1.0 + diff.exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relevance_is_softmax_of_the_relevant_logit() {
        for logits in [[0.0f32, 0.0], [1.5, -0.5], [-3.0, 2.0], [100.0, -100.0], [-100.0, 100.0]] {
            let expected = (logits[1] as f64).exp() / ((logits[0] as f64).exp() + (logits[1] as f64).exp());
            let got = relevance(logits) as f64;
            assert!(
                (got - expected).abs() < 1e-6 || (expected.is_nan() && got.is_finite()),
                "{logits:?}: {got} vs {expected}"
            );
        }
        // Far out, the logistic form neither overflows nor loses the answer.
        assert!(relevance([100.0, -100.0]) < 1e-30);
        assert_eq!(relevance([-100.0, 100.0]), 1.0);
        assert_eq!(relevance([1e30, -1e30]), 0.0);
        assert_eq!(relevance([-1e30, 1e30]), 1.0);
    }
}
