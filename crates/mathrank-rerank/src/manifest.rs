//! `manifest.json`: what `mathrank model convert` and `fetch` wrote into a model directory,
//! with the sha256 of every file. One type for both sides: the converter (`mathrank-model`)
//! writes it, the reranker checks a model directory against it at load.

use std::path::Path;

use crate::{Error, Result};

/// What a conversion wrote, saved as `manifest.json` next to the model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Hub repository, when known (`fetch`); else empty.
    #[serde(default)]
    pub source_repo: String,
    /// Source files and their sha256.
    pub sources: Vec<SourceFile>,
    pub weights_file: String,
    pub converter: String,
    pub opset: i64,
    pub dtype: String,
    /// How the graph computes attention (empty in manifests written before it was recorded).
    #[serde(default)]
    pub attention: String,
    pub onnx_sha256: String,
}

/// A file the conversion read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

impl Manifest {
    /// Its name in a model directory.
    pub const FILE: &'static str = "manifest.json";

    /// Reads `dir/manifest.json`; `None` when the directory has none (a model made elsewhere).
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(Self::FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(Error::InvalidModel { path, reason: err.to_string() }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|err| Error::InvalidModel { path, reason: format!("manifest.json is not a manifest ({err})") })
    }

    /// The sha256 it records for a file of the model directory: `model.onnx`, or a source file
    /// that the directory holds a copy of (`config.json`, `tokenizer.json`).
    pub fn sha256_of(&self, file: &str) -> Option<&str> {
        if file == "model.onnx" {
            return Some(&self.onnx_sha256);
        }
        self.sources.iter().find(|source| source.name == file).map(|source| source.sha256.as_str())
    }
}

/// sha256 of bytes, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// sha256 of a file, read in 1 MiB pieces, as lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
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
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_manifest_reads_and_names_its_files() {
        let text = r#"{"sources": [{"name": "config.json", "sha256": "aa", "bytes": 3}],
            "weights_file": "model.safetensors", "converter": "mathrank 0.1.0", "opset": 17,
            "dtype": "float32", "onnx_sha256": "bb"}"#;
        let manifest: Manifest = serde_json::from_str(text).unwrap();
        assert_eq!((manifest.source_repo.as_str(), manifest.attention.as_str()), ("", ""));
        assert_eq!(manifest.sha256_of("model.onnx"), Some("bb"));
        assert_eq!(manifest.sha256_of("config.json"), Some("aa"));
        assert_eq!(manifest.sha256_of("tokenizer.json"), None);
        let again: Manifest = serde_json::from_str(&serde_json::to_string(&manifest).unwrap()).unwrap();
        assert_eq!(again, manifest);
    }

    #[test]
    fn sha256_is_lowercase_hex_of_the_digest() {
        // FIPS 180-2's example; `sha256_file` is checked against it through the model
        // directories of the integration tests.
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
