//! The loaded reranker: a tokenizer, a [`Backend`] per inference thread, and the shared queue
//! they serve. Callers submit encoded pairs with a deadline; the inference threads serve them
//! earliest deadline first (see `rounds`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::{AttentionKernels, Backend, FakeModel, OrtBackend, SessionOptions};
use crate::batch::{CostModel, Planning};
use crate::clock::Clock;
use crate::encode::{EncodedPair, PairEncoder};
use crate::jobs::{JobHandle, JobShared, lock};
use crate::model::{ModelDir, ModelInfo};
use crate::rounds::Scheduler;
use crate::runtime::{Provider, init_runtime};
use crate::stats::{BATCH_BUCKETS, RerankerStats, efficiency};
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
    /// The attention kernels the CUDA provider may choose from.
    pub attention_kernels: AttentionKernels,
    /// ONNX Runtime graph optimisation level, 0 (off) to 3 (all).
    pub optimization_level: u8,
    /// How pairs are grouped into micro-batches (other than [`Planning::Cost`] only to measure).
    pub planning: Planning,
    /// The cost model of the planner and of the deadline estimates.
    pub cost_model: CostModel,
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
            Provider::Cpu | Provider::Fake => (8192, 32, CostModel::CPU),
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
            attention_kernels: AttentionKernels::DEFAULT,
            optimization_level: 3,
            planning: Planning::Cost,
            cost_model,
            ort_library: None,
        }
    }

    fn session(&self, provider: Provider, intra_threads: usize) -> SessionOptions {
        SessionOptions {
            provider,
            device_id: self.device_id,
            intra_threads,
            optimization_level: self.optimization_level,
            attention_kernels: self.attention_kernels,
            ort_library: self.ort_library.clone(),
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

/// sha256 over what decides a pair's score: the graph, the tokenizer and the truncation length.
fn fingerprint(parts: &[&[u8]], max_length: usize) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update(b"\0");
    }
    hasher.update((max_length as u64).to_le_bytes());
    hasher.finalize().into()
}

/// The options, with the planner's cost model made packed when the graph is padding-free (the
/// CUDA default becomes [`CostModel::GPU_PACKED`], one given explicitly keeps its numbers).
fn with_padding_free_costs(options: &RerankerOptions, padding_free: bool) -> RerankerOptions {
    let mut options = options.clone();
    if padding_free && !options.cost_model.packed {
        options.cost_model =
            if options.cost_model == CostModel::GPU { CostModel::GPU_PACKED } else { options.cost_model.packed() };
        tracing::info!(cost_model = ?options.cost_model, "padding-free graph: batches cost their real tokens");
    }
    options
}

