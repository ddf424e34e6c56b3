//! `AlbertForSequenceClassification` as an ONNX graph, written node by node.
//!
//! The shared transformer layer's weights are stored once and referenced by every one of the
//! `num_hidden_layers` applications, as in the model itself. Self-attention is one fused
//! operator per layer by default ([`Attention`]).

use crate::checkpoint::Weights;
use crate::graph::{Dim, Graph, MS_DOMAIN, attr_int, attr_ints, i64_tensor, tensor_info};
use crate::onnx::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, ValueInfoProto, tensor_proto,
};
use crate::packed::{self, Packing};
use crate::{Error, Result};

/// ONNX opset of the written graph, unless its attention needs a later one
/// ([`Attention::opset`]).
pub const OPSET: i64 = 17;

/// What the converter needs from `config.json`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct AlbertConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub embedding_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "one")]
    pub num_hidden_groups: usize,
    #[serde(default = "one")]
    pub inner_group_num: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// `torch_dtype` (older transformers) or `dtype` (newer).
    #[serde(default, alias = "torch_dtype")]
    pub dtype: Option<String>,
}

fn one() -> usize {
    1
}
fn default_act() -> String {
    "gelu_new".into()
}
fn default_positions() -> usize {
    512
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl AlbertConfig {
    pub fn parse(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).map_err(|err| Error::Config(format!("config.json: {err}")))?;
        if let Some(model_type) = &config.model_type
            && model_type != "albert"
        {
            return Err(Error::Config(format!(
                "model_type is {model_type:?}; only ALBERT checkpoints can be converted"
            )));
        }
        if !config.architectures.is_empty()
            && !config.architectures.iter().any(|a| a == "AlbertForSequenceClassification")
        {
            return Err(Error::Config(format!(
                "architectures are {:?}; only AlbertForSequenceClassification can be converted",
                config.architectures
            )));
        }
        if config.num_hidden_groups != 1 || config.inner_group_num != 1 {
            return Err(Error::Config(format!(
                "num_hidden_groups = {} and inner_group_num = {}; only 1 and 1 (every released ALBERT) are supported",
                config.num_hidden_groups, config.inner_group_num
            )));
        }
        if !matches!(config.hidden_act.as_str(), "gelu_new" | "gelu" | "gelu_pytorch_tanh" | "relu") {
            return Err(Error::Config(format!(
                "hidden_act {:?} is not supported (gelu_new, gelu, relu are)",
                config.hidden_act
            )));
        }
        if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            return Err(Error::Config("hidden_size must be a positive multiple of num_attention_heads".into()));
        }
        Ok(config)
    }
}

const LAYER: &str = "albert.encoder.albert_layer_groups.0.albert_layers.0.";

/// Names of the weights the graph uses; anything else in the checkpoint is ignored.
pub fn required_weights() -> Vec<String> {
    let mut names: Vec<String> = [
        "albert.embeddings.word_embeddings.weight",
        "albert.embeddings.position_embeddings.weight",
        "albert.embeddings.token_type_embeddings.weight",
        "albert.embeddings.LayerNorm.weight",
        "albert.embeddings.LayerNorm.bias",
        "albert.encoder.embedding_hidden_mapping_in.weight",
        "albert.encoder.embedding_hidden_mapping_in.bias",
        "albert.pooler.weight",
        "albert.pooler.bias",
        "classifier.weight",
        "classifier.bias",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for part in [
        "attention.query",
        "attention.key",
        "attention.value",
        "attention.dense",
        "attention.LayerNorm",
        "ffn",
        "ffn_output",
        "full_layer_layer_norm",
    ] {
        names.push(format!("{LAYER}{part}.weight"));
        names.push(format!("{LAYER}{part}.bias"));
    }
    names
}

/// The number format of the graph's heavy arithmetic: the shared layer's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in float32.
    #[default]
    F32,
    /// The shared layer's MatMul weights in int8, activations quantised per row at run time
    /// (`MatMulIntegerToFloat`); attention stays float32.
    Int8,
    /// The encoder in float16, for GPUs' tensor cores: embeddings, the shared layer's weights,
    /// its products and the activations between them. Where float16 would cost accuracy the
    /// arithmetic stays float32 without leaving the graph's float16 tensors: LayerNorm
    /// normalises in float32 (`stash_type` 1) and ONNX Runtime's softmax sums in float32. The
    /// pooler and the classifier are float32, and so are the logits. A graph that cast to
    /// float16 around each product only (and kept the rest float32) measured slower than
    /// float32 on an H200: the casts of its large activations cost more than the products gained.
    F16,
}

