//! Writing an ONNX graph node by node: tensors, attributes, declared shapes, and the building
//! blocks the ALBERT graph is made of (products, LayerNorm, activations, per-row int8
//! quantisation).

use std::collections::BTreeSet;

use crate::checkpoint::{Tensor, Weights};
use crate::onnx::{
    AttributeProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_proto,
    tensor_shape_proto, type_proto,
};
use crate::{Error, Result};

/// The domain of ONNX Runtime's contrib operators (MultiHeadAttention, MatMulIntegerToFloat).
pub(crate) const MS_DOMAIN: &str = "com.microsoft";

pub(crate) fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

pub(crate) fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// A one-element tensor attribute holding 0 (`ConstantOfShape`'s fill value), float16 when
/// `half`, else float32.
pub(crate) fn attr_tensor(name: &str, half: bool) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Tensor as i32),
        t: Some(float_tensor("", &[1], &[0.0], half)),
        ..Default::default()
    }
}

pub(crate) fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

/// A float tensor, stored as float16 when `half`, else float32.
pub(crate) fn float_tensor(name: &str, shape: &[usize], data: &[f32], half: bool) -> TensorProto {
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

pub(crate) fn i64_tensor(name: &str, shape: &[usize], data: &[i64]) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(tensor_proto::DataType::Int64 as i32),
        name: Some(name.into()),
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

/// One dimension of a declared tensor shape: named (symbolic) or fixed.
pub(crate) enum Dim {
    Param(&'static str),
    Value(usize),
}

/// The declared type and shape of a graph input, output or intermediate tensor.
pub(crate) fn tensor_info(name: &str, elem_type: tensor_proto::DataType, dims: &[Dim]) -> ValueInfoProto {
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

/// A row-quantised activation: uint8 values around the zero point 128 and one float32 scale
/// per row (`[batch, sequence, 1]`).
#[derive(Clone)]
pub(crate) struct Quantized {
    pub values: String,
    pub scale: String,
}

/// The graph under construction.
pub(crate) struct Graph<'w> {
    weights: &'w Weights,
    /// The default domain's opset: decides how some operators take their arguments (the
    /// reductions take `axes` as an input from opset 18 on).
    pub opset: i64,
    /// Whether the tensors being built are float16 (the encoder of a float16 graph).
    pub half: bool,
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    /// Shapes of the encoder's `[batch, sequence, width]` activations. ONNX Runtime infers
    /// shapes itself, but its inference loses the link between the sequence length of the
    /// embeddings (sliced by `Shape`) and the others, and its SkipLayerNormalization fusion
    /// then refuses the residual Adds. Declared here, 23 of the 25 LayerNorms fuse.
    pub value_info: Vec<ValueInfoProto>,
    /// Whether a `com.microsoft` operator was written (the model then imports that domain).
    pub uses_ms_domain: bool,
    /// Whether the encoder's activations are packed (`[1, tokens, width]`, see
    /// [`crate::packed`]) rather than `[batch, sequence, width]`.
    pub packed: bool,
    stored: BTreeSet<String>,
    /// Activations already quantised, by name: the query, key and value products read the
    /// same input, which is quantised once.
    quantized: Vec<(String, Quantized)>,
    next: usize,
}

impl<'w> Graph<'w> {
    pub fn new(weights: &'w Weights, opset: i64, half: bool) -> Self {
        Self {
            weights,
            opset,
            half,
            nodes: Vec::new(),
            initializers: Vec::new(),
            value_info: Vec::new(),
            uses_ms_domain: false,
            packed: false,
            stored: BTreeSet::new(),
            quantized: Vec::new(),
            next: 0,
        }
    }

    pub fn weight(&self, name: &str) -> Result<&Tensor> {
        self.weights.get(name).ok_or_else(|| Error::MissingWeight(name.to_owned()))
    }

    /// The element type of the activations being built.
    pub fn float(&self) -> tensor_proto::DataType {
        if self.half { tensor_proto::DataType::Float16 } else { tensor_proto::DataType::Float }
    }

    /// Stores a checkpoint tensor once, in the activations' type, and returns its name.
    pub fn stored(&mut self, name: &str) -> Result<String> {
        let stored_name = if self.half { format!("{name}.f16") } else { name.to_owned() };
        if self.stored.insert(stored_name.clone()) {
            let tensor = self.weight(name)?;
            let initializer = float_tensor(&stored_name, &tensor.shape, &tensor.data, self.half);
            self.initializers.push(initializer);
        }
        Ok(stored_name)
    }

    /// Stores the concatenation of checkpoint vectors once (the query, key and value biases
    /// that MultiHeadAttention adds itself), in the activations' type.
    pub fn stored_concat(&mut self, stored_name: &str, names: &[String]) -> Result<String> {
        let stored_name = if self.half { format!("{stored_name}.f16") } else { stored_name.to_owned() };
        if self.stored.insert(stored_name.clone()) {
            let mut data = Vec::new();
            for name in names {
                data.extend_from_slice(&self.weight(name)?.data);
            }
            self.initializers.push(float_tensor(&stored_name, &[data.len()], &data, self.half));
        }
        Ok(stored_name)
    }

    /// Stores a Linear weight `[out, in]` transposed to `[in, out]` for MatMul, once, in the
    /// activations' type.
    pub fn stored_transposed(&mut self, name: &str) -> Result<String> {
        let stored_name = if self.half { format!("{name}.T.f16") } else { format!("{name}.T") };
        if self.stored.insert(stored_name.clone()) {
            let tensor = self.weight(name)?;
            let (rows, cols) = matrix_shape(name, tensor)?;
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

    pub fn cast(&mut self, input: &str, to: tensor_proto::DataType) -> String {
        self.node("Cast", &[input], vec![attr_int("to", to as i64)])
    }

    /// A scalar constant in the activations' type.
    pub fn constant_f32(&mut self, value: f32) -> String {
        let name = format!("const_f32_{}", self.initializers.len());
        self.initializers.push(float_tensor(&name, &[], &[value], self.half));
        name
    }

    /// A scalar float32 constant, whatever the activations' type.
    pub fn constant_f32_exact(&mut self, value: f32) -> String {
        let name = format!("const_f32_{}", self.initializers.len());
        self.initializers.push(float_tensor(&name, &[], &[value], false));
        name
    }

    pub fn constant_i64(&mut self, values: &[i64]) -> String {
        let name = format!("const_i64_{}", self.initializers.len());
        self.initializers.push(i64_tensor(&name, &[values.len()], values));
        name
    }

    pub fn scalar_i64(&mut self, value: i64) -> String {
        let name = format!("const_i64_{}", self.initializers.len());
        self.initializers.push(i64_tensor(&name, &[], &[value]));
        name
    }

    /// A node of the default domain with one output; returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.node_in("", op, inputs, attributes)
    }

    /// A node of ONNX Runtime's `com.microsoft` domain.
    pub fn node_ms(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.uses_ms_domain = true;
        self.node_in(MS_DOMAIN, op, inputs, attributes)
    }

    fn node_in(&mut self, domain: &str, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.next += 1;
        let output = format!("{}_{}", op.to_lowercase(), self.next);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.clone()],
            name: Some(format!("{op}_{}", self.next)),
            op_type: Some(op.into()),
            domain: (!domain.is_empty()).then(|| domain.to_owned()),
            attribute: attributes,
        });
        output
    }

    /// A reduction over `axes`, written as the opset wants it (an attribute before opset 18,
    /// an input from then on).
    pub fn reduce(&mut self, op: &str, input: &str, axes: &[i64], keepdims: bool) -> String {
        let keep = attr_int("keepdims", i64::from(keepdims));
        if self.opset >= 18 || op == "ReduceSum" {
            let axes = self.constant_i64(axes);
            self.node(op, &[input, &axes], vec![keep])
        } else {
            self.node(op, &[input], vec![attr_ints("axes", axes), keep])
        }
    }

    /// Declares `name` a `[batch, sequence, width]` activation, or `[1, tokens, width]` in a
    /// packed graph (see `value_info`).
    pub fn per_token(&mut self, name: &str, width: usize) {
        let dims = if self.packed {
            [Dim::Value(1), Dim::Param("tokens"), Dim::Value(width)]
        } else {
            [Dim::Param("batch"), Dim::Param("sequence"), Dim::Value(width)]
        };
        let info = tensor_info(name, self.float(), &dims);
        self.value_info.push(info);
    }

    pub fn layer_norm(&mut self, input: &str, prefix: &str, eps: f32) -> Result<String> {
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

    pub fn activation(&mut self, input: &str, kind: &str) -> String {
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

    /// Stores a Linear weight transposed and quantised to int8 (symmetric, per tensor), once;
    /// returns the names of the weight and its scale.
    pub fn stored_int8(&mut self, name: &str) -> Result<(String, String)> {
        let (q, scale_name) = (format!("{name}.T.int8"), format!("{name}.T.scale"));
        if self.stored.insert(q.clone()) {
            let tensor = self.weight(name)?;
            let (rows, cols) = matrix_shape(name, tensor)?;
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

    /// A constant uint8 tensor, stored once under `name`.
    fn stored_u8(&mut self, name: &str, dims: &[i64], value: u8) -> String {
        if self.stored.insert(name.to_owned()) {
            self.initializers.push(TensorProto {
                dims: dims.to_vec(),
                data_type: Some(tensor_proto::DataType::Uint8 as i32),
                name: Some(name.to_owned()),
                raw_data: Some(vec![value]),
                ..Default::default()
            });
        }
        name.to_owned()
    }

    /// Quantises an activation `[batch, sequence, width]` symmetrically with one scale per row
    /// (per token), once per activation. ONNX's DynamicQuantizeLinear would take one scale for
    /// the whole tensor, that is for the whole micro-batch, so a pair's score would depend on
    /// its batch-mates and on padding; per row it cannot, and a cached score equals a fresh one.
    /// The values are uint8 around a constant zero point of 128: ONNX Runtime's fast u8 x s8
    /// kernel takes only a scalar zero point, and a constant one keeps the rows independent.
    /// `QuantizeLinear` along the rows of a `[rows, width]` view does the division, rounding
    /// (half to even), saturation and shift in one pass over the activation.
    pub fn quantize_rows(&mut self, input: &str, width: usize) -> Quantized {
        if let Some((_, done)) = self.quantized.iter().find(|(name, _)| name == input) {
            return done.clone();
        }
        // max |x| as max(max x, -min x): two reading passes, where Abs would also write one.
        let high = self.reduce("ReduceMax", input, &[-1], true);
        let low = self.reduce("ReduceMin", input, &[-1], true);
        let low = self.node("Neg", &[&low], vec![]);
        let absmax = self.node("Max", &[&high, &low], vec![]);
        // An all-zero row (never seen in practice) must not divide by zero.
        let tiny = self.constant_f32_exact(1e-12);
        let absmax = self.node("Max", &[&absmax, &tiny], vec![]);
        let levels = self.constant_f32_exact(127.0);
        let scale = self.node("Div", &[&absmax, &levels], vec![]);
        let rows_shape = self.constant_i64(&[-1, width as i64]);
        let rows = self.node("Reshape", &[input, &rows_shape], vec![]);
        let flat_shape = self.constant_i64(&[-1]);
        let row_scales = self.node("Reshape", &[&scale, &flat_shape], vec![]);
        // Per-axis QuantizeLinear wants one zero point per row as well: 128, expanded.
        let zero = self.stored_u8("activation_zero_point_u8", &[], 128);
        let count = self.node("Shape", &[&row_scales], vec![]);
        let zeros = self.node("Expand", &[&zero, &count], vec![]);
        let quantized_rows = self.node("QuantizeLinear", &[&rows, &row_scales, &zeros], vec![attr_int("axis", 0)]);
        let shape = self.node("Shape", &[input], vec![]);
        let values = self.node("Reshape", &[&quantized_rows, &shape], vec![]);
        let done = Quantized { values, scale };
        self.quantized.push((input.to_owned(), done.clone()));
        done
    }

    /// `x @ W^T (+ bias)` with the weight in int8 and `x` quantised per row at run time (see
    /// [`quantize_rows`](Self::quantize_rows)): ONNX Runtime's `MatMulIntegerToFloat`, whose
    /// u8 x s8 product scales each row by its own activation scale.
    pub fn quantized_matmul(&mut self, input: &str, width: usize, weight: &str, bias: Option<&str>) -> Result<String> {
        let (q, w_scale) = self.stored_int8(weight)?;
        let x = self.quantize_rows(input, width);
        let zero = self.stored_u8("activation_zero_point_u8", &[], 128);
        // The weight's zero point is 0 (symmetric), the default when it is left out.
        let mut inputs = vec![x.values.as_str(), &q, &x.scale, &w_scale, &zero];
        if let Some(bias) = bias {
            inputs.extend(["", bias]);
        }
        Ok(self.node_ms("MatMulIntegerToFloat", &inputs, vec![]))
    }
}

fn matrix_shape(name: &str, tensor: &Tensor) -> Result<(usize, usize)> {
    match tensor.shape[..] {
        [rows, cols] => Ok((rows, cols)),
        _ => Err(Error::Checkpoint(format!("{name} has shape {:?}, expected a matrix", tensor.shape))),
    }
}
