//! Micro-batch planning by estimated cost.
//!
//! A micro-batch is padded to its longest pair, so which pairs share a batch decides how much
//! work is wasted on padding. Sorting by length and cutting at a token budget (the old planner)
//! still pads the longest batch to an outlier: on 48 pairs of mean 145 tokens with one of 487,
//! the 16 longest ran at 487 tokens each. Here the pairs are sorted by length and cut where a
//! dynamic programme over the sorted order minimises the estimated cost of the whole set,
//! under a [`CostModel`] of padded tokens, the quadratic attention term and a per-batch overhead
//! (fitted with `mathrank-bench cost-model`). Cutting the sorted order into contiguous runs is
//! optimal for a cost that grows with a batch's width and size, so the programme's answer is the
//! best plan, not a heuristic's.
//!
//! A padding-free ("packed") graph computes on the real tokens only, so its cost model is
//! [`CostModel::packed`]: a batch costs its overhead plus each pair's own length and attention,
//! and the token budget bounds the real tokens. The same programme then fills batches as far as
//! the limits allow, since only the per-batch overhead is left to save.

/// The estimated cost of running one padded micro-batch, in units of "one padded token through
/// the linear layers". A batch of `size` pairs padded to `width` tokens costs
/// `per_batch + size * (width + attention * width^2)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CostModel {
    /// Fixed cost of one session run (dispatch, kernel launches, small-matrix inefficiency), in
    /// padded-token equivalents.
    pub per_batch: f64,
    /// Weight of the attention term: a row of width `w` costs `w + attention * w^2`.
    pub attention: f64,
    /// The graph is padding-free: a pair costs its own length, not the batch's width, and the
    /// token budget counts real tokens.
    #[serde(default)]
    pub packed: bool,
}

impl CostModel {
    /// ALBERT-base on ONNX Runtime's CPU provider, fitted on this project's 2-core machine with
    /// `mathrank-bench cost-model` (albert-base-random, fp32, 2 threads, widths 32-512, batches
    /// 1-16; `bench/results-cost-model-2026-11-27.jsonl`): attention 0.00034, R^2 0.9987, 1.39 ms
    /// per token. The fitted per-batch term (-5.6 tokens) is below the noise; batches of one
    /// against batches of eight at widths 32 and 64 show 8 to 12 tokens' worth per run, hence 10.
    /// The absolute scale is learned at run time.
    pub const CPU: CostModel = CostModel { per_batch: 10.0, attention: 0.00034, packed: false };

    /// Fitted on an H200 (fp16 graph, `scripts/gpu-run.sh`, 2026-11-27): a micro-batch costs
    /// about 1 ms whatever its size (1,650 tokens' worth at 0.61 us a token) plus, per pair,
    /// 0.61 us x (W + 0.0011 W^2) for W padded tokens. Attention weighs three times more than on
    /// the CPU, since the products are that much faster there.
    pub const GPU: CostModel = CostModel { per_batch: 1650.0, attention: 0.0011, packed: false };

    /// A padding-free graph on an H200 (fp16, `--attention packed-host`), fitted by
    /// `mathrank-bench cost-model --provider cuda` in `scripts/gpu-run.sh` (widths 32-512,
    /// batches 4-256, R^2 0.9993; `bench/results-gpu-h200-packed-2026-11-27.jsonl`): a run costs
    /// about 2,640 tokens' worth, and attention weighs less than in the padded graph, since flash
    /// attention over each pair's own length does no masked work.
    pub const GPU_PACKED: CostModel = CostModel { per_batch: 2642.0, attention: 0.000498, packed: true };

    /// The same model for a padding-free graph.
    pub fn packed(self) -> CostModel {
        CostModel { packed: true, ..self }
    }

    /// Cost of one micro-batch of `size` pairs padded to `width`; for a packed model, an upper
    /// bound (every pair as long as the longest), see [`CostModel::cost_of`].
    pub fn batch_cost(&self, size: usize, width: usize) -> f64 {
        if size == 0 {
            return 0.0;
        }
        self.per_batch + size as f64 * self.pair_cost(width)
    }

    /// Cost of one micro-batch of pairs of these lengths, padded to the longest unless the model
    /// is packed.
    pub fn cost_of(&self, lengths: impl IntoIterator<Item = usize>) -> f64 {
        let lengths: Vec<usize> = lengths.into_iter().collect();
        if lengths.is_empty() {
            return 0.0;
        }
        if self.packed {
            self.per_batch + lengths.iter().map(|&length| self.pair_cost(length)).sum::<f64>()
        } else {
            self.batch_cost(lengths.len(), lengths.iter().copied().max().unwrap_or(0))
        }
    }