impl Precision {
    /// What the manifest records.
    pub fn describe(self) -> &'static str {
        match self {
            Precision::F32 => "float32",
            Precision::Int8 => "int8 (dynamic per-row activations, shared-layer MatMul weights)",
            Precision::F16 => {
                "float16 (encoder weights and activations; LayerNorm and softmax accumulate in float32; pooler, classifier and logits float32)"
            }
        }
    }
}

/// How the graph computes self-attention. Every fused form reads the padding from
/// `attention_mask` as one length per pair, so it assumes right padding (each row is ones, then
/// zeros), which is how mathrank and the usual Python loop pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Attention {
    /// Separate operators: Q·Kᵀ, the scale, an additive mask, Softmax, then ·V. ONNX Runtime
    /// runs no attention kernel for it; kept to measure against.
    Unfused,
    /// ONNX Runtime's `com.microsoft.MultiHeadAttention`, one per layer: separate Q, K and V
    /// (their biases added inside), `key_padding_mask` as int32 lengths `[batch]`. On the CPU
    /// it runs MLAS's attention; on CUDA the kernel is chosen by the session's attention backend
    /// (cuDNN's SDPA takes these lengths; flash attention takes no mask).
    MultiHead,
    /// MultiHeadAttention with the `[3 batch + 2]` mask (lengths, then the cumulative query and
    /// key offsets), the form ONNX Runtime's CUDA memory-efficient (cutlass) kernel takes.
    MultiHeadOffsets,
    /// ONNX's own `Attention` (opset 24) with `nonpad_kv_seqlen` (int64 lengths `[batch]`); the
    /// graph is opset 24. The default because its CUDA kernel takes the lengths into flash
    /// attention, which MultiHeadAttention's masked form cannot use; on the CPU provider
    /// MultiHeadAttention ran about 7% faster (docs/benchmarks.md, issue 21's section).
    #[default]
    Onnx,
    /// Padding-free: only the real tokens go through the encoder, and attention is ONNX
    /// Runtime's `com.microsoft.PackedMultiHeadAttention` (flash attention over variable
    /// lengths on CUDA). The packing is computed in the graph from `attention_mask`. CUDA only:
    /// the operator has no CPU kernel. See [`crate::packed`].
    Packed,
    /// [`Packed`](Self::Packed), with the packing computed by mathrank on the host and fed as
    /// four more inputs ([`crate::packed::HOST_INPUTS`]), so that a run never waits for the GPU
    /// to learn the number of real tokens.
    PackedHost,
    /// The packed graph's CPU twin, to test the packing where there is no GPU: the same
    /// padding-free encoder, with attention computed by MultiHeadAttention on the rows
    /// scattered back to their padded places. Not for serving (it pays for the scatter).
    PackedCheck,
    /// [`PackedCheck`](Self::PackedCheck) with the packing fed by the host, as
    /// [`PackedHost`](Self::PackedHost) takes it: the CPU check of the runtime's packing.
    PackedCheckHost,
}

impl Attention {
    /// Every form, for `--help` and errors.
    pub const NAMES: [&'static str; 8] =
        ["unfused", "mha", "mha-offsets", "onnx", "packed", "packed-host", "packed-check", "packed-check-host"];

    pub fn name(self) -> &'static str {
        match self {
            Attention::Unfused => "unfused",
            Attention::MultiHead => "mha",
            Attention::MultiHeadOffsets => "mha-offsets",
            Attention::Onnx => "onnx",
            Attention::Packed => "packed",
            Attention::PackedHost => "packed-host",
            Attention::PackedCheck => "packed-check",
            Attention::PackedCheckHost => "packed-check-host",
        }
    }

