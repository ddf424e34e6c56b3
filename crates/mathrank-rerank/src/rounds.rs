//! Scheduling rounds: the deadline-ordered queue of jobs, and how each round takes the pairs
//! that can still be scored in time and plans them into micro-batches.
//!
//! Each round takes, from the jobs in deadline order, the best-ranked pairs that can still be
//! scored before the earliest deadline among them (estimated with the [`CostModel`] and a rate
//! learned from the batches already run) and plans them into micro-batches by cost; the worker
//! publishes every micro-batch's scores at once, so a caller whose deadline comes first still
//! has the scores of the batches that finished. A job none of whose pairs can be finished in
//! time is expired at once instead of taking inference from jobs that can be. Pairs of
//! cancelled jobs and of jobs past their deadline are never run.
//!
//! [`CostModel`]: crate::CostModel

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::batch::Planner;
use crate::clock::Clock;
use crate::encode::EncodedPair;
use crate::jobs::{JobShared, lock};
use crate::reranker::RerankerOptions;
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

impl Queue {
    /// Queues a job at its place: earliest deadline first, then arrival.
    pub(crate) fn push(&mut self, shared: Arc<JobShared>, pairs: Vec<EncodedPair>, deadline: Option<Instant>) {
        self.seq += 1;
        let pending = (0..pairs.len()).collect();
        let job = Queued { shared, pairs: Arc::new(pairs), pending, deadline, seq: self.seq };
        let at = self.jobs.partition_point(|other| other.key() <= job.key());
        self.jobs.insert(at, job);
    }
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
    pub(crate) clock: Clock,
}

impl Scheduler {
    pub(crate) fn new(options: &RerankerOptions, clock: Clock) -> Self {
        let max_batch = options.max_batch.max(1);
        Self {
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
            clock,
        }
    }

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
            let now = self.clock.now();
            self.prune(&mut queue, now);
            if queue.jobs.is_empty() {
                if queue.shutdown {
                    return None;
                }
                queue = self.wakeup.wait(queue).unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            let waiting: usize = queue.jobs.iter().map(|job| job.pending.len()).sum();
            // Simulated time does not pass while waiting: tests run with no wait.
            if waiting < self.planner.max_batch && !queue.shutdown && !self.clock.is_simulated() {
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

/// Rounds planned at a given instant with a given speed: no threads, no model, no clock.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Ending;

    /// 1 ms per cost unit; a pair of 20 tokens costs 20 units plus 10 per batch.
    fn scheduler(max_batch: usize, round_pairs: usize) -> Scheduler {
        let options = RerankerOptions { max_batch, round_pairs, ..RerankerOptions::default() };
        let scheduler = Scheduler::new(&options, Clock::simulated());
        *lock(&scheduler.rate) = Some(0.001);
        scheduler
    }

    fn job(queue: &mut Queue, clock: &Clock, count: usize, deadline: Option<Instant>) -> Arc<JobShared> {
        let pair = EncodedPair { input_ids: vec![5; 20], token_type_ids: vec![0; 20] };
        let (shared, _) = JobShared::new(count, clock);
        queue.push(Arc::clone(&shared), vec![pair; count], deadline);
        shared
    }

    #[test]
    fn a_round_serves_the_earliest_deadline_first_and_the_best_ranked_pairs() {
        let s = scheduler(4, 8);
        let now = s.clock.now();
        let mut queue = Queue::default();
        let relaxed = job(&mut queue, &s.clock, 6, None);
        let urgent = job(&mut queue, &s.clock, 6, Some(now + Duration::from_secs(10)));
        let round = s.take_round(&mut queue, now).unwrap();
        assert!(Arc::ptr_eq(&round.jobs[0].shared, &urgent), "the job with a deadline first");
        assert!(Arc::ptr_eq(&round.jobs[1].shared, &relaxed));
        assert_eq!(round.members, vec![(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 0), (1, 1)]);
        assert_eq!(queue.jobs.len(), 1);
        assert_eq!(queue.jobs[0].pending, vec![2, 3, 4, 5], "the rest waits, best-ranked first");
    }

    #[test]
    fn a_job_that_cannot_make_its_deadline_is_expired_at_once() {
        let s = scheduler(4, 16);
        let now = s.clock.now();
        let mut queue = Queue::default();
        // Its best pair costs 30 ms; it has 20.
        let late = job(&mut queue, &s.clock, 3, Some(now + Duration::from_millis(20)));
        let fine = job(&mut queue, &s.clock, 2, None);
        let round = s.take_round(&mut queue, now).unwrap();
        assert!(matches!(lock(&late.state).ending, Some(Ending::Expired)));
        assert_eq!(round.jobs.len(), 1);
        assert!(Arc::ptr_eq(&round.jobs[0].shared, &fine));
        assert_eq!(s.counters.expired_jobs.load(Ordering::Relaxed), 1);
        assert_eq!(s.counters.skipped_pairs.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_round_takes_at_most_a_quarter_of_the_time_left() {
        let s = scheduler(1, 100);
        let now = s.clock.now();
        let mut queue = Queue::default();
        // 1 s left; a pair costs 20 ms (30 with its batch): about 250 ms of them, 8 pairs.
        job(&mut queue, &s.clock, 50, Some(now + Duration::from_secs(1)));
        let round = s.take_round(&mut queue, now).unwrap();
        assert!((6..=9).contains(&round.members.len()), "{}", round.members.len());
        assert_eq!(queue.jobs[0].pending.len(), 50 - round.members.len());
    }

    #[test]
    fn batches_beyond_the_longest_round_go_back_to_their_job() {
        let mut s = scheduler(1, 100);
        s.max_round = Duration::from_millis(100);
        let now = s.clock.now();
        let mut queue = Queue::default();
        job(&mut queue, &s.clock, 10, None);
        let round = s.take_round(&mut queue, now).unwrap();
        // Ten batches of 30 ms planned, three run: 90 ms fits 100 ms, 120 would not.
        assert_eq!(round.batches.len(), 3);
        assert_eq!(queue.jobs[0].pending, vec![3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn until_the_speed_is_known_a_round_holds_a_few_pairs() {
        let s = scheduler(8, 64);
        *lock(&s.rate) = None;
        let now = s.clock.now();
        let mut queue = Queue::default();
        job(&mut queue, &s.clock, 30, Some(now + Duration::from_millis(1)));
        let round = s.take_round(&mut queue, now).unwrap();
        assert_eq!(round.members.len(), CALIBRATION_PAIRS);
    }

    #[test]
    fn cancelled_and_late_jobs_leave_the_queue_without_running() {
        let s = scheduler(4, 16);
        let now = s.clock.now();
        let mut queue = Queue::default();
        let cancelled = job(&mut queue, &s.clock, 3, None);
        cancelled.cancelled.store(true, Ordering::Relaxed);
        let late = job(&mut queue, &s.clock, 2, Some(now));
        s.prune(&mut queue, now);
        assert!(queue.jobs.is_empty());
        assert!(matches!(lock(&cancelled.state).ending, Some(Ending::Cancelled)));
        assert!(matches!(lock(&late.state).ending, Some(Ending::Expired)));
        let c = &s.counters;
        assert_eq!(
            (
                c.cancelled_jobs.load(Ordering::Relaxed),
                c.expired_jobs.load(Ordering::Relaxed),
                c.skipped_pairs.load(Ordering::Relaxed)
            ),
            (1, 1, 5)
        );
    }
}
