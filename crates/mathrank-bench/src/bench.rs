//! `mathrank-bench rerank|latency|cost-model`: measurements (never tests). Each prints what it
//! measured and the command that reproduces it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use mathrank_bench::measure::{peak_rss_mib, percentile, print_command};
use mathrank_bench::synth::SplitMix64;
use mathrank_rerank::{EncodedPair, Planning, Reranker, RerankerOptions};

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
    /// Fit the batch planner's cost model on this machine: times micro-batches over a grid of
    /// sizes and widths and prints `per_batch` and `attention` for `--cost-model`.
    CostModel(CostModelArgs),
    /// Load against a running server, over gRPC or HTTP: QPS and latency at several concurrencies.
    Load(crate::load::LoadArgs),
    /// A burst of concurrent Search calls sent at once: how many got a complete answer, a
    /// partial one, or nothing, with latency and the mean reranked depth.
    Flood(crate::flood::FloodArgs),
    /// Write a deterministic synthetic Posts.xml (or the sample replicated) for scale work.
    GenDump(crate::gen_dump::GenDumpArgs),
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
    /// Tokens per pair; ignored with --mix. Several (`128,256,512`) sweep them in one process,
    /// one JSON line each, so a GPU pays its start-up once.
    #[arg(long, value_delimiter = ',', default_value = "256")]
    pub tokens: Vec<usize>,
    /// Realistic answer-length mix instead of fixed lengths: many short pairs, a long tail to 512.
    #[arg(long)]
    pub mix: bool,
    /// Cut micro-batches in input order (naive padding to the longest) instead of by length;
    /// the same as `--planning input-order`.
    #[arg(long)]
    pub naive: bool,
    /// How pairs are grouped into micro-batches: `cost` (sorted by length, least estimated
    /// cost), `greedy` (sorted by length, cut at the token budget) or `input-order`.
    #[arg(long, default_value = "cost")]
    pub planning: Planning,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Pairs per micro-batch; several (`32,64,128,256`) sweep them.
    #[arg(long, value_delimiter = ',', default_value = "16")]
    pub max_batch: Vec<usize>,
    /// Instead of --pairs: this many full micro-batches per run (pairs = max batch x N).
    #[arg(long)]
    pub batches: Option<usize>,
    /// Padded tokens per micro-batch [default: 8192, or max batch x tokens when larger, so that
    /// a micro-batch holds --max-batch pairs of fixed length].
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    /// Graph optimisation level 0-3.
    #[arg(long, default_value_t = 3)]
    pub optimization_level: u8,
    /// Execution provider: cpu, or cuda (a build with `--features mathrank-rerank/cuda`).
    #[arg(long, default_value = "cpu")]
    pub provider: mathrank_rerank::Provider,
    /// The GPU, with --provider cuda.
    #[arg(long, default_value_t = 0)]
    pub device_id: i32,
    /// With --provider cuda: the attention kernels ONNX Runtime may choose from (see `serve --help`).
    #[arg(long, default_value = "flash,efficient,math")]
    pub attention_kernels: mathrank_rerank::AttentionKernels,
    /// Timed runs (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Seed of the synthetic token ids.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Score these token ids instead of synthetic pairs: JSON lines `{"input_ids": [...],
    /// "token_type_ids": [...]}`, one pair each (bench/mixes.sh writes real length mixes), so
    /// that another runtime (`bench/torch_rerank.py --ids`) can score the very same inputs.
    /// --tokens, --mix, --pairs and --batches are then ignored.
    #[arg(long, env = "MATHRANK_BENCH_IDS")]
    pub ids: Option<PathBuf>,
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
    if !matches!(command.action, BenchAction::GenDump(_)) {
        print_command();
    }
    match command.action {
        BenchAction::Rerank(args) => rerank(args),
        BenchAction::Latency(args) => latency(args),
        BenchAction::CostModel(args) => cost_model(args),
        BenchAction::Load(args) => crate::load::run(args),
        BenchAction::Flood(args) => crate::flood::run(args),
        BenchAction::GenDump(args) => crate::gen_dump::run(args),
    }
}

