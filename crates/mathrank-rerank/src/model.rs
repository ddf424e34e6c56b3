//! The ONNX model: loading, interface checks, one forward pass.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{Tensor, TensorElementType, ValueType};

use crate::encode::EncodedPair;
use crate::runtime::{Provider, init_runtime};
use crate::{Error, Result};

/// What mathrank reads from `config.json`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct ModelConfig {
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    pub vocab_size: Option<usize>,
    pub model_type: Option<String>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(rename = "_name_or_path")]
    pub name_or_path: Option<String>,
}

fn default_positions() -> usize {
    512
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| Error::InvalidModel { path: path.to_path_buf(), reason: format!("cannot read: {err}") })?;
        serde_json::from_str(&text)
            .map_err(|err| Error::InvalidModel { path: path.to_path_buf(), reason: format!("config.json: {err}") })
    }
}

/// Facts about a loaded model, for `Info` and logs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub path: PathBuf,
    pub max_length: usize,
    pub max_position_embeddings: usize,
    pub provider: Provider,
    pub intra_threads: usize,
    pub ort_library: PathBuf,
    /// Padded tokens per micro-batch.
    pub batch_tokens: usize,
    /// Pairs per micro-batch.
    pub max_batch: usize,
    /// Whether a pair's logits were bit for bit the same alone and beside a longer pair in one
    /// padded batch, probed at load. The score cache relies on it.
    pub batch_invariant: bool,
}

/// A session with the checked interface.
pub struct OnnxModel {
    session: Session,
    has_token_type_ids: bool,
    output: String,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel").field("output", &self.output).finish()
    }
}

fn is_int64_matrix(dtype: &ValueType) -> bool {
    matches!(dtype, ValueType::Tensor { ty: TensorElementType::Int64, shape, .. } if shape.len() == 2)
}

impl OnnxModel {
    /// Opens `model.onnx` and checks its inputs and output.
    pub fn load(
        onnx: &Path,
        provider: Provider,
        device_id: i32,
        intra_threads: usize,
        optimization: GraphOptimizationLevel,
        ort_library: Option<&Path>,
    ) -> Result<Self> {
        let runtime = init_runtime(ort_library)?;
        let invalid = |reason: String| Error::InvalidModel { path: onnx.to_path_buf(), reason };
        let builder = Session::builder(&runtime.environment).map_err(|err| invalid(err.to_string()))?;
        let builder = builder.with_optimization_level(optimization).map_err(|err| invalid(err.to_string()))?;
        let builder = builder.with_intra_threads(intra_threads.max(1)).map_err(|err| invalid(err.to_string()))?;
        let builder = builder.with_inter_threads(1).map_err(|err| invalid(err.to_string()))?;
        let mut builder = match provider {
            Provider::Cpu => builder,
            Provider::Cuda => with_cuda(builder, device_id).map_err(invalid)?,
        };
        let session =
            builder.commit_from_file(onnx).map_err(|err| invalid(format!("ONNX Runtime cannot load it: {err}")))?;
        let inputs: Vec<(String, ValueType)> =
            session.inputs().iter().map(|input| (input.name().to_owned(), input.dtype().clone())).collect();
        for required in ["input_ids", "attention_mask"] {
            match inputs.iter().find(|(name, _)| name == required) {
                None => {
                    let names: Vec<&str> = inputs.iter().map(|(name, _)| name.as_str()).collect();
                    return Err(invalid(format!("it has no input {required:?} (inputs: {names:?})")));
                }
                Some((_, dtype)) if !is_int64_matrix(dtype) => {
                    return Err(invalid(format!("input {required:?} is {dtype:?}, expected int64 [batch, sequence]")));
                }
                Some(_) => {}
            }
        }
        let has_token_type_ids = inputs.iter().any(|(name, _)| name == "token_type_ids");
        if let Some((name, _)) =
            inputs.iter().find(|(name, _)| !matches!(name.as_str(), "input_ids" | "attention_mask" | "token_type_ids"))
        {
            return Err(invalid(format!(
                "unexpected input {name:?}: a cross-encoder takes input_ids, attention_mask, token_type_ids"
            )));
        }
        let outputs: Vec<(String, ValueType)> =
            session.outputs().iter().map(|output| (output.name().to_owned(), output.dtype().clone())).collect();
        let (output, dtype) = outputs
            .iter()
            .find(|(name, _)| name == "logits")
            .or_else(|| (outputs.len() == 1).then(|| &outputs[0]))
            .ok_or_else(|| {
                invalid(format!(
                    "it has no output \"logits\" (outputs: {:?})",
                    outputs.iter().map(|o| &o.0).collect::<Vec<_>>()
                ))
            })?;
        match dtype {
            ValueType::Tensor { ty: TensorElementType::Float32, shape, .. }
                if shape.len() == 2 && (shape[1] == 2 || shape[1] < 0) => {}
            other => return Err(invalid(format!("output {output:?} is {other:?}, expected float32 [batch, 2]"))),
        }
        Ok(Self { session, has_token_type_ids, output: output.clone() })
    }

