//! The process-wide ONNX Runtime: library discovery and the one environment.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::{Error, Result};

/// Execution provider of the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Provider {
    #[default]
    Cpu,
    /// NVIDIA CUDA; needs the `cuda` cargo feature and a CUDA build of ONNX Runtime.
    Cuda,
    /// The deterministic test model ([`crate::FakeModel`]), no ONNX Runtime; never parsed from
    /// a flag.
    Fake,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::Fake => "fake",
        }
    }
}

impl std::str::FromStr for Provider {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "cpu" => Ok(Provider::Cpu),
            "cuda" => Ok(Provider::Cuda),
            other => Err(format!("unknown provider {other:?}; use cpu or cuda")),
        }
    }
}

/// What was loaded.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    pub library: PathBuf,
    pub environment: ort::environment::Environment,
}

static RUNTIME: OnceLock<std::result::Result<RuntimeInfo, String>> = OnceLock::new();

const LIBRARY_NAMES: &[&str] = &["libonnxruntime.so", "libonnxruntime.so.1", "libonnxruntime.dylib", "onnxruntime.dll"];

/// Finds the ONNX Runtime shared library: `explicit` (from `--ort-lib`), then `ORT_DYLIB_PATH`,
/// then next to the executable (and its parent, for `target/debug/deps` test binaries), then
/// `.ort/` in the working directory (where `scripts/setup-ort.sh` puts it).
pub fn find_ort_library(explicit: Option<&Path>) -> Result<PathBuf> {
    let mut searched = Vec::new();
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        searched.push(format!("the configured path {}", path.display()));
    }
    if let Some(env_path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(env_path);
        if path.is_file() {
            return Ok(path);
        }
        searched.push(format!("ORT_DYLIB_PATH={}", path.display()));
    }
    let mut dirs: Vec<PathBuf> = std::env::current_exe()
        .map(|exe| exe.ancestors().skip(1).take(2).map(Path::to_path_buf).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from(".ort"));
    {
        for dir in &dirs {
            for name in LIBRARY_NAMES {
                let candidate = dir.join(name);
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
            // Versioned names as shipped in the PyPI wheel: libonnxruntime.so.1.31.1
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().starts_with("libonnxruntime.so.") {
                        return Ok(entry.path());
                    }
                }
            }
            searched.push(dir.display().to_string());
        }
    }
    Err(Error::LibraryNotFound { searched: searched.join(", ") })
}

/// Loads ONNX Runtime once per process. Later calls return the first result whatever their
/// argument (the library cannot be swapped inside one process).
pub fn init_runtime(explicit: Option<&Path>) -> Result<&'static RuntimeInfo> {
    let outcome = RUNTIME.get_or_init(|| {
        let library = find_ort_library(explicit).map_err(|err| err.to_string())?;
        let builder = ort::init_from(&library)
            .map_err(|err| Error::LibraryLoad { path: library.clone(), reason: err.to_string() }.to_string())?;
        let environment = builder
            .with_name("mathrank")
            .build()
            .map_err(|err| Error::LibraryLoad { path: library.clone(), reason: err.to_string() }.to_string())?;
        tracing::info!(library = %library.display(), "loaded ONNX Runtime");
        Ok(RuntimeInfo { library, environment })
    });
    match outcome {
        Ok(info) => Ok(info),
        Err(message) => Err(Error::LibraryLoad { path: PathBuf::from("(see message)"), reason: message.clone() }),
    }
}
