//! A model directory: `model.onnx`, `tokenizer.json`, `config.json` and, when mathrank wrote
//! it, `manifest.json`, checked once at load.

use std::path::{Path, PathBuf};

use crate::manifest::{Manifest, sha256_file, sha256_hex};
use crate::runtime::Provider;
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
    /// How the graph computes attention (from the manifest), and the kernels it may use.
    pub attention: String,
}

/// A model directory, checked: its files are there, `model.onnx` is read once and hashed once,
/// and the three files match the sha256 that `manifest.json` records, when there is one (so
/// that an edited or corrupted model is refused instead of silently scoring).
pub(crate) struct ModelDir {
    pub config: ModelConfig,
    pub manifest: Option<Manifest>,
    /// The bytes of `model.onnx`, which the sessions are made from: what was hashed is what runs.
    pub onnx: Vec<u8>,
    pub onnx_sha256: String,
    pub tokenizer_sha256: String,
}

impl ModelDir {
    pub fn open(dir: &Path, max_length: usize) -> Result<Self> {
        for file in ["model.onnx", "tokenizer.json", "config.json"] {
            if !dir.join(file).is_file() {
                return Err(Error::MissingFile { path: dir.to_path_buf(), file });
            }
        }
        let invalid = |reason: String| Error::InvalidModel { path: dir.to_path_buf(), reason };
        let onnx_path = dir.join("model.onnx");
        let onnx = std::fs::read(&onnx_path).map_err(|err| invalid(format!("reading model.onnx: {err}")))?;
        let onnx_sha256 = sha256_hex(&onnx);
        let tokenizer_sha256 = sha256_file(&dir.join("tokenizer.json"))
            .map_err(|err| invalid(format!("reading tokenizer.json: {err}")))?;
        let manifest = Manifest::read(dir)?;
        if let Some(manifest) = &manifest {
            let config_sha256 =
                sha256_file(&dir.join("config.json")).map_err(|err| invalid(format!("reading config.json: {err}")))?;
            for (file, actual) in
                [("model.onnx", &onnx_sha256), ("config.json", &config_sha256), ("tokenizer.json", &tokenizer_sha256)]
            {
                match manifest.sha256_of(file) {
                    Some(recorded) if !recorded.eq_ignore_ascii_case(actual) => {
                        return Err(invalid(format!(
                            "{file} does not match manifest.json (sha256 {actual}, recorded {recorded}): it was changed or corrupted; convert or fetch the model again"
                        )));
                    }
                    _ => {}
                }
            }
        }
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        if max_length > config.max_position_embeddings {
            return Err(Error::TooLong { max_length, limit: config.max_position_embeddings });
        }
        if max_length < 8 {
            return Err(invalid(format!("max_length {max_length} is too short to hold a pair")));
        }
        Ok(Self { config, manifest, onnx, onnx_sha256, tokenizer_sha256 })
    }
}

/// Checks a model directory's files, manifest, config and length limit; returns the config.
pub fn check_model_dir(dir: &Path, max_length: usize) -> Result<ModelConfig> {
    ModelDir::open(dir, max_length).map(|model| model.config)
}
