//! Flags shared by every command that loads the reranking model.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use mathrank_rerank::{CostModel, Planning, Provider, Reranker, RerankerOptions};

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Model and inference")]
pub struct ModelArgs {
    /// Model directory (model.onnx, tokenizer.json, config.json). Default: the model cache that
    /// `mathrank model fetch` fills.
    #[arg(long, env = "MATHRANK_MODEL")]
    pub model: Option<PathBuf>,
    /// ONNX Runtime shared library (libonnxruntime.so, >= 1.31). Default: ORT_DYLIB_PATH, then
    /// next to the executable, then ./.ort/ (scripts/setup-ort.sh).
    #[arg(long, env = "MATHRANK_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,
    /// Truncate (question, answer) pairs to this many tokens (the model's 512 at most).
    #[arg(long, env = "MATHRANK_MAX_LENGTH", default_value_t = 512)]
    pub max_length: usize,
    /// Padded tokens per inference micro-batch [default: 8192 with --provider cpu, 65536 with cuda].
    #[arg(long, env = "MATHRANK_BATCH_TOKENS")]
    pub batch_tokens: Option<usize>,
    /// Pairs per inference micro-batch [default: 32 with --provider cpu, 256 with cuda].
    #[arg(long, env = "MATHRANK_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Pairs one scheduling round takes from the queue (best-ranked first, earliest deadline
    /// first) before planning them into micro-batches [default: 4 x --max-batch].
    #[arg(long, env = "MATHRANK_ROUND_PAIRS")]
    pub round_pairs: Option<usize>,
    /// The batch planner's cost model, `per_batch=N,attention=A`: a micro-batch of B pairs
    /// padded to W tokens costs per_batch + B*(W + attention*W^2). Fit one for your hardware
    /// with `mathrank-bench cost-model` [default: fitted per provider, see docs/operations.md].
    #[arg(long, env = "MATHRANK_COST_MODEL")]
    pub cost_model: Option<CostModel>,
    /// How pairs are grouped into micro-batches: `cost` (sorted by length, least estimated
    /// cost); `greedy` (sorted by length, cut at the token budget) and `input-order` (the usual
    /// Python loop) only to measure against.
    #[arg(long, env = "MATHRANK_PLANNING", default_value = "cost")]
    pub planning: Planning,
    /// ONNX Runtime intra-op threads (0 = all cores).
    #[arg(long = "threads", env = "MATHRANK_INFER_THREADS", default_value_t = 0)]
    pub intra_threads: usize,
    /// Inference threads, each with its own ONNX Runtime session.
    #[arg(long, env = "MATHRANK_INFERENCE_THREADS", default_value_t = 1)]
    pub inference_threads: usize,
    /// Execution provider: cpu, or cuda (needs a build with `--features cuda`).
    #[arg(long, env = "MATHRANK_PROVIDER", default_value = "cpu")]
    pub provider: Provider,
    /// With --provider cuda: run on the CPU when the GPU provider cannot start, instead of
    /// refusing to start. Info and metrics then report `cpu`.
    #[arg(long, env = "MATHRANK_CPU_FALLBACK")]
    pub cpu_fallback: bool,
    /// The GPU to use with --provider cuda.
    #[arg(long, env = "MATHRANK_DEVICE_ID", default_value_t = 0)]
    pub device_id: i32,
    /// With --provider cuda: the attention kernels ONNX Runtime may choose from, in its order
    /// of preference: `flash`, `cudnn` (cuDNN's SDPA, cuDNN 9.3 or newer), `efficient`
    /// (cutlass), and `math` (unfused) when none applies. The choice is logged at load;
    /// ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO=1 prints the kernel of every attention node.
    #[arg(long, env = "MATHRANK_ATTENTION_KERNELS", default_value = "flash,efficient,math")]
    pub attention_kernels: mathrank_rerank::AttentionKernels,
    /// ONNX Runtime graph optimisation level: 0 (off) to 3 (all).
    #[arg(long, env = "MATHRANK_OPT_LEVEL", default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub optimization_level: u8,
    /// Jobs that may wait for inference before callers are refused.
    #[arg(long, env = "MATHRANK_RERANK_QUEUE", default_value_t = 256)]
    pub queue_capacity: usize,
    /// Milliseconds an inference thread waits to fill a batch with other callers' pairs.
    #[arg(long, env = "MATHRANK_MAX_WAIT_MS", default_value_t = 2)]
    pub max_wait_ms: u64,
}

impl ModelArgs {
    /// The reranker options: the provider's defaults, then what the flags set.
    pub fn options(&self) -> RerankerOptions {
        let defaults = RerankerOptions::for_provider(self.provider);
        let max_batch = self.max_batch.unwrap_or(defaults.max_batch);
        RerankerOptions {
            max_length: self.max_length,
            batch_tokens: self.batch_tokens.unwrap_or(defaults.batch_tokens),
            max_batch,
            round_pairs: self.round_pairs.unwrap_or(0),
            intra_threads: self.intra_threads,
            inference_threads: self.inference_threads,
            queue_capacity: self.queue_capacity,
            max_wait: std::time::Duration::from_millis(self.max_wait_ms),
            device_id: self.device_id,
            attention_kernels: self.attention_kernels,
            cpu_fallback: self.cpu_fallback,
            optimization_level: self.optimization_level,
            cost_model: self.cost_model.unwrap_or(defaults.cost_model),
            planning: self.planning,
            ort_library: self.ort_lib.clone(),
            ..defaults
        }
    }

    /// The model directory: --model / MATHRANK_MODEL, else the cached default model.
    pub fn resolve_model_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.model {
            return Ok(dir.clone());
        }
        mathrank_model::find_cached_default().ok_or_else(|| {
            anyhow::anyhow!(
                "no reranking model: pass --model DIR (or set MATHRANK_MODEL), or run `mathrank model fetch` to download and convert {} into {}; to search with BM25 only, pass --no-rerank",
                mathrank_model::DEFAULT_REPO,
                mathrank_model::cached_model_dir(mathrank_model::DEFAULT_REPO, "main").display()
            )
        })
    }

    pub fn load(&self) -> anyhow::Result<Reranker> {
        let dir = self.resolve_model_dir()?;
        Reranker::load(&dir, &self.options()).with_context(|| format!("loading model {}", dir.display()))
    }
}
