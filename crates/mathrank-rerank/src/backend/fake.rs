//! A deterministic stand-in for the model, for tests of everything around it (the scheduler,
//! the engine, the servers) without ONNX Runtime. A pair's logits are a hash of its tokens, so
//! they do not depend on its batch (unless asked to), different texts score differently, and a
//! test can compute what any pair should get with [`FakeModel::logits`].
//!
//! A test steers it: [`hold`](FakeModel::hold) stops batches at a gate until
//! [`release`](FakeModel::release)d, [`wait_until_waiting`](FakeModel::wait_until_waiting)
//! blocks until batches stand at the gate (synchronisation without sleeps),
//! [`with_latency`](FakeModel::with_latency) makes each batch take time (a slower model, not a
//! synchronisation), and [`fail_next`](FakeModel::fail_next) makes batches fail.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::Backend;
use crate::clock::Clock;
use crate::encode::EncodedPair;
use crate::jobs::lock;
use crate::{Error, Result};

/// One micro-batch the fake ran (or failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeBatch {
    pub pairs: Vec<EncodedPair>,
    pub width: usize,
}

#[derive(Debug, Default)]
struct Gate {
    held: bool,
    /// Batches that may pass a held gate.
    permits: usize,
    /// Batches standing at the gate.
    waiting: usize,
    fail_next: usize,
    batches: Vec<FakeBatch>,
}

#[derive(Debug, Default)]
struct Shared {
    gate: Mutex<Gate>,
    changed: Condvar,
}

/// The fake model; clone it to keep a handle in the test, hand [`backend`](Self::backend)s to a
/// reranker (see [`crate::Reranker::fake`]).
#[derive(Debug, Clone, Default)]
pub struct FakeModel {
    shared: Arc<Shared>,
    latency: Duration,
    batch_dependent: bool,
    clock: Clock,
}

impl FakeModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Each micro-batch takes `latency`: a slower model without a bigger one.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Logits that move with the batch's size, as a provider that tiles its products by batch
    /// shape might: what the load-time batch-invariance probe must catch.
    pub fn batch_dependent(mut self) -> Self {
        self.batch_dependent = true;
        self
    }

    /// Runs in the simulated time of `clock`: latency advances it instead of passing.
    pub(crate) fn on_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Whether logits depend on the batch (see [`batch_dependent`](Self::batch_dependent)).
    pub fn is_batch_dependent(&self) -> bool {
        self.batch_dependent
    }

    /// A backend for one inference thread; all of them share this model's gate and log.
    pub fn backend(&self) -> Box<dyn Backend> {
        Box::new(FakeBackend { model: self.clone() })
    }

    /// The logits of a pair alone (in a batch of one).
    pub fn logits(pair: &EncodedPair) -> [f32; 2] {
        // FNV-1a over the tokens and their types.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (&id, &kind) in pair.input_ids.iter().zip(&pair.token_type_ids) {
            for byte in id.to_le_bytes().into_iter().chain([kind as u8]) {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let relevant = (hash % 8001) as f32 / 1000.0 - 4.0;
        [-relevant / 2.0, relevant / 2.0]
    }

    /// Stops every later batch at the gate until [`release`](Self::release)d.
    pub fn hold(&self) {
        lock(&self.shared.gate).held = true;
    }

    /// Lets `count` more batches through a held gate.
    pub fn release(&self, count: usize) {
        lock(&self.shared.gate).permits += count;
        self.shared.changed.notify_all();
    }

    /// Opens the gate for good.
    pub fn release_all(&self) {
        lock(&self.shared.gate).held = false;
        self.shared.changed.notify_all();
    }

    /// Blocks until `count` batches stand at the held gate.
    pub fn wait_until_waiting(&self, count: usize) {
        let mut gate = lock(&self.shared.gate);
        while gate.waiting < count {
            gate = self.shared.changed.wait(gate).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Blocks until `count` batches have run (or failed).
    pub fn wait_until_run(&self, count: usize) {
        let mut gate = lock(&self.shared.gate);
        while gate.batches.len() < count {
            gate = self.shared.changed.wait(gate).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// The next `count` batches fail.
    pub fn fail_next(&self, count: usize) {
        lock(&self.shared.gate).fail_next += count;
    }

    /// Every batch run so far, in order.
    pub fn batches(&self) -> Vec<FakeBatch> {
        lock(&self.shared.gate).batches.clone()
    }

    /// Waits at the gate if it is held; returns whether this batch is to fail.
    fn pass_gate(&self) -> bool {
        let mut gate = lock(&self.shared.gate);
        gate.waiting += 1;
        self.shared.changed.notify_all();
        while gate.held && gate.permits == 0 {
            gate = self.shared.changed.wait(gate).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if gate.held {
            gate.permits -= 1;
        }
        gate.waiting -= 1;
        let fail = gate.fail_next > 0;
        gate.fail_next = gate.fail_next.saturating_sub(1);
        fail
    }
}

struct FakeBackend {
    model: FakeModel,
}

impl Backend for FakeBackend {
    fn predict(&mut self, pairs: &[&EncodedPair], width: usize) -> Result<Vec<[f32; 2]>> {
        let fail = self.model.pass_gate();
        if !self.model.latency.is_zero() {
            self.model.clock.advance(self.model.latency);
        }
        let record = FakeBatch { pairs: pairs.iter().map(|&pair| pair.clone()).collect(), width };
        lock(&self.model.shared.gate).batches.push(record);
        self.model.shared.changed.notify_all();
        if fail {
            return Err(Error::Inference("the fake model was told to fail this batch".into()));
        }
        let shift = if self.model.batch_dependent { pairs.len() as f32 * 1e-3 } else { 0.0 };
        Ok(pairs.iter().map(|pair| FakeModel::logits(pair).map(|l| l + shift)).collect())
    }
}