    /// Whether the encoder runs on the real tokens only.
    pub fn is_packed(self) -> bool {
        matches!(self, Attention::Packed | Attention::PackedHost | Attention::PackedCheck | Attention::PackedCheckHost)
    }

    /// Whether the graph takes its packing as inputs ([`crate::packed::HOST_INPUTS`]).
    pub fn packs_on_host(self) -> bool {
        matches!(self, Attention::PackedHost | Attention::PackedCheckHost)
    }

    /// Whether the graph runs only on CUDA (its attention operator has no CPU kernel).
    pub fn cuda_only(self) -> bool {
        matches!(self, Attention::Packed | Attention::PackedHost)
    }

    /// The default domain's opset the graph needs.
    pub fn opset(self) -> i64 {
        if self == Attention::Onnx { 24 } else { OPSET }
    }

    /// What the manifest records.
    pub fn describe(self) -> &'static str {
        match self {
            Attention::Unfused => "unfused (MatMul, Softmax, MatMul)",
            Attention::MultiHead => "com.microsoft.MultiHeadAttention, key_padding_mask int32 lengths [batch]",
            Attention::MultiHeadOffsets => {
                "com.microsoft.MultiHeadAttention, key_padding_mask int32 [3 batch + 2] (lengths, query and key offsets)"
            }
            Attention::Onnx => "ONNX Attention (opset 24), nonpad_kv_seqlen",
            Attention::Packed => {
                "padding-free, com.microsoft.PackedMultiHeadAttention (CUDA only), packing computed in the graph"
            }
            Attention::PackedHost => {
                "padding-free, com.microsoft.PackedMultiHeadAttention (CUDA only), packing fed by the host"
            }
            Attention::PackedCheck => {
                "padding-free, MultiHeadAttention on re-padded rows (the packed graph's CPU check)"
            }
            Attention::PackedCheckHost => {
                "padding-free, MultiHeadAttention on re-padded rows, packing fed by the host (packed-host's CPU check)"
            }
        }
    }
}

impl std::fmt::Display for Attention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Attention {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "unfused" => Ok(Attention::Unfused),
            "mha" => Ok(Attention::MultiHead),
            "mha-offsets" => Ok(Attention::MultiHeadOffsets),
            "onnx" => Ok(Attention::Onnx),
            "packed" => Ok(Attention::Packed),
            "packed-host" => Ok(Attention::PackedHost),
            "packed-check" => Ok(Attention::PackedCheck),
            "packed-check-host" => Ok(Attention::PackedCheckHost),
            other => Err(format!("unknown attention {other:?}; use one of {}", Attention::NAMES.join(", "))),
        }
    }
}

/// What the converter writes: the number format and the form of attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GraphOptions {
    pub precision: Precision,
    pub attention: Attention,
}

impl GraphOptions {
    pub fn new(precision: Precision) -> Self {
        Self { precision, ..Self::default() }
    }
}

/// A linear layer's product `x @ W^T`: float (MatMul), or int8 for the shared layer of an int8
/// graph. With `bias`, the bias is added (inside `MatMulIntegerToFloat` for int8).
fn product(g: &mut Graph<'_>, int8: bool, input: &str, prefix: &str, bias: bool) -> Result<String> {
    let shared = prefix.starts_with(LAYER);
    let weight_name = format!("{prefix}.weight");
    let (out, width) = match g.weight(&weight_name)?.shape[..] {
        [out, width] => (out, width),
        _ => return Err(Error::Checkpoint(format!("{weight_name} is not a matrix"))),
    };
    let per_token = prefix.starts_with("albert.encoder");
    let bias = if bias { Some(g.stored(&format!("{prefix}.bias"))?) } else { None };
    let output = if shared && int8 {
        g.quantized_matmul(input, width, &weight_name, bias.as_deref())?
    } else {
        let weight = g.stored_transposed(&weight_name)?;
        let product = g.node("MatMul", &[input, &weight], vec![]);
        match bias {
            Some(bias) => {
                if per_token {
                    g.per_token(&product, out);
                }
                g.node("Add", &[&product, &bias], vec![])
            }
            None => product,
        }
    };
    // The pooler and the classifier see one vector per pair; everything else is per token.
    if per_token {
        g.per_token(&output, out);
    }
    Ok(output)
}

