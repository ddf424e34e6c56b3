//! Scheduling rounds: the deadline-ordered queue of jobs, and how each round takes the pairs
//! that can still be scored in time and plans them into micro-batches.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::batch::Planner;
use crate::encode::EncodedPair;
use crate::jobs::{JobShared, lock};
use crate::stats::Counters;

/// Pairs of a round before any batch has taught the speed.
const CALIBRATION_PAIRS: usize = 4;

/// A job in the queue, with the indices of its pairs not taken yet, best-ranked first.
pub(crate) struct Queued {
    pub(crate) shared: Arc<JobShared>,
    pub(crate) pairs: Arc<Vec<EncodedPair>>,
    pub(crate) pending: Vec<usize>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) seq: u64,
}

impl Queued {
    /// Queue order: earliest deadline first, jobs without one last, then arrival.
    pub(crate) fn key(&self) -> (bool, Option<Instant>, u64) {
        (self.deadline.is_none(), self.deadline, self.seq)
    }
}

#[derive(Default)]
pub(crate) struct Queue {
    pub(crate) jobs: Vec<Queued>,
    pub(crate) shutdown: bool,
    pub(crate) seq: u64,
}

/// A pair in a round: (index into the round's jobs, pair index in that job).
pub(crate) type Member = (usize, usize);

/// What a worker runs in one round: the pairs taken, planned into micro-batches.
pub(crate) struct Round {
    pub(crate) jobs: Vec<RoundJob>,
    pub(crate) members: Vec<Member>,
    /// Micro-batches over `members`, in running order.
    pub(crate) batches: Vec<Vec<usize>>,
}

pub(crate) struct RoundJob {
    pub(crate) shared: Arc<JobShared>,
    pub(crate) pairs: Arc<Vec<EncodedPair>>,
    pub(crate) deadline: Option<Instant>,
}

/// Work of all inference threads: the queue, the planner and the learned speed.
pub(crate) struct Scheduler {
    pub(crate) queue: Mutex<Queue>,
    pub(crate) wakeup: Condvar,
    pub(crate) capacity: usize,
    pub(crate) planner: Planner,
    pub(crate) round_pairs: usize,
    pub(crate) max_round: Duration,
    pub(crate) max_wait: Duration,
    /// Seconds per cost unit, learned from the batches run (an exponential moving average).
    pub(crate) rate: Mutex<Option<f64>>,
    pub(crate) counters: Counters,
}

impl Scheduler {
    pub(crate) fn rate(&self) -> Option<f64> {
        *lock(&self.rate)
    }

    pub(crate) fn learn(&self, seconds: f64, units: f64) {
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
    pub(crate) fn prune(&self, queue: &mut Queue, now: Instant) {
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
    pub(crate) fn next_round(&self) -> Option<Round> {
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
    pub(crate) fn take_round(&self, queue: &mut Queue, now: Instant) -> Option<Round> {
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
        for (_, _, width, members) in batches {
            let estimate = rate
                .map_or(Duration::ZERO, |rate| Duration::from_secs_f64(rate * cost.batch_cost(members.len(), width)));
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
