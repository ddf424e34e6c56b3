//! ONNX Runtime as a [`Backend`]: one session, on the CPU or the CUDA execution provider, with
//! the interface of a cross-encoder checked at load.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{Tensor, TensorElementType, ValueType};

use super::Backend;
use crate::encode::EncodedPair;
use crate::packing::{ATTENTION_METADATA, HOST_INPUTS, HostPacking, is_padding_free};
use crate::runtime::{Provider, init_runtime};
use crate::{Error, Result};

/// The attention kernels ONNX Runtime's CUDA provider may choose from (its `sdpa_kernel`
/// option), in its own order of preference: flash attention, cuDNN's SDPA, the
/// memory-efficient (cutlass) kernel; the unfused kernel when none applies. `None` leaves ONNX
/// Runtime's defaults. The CPU provider has one attention kernel (MLAS's) and ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionKernels {
    pub flash: bool,
    pub cudnn: bool,
    pub efficient: bool,
    pub math: bool,
}

impl AttentionKernels {
    /// Flash attention, then the memory-efficient kernel: on sm90 (H100, H200) the kernels that
    /// take the graph's per-pair lengths without a dense mask. cuDNN's SDPA is left to ask for
    /// (`cudnn`), since it needs cuDNN 9.3 or newer.
    pub const DEFAULT: AttentionKernels = AttentionKernels { flash: true, cudnn: false, efficient: true, math: true };

    /// The `sdpa_kernel` bits of ONNX Runtime's `AttentionBackend` (attention_common.h).
    pub fn bits(self) -> u32 {
        u32::from(self.flash) | u32::from(self.efficient) << 1 | u32::from(self.cudnn) << 3 | u32::from(self.math) << 4
    }
}

impl Default for AttentionKernels {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::fmt::Display for AttentionKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> =
            [(self.flash, "flash"), (self.cudnn, "cudnn"), (self.efficient, "efficient"), (self.math, "math")]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect();
        f.write_str(&names.join(","))
    }
}

impl std::str::FromStr for AttentionKernels {
    type Err = String;

    /// A comma-separated list of `flash`, `cudnn`, `efficient`, `math`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut kernels = AttentionKernels { flash: false, cudnn: false, efficient: false, math: false };
        for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            match name {
                "flash" => kernels.flash = true,
                "cudnn" => kernels.cudnn = true,
                "efficient" => kernels.efficient = true,
                "math" => kernels.math = true,
                other => {
                    return Err(format!("unknown attention kernel {other:?}; use flash, cudnn, efficient or math"));
                }
            }
        }
        if kernels.bits() == 0 {
            return Err("name at least one attention kernel: flash, cudnn, efficient or math".into());
        }
        Ok(kernels)
    }
}

/// How a session is made.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub provider: Provider,
    /// The GPU, with [`Provider::Cuda`].
    pub device_id: i32,
    /// Intra-op threads (at least 1).
    pub intra_threads: usize,
    /// Graph optimisation level, 0 (off) to 3 (all).
    pub optimization_level: u8,
    /// The CUDA provider's attention kernels.
    pub attention_kernels: AttentionKernels,
    /// libonnxruntime (else the usual places, see [`crate::find_ort_library`]).
    pub ort_library: Option<PathBuf>,
}

/// A session with the checked interface.
pub struct OrtBackend {
    session: Session,
    interface: Interface,
    pad_id: i64,
}

/// What the graph takes and gives, as checked at load.
#[derive(Debug)]
struct Interface {
    has_token_type_ids: bool,
    /// The graph takes the packing as inputs ([`HOST_INPUTS`]).
    host_packing: bool,
    output: String,
}

impl std::fmt::Debug for OrtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtBackend").field("interface", &self.interface).finish()
    }
}

fn is_int64_matrix(dtype: &ValueType) -> bool {
    matches!(dtype, ValueType::Tensor { ty: TensorElementType::Int64, shape, .. } if shape.len() == 2)
}

fn optimization(level: u8) -> GraphOptimizationLevel {
    match level {
        0 => GraphOptimizationLevel::Disable,
        1 => GraphOptimizationLevel::Level1,
        2 => GraphOptimizationLevel::Level2,
        _ => GraphOptimizationLevel::All,
    }
}

fn builder(options: &SessionOptions) -> std::result::Result<SessionBuilder, String> {
    let runtime = init_runtime(options.ort_library.as_deref()).map_err(|err| err.to_string())?;
    let builder = Session::builder(&runtime.environment).map_err(|err| err.to_string())?;
    let builder =
        builder.with_optimization_level(optimization(options.optimization_level)).map_err(|err| err.to_string())?;
    let builder = builder.with_intra_threads(options.intra_threads.max(1)).map_err(|err| err.to_string())?;
    let builder = builder.with_inter_threads(1).map_err(|err| err.to_string())?;
    match options.provider {
        Provider::Cuda => with_cuda(builder, options.device_id, options.attention_kernels),
        Provider::Cpu | Provider::Fake => Ok(builder),
    }
}

