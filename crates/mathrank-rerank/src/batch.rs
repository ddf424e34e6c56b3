//! Length-aware micro-batching: sort by length, cut by a token budget and a maximum batch
//! size, pad each micro-batch only to its own longest pair.

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

/// Plans micro-batches for pairs of the given lengths. Every index appears exactly once.
/// A batch holds at most `max_batch` pairs and at most `batch_tokens` padded tokens (a single
/// pair longer than the budget still gets a batch of its own). With `sort_by_length` false the
/// pairs keep their input order (naive padding-to-longest, for comparison).
pub fn plan_micro_batches(
    lengths: &[usize],
    batch_tokens: usize,
    max_batch: usize,
    sort_by_length: bool,
) -> Vec<MicroBatch> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    if sort_by_length {
        // Longest first: the first batch shows at once whether memory suffices; ties keep input order.
        order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    }
    let mut batches = Vec::new();
    let mut current = MicroBatch { members: Vec::new(), width: 0 };
    for index in order {
        let width = current.width.max(lengths[index]);
        let fits = current.members.len() < max_batch.max(1) && width * (current.members.len() + 1) <= batch_tokens;
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
    fn groups_similar_lengths() {
        let batches = plan_micro_batches(&[10, 500, 12, 480, 11], 1024, 8, true);
        assert_eq!(batches[0], MicroBatch { members: vec![1, 3], width: 500 });
        assert_eq!(batches[1], MicroBatch { members: vec![2, 4, 0], width: 12 });
        let naive = plan_micro_batches(&[10, 500, 12, 480, 11], 4096, 2, false);
        assert_eq!(naive[0], MicroBatch { members: vec![0, 1], width: 500 });
    }

    proptest! {
        #[test]
        fn every_pair_exactly_once_within_limits(
            lengths in proptest::collection::vec(1usize..600, 0..80),
            budget in 64usize..8192,
            max_batch in 1usize..64,
            sort in proptest::bool::ANY,
        ) {
            let batches = plan_micro_batches(&lengths, budget, max_batch, sort);
            let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.members.clone()).collect();
            seen.sort();
            prop_assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
            for batch in &batches {
                prop_assert!(batch.members.len() <= max_batch);
                prop_assert_eq!(batch.width, batch.members.iter().map(|&i| lengths[i]).max().unwrap());
                prop_assert!(batch.members.len() == 1 || batch.padded_tokens() <= budget);
            }
        }
    }
}
