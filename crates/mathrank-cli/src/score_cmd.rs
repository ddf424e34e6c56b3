//! `mathrank score`: scores (query, answer) pairs from a JSONL file.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::model_args::ModelArgs;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Input: one `{"query": "...", "answer": "..."}` object per line (`-` for stdin); with
    /// --ids, one `{"input_ids": [...], "token_type_ids": [...]}` per line instead (encoded
    /// pairs, `[CLS] A [SEP] B [SEP]`; without token_type_ids, 1 from after the first [SEP]).
    #[arg(long, env = "MATHRANK_PAIRS")]
    pub pairs: PathBuf,
    /// The lines hold token ids, not texts.
    #[arg(long, env = "MATHRANK_IDS")]
    pub ids: bool,
    /// Add the token ids of each pair to the output.
    #[arg(long, env = "MATHRANK_EMIT_IDS")]
    pub emit_ids: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum PairLine {
    Text { query: String, answer: String },
    Ids { input_ids: Vec<i64>, token_type_ids: Option<Vec<i64>> },
}

/// An encoded pair from ids, checked against the model's vocabulary and length.
fn pair_of_ids(
    input_ids: Vec<i64>,
    token_type_ids: Option<Vec<i64>>,
    reranker: &mathrank_rerank::Reranker,
) -> anyhow::Result<mathrank_rerank::EncodedPair> {
    let max_length = reranker.encoder().max_length();
    anyhow::ensure!(
        !input_ids.is_empty() && input_ids.len() <= max_length,
        "a pair of {} ids; between 1 and {max_length} allowed",
        input_ids.len()
    );
    anyhow::ensure!(input_ids.iter().all(|id| (0..1 << 20).contains(id)), "negative or huge token id");
    let token_type_ids = match token_type_ids {
        Some(types) => {
            anyhow::ensure!(types.len() == input_ids.len(), "token_type_ids and input_ids differ in length");
            types
        }
        None => {
            // [SEP] is id 3 in the ALBERT vocabulary; segment B starts after the first one.
            let first_sep = input_ids.iter().position(|&id| id == 3).unwrap_or(input_ids.len());
            (0..input_ids.len()).map(|i| i64::from(i > first_sep)).collect()
        }
    };
    Ok(mathrank_rerank::EncodedPair { input_ids, token_type_ids })
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
            .drain(..)
            .map(|pair| match pair {
                PairLine::Text { query, answer } => Ok(reranker.encoder().encode_one(&query, &answer)?),
                PairLine::Ids { input_ids, token_type_ids } => pair_of_ids(input_ids, token_type_ids, &reranker),
            })
            .collect::<anyhow::Result<_>>()?;
        let ids: Vec<Vec<i64>> =
            if args.emit_ids { encoded.iter().map(|e| e.input_ids.clone()).collect() } else { Vec::new() };
        let encoded_len = encoded.len();
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
        count += encoded_len;
        Ok(())
    };
    for (number, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", number + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let pair: PairLine = serde_json::from_str(&line).with_context(|| {
            format!(
                "line {} of {} is not {}",
                number + 1,
                args.pairs.display(),
                if args.ids {
                    "{\"input_ids\": [int], \"token_type_ids\"?: [int]}"
                } else {
                    "{\"query\": string, \"answer\": string}"
                }
            )
        })?;
        anyhow::ensure!(
            matches!(pair, PairLine::Ids { .. }) == args.ids,
            "line {} of {} holds {}; {}",
            number + 1,
            args.pairs.display(),
            if args.ids { "texts" } else { "token ids" },
            if args.ids { "drop --ids" } else { "pass --ids" }
        );
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