impl OrtBackend {
    /// A session over the bytes of `model.onnx` (read once by the caller, who also hashed
    /// them; `origin` names the file in errors), with its inputs and output checked.
    pub fn new(model: &[u8], origin: &Path, options: &SessionOptions, pad_id: i64) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidModel { path: origin.to_path_buf(), reason };
        let mut builder = builder(options).map_err(invalid)?;
        let session = builder.commit_from_memory(model).map_err(|err| {
            let err = err.to_string();
            if err.contains("PackedMultiHeadAttention") && options.provider != Provider::Cuda {
                return invalid(format!(
                    "it is a padding-free graph (PackedMultiHeadAttention), which ONNX Runtime runs on CUDA only: \
                     run it on the CUDA provider, or convert the model with fused attention for the CPU ({err})"
                ));
            }
            invalid(format!("ONNX Runtime cannot load it: {err}"))
        })?;
        let interface = check_interface(&session).map_err(invalid)?;
        Ok(Self { session, interface, pad_id })
    }

    /// The graph's attention form, as the converter recorded it in the model's metadata.
    pub fn attention(&self) -> Option<String> {
        self.session.metadata().ok()?.custom(ATTENTION_METADATA)
    }
}

/// Checks the cross-encoder's interface: int64 `[batch, sequence]` inputs `input_ids`,
/// `attention_mask` (and optionally `token_type_ids`, and all four [`HOST_INPUTS`] of a graph
/// packed on the host), a float32 `[batch, 2]` output.
fn check_interface(session: &Session) -> std::result::Result<Interface, String> {
    let inputs: Vec<(String, ValueType)> =
        session.inputs().iter().map(|input| (input.name().to_owned(), input.dtype().clone())).collect();
    for required in ["input_ids", "attention_mask"] {
        match inputs.iter().find(|(name, _)| name == required) {
            None => {
                let names: Vec<&str> = inputs.iter().map(|(name, _)| name.as_str()).collect();
                return Err(format!("it has no input {required:?} (inputs: {names:?})"));
            }
            Some((_, dtype)) if !is_int64_matrix(dtype) => {
                return Err(format!("input {required:?} is {dtype:?}, expected int64 [batch, sequence]"));
            }
            Some(_) => {}
        }
    }
    let has_token_type_ids = inputs.iter().any(|(name, _)| name == "token_type_ids");
    let host_inputs = inputs.iter().filter(|(name, _)| HOST_INPUTS.contains(&name.as_str())).count();
    if host_inputs != 0 && host_inputs != HOST_INPUTS.len() {
        return Err(format!("it takes some of the packing inputs {HOST_INPUTS:?} but not all four"));
    }
    if let Some((name, _)) = inputs.iter().find(|(name, _)| {
        !matches!(name.as_str(), "input_ids" | "attention_mask" | "token_type_ids")
            && !HOST_INPUTS.contains(&name.as_str())
    }) {
        return Err(format!(
            "unexpected input {name:?}: a cross-encoder takes input_ids, attention_mask, token_type_ids \
             (and, packed on the host, {HOST_INPUTS:?})"
        ));
    }
    let outputs: Vec<(String, ValueType)> =
        session.outputs().iter().map(|output| (output.name().to_owned(), output.dtype().clone())).collect();
    let (output, dtype) = outputs
        .iter()
        .find(|(name, _)| name == "logits")
        .or_else(|| (outputs.len() == 1).then(|| &outputs[0]))
        .ok_or_else(|| {
            format!("it has no output \"logits\" (outputs: {:?})", outputs.iter().map(|o| &o.0).collect::<Vec<_>>())
        })?;
    match dtype {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. }
            if shape.len() == 2 && (shape[1] == 2 || shape[1] < 0) =>
        {
            Ok(Interface { has_token_type_ids, host_packing: host_inputs != 0, output: output.clone() })
        }
        other => Err(format!("output {output:?} is {other:?}, expected float32 [batch, 2]")),
    }
}

impl Backend for OrtBackend {
    fn padding_free(&self) -> bool {
        self.attention().is_some_and(|attention| is_padding_free(&attention))
    }

