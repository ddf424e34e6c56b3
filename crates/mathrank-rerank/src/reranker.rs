//! The shared inference queue: callers submit encoded pairs with a deadline; dedicated
//! inference threads (each with its own ONNX Runtime session, since `Session::run` takes
//! `&mut self`) serve them earliest deadline first.
//!
//! Each scheduling round takes, from the jobs in deadline order, the best-ranked pairs that
//! can still be scored before the earliest deadline among them (estimated with the
//! [`CostModel`] and a rate learned from the batches already run), plans them into micro-batches
//! by cost, and publishes every micro-batch's scores at once, so a caller whose deadline comes
//! first still has the scores of the batches that finished. A job none of whose pairs can be
//! finished in time is expired at once instead of taking inference from jobs that can be.
//! Pairs of cancelled jobs and of jobs past their deadline are never run.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ort::session::builder::GraphOptimizationLevel;

use crate::batch::{CostModel, Planner, Planning};
use crate::encode::{EncodedPair, PairEncoder};
use crate::jobs::{JobHandle, JobShared, lock};
use crate::model::{ModelInfo, OnnxModel, check_model_dir};
use crate::rounds::{Queue, Queued, Scheduler};
use crate::runtime::{Provider, init_runtime};
use crate::stats::{BATCH_BUCKETS, Counters, RerankerStats, efficiency};
use crate::worker::Worker;
use crate::{Error, Result, Score};

/// How the reranker loads and batches.
#[derive(Debug, Clone)]
pub struct RerankerOptions {
    /// Truncation length of a pair in tokens (the model's 512 at most).
    pub max_length: usize,
    /// Padded tokens per micro-batch.
    pub batch_tokens: usize,
    /// Pairs per micro-batch.
    pub max_batch: usize,
    /// Pairs one scheduling round takes from the queue before planning them; 0 means
    /// 4 x `max_batch`. More gives the planner more lengths to group, fewer lets a new call
    /// with an earlier deadline in sooner.
    pub round_pairs: usize,
    /// The longest a round may be estimated to take (once the speed is known): the most a
    /// call that arrives with an earlier deadline waits for the round in progress.
    pub max_round: Duration,
    /// ONNX Runtime intra-op threads per session; 0 means all cores.
    pub intra_threads: usize,
    /// Inference threads, each with its own session.
    pub inference_threads: usize,
    /// Jobs that may wait in the queue before callers get [`Error::Overloaded`].
    pub queue_capacity: usize,
    /// How long an inference thread waits for more jobs when fewer than `max_batch` pairs wait.
    pub max_wait: Duration,
    pub provider: Provider,
    /// When `provider` cannot start (no GPU, no provider library), run on the CPU instead of
    /// failing. Off by default: a GPU deployment silently on the CPU is a hundred times slower.
    pub cpu_fallback: bool,
    /// The GPU to run on, with [`Provider::Cuda`].
    pub device_id: i32,
    /// ONNX Runtime graph optimisation level, 0 (off) to 3 (all).
    pub optimization_level: u8,
    /// How pairs are grouped into micro-batches (other than [`Planning::Cost`] only to measure).
    pub planning: Planning,
    /// The cost model of the planner and of the deadline estimates.
    pub cost_model: CostModel,
    /// Every micro-batch takes at least this long: a slower model without a bigger one, for
    /// tests and capacity drills. Zero in service.
    pub min_batch_time: Duration,
    /// Path of libonnxruntime (else `ORT_DYLIB_PATH`, else next to the executable).
    pub ort_library: Option<PathBuf>,
}

impl Default for RerankerOptions {
    fn default() -> Self {
        Self::for_provider(Provider::Cpu)
    }
}

impl RerankerOptions {
    /// The defaults for a provider. On the CPU a micro-batch of 8192 padded tokens already
    /// keeps both cores busy; a GPU needs tens of thousands of tokens per run before its
    /// per-run overhead stops dominating, so its batches and rounds are larger.
    pub fn for_provider(provider: Provider) -> Self {
        let (batch_tokens, max_batch, cost_model) = match provider {
            Provider::Cpu => (8192, 32, CostModel::CPU),
            Provider::Cuda => (65_536, 256, CostModel::GPU),
        };
        Self {
            max_length: 512,
            batch_tokens,
            max_batch,
            round_pairs: 0,
            max_round: Duration::from_secs(1),
            intra_threads: 0,
            inference_threads: 1,
            queue_capacity: 256,
            max_wait: Duration::from_millis(2),
            provider,
            cpu_fallback: false,
            device_id: 0,
            optimization_level: 3,
            planning: Planning::Cost,
            cost_model,
            min_batch_time: Duration::ZERO,
            ort_library: None,
        }
    }
}

/// Scores of a question against answers, with timings.
#[derive(Debug, Clone, Default)]
pub struct ScoreReport {
    pub scores: Vec<Score>,
    pub tokenize: Duration,
    pub queued: Duration,
    pub infer: Duration,
    /// Real tokens / padded tokens over the micro-batches used.
    pub padding_efficiency: f64,
}