    /// Tokens a micro-batch occupies on the device: real ones if packed, padded ones otherwise.
    pub fn batch_tokens(&self, size: usize, width: usize, real: usize) -> usize {
        if self.packed { real } else { size.saturating_mul(width) }
    }

    /// The cost of one pair of `length` tokens with no padding and no overhead: a lower bound
    /// used to admit work quickly before planning.
    pub fn pair_cost(&self, length: usize) -> f64 {
        let w = length as f64;
        w + self.attention * w * w
    }

    /// Total cost of a plan over pairs of these lengths.
    pub fn plan_cost(&self, plan: &[MicroBatch], lengths: &[usize]) -> f64 {
        plan.iter().map(|batch| self.cost_of(batch.members.iter().map(|&i| lengths[i]))).sum()
    }
}

impl std::str::FromStr for CostModel {
    type Err = String;

    /// `per_batch=30,attention=0.0011` (either key may be left out to keep the CPU default),
    /// with `packed` for a padding-free graph.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut model = CostModel::CPU;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "packed" {
                model.packed = true;
                continue;
            }
            let (key, value) = part.split_once('=').ok_or_else(|| format!("{part:?} is not KEY=VALUE"))?;
            let value: f64 = value.trim().parse().map_err(|_| format!("{value:?} is not a number"))?;
            if !value.is_finite() || value < 0.0 {
                return Err(format!("{key} must be a finite number >= 0, not {value}"));
            }
            match key.trim() {
                "per_batch" => model.per_batch = value,
                "attention" => model.attention = value,
                other => return Err(format!("unknown key {other:?}; use per_batch, attention and packed")),
            }
        }
        Ok(model)
    }
}

/// Indices (into the caller's pairs) of one micro-batch and its padded width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicroBatch {
    pub members: Vec<usize>,
    pub width: usize,
}

impl MicroBatch {
    /// Tokens the model computes on, padding included.
    pub fn padded_tokens(&self) -> usize {
        self.members.len() * self.width
    }
}

/// How pairs are grouped into micro-batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Planning {
    /// Sorted by length, cut where the estimated cost of the whole set is least.
    #[default]
    Cost,
    /// Sorted by length, cut greedily at the token budget (the planner before cost planning).
    Greedy,
    /// Input order, cut every `max_batch` pairs, each padded to its longest (the usual Python
    /// loop; for comparisons only).
    InputOrder,
}

impl std::str::FromStr for Planning {
    type Err = String;

    /// `cost`, `greedy` or `input-order`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "cost" => Ok(Self::Cost),
            "greedy" => Ok(Self::Greedy),
            "input-order" => Ok(Self::InputOrder),
            other => Err(format!("{other:?} is not a planning: use cost, greedy or input-order")),
        }
    }
}

/// Limits and strategy of the planner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Planner {
    /// Padded tokens per micro-batch (a single longer pair still gets a batch of its own).
    pub batch_tokens: usize,
    /// Pairs per micro-batch.
    pub max_batch: usize,
    pub cost: CostModel,
    pub planning: Planning,
}

impl Planner {
    /// Plans micro-batches for pairs of the given lengths. Every index appears exactly once;
    /// each batch holds at most `max_batch` pairs and `batch_tokens` padded tokens (or one pair).
    /// Batches come longest first, so the first one shows at once whether memory suffices.
    pub fn plan(&self, lengths: &[usize]) -> Vec<MicroBatch> {
        match self.planning {
            Planning::Cost => plan_by_cost(lengths, self.batch_tokens, self.max_batch, &self.cost),
            Planning::Greedy => plan_micro_batches(lengths, self.batch_tokens, self.max_batch, true),
            Planning::InputOrder => plan_micro_batches(lengths, usize::MAX, self.max_batch, false),
        }
    }
}

/// Pair indices sorted by decreasing length; ties keep input order.
fn longest_first(lengths: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    order
}