    /// Runs one padded micro-batch; returns the logits of each pair in order.
    pub fn run(&mut self, pairs: &[&EncodedPair], width: usize, pad_id: i64) -> Result<Vec<[f32; 2]>> {
        let batch = pairs.len();
        let mut ids = vec![pad_id; batch * width];
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
        if self.has_token_type_ids {
            inputs.push(("token_type_ids".into(), tensor(types)?.into()));
        }
        let outputs = self.session.run(inputs).map_err(|err| Error::Inference(err.to_string()))?;
        let (out_shape, values) = outputs[self.output.as_str()]
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

/// Registers CUDA on `device_id`, or fails: mathrank never falls back to the CPU on its own,
/// since a GPU deployment silently running on the CPU is a hundred times slower.
#[cfg(feature = "cuda")]
fn with_cuda(
    builder: ort::session::builder::SessionBuilder,
    device_id: i32,
) -> std::result::Result<ort::session::builder::SessionBuilder, String> {
    let cuda = ort::ep::CUDA::default().with_device_id(device_id).build().error_on_failure();
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
    _builder: ort::session::builder::SessionBuilder,
    _device_id: i32,
) -> std::result::Result<ort::session::builder::SessionBuilder, String> {
    Err("this mathrank was built without the `cuda` cargo feature; rebuild with `--features cuda` or use the cpu provider".into())
}

/// When the directory has the `manifest.json` that `mathrank model convert` and `fetch` write,
/// checks `model.onnx`, `config.json` and `tokenizer.json` against the sha256 it records, so
/// that an edited or corrupted model is refused instead of silently scoring.
pub fn verify_manifest(dir: &Path) -> Result<()> {
    let manifest_path = dir.join("manifest.json");
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::InvalidModel { path: manifest_path, reason: err.to_string() }),
    };
    let invalid = |reason: String| Error::InvalidModel { path: dir.to_path_buf(), reason };
    let manifest: serde_json::Value =
        serde_json::from_str(&text).map_err(|err| invalid(format!("manifest.json is not JSON ({err})")))?;
    let mut expected: Vec<(&str, &str)> = Vec::new();
    if let Some(sha) = manifest["onnx_sha256"].as_str() {
        expected.push(("model.onnx", sha));
    }
    for source in manifest["sources"].as_array().into_iter().flatten() {
        if let (Some(name @ ("config.json" | "tokenizer.json")), Some(sha)) =
            (source["name"].as_str(), source["sha256"].as_str())
        {
            expected.push((name, sha));
        }
    }
    for (file, sha) in expected {
        let actual = sha256_hex(&dir.join(file)).map_err(|err| invalid(format!("reading {file}: {err}")))?;
        if !actual.eq_ignore_ascii_case(sha) {
            return Err(invalid(format!(
                "{file} does not match manifest.json (sha256 {actual}, recorded {sha}): it was changed or corrupted; convert or fetch the model again"
            )));
        }
    }
    Ok(())
}

fn sha256_hex(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::fmt::Write as _;
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = std::io::Read::read(&mut file, &mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().iter().fold(String::with_capacity(64), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    }))
}

/// Checks a model directory's files, manifest, config and length limit; returns the config.
pub fn check_model_dir(dir: &Path, max_length: usize) -> Result<ModelConfig> {
    for file in ["model.onnx", "tokenizer.json", "config.json"] {
        if !dir.join(file).is_file() {
            return Err(Error::MissingFile { path: dir.to_path_buf(), file });
        }
    }
    verify_manifest(dir)?;
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    if max_length > config.max_position_embeddings {
        return Err(Error::TooLong { max_length, limit: config.max_position_embeddings });
    }
    if max_length < 8 {
        return Err(Error::InvalidModel {
            path: dir.to_path_buf(),
            reason: format!("max_length {max_length} is too short to hold a pair"),
        });
    }
    Ok(config)
}
