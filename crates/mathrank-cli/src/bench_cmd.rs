//! `mathrank bench ...`: measurements (never tests). Each prints what it measured and the
//! command that reproduces it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use mathrank_dump::synth::SplitMix64;
use mathrank_rerank::{EncodedPair, Reranker, RerankerOptions};

use crate::measure::{peak_rss_mib, percentile, print_command};

#[derive(Args, Debug)]
pub struct BenchCommand {
    #[command(subcommand)]
    pub action: BenchAction,
}

#[derive(Subcommand, Debug)]
pub enum BenchAction {
    /// Cross-encoder throughput on synthetic token ids (pairs/s), optionally writing the ids so
    /// that bench/rerank_ort.py can run the very same inputs in Python onnxruntime.
    Rerank(RerankBenchArgs),
    /// First-stage (BM25) latency for whole-question queries: p50/p95/p99.
    Latency(LatencyBenchArgs),
    /// Load against a running server, over gRPC or HTTP: QPS and latency at several concurrencies.
    Load(crate::load_cmd::LoadArgs),
}

#[derive(Args, Debug)]
pub struct RerankBenchArgs {
    /// Model directory (model.onnx, tokenizer.json, config.json).
    #[arg(long, env = "MATHRANK_MODEL")]
    pub model: PathBuf,
    /// ONNX Runtime library (else ORT_DYLIB_PATH, next to the executable, ./.ort/).
    #[arg(long, env = "MATHRANK_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,
    /// Pairs per run.
    #[arg(long, default_value_t = 16)]
    pub pairs: usize,
    /// Tokens per pair; ignored with --mix.
    #[arg(long, default_value_t = 256)]
    pub tokens: usize,
    /// Realistic answer-length mix instead of fixed lengths: many short pairs, a long tail to 512.
    #[arg(long)]
    pub mix: bool,
    /// Cut micro-batches in input order (naive padding to the longest) instead of by length.
    #[arg(long)]
    pub naive: bool,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Pairs per micro-batch.
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Padded tokens per micro-batch.
    #[arg(long, default_value_t = 8192)]
    pub batch_tokens: usize,
    /// Graph optimisation level 0-3.
    #[arg(long, default_value_t = 3)]
    pub optimization_level: u8,
    /// Timed runs (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Seed of the synthetic token ids.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Write the pairs' token ids as JSON (for bench/rerank_ort.py).
    #[arg(long)]
    pub ids_out: Option<PathBuf>,
}

/// Synthetic pairs: `[CLS] q [SEP] a [SEP]` with ids from the ordinary vocabulary range.
pub fn synthetic_pairs(count: usize, tokens: usize, mix: bool, seed: u64) -> Vec<EncodedPair> {
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|_| {
            let total = if mix {
                // Lognormal answer lengths, median ~120 tokens, capped at 512 (Math SE answers).
                let u1 = rng.unit().max(1e-12);
                let u2 = rng.unit();
                let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                ((120.0 * (0.9 * normal).exp()) as usize).clamp(24, 512)
            } else {
                tokens.clamp(8, 512)
            };
            let question = (total / 4).max(3);
            let mut input_ids = vec![2i64];
            input_ids.extend((0..question - 2).map(|_| 5 + rng.below(29_990) as i64));
            input_ids.push(3);
            let answer = total - input_ids.len() - 1;
            input_ids.extend((0..answer).map(|_| 5 + rng.below(29_990) as i64));
            input_ids.push(3);
            let token_type_ids = (0..input_ids.len()).map(|i| i64::from(i >= question)).collect();
            EncodedPair { input_ids, token_type_ids }
        })
        .collect()
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    print_command();
    match command.action {
        BenchAction::Rerank(args) => rerank(args),
        BenchAction::Latency(args) => latency(args),
        BenchAction::Load(args) => crate::load_cmd::run(args),
    }
}