fn rerank(args: RerankBenchArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.ids {
        let pairs = read_ids(path)?;
        let label = format!("ids:{}", path.file_stem().unwrap_or_default().to_string_lossy());
        for &max_batch in &args.max_batch {
            rerank_pairs(&args, pairs.clone(), &label, 0, max_batch)?;
        }
        return Ok(());
    }
    for &tokens in &args.tokens {
        for &max_batch in &args.max_batch {
            let count = args.batches.map_or(args.pairs, |batches| batches * max_batch);
            let pairs = synthetic_pairs(count, tokens, args.mix, args.seed);
            let label = if args.mix { "mix".to_owned() } else { tokens.to_string() };
            let fixed = if args.mix { 0 } else { max_batch * tokens.clamp(8, 512) };
            rerank_pairs(&args, pairs, &label, fixed, max_batch)?;
        }
    }
    Ok(())
}

/// Token-id pairs from JSON lines `{"input_ids": [...], "token_type_ids": [...]}`.
fn read_ids(path: &std::path::Path) -> anyhow::Result<Vec<EncodedPair>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading token ids from {}", path.display()))?;
    let mut pairs = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let what = || format!("{} line {}", path.display(), number + 1);
        let value: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}: not JSON", what()))?;
        let ids = |key: &str| -> anyhow::Result<Vec<i64>> {
            value[key]
                .as_array()
                .and_then(|items| items.iter().map(serde_json::Value::as_i64).collect::<Option<Vec<i64>>>())
                .with_context(|| format!("{}: {key:?} is not an array of integers", what()))
        };
        let (input_ids, token_type_ids) = (ids("input_ids")?, ids("token_type_ids")?);
        anyhow::ensure!(
            !input_ids.is_empty() && input_ids.len() == token_type_ids.len(),
            "{}: input_ids and token_type_ids must be non-empty and of one length",
            what()
        );
        pairs.push(EncodedPair { input_ids, token_type_ids });
    }
    anyhow::ensure!(!pairs.is_empty(), "{} holds no pairs", path.display());
    Ok(pairs)
}

