//! `mathrank index` and `mathrank info`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mathrank_dump::{DumpSource, SAMPLE_NAME, SAMPLE_POSTS_XML};
use mathrank_index::{
    AnswerIndex, BuildOptions, BuildProgress, IndexMeta, Indexer, IndexerOptions, build_index, directory_size,
};
use mathrank_store::{DeltaOptions, DeltaProgress, PostStore, STORE_FILE, SqliteStore};

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// The dump: a Posts.xml file, a directory holding Posts.xml, or the site's .7z archive.
    #[arg(
        long,
        env = "MATHRANK_DUMP",
        required_unless_present_any = ["sample", "rebuild"],
        conflicts_with_all = ["sample", "rebuild"]
    )]
    pub dump: Option<PathBuf>,
    /// Apply --dump to the index's post store as a delta instead of building anew: new and
    /// changed posts (by Id and content hash) are upserted, posts the dump no longer has are
    /// deleted, and posts the write API changed after the dump's date are left alone. The
    /// index then follows: a server running on it indexes the changes itself; otherwise this
    /// command does.
    #[arg(long, env = "MATHRANK_UPDATE", requires = "dump")]
    pub update: bool,
    /// The dump's date for --update: `2024-06-30T00:00:00` or Unix seconds [default: the
    /// newest CreationDate in the dump].
    #[arg(long, env = "MATHRANK_DUMP_DATE", requires = "update", value_parser = parse_dump_date)]
    pub dump_date: Option<i64>,
    /// Rebuild the index from its post store into a new directory beside the current one,
    /// replay what was written meanwhile, and switch. A server running on the index rebuilds
    /// through `POST /v1/index:rebuild` instead (it keeps serving meanwhile).
    #[arg(long, env = "MATHRANK_REBUILD", conflicts_with = "sample")]
    pub rebuild: bool,
    /// The post store for --update and --rebuild: a SQLite file, or a shared PostgreSQL
    /// database (`postgres://USER:PASSWORD@HOST:PORT/DB`, created tables and all when empty:
    /// `--update` with a full dump seeds it) [default: INDEX/posts.sqlite, which a build
    /// writes].
    #[arg(long, env = "MATHRANK_STORE")]
    pub store: Option<String>,
    /// Build without a post store: a smaller, read-only index (no write API, no --update).
    #[arg(long, env = "MATHRANK_NO_STORE", conflicts_with_all = ["update", "rebuild"])]
    pub no_store: bool,
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

/// `2024-06-30T00:00:00` (the dump's format) or Unix seconds.
fn parse_dump_date(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .ok()
        .or_else(|| mathrank_dump::parse_creation_date(text))
        .ok_or_else(|| format!("{text:?} is neither a date such as 2024-06-30T00:00:00 nor Unix seconds"))
}

/// The post store of `index` (or `--store`, a file).
pub fn store_path(index: &std::path::Path, store: Option<&std::path::Path>) -> PathBuf {
    store.map_or_else(|| index.join(STORE_FILE), std::path::Path::to_path_buf)
}

/// A post store opened by location, and how messages name it.
pub struct OpenedStore {
    pub store: Arc<dyn PostStore>,
    /// The file's path, or the URL without its password.
    pub name: String,
}

/// The post store at `location` (`--store`): a PostgreSQL database when it is a
/// `postgres://` URL, else a SQLite file, which must exist.
pub fn open_store_at(location: &str) -> anyhow::Result<OpenedStore> {
    if mathrank_store::is_postgres_url(location) {
        let store = mathrank_store::PgStore::connect(location)?;
        let name = store.location().to_owned();
        return Ok(OpenedStore { store: Arc::new(store), name });
    }
    let path = std::path::Path::new(location);
    anyhow::ensure!(
        path.is_file(),
        "no post store at {}: build an index first (`mathrank index --dump FILE`), or point --store at one",
        path.display()
    );
    let store = SqliteStore::open(path).with_context(|| format!("opening the post store {}", path.display()))?;
    Ok(OpenedStore { store: Arc::new(store), name: path.display().to_string() })
}

fn open_store(args: &IndexArgs) -> anyhow::Result<OpenedStore> {
    if let Some(location) = &args.store {
        return open_store_at(location);
    }
    let path = args.index.join(STORE_FILE);
    anyhow::ensure!(
        path.is_file(),
        "no post store at {}: build the index first (`mathrank index --dump FILE --index {}`), or point --store at one",
        path.display(),
        args.index.display()
    );
    open_store_at(&path.to_string_lossy())
}