/// The least-cost cut of the length-sorted pairs into micro-batches (dynamic programme,
/// O(n * max_batch)).
pub fn plan_by_cost(lengths: &[usize], batch_tokens: usize, max_batch: usize, cost: &CostModel) -> Vec<MicroBatch> {
    let order = longest_first(lengths);
    let n = order.len();
    let max_batch = max_batch.max(1);
    // best[j]: least cost of the first j sorted pairs; cut[j]: where its last batch starts.
    let mut best = vec![f64::INFINITY; n + 1];
    let mut cut = vec![0usize; n + 1];
    best[0] = 0.0;
    // prefix[j]: real tokens and packed cost of the first j sorted pairs.
    let mut prefix = vec![(0usize, 0.0f64); n + 1];
    for (k, &index) in order.iter().enumerate() {
        prefix[k + 1] = (prefix[k].0 + lengths[index], prefix[k].1 + cost.pair_cost(lengths[index]));
    }
    for j in 1..=n {
        // The batch [i, j) is padded to the length of its first (longest) member.
        for i in (j.saturating_sub(max_batch)..j).rev() {
            let size = j - i;
            let width = lengths[order[i]];
            if size > 1 && cost.batch_tokens(size, width, prefix[j].0 - prefix[i].0) > batch_tokens {
                // Earlier starts are only wider and larger.
                break;
            }
            let batch =
                if cost.packed { cost.per_batch + prefix[j].1 - prefix[i].1 } else { cost.batch_cost(size, width) };
            let total = best[i] + batch;
            if total < best[j] {
                best[j] = total;
                cut[j] = i;
            }
        }
    }
    let mut batches = Vec::new();
    let mut j = n;
    while j > 0 {
        let i = cut[j];
        batches.push(MicroBatch { members: order[i..j].to_vec(), width: lengths[order[i]] });
        j = i;
    }
    batches.reverse();
    batches
}

