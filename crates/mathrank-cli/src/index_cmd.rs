//! `mathrank index` and `mathrank info`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mathrank_dump::{DumpSource, SAMPLE_NAME, SAMPLE_POSTS_XML};
use mathrank_index::{AnswerIndex, BuildOptions, BuildProgress, IndexMeta, build_index, directory_size};

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// The dump: a Posts.xml file, a directory holding Posts.xml, or the site's .7z archive.
    #[arg(long, env = "MATHRANK_DUMP", required_unless_present = "sample", conflicts_with = "sample")]
    pub dump: Option<PathBuf>,
    /// Index the sample dump compiled into this binary instead of a file.
    #[arg(long, env = "MATHRANK_SAMPLE")]
    pub sample: bool,
    /// Where to write the index (replaced atomically when the build succeeds).
    #[arg(long, env = "MATHRANK_INDEX", default_value = "index/default")]
    pub index: PathBuf,
    /// Indexing threads (default: all cores, at most 8).
    #[arg(long, env = "MATHRANK_THREADS")]
    pub threads: Option<usize>,
    /// Memory budget of the index writer in MiB.
    #[arg(long, env = "MATHRANK_MEMORY_MB", default_value_t = 512)]
    pub memory_mb: usize,
    /// How many times each part of a thread counts in the searched fields, e.g.
    /// `question=2,title=2,body=1` (parts left out keep their defaults; 0 leaves a part out):
    /// body, title, tags, question, body_math, title_math, question_math.
    #[arg(long, env = "MATHRANK_FIELD_REPEATS")]
    pub field_repeats: Option<mathrank_index::FieldRepeats>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The index directory.
    #[arg(long, env = "MATHRANK_INDEX", default_value = "index/default")]
    pub index: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, env = "MATHRANK_JSON")]
    pub json: bool,
}

/// Builds the index of the embedded sample at `index` (used by `index --sample` and `serve`).
pub fn build_sample(index: &std::path::Path) -> anyhow::Result<IndexMeta> {
    build(sample_source(), index, &BuildOptions::default())
}

fn sample_source() -> DumpSource {
    DumpSource::from_reader(SAMPLE_NAME, Some(SAMPLE_POSTS_XML.len() as u64), SAMPLE_POSTS_XML.as_bytes())
}

pub fn run_index(args: IndexArgs) -> anyhow::Result<()> {
    let mut options = BuildOptions { memory_mb: args.memory_mb, ..BuildOptions::default() };
    if let Some(repeats) = args.field_repeats {
        options.field_repeats = repeats;
    }
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    let meta = match &args.dump {
        Some(dump) => {
            let source = DumpSource::open(dump).with_context(|| format!("opening dump {}", dump.display()))?;
            build(source, &args.index, &options)?
        }
        None => build(sample_source(), &args.index, &options)?,
    };
    print_summary(&meta, &args.index);
    Ok(())
}

fn build(source: DumpSource, index: &std::path::Path, options: &BuildOptions) -> anyhow::Result<IndexMeta> {
    let interactive = std::io::stderr().is_terminal();
    let bar = if interactive {
        let bar = ProgressBar::new(source.total_bytes.unwrap_or(0));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let mut last_log = Instant::now();
    let mut on_progress = |progress: &BuildProgress| {
        let rate = progress.rows as f64 / progress.elapsed.as_secs_f64().max(1e-3);
        let message = format!(
            "{} questions, {} answers, {} skipped, {rate:.0} posts/s",
            progress.questions, progress.answers, progress.skipped
        );
        match &bar {
            Some(bar) => {
                bar.set_position(progress.bytes_read);
                bar.set_message(message);
            }
            None if last_log.elapsed().as_secs() >= 5 => {
                last_log = Instant::now();
                let percent =
                    progress.total_bytes.map(|total| 100.0 * progress.bytes_read as f64 / total.max(1) as f64);
                tracing::info!(bytes = progress.bytes_read, percent = percent.map(|p| format!("{p:.1}")), "{message}");
            }
            None => {}
        }
    };
    let meta = build_index(source, index, options, &mut on_progress)
        .with_context(|| format!("building index {}", index.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(meta)
}

fn print_summary(meta: &IndexMeta, index: &std::path::Path) {
    let rate = meta.answers as f64 / meta.build_seconds.max(1e-3);
    println!("indexed {} into {}", meta.source, index.display());
    println!("  questions        {}", meta.questions);
    println!("  answers indexed  {}", meta.answers);
    println!("  orphan answers   {} (question not in the dump)", meta.orphan_answers);
    if meta.dropped_waiting_answers > 0 {
        println!(
            "  dropped answers  {} (listed before their questions, past {} MiB waiting)",
            meta.dropped_waiting_answers,
            mathrank_dump::MAX_WAITING_BYTES >> 20
        );
    }
    println!("  skipped rows     {}", meta.skipped_total());
    for (reason, count) in &meta.skipped {
        println!("    {reason:<24} {count}");
    }
    if meta.skipped_total() > 0 {
        println!("  (each skipped row is listed in {})", index.join("warnings.jsonl").display());
    }
    let others: u64 = meta.other_post_types.values().sum();
    println!("  other post types {others} (wikis, excerpts: not indexed)");
    println!("  seconds          {:.1}", meta.build_seconds);
    println!("  answers/s        {rate:.0}");
    println!("  index size       {:.1} MiB", meta.index_bytes as f64 / (1024.0 * 1024.0));
}

pub fn run_info(args: InfoArgs) -> anyhow::Result<()> {
    let index = AnswerIndex::open(&args.index)?;
    let meta = index.meta();
    let size = directory_size(&args.index);
    let segments = index.tantivy().searchable_segment_metas().map(|s| s.len()).unwrap_or(0);
    if args.json {
        let mut value = serde_json::to_value(meta)?;
        value["path"] = serde_json::json!(args.index.display().to_string());
        value["size_bytes"] = serde_json::json!(size);
        value["segments"] = serde_json::json!(segments);
        value["documents"] = serde_json::json!(index.num_answers());
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("index        {}", args.index.display());
    println!("source       {} ({} bytes)", meta.source, meta.source_bytes);
    println!("questions    {}", meta.questions);
    println!("answers      {}", meta.answers);
    println!("skipped      {} rows, {} orphan answers", meta.skipped_total(), meta.orphan_answers);
    println!(
        "built        {} (unix seconds) in {:.1} s by mathrank {}",
        meta.built_at, meta.build_seconds, meta.mathrank_version
    );
    println!(
        "versions     format {} (schema {}, analyzers {})",
        meta.format_version, meta.schema_version, meta.analyzer_version
    );
    println!("repeats      {}", meta.field_repeats);
    println!("size         {:.1} MiB in {segments} segments", size as f64 / (1024.0 * 1024.0));
    Ok(())
}