/// The padding as the graph's attention reads it, built once before the layers.
enum Mask {
    /// Additive bias `[batch, 1, 1, sequence]`: 0 to keep, a large negative value to drop.
    Bias(String),
    /// int32 lengths `[batch]`, or `[3 batch + 2]` lengths and offsets (MultiHeadAttention).
    KeyPadding(String),
    /// int64 lengths `[batch]` (ONNX Attention's `nonpad_kv_seqlen`).
    NonPadLengths(String),
    /// Where the real tokens are, for a padding-free encoder; `check` for the CPU twin.
    Packed { packing: Packing, check: bool },
}

fn attention_mask(g: &mut Graph<'_>, attention: Attention) -> Mask {
    if attention.is_packed() {
        let packing = packed::packing(g, attention.packs_on_host());
        let check = matches!(attention, Attention::PackedCheck | Attention::PackedCheckHost);
        return Mask::Packed { packing, check };
    }
    if attention == Attention::Unfused {
        // (-10000 in float16, whose lowest value times 0 or plus a score would overflow).
        let float = g.float();
        let mask = g.cast("attention_mask", float);
        let axes = g.constant_i64(&[1, 2]);
        let mask = g.node("Unsqueeze", &[&mask, &axes], vec![]);
        let one = g.constant_f32(1.0);
        let inverted = g.node("Sub", &[&one, &mask], vec![]);
        let minimum = g.constant_f32(if g.half { -10_000.0 } else { f32::MIN });
        return Mask::Bias(g.node("Mul", &[&inverted, &minimum], vec![]));
    }
    // Right padding: a pair's length is the number of ones in its row.
    let lengths = g.reduce("ReduceSum", "attention_mask", &[1], false);
    if attention == Attention::Onnx {
        return Mask::NonPadLengths(lengths);
    }
    let lengths = g.cast(&lengths, tensor_proto::DataType::Int32);
    if attention == Attention::MultiHead {
        return Mask::KeyPadding(lengths);
    }
    // Rows of a padded batch start at multiples of the sequence length: 0, S, ..., B S.
    let shape = g.node("Shape", &["input_ids"], vec![]);
    let (zero, one) = (g.scalar_i64(0), g.scalar_i64(1));
    let batch = g.node("Gather", &[&shape, &zero], vec![attr_int("axis", 0)]);
    let sequence = g.node("Gather", &[&shape, &one], vec![attr_int("axis", 0)]);
    let rows = g.node("Add", &[&batch, &one], vec![]);
    let end = g.node("Mul", &[&rows, &sequence], vec![]);
    let starts = g.node("Range", &[&zero, &end, &sequence], vec![]);
    let starts = g.cast(&starts, tensor_proto::DataType::Int32);
    Mask::KeyPadding(g.node("Concat", &[&lengths, &starts, &starts], vec![attr_int("axis", 0)]))
}

/// One application of the shared layer's self-attention: the context `[batch, sequence,
/// hidden]` before the output projection.
fn self_attention(
    g: &mut Graph<'_>,
    options: &GraphOptions,
    config: &AlbertConfig,
    hidden: &str,
    mask: &Mask,
) -> Result<String> {
    let int8 = options.precision == Precision::Int8;
    let heads = config.num_attention_heads as i64;
    let part = |name: &str| format!("{LAYER}attention.{name}");
    let context = match mask {
        Mask::KeyPadding(mask) => {
            let query = product(g, int8, hidden, &part("query"), false)?;
            let key = product(g, int8, hidden, &part("key"), false)?;
            let value = product(g, int8, hidden, &part("value"), false)?;
            let biases = ["query", "key", "value"].map(|p| format!("{}.bias", part(p)));
            let bias = g.stored_concat(&part("qkv.bias"), &biases)?;
            let inputs = [query.as_str(), &key, &value, &bias, mask];
            g.node_ms("MultiHeadAttention", &inputs, vec![attr_int("num_heads", heads)])
        }
        Mask::NonPadLengths(lengths) => {
            let query = product(g, int8, hidden, &part("query"), true)?;
            let key = product(g, int8, hidden, &part("key"), true)?;
            let value = product(g, int8, hidden, &part("value"), true)?;
            let inputs = [query.as_str(), &key, &value, "", "", "", lengths];
            g.node("Attention", &inputs, vec![attr_int("q_num_heads", heads), attr_int("kv_num_heads", heads)])
        }
        Mask::Bias(bias) => unfused_attention(g, int8, config, hidden, bias)?,
        Mask::Packed { packing, check } => {
            let query = product(g, int8, hidden, &part("query"), true)?;
            let key = product(g, int8, hidden, &part("key"), true)?;
            let value = product(g, int8, hidden, &part("value"), true)?;
            let qkv = [query.as_str(), &key, &value];
            if *check {
                packed::attention_check(g, qkv, packing, heads, config.hidden_size)
            } else {
                packed::attention(g, qkv, packing, heads, config.hidden_size)
            }
        }
    };
    g.per_token(&context, config.hidden_size);
    Ok(context)
}