/// The cross-encoder behind a shared, deadline-ordered queue.
pub struct Reranker {
    encoder: PairEncoder,
    info: ModelInfo,
    fingerprint: [u8; 32],
    scheduler: Arc<Scheduler>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Reranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reranker").field("info", &self.info).finish()
    }
}

fn optimization(level: u8) -> GraphOptimizationLevel {
    match level {
        0 => GraphOptimizationLevel::Disable,
        1 => GraphOptimizationLevel::Level1,
        2 => GraphOptimizationLevel::Level2,
        _ => GraphOptimizationLevel::All,
    }
}

/// sha256 over what decides a pair's score: the graph, the tokenizer and the truncation length.
fn model_fingerprint(dir: &Path, max_length: usize) -> Result<[u8; 32]> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for file in ["model.onnx", "tokenizer.json"] {
        let path = dir.join(file);
        let mut reader = std::fs::File::open(&path)
            .map_err(|err| Error::InvalidModel { path: path.clone(), reason: format!("cannot read: {err}") })?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = std::io::Read::read(&mut reader, &mut buffer)
                .map_err(|err| Error::InvalidModel { path: path.clone(), reason: format!("cannot read: {err}") })?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        hasher.update(b"\0");
    }
    hasher.update((max_length as u64).to_le_bytes());
    Ok(hasher.finalize().into())
}

