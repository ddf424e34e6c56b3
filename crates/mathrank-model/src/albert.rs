//! `AlbertForSequenceClassification` as an ONNX graph (opset 17), written node by node.
//!
//! The shared transformer layer's weights are stored once and referenced by every one of the
//! `num_hidden_layers` applications, as in the model itself.

use std::collections::BTreeSet;

use crate::checkpoint::{Tensor, Weights};
use crate::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, attribute_proto, tensor_proto, tensor_shape_proto, type_proto,
};
use crate::{Error, Result};

/// ONNX opset of the written graph.
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
    /// The shared layer's MatMul weights in int8, activations quantised per row at run time.
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

struct Graph<'w> {
    weights: &'w Weights,
    precision: Precision,
    /// Whether the tensors being built are float16 (the encoder of a [`Precision::F16`] graph).
    half: bool,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Shapes of the encoder's `[batch, sequence, width]` activations. ONNX Runtime infers
    /// shapes itself, but its inference loses the link between the sequence length of the
    /// embeddings (sliced by `Shape`) and the others, and its SkipLayerNormalization fusion
    /// then refuses the residual Adds. Declared here, 23 of the 25 LayerNorms fuse.
    value_info: Vec<ValueInfoProto>,
    stored: BTreeSet<String>,
    next: usize,
}

fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}
fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}
fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

/// A float tensor, stored as float16 when `half`, else float32.
fn float_tensor(name: &str, shape: &[usize], data: &[f32], half: bool) -> TensorProto {
    let (raw, data_type): (Vec<u8>, _) = if half {
        (data.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(), tensor_proto::DataType::Float16)
    } else {
        (data.iter().flat_map(|v| v.to_le_bytes()).collect(), tensor_proto::DataType::Float)
    };
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(data_type as i32),
        name: Some(name.into()),
        raw_data: Some(raw),
        ..Default::default()
    }
}

fn i64_tensor(name: &str, shape: &[usize], data: &[i64]) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(tensor_proto::DataType::Int64 as i32),
        name: Some(name.into()),
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

