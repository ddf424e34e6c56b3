//! `mathrank eval` (topics -> TREC run -> metrics) and `mathrank eval-run`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mathrank_engine::{Engine, Fusion, Limits, SearchParams};
use mathrank_eval::{
    KnownItemResult, Qrels, Run, evaluate, format_evaluation, rank_of, read_known_items, read_qrels, read_run,
    read_topics, summarize,
};
use mathrank_index::AnswerIndex;

use crate::model_args::ModelArgs;

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("queries").required(true).args(["topics", "known_items"]))]
pub struct EvalArgs {
    /// Index directory.
    #[arg(long, env = "MATHRANK_INDEX", default_value = "index/default")]
    pub index: PathBuf,
    /// BM25 only.
    #[arg(long, env = "MATHRANK_NO_RERANK")]
    pub no_rerank: bool,
    /// ARQMath Task 1 topics XML.
    #[arg(long, env = "MATHRANK_TOPICS", requires = "run_out")]
    pub topics: Option<PathBuf>,
    /// Known-item queries instead of topics: JSON lines `{"id", "question_id", "query",
    /// "kind"?, "split"?}`, each written to find one thread. Prints MRR@10, Recall@10 and
    /// Recall@100 (the share of queries whose thread is in the top 10 / 100), overall, per
    /// split and per kind.
    #[arg(long, env = "MATHRANK_KNOWN_ITEMS", conflicts_with_all = ["qrels", "inputs_out"])]
    pub known_items: Option<PathBuf>,
    /// With --known-items: only the queries of this split (`tune`, `test`).
    #[arg(long, env = "MATHRANK_SPLIT", requires = "known_items")]
    pub split: Option<String>,
    /// TREC qrels (`topic 0 answer_id grade`); with it, metrics are printed.
    #[arg(long, env = "MATHRANK_QRELS")]
    pub qrels: Option<PathBuf>,
    /// Where to write the TREC run (required with --topics).
    #[arg(long, env = "MATHRANK_RUN_OUT")]
    pub run_out: Option<PathBuf>,
    /// How the reranked hits are finally ordered: `rerank` (by the relevant logit), `linear`
    /// (--fusion-weight x min-max relevant logit + the rest x min-max BM25) or `rrf`
    /// (1/(k + BM25 rank) + 1/(k + rerank rank)).
    #[arg(long, env = "MATHRANK_FUSION", default_value = "rerank")]
    pub fusion: String,
    /// The reranker's weight in linear fusion, 0 to 1.
    #[arg(long, env = "MATHRANK_FUSION_WEIGHT", default_value_t = mathrank_engine::DEFAULT_LINEAR_WEIGHT)]
    pub fusion_weight: f32,
    /// k of rrf fusion.
    #[arg(long, env = "MATHRANK_RRF_K", default_value_t = mathrank_engine::DEFAULT_RRF_K)]
    pub rrf_k: u32,
    /// First-stage field weights, `prose=1,math=0.5` (fields left out keep these defaults);
    /// how the thread's parts count is fixed by the index (`mathrank index --field-repeats`).
    #[arg(long, env = "MATHRANK_FIELD_WEIGHTS")]
    pub field_weights: Option<mathrank_index::FieldWeights>,
    /// Answers per topic in the run.
    #[arg(long, env = "MATHRANK_DEPTH", default_value_t = 1000)]
    pub depth: u32,
    /// BM25 candidates reranked per topic (the rest follow in BM25 order).
    #[arg(long, env = "MATHRANK_RERANK_DEPTH", default_value_t = 30)]
    pub rerank_depth: u32,
    /// How answers longer than 512 tokens are scored: `truncate` (as the model's authors) or
    /// `max_window` (the best of overlapping windows).
    #[arg(long, env = "MATHRANK_LONG_ANSWERS", default_value = "truncate")]
    pub long_answers: mathrank_engine::LongAnswers,
    /// Run tag (last column).
    #[arg(long, env = "MATHRANK_RUN_TAG", default_value = "mathrank")]
    pub run_tag: String,
    /// Also write one JSON line per topic, `{"topic", "query"}`, where `query` is segment A
    /// exactly as the model reads it (title and body converted once, joined by a space).
    #[arg(long, env = "MATHRANK_INPUTS_OUT")]
    pub inputs_out: Option<PathBuf>,
    /// Print metrics as JSON.
    #[arg(long, env = "MATHRANK_JSON")]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug)]
pub struct EvalRunArgs {
    /// TREC run file (`topic Q0 answer_id rank score tag`).
    #[arg(long, env = "MATHRANK_RUN")]
    pub run: PathBuf,
    /// TREC qrels file.
    #[arg(long, env = "MATHRANK_QRELS")]
    pub qrels: PathBuf,
    /// Print JSON (`ndcg_prime`, `map_prime`, `p10_prime`, `topics`, ...).
    #[arg(long, env = "MATHRANK_JSON")]
    pub json: bool,
}

pub fn run_eval_run(args: EvalRunArgs) -> anyhow::Result<()> {
    let run = read_run(&args.run)?;
    let qrels = read_qrels(&args.qrels)?;
    report(&run, &qrels, args.json)
}

fn report(run: &Run, qrels: &Qrels, json: bool) -> anyhow::Result<()> {
    let evaluation = evaluate(run, qrels);
    if json {
        println!("{}", serde_json::to_string(&evaluation)?);
    } else {
        print!("{}", format_evaluation(&evaluation, true));
    }
    Ok(())
}

fn fusion_of(args: &EvalArgs) -> anyhow::Result<Fusion> {
    Fusion::from_parts(&args.fusion, Some(args.fusion_weight), Some(args.rrf_k))
        .map_err(|(field, message)| anyhow::anyhow!("--{}: {message}", field.replace('_', "-")))
}

pub fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let fusion = fusion_of(&args)?;
    let index = Arc::new(AnswerIndex::open(&args.index)?);
    let reranker = if args.no_rerank { None } else { Some(Arc::new(args.model.load()?)) };
    let engine = Engine::new(index, reranker, Limits { max_top_k: args.depth.max(1000), ..Limits::unhurried() });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let Some(path) = &args.known_items {
        return known_items(&args, path, &engine, &runtime, fusion);
    }
    let (Some(topics_path), Some(run_out)) = (&args.topics, &args.run_out) else {
        anyhow::bail!("--topics needs --run-out");
    };
    let topics = read_topics(topics_path)?;
    let qrels = args.qrels.as_deref().map(read_qrels).transpose()?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(run_out).with_context(|| format!("creating {}", run_out.display()))?,
    );
    let bar = ProgressBar::new(topics.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} topics ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut inputs = match &args.inputs_out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let mut run_text = String::new();
    for topic in &topics {
        // Converted here, once; the engine takes it as text and never parses it again.
        let query = mathrank_dump::question_text(&topic.title, &topic.question);
        if let Some(inputs) = &mut inputs {
            writeln!(inputs, "{}", serde_json::json!({ "topic": topic.number, "query": query }))?;
        }
        let params = SearchParams {
            query,
            query_is_text: true,
            top_k: args.depth,
            rerank_depth: args.rerank_depth,
            rerank: Some(!args.no_rerank),
            long_answers: Some(args.long_answers),
            fusion: Some(fusion),
            field_weights: args.field_weights,
            ..SearchParams::default()
        };
        let outcome = runtime.block_on(engine.search(params)).with_context(|| format!("topic {}", topic.number))?;
        for (rank, (hit, score)) in run_scores(&outcome.hits).into_iter().enumerate() {
            let line = format!("{} Q0 {} {} {score} {}\n", topic.number, hit.answer_id, rank + 1, args.run_tag);
            out.write_all(line.as_bytes())?;
            run_text.push_str(&line);
        }
        bar.inc(1);
    }
    out.flush()?;
    if let Some(mut inputs) = inputs {
        inputs.flush()?;
    }
    bar.finish_and_clear();
    eprintln!("wrote {} topics to {}", topics.len(), run_out.display());
    if let Some(qrels) = qrels {
        // The metrics come from the very lines written, parsed as trec_eval parses them.
        let run = mathrank_eval::parse_run(&run_text, run_out)?;
        report(&run, &qrels, args.json)?;
    }
    Ok(())
}

