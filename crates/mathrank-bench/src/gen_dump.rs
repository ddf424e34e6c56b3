//! `mathrank-bench gen-dump`: deterministic synthetic dumps for scale work.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use mathrank_bench::synth::{SynthOptions, generate, replicate_sample};

#[derive(Args, Debug)]
pub struct GenDumpArgs {
    /// Questions to generate.
    #[arg(long, env = "MATHRANK_GEN_QUESTIONS", default_value_t = 1000)]
    pub questions: u64,
    /// Answers to generate (spread over the questions; some get none).
    #[arg(long, env = "MATHRANK_GEN_ANSWERS", default_value_t = 1500)]
    pub answers: u64,
    /// Random seed: the same seed gives the same file.
    #[arg(long, env = "MATHRANK_GEN_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Write tags in the pre-2024 format (`<a><b>`) instead of `|a|b|`.
    #[arg(long, env = "MATHRANK_GEN_OLD_TAGS")]
    pub old_tags: bool,
    /// One deliberately bad row per this many questions (0: none).
    #[arg(long, env = "MATHRANK_GEN_BAD_ROW_EVERY", default_value_t = 50_000)]
    pub bad_row_every: u64,
    /// Instead of synthetic text, write the embedded sample this many times with shifted ids.
    #[arg(long, env = "MATHRANK_GEN_REPLICATE_SAMPLE", conflicts_with_all = ["questions", "answers", "seed", "old_tags"])]
    pub replicate_sample: Option<u64>,
    /// Output file (`-` for stdout).
    #[arg(long, env = "MATHRANK_GEN_OUT")]
    pub out: PathBuf,
}

pub fn run(args: GenDumpArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut out: Box<dyn std::io::Write> = if args.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?)
    };
    if let Some(copies) = args.replicate_sample {
        let bytes = replicate_sample(copies, &mut out)?;
        eprintln!(
            "wrote {copies} copies of the embedded sample ({bytes} bytes) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let options = SynthOptions {
        questions: args.questions,
        answers: args.answers,
        seed: args.seed,
        old_tag_format: args.old_tags,
        bad_row_every: args.bad_row_every,
    };
    let summary = generate(&options, &mut out)?;
    eprintln!(
        "wrote {} questions, {} answers, {} bad rows ({:.1} MiB) in {:.1} s",
        summary.questions,
        summary.answers,
        summary.bad_rows,
        summary.bytes as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
