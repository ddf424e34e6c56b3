//! Getting the reranking model without Python: the local model cache, and conversion of a
//! Hugging Face `AlbertForSequenceClassification` checkpoint (safetensors or the legacy
//! `pytorch_model.bin`) into an ONNX model directory.
//!
//! ```no_run
//! let manifest = mathrank_model::convert("checkpoint/".as_ref(), "model/".as_ref())?;
//! println!("wrote {} from {}", manifest.onnx_sha256, manifest.weights_file);
//! # Ok::<(), mathrank_model::Error>(())
//! ```

mod albert;
mod checkpoint;
mod fetch;
mod graph;
pub mod packed;
mod pickle;

/// The ONNX protobuf messages (generated from this crate's minimal `proto/onnx.proto`).
pub mod onnx {
    #![allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

use std::path::{Path, PathBuf};

pub use albert::{
    ATTENTION_METADATA, AlbertConfig, Attention, GraphOptions, OPSET, Precision, build_graph, build_model,
    build_model_as, build_model_with, required_weights,
};
pub use checkpoint::{Tensor, Weights, read_pytorch_bin, read_safetensors};
pub use fetch::{FetchOptions, FetchProgress, fetch};
/// `manifest.json`: one type, shared with the reranker that checks it at load.
pub use mathrank_rerank::{Manifest, SourceFile};

/// The model mathrank is made for.
pub const DEFAULT_REPO: &str = "AnReu/albert-for-math-ar-base-ft";

/// Errors of model handling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotImplemented(String),
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid checkpoint: {0}")]
    Checkpoint(String),
    #[error("unsupported model configuration: {0}")]
    Config(String),
    #[error("the checkpoint has no weight {0:?}, which AlbertForSequenceClassification needs")]
    MissingWeight(String),
    #[error("fetching the model failed: {0}")]
    Fetch(String),
    #[error("{dir} has neither model.safetensors nor pytorch_model.bin")]
    NoWeights { dir: String },
    #[error(
        "{dir} has no tokenizer.json; download albert-base-v2's (https://huggingface.co/albert/albert-base-v2/resolve/main/tokenizer.json) into it, since the math model uses the same vocabulary"
    )]
    NoTokenizer { dir: String },
    #[error(
        "refusing to replace {path}: it exists and is not a mathrank model directory (it holds {entry:?}); choose another output directory"
    )]
    NotModelDir { path: String, entry: String },
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName { what: &'static str, value: String, reason: &'static str },
}

/// The files a model directory, or its staging directory, may hold. A directory with anything
/// else is the user's, and mathrank never deletes or overwrites it.
const MODEL_FILES: [&str; 4] = ["model.onnx", "tokenizer.json", "config.json", "manifest.json"];

/// Refuses `dir` unless it is absent, empty, or holds only model files.
pub fn check_replaceable(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Error::NotModelDir { path: dir.display().to_string(), entry: "(a file)".into() });
        }
        Err(err) => return Err(io("reading", dir)(err)),
    };
    for entry in entries {
        let entry = entry.map_err(io("reading", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !MODEL_FILES.contains(&name.as_str()) || entry.file_type().map_err(io("reading", dir))?.is_dir() {
            return Err(Error::NotModelDir { path: dir.display().to_string(), entry: name });
        }
    }
    Ok(())
}

/// Checks a hub repository id (`owner/name`) before it reaches a URL or a cache path.
pub fn validate_repo(repo: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidName { what: "repository", value: repo.into(), reason };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() != 2 {
        return Err(invalid("expected owner/name"));
    }
    if parts.iter().any(|p| !valid_segment(p)) {
        return Err(invalid("each part is letters, digits, `-`, `_` or `.`, not starting with `.`"));
    }
    Ok(())
}

/// Checks a revision: a branch or tag name (segments of letters, digits, `-`, `_`, `.`, joined
/// by `/`), or a 40-hex commit. `..`, empty segments and other characters are refused, so a
/// revision can never leave the cache or change a URL's meaning.
pub fn validate_revision(revision: &str) -> Result<()> {
    if revision.len() > 200 || revision.is_empty() || !revision.split('/').all(valid_segment) {
        return Err(Error::InvalidName {
            what: "revision",
            value: revision.into(),
            reason: "use a branch, a tag (letters, digits, `-`, `_`, `.`, `/`) or a 40-hex commit",
        });
    }
    Ok(())
}

fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && !segment.starts_with('.')
        && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A revision as one path component (`refs/pr/1` -> `refs--pr--1`).
pub(crate) fn revision_component(revision: &str) -> String {
    revision.replace('/', "--")
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cache root: `MATHRANK_CACHE`, else `$XDG_CACHE_HOME/mathrank`, else `~/.cache/mathrank`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("MATHRANK_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("mathrank");
    }
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from(".cache/mathrank"), |home| PathBuf::from(home).join(".cache/mathrank"))
}

/// Where `mathrank model fetch` puts a converted model of `repo` at `revision`.
pub fn cached_model_dir(repo: &str, revision: &str) -> PathBuf {
    cache_root().join("models").join(repo.replace('/', "--")).join(revision_component(revision))
}