/// The greedy planner: sort by length (or keep input order), cut when a batch would exceed
/// `max_batch` pairs or `batch_tokens` padded tokens (a single pair longer than the budget
/// still gets a batch of its own).
pub fn plan_micro_batches(
    lengths: &[usize],
    batch_tokens: usize,
    max_batch: usize,
    sort_by_length: bool,
) -> Vec<MicroBatch> {
    let order = if sort_by_length { longest_first(lengths) } else { (0..lengths.len()).collect() };
    let mut batches = Vec::new();
    let mut current = MicroBatch { members: Vec::new(), width: 0 };
    for index in order {
        let width = current.width.max(lengths[index]);
        let fits =
            current.members.len() < max_batch.max(1) && width.saturating_mul(current.members.len() + 1) <= batch_tokens;
        if !current.members.is_empty() && !fits {
            batches.push(std::mem::replace(&mut current, MicroBatch { members: Vec::new(), width: 0 }));
        }
        current.width = current.width.max(lengths[index]);
        current.members.push(index);
    }
    if !current.members.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn greedy_groups_similar_lengths() {
        let batches = plan_micro_batches(&[10, 500, 12, 480, 11], 1024, 8, true);
        assert_eq!(batches[0], MicroBatch { members: vec![1, 3], width: 500 });
        assert_eq!(batches[1], MicroBatch { members: vec![2, 4, 0], width: 12 });
        let naive = plan_micro_batches(&[10, 500, 12, 480, 11], 4096, 2, false);
        assert_eq!(naive[0], MicroBatch { members: vec![0, 1], width: 500 });
    }

    #[test]
    fn an_outlier_gets_its_own_batch() {
        // The case: the greedy planner pads the 16 longest to the outlier.
        let mut lengths = vec![487];
        lengths.extend((0..47).map(|i| 100 + (i * 7) % 120));
        let cost = CostModel::CPU;
        let greedy = plan_micro_batches(&lengths, 8192, 32, true);
        assert!(greedy[0].members.len() > 1 && greedy[0].width == 487);
        let planned = plan_by_cost(&lengths, 8192, 32, &cost);
        assert_eq!(planned[0], MicroBatch { members: vec![0], width: 487 });
        assert!(cost.plan_cost(&planned, &lengths) < 0.8 * cost.plan_cost(&greedy, &lengths));
    }

    #[test]
    fn the_overhead_decides_how_far_to_split() {
        let lengths = [100, 90, 80, 70];
        // Free batches: every pair alone costs exactly its own length.
        let free = CostModel { per_batch: 0.0, attention: 0.0, packed: false };
        assert_eq!(plan_by_cost(&lengths, 8192, 32, &free).len(), 4);
        // Expensive batches: one batch for all.
        let costly = CostModel { per_batch: 1e6, attention: 0.0, packed: false };
        assert_eq!(plan_by_cost(&lengths, 8192, 32, &costly).len(), 1);
    }

    #[test]
    fn cost_models_parse() {
        let model: CostModel = "per_batch=12, attention=0.5".parse().unwrap();
        assert_eq!(model, CostModel { per_batch: 12.0, attention: 0.5, packed: false });
        assert_eq!("packed".parse::<CostModel>().unwrap(), CostModel::CPU.packed());
        assert_eq!("".parse::<CostModel>().unwrap(), CostModel::CPU);
        assert!("per_batch=-1".parse::<CostModel>().unwrap_err().contains(">= 0"));
        assert!("speed=3".parse::<CostModel>().unwrap_err().contains("unknown key"));
        assert!("per_batch".parse::<CostModel>().is_err());
    }

    #[test]
    fn a_packed_graph_fills_batches_whatever_the_lengths() {
        // One long pair and many short ones: padded, the short ones must not share its batch;
        // packed, they cost their own length wherever they go, so the fewest batches win.
        let mut lengths = vec![500];
        lengths.extend([20; 30]);
        let padded = plan_by_cost(&lengths, 4096, 64, &CostModel::GPU);
        let packed = plan_by_cost(&lengths, 4096, 64, &CostModel::GPU_PACKED);
        assert!(padded.len() >= 2, "{padded:?}");
        assert_eq!(packed.len(), 1);
        assert!(
            CostModel::GPU_PACKED.plan_cost(&packed, &lengths) < CostModel::GPU_PACKED.plan_cost(&padded, &lengths)
        );
        // The budget counts real tokens: 1,100 of them in batches of at most 600.
        let split = plan_by_cost(&lengths, 600, 64, &CostModel::GPU_PACKED);
        for batch in &split {
            assert!(batch.members.iter().map(|&i| lengths[i]).sum::<usize>() <= 600, "{split:?}");
        }
        assert_eq!(split.len(), 2);
    }

    /// Every cut of the sorted order into contiguous runs, for brute force.
    fn all_plans(order: &[usize], lengths: &[usize], limits: (usize, usize), cost: &CostModel) -> Vec<Vec<MicroBatch>> {
        if order.is_empty() {
            return vec![Vec::new()];
        }
        let mut plans = Vec::new();
        for size in 1..=order.len().min(limits.1) {
            let width = lengths[order[0]];
            let real = order[..size].iter().map(|&i| lengths[i]).sum();
            if size > 1 && cost.batch_tokens(size, width, real) > limits.0 {
                break;
            }
            for mut rest in all_plans(&order[size..], lengths, limits, cost) {
                rest.insert(0, MicroBatch { members: order[..size].to_vec(), width });
                plans.push(rest);
            }
        }
        plans
    }

    proptest! {
        #[test]
        fn every_pair_exactly_once_within_limits(
            lengths in proptest::collection::vec(1usize..600, 0..80),
            budget in 64usize..8192,
            max_batch in 1usize..64,
            planning in prop_oneof![Just(Planning::Cost), Just(Planning::Greedy), Just(Planning::InputOrder)],
        ) {
            let planner = Planner { batch_tokens: budget, max_batch, cost: CostModel::CPU, planning };
            let batches = planner.plan(&lengths);
            let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.members.clone()).collect();
            seen.sort();
            prop_assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
            for batch in &batches {
                prop_assert!(batch.members.len() <= max_batch);
                prop_assert_eq!(batch.width, batch.members.iter().map(|&i| lengths[i]).max().unwrap());
                if planning != Planning::InputOrder {
                    prop_assert!(batch.members.len() == 1 || batch.padded_tokens() <= budget);
                }
            }
        }

        #[test]
        fn cost_planning_never_costs_more_than_greedy(
            lengths in proptest::collection::vec(1usize..512, 1..100),
            per_batch in 0.0f64..5000.0,
            attention in 0.0f64..0.01,
            max_batch in 1usize..48,
        ) {
            let cost = CostModel { per_batch, attention, packed: false };
            let planned = cost.plan_cost(&plan_by_cost(&lengths, 8192, max_batch, &cost), &lengths);
            let greedy = cost.plan_cost(&plan_micro_batches(&lengths, 8192, max_batch, true), &lengths);
            prop_assert!(planned <= greedy * (1.0 + 1e-9), "{planned} > {greedy}");
        }

        #[test]
        fn cost_planning_is_optimal_on_small_sets(
            lengths in proptest::collection::vec(1usize..512, 1..9),
            per_batch in 0.0f64..2000.0,
            max_batch in 1usize..6,
            budget in 256usize..2048,
            packed in proptest::bool::ANY,
        ) {
            let cost = CostModel { per_batch, attention: 0.001, packed };
            let order = longest_first(&lengths);
            let best = all_plans(&order, &lengths, (budget, max_batch), &cost)
                .iter()
                .map(|plan| cost.plan_cost(plan, &lengths))
                .fold(f64::INFINITY, f64::min);
            let planned = cost.plan_cost(&plan_by_cost(&lengths, budget, max_batch, &cost), &lengths);
            prop_assert!((planned - best).abs() <= 1e-6 * best.max(1.0), "{planned} vs brute force {best}");
        }
    }
}