impl Graph<'_> {
    fn weight(&self, name: &str) -> Result<&Tensor> {
        self.weights.get(name).ok_or_else(|| Error::MissingWeight(name.to_owned()))
    }

    /// The element type of the activations being built.
    fn float(&self) -> tensor_proto::DataType {
        if self.half { tensor_proto::DataType::Float16 } else { tensor_proto::DataType::Float }
    }

    /// Stores a checkpoint tensor once, in the activations' type, and returns its name.
    fn stored(&mut self, name: &str) -> Result<String> {
        let stored_name = if self.half { format!("{name}.f16") } else { name.to_owned() };
        if self.stored.insert(stored_name.clone()) {
            let tensor = self.weight(name)?;
            let initializer = float_tensor(&stored_name, &tensor.shape, &tensor.data, self.half);
            self.initializers.push(initializer);
        }
        Ok(stored_name)
    }

    /// Stores a Linear weight `[out, in]` transposed to `[in, out]` for MatMul, once, in the
    /// activations' type.
    fn stored_transposed(&mut self, name: &str) -> Result<String> {
        let stored_name = if self.half { format!("{name}.T.f16") } else { format!("{name}.T") };
        if self.stored.insert(stored_name.clone()) {
            let tensor = self.weight(name)?;
            let [rows, cols] = tensor.shape[..] else {
                return Err(Error::Checkpoint(format!("{name} has shape {:?}, expected a matrix", tensor.shape)));
            };
            let mut transposed = vec![0f32; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    transposed[c * rows + r] = tensor.data[r * cols + c];
                }
            }
            self.initializers.push(float_tensor(&stored_name, &[cols, rows], &transposed, self.half));
        }
        Ok(stored_name)
    }

    fn cast(&mut self, input: &str, to: tensor_proto::DataType) -> String {
        self.node("Cast", &[input], vec![attr_int("to", to as i64)])
    }

    /// A scalar constant in the activations' type.
    fn constant_f32(&mut self, value: f32) -> String {
        let name = format!("const_f32_{}", self.initializers.len());
        self.initializers.push(float_tensor(&name, &[], &[value], self.half));
        name
    }

    fn constant_i64(&mut self, values: &[i64]) -> String {
        let name = format!("const_i64_{}", self.initializers.len());
        self.initializers.push(i64_tensor(&name, &[values.len()], values));
        name
    }

    fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.next += 1;
        let output = format!("{}_{}", op.to_lowercase(), self.next);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.clone()],
            name: Some(format!("{op}_{}", self.next)),
            op_type: Some(op.into()),
            attribute: attributes,
            ..Default::default()
        });
        output
    }

    fn linear(&mut self, input: &str, prefix: &str) -> Result<String> {
        let shared = prefix.starts_with(LAYER);
        let bias = self.stored(&format!("{prefix}.bias"))?;
        let product = if shared && self.precision == Precision::Int8 {
            self.quantized_matmul(input, &format!("{prefix}.weight"))?
        } else {
            let weight = self.stored_transposed(&format!("{prefix}.weight"))?;
            self.node("MatMul", &[input, &weight], vec![])
        };
        let sum = self.node("Add", &[&product, &bias], vec![]);
        // The pooler and the classifier see one vector per pair; everything else is per token.
        if prefix.starts_with("albert.encoder") {
            let width = self.weight(&format!("{prefix}.weight"))?.shape[0];
            self.per_token(&product, width);
            self.per_token(&sum, width);
        }
        Ok(sum)
    }

    /// Declares `name` a `[batch, sequence, width]` activation (see `value_info`).
    fn per_token(&mut self, name: &str, width: usize) {
        let info = tensor_info(name, self.float(), &[Dim::Param("batch"), Dim::Param("sequence"), Dim::Value(width)]);
        self.value_info.push(info);
    }

    /// Stores a Linear weight transposed and quantised to int8 (symmetric, per tensor), once;
    /// returns the names of the weight and its scale.
    fn stored_int8(&mut self, name: &str) -> Result<(String, String)> {
        let (q, scale_name) = (format!("{name}.T.int8"), format!("{name}.T.scale"));
        if self.stored.insert(q.clone()) {
            let tensor = self.weight(name)?;
            let [rows, cols] = tensor.shape[..] else {
                return Err(Error::Checkpoint(format!("{name} has shape {:?}, expected a matrix", tensor.shape)));
            };
            let max = tensor.data.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            let mut quantized = vec![0u8; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    let value = (tensor.data[r * cols + c] / scale).round().clamp(-127.0, 127.0) as i8;
                    quantized[c * rows + r] = value as u8;
                }
            }
            self.initializers.push(TensorProto {
                dims: vec![cols as i64, rows as i64],
                data_type: Some(tensor_proto::DataType::Int8 as i32),
                name: Some(q.clone()),
                raw_data: Some(quantized),
                ..Default::default()
            });
            self.initializers.push(float_tensor(&scale_name, &[], &[scale], false));
        }
        Ok((q, scale_name))
    }

    /// `x @ W^T` with the weight in int8 and the activation quantised at run time, symmetric,
    /// with one scale per row (per token). ONNX's DynamicQuantizeLinear would take one scale
    /// for the whole tensor, that is for the whole micro-batch, so a pair's score would depend
    /// on its batch-mates and on padding; per row it cannot, and a cached score equals a fresh
    /// one. The activation is stored as uint8 around a constant zero point of 128: ONNX
    /// Runtime's fast u8 x s8 kernel takes only a scalar zero point, and a constant one keeps
    /// the rows independent (its int8 x int8 path measured 3x slower here).
    fn quantized_matmul(&mut self, input: &str, weight: &str) -> Result<String> {
        let (q, w_scale) = self.stored_int8(weight)?;
        let abs = self.node("Abs", &[input], vec![]);
        let absmax = self.node("ReduceMax", &[&abs], vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)]);
        // An all-zero row (never seen in practice) must not divide by zero.
        let tiny = self.constant_f32(1e-12);
        let absmax = self.node("Max", &[&absmax, &tiny], vec![]);
        let levels = self.constant_f32(127.0);
        let x_scale = self.node("Div", &[&absmax, &levels], vec![]);
        let scaled = self.node("Div", &[input, &x_scale], vec![]);
        let rounded = self.node("Round", &[&scaled], vec![]);
        let (low, high) = (self.constant_f32(-127.0), self.constant_f32(127.0));
        let clipped = self.node("Clip", &[&rounded, &low, &high], vec![]);
        let offset = self.constant_f32(128.0);
        let shifted = self.node("Add", &[&clipped, &offset], vec![]);
        let xq = self.node("Cast", &[&shifted], vec![attr_int("to", tensor_proto::DataType::Uint8 as i64)]);
        let x_zero = self.activation_zero_point();
        // The weight's zero point is 0 (symmetric), ONNX's default when it is left out.
        let product = self.node("MatMulInteger", &[&xq, &q, &x_zero], vec![]);
        let product = self.node("Cast", &[&product], vec![attr_int("to", tensor_proto::DataType::Float as i64)]);
        let scale = self.node("Mul", &[&x_scale, &w_scale], vec![]);
        Ok(self.node("Mul", &[&product, &scale], vec![]))
    }

    /// The constant uint8 zero point 128 of quantised activations, stored once.
    fn activation_zero_point(&mut self) -> String {
        let name = "activation_zero_point_u8".to_owned();
        if self.stored.insert(name.clone()) {
            self.initializers.push(TensorProto {
                dims: vec![],
                data_type: Some(tensor_proto::DataType::Uint8 as i32),
                name: Some(name.clone()),
                raw_data: Some(vec![128]),
                ..Default::default()
            });
        }
        name
    }

    fn layer_norm(&mut self, input: &str, prefix: &str, eps: f32) -> Result<String> {
        let scale = self.stored(&format!("{prefix}.weight"))?;
        let bias = self.stored(&format!("{prefix}.bias"))?;
        let width = self.weight(&format!("{prefix}.weight"))?.shape[0];
        let mut attributes = vec![attr_int("axis", -1), attr_float("epsilon", eps)];
        if self.half {
            // stash_type 1 (the default, written out): mean and variance in float32 whatever
            // the input type, so the float16 graph loses nothing here.
            attributes.push(attr_int("stash_type", 1));
        }
        let output = self.node("LayerNormalization", &[input, &scale, &bias], attributes);
        self.per_token(&output, width);
        Ok(output)
    }

    fn activation(&mut self, input: &str, kind: &str) -> String {
        match kind {
            "relu" => self.node("Relu", &[input], vec![]),
            "gelu" => {
                // 0.5 x (1 + erf(x / sqrt 2))
                let inv_sqrt2 = self.constant_f32(std::f32::consts::FRAC_1_SQRT_2);
                let (half, one) = (self.constant_f32(0.5), self.constant_f32(1.0));
                let scaled = self.node("Mul", &[input, &inv_sqrt2], vec![]);
                let erf = self.node("Erf", &[&scaled], vec![]);
                let plus = self.node("Add", &[&erf, &one], vec![]);
                let times = self.node("Mul", &[input, &plus], vec![]);
                self.node("Mul", &[&times, &half], vec![])
            }
            _ => {
                // gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), in the order the
                // torch exporter writes it, which ONNX Runtime fuses into one FastGelu kernel.
                let (c, k) = (self.constant_f32((2.0 / std::f32::consts::PI).sqrt()), self.constant_f32(0.044715));
                let (half, one, three) = (self.constant_f32(0.5), self.constant_f32(1.0), self.constant_f32(3.0));
                let half_x = self.node("Mul", &[input, &half], vec![]);
                let cube = self.node("Pow", &[input, &three], vec![]);
                let scaled_cube = self.node("Mul", &[&cube, &k], vec![]);
                let inner = self.node("Add", &[input, &scaled_cube], vec![]);
                let scaled = self.node("Mul", &[&inner, &c], vec![]);
                let tanh = self.node("Tanh", &[&scaled], vec![]);
                let plus = self.node("Add", &[&tanh, &one], vec![]);
                self.node("Mul", &[&half_x, &plus], vec![])
            }
        }
    }
}