/// Times `pairs` through a reranker with micro-batches of `max_batch` (`fixed`: the padded
/// tokens a full batch needs, so that the default budget holds it).
fn rerank_pairs(
    args: &RerankBenchArgs,
    pairs: Vec<EncodedPair>,
    label: &str,
    fixed: usize,
    max_batch: usize,
) -> anyhow::Result<()> {
    let count = pairs.len();
    if let Some(path) = &args.ids_out {
        let ids: Vec<&Vec<i64>> = pairs.iter().map(|p| &p.input_ids).collect();
        let types: Vec<&Vec<i64>> = pairs.iter().map(|p| &p.token_type_ids).collect();
        let json = serde_json::json!({ "input_ids": ids, "token_type_ids": types, "max_batch": max_batch });
        std::fs::write(path, json.to_string()).with_context(|| format!("writing {}", path.display()))?;
    }
    let options = RerankerOptions {
        max_batch,
        batch_tokens: args.batch_tokens.unwrap_or(fixed.max(8192)),
        intra_threads: args.threads,
        optimization_level: args.optimization_level,
        planning: if args.naive { Planning::InputOrder } else { args.planning },
        max_wait: Duration::ZERO,
        ort_library: args.ort_lib.clone(),
        device_id: args.device_id,
        attention_kernels: args.attention_kernels,
        ..RerankerOptions::for_provider(args.provider)
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
        "pairs": count,
        "tokens": label,
        "real_tokens": pairs.iter().map(EncodedPair::len).sum::<usize>(),
        "batching": if args.naive { "input-order".to_owned() } else { format!("{:?}", args.planning).to_lowercase() },
        "threads": args.threads,
        "provider": reranker.info().provider.name(),
        "max_batch": max_batch,
        "attention": reranker.info().attention,
        "pairs_per_s": count as f64 / median.as_secs_f64(),
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
    /// First-stage field weights (see `mathrank eval --help`); a weight of 0 drops the field.
    #[arg(long)]
    pub field_weights: Option<mathrank_index::FieldWeights>,
    /// Also write one JSON line per topic: its clause count, the summed document frequency of
    /// its posting lists, the documents pruning let through (`candidates` matched an essential
    /// clause, `scored` were scored in full) and its median latency over the timed passes.
    #[arg(long)]
    pub per_query: Option<PathBuf>,
}

fn latency(args: LatencyBenchArgs) -> anyhow::Result<()> {
    let index = mathrank_index::AnswerIndex::open(&args.index)?;
    let mut queries = Vec::new();
    for path in &args.topics {
        for topic in mathrank_eval::read_topics(path)? {
            queries.push((topic.number.clone(), mathrank_dump::question_text(&topic.title, &topic.question)));
        }
    }
    anyhow::ensure!(!queries.is_empty(), "no queries: pass --topics FILE");
    let mut times = Vec::new();
    let mut per_query: Vec<(mathrank_index::SearchStats, Vec<Duration>)> = vec![Default::default(); queries.len()];
    for pass in 0..args.passes.max(2) {
        for ((_, query), (stats, query_times)) in queries.iter().zip(&mut per_query) {
            let mut request = mathrank_index::SearchRequest::new(query.clone(), args.top_k);
            request.max_terms = (args.max_terms > 0).then_some(args.max_terms);
            if let Some(weights) = args.field_weights {
                request.weights = weights;
            }
            let started = Instant::now();
            let (hits, query_stats) = index.search_with_stats(&request)?;
            if pass > 0 {
                times.push(started.elapsed());
                query_times.push(started.elapsed());
            }
            *stats = query_stats;
            std::hint::black_box(hits);
        }
    }
    if let Some(path) = &args.per_query {
        let mut out = String::new();
        for ((topic, _), (stats, query_times)) in queries.iter().zip(&mut per_query) {
            query_times.sort();
            let line = serde_json::json!({
                "topic": topic,
                "clauses": stats.clauses,
                "summed_doc_freq": stats.summed_doc_freq,
                "essential_postings": stats.pruning.essential_postings,
                "candidates": stats.pruning.candidates,
                "lookups": stats.pruning.lookups,
                "scored": stats.pruning.scored,
                "windows": stats.pruning.windows,
                "median_ms": percentile(query_times, 50.0).as_secs_f64() * 1000.0,
            });
            out.push_str(&format!("{line}\n"));
        }
        std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
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

#[derive(Args, Debug)]
pub struct CostModelArgs {
    /// Model directory.
    #[arg(long, env = "MATHRANK_MODEL")]
    pub model: PathBuf,
    /// Execution provider: cpu, or cuda (a build with `--features mathrank-rerank/cuda`).
    #[arg(long, env = "MATHRANK_PROVIDER", default_value = "cpu")]
    pub provider: mathrank_rerank::Provider,
    /// The GPU, with --provider cuda.
    #[arg(long, env = "MATHRANK_DEVICE_ID", default_value_t = 0)]
    pub device_id: i32,
    /// ONNX Runtime library (else ORT_DYLIB_PATH, next to the executable, ./.ort/).
    #[arg(long, env = "MATHRANK_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Widths (tokens per pair) of the grid.
    #[arg(long, value_delimiter = ',', default_value = "32,64,128,256,512")]
    pub widths: Vec<usize>,
    /// Batch sizes of the grid.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub sizes: Vec<usize>,
    /// Largest padded tokens of a grid point (bigger points are left out to keep the run short).
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
    /// Timed runs per grid point (the median counts), after one warm-up.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
}

/// Least squares for `seconds = k0 + k1 * tokens + k2 * tokens * width`; returns (k, R^2).
fn fit_cost(points: &[(usize, usize, f64)]) -> Option<([f64; 3], f64)> {
    let rows: Vec<([f64; 3], f64)> = points
        .iter()
        .map(|&(size, width, seconds)| {
            let tokens = (size * width) as f64;
            ([1.0, tokens, tokens * width as f64], seconds)
        })
        .collect();
    let mut a = [[0.0f64; 4]; 3];
    for (x, y) in &rows {
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] += x[i] * x[j];
            }
            a[i][3] += x[i] * y;
        }
    }
    // Gauss-Jordan on the 3x3 normal equations, with partial pivoting.
    for col in 0..3 {
        let pivot = (col..3).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
        a.swap(col, pivot);
        if a[col][col].abs() < 1e-300 {
            return None;
        }
        let pivot_row = a[col];
        for (row, values) in a.iter_mut().enumerate() {
            if row != col {
                let factor = values[col] / pivot_row[col];
                for (value, pivot_value) in values.iter_mut().zip(pivot_row).skip(col) {
                    *value -= factor * pivot_value;
                }
            }
        }
    }
    let k = [a[0][3] / a[0][0], a[1][3] / a[1][1], a[2][3] / a[2][2]];
    let mean = rows.iter().map(|r| r.1).sum::<f64>() / rows.len() as f64;
    let total: f64 = rows.iter().map(|r| (r.1 - mean).powi(2)).sum();
    let residual: f64 = rows.iter().map(|(x, y)| (y - (k[0] + k[1] * x[1] + k[2] * x[2])).powi(2)).sum();
    Some((k, 1.0 - residual / total.max(f64::MIN_POSITIVE)))
}

