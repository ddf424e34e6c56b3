//! `mathrank model ...`: the model cache, fetch and convert.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct ModelCommand {
    #[command(subcommand)]
    pub action: ModelAction,
}

#[derive(Subcommand, Debug)]
pub enum ModelAction {
    /// Print the cached default model's directory (exit 1 if it is not cached).
    Path,
    /// Download a Hugging Face checkpoint and convert it to ONNX into the model cache.
    Fetch(FetchArgs),
    /// Convert a local Hugging Face ALBERT checkpoint directory to an ONNX model directory.
    Convert(ConvertArgs),
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Hub repository.
    #[arg(long, env = "MATHRANK_MODEL_REPO", default_value = mathrank_model::DEFAULT_REPO)]
    pub repo: String,
    /// Branch, tag or commit.
    #[arg(long, env = "MATHRANK_MODEL_REVISION", default_value = "main")]
    pub revision: String,
    /// Output directory [default: the model cache].
    #[arg(long, env = "MATHRANK_MODEL_OUT")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Checkpoint directory: config.json, model.safetensors or pytorch_model.bin, tokenizer.json.
    #[arg(long = "from", env = "MATHRANK_CONVERT_FROM")]
    pub from: PathBuf,
    /// Output model directory.
    #[arg(long, env = "MATHRANK_CONVERT_OUT")]
    pub out: PathBuf,
    /// Weights file to read: model.safetensors or pytorch_model.bin [default: safetensors when present].
    #[arg(long, env = "MATHRANK_CONVERT_WEIGHTS")]
    pub weights: Option<String>,
}

pub fn run(command: ModelCommand) -> anyhow::Result<()> {
    match command.action {
        ModelAction::Path => match mathrank_model::find_cached_default() {
            Some(dir) => {
                println!("{}", dir.display());
                Ok(())
            }
            None => anyhow::bail!(
                "{} is not cached at {}; run `mathrank model fetch`",
                mathrank_model::DEFAULT_REPO,
                mathrank_model::cached_model_dir(mathrank_model::DEFAULT_REPO, "main").display()
            ),
        },
        ModelAction::Fetch(_) => anyhow::bail!(
            "`mathrank model fetch` is not implemented yet; get an ONNX export of {} (model.onnx, tokenizer.json, config.json) and pass its directory with --model",
            mathrank_model::DEFAULT_REPO
        ),
        ModelAction::Convert(args) => {
            let weights = args.weights.as_deref();
            let manifest = mathrank_model::convert_with(&args.from, &args.out, weights)
                .with_context(|| format!("converting {}", args.from.display()))?;
            println!(
                "wrote {} (ONNX opset {}, {} from {}, sha256 {})",
                args.out.join("model.onnx").display(),
                manifest.opset,
                manifest.dtype,
                manifest.weights_file,
                manifest.onnx_sha256
            );
            Ok(())
        }
    }
}