/// One dimension of a declared tensor shape: named (symbolic) or fixed.
enum Dim {
    Param(&'static str),
    Value(usize),
}

/// The declared type and shape of a graph input, output or intermediate tensor.
fn tensor_info(name: &str, elem_type: tensor_proto::DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Param(p) => tensor_shape_proto::dimension::Value::DimParam((*p).into()),
                Dim::Value(v) => tensor_shape_proto::dimension::Value::DimValue(*v as i64),
            }),
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
    }
}

fn int64_input(name: &str) -> ValueInfoProto {
    tensor_info(name, tensor_proto::DataType::Int64, &[Dim::Param("batch"), Dim::Param("sequence")])
}

fn logits_output(labels: usize) -> ValueInfoProto {
    tensor_info("logits", tensor_proto::DataType::Float, &[Dim::Param("batch"), Dim::Value(labels)])
}

/// Builds the ONNX model of an ALBERT sequence classifier (float32).
pub fn build_model(config: &AlbertConfig, weights: &Weights) -> Result<ModelProto> {
    build_model_with(config, weights, false)
}

/// [`build_model`], optionally with the shared layer's MatMul weights in int8 (dynamic
/// quantisation). The int8 weights are stored once, like the float ones.
pub fn build_model_with(config: &AlbertConfig, weights: &Weights, quantize_int8: bool) -> Result<ModelProto> {
    build_model_as(config, weights, if quantize_int8 { Precision::Int8 } else { Precision::F32 })
}