pub fn run_index(args: IndexArgs) -> anyhow::Result<()> {
    let mut options = BuildOptions { memory_mb: args.memory_mb, store: !args.no_store, ..BuildOptions::default() };
    if let Some(repeats) = args.field_repeats {
        options.field_repeats = repeats;
    }
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    if args.update || args.rebuild {
        return run_live(&args, options);
    }
    anyhow::ensure!(
        args.store.is_none(),
        "a build writes its post store inside the index directory ({}); --store is for --update and --rebuild",
        args.index.join(STORE_FILE).display()
    );
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

/// `--update` and `--rebuild`: work on the store, and let the index follow it.
fn run_live(args: &IndexArgs, options: BuildOptions) -> anyhow::Result<()> {
    let OpenedStore { store, name, .. } = open_store(args)?;
    // A missing index is built from the store as the indexer starts: no second rebuild.
    let existed = args.index.join("meta.json").is_file();
    // Nobody searches this index while the command runs, so a commit need not wait for the
    // server's commit interval: it comes as soon as a batch is applied, and batches are large.
    let indexer_options = IndexerOptions {
        rebuild: options,
        commit_interval: Duration::ZERO,
        read_batch: 10_000,
        ..IndexerOptions::default()
    };
    let start = || Indexer::start(&args.index, Arc::clone(&store), indexer_options.clone());
    // An existing index's indexer starts first: it indexes a delta's changes on its own thread
    // while the delta still reads the dump. A missing one is built after the delta, from the
    // whole store at once.
    let started_early = if existed { Some(start()?) } else { None };
    if let (true, Some(dump)) = (args.update, &args.dump) {
        apply_delta(dump, args.dump_date, store.as_ref(), &name)?;
    }
    let (live, indexer) = match started_early {
        Some(started) => started,
        None => start()?,
    };
    if indexer.status().role == "follower" {
        anyhow::ensure!(
            !args.rebuild,
            "a server indexes {}: ask it to rebuild with `POST /v1/index:rebuild` (write token), or stop it first",
            args.index.display()
        );
        println!("a server indexes {}: it applies the changes itself", args.index.display());
        return Ok(());
    }
    let started = Instant::now();
    if args.rebuild && existed {
        indexer.request_rebuild();
        loop {
            let status = indexer.status();
            if status.rebuilds > 0 {
                break;
            }
            if let Some(error) = status.rebuild_error {
                anyhow::bail!("rebuilding {} failed: {error}", args.index.display());
            }
            store.wait_for_change(u64::MAX, Duration::from_millis(200))?;
        }
    }
    let seq = store.last_seq()?;
    while !live.wait_searchable(seq, Duration::from_secs(1)) {
        if let Some(error) = indexer.status().last_error {
            anyhow::bail!("indexing {} failed: {error}", args.index.display());
        }
    }
    indexer.stop();
    println!(
        "index {} follows {name} up to sequence number {seq} ({} answers; {:.1} s after the store)",
        args.index.display(),
        live.current().num_answers(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--dump NEWER --update`: the dump applied to the store as a delta, with a summary.
fn apply_delta(
    dump: &std::path::Path,
    dump_date: Option<i64>,
    store: &dyn PostStore,
    name: &str,
) -> anyhow::Result<()> {
    let source = DumpSource::open(dump).with_context(|| format!("opening dump {}", dump.display()))?;
    let bar = progress_bar(source.total_bytes);
    let mut on_progress = |progress: &DeltaProgress| {
        if let Some(bar) = &bar {
            bar.set_position(progress.bytes_read);
            bar.set_message(format!("{} posts, {} changed", progress.posts, progress.changed));
        }
    };
    let delta = DeltaOptions { dump_date };
    let summary = mathrank_store::apply_dump_delta(source, store, &delta, &mut on_progress)
        .with_context(|| format!("applying {} to {name}", dump.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    println!("applied {} to {name} as a delta", dump.display());
    println!("  posts read       {}", summary.posts);
    println!("  unchanged        {}", summary.unchanged);
    println!("  created          {}", summary.created);
    println!("  updated          {}", summary.updated);
    println!("  deleted          {} (no longer in the dump)", summary.deleted);
    println!(
        "  left alone       {} (written through the API after the dump's date, {})",
        summary.kept, summary.dump_date
    );
    println!("  refused          {}", summary.rejected);
    println!("  seconds          {:.1}", summary.seconds);
    Ok(())
}

fn progress_bar(total: Option<u64>) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total.unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

fn build(source: DumpSource, index: &std::path::Path, options: &BuildOptions) -> anyhow::Result<IndexMeta> {
    let bar = progress_bar(source.total_bytes);
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
        value["payload"] = serde_json::to_value(index.payload())?;
        let store = args.index.join(STORE_FILE);
        if store.is_file() {
            value["store"] = serde_json::to_value(SqliteStore::open(&store)?.counts()?)?;
        }
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
    if let Some(payload) = index.payload() {
        println!("follows      post store {} up to sequence number {}", payload.store_id, payload.seq);
    }
    let store = args.index.join(STORE_FILE);
    if store.is_file() {
        let counts = SqliteStore::open(&store)?.counts()?;
        println!(
            "store        {}: {} questions, {} answers, {} deleted, last sequence number {}",
            store.display(),
            counts.questions,
            counts.answers,
            counts.tombstones,
            counts.last_seq
        );
    }
    Ok(())
}