/// Attention as separate operators, as the torch exporter writes it.
fn unfused_attention(g: &mut Graph<'_>, int8: bool, config: &AlbertConfig, hidden: &str, bias: &str) -> Result<String> {
    let heads = config.num_attention_heads as i64;
    let head_dim = (config.hidden_size / config.num_attention_heads) as i64;
    let split_shape = g.constant_i64(&[0, 0, heads, head_dim]);
    let merged_shape = g.constant_i64(&[0, 0, config.hidden_size as i64]);
    let scale = g.constant_f32(1.0 / (head_dim as f32).sqrt());
    let query = product(g, int8, hidden, &format!("{LAYER}attention.query"), true)?;
    let key = product(g, int8, hidden, &format!("{LAYER}attention.key"), true)?;
    let value = product(g, int8, hidden, &format!("{LAYER}attention.value"), true)?;
    let query = g.node("Reshape", &[&query, &split_shape], vec![]);
    let query = g.node("Transpose", &[&query], vec![attr_ints("perm", &[0, 2, 1, 3])]);
    let key = g.node("Reshape", &[&key, &split_shape], vec![]);
    let key = g.node("Transpose", &[&key], vec![attr_ints("perm", &[0, 2, 3, 1])]);
    let value = g.node("Reshape", &[&value, &split_shape], vec![]);
    let value = g.node("Transpose", &[&value], vec![attr_ints("perm", &[0, 2, 1, 3])]);
    let scores = g.node("MatMul", &[&query, &key], vec![]);
    let scores = g.node("Mul", &[&scores, &scale], vec![]);
    let scores = g.node("Add", &[&scores, bias], vec![]);
    let probabilities = g.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
    let context = g.node("MatMul", &[&probabilities, &value], vec![]);
    let context = g.node("Transpose", &[&context], vec![attr_ints("perm", &[0, 2, 1, 3])]);
    Ok(g.node("Reshape", &[&context, &merged_shape], vec![]))
}

/// One application of the shared layer.
fn layer(
    g: &mut Graph<'_>,
    options: &GraphOptions,
    config: &AlbertConfig,
    hidden: &str,
    mask: &Mask,
) -> Result<String> {
    let int8 = options.precision == Precision::Int8;
    let eps = config.layer_norm_eps as f32;
    let context = self_attention(g, options, config, hidden, mask)?;
    let projected = product(g, int8, &context, &format!("{LAYER}attention.dense"), true)?;
    let residual = g.node("Add", &[hidden, &projected], vec![]);
    g.per_token(&residual, config.hidden_size);
    let attended = g.layer_norm(&residual, &format!("{LAYER}attention.LayerNorm"), eps)?;
    let ffn = product(g, int8, &attended, &format!("{LAYER}ffn"), true)?;
    let ffn = g.activation(&ffn, &config.hidden_act);
    g.per_token(&ffn, config.intermediate_size);
    let ffn = product(g, int8, &ffn, &format!("{LAYER}ffn_output"), true)?;
    let residual = g.node("Add", &[&ffn, &attended], vec![]);
    g.per_token(&residual, config.hidden_size);
    g.layer_norm(&residual, &format!("{LAYER}full_layer_layer_norm"), eps)
}

