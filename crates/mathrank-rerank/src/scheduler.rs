//! Cross-request batching: callers submit encoded pairs to a bounded queue; dedicated
//! inference threads (each with its own ONNX Runtime session, since `Session::run` takes
//! `&mut self`) merge whatever is queued into length-sorted micro-batches.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ort::session::builder::GraphOptimizationLevel;

use crate::batch::plan_micro_batches;
use crate::encode::{EncodedPair, PairEncoder};
use crate::model::{ModelInfo, OnnxModel, check_model_dir};
use crate::runtime::{Provider, init_runtime};
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
    /// ONNX Runtime intra-op threads per session; 0 means all cores.
    pub intra_threads: usize,
    /// Inference threads, each with its own session.
    pub inference_threads: usize,
    /// Jobs that may wait in the queue before callers get [`Error::Overloaded`].
    pub queue_capacity: usize,
    /// How long an inference thread waits for more jobs to fill a batch.
    pub max_wait: Duration,
    pub provider: Provider,
    /// The GPU to run on, with [`Provider::Cuda`].
    pub device_id: i32,
    /// ONNX Runtime graph optimisation level, 0 (off) to 3 (all).
    pub optimization_level: u8,
    /// Sort pairs by length before cutting micro-batches (off only to measure its effect).
    pub length_sorting: bool,
    /// Path of libonnxruntime (else `ORT_DYLIB_PATH`, else next to the executable).
    pub ort_library: Option<PathBuf>,
}

impl Default for RerankerOptions {
    fn default() -> Self {
        Self {
            max_length: 512,
            batch_tokens: 8192,
            max_batch: 32,
            intra_threads: 0,
            inference_threads: 1,
            queue_capacity: 256,
            max_wait: Duration::from_millis(2),
            provider: Provider::Cpu,
            device_id: 0,
            optimization_level: 3,
            length_sorting: true,
            ort_library: None,
        }
    }
}

/// Scores of one job, in the order its pairs were submitted, with where the time went.
#[derive(Debug, Clone, Default)]
pub struct JobOutput {
    pub scores: Vec<Score>,
    /// Time in the queue before an inference thread took the job.
    pub queued: Duration,
    /// Inference time of the micro-batches that held this job's pairs.
    pub infer: Duration,
    pub real_tokens: u64,
    pub padded_tokens: u64,
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

struct Job {
    pairs: Vec<EncodedPair>,
    reply: tokio::sync::oneshot::Sender<Result<JobOutput>>,
    cancelled: Arc<AtomicBool>,
    enqueued: Instant,
}

/// A submitted job. Dropping it cancels the work that has not started yet.
#[derive(Debug)]
pub struct JobHandle {
    receiver: tokio::sync::oneshot::Receiver<Result<JobOutput>>,
    cancelled: Arc<AtomicBool>,
}

impl JobHandle {
    /// Waits for the scores (blocking; do not call on an async worker).
    pub fn wait(mut self) -> Result<JobOutput> {
        let receiver = std::mem::replace(&mut self.receiver, tokio::sync::oneshot::channel().1);
        receiver.blocking_recv().unwrap_or(Err(Error::ShutDown))
    }

    /// Waits for the scores (async).
    pub async fn output(&mut self) -> Result<JobOutput> {
        (&mut self.receiver).await.unwrap_or(Err(Error::ShutDown))
    }

    /// Stops the job if it has not run yet.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Counters for metrics.
#[derive(Debug, Default)]
struct Counters {
    queue_depth: AtomicU64,
    batches: AtomicU64,
    pairs: AtomicU64,
    real_tokens: AtomicU64,
    padded_tokens: AtomicU64,
    infer_nanos: AtomicU64,
    cancelled_jobs: AtomicU64,
    batch_size_buckets: [AtomicU64; BATCH_BUCKETS.len()],
}

/// Upper bounds of the batch-size histogram buckets (the last is +Inf).
pub const BATCH_BUCKETS: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, u64::MAX];

/// A snapshot of the reranker's counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RerankerStats {
    pub queue_depth: u64,
    pub batches: u64,
    pub pairs: u64,
    pub real_tokens: u64,
    pub padded_tokens: u64,
    pub infer_seconds: f64,
    pub cancelled_jobs: u64,
    /// Cumulative counts per bucket of [`BATCH_BUCKETS`] (Prometheus style).
    pub batch_size_cumulative: Vec<u64>,
}

