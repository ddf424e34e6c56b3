//! `mathrank score`: scores (query, answer) pairs from a JSONL file.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::model_args::ModelArgs;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Input: one `{"query": "...", "answer": "..."}` object per line (`-` for stdin).
    #[arg(long, env = "MATHRANK_PAIRS")]
    pub pairs: PathBuf,
    /// Add the token ids of each pair to the output.
    #[arg(long, env = "MATHRANK_EMIT_IDS")]
    pub emit_ids: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(serde::Deserialize)]
struct PairLine {
    query: String,
    answer: String,
}

/// Lines scored per job: bounds memory on large files while keeping batches full.
const BLOCK: usize = 256;

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let reranker = args.model.load()?;
    let input: Box<dyn BufRead> = if args.pairs.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.pairs).with_context(|| format!("opening {}", args.pairs.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut block: Vec<PairLine> = Vec::with_capacity(BLOCK);
    let (mut real, mut padded, mut count) = (0u64, 0u64, 0usize);
    let mut flush = |block: &mut Vec<PairLine>, out: &mut BufWriter<_>| -> anyhow::Result<()> {
        if block.is_empty() {
            return Ok(());
        }
        let encoded: Vec<_> = block
            .iter()
            .map(|pair| reranker.encoder().encode_one(&pair.query, &pair.answer))
            .collect::<Result<_, _>>()?;
        let ids: Vec<Vec<i64>> =
            if args.emit_ids { encoded.iter().map(|e| e.input_ids.clone()).collect() } else { Vec::new() };
        let output = reranker.submit(encoded)?.wait()?;
        real += output.real_tokens;
        padded += output.padded_tokens;
        for (i, score) in output.scores.iter().enumerate() {
            let mut line = serde_json::json!({ "logits": score.logits, "relevance": score.relevance });
            if args.emit_ids {
                line["input_ids"] = serde_json::json!(ids[i]);
            }
            writeln!(out, "{line}")?;
        }
        count += block.len();
        block.clear();
        Ok(())
    };
    for (number, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", number + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let pair: PairLine = serde_json::from_str(&line).with_context(|| {
            format!("line {} of {} is not {{\"query\": string, \"answer\": string}}", number + 1, args.pairs.display())
        })?;
        block.push(pair);
        if block.len() == BLOCK {
            flush(&mut block, &mut out)?;
        }
    }
    flush(&mut block, &mut out)?;
    out.flush()?;
    tracing::info!(
        pairs = count,
        padding_efficiency = format!("{:.3}", mathrank_rerank::efficiency(real, padded)),
        "scored"
    );
    Ok(())
}
