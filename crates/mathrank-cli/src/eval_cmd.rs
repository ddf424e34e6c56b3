//! `mathrank eval` (topics -> TREC run -> metrics) and `mathrank eval-run`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mathrank_engine::{Engine, Limits, SearchParams};
use mathrank_eval::{Qrels, Run, evaluate, format_evaluation, read_qrels, read_run, read_topics};
use mathrank_index::AnswerIndex;

use crate::model_args::ModelArgs;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Index directory.
    #[arg(long, env = "MATHRANK_INDEX", default_value = "index/default")]
    pub index: PathBuf,
    /// BM25 only.
    #[arg(long, env = "MATHRANK_NO_RERANK")]
    pub no_rerank: bool,
    /// ARQMath Task 1 topics XML.
    #[arg(long, env = "MATHRANK_TOPICS")]
    pub topics: PathBuf,
    /// TREC qrels (`topic 0 answer_id grade`); with it, metrics are printed.
    #[arg(long, env = "MATHRANK_QRELS")]
    pub qrels: Option<PathBuf>,
    /// Where to write the TREC run.
    #[arg(long, env = "MATHRANK_RUN_OUT")]
    pub run_out: PathBuf,
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

pub fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let topics = read_topics(&args.topics)?;
    let qrels = args.qrels.as_deref().map(read_qrels).transpose()?;
    let index = Arc::new(AnswerIndex::open(&args.index)?);
    let reranker = if args.no_rerank { None } else { Some(Arc::new(args.model.load()?)) };
    let engine = Engine::new(index, reranker, Limits { max_top_k: args.depth.max(1000), ..Limits::unhurried() });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.run_out).with_context(|| format!("creating {}", args.run_out.display()))?,
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
    eprintln!("wrote {} topics to {}", topics.len(), args.run_out.display());
    if let Some(qrels) = qrels {
        // The metrics come from the very lines written, parsed as trec_eval parses them.
        let run = mathrank_eval::parse_run(&run_text, &args.run_out)?;
        report(&run, &qrels, args.json)?;
    }
    Ok(())
}

/// Run scores that fall with rank and keep every distinct value distinct. Reranked hits score
/// the raw logit of the `relevant` class, the authors' ranking, printed in full `f32`
/// precision (shortest round-trip form). The hits below them keep their BM25 order at whole
/// steps under the lowest logit. Without reranking, the BM25 score itself.
fn run_scores(hits: &[mathrank_engine::RankedHit]) -> Vec<(&mathrank_index::Hit, f64)> {
    let floor = hits.iter().filter_map(|h| h.score.map(|s| f64::from(s.logits[1]))).fold(f64::INFINITY, f64::min);
    let mut below = 0.0;
    hits.iter()
        .map(|ranked| match ranked.score {
            Some(score) => (&ranked.hit, f64::from(score.logits[1])),
            None if floor.is_finite() => {
                below += 1.0;
                (&ranked.hit, floor - below)
            }
            None => (&ranked.hit, f64::from(ranked.hit.bm25_score)),
        })
        .collect()
}
