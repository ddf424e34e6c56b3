//! Padding-free ("packed") graphs: after the embeddings, only the real tokens of a micro-batch
//! go through the encoder, as one `[1, tokens, width]` activation, so that every product,
//! LayerNorm and activation costs the batch's real tokens rather than `batch x sequence`.
//! Attention runs ONNX Runtime's `com.microsoft.PackedMultiHeadAttention`, which takes the
//! packed Q, K and V with each pair's bounds (`cumulative_sequence_length`) and, on CUDA,
//! runs flash attention over variable lengths without a mask. It has no CPU kernel: packed
//! graphs run on CUDA only ([`Attention::PackedCheck`](crate::Attention::PackedCheck) is the
//! CPU-runnable twin that tests the packing itself).
//!
//! The packing follows from `attention_mask` with right padding (each row is ones, then zeros):
//! row `b` holds its `len_b` real tokens first. In the flattened `[batch * sequence]` layout,
//! the real tokens, in order, are the packed tokens; `token_offset` lists their flat positions
//! and then the padding's (the operator's documented layout), `cumulative_sequence_length` is
//! `[0, len_0, len_0 + len_1, ...]`, and row `b`'s first token (`[CLS]`, which the pooler
//! reads) is packed token `cumulative_sequence_length[b]`.
//!
//! Where these come from is the one difference between the two packed forms: computed in the
//! graph from `attention_mask` (`NonZero`, whose data-dependent output shape makes ONNX Runtime
//! wait for the GPU once per run), or computed by mathrank on the host and fed as four more
//! inputs ([`HOST_INPUTS`]), so that the run needs no such wait.

use crate::graph::{Dim, Graph, attr_int, attr_tensor, tensor_info};
use crate::onnx::{ValueInfoProto, tensor_proto};

/// The extra inputs of a graph packed on the host (defined with the runtime that feeds them).
pub use mathrank_rerank::packing::HOST_INPUTS;

/// Where the real tokens are, as the packed graph reads it.
pub(crate) struct Packing {
    /// int64 `[tokens]`: flat positions (`b * sequence + t`) of the real tokens, in order.
    pub real: String,
    /// int64 `[batch]`: each row's first token in the packed order.
    pub starts: String,
    /// int32 `[batch, sequence]`: the real tokens' flat positions, then the padding's.
    pub token_offset: String,
    /// int32 `[batch + 1]`.
    pub cumulative: String,
    /// int32 `[batch]`: each row's length (the CPU twin's MultiHeadAttention mask).
    pub lengths: String,
}

/// The declared extra inputs of a graph packed on the host.
pub(crate) fn host_inputs() -> Vec<ValueInfoProto> {
    use tensor_proto::DataType::{Int32, Int64};
    vec![
        tensor_info(HOST_INPUTS[0], Int64, &[Dim::Param("tokens")]),
        tensor_info(HOST_INPUTS[1], Int64, &[Dim::Param("batch")]),
        tensor_info(HOST_INPUTS[2], Int32, &[Dim::Param("batch"), Dim::Param("sequence")]),
        tensor_info(HOST_INPUTS[3], Int32, &[Dim::Param("batch_plus_one")]),
    ]
}

/// The packing: read from the host inputs, or computed from `attention_mask`.
pub(crate) fn packing(g: &mut Graph<'_>, on_host: bool) -> Packing {
    let lengths = g.reduce("ReduceSum", "attention_mask", &[1], false);
    let lengths32 = g.cast(&lengths, tensor_proto::DataType::Int32);
    if on_host {
        return Packing {
            real: HOST_INPUTS[0].into(),
            starts: HOST_INPUTS[1].into(),
            token_offset: HOST_INPUTS[2].into(),
            cumulative: HOST_INPUTS[3].into(),
            lengths: lengths32,
        };
    }
    let flat = g.constant_i64(&[-1]);
    let mask = g.node("Reshape", &["attention_mask", &flat], vec![]);
    let real = g.node("NonZero", &[&mask], vec![]);
    let real = g.node("Reshape", &[&real, &flat], vec![]);
    let zero = g.scalar_i64(0);
    let is_pad = g.node("Equal", &[&mask, &zero], vec![]);
    let pad = g.node("NonZero", &[&is_pad], vec![]);
    let pad = g.node("Reshape", &[&pad, &flat], vec![]);
    let order = g.node("Concat", &[&real, &pad], vec![attr_int("axis", 0)]);
    let shape = g.node("Shape", &["attention_mask"], vec![]);
    let token_offset = g.node("Reshape", &[&order, &shape], vec![]);
    let token_offset = g.cast(&token_offset, tensor_proto::DataType::Int32);
    let axis = g.scalar_i64(0);
    let ends = g.node("CumSum", &[&lengths, &axis], vec![]);
    let starts = g.node("Sub", &[&ends, &lengths], vec![]);
    let origin = g.constant_i64(&[0]);
    let cumulative = g.node("Concat", &[&origin, &ends], vec![attr_int("axis", 0)]);
    let cumulative = g.cast(&cumulative, tensor_proto::DataType::Int32);
    Packing { real, starts, token_offset, cumulative, lengths: lengths32 }
}