fn int64_input(name: &str) -> ValueInfoProto {
    tensor_info(name, tensor_proto::DataType::Int64, &[Dim::Param("batch"), Dim::Param("sequence")])
}

fn logits_output(labels: usize) -> ValueInfoProto {
    tensor_info("logits", tensor_proto::DataType::Float, &[Dim::Param("batch"), Dim::Value(labels)])
}

/// Builds the ONNX model of an ALBERT sequence classifier (float32, fused attention).
pub fn build_model(config: &AlbertConfig, weights: &Weights) -> Result<ModelProto> {
    build_graph(config, weights, &GraphOptions::default())
}

/// [`build_model`], optionally with the shared layer's MatMul weights in int8 (dynamic
/// quantisation). The int8 weights are stored once, like the float ones.
pub fn build_model_with(config: &AlbertConfig, weights: &Weights, quantize_int8: bool) -> Result<ModelProto> {
    build_model_as(config, weights, if quantize_int8 { Precision::Int8 } else { Precision::F32 })
}

/// [`build_model`] at a [`Precision`]; the shared layer's weights are stored once whatever it is.
pub fn build_model_as(config: &AlbertConfig, weights: &Weights, precision: Precision) -> Result<ModelProto> {
    build_graph(config, weights, &GraphOptions::new(precision))
}

/// The ONNX model of an ALBERT sequence classifier at a precision, with a form of attention.
pub fn build_graph(config: &AlbertConfig, weights: &Weights, options: &GraphOptions) -> Result<ModelProto> {
    for name in required_weights() {
        if !weights.contains_key(&name) {
            return Err(Error::MissingWeight(name));
        }
    }
    let labels = weights["classifier.weight"].shape.first().copied().unwrap_or(2);
    let opset = options.attention.opset();
    let mut g = Graph::new(weights, opset, options.precision == Precision::F16);
    g.packed = options.attention.is_packed();

    // The padding as attention reads it (for a packed graph, where the real tokens are, which
    // the embeddings need first).
    let mask = attention_mask(&mut g, options.attention);
    let mut hidden = embeddings(&mut g, config, &mask)?;
    for _ in 0..config.num_hidden_layers {
        hidden = layer(&mut g, options, config, &hidden, &mask)?;
    }

    // Pooler (first token, dense, tanh) and classifier.
    let mut first = match &mask {
        Mask::Packed { packing, .. } => packed::first_tokens(&mut g, &hidden, packing, config.hidden_size),
        _ => {
            let first_index = {
                let name = format!("const_i64_{}", g.initializers.len());
                g.initializers.push(i64_tensor(&name, &[], &[0]));
                name
            };
            g.node("Gather", &[&hidden, &first_index], vec![attr_int("axis", 1)])
        }
    };
    if g.half {
        // One vector per pair from here on: float32 costs nothing and keeps the logits exact.
        first = g.cast(&first, tensor_proto::DataType::Float);
        g.half = false;
    }
    let pooled = product(&mut g, false, &first, "albert.pooler", true)?;
    let pooled = g.node("Tanh", &[&pooled], vec![]);
    let logits = product(&mut g, false, &pooled, "classifier", true)?;
    g.nodes.push(NodeProto {
        input: vec![logits],
        output: vec!["logits".into()],
        name: Some("logits".into()),
        op_type: Some("Identity".into()),
        ..Default::default()
    });
    Ok(model_of(g, options, labels))
}

