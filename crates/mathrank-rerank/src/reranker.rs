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

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ort::session::builder::GraphOptimizationLevel;

use crate::batch::{CostModel, Planner, Planning};
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

/// Scores of a finished job, in the order its pairs were submitted, with where the time went.
#[derive(Debug, Clone, Default)]
pub struct JobOutput {
    pub scores: Vec<Score>,
    /// Time in the queue before an inference thread took the job's first pairs.
    pub queued: Duration,
    /// Inference time of the micro-batches that held this job's pairs.
    pub infer: Duration,
    pub real_tokens: u64,
    pub padded_tokens: u64,
}

/// What a job has so far: a score for each pair already run.
#[derive(Debug, Clone, Default)]
pub struct JobProgress {
    pub scores: Vec<Option<Score>>,
    pub queued: Duration,
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

/// How a job ended.
#[derive(Debug, Clone)]
enum Ending {
    Complete,
    /// Some pairs were not run: their deadline came, or could not be met.
    Expired,
    Cancelled,
    Failed(String),
}

#[derive(Debug)]
struct JobState {
    scores: Vec<Option<Score>>,
    /// Pairs scored or given up.
    resolved: usize,
    skipped: usize,
    queued: Option<Duration>,
    infer: Duration,
    real_tokens: u64,
    padded_tokens: u64,
    ending: Option<Ending>,
    notify: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Debug)]
struct JobShared {
    state: Mutex<JobState>,
    /// Signalled when the job ends, for blocking waiters (which may be on any thread, even one
    /// that drives an async runtime, where tokio's blocking receive would panic).
    ended: Condvar,
    cancelled: AtomicBool,
    enqueued: Instant,
}