/// The cross-encoder behind a shared queue.
pub struct Reranker {
    encoder: PairEncoder,
    info: ModelInfo,
    sender: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
    capacity: usize,
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

impl Reranker {
    /// Loads a model directory and starts the inference threads.
    pub fn load(dir: &Path, options: &RerankerOptions) -> Result<Self> {
        let config = check_model_dir(dir, options.max_length)?;
        let runtime = init_runtime(options.ort_library.as_deref())?;
        let encoder = PairEncoder::from_file(&dir.join("tokenizer.json"), options.max_length, config.vocab_size)?;
        let intra_threads = if options.intra_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.intra_threads
        };
        let (sender, receiver) = crossbeam_channel::bounded::<Job>(options.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let mut threads = Vec::new();
        for index in 0..options.inference_threads.max(1) {
            let model = OnnxModel::load(
                &dir.join("model.onnx"),
                options.provider,
                options.device_id,
                intra_threads,
                optimization(options.optimization_level),
                options.ort_library.as_deref(),
            )?;
            let worker = Worker {
                model,
                receiver: receiver.clone(),
                counters: Arc::clone(&counters),
                batch_tokens: options.batch_tokens.max(options.max_length),
                max_batch: options.max_batch.max(1),
                max_wait: options.max_wait,
                length_sorting: options.length_sorting,
                pad_id: encoder.pad_id(),
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
            provider: options.provider,
            intra_threads,
            ort_library: runtime.library.clone(),
        };
        tracing::info!(model = %info.name, path = %dir.display(), max_length = info.max_length, threads = intra_threads, "loaded reranker");
        Ok(Self { encoder, info, sender: Some(sender), threads, counters, capacity: options.queue_capacity.max(1) })
    }

    pub fn encoder(&self) -> &PairEncoder {
        &self.encoder
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Queues encoded pairs. Fails at once with [`Error::Overloaded`] when the queue is full.
    pub fn submit(&self, pairs: Vec<EncodedPair>) -> Result<JobHandle> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let job = Job { pairs, reply, cancelled: Arc::clone(&cancelled), enqueued: Instant::now() };
        let sender = self.sender.as_ref().ok_or(Error::ShutDown)?;
        self.counters.queue_depth.fetch_add(1, Ordering::Relaxed);
        match sender.try_send(job) {
            Ok(()) => Ok(JobHandle { receiver, cancelled }),
            Err(err) => {
                self.counters.queue_depth.fetch_sub(1, Ordering::Relaxed);
                match err {
                    TrySendError::Full(_) => Err(Error::Overloaded { capacity: self.capacity }),
                    TrySendError::Disconnected(_) => Err(Error::ShutDown),
                }
            }
        }
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
        let c = &self.counters;
        let mut cumulative = Vec::with_capacity(BATCH_BUCKETS.len());
        let mut total = 0;
        for bucket in &c.batch_size_buckets {
            total += bucket.load(Ordering::Relaxed);
            cumulative.push(total);
        }
        RerankerStats {
            queue_depth: c.queue_depth.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            pairs: c.pairs.load(Ordering::Relaxed),
            real_tokens: c.real_tokens.load(Ordering::Relaxed),
            padded_tokens: c.padded_tokens.load(Ordering::Relaxed),
            infer_seconds: c.infer_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            cancelled_jobs: c.cancelled_jobs.load(Ordering::Relaxed),
            batch_size_cumulative: cumulative,
        }
    }
}

impl Drop for Reranker {
    fn drop(&mut self) {
        self.sender.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Real tokens / padded tokens (1.0 when nothing ran).
pub fn efficiency(real: u64, padded: u64) -> f64 {
    if padded == 0 { 1.0 } else { real as f64 / padded as f64 }
}

struct Worker {
    model: OnnxModel,
    receiver: Receiver<Job>,
    counters: Arc<Counters>,
    batch_tokens: usize,
    max_batch: usize,
    max_wait: Duration,
    length_sorting: bool,
    pad_id: i64,
}

impl Worker {
    fn run(mut self) {
        while let Ok(first) = self.receiver.recv() {
            let mut jobs = vec![first];
            let mut pairs: usize = jobs[0].pairs.len();
            let deadline = Instant::now() + self.max_wait;
            while pairs < self.max_batch {
                match self.receiver.recv_deadline(deadline) {
                    Ok(job) => {
                        pairs += job.pairs.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.counters.queue_depth.fetch_sub(jobs.len() as u64, Ordering::Relaxed);
            self.serve(jobs);
        }
    }

    fn serve(&mut self, jobs: Vec<Job>) {
        let started = Instant::now();
        let mut live = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.cancelled.load(Ordering::Relaxed) || job.reply.is_closed() {
                self.counters.cancelled_jobs.fetch_add(1, Ordering::Relaxed);
            } else {
                live.push(job);
            }
        }
        let mut outputs: Vec<JobOutput> = live
            .iter()
            .map(|job| JobOutput {
                scores: vec![Score::from_logits([0.0, 0.0]); job.pairs.len()],
                queued: started.duration_since(job.enqueued),
                ..JobOutput::default()
            })
            .collect();
        let mut failures: Vec<Option<Error>> = live.iter().map(|_| None).collect();
        let slots: Vec<(usize, usize)> =
            live.iter().enumerate().flat_map(|(j, job)| (0..job.pairs.len()).map(move |p| (j, p))).collect();
        let lengths: Vec<usize> = slots.iter().map(|&(j, p)| live[j].pairs[p].len()).collect();
        for batch in plan_micro_batches(&lengths, self.batch_tokens, self.max_batch, self.length_sorting) {
            let members: Vec<(usize, usize)> = batch
                .members
                .iter()
                .map(|&slot| slots[slot])
                .filter(|&(j, _)| failures[j].is_none() && !live[j].cancelled.load(Ordering::Relaxed))
                .collect();
            if members.is_empty() {
                continue;
            }
            let width = members.iter().map(|&(j, p)| live[j].pairs[p].len()).max().unwrap_or(0);
            let inputs: Vec<&EncodedPair> = members.iter().map(|&(j, p)| &live[j].pairs[p]).collect();
            let real: u64 = inputs.iter().map(|pair| pair.len() as u64).sum();
            let padded = (inputs.len() * width) as u64;
            let batch_started = Instant::now();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.model.run(&inputs, width, self.pad_id)))
                .unwrap_or_else(|_| Err(Error::Inference("ONNX Runtime panicked on this batch".into())));
            let took = batch_started.elapsed();
            self.record(inputs.len(), real, padded, took);
            match outcome {
                Ok(logits) => {
                    let mut touched: Vec<usize> = Vec::new();
                    for (&(j, p), logits) in members.iter().zip(logits) {
                        outputs[j].scores[p] = Score::from_logits(logits);
                        outputs[j].real_tokens += live[j].pairs[p].len() as u64;
                        outputs[j].padded_tokens += width as u64;
                        if !touched.contains(&j) {
                            touched.push(j);
                        }
                    }
                    for j in touched {
                        outputs[j].infer += took;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, batch = inputs.len(), width, "inference failed");
                    for &(j, _) in &members {
                        if failures[j].is_none() {
                            failures[j] = Some(Error::Inference(err.to_string()));
                        }
                    }
                }
            }
        }
        for ((job, output), failure) in live.into_iter().zip(outputs).zip(failures) {
            let result = if job.cancelled.load(Ordering::Relaxed) {
                Err(Error::Cancelled)
            } else {
                match failure {
                    Some(err) => Err(err),
                    None => Ok(output),
                }
            };
            let _ = job.reply.send(result);
        }
    }

    fn record(&self, size: usize, real: u64, padded: u64, took: Duration) {
        let c = &self.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.pairs.fetch_add(size as u64, Ordering::Relaxed);
        c.real_tokens.fetch_add(real, Ordering::Relaxed);
        c.padded_tokens.fetch_add(padded, Ordering::Relaxed);
        c.infer_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        let bucket = BATCH_BUCKETS.iter().position(|&bound| size as u64 <= bound).unwrap_or(BATCH_BUCKETS.len() - 1);
        c.batch_size_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }
}