/// The default model if it is in the cache (complete: model.onnx, tokenizer.json, config.json).
pub fn find_cached_default() -> Option<PathBuf> {
    let dir = cached_model_dir(DEFAULT_REPO, "main");
    ["model.onnx", "tokenizer.json", "config.json"].iter().all(|f| dir.join(f).is_file()).then_some(dir)
}

pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.display().to_string();
    move |source| Error::Io { action, path, source }
}

fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let bytes = std::fs::metadata(path).map_err(io("reading", path))?.len();
    Ok((mathrank_rerank::sha256_file(path).map_err(io("reading", path))?, bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Converts the checkpoint in `from` (config.json, model.safetensors or pytorch_model.bin,
/// tokenizer.json) into a model directory at `out` (model.onnx, tokenizer.json, config.json,
/// manifest.json). Safetensors is preferred when both weight files are present.
pub fn convert(from: &Path, out: &Path) -> Result<Manifest> {
    convert_with(from, out, None)
}

/// [`convert`] with an explicit weights file name (`model.safetensors` or `pytorch_model.bin`).
pub fn convert_with(from: &Path, out: &Path, weights_file: Option<&str>) -> Result<Manifest> {
    convert_full(from, out, weights_file, false)
}

/// [`convert_with`], optionally quantising the shared layer's MatMul weights to int8.
pub fn convert_full(from: &Path, out: &Path, weights_file: Option<&str>, quantize_int8: bool) -> Result<Manifest> {
    convert_as(from, out, weights_file, if quantize_int8 { Precision::Int8 } else { Precision::F32 })
}

/// [`convert_with`] at a [`Precision`] (float32, int8 or float16), with fused attention.
pub fn convert_as(from: &Path, out: &Path, weights_file: Option<&str>, precision: Precision) -> Result<Manifest> {
    convert_to(from, out, weights_file, &GraphOptions::new(precision))
}

/// [`convert_with`] with every choice of the graph: precision and form of attention.
pub fn convert_to(from: &Path, out: &Path, weights_file: Option<&str>, options: &GraphOptions) -> Result<Manifest> {
    let config_path = from.join("config.json");
    let config_text = std::fs::read_to_string(&config_path).map_err(io("reading", &config_path))?;
    let config = AlbertConfig::parse(&config_text)?;
    let tokenizer = from.join("tokenizer.json");
    if !tokenizer.is_file() {
        return Err(Error::NoTokenizer { dir: from.display().to_string() });
    }
    let weights_name = match weights_file {
        Some(name) => name.to_owned(),
        None => ["model.safetensors", "pytorch_model.bin"]
            .iter()
            .find(|name| from.join(name).is_file())
            .map(|name| (*name).to_owned())
            .ok_or_else(|| Error::NoWeights { dir: from.display().to_string() })?,
    };
    let weights_path = from.join(&weights_name);
    let weights = if weights_name.ends_with(".safetensors") {
        read_safetensors(&weights_path)?
    } else {
        read_pytorch_bin(&weights_path)?
    };
    let required: std::collections::BTreeSet<String> = required_weights().into_iter().collect();
    for name in weights.keys().filter(|name| !required.contains(*name)) {
        tracing::debug!(name, "ignoring a weight the classifier does not use");
    }
    let model = build_graph(&config, &weights, options)?;
    let bytes = prost::Message::encode_to_vec(&model);

    check_replaceable(out)?;
    std::fs::create_dir_all(out).map_err(io("creating", out))?;
    let onnx_path = out.join("model.onnx");
    std::fs::write(&onnx_path, &bytes).map_err(io("writing", &onnx_path))?;
    for file in ["tokenizer.json", "config.json"] {
        let (source, target) = (from.join(file), out.join(file));
        if source != target {
            // A read-only copy from an earlier run (or a read-only source) must not block this one.
            if target.exists() {
                std::fs::remove_file(&target).map_err(io("replacing", &target))?;
            }
            std::fs::copy(&source, &target).map_err(io("copying", &source))?;
            let mut permissions = std::fs::metadata(&target).map_err(io("reading", &target))?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            permissions.set_readonly(false);
            std::fs::set_permissions(&target, permissions).map_err(io("writing", &target))?;
        }
    }
    let mut sources = Vec::new();
    for name in ["config.json", "tokenizer.json", weights_name.as_str()] {
        let (sha256, bytes) = sha256_file(&from.join(name))?;
        sources.push(SourceFile { name: name.to_owned(), sha256, bytes });
    }
    let manifest = Manifest {
        source_repo: String::new(),
        sources,
        weights_file: weights_name,
        converter: format!("mathrank {}", env!("CARGO_PKG_VERSION")),
        opset: options.attention.opset(),
        dtype: options.precision.describe().into(),
        attention: options.attention.describe().into(),
        onnx_sha256: mathrank_rerank::sha256_hex(&bytes),
    };
    let manifest_path = out.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|err| io("encoding", &manifest_path)(std::io::Error::other(err)))?;
    std::fs::write(&manifest_path, text).map_err(io("writing", &manifest_path))?;
    Ok(manifest)
}