/// A poisoned lock only means another thread panicked while holding it; the data it guards
/// (scores, counters) stays valid, so it is used as is rather than spreading the panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl JobShared {
    fn new(len: usize) -> (Arc<Self>, tokio::sync::oneshot::Receiver<()>) {
        let (notify, receiver) = tokio::sync::oneshot::channel();
        let state = JobState {
            scores: vec![None; len],
            resolved: 0,
            skipped: 0,
            queued: None,
            infer: Duration::ZERO,
            real_tokens: 0,
            padded_tokens: 0,
            ending: None,
            notify: Some(notify),
        };
        let shared = Arc::new(Self {
            state: Mutex::new(state),
            ended: Condvar::new(),
            cancelled: AtomicBool::new(false),
            enqueued: Instant::now(),
        });
        (shared, receiver)
    }

    /// Ends the job (`state` is its locked state) and wakes its waiters, async and blocking.
    fn end(&self, state: &mut JobState, ending: Ending) {
        if state.ending.is_none() {
            state.ending = Some(ending);
            if let Some(notify) = state.notify.take() {
                let _ = notify.send(());
            }
            self.ended.notify_all();
        }
    }

    /// Ends the job once every pair is resolved.
    fn settle(&self, state: &mut JobState) {
        if state.resolved >= state.scores.len() {
            let ending = if state.skipped == 0 { Ending::Complete } else { Ending::Expired };
            self.end(state, ending);
        }
    }

    fn started(&self, at: Instant) {
        let mut state = lock(&self.state);
        if state.queued.is_none() {
            state.queued = Some(at.saturating_duration_since(self.enqueued));
        }
    }

    fn skip(&self, count: usize) {
        if count == 0 {
            return;
        }
        let mut state = lock(&self.state);
        state.resolved += count;
        state.skipped += count;
        self.settle(&mut state);
    }

    fn fail(&self, message: String) {
        self.end(&mut lock(&self.state), Ending::Failed(message));
    }

    fn cancel_ended(&self) {
        self.end(&mut lock(&self.state), Ending::Cancelled);
    }

    /// Blocks until the job has ended.
    fn wait_ended(&self) {
        let mut state = lock(&self.state);
        while state.ending.is_none() {
            state = self.ended.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn progress(&self) -> JobProgress {
        let state = lock(&self.state);
        JobProgress {
            scores: state.scores.clone(),
            queued: state.queued.unwrap_or_else(|| self.enqueued.elapsed()),
            infer: state.infer,
            real_tokens: state.real_tokens,
            padded_tokens: state.padded_tokens,
        }
    }

    fn output(&self) -> Result<JobOutput> {
        let state = lock(&self.state);
        match &state.ending {
            Some(Ending::Complete) => Ok(JobOutput {
                scores: state.scores.iter().map(|s| s.unwrap_or(Score::from_logits([0.0, 0.0]))).collect(),
                queued: state.queued.unwrap_or_default(),
                infer: state.infer,
                real_tokens: state.real_tokens,
                padded_tokens: state.padded_tokens,
            }),
            Some(Ending::Expired) => {
                Err(Error::Expired { scored: state.resolved - state.skipped, total: state.scores.len() })
            }
            Some(Ending::Cancelled) => Err(Error::Cancelled),
            Some(Ending::Failed(message)) => Err(Error::Inference(message.clone())),
            None => Err(Error::ShutDown),
        }
    }
}

/// A submitted job. Dropping it cancels the work that has not started yet.
#[derive(Debug)]
pub struct JobHandle {
    shared: Arc<JobShared>,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl JobHandle {
    /// Waits for the scores (blocking; do not call on an async worker). A job whose deadline
    /// came first is [`Error::Expired`]; [`progress`](Self::progress) still has what was scored.
    pub fn wait(self) -> Result<JobOutput> {
        self.shared.wait_ended();
        self.shared.output()
    }

    /// Waits for the scores (async); see [`wait`](Self::wait).
    pub async fn output(&mut self) -> Result<JobOutput> {
        (&mut self.done).await.map_err(|_| Error::ShutDown)?;
        self.shared.output()
    }

    /// The scores so far (all of them once the job is complete).
    pub fn progress(&self) -> JobProgress {
        self.shared.progress()
    }

    /// Stops the job: its pairs that have not run are never run.
    pub fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::Relaxed);
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
    batches: AtomicU64,
    pairs: AtomicU64,
    real_tokens: AtomicU64,
    padded_tokens: AtomicU64,
    infer_nanos: AtomicU64,
    cancelled_jobs: AtomicU64,
    expired_jobs: AtomicU64,
    skipped_pairs: AtomicU64,
    batch_size_buckets: [AtomicU64; BATCH_BUCKETS.len()],
}

impl Counters {
    /// Back to zero (after the load-time probe, which is not service).
    fn reset(&self) {
        for counter in [
            &self.batches,
            &self.pairs,
            &self.real_tokens,
            &self.padded_tokens,
            &self.infer_nanos,
            &self.cancelled_jobs,
            &self.expired_jobs,
            &self.skipped_pairs,
        ]
        .into_iter()
        .chain(&self.batch_size_buckets)
        {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// Upper bounds of the batch-size histogram buckets (the last is +Inf).
pub const BATCH_BUCKETS: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, u64::MAX];

/// A snapshot of the reranker's counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RerankerStats {
    /// Jobs waiting (wholly or partly) for an inference thread.
    pub queue_depth: u64,
    pub batches: u64,
    pub pairs: u64,
    pub real_tokens: u64,
    pub padded_tokens: u64,
    pub infer_seconds: f64,
    /// Jobs dropped because their caller left.
    pub cancelled_jobs: u64,
    /// Jobs that ended with pairs unscored because their deadline came or could not be met.
    pub expired_jobs: u64,
    /// Pairs never run because their job was cancelled or expired.
    pub skipped_pairs: u64,
    /// The learned speed: seconds per unit of the cost model (0 until a batch has run).
    pub seconds_per_cost_unit: f64,
    /// Cumulative counts per bucket of [`BATCH_BUCKETS`] (Prometheus style).
    pub batch_size_cumulative: Vec<u64>,
}

/// Pairs of a round before any batch has taught the speed.
const CALIBRATION_PAIRS: usize = 4;

/// A job in the queue, with the indices of its pairs not taken yet, best-ranked first.
struct Queued {
    shared: Arc<JobShared>,
    pairs: Arc<Vec<EncodedPair>>,
    pending: Vec<usize>,
    deadline: Option<Instant>,
    seq: u64,
}

impl Queued {
    /// Queue order: earliest deadline first, jobs without one last, then arrival.
    fn key(&self) -> (bool, Option<Instant>, u64) {
        (self.deadline.is_none(), self.deadline, self.seq)
    }
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Queued>,
    shutdown: bool,
    seq: u64,
}

/// A pair in a round: (index into the round's jobs, pair index in that job).
type Member = (usize, usize);

/// What a worker runs in one round: the pairs taken, planned into micro-batches.
struct Round {
    jobs: Vec<RoundJob>,
    members: Vec<Member>,
    /// Micro-batches over `members`, in running order.
    batches: Vec<Vec<usize>>,
}

struct RoundJob {
    shared: Arc<JobShared>,
    pairs: Arc<Vec<EncodedPair>>,
    deadline: Option<Instant>,
}

/// Work of all inference threads: the queue, the planner and the learned speed.
struct Scheduler {
    queue: Mutex<Queue>,
    wakeup: Condvar,
    capacity: usize,
    planner: Planner,
    round_pairs: usize,
    max_round: Duration,
    max_wait: Duration,
    /// Seconds per cost unit, learned from the batches run (an exponential moving average).
    rate: Mutex<Option<f64>>,
    counters: Counters,
}

impl Scheduler {
    fn rate(&self) -> Option<f64> {
        *lock(&self.rate)
    }

    fn learn(&self, seconds: f64, units: f64) {
        if units <= 0.0 || seconds <= 0.0 {
            return;
        }
        let sample = seconds / units;
        let mut rate = lock(&self.rate);
        *rate = Some(match *rate {
            None => sample,
            Some(old) => 0.8 * old + 0.2 * sample,
        });
    }

    /// Drops cancelled jobs and jobs past their deadline from the queue.
    fn prune(&self, queue: &mut Queue, now: Instant) {
        queue.jobs.retain(|job| {
            let cancelled = job.shared.cancelled.load(Ordering::Relaxed);
            let late = job.deadline.is_some_and(|deadline| deadline <= now);
            // A job that failed in an earlier batch has its answer already.
            let ended = lock(&job.shared.state).ending.is_some();
            if !(cancelled || late || ended) {
                return true;
            }
            let untaken = job.pending.len();
            self.counters.skipped_pairs.fetch_add(untaken as u64, Ordering::Relaxed);
            if ended {
                job.shared.skip(untaken);
            } else if cancelled {
                self.counters.cancelled_jobs.fetch_add(1, Ordering::Relaxed);
                job.shared.cancel_ended();
            } else {
                self.counters.expired_jobs.fetch_add(1, Ordering::Relaxed);
                job.shared.skip(untaken);
            }
            false
        });
    }

    /// Waits for work and takes the next round; `None` once shut down and drained.
    fn next_round(&self) -> Option<Round> {
        let mut queue = lock(&self.queue);
        loop {
            let now = Instant::now();
            self.prune(&mut queue, now);
            if queue.jobs.is_empty() {
                if queue.shutdown {
                    return None;
                }
                queue = self.wakeup.wait(queue).unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            let waiting: usize = queue.jobs.iter().map(|job| job.pending.len()).sum();
            if waiting < self.planner.max_batch && !queue.shutdown {
                let oldest = queue.jobs.iter().map(|job| job.shared.enqueued).min().unwrap_or(now);
                let until = oldest + self.max_wait;
                if now < until {
                    queue = self
                        .wakeup
                        .wait_timeout(queue, until - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                    continue;
                }
            }
            if let Some(round) = self.take_round(&mut queue, now) {
                return Some(round);
            }
        }
    }

    /// Takes the best-ranked pairs of the jobs in deadline order, as many as fit the round and
    /// can be scored before the earliest deadline among them, and plans them into micro-batches
    /// by cost. It then keeps the batches that fit `max_round` (the most urgent and best-ranked
    /// first) and hands the other pairs back to their jobs: planning over more pairs than one
    /// round runs groups lengths better, and a short round lets an urgent call in soon. `None`
    /// when every waiting job was expired instead.
    fn take_round(&self, queue: &mut Queue, now: Instant) -> Option<Round> {
        let cost = &self.planner.cost;
        let rate = self.rate();
        let max_batch = self.planner.max_batch.max(1);
        let round_tokens = self.planner.batch_tokens.saturating_mul(self.round_pairs.div_ceil(max_batch));
        let mut round = Round { jobs: Vec::new(), members: Vec::new(), batches: Vec::new() };
        // For each job of the round, its index in the queue (valid until the queue is tidied).
        let mut sources: Vec<usize> = Vec::new();
        let mut lengths: Vec<usize> = Vec::new();
        let (mut units, mut tokens) = (0.0f64, 0usize);
        let mut earliest: Option<Instant> = None;
        let mut index = 0;
        'jobs: while index < queue.jobs.len() {
            let job = &mut queue.jobs[index];
            let limit = match (earliest, job.deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut taken = 0;
            let mut stop = false;
            while taken < job.pending.len() && round.members.len() < self.round_pairs && tokens < round_tokens {
                let length = job.pairs[job.pending[taken]].len();
                let added = units + cost.pair_cost(length);
                match rate {
                    // Until a batch has taught the speed, rounds are small, so that the
                    // estimate exists before much is at stake.
                    None if round.members.len() >= CALIBRATION_PAIRS.min(max_batch) => {
                        stop = true;
                        break;
                    }
                    None => {}
                    Some(rate) => {
                        // A lower bound on the pool's cost with 10% for padding: optimistic by
                        // design, since a round that overruns only loses the late pairs' scores.
                        let batches = (round.members.len() + 1).div_ceil(max_batch) as f64;
                        let estimate = Duration::from_secs_f64(rate * 1.1 * (added + batches * cost.per_batch));
                        if let Some(remaining) = limit.map(|limit| limit.saturating_duration_since(now)) {
                            if estimate > remaining {
                                if round.members.is_empty() && taken == 0 {
                                    // Not even its best pair can be scored in time: give the
                                    // job its answer now instead of inference it cannot use.
                                    let expired = queue.jobs.remove(index);
                                    let untaken = expired.pending.len();
                                    self.counters.expired_jobs.fetch_add(1, Ordering::Relaxed);
                                    self.counters.skipped_pairs.fetch_add(untaken as u64, Ordering::Relaxed);
                                    expired.shared.skip(untaken);
                                    continue 'jobs;
                                }
                                // More would delay the earliest job in the round past its deadline.
                                stop = true;
                                break;
                            }
                            // Pools of at most a quarter of the time left: a deadline then cuts
                            // after the best-ranked pairs.
                            if estimate > remaining / 4 && !round.members.is_empty() {
                                stop = true;
                                break;
                            }
                        }
                    }
                }
                units = added;
                tokens += length;
                lengths.push(length);
                round.members.push((round.jobs.len(), job.pending[taken]));
                taken += 1;
            }
            if taken > 0 {
                job.pending.drain(..taken);
                job.shared.started(now);
                earliest = limit;
                sources.push(index);
                round.jobs.push(RoundJob {
                    shared: Arc::clone(&job.shared),
                    pairs: Arc::clone(&job.pairs),
                    deadline: job.deadline,
                });
            }
            if stop || round.members.len() >= self.round_pairs || tokens >= round_tokens {
                break;
            }
            index += 1;
        }
        if round.members.is_empty() {
            queue.jobs.retain(|job| !job.pending.is_empty());
            return None;
        }
        let plan = self.planner.plan(&lengths);
        let mut batches: Vec<(Option<Instant>, usize, usize, Vec<usize>)> = plan
            .into_iter()
            .map(|batch| {
                let due = batch.members.iter().filter_map(|&m| round.jobs[round.members[m].0].deadline).min();
                let best = batch.members.iter().map(|&m| round.members[m].1).min().unwrap_or(usize::MAX);
                (due, best, batch.width, batch.members)
            })
            .collect();
        // The most urgent first; among equals, the batch holding the best-ranked pair.
        batches.sort_by_key(|b| (b.0.is_none(), b.0, b.1));
        let mut spent = Duration::ZERO;
        for (_, _, _, members) in batches {
            let units = cost.cost_of(members.iter().map(|&m| lengths[m]));
            let estimate = rate.map_or(Duration::ZERO, |rate| Duration::from_secs_f64(rate * units));
            if round.batches.is_empty() || spent + estimate <= self.max_round {
                spent += estimate;
                round.batches.push(members);
            } else {
                // Not this round: back to the job, in rank order.
                for m in members {
                    let (j, pair) = round.members[m];
                    let pending = &mut queue.jobs[sources[j]].pending;
                    let at = pending.partition_point(|&p| p < pair);
                    pending.insert(at, pair);
                }
            }
        }
        queue.jobs.retain(|job| !job.pending.is_empty());
        Some(round)
    }
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

/// Real tokens / padded tokens (1.0 when nothing ran).
pub fn efficiency(real: u64, padded: u64) -> f64 {
    if padded == 0 { 1.0 } else { real as f64 / padded as f64 }
}

struct Worker {
    model: OnnxModel,
    scheduler: Arc<Scheduler>,
    pad_id: i64,
    min_batch_time: Duration,
}

impl Worker {
    fn run(mut self) {
        while let Some(round) = self.scheduler.next_round() {
            self.serve(round);
        }
    }

    fn serve(&mut self, round: Round) {
        let Round { jobs, members, batches } = round;
        for batch in batches {
            let now = Instant::now();
            // Skip what no one waits for any more: cancelled, failed or past-deadline jobs.
            let (live, dropped): (Vec<Member>, Vec<Member>) = batch.iter().map(|&m| members[m]).partition(|&(j, _)| {
                let job = &jobs[j];
                !job.shared.cancelled.load(Ordering::Relaxed)
                    && job.deadline.is_none_or(|deadline| deadline > now)
                    && !matches!(lock(&job.shared.state).ending, Some(Ending::Failed(_)))
            });
            self.skip(&jobs, &dropped);
            if live.is_empty() {
                continue;
            }
            let inputs: Vec<&EncodedPair> = live.iter().map(|&(j, p)| &jobs[j].pairs[p]).collect();
            let width = inputs.iter().map(|pair| pair.len()).max().unwrap_or(0);
            let real: u64 = inputs.iter().map(|pair| pair.len() as u64).sum();
            let padded = (inputs.len() * width) as u64;
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.model.run(&inputs, width, self.pad_id)))
                .unwrap_or_else(|_| Err(Error::Inference("ONNX Runtime panicked on this batch".into())));
            if let Some(rest) = self.min_batch_time.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
            let took = started.elapsed();
            self.record(inputs.len(), real, padded, took);
            match outcome {
                Ok(logits) => {
                    let units = self.scheduler.planner.cost.cost_of(inputs.iter().map(|pair| pair.len()));
                    self.scheduler.learn(took.as_secs_f64(), units);
                    self.publish(&jobs, &live, &logits, width, took);
                }
                Err(err) => {
                    tracing::warn!(error = %err, batch = inputs.len(), width, "inference failed");
                    let mut failed: Vec<usize> = live.iter().map(|&(j, _)| j).collect();
                    failed.dedup();
                    for j in failed {
                        jobs[j].shared.fail(err.to_string());
                    }
                }
            }
        }
    }

    fn skip(&self, jobs: &[RoundJob], dropped: &[Member]) {
        if dropped.is_empty() {
            return;
        }
        self.scheduler.counters.skipped_pairs.fetch_add(dropped.len() as u64, Ordering::Relaxed);
        for (j, job) in jobs.iter().enumerate() {
            job.shared.skip(dropped.iter().filter(|&&(k, _)| k == j).count());
        }
    }

    /// Hands each job its scores from this batch at once, so a caller cut off by its deadline
    /// keeps them.
    fn publish(&self, jobs: &[RoundJob], live: &[Member], logits: &[[f32; 2]], width: usize, took: Duration) {
        for (j, job) in jobs.iter().enumerate() {
            let mine: Vec<(usize, [f32; 2])> =
                live.iter().zip(logits).filter(|((k, _), _)| *k == j).map(|(&(_, p), &l)| (p, l)).collect();
            if mine.is_empty() {
                continue;
            }
            let mut state = lock(&job.shared.state);
            for &(p, logits) in &mine {
                state.scores[p] = Some(Score::from_logits(logits));
                state.real_tokens += job.pairs[p].len() as u64;
                state.padded_tokens += width as u64;
            }
            state.resolved += mine.len();
            state.infer += took;
            job.shared.settle(&mut state);
        }
    }

    fn record(&self, size: usize, real: u64, padded: u64, took: Duration) {
        let c = &self.scheduler.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.pairs.fetch_add(size as u64, Ordering::Relaxed);
        c.real_tokens.fetch_add(real, Ordering::Relaxed);
        c.padded_tokens.fetch_add(padded, Ordering::Relaxed);
        c.infer_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        let bucket = BATCH_BUCKETS.iter().position(|&bound| size as u64 <= bound).unwrap_or(BATCH_BUCKETS.len() - 1);
        c.batch_size_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }
}