fn rerank(args: RerankBenchArgs) -> anyhow::Result<()> {
    let pairs = synthetic_pairs(args.pairs, args.tokens, args.mix, args.seed);
    if let Some(path) = &args.ids_out {
        let ids: Vec<&Vec<i64>> = pairs.iter().map(|p| &p.input_ids).collect();
        let types: Vec<&Vec<i64>> = pairs.iter().map(|p| &p.token_type_ids).collect();
        let json = serde_json::json!({ "input_ids": ids, "token_type_ids": types, "max_batch": args.max_batch });
        std::fs::write(path, json.to_string()).with_context(|| format!("writing {}", path.display()))?;
    }
    let options = RerankerOptions {
        max_batch: args.max_batch,
        batch_tokens: args.batch_tokens,
        intra_threads: args.threads,
        optimization_level: args.optimization_level,
        length_sorting: !args.naive,
        max_wait: Duration::ZERO,
        ort_library: args.ort_lib.clone(),
        ..RerankerOptions::default()
    };
    let reranker = Reranker::load(&args.model, &options)?;
    reranker.submit(pairs.clone())?.wait()?;
    let mut times = Vec::with_capacity(args.repeats);
    let mut efficiency = 1.0;
    for _ in 0..args.repeats.max(1) {
        let started = Instant::now();
        let output = reranker.submit(pairs.clone())?.wait()?;
        times.push(started.elapsed());
        efficiency = mathrank_rerank::efficiency(output.real_tokens, output.padded_tokens);
    }
    times.sort();
    let median = percentile(&times, 50.0);
    let result = serde_json::json!({
        "impl": "rust",
        "pairs": args.pairs,
        "tokens": if args.mix { "mix".to_owned() } else { args.tokens.to_string() },
        "batching": if args.naive { "naive" } else { "length-aware" },
        "threads": args.threads,
        "pairs_per_s": args.pairs as f64 / median.as_secs_f64(),
        "median_s": median.as_secs_f64(),
        "padding_efficiency": efficiency,
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{result}");
    Ok(())
}

#[derive(Args, Debug)]
pub struct LatencyBenchArgs {
    /// Index directory.
    #[arg(long, env = "MATHRANK_INDEX")]
    pub index: PathBuf,
    /// ARQMath topics XML (queries = title + body), e.g. topics.arqmath-2021-task1-origin.xml.
    #[arg(long)]
    pub topics: Vec<PathBuf>,
    /// Hits per query.
    #[arg(long, default_value_t = 1000)]
    pub top_k: usize,
    /// Distinct query terms kept per analyzer (0 = all).
    #[arg(long, default_value_t = mathrank_index::DEFAULT_MAX_TERMS)]
    pub max_terms: usize,
    /// Passes over the query set (the first is a warm-up and not counted).
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
}

fn latency(args: LatencyBenchArgs) -> anyhow::Result<()> {
    let index = mathrank_index::AnswerIndex::open(&args.index)?;
    let mut queries = Vec::new();
    for path in &args.topics {
        for topic in mathrank_eval::read_topics(path)? {
            queries.push(mathrank_dump::question_text(&topic.title, &topic.question));
        }
    }
    anyhow::ensure!(!queries.is_empty(), "no queries: pass --topics FILE");
    let mut times = Vec::new();
    for pass in 0..args.passes.max(2) {
        for query in &queries {
            let mut request = mathrank_index::SearchRequest::new(query.clone(), args.top_k);
            request.max_terms = (args.max_terms > 0).then_some(args.max_terms);
            let started = Instant::now();
            let hits = index.search(&request)?;
            if pass > 0 {
                times.push(started.elapsed());
            }
            std::hint::black_box(hits);
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let result = serde_json::json!({
        "queries": queries.len(),
        "index_answers": index.num_answers(),
        "top_k": args.top_k,
        "max_terms": args.max_terms,
        "p50_ms": ms(percentile(&times, 50.0)),
        "p95_ms": ms(percentile(&times, 95.0)),
        "p99_ms": ms(percentile(&times, 99.0)),
        "mean_ms": ms(times.iter().sum::<Duration>() / times.len().max(1) as u32),
    });
    println!("{result}");
    Ok(())
}