impl Reranker {
    /// Loads a model directory on ONNX Runtime and starts the inference threads.
    pub fn load(dir: &Path, options: &RerankerOptions) -> Result<Self> {
        let model = ModelDir::open(dir, options.max_length)?;
        let runtime = init_runtime(options.ort_library.as_deref())?;
        let encoder = PairEncoder::from_file(&dir.join("tokenizer.json"), options.max_length, model.config.vocab_size)?;
        let intra_threads = if options.intra_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.intra_threads
        };
        let onnx_path = dir.join("model.onnx");
        let mut provider = options.provider;
        let mut backends: Vec<Box<dyn Backend>> = Vec::new();
        for _ in 0..options.inference_threads.max(1) {
            let load = |provider| {
                OrtBackend::new(&model.onnx, &onnx_path, &options.session(provider, intra_threads), encoder.pad_id())
            };
            let backend = match load(provider) {
                Err(err) if options.cpu_fallback && provider != Provider::Cpu => {
                    tracing::warn!(error = %err, requested = provider.name(), "the execution provider did not start; running on the CPU as --cpu-fallback asks (batch sizes stay as configured)");
                    provider = Provider::Cpu;
                    load(provider)?
                }
                other => other?,
            };
            backends.push(Box::new(backend));
        }
        let manifest = model.manifest.as_ref();
        let name = manifest
            .map(|manifest| manifest.source_repo.clone())
            .filter(|repo| !repo.is_empty())
            .or(model.config.name_or_path.clone().filter(|name| !name.is_empty()))
            .unwrap_or_else(|| {
                dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
            });
        let graph_attention = manifest
            .map(|manifest| manifest.attention.as_str())
            .filter(|attention| !attention.is_empty())
            .unwrap_or("not recorded (no mathrank manifest)");
        let kernels = match provider {
            Provider::Cuda => {
                format!("CUDA kernels {} (sdpa_kernel {})", options.attention_kernels, options.attention_kernels.bits())
            }
            Provider::Cpu | Provider::Fake => "the CPU provider's (MLAS)".to_owned(),
        };
        let info = ModelInfo {
            name,
            path: dir.to_path_buf(),
            max_length: options.max_length,
            max_position_embeddings: model.config.max_position_embeddings,
            provider,
            intra_threads,
            ort_library: runtime.library.clone(),
            batch_tokens: options.batch_tokens.max(options.max_length),
            max_batch: options.max_batch.max(1),
            batch_invariant: false,
            attention: format!("{graph_attention}; {kernels}"),
        };
        let fingerprint =
            fingerprint(&[model.onnx_sha256.as_bytes(), model.tokenizer_sha256.as_bytes()], options.max_length);
        let options = with_padding_free_costs(options, backends.first().is_some_and(|backend| backend.padding_free()));
        Self::start(encoder, backends, info, fingerprint, &options, Clock::default())
    }

    /// A reranker on the deterministic [`FakeModel`] (tests): the tokenizer of a model
    /// directory (or any `tokenizer.json`), no ONNX Runtime.
    pub fn fake(tokenizer: &Path, model: &FakeModel, options: &RerankerOptions) -> Result<Self> {
        Self::fake_on(tokenizer, model, options, Clock::default())
    }

    pub(crate) fn fake_on(
        tokenizer: &Path,
        model: &FakeModel,
        options: &RerankerOptions,
        clock: Clock,
    ) -> Result<Self> {
        let encoder = PairEncoder::from_file(tokenizer, options.max_length, None)?;
        let model = model.clone().on_clock(clock.clone());
        let backends = (0..options.inference_threads.max(1)).map(|_| model.backend()).collect();
        let info = ModelInfo {
            name: "fake".into(),
            path: tokenizer.to_path_buf(),
            max_length: options.max_length,
            max_position_embeddings: options.max_length,
            provider: Provider::Fake,
            intra_threads: 1,
            ort_library: PathBuf::new(),
            batch_tokens: options.batch_tokens.max(options.max_length),
            max_batch: options.max_batch.max(1),
            batch_invariant: false,
            attention: "fake".into(),
        };
        let tokenizer_bytes = std::fs::read(tokenizer)
            .map_err(|err| Error::InvalidTokenizer { path: tokenizer.to_path_buf(), reason: err.to_string() })?;
        let kind: &[u8] = if model.is_batch_dependent() { b"fake, batch-dependent" } else { b"fake" };
        let fingerprint = fingerprint(&[kind, &tokenizer_bytes], options.max_length);
        Self::start(encoder, backends, info, fingerprint, options, clock)
    }

    /// Starts one inference thread per backend over a shared queue, then probes whether
    /// scores depend on their batch.
    fn start(
        encoder: PairEncoder,
        backends: Vec<Box<dyn Backend>>,
        info: ModelInfo,
        fingerprint: [u8; 32],
        options: &RerankerOptions,
        clock: Clock,
    ) -> Result<Self> {
        let scheduler = Arc::new(Scheduler::new(options, clock));
        let mut threads = Vec::new();
        for (index, backend) in backends.into_iter().enumerate() {
            let worker = Worker { backend, scheduler: Arc::clone(&scheduler) };
            let thread = std::thread::Builder::new()
                .name(format!("rerank-{index}"))
                .spawn(move || worker.run())
                .map_err(|err| Error::Inference(format!("cannot start an inference thread: {err}")))?;
            threads.push(thread);
        }
        let mut reranker = Self { encoder, info, fingerprint, scheduler, threads };
        reranker.info.batch_invariant = reranker.probe_batch_invariance()?;
        reranker.scheduler.counters.reset();
        let info = &reranker.info;
        tracing::info!(model = %info.name, path = %info.path.display(), provider = info.provider.name(), attention = %info.attention, max_length = info.max_length, threads = info.intra_threads, batch_tokens = info.batch_tokens, max_batch = info.max_batch, batch_invariant = info.batch_invariant, "loaded reranker");
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
        let (shared, done) = JobShared::new(pairs.len(), &self.scheduler.clock);
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
        queue.push(shared, pairs, deadline);
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

/// The scheduler on the fake model, in simulated time: every micro-batch takes 50 ms of a
/// clock that only the fake moves, so deadlines and the learned speed are exact, nothing
/// sleeps, and no ONNX Runtime is loaded.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobProgress;

    #[test]
    fn a_padding_free_graph_makes_the_costs_packed() {
        let cuda = RerankerOptions::for_provider(Provider::Cuda);
        assert_eq!(with_padding_free_costs(&cuda, true).cost_model, CostModel::GPU_PACKED);
        assert_eq!(with_padding_free_costs(&cuda, false).cost_model, CostModel::GPU);
        // A cost model given explicitly keeps its numbers.
        let own = RerankerOptions { cost_model: CostModel { per_batch: 5.0, attention: 0.1, packed: false }, ..cuda };
        assert_eq!(
            with_padding_free_costs(&own, true).cost_model,
            CostModel { per_batch: 5.0, attention: 0.1, packed: true }
        );
    }

    fn tokenizer() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/albert-tiny/tokenizer.json")
    }

    fn simulated(model: &FakeModel, options: RerankerOptions) -> (Reranker, Clock) {
        let clock = Clock::simulated();
        let model = model.clone().with_latency(Duration::from_millis(50));
        let options = RerankerOptions { max_wait: Duration::ZERO, ..options };
        (Reranker::fake_on(&tokenizer(), &model, &options, clock.clone()).unwrap(), clock)
    }

    fn one_at_a_time() -> RerankerOptions {
        RerankerOptions { max_batch: 1, ..RerankerOptions::default() }
    }

    /// `count` pairs `[CLS] tag [SEP] i [SEP]`, five tokens each: a job's pairs are told apart
    /// by `tag` in the fake's log.
    fn pairs(tag: i64, count: usize) -> Vec<EncodedPair> {
        (0..count as i64)
            .map(|i| EncodedPair { input_ids: vec![2, tag, 3, 100 + i, 3], token_type_ids: vec![0, 0, 0, 1, 1] })
            .collect()
    }

    /// Positions in the fake's log of the batches holding pairs of `tag`.
    fn ran(model: &FakeModel, tag: i64) -> Vec<usize> {
        let batches = model.batches();
        (0..batches.len()).filter(|&b| batches[b].pairs.iter().any(|pair| pair.input_ids[1] == tag)).collect()
    }

    fn scored(progress: &JobProgress) -> usize {
        progress.scores.iter().filter(|s| s.is_some()).count()
    }

    #[test]
    fn scores_are_the_models_in_submission_order() {
        let model = FakeModel::new();
        let (reranker, _) = simulated(&model, RerankerOptions { max_batch: 3, ..RerankerOptions::default() });
        assert!(reranker.info().batch_invariant);
        let mut job = pairs(7, 10);
        job[4].input_ids.extend([11, 12, 3]);
        job[4].token_type_ids.extend([1, 1, 1]);
        let output = reranker.submit(job.clone()).unwrap().wait().unwrap();
        let expected: Vec<[f32; 2]> = job.iter().map(FakeModel::logits).collect();
        assert_eq!(output.scores.iter().map(|s| s.logits).collect::<Vec<_>>(), expected);
        assert_eq!(ran(&model, 7).len(), 4, "ten pairs in batches of at most three");
    }

    #[test]
    fn the_earliest_deadline_is_served_first() {
        let model = FakeModel::new();
        let (reranker, clock) = simulated(&model, one_at_a_time());
        model.hold();
        let mut background = reranker.submit(pairs(1, 40)).unwrap();
        model.wait_until_waiting(1);
        let urgent = reranker.submit_by(pairs(2, 3), Some(clock.now() + Duration::from_secs(60))).unwrap();
        model.release_all();
        assert_eq!(urgent.wait().unwrap().scores.len(), 3);
        // Both jobs done before the log is read, so that it does not race the worker.
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(runtime.block_on(background.output()).unwrap().scores.len(), 40);
        // 40 batches of 50 ms are 2 s of work, in rounds of at most 1 s: the job without a
        // deadline came first, yet most of it waited behind the urgent one.
        let (first, second) = (ran(&model, 1), ran(&model, 2));
        assert!(second.iter().all(|&b| b < first[first.len() - 1]), "{first:?} {second:?}");
        assert!(first.iter().filter(|&&b| b < second[0]).count() <= 21, "{first:?} {second:?}");
    }

    #[test]
    fn a_deadline_keeps_what_was_scored_and_skips_the_rest() {
        let model = FakeModel::new();
        let (reranker, clock) = simulated(&model, one_at_a_time());
        let handle = reranker.submit_by(pairs(1, 100), Some(clock.now() + Duration::from_secs(1))).unwrap();
        let progress = {
            let shared = Arc::clone(&handle.shared);
            let err = handle.wait().unwrap_err();
            let progress = shared.progress();
            let count = scored(&progress);
            assert!(matches!(err, Error::Expired { scored, total: 100 } if scored == count), "{err}");
            assert!(err.to_string().contains("deadline"), "{err}");
            progress
        };
        // 50 ms a pair, 1 s: about 20 scored (the speed is learned as it goes, optimistically).
        let count = scored(&progress);
        assert!((15..=22).contains(&count), "{count}");
        assert!(progress.scores[..count].iter().all(Option::is_some), "the best-ranked pairs first");
        let stats = reranker.stats();
        assert_eq!((stats.pairs as usize, stats.skipped_pairs as usize, stats.expired_jobs), (count, 100 - count, 1));
    }

    #[test]
    fn a_job_that_cannot_make_its_deadline_is_not_run() {
        let model = FakeModel::new();
        let (reranker, clock) = simulated(&model, one_at_a_time());
        // The load-time probe taught the speed: 50 ms a batch.
        assert!(reranker.stats().seconds_per_cost_unit > 0.0);
        let before = model.batches().len();
        let deadline = clock.now() + Duration::from_millis(20);
        let err = reranker.submit_by(pairs(1, 5), Some(deadline)).unwrap().wait().unwrap_err();
        assert!(matches!(err, Error::Expired { scored: 0, total: 5 }), "{err}");
        assert_eq!(model.batches().len(), before, "no inference for a job that could not use it");
        assert_eq!(reranker.stats().expired_jobs, 1);
    }

    #[test]
    fn a_cancelled_job_is_dropped() {
        let model = FakeModel::new();
        let (reranker, _) = simulated(&model, one_at_a_time());
        model.hold();
        let handle = reranker.submit(pairs(1, 200)).unwrap();
        model.release(1);
        model.wait_until_waiting(1);
        drop(handle);
        model.release_all();
        // A later job is served only after the cancelled one left the queue.
        reranker.submit(pairs(2, 1)).unwrap().wait().unwrap();
        let stats = reranker.stats();
        assert_eq!(stats.cancelled_jobs, 1);
        assert!(ran(&model, 1).len() <= 2, "the first batch, and the one already at the gate");
        assert!(stats.skipped_pairs >= 198, "{stats:?}");
    }

    #[test]
    fn a_full_queue_is_overload_not_unbounded_memory() {
        let model = FakeModel::new();
        let (reranker, _) = simulated(&model, RerankerOptions { queue_capacity: 2, ..one_at_a_time() });
        model.hold();
        let mut handles = Vec::new();
        let mut overloaded = 0;
        for tag in 0..40 {
            match reranker.submit(pairs(tag, 64)) {
                Ok(handle) => handles.push(handle),
                Err(Error::Overloaded { capacity: 2 }) => overloaded += 1,
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert!(overloaded >= 37, "40 big jobs into a queue of 2 while inference is held: {overloaded}");
        model.release_all();
        for handle in handles {
            assert_eq!(handle.wait().unwrap().scores.len(), 64);
        }
    }

    #[test]
    fn a_failed_batch_fails_its_jobs_only() {
        let model = FakeModel::new();
        let (reranker, _) = simulated(&model, RerankerOptions { max_batch: 2, ..RerankerOptions::default() });
        model.fail_next(1);
        let err = reranker.submit(pairs(1, 2)).unwrap().wait().unwrap_err();
        assert!(matches!(&err, Error::Inference(message) if message.contains("told to fail")), "{err}");
        assert_eq!(reranker.submit(pairs(2, 3)).unwrap().wait().unwrap().scores.len(), 3);
    }

    #[test]
    fn the_probe_tells_a_batch_dependent_model() {
        let (steady, _) = simulated(&FakeModel::new(), RerankerOptions::default());
        let (moving, _) = simulated(&FakeModel::new().batch_dependent(), RerankerOptions::default());
        assert!(steady.info().batch_invariant);
        assert!(!moving.info().batch_invariant);
        assert_ne!(steady.fingerprint(), moving.fingerprint());
        let stats = steady.stats();
        assert_eq!((stats.batches, stats.pairs), (0, 0), "the probe is not counted as service");
    }
}
