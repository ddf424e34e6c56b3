//! What runs the model: a [`Backend`] scores one padded micro-batch at a time. The reranker
//! owns one per inference thread and never sees which it has. [`OrtBackend`] is ONNX Runtime
//! (CPU or CUDA execution provider); [`FakeModel`] is a deterministic stand-in for tests, with
//! no ONNX Runtime at all.

mod fake;
mod onnxruntime;

pub use fake::{FakeBatch, FakeModel};
pub use onnxruntime::{AttentionKernels, OrtBackend, SessionOptions, write_optimized_model};

use crate::Result;
use crate::encode::EncodedPair;

/// A model that scores (question, answer) pairs.
pub trait Backend: Send {
    /// Scores one micro-batch: `pairs`, each padded (right) to `width` tokens, the longest of
    /// them. Returns the logits `[not relevant, relevant]` of each pair, in order.
    fn predict(&mut self, pairs: &[&EncodedPair], width: usize) -> Result<Vec<[f32; 2]>>;

    /// Whether the model computes on the real tokens only (a packed graph), so that a batch
    /// costs its pairs' own lengths rather than its width: the planner's cost model follows.
    fn padding_free(&self) -> bool {
        false
    }
}
