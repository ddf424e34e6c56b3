//! An inference thread: runs the rounds the scheduler hands it, one micro-batch at a time, and
//! publishes every micro-batch's scores at once.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::backend::Backend;
use crate::encode::EncodedPair;
use crate::jobs::{Ending, lock};
use crate::rounds::{Member, Round, RoundJob, Scheduler};
use crate::stats::BATCH_BUCKETS;
use crate::{Error, Score};

pub(crate) struct Worker {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) scheduler: Arc<Scheduler>,
}

impl Worker {
    pub(crate) fn run(mut self) {
        while let Some(round) = self.scheduler.next_round() {
            self.serve(round);
        }
    }

    fn serve(&mut self, round: Round) {
        let Round { jobs, members, batches } = round;
        for batch in batches {
            let now = self.scheduler.clock.now();
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
            let started = self.scheduler.clock.now();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.backend.predict(&inputs, width)))
                .unwrap_or_else(|_| Err(Error::Inference("the model panicked on this batch".into())));
            let took = self.scheduler.clock.now().saturating_duration_since(started);
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
