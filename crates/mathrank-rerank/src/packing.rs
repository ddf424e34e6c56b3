//! The packing of a padded micro-batch, computed on the host for the padding-free graphs that
//! take it as inputs (`mathrank model convert --attention packed-host`).
//!
//! Computing it in the graph (`NonZero` over the mask) gives ONNX Runtime an output whose shape
//! depends on data, so every run waits for the GPU once before it can size the rest. mathrank
//! already knows every pair's length, so it hands the four arrays over with the token ids. The
//! layout is `com.microsoft.PackedMultiHeadAttention`'s: rows are right-padded, the real tokens
//! in row order are the packed tokens.
//!
//! ```
//! use mathrank_rerank::packing::HostPacking;
//!
//! let packing = HostPacking::new(&[2, 3], 3);
//! assert_eq!(packing.packed_index, [0, 1, 3, 4, 5]);
//! assert_eq!(packing.row_start, [0, 2]);
//! assert_eq!(packing.token_offset, [0, 1, 3, 4, 5, 2]);
//! assert_eq!(packing.cumulative_sequence_length, [0, 2, 5]);
//! ```

/// The extra inputs of a graph packed on the host, in order: flat positions of the real tokens
/// (int64 `[tokens]`), each row's first packed token (int64 `[batch]`), the operator's
/// `token_offset` (int32 `[batch, sequence]`) and `cumulative_sequence_length` (int32
/// `[batch + 1]`). The converter declares them; the ONNX Runtime backend feeds them.
pub const HOST_INPUTS: [&str; 4] = ["packed_index", "row_start", "token_offset", "cumulative_sequence_length"];

/// The key of the ONNX model's metadata under which the converter names the graph's attention
/// form (`onnx`, `mha`, `unfused`, `packed`, `packed-host`, ...).
pub const ATTENTION_METADATA: &str = "mathrank.attention";

/// Whether an attention form (the value under [`ATTENTION_METADATA`]) is padding-free: the graph
/// computes on the real tokens only (`packed`, `packed-host` and their CPU checks), so a batch
/// costs its pairs' own lengths.
pub fn is_padding_free(attention: &str) -> bool {
    attention.starts_with("packed")
}

/// The four host inputs of a packed graph, in the order of [`HOST_INPUTS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPacking {
    /// int64 `[tokens]`: the flat positions (`row * width + t`) of the real tokens, in order.
    pub packed_index: Vec<i64>,
    /// int64 `[batch]`: each row's first packed token (its `[CLS]`, which the pooler reads).
    pub row_start: Vec<i64>,
    /// int32 `[batch, width]`: the real tokens' flat positions, then the padding's.
    pub token_offset: Vec<i32>,
    /// int32 `[batch + 1]`: `[0, len_0, len_0 + len_1, ...]`.
    pub cumulative_sequence_length: Vec<i32>,
}

impl HostPacking {
    /// The packing of rows of the given lengths, each padded on the right to `width`.
    ///
    /// # Panics
    /// If a length exceeds `width` or the batch has more than `i32::MAX` positions: the caller
    /// pads to its longest pair and batches are bounded far below that.
    pub fn new(lengths: &[usize], width: usize) -> Self {
        let positions = lengths.len() * width;
        assert!(i32::try_from(positions).is_ok(), "a micro-batch of {positions} positions");
        let tokens: usize = lengths.iter().sum();
        let mut packed_index = Vec::with_capacity(tokens);
        let mut row_start = Vec::with_capacity(lengths.len());
        let mut padding = Vec::with_capacity(positions - tokens);
        let mut cumulative_sequence_length = Vec::with_capacity(lengths.len() + 1);
        cumulative_sequence_length.push(0);
        for (row, &length) in lengths.iter().enumerate() {
            assert!(length <= width, "row {row} has {length} tokens, more than the width {width}");
            let start = row * width;
            row_start.push(packed_index.len() as i64);
            packed_index.extend((start..start + length).map(|position| position as i64));
            padding.extend((start + length..start + width).map(|position| position as i32));
            cumulative_sequence_length.push(packed_index.len() as i32);
        }
        let mut token_offset: Vec<i32> = packed_index.iter().map(|&position| position as i32).collect();
        token_offset.extend(padding);
        Self { packed_index, row_start, token_offset, cumulative_sequence_length }
    }

    /// Real tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.packed_index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_batch_packs_to_itself() {
        let packing = HostPacking::new(&[3, 3], 3);
        assert_eq!(packing.packed_index, [0, 1, 2, 3, 4, 5]);
        assert_eq!(packing.token_offset, [0, 1, 2, 3, 4, 5]);
        assert_eq!(packing.row_start, [0, 3]);
        assert_eq!(packing.tokens(), 6);
    }

    proptest! {
        #[test]
        fn the_layout_matches_the_operator(lengths in proptest::collection::vec(1usize..40, 1..20), extra in 0usize..5) {
            let width = lengths.iter().copied().max().unwrap() + extra;
            let packing = HostPacking::new(&lengths, width);
            // Rebuild the mask and check every array against its definition.
            let mask: Vec<bool> = lengths.iter().flat_map(|&l| (0..width).map(move |t| t < l)).collect();
            let real: Vec<i64> = (0..mask.len()).filter(|&p| mask[p]).map(|p| p as i64).collect();
            let pad: Vec<i32> = (0..mask.len()).filter(|&p| !mask[p]).map(|p| p as i32).collect();
            prop_assert_eq!(&packing.packed_index, &real);
            prop_assert_eq!(packing.token_offset.len(), lengths.len() * width);
            prop_assert_eq!(&packing.token_offset[real.len()..], &pad[..]);
            for (row, &length) in lengths.iter().enumerate() {
                let start = packing.cumulative_sequence_length[row] as usize;
                prop_assert_eq!(packing.cumulative_sequence_length[row + 1] as usize - start, length);
                prop_assert_eq!(packing.row_start[row] as usize, start);
                // The row's first packed token is its [CLS], at flat position row * width.
                prop_assert_eq!(packing.packed_index[start], (row * width) as i64);
            }
        }
    }
}