impl Reranker {
    /// Loads a model directory and starts the inference threads.
    pub fn load(dir: &Path, options: &RerankerOptions) -> Result<Self> {
        let config = check_model_dir(dir, options.max_length)?;
        let runtime = init_runtime(options.ort_library.as_deref())?;
        let encoder = PairEncoder::from_file(&dir.join("tokenizer.json"), options.max_length, config.vocab_size)?;
        let fingerprint = model_fingerprint(dir, options.max_length)?;
        let intra_threads = if options.intra_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.intra_threads
        };
        let max_batch = options.max_batch.max(1);
        let scheduler = Arc::new(Scheduler {
            queue: Mutex::new(Queue::default()),
            wakeup: Condvar::new(),
            capacity: options.queue_capacity.max(1),
            planner: Planner {
                batch_tokens: options.batch_tokens.max(options.max_length),
                max_batch,
                cost: options.cost_model,
                planning: options.planning,
            },
            round_pairs: if options.round_pairs == 0 { 4 * max_batch } else { options.round_pairs.max(max_batch) },
            max_round: options.max_round,
            max_wait: options.max_wait,
            rate: Mutex::new(None),
            counters: Counters::default(),
        });
        let mut threads = Vec::new();
        let mut provider = options.provider;
        for index in 0..options.inference_threads.max(1) {
            let load = |provider| {
                OnnxModel::load(
                    &dir.join("model.onnx"),
                    provider,
                    options.device_id,
                    intra_threads,
                    optimization(options.optimization_level),
                    options.ort_library.as_deref(),
                )
            };
            let model = match load(provider) {
                Err(err) if options.cpu_fallback && provider != Provider::Cpu => {
                    tracing::warn!(error = %err, requested = provider.name(), "the execution provider did not start; running on the CPU as --cpu-fallback asks (batch sizes stay as configured)");
                    provider = Provider::Cpu;
                    load(provider)?
                }
                other => other?,
            };
            let worker = Worker {
                model,
                scheduler: Arc::clone(&scheduler),
                pad_id: encoder.pad_id(),
                min_batch_time: options.min_batch_time,
            };
            let thread = std::thread::Builder::new()
                .name(format!("rerank-{index}"))
                .spawn(move || worker.run())
                .map_err(|err| Error::Inference(format!("cannot start an inference thread: {err}")))?;
            threads.push(thread);
        }
        let name = std::fs::read_to_string(dir.join("manifest.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|manifest| manifest.get("source_repo").and_then(|v| v.as_str()).map(str::to_owned))
            .or(config.name_or_path.clone().filter(|name| !name.is_empty()))
            .unwrap_or_else(|| {
                dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
            });
        let info = ModelInfo {
            name,
            path: dir.to_path_buf(),
            max_length: options.max_length,
            max_position_embeddings: config.max_position_embeddings,
            provider,
            intra_threads,
            ort_library: runtime.library.clone(),
            batch_tokens: scheduler.planner.batch_tokens,
            max_batch,
            batch_invariant: false,
        };
        let mut reranker = Self { encoder, info, fingerprint, scheduler, threads };
        reranker.info.batch_invariant = reranker.probe_batch_invariance()?;
        reranker.scheduler.counters.reset();
        let info = &reranker.info;
        tracing::info!(model = %info.name, path = %dir.display(), max_length = info.max_length, threads = intra_threads, batch_tokens = info.batch_tokens, max_batch, batch_invariant = info.batch_invariant, "loaded reranker");
        Ok(reranker)
    }

    /// Scores a short pair alone and then in one padded batch beside a longer pair, and says
    /// whether its logits came out bit for bit the same. ONNX Runtime's CPU kernels give the
    /// same bits whatever the batch (fp32 and the per-row int8 graph); other providers may
    /// tile their products by batch shape, and then a cached score could differ from a fresh
    /// one in its last bits.
    fn probe_batch_invariance(&self) -> Result<bool> {
        let short = self.encoder.encode_one("Why is $x^2 \\ge 0$?", "Squares are never negative.")?;
        // The same pair with five more answer tokens: long enough to pad the short one, close
        // enough that every cost model puts the two in one micro-batch.
        let mut long = short.clone();
        let (sep, last_type) = (long.input_ids.pop(), long.token_type_ids.pop());
        let filler = long.input_ids.last().copied().unwrap_or(5);
        long.input_ids.extend([filler; 5]);
        long.token_type_ids.extend([1; 5]);
        long.input_ids.extend(sep);
        long.token_type_ids.extend(last_type);
        let alone = self.submit(vec![short.clone()])?.wait()?.scores[0];
        let together = self.submit(vec![long, short])?.wait()?.scores[1];
        Ok(alone.logits.map(f32::to_bits) == together.logits.map(f32::to_bits))
    }

    pub fn encoder(&self) -> &PairEncoder {
        &self.encoder
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// sha256 of `model.onnx`, `tokenizer.json` and the truncation length: two rerankers with
    /// the same fingerprint give the same score to the same text.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Queues encoded pairs with no deadline. Fails at once with [`Error::Overloaded`] when
    /// the queue is full.
    pub fn submit(&self, pairs: Vec<EncodedPair>) -> Result<JobHandle> {
        self.submit_by(pairs, None)
    }

    /// Queues encoded pairs, best-ranked first, to be scored by `deadline`: jobs are served
    /// earliest deadline first, and pairs that cannot be scored by it are not run.
    pub fn submit_by(&self, pairs: Vec<EncodedPair>, deadline: Option<Instant>) -> Result<JobHandle> {
        let (shared, done) = JobShared::new(pairs.len());
        let handle = JobHandle { shared: Arc::clone(&shared), done };
        if pairs.is_empty() {
            shared.settle(&mut lock(&shared.state));
            return Ok(handle);
        }
        let mut queue = lock(&self.scheduler.queue);
        if queue.shutdown {
            return Err(Error::ShutDown);
        }
        if queue.jobs.len() >= self.scheduler.capacity {
            return Err(Error::Overloaded { capacity: self.scheduler.capacity });
        }
        queue.seq += 1;
        let pending = (0..pairs.len()).collect();
        let job = Queued { shared, pairs: Arc::new(pairs), pending, deadline, seq: queue.seq };
        let at = queue.jobs.partition_point(|other| other.key() <= job.key());
        queue.jobs.insert(at, job);
        drop(queue);
        self.scheduler.wakeup.notify_all();
        Ok(handle)
    }

    /// Encodes and scores one question against answers, blocking (CLI, tests).
    pub fn score_blocking(&self, question: &str, answers: &[&str]) -> Result<ScoreReport> {
        let started = Instant::now();
        let pairs = self.encoder.encode_many(question, answers)?;
        let tokenize = started.elapsed();
        let output = self.submit(pairs)?.wait()?;
        Ok(ScoreReport {
            scores: output.scores,
            tokenize,
            queued: output.queued,
            infer: output.infer,
            padding_efficiency: efficiency(output.real_tokens, output.padded_tokens),
        })
    }

    pub fn stats(&self) -> RerankerStats {
        let c = &self.scheduler.counters;
        let mut cumulative = Vec::with_capacity(BATCH_BUCKETS.len());
        let mut total = 0;
        for bucket in &c.batch_size_buckets {
            total += bucket.load(Ordering::Relaxed);
            cumulative.push(total);
        }
        RerankerStats {
            queue_depth: lock(&self.scheduler.queue).jobs.len() as u64,
            batches: c.batches.load(Ordering::Relaxed),
            pairs: c.pairs.load(Ordering::Relaxed),
            real_tokens: c.real_tokens.load(Ordering::Relaxed),
            padded_tokens: c.padded_tokens.load(Ordering::Relaxed),
            infer_seconds: c.infer_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            cancelled_jobs: c.cancelled_jobs.load(Ordering::Relaxed),
            expired_jobs: c.expired_jobs.load(Ordering::Relaxed),
            skipped_pairs: c.skipped_pairs.load(Ordering::Relaxed),
            seconds_per_cost_unit: self.scheduler.rate().unwrap_or(0.0),
            batch_size_cumulative: cumulative,
        }
    }
}

impl Drop for Reranker {
    fn drop(&mut self) {
        lock(&self.scheduler.queue).shutdown = true;
        self.scheduler.wakeup.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
