//! Getting the reranking model: the local model cache, and (see `fetch`/`convert`) downloading
//! a Hugging Face checkpoint and converting it to ONNX without Python.
//!
//! ```
//! let dir = mathrank_model::cached_model_dir(mathrank_model::DEFAULT_REPO, "main");
//! assert!(dir.ends_with("AnReu--albert-for-math-ar-base-ft/main"));
//! ```

use std::path::PathBuf;

/// The model mathrank is made for.
pub const DEFAULT_REPO: &str = "AnReu/albert-for-math-ar-base-ft";

/// Errors of model handling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotImplemented(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
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
    cache_root().join("models").join(repo.replace('/', "--")).join(revision)
}

/// The default model if it is in the cache (complete: model.onnx, tokenizer.json, config.json).
pub fn find_cached_default() -> Option<PathBuf> {
    let dir = cached_model_dir(DEFAULT_REPO, "main");
    ["model.onnx", "tokenizer.json", "config.json"].iter().all(|f| dir.join(f).is_file()).then_some(dir)
}
