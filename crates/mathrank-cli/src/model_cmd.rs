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
    /// Download a Hugging Face checkpoint (resumable, sha256-checked) and convert it to ONNX into
    /// the model cache. The hub URL comes from MATHRANK_HUB_ENDPOINT (default
    /// https://huggingface.co), a token from HF_TOKEN.
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
    /// `int8`: dynamic quantisation of the shared layer's MatMul weights (stored once).
    #[arg(long, env = "MATHRANK_CONVERT_QUANTIZE", conflicts_with = "dtype")]
    pub quantize: Option<String>,
    /// `fp32`, or `fp16`: the encoder in float16 for GPUs (LayerNorm and softmax accumulate in
    /// float32; pooler, classifier and logits float32). On a CPU fp16 is slower than fp32.
    #[arg(long, env = "MATHRANK_CONVERT_DTYPE", default_value = "fp32", value_parser = ["fp32", "fp16"])]
    pub dtype: String,
    /// How the graph computes self-attention, one fused operator per layer: `onnx` (ONNX
    /// Attention, opset 24, with one length per pair), `mha` (ONNX Runtime's
    /// MultiHeadAttention with one length per pair), `mha-offsets` (the same with lengths and
    /// row offsets, the mask of CUDA's memory-efficient kernel); or `unfused` (separate MatMul,
    /// Softmax, MatMul; to measure against). The fused forms assume right padding, as mathrank
    /// pads.
    #[arg(long, env = "MATHRANK_CONVERT_ATTENTION", default_value = "onnx")]
    pub attention: mathrank_model::Attention,
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
        ModelAction::Fetch(args) => {
            let mut options = mathrank_model::FetchOptions::new(&args.repo, &args.revision);
            options.out = args.out.clone();
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:20} {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let mut current = String::new();
            let (dir, manifest) = mathrank_model::fetch(&options, &mut |progress| {
                if current != progress.file {
                    current = progress.file.to_owned();
                    bar.set_message(current.clone());
                    bar.set_length(progress.total.unwrap_or(0));
                }
                bar.set_position(progress.downloaded);
            })
            .with_context(|| format!("fetching {}@{}", args.repo, args.revision))?;
            bar.finish_and_clear();
            println!(
                "{} -> {} (ONNX, from {}; sha256 {})",
                args.repo,
                dir.display(),
                manifest.weights_file,
                manifest.onnx_sha256
            );
            Ok(())
        }
        ModelAction::Convert(args) => {
            let weights = args.weights.as_deref();
            let precision = match (args.quantize.as_deref(), args.dtype.as_str()) {
                (Some("int8"), _) => mathrank_model::Precision::Int8,
                (Some(other), _) => anyhow::bail!("--quantize {other}: only int8 is supported"),
                (None, "fp16") => mathrank_model::Precision::F16,
                (None, _) => mathrank_model::Precision::F32,
            };
            let options = mathrank_model::GraphOptions { precision, attention: args.attention };
            let manifest = mathrank_model::convert_to(&args.from, &args.out, weights, &options)
                .with_context(|| format!("converting {}", args.from.display()))?;
            println!(
                "wrote {} (ONNX opset {}, {}, attention {} from {}, sha256 {})",
                args.out.join("model.onnx").display(),
                manifest.opset,
                manifest.dtype,
                args.attention,
                manifest.weights_file,
                manifest.onnx_sha256
            );
            Ok(())
        }
    }
}