fn cost_model(args: CostModelArgs) -> anyhow::Result<()> {
    let options = RerankerOptions {
        intra_threads: args.threads,
        max_wait: Duration::ZERO,
        planning: Planning::InputOrder,
        max_batch: args.sizes.iter().copied().max().unwrap_or(1),
        batch_tokens: usize::MAX,
        ort_library: args.ort_lib.clone(),
        device_id: args.device_id,
        ..RerankerOptions::for_provider(args.provider)
    };
    let reranker = Reranker::load(&args.model, &options)?;
    let mut points = Vec::new();
    for &width in &args.widths {
        for &size in &args.sizes {
            if size * width > args.max_tokens {
                continue;
            }
            let pairs = synthetic_pairs(size, width, false, 7);
            reranker.submit(pairs.clone())?.wait()?;
            let mut times: Vec<Duration> = (0..args.repeats.max(1))
                .map(|_| reranker.submit(pairs.clone()).and_then(|h| h.wait()).map(|out| out.infer))
                .collect::<Result<_, _>>()?;
            times.sort();
            let seconds = percentile(&times, 50.0).as_secs_f64();
            println!("{}", serde_json::json!({ "size": size, "width": width, "seconds": seconds }));
            points.push((size, width, seconds));
        }
    }
    let (k, r2) = fit_cost(&points).context("the grid is too small to fit three coefficients")?;
    println!(
        "{}",
        serde_json::json!({
            "seconds_per_token": k[1],
            "per_batch": k[0] / k[1],
            "attention": k[2] / k[1],
            "r2": r2,
            "cost_model": format!("per_batch={:.1},attention={:.6}", (k[0] / k[1]).max(0.0), (k[2] / k[1]).max(0.0)),
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_recovers_known_coefficients() {
        let truth = [0.002, 1e-5, 3e-8];
        let points: Vec<(usize, usize, f64)> = [(1, 32), (4, 64), (8, 128), (2, 256), (16, 256), (4, 512), (1, 512)]
            .iter()
            .map(|&(b, w)| {
                let t = (b * w) as f64;
                (b, w, truth[0] + truth[1] * t + truth[2] * t * w as f64)
            })
            .collect();
        let (k, r2) = fit_cost(&points).unwrap();
        for i in 0..3 {
            assert!((k[i] - truth[i]).abs() <= 1e-6 * truth[i].abs().max(1e-12) + 1e-15, "{k:?}");
        }
        assert!(r2 > 0.999999);
    }
}