/// Word + position + token type embeddings, LayerNorm, and the projection to the hidden size:
/// `[batch, sequence, hidden]`, or `[1, tokens, hidden]` for a packed graph.
fn embeddings(g: &mut Graph<'_>, config: &AlbertConfig, mask: &Mask) -> Result<String> {
    let word_table = g.stored("albert.embeddings.word_embeddings.weight")?;
    let position_table = g.stored("albert.embeddings.position_embeddings.weight")?;
    let type_table = g.stored("albert.embeddings.token_type_embeddings.weight")?;
    let sum = if let Mask::Packed { packing, .. } = mask {
        let tables = [word_table.as_str(), &position_table, &type_table];
        packed::embedding_sum(g, packing, tables, config.embedding_size)
    } else {
        let words = g.node("Gather", &[&word_table, "input_ids"], vec![attr_int("axis", 0)]);
        let sequence_length = g.node("Shape", &["input_ids"], vec![attr_int("start", 1), attr_int("end", 2)]);
        let zero = g.constant_i64(&[0]);
        let positions = g.node("Slice", &[&position_table, &zero, &sequence_length, &zero], vec![]);
        let types = g.node("Gather", &[&type_table, "token_type_ids"], vec![attr_int("axis", 0)]);
        let sum = g.node("Add", &[&words, &positions], vec![]);
        let sum = g.node("Add", &[&sum, &types], vec![]);
        g.per_token(&sum, config.embedding_size);
        sum
    };
    let embedded = g.layer_norm(&sum, "albert.embeddings.LayerNorm", config.layer_norm_eps as f32)?;
    product(g, false, &embedded, "albert.encoder.embedding_hidden_mapping_in", true)
}

/// The model around the finished graph: inputs, output, opsets, and the form of attention in
/// the metadata (`mathrank.attention`), where the runtime reads how to feed and batch it.
fn model_of(g: Graph<'_>, options: &GraphOptions, labels: usize) -> ModelProto {
    let opset = options.attention.opset();
    let mut opset_import = vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }];
    if g.uses_ms_domain {
        opset_import.push(OperatorSetIdProto { domain: Some(MS_DOMAIN.into()), version: Some(1) });
    }
    let mut input = vec![int64_input("input_ids"), int64_input("attention_mask"), int64_input("token_type_ids")];
    if options.attention.packs_on_host() {
        input.extend(packed::host_inputs());
    }
    let graph = GraphProto {
        node: g.nodes,
        name: Some("albert_for_sequence_classification".into()),
        initializer: g.initializers,
        doc_string: Some(format!("Written by mathrank model convert; attention: {}", options.attention.describe())),
        input,
        output: vec![logits_output(labels)],
        value_info: g.value_info,
    };
    ModelProto {
        // Opset 24 needs IR version 11; 17 is read since IR version 8.
        ir_version: Some(if opset >= 23 { 11 } else { 8 }),
        opset_import,
        producer_name: Some("mathrank".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: None,
        graph: Some(graph),
        metadata_props: vec![StringStringEntryProto {
            key: Some(ATTENTION_METADATA.into()),
            value: Some(options.attention.name().into()),
        }],
    }
}

/// The metadata key naming the graph's attention form (defined with the runtime that reads it).
pub use mathrank_rerank::packing::ATTENTION_METADATA;

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> String {
        format!(
            r#"{{"vocab_size": 10, "embedding_size": 4, "hidden_size": 8, "num_hidden_layers": 2,
               "num_attention_heads": 2, "intermediate_size": 16{extra}}}"#
        )
    }

    #[test]
    fn tolerant_config_parsing() {
        let parsed = AlbertConfig::parse(&config(r#", "torch_dtype": "float32", "unknown_key": [1, 2]"#)).unwrap();
        assert_eq!(parsed.dtype.as_deref(), Some("float32"));
        assert_eq!(parsed.hidden_act, "gelu_new");
        assert_eq!(parsed.max_position_embeddings, 512);
        assert_eq!(AlbertConfig::parse(&config(r#", "dtype": "float16""#)).unwrap().dtype.as_deref(), Some("float16"));
    }

    #[test]
    fn unsupported_configs_are_refused_with_the_reason() {
        for (extra, needle) in [
            (r#", "num_hidden_groups": 2"#, "num_hidden_groups"),
            (r#", "inner_group_num": 3"#, "inner_group_num"),
            (r#", "model_type": "bert""#, "ALBERT"),
            (r#", "hidden_act": "swish""#, "swish"),
        ] {
            let err = AlbertConfig::parse(&config(extra)).unwrap_err().to_string();
            assert!(err.contains(needle), "{extra}: {err}");
        }
    }

    #[test]
    fn a_missing_weight_is_named() {
        let parsed = AlbertConfig::parse(&config("")).unwrap();
        let err = build_model(&parsed, &Weights::new()).unwrap_err().to_string();
        assert!(err.contains("albert.embeddings.word_embeddings.weight"), "{err}");
    }
}
