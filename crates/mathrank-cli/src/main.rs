//! `mathrank`: index Stack Exchange dumps, search them, rerank with an ALBERT cross-encoder and
//! serve it all over gRPC and HTTP/JSON on one port. `mathrank --help` lists the commands;
//! every flag also reads a `MATHRANK_*` environment variable. Benchmarks, load generators and
//! synthetic dumps are in the separate `mathrank-bench` binary.

mod eval_cmd;
mod hint;
mod index_cmd;
mod model_args;
mod model_cmd;
mod output;
mod score_cmd;
mod search_cmd;
mod serve_cmd;
mod texts_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "mathrank", version, about = "Search engine for mathematical answers (BM25 + ALBERT reranking)")]
struct Cli {
    /// Log filter (tracing syntax, e.g. `info`, `mathrank_index=debug`).
    #[arg(long, global = true, env = "MATHRANK_LOG", default_value = "info")]
    log: String,
    /// Log format: `plain` or `json`.
    #[arg(long, global = true, env = "MATHRANK_LOG_FORMAT", default_value = "plain", value_parser = ["plain", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build a BM25 index from a Stack Exchange dump (Posts.xml, its directory, or the site's .7z).
    Index(index_cmd::IndexArgs),
    /// Show what an index holds: counts, source, versions, size.
    Info(index_cmd::InfoArgs),
    /// Search: in-process over --index, or through a running server with --addr.
    Search(search_cmd::SearchArgs),
    /// Score (query, answer) pairs from a JSONL file with the cross-encoder.
    Score(score_cmd::ScoreArgs),
    /// Run the service: gRPC (mathrank.v1.AnswerSearch, health, reflection) and HTTP/JSON
    /// (Cohere, TEI and Weaviate rerank dialects, /v1/search, /health, /metrics) on one port.
    Serve(serve_cmd::ServeArgs),
    /// The reranking model: cache path, fetch from the hub, convert a checkpoint to ONNX.
    Model(model_cmd::ModelCommand),
    /// Run ARQMath-style topics, write a TREC run and (with qrels) print nDCG', MAP', P'@10.
    Eval(eval_cmd::EvalArgs),
    /// Score any TREC run file against qrels with ARQMath's conventions.
    EvalRun(eval_cmd::EvalRunArgs),
    /// Print the text the model reads for every post of a dump (JSON lines), for audits.
    Texts(texts_cmd::TextsArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log, &cli.log_format);
    let outcome = match cli.command {
        Command::Index(args) => index_cmd::run_index(args),
        Command::Info(args) => index_cmd::run_info(args),
        Command::Search(args) => search_cmd::run(args),
        Command::Score(args) => score_cmd::run(args),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Model(command) => model_cmd::run(command),
        Command::Eval(args) => eval_cmd::run_eval(args),
        Command::EvalRun(args) => eval_cmd::run_eval_run(args),
        Command::Texts(args) => texts_cmd::run(args),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if let Some(hint) = hint::hint(&err) {
                eprintln!("hint: {hint}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: &str, format: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