/// Known-item evaluation: each query's thread, its rank, and the means.
fn known_items(
    args: &EvalArgs,
    path: &std::path::Path,
    engine: &Engine,
    runtime: &tokio::runtime::Runtime,
    fusion: Fusion,
) -> anyhow::Result<()> {
    let mut items = read_known_items(path)?;
    if let Some(split) = &args.split {
        items.retain(|item| &item.split == split);
        anyhow::ensure!(!items.is_empty(), "no query of {} has split {split:?}", path.display());
    }
    let bar = ProgressBar::new(items.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} queries ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut out = match &args.run_out {
        Some(run_out) => Some(std::io::BufWriter::new(
            std::fs::File::create(run_out).with_context(|| format!("creating {}", run_out.display()))?,
        )),
        None => None,
    };
    let mut results = Vec::with_capacity(items.len());
    for item in &items {
        let params = SearchParams {
            query: item.query.clone(),
            top_k: args.depth.clamp(100, 1000),
            rerank_depth: args.rerank_depth,
            rerank: Some(!args.no_rerank),
            long_answers: Some(args.long_answers),
            fusion: Some(fusion),
            field_weights: args.field_weights,
            ..SearchParams::default()
        };
        let outcome = runtime.block_on(engine.search(params)).with_context(|| format!("query {}", item.id))?;
        let questions: Vec<u64> = outcome.hits.iter().map(|ranked| ranked.hit.question_id).collect();
        if let Some(out) = &mut out {
            for (rank, (hit, score)) in run_scores(&outcome.hits).into_iter().enumerate() {
                writeln!(out, "{} Q0 {} {} {score} {}", item.id, hit.answer_id, rank + 1, args.run_tag)?;
            }
        }
        results.push(KnownItemResult {
            id: item.id.clone(),
            kind: item.kind.clone(),
            split: item.split.clone(),
            rank: rank_of(&questions, item.question_id),
        });
        bar.inc(1);
    }
    if let Some(out) = &mut out {
        out.flush()?;
    }
    bar.finish_and_clear();
    let mut groups: Vec<(String, mathrank_eval::KnownItemSummary)> = vec![("all".into(), summarize(&results))];
    let mut labels: Vec<String> =
        results.iter().flat_map(|r| [format!("split:{}", r.split), format!("kind:{}", r.kind)]).collect();
    labels.sort();
    labels.dedup();
    for label in labels {
        let (key, value) = label.split_once(':').unwrap_or(("", ""));
        if value.is_empty() {
            continue;
        }
        let chosen = results.iter().filter(|r| if key == "split" { r.split == value } else { r.kind == value });
        groups.push((label.clone(), summarize(chosen)));
    }
    if args.json {
        let summary: serde_json::Map<String, serde_json::Value> =
            groups.iter().map(|(label, s)| (label.clone(), serde_json::json!(s))).collect();
        println!("{}", serde_json::json!({ "summary": summary, "queries": results }));
    } else {
        println!("{:<18} {:>7} {:>8} {:>9} {:>10}", "queries", "count", "MRR@10", "Recall@10", "Recall@100");
        for (label, s) in &groups {
            println!(
                "{label:<18} {:>7} {:>8.4} {:>9.4} {:>10.4}",
                s.queries, s.mrr_at_10, s.recall_at_10, s.recall_at_100
            );
        }
        let missed: Vec<&str> =
            results.iter().filter(|r| r.rank.is_none_or(|rank| rank > 10)).map(|r| r.id.as_str()).collect();
        println!("not in the top 10: {}", if missed.is_empty() { "none".to_owned() } else { missed.join(" ") });
    }
    Ok(())
}

/// Run scores that fall with rank and keep every distinct value distinct. Reranked hits score
/// the value they are ordered by (the raw logit of the `relevant` class, the authors' ranking,
/// unless a fusion was asked for), printed in full `f32` precision (shortest round-trip form).
/// The hits below them keep their BM25 order at whole steps under the lowest. Without
/// reranking, the BM25 score itself.
fn run_scores(hits: &[mathrank_engine::RankedHit]) -> Vec<(&mathrank_index::Hit, f64)> {
    let floor = hits.iter().filter_map(|h| h.fused.map(f64::from)).fold(f64::INFINITY, f64::min);
    let mut below = 0.0;
    hits.iter()
        .map(|ranked| match ranked.fused {
            Some(value) => (&ranked.hit, f64::from(value)),
            None if floor.is_finite() => {
                below += 1.0;
                (&ranked.hit, floor - below)
            }
            None => (&ranked.hit, f64::from(ranked.hit.bm25_score)),
        })
        .collect()
}