/// The embeddings' sum (word + position + token type) of the real tokens only, `[1, tokens,
/// embedding]`: ids, positions and types are gathered before the tables are read.
pub(crate) fn embedding_sum(g: &mut Graph<'_>, packing: &Packing, tables: [&str; 3], width: usize) -> String {
    let [word_table, position_table, type_table] = tables;
    let flat = g.constant_i64(&[-1]);
    let ids = g.node("Reshape", &["input_ids", &flat], vec![]);
    let ids = g.node("Gather", &[&ids, &packing.real], vec![attr_int("axis", 0)]);
    let types = g.node("Reshape", &["token_type_ids", &flat], vec![]);
    let types = g.node("Gather", &[&types, &packing.real], vec![attr_int("axis", 0)]);
    // A real token's position is its column: flat position modulo the padded row length.
    let sequence = g.node("Shape", &["input_ids"], vec![attr_int("start", 1), attr_int("end", 2)]);
    let positions = g.node("Mod", &[&packing.real, &sequence], vec![]);
    let words = g.node("Gather", &[word_table, &ids], vec![attr_int("axis", 0)]);
    let positions = g.node("Gather", &[position_table, &positions], vec![attr_int("axis", 0)]);
    let types = g.node("Gather", &[type_table, &types], vec![attr_int("axis", 0)]);
    let sum = g.node("Add", &[&words, &positions], vec![]);
    let sum = g.node("Add", &[&sum, &types], vec![]);
    let batch_axis = g.constant_i64(&[0]);
    let sum = g.node("Unsqueeze", &[&sum, &batch_axis], vec![]);
    g.per_token(&sum, width);
    sum
}

/// Packed self-attention over the packed Q, K and V `[1, tokens, hidden]`; the context has
/// the same shape. With `check`, the CPU twin: the same packing, with attention run by
/// MultiHeadAttention on the rows scattered back to their padded places.
pub(crate) fn attention(g: &mut Graph<'_>, qkv: [&str; 3], packing: &Packing, heads: i64, hidden: usize) -> String {
    let rows = g.constant_i64(&[-1, hidden as i64]);
    let [query, key, value] = qkv.map(|t| g.node("Reshape", &[t, &rows], vec![]));
    let inputs = [query.as_str(), &key, &value, "", &packing.token_offset, &packing.cumulative];
    let context = g.node_ms("PackedMultiHeadAttention", &inputs, vec![attr_int("num_heads", heads)]);
    let packed = g.constant_i64(&[1, -1, hidden as i64]);
    g.node("Reshape", &[&context, &packed], vec![])
}

/// [`attention`]'s CPU twin (see [`Attention::PackedCheck`](crate::Attention::PackedCheck)).
pub(crate) fn attention_check(
    g: &mut Graph<'_>,
    qkv: [&str; 3],
    packing: &Packing,
    heads: i64,
    hidden: usize,
) -> String {
    let rows = g.constant_i64(&[-1, hidden as i64]);
    // Zeros `[batch * sequence, hidden]`, the packed rows scattered onto their flat positions.
    let shape = g.node("Shape", &["input_ids"], vec![]);
    let all = g.reduce("ReduceProd", &shape, &[0], true);
    let width = g.constant_i64(&[hidden as i64]);
    let zeros_shape = g.node("Concat", &[&all, &width], vec![attr_int("axis", 0)]);
    let zeros = g.node("ConstantOfShape", &[&zeros_shape], vec![attr_tensor("value", g.half)]);
    let last = g.constant_i64(&[1]);
    let index = g.node("Unsqueeze", &[&packing.real, &last], vec![]);
    let padded_shape = g.node("Concat", &[&shape, &width], vec![attr_int("axis", 0)]);
    let [query, key, value] = qkv.map(|t| {
        let flat = g.node("Reshape", &[t, &rows], vec![]);
        let scattered = g.node("ScatterND", &[&zeros, &index, &flat], vec![]);
        g.node("Reshape", &[&scattered, &padded_shape], vec![])
    });
    let inputs = [query.as_str(), &key, &value, "", &packing.lengths];
    let context = g.node_ms("MultiHeadAttention", &inputs, vec![attr_int("num_heads", heads)]);
    let context = g.node("Reshape", &[&context, &rows], vec![]);
    let context = g.node("Gather", &[&context, &packing.real], vec![attr_int("axis", 0)]);
    let packed = g.constant_i64(&[1, -1, hidden as i64]);
    g.node("Reshape", &[&context, &packed], vec![])
}

/// Each row's first token (`[CLS]`) of the packed `[1, tokens, hidden]`: `[batch, hidden]`.
pub(crate) fn first_tokens(g: &mut Graph<'_>, hidden_state: &str, packing: &Packing, hidden: usize) -> String {
    let rows = g.constant_i64(&[-1, hidden as i64]);
    let flat = g.node("Reshape", &[hidden_state, &rows], vec![]);
    g.node("Gather", &[&flat, &packing.starts], vec![attr_int("axis", 0)])
}