    fn predict(&mut self, pairs: &[&EncodedPair], width: usize) -> Result<Vec<[f32; 2]>> {
        let batch = pairs.len();
        let mut ids = vec![self.pad_id; batch * width];
        let mut mask = vec![0i64; batch * width];
        let mut types = vec![0i64; batch * width];
        for (row, pair) in pairs.iter().enumerate() {
            let start = row * width;
            ids[start..start + pair.len()].copy_from_slice(&pair.input_ids);
            types[start..start + pair.len()].copy_from_slice(&pair.token_type_ids);
            mask[start..start + pair.len()].fill(1);
        }
        let shape = [batch, width];
        let tensor =
            |data: Vec<i64>| Tensor::from_array((shape, data)).map_err(|err| Error::Inference(err.to_string()));
        let mut inputs = ort::inputs![
            "input_ids" => tensor(ids)?,
            "attention_mask" => tensor(mask)?,
        ];
        if self.interface.has_token_type_ids {
            inputs.push(("token_type_ids".into(), tensor(types)?.into()));
        }
        if self.interface.host_packing {
            let lengths: Vec<usize> = pairs.iter().map(|pair| pair.len()).collect();
            let packing = HostPacking::new(&lengths, width);
            let inference = |err: ort::Error| Error::Inference(err.to_string());
            let tokens = packing.tokens();
            inputs.push((
                HOST_INPUTS[0].into(),
                Tensor::from_array(([tokens], packing.packed_index)).map_err(inference)?.into(),
            ));
            inputs.push((
                HOST_INPUTS[1].into(),
                Tensor::from_array(([batch], packing.row_start)).map_err(inference)?.into(),
            ));
            inputs.push((
                HOST_INPUTS[2].into(),
                Tensor::from_array((shape, packing.token_offset)).map_err(inference)?.into(),
            ));
            let cumulative = packing.cumulative_sequence_length;
            inputs.push((
                HOST_INPUTS[3].into(),
                Tensor::from_array(([batch + 1], cumulative)).map_err(inference)?.into(),
            ));
        }
        let outputs = self.session.run(inputs).map_err(|err| Error::Inference(err.to_string()))?;
        let (out_shape, values) = outputs[self.interface.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|err| Error::Inference(err.to_string()))?;
        if out_shape.len() != 2 || out_shape[0] as usize != batch || out_shape[1] != 2 {
            return Err(Error::Inference(format!(
                "model returned logits of shape {out_shape:?}, expected [{batch}, 2]"
            )));
        }
        Ok(values.chunks_exact(2).map(|pair| [pair[0], pair[1]]).collect())
    }
}

/// Writes the graph as ONNX Runtime runs it, after its optimisations (fusions) for `options`,
/// to `out`: what kernels a model gets, for tests and for looking.
pub fn write_optimized_model(onnx: &Path, out: &Path, options: &SessionOptions) -> Result<()> {
    let invalid = |reason: String| Error::InvalidModel { path: onnx.to_path_buf(), reason };
    let builder = builder(options).map_err(invalid)?;
    let mut builder = builder.with_optimized_model_path(out).map_err(|err| invalid(err.to_string()))?;
    builder.commit_from_file(onnx).map_err(|err| invalid(format!("ONNX Runtime cannot load it: {err}")))?;
    Ok(())
}

/// Registers CUDA on `device_id` with the attention kernels asked for, or fails: mathrank never
/// falls back to the CPU on its own, since a GPU deployment silently running on the CPU is a
/// hundred times slower.
#[cfg(feature = "cuda")]
fn with_cuda(
    builder: SessionBuilder,
    device_id: i32,
    kernels: AttentionKernels,
) -> std::result::Result<SessionBuilder, String> {
    use ort::ep::cuda::AttentionBackend;
    let mut backends = AttentionBackend::none();
    for (on, backend) in [
        (kernels.flash, AttentionBackend::FLASH_ATTENTION),
        (kernels.efficient, AttentionBackend::EFFICIENT_ATTENTION),
        (kernels.cudnn, AttentionBackend::CUDNN_FLASH_ATTENTION),
        (kernels.math, AttentionBackend::MATH),
    ] {
        if on {
            backends = backends | backend;
        }
    }
    let cuda =
        ort::ep::CUDA::default().with_device_id(device_id).with_attention_backend(backends).build().error_on_failure();
    builder.with_execution_providers([cuda]).map_err(|err| {
        format!(
            "the CUDA execution provider could not start on device {device_id} ({err}); it needs \
             libonnxruntime_providers_cuda.so and libonnxruntime_providers_shared.so next to \
             libonnxruntime.so, CUDA and cuDNN libraries on LD_LIBRARY_PATH, and a GPU; or use the cpu provider"
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    _builder: SessionBuilder,
    _device_id: i32,
    _kernels: AttentionKernels,
) -> std::result::Result<SessionBuilder, String> {
    Err("this mathrank was built without the `cuda` cargo feature; rebuild with `--features cuda` or use the cpu provider".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_kernels_parse_to_onnx_runtimes_bits() {
        assert_eq!(AttentionKernels::DEFAULT.bits(), 1 | 2 | 16);
        let cudnn: AttentionKernels = "cudnn".parse().unwrap();
        assert_eq!(cudnn.bits(), 8);
        let all: AttentionKernels = "flash, efficient,cudnn,math".parse().unwrap();
        assert_eq!((all.bits(), all.to_string().as_str()), (1 | 2 | 8 | 16, "flash,cudnn,efficient,math"));
        assert!("trt".parse::<AttentionKernels>().unwrap_err().contains("trt"));
        assert!("".parse::<AttentionKernels>().is_err());
    }
}