/// [`build_model`] at a [`Precision`]; the shared layer's weights are stored once whatever it is.
pub fn build_model_as(config: &AlbertConfig, weights: &Weights, precision: Precision) -> Result<ModelProto> {
    for name in required_weights() {
        if !weights.contains_key(&name) {
            return Err(Error::MissingWeight(name));
        }
    }
    let labels = weights["classifier.weight"].shape.first().copied().unwrap_or(2);
    let eps = config.layer_norm_eps as f32;
    let heads = config.num_attention_heads;
    let head_dim = config.hidden_size / heads;
    let mut g = Graph {
        weights,
        precision,
        half: precision == Precision::F16,
        nodes: Vec::new(),
        initializers: Vec::new(),
        value_info: Vec::new(),
        stored: BTreeSet::new(),
        next: 0,
    };

    // Embeddings: word + position + token type, LayerNorm, projection to the hidden size.
    let word_table = g.stored("albert.embeddings.word_embeddings.weight")?;
    let position_table = g.stored("albert.embeddings.position_embeddings.weight")?;
    let type_table = g.stored("albert.embeddings.token_type_embeddings.weight")?;
    let words = g.node("Gather", &[&word_table, "input_ids"], vec![attr_int("axis", 0)]);
    let sequence_length = g.node("Shape", &["input_ids"], vec![attr_int("start", 1), attr_int("end", 2)]);
    let zero = g.constant_i64(&[0]);
    let positions = g.node("Slice", &[&position_table, &zero, &sequence_length, &zero], vec![]);
    let types = g.node("Gather", &[&type_table, "token_type_ids"], vec![attr_int("axis", 0)]);
    let sum = g.node("Add", &[&words, &positions], vec![]);
    let sum = g.node("Add", &[&sum, &types], vec![]);
    g.per_token(&sum, config.embedding_size);
    let embedded = g.layer_norm(&sum, "albert.embeddings.LayerNorm", eps)?;
    let mut hidden = g.linear(&embedded, "albert.encoder.embedding_hidden_mapping_in")?;

    // Padding mask as an additive bias [batch, 1, 1, sequence]: 0 to keep, float min to drop
    // (-10000 in float16, whose lowest value times 0 or plus a score would overflow).
    let float = g.float();
    let mask = g.cast("attention_mask", float);
    let axes = g.constant_i64(&[1, 2]);
    let mask = g.node("Unsqueeze", &[&mask, &axes], vec![]);
    let one = g.constant_f32(1.0);
    let inverted = g.node("Sub", &[&one, &mask], vec![]);
    let minimum = g.constant_f32(if g.half { -10_000.0 } else { f32::MIN });
    let mask_bias = g.node("Mul", &[&inverted, &minimum], vec![]);

    let split_shape = g.constant_i64(&[0, 0, heads as i64, head_dim as i64]);
    let merged_shape = g.constant_i64(&[0, 0, config.hidden_size as i64]);
    let scale = g.constant_f32(1.0 / (head_dim as f32).sqrt());
    for _ in 0..config.num_hidden_layers {
        let query = g.linear(&hidden, &format!("{LAYER}attention.query"))?;
        let key = g.linear(&hidden, &format!("{LAYER}attention.key"))?;
        let value = g.linear(&hidden, &format!("{LAYER}attention.value"))?;
        let query = g.node("Reshape", &[&query, &split_shape], vec![]);
        let query = g.node("Transpose", &[&query], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let key = g.node("Reshape", &[&key, &split_shape], vec![]);
        let key = g.node("Transpose", &[&key], vec![attr_ints("perm", &[0, 2, 3, 1])]);
        let value = g.node("Reshape", &[&value, &split_shape], vec![]);
        let value = g.node("Transpose", &[&value], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let scores = g.node("MatMul", &[&query, &key], vec![]);
        let scores = g.node("Mul", &[&scores, &scale], vec![]);
        let scores = g.node("Add", &[&scores, &mask_bias], vec![]);
        let probabilities = g.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
        let context = g.node("MatMul", &[&probabilities, &value], vec![]);
        let context = g.node("Transpose", &[&context], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let context = g.node("Reshape", &[&context, &merged_shape], vec![]);
        g.per_token(&context, config.hidden_size);
        let projected = g.linear(&context, &format!("{LAYER}attention.dense"))?;
        let residual = g.node("Add", &[&hidden, &projected], vec![]);
        g.per_token(&residual, config.hidden_size);
        let attended = g.layer_norm(&residual, &format!("{LAYER}attention.LayerNorm"), eps)?;
        let ffn = g.linear(&attended, &format!("{LAYER}ffn"))?;
        let ffn = g.activation(&ffn, &config.hidden_act);
        g.per_token(&ffn, config.intermediate_size);
        let ffn = g.linear(&ffn, &format!("{LAYER}ffn_output"))?;
        let residual = g.node("Add", &[&ffn, &attended], vec![]);
        g.per_token(&residual, config.hidden_size);
        hidden = g.layer_norm(&residual, &format!("{LAYER}full_layer_layer_norm"), eps)?;
    }

    // Pooler (first token, dense, tanh) and classifier.
    let first_index = {
        let name = format!("const_i64_{}", g.initializers.len());
        g.initializers.push(i64_tensor(&name, &[], &[0]));
        name
    };
    let mut first = g.node("Gather", &[&hidden, &first_index], vec![attr_int("axis", 1)]);
    if g.half {
        // One vector per pair from here on: float32 costs nothing and keeps the logits exact.
        first = g.cast(&first, tensor_proto::DataType::Float);
        g.half = false;
    }
    let pooled = g.linear(&first, "albert.pooler")?;
    let pooled = g.node("Tanh", &[&pooled], vec![]);
    let logits = g.linear(&pooled, "classifier")?;
    g.nodes.push(NodeProto {
        input: vec![logits],
        output: vec!["logits".into()],
        name: Some("logits".into()),
        op_type: Some("Identity".into()),
        ..Default::default()
    });

    let graph = GraphProto {
        node: g.nodes,
        name: Some("albert_for_sequence_classification".into()),
        initializer: g.initializers,
        doc_string: Some("Written by mathrank model convert".into()),
        input: vec![int64_input("input_ids"), int64_input("attention_mask"), int64_input("token_type_ids")],
        output: vec![logits_output(labels)],
        value_info: g.value_info,
    };
    Ok(ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("mathrank".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: None,
        graph: Some(graph),
    })
}

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
