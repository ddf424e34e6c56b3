//! Jobs: what a caller submitted, what it has so far, how it ended, and the handle it waits on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::{Error, Result, Score};

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

/// How a job ended.
#[derive(Debug, Clone)]
pub(crate) enum Ending {
    Complete,
    /// Some pairs were not run: their deadline came, or could not be met.
    Expired,
    Cancelled,
    Failed(String),
}

#[derive(Debug)]
pub(crate) struct JobState {
    pub(crate) scores: Vec<Option<Score>>,
    /// Pairs scored or given up.
    pub(crate) resolved: usize,
    pub(crate) skipped: usize,
    pub(crate) queued: Option<Duration>,
    pub(crate) infer: Duration,
    pub(crate) real_tokens: u64,
    pub(crate) padded_tokens: u64,
    pub(crate) ending: Option<Ending>,
    pub(crate) notify: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Debug)]
pub(crate) struct JobShared {
    pub(crate) state: Mutex<JobState>,
    /// Signalled when the job ends, for blocking waiters (which may be on any thread, even one
    /// that drives an async runtime, where tokio's blocking receive would panic).
    pub(crate) ended: Condvar,
    pub(crate) cancelled: AtomicBool,
    pub(crate) enqueued: Instant,
    clock: Clock,
}

/// A poisoned lock only means another thread panicked while holding it; the data it guards
/// (scores, counters) stays valid, so it is used as is rather than spreading the panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl JobShared {
    pub(crate) fn new(len: usize, clock: &Clock) -> (Arc<Self>, tokio::sync::oneshot::Receiver<()>) {
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
            enqueued: clock.now(),
            clock: clock.clone(),
        });
        (shared, receiver)
    }

    /// Ends the job (`state` is its locked state) and wakes its waiters, async and blocking.
    pub(crate) fn end(&self, state: &mut JobState, ending: Ending) {
        if state.ending.is_none() {
            state.ending = Some(ending);
            if let Some(notify) = state.notify.take() {
                let _ = notify.send(());
            }
            self.ended.notify_all();
        }
    }

    /// Ends the job once every pair is resolved.
    pub(crate) fn settle(&self, state: &mut JobState) {
        if state.resolved >= state.scores.len() {
            let ending = if state.skipped == 0 { Ending::Complete } else { Ending::Expired };
            self.end(state, ending);
        }
    }

    pub(crate) fn started(&self, at: Instant) {
        let mut state = lock(&self.state);
        if state.queued.is_none() {
            state.queued = Some(at.saturating_duration_since(self.enqueued));
        }
    }

    pub(crate) fn skip(&self, count: usize) {
        if count == 0 {
            return;
        }
        let mut state = lock(&self.state);
        state.resolved += count;
        state.skipped += count;
        self.settle(&mut state);
    }

    pub(crate) fn fail(&self, message: String) {
        self.end(&mut lock(&self.state), Ending::Failed(message));
    }

    pub(crate) fn cancel_ended(&self) {
        self.end(&mut lock(&self.state), Ending::Cancelled);
    }

    /// Blocks until the job has ended.
    pub(crate) fn wait_ended(&self) {
        let mut state = lock(&self.state);
        while state.ending.is_none() {
            state = self.ended.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    pub(crate) fn progress(&self) -> JobProgress {
        let state = lock(&self.state);
        JobProgress {
            scores: state.scores.clone(),
            queued: state.queued.unwrap_or_else(|| self.clock.now().saturating_duration_since(self.enqueued)),
            infer: state.infer,
            real_tokens: state.real_tokens,
            padded_tokens: state.padded_tokens,
        }
    }

    pub(crate) fn output(&self) -> Result<JobOutput> {
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
    pub(crate) shared: Arc<JobShared>,
    pub(crate) done: tokio::sync::oneshot::Receiver<()>,
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
