//! Building an index from a dump: parallel, memory-bounded, published atomically.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mathrank_dump::{AnswerJoiner, DumpSource, JoinedAnswer, RowEvent};
use tantivy::IndexWriter;

use crate::schema::{FieldRepeats, Fields};
use crate::{Error, FORMAT_VERSION, IndexMeta, Result, SCHEMA_VERSION, analysis, directory_size, io_error};

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Indexing threads (HTML conversion and tantivy's writers); at least 1.
    pub threads: usize,
    /// Memory budget of the index writer in MiB (at least 15 MiB per thread).
    pub memory_mb: usize,
    /// Set to stop the build early; the target is then left as it was.
    pub cancel: Arc<AtomicBool>,
    /// How many times each part of a thread counts in the searched fields.
    pub field_repeats: FieldRepeats,
    /// Also load every post into a new post store inside the index directory
    /// (`mathrank_store::STORE_FILE`), which a live index follows.
    pub store: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
        Self {
            threads,
            memory_mb: 512,
            cancel: Arc::new(AtomicBool::new(false)),
            field_repeats: FieldRepeats::default(),
            store: true,
        }
    }
}

/// A progress report, sent about every 250 ms.
#[derive(Debug, Clone, Default)]
pub struct BuildProgress {
    pub bytes_read: u64,
    pub total_bytes: Option<u64>,
    pub rows: u64,
    pub questions: u64,
    pub answers: u64,
    pub skipped: u64,
    pub elapsed: Duration,
}

const BATCH: usize = 256;

/// Builds the index of `source` at `target`.
///
/// The build happens in a hidden sibling directory that is renamed into place only when it is
/// complete, so an interrupted build (error, Ctrl-C, SIGKILL) leaves any previous index at
/// `target` intact. Skipped rows go to `target/warnings.jsonl`.
pub fn build_index(
    source: DumpSource,
    target: &Path,
    options: &BuildOptions,
    progress: &mut dyn FnMut(&BuildProgress),
) -> Result<IndexMeta> {
    let started = Instant::now();
    // One build per target at a time: a second one fails at once, naming the first.
    let _lock = lock_target(target)?.map_err(|holder| Error::Locked { path: target.display().to_string(), holder })?;
    // A build that died between publish's two renames left the previous index in a `.old-`
    // sibling; put it back before those siblings are cleaned up below.
    recover_interrupted_publish(target);
    check_target(target)?;
    let (parent, name) = split_target(target);
    std::fs::create_dir_all(&parent).map_err(io_error("creating", &parent))?;
    for stale in sibling_work_dirs(target) {
        tracing::info!(path = %stale.display(), "removing the work directory of an earlier interrupted build");
        let _ = std::fs::remove_dir_all(&stale);
    }
    let work = parent.join(format!(".{name}.building-{}", std::process::id()));
    let result = build_into(source, &work, options, started, progress).and_then(|meta| {
        publish(&work, target)?;
        Ok(meta)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn build_into(
    source: DumpSource,
    work: &Path,
    options: &BuildOptions,
    started: Instant,
    progress: &mut dyn FnMut(&BuildProgress),
) -> Result<IndexMeta> {
    let tantivy_dir = work.join("tantivy");
    std::fs::create_dir_all(&tantivy_dir).map_err(io_error("creating", &tantivy_dir))?;
    let (schema, fields) = Fields::schema();
    let index = tantivy::Index::create_in_dir(&tantivy_dir, schema)?;
    analysis::register(&index);
    let threads = options.threads.max(1);
    let memory = options.memory_mb.max(15 * threads) * 1024 * 1024;
    let mut writer: IndexWriter = index.writer_with_num_threads(threads, memory)?;

    let warnings_path = work.join("warnings.jsonl");
    let warnings_file = std::fs::File::create(&warnings_path).map_err(io_error("creating", &warnings_path))?;
    let mut warnings = std::io::BufWriter::new(warnings_file);

    let source_name = source.path.display().to_string();
    let total_bytes = source.total_bytes;
    let bytes_read = source.bytes_read_counter();
    let mut meta = IndexMeta {
        format_version: FORMAT_VERSION,
        schema_version: SCHEMA_VERSION,
        analyzer_version: analysis::ANALYZER_VERSION,
        mathrank_version: env!("CARGO_PKG_VERSION").into(),
        source: source_name,
        field_repeats: options.field_repeats,
        ..IndexMeta::default()
    };
    // Question bodies go to a file in the work directory, removed before publishing.
    let spill_path = work.join("question-bodies.spill");
    let bodies = mathrank_dump::QuestionBodies::spill_to(&spill_path, mathrank_dump::RECENT_BODY_BYTES)?;
    let mut joiner = AnswerJoiner::with_bodies(bodies);
    let loader = if options.store { Some(StoreLoader::start(&work.join(mathrank_store::STORE_FILE))?) } else { None };
    let mut report = BuildProgress { total_bytes, ..BuildProgress::default() };
    let mut last_report = Instant::now();

    let (sender, receiver) = crossbeam_channel::bounded::<Vec<JoinedAnswer>>(threads * 4);
    let read_outcome: Result<()> = std::thread::scope(|scope| {
        let writer = &writer;
        let workers = spawn_document_workers(scope, writer, &fields, &options.field_repeats, receiver, threads);
        let mut batch = Vec::with_capacity(BATCH);
        let mut outcome = Ok(());
        for event in source.posts() {
            if options.cancel.load(Ordering::Relaxed) {
                outcome = Err(Error::Interrupted);
                break;
            }
            report.rows += 1;
            match event {
                Ok(RowEvent::Post(post)) => {
                    if post.kind == mathrank_dump::PostKind::Question {
                        report.questions += 1;
                    }
                    if let Some(loader) = &loader
                        && !loader.send(&post)
                    {
                        // The loader stopped: its error is reported below.
                        break;
                    }
                    let joined = match joiner.push(post) {
                        Ok(joined) => joined,
                        Err(err) => {
                            outcome = Err(err.into());
                            break;
                        }
                    };
                    for answer in joined {
                        report.answers += 1;
                        batch.push(answer);
                    }
                    if batch.len() >= BATCH
                        && sender.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).is_err()
                    {
                        break;
                    }
                }
                Ok(RowEvent::OtherType { post_type }) => *meta.other_post_types.entry(post_type).or_default() += 1,
                // Only a reader asked to skip known rows returns these; this one was not.
                Ok(RowEvent::Unchanged { .. }) => {}
                Ok(RowEvent::Skipped(skipped)) => {
                    report.skipped += 1;
                    *meta.skipped.entry(skipped.reason.to_owned()).or_default() += 1;
                    tracing::debug!(row = skipped.row, reason = skipped.reason, detail = %skipped.detail, "skipped row");
                    let line = serde_json::to_string(&skipped).map_err(std::io::Error::other);
                    if let Err(err) = line.and_then(|line| writeln!(warnings, "{line}")) {
                        outcome = Err(io_error("writing", &warnings_path)(err));
                        break;
                    }
                }
                Err(err) => {
                    outcome = Err(err.into());
                    break;
                }
            }
            if last_report.elapsed() >= Duration::from_millis(250) {
                last_report = Instant::now();
                report.bytes_read = bytes_read.load(Ordering::Relaxed);
                report.elapsed = started.elapsed();
                progress(&report);
            }
        }
        if outcome.is_ok() && !batch.is_empty() {
            let _ = sender.send(batch);
        }
        drop(sender);
        let joined = join_document_workers(workers);
        outcome.and(joined)
    });
    let stored = loader.map(StoreLoader::finish).transpose();
    read_outcome?;
    let stored = stored?;
    let spilled = joiner.spilled_bytes();
    let summary = joiner.finish();
    std::fs::remove_file(&spill_path).map_err(io_error("removing", &spill_path))?;
    tracing::debug!(bytes = spilled, "question bodies spilled during the join");
    warnings.flush().map_err(io_error("writing", &warnings_path))?;
    let mut prepared = writer.prepare_commit()?;
    if let Some((store_id, seq)) = stored {
        // The index holds the store up to its last change: a live index replays from here.
        prepared.set_payload(&crate::live::CommitPayload { store_id, seq }.encode());
    }
    prepared.commit()?;
    writer.wait_merging_threads()?;

    report.bytes_read = bytes_read.load(Ordering::Relaxed);
    report.elapsed = started.elapsed();
    progress(&report);

    meta.questions = summary.questions;
    meta.answers = summary.answers;
    meta.orphan_answers = summary.orphan_answers;
    meta.dropped_waiting_answers = summary.dropped_waiting;
    if summary.dropped_waiting > 0 {
        tracing::warn!(
            dropped = summary.dropped_waiting,
            examples = ?summary.dropped_examples,
            limit_bytes = mathrank_dump::MAX_WAITING_BYTES,
            "answers listed before their questions were dropped: too many bytes were waiting"
        );
    }
    meta.duplicate_ids = summary.duplicate_ids;
    if summary.orphan_answers > 0 {
        tracing::warn!(
            orphans = summary.orphan_answers,
            examples = ?summary.orphan_examples,
            "answers whose question is not in the dump were not indexed"
        );
    }
    meta.source_bytes = report.bytes_read;
    meta.built_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    meta.build_seconds = started.elapsed().as_secs_f64();
    meta.index_bytes = directory_size(work);
    let meta_path = work.join("meta.json");
    // A failed encoding must fail the build, never publish an empty meta.json.
    let meta_json = serde_json::to_string_pretty(&meta)
        .map_err(|err| io_error("encoding", &meta_path)(std::io::Error::other(err)))?;
    std::fs::write(&meta_path, meta_json).map_err(io_error("writing", &meta_path))?;
    Ok(meta)
}

/// Loads a build's posts into its new post store on a thread of its own, so that the reader
/// goes on parsing meanwhile.
struct StoreLoader {
    sender: crossbeam_channel::Sender<mathrank_dump::Post>,
    thread: std::thread::JoinHandle<Result<(String, u64)>>,
}

impl StoreLoader {
    fn start(path: &Path) -> Result<Self> {
        let mut loader = mathrank_store::SqliteStore::bulk_load(path)?;
        let (sender, receiver) = crossbeam_channel::bounded::<mathrank_dump::Post>(4096);
        let written_at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let thread = std::thread::Builder::new()
            .name("store-loader".into())
            .spawn(move || -> Result<(String, u64)> {
                for post in receiver {
                    loader.load(&post, written_at)?;
                }
                let store_id = loader.store_id().to_owned();
                Ok((store_id, loader.finish()?))
            })
            .map_err(io_error("starting the store loader for", path))?;
        Ok(Self { sender, thread })
    }

    /// Hands a post to the loader; false when it has stopped (after an error).
    fn send(&self, post: &mathrank_dump::Post) -> bool {
        self.sender.send(post.clone()).is_ok()
    }

    /// The store's id and last sequence number, once every post is loaded and durable.
    fn finish(self) -> Result<(String, u64)> {
        drop(self.sender);
        self.thread.join().unwrap_or(Err(Error::Interrupted))
    }
}

/// Threads that add the documents of each batch of answers to `writer` until the channel
/// closes: the dump build and the live index's rebuild from the store both feed them.
pub(crate) fn spawn_document_workers<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    writer: &'scope IndexWriter,
    fields: &'scope Fields,
    repeats: &'scope FieldRepeats,
    receiver: crossbeam_channel::Receiver<Vec<JoinedAnswer>>,
    threads: usize,
) -> Vec<std::thread::ScopedJoinHandle<'scope, Result<()>>> {
    (0..threads)
        .map(|_| {
            let receiver = receiver.clone();
            scope.spawn(move || -> Result<()> {
                for batch in receiver {
                    for answer in &batch {
                        writer.add_document(fields.document(answer, repeats))?;
                    }
                }
                Ok(())
            })
        })
        .collect()
}

/// Waits for every document worker; the first failure (a panic counts as interrupted).
pub(crate) fn join_document_workers(workers: Vec<std::thread::ScopedJoinHandle<'_, Result<()>>>) -> Result<()> {
    let mut outcome = Ok(());
    for worker in workers {
        let worker_outcome = worker.join().unwrap_or(Err(Error::Interrupted));
        if outcome.is_ok() {
            outcome = worker_outcome;
        }
    }
    outcome
}

pub(crate) fn split_target(target: &Path) -> (PathBuf, String) {
    let parent =
        target.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = target.file_name().map_or_else(|| "index".to_owned(), |n| n.to_string_lossy().into_owned());
    (parent, name)
}

/// Hidden work directories that builds of `target` leave behind when they are killed.
pub fn sibling_work_dirs(target: &Path) -> Vec<PathBuf> {
    let (parent, name) = split_target(target);
    let prefixes = [format!(".{name}.building-"), format!(".{name}.old-")];
    let Ok(entries) = std::fs::read_dir(&parent) else { return Vec::new() };
    entries
        .flatten()
        .filter(|entry| {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            prefixes.iter().any(|prefix| file_name.starts_with(prefix.as_str()))
        })
        .map(|entry| entry.path())
        .collect()
}

/// A target may be replaced only if it is missing, empty, or a mathrank index: a typo in
/// `--index` must never delete a user's directory.
fn check_target(target: &Path) -> Result<()> {
    if !target.exists() {
        return Ok(());
    }
    let is_index = target.join("meta.json").is_file()
        && std::fs::read_dir(target).is_ok_and(|entries| {
            entries.flatten().any(|entry| entry.file_name().to_string_lossy().starts_with("tantivy"))
        });
    let is_empty = std::fs::read_dir(target).map(|mut entries| entries.next().is_none()).unwrap_or(false);
    if is_index || is_empty { Ok(()) } else { Err(Error::TargetNotIndex { path: target.display().to_string() }) }
}

fn publish(work: &Path, target: &Path) -> Result<()> {
    let (parent, name) = split_target(target);
    if target.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(target, &old).map_err(io_error("moving aside", target))?;
        if let Err(err) = std::fs::rename(work, target) {
            let _ = std::fs::rename(&old, target);
            return Err(io_error("publishing", target)(err));
        }
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(work, target).map_err(io_error("publishing", target))?;
    }
    Ok(())
}

/// If a process died between the two renames of [`publish`], the previous index sits in a
/// `.NAME.old-PID` sibling and `target` is missing: put it back.
/// Holds the build lock of a target (`.NAME.lock` beside it) while alive.
#[derive(Debug)]
pub(crate) struct TargetLock {
    _file: std::fs::File,
}

/// Takes the build lock of `target` without waiting: `Ok(Err(holder))` when another process
/// holds it (`holder` is what it wrote: its pid).
pub(crate) fn lock_target(target: &Path) -> Result<std::result::Result<TargetLock, String>> {
    let (parent, name) = split_target(target);
    std::fs::create_dir_all(&parent).map_err(io_error("creating", &parent))?;
    let path = parent.join(format!(".{name}.lock"));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error("opening", &path))?;
    match file.try_lock() {
        Ok(()) => {
            use std::io::{Seek, Write as _};
            let pid = std::process::id().to_string();
            let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(pid.as_bytes()));
            Ok(Ok(TargetLock { _file: file }))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            Ok(Err(format!("process {}", holder.trim())))
        }
        Err(std::fs::TryLockError::Error(err)) => Err(io_error("locking", &path)(err)),
    }
}

pub(crate) fn recover_interrupted_publish(target: &Path) {
    if target.exists() {
        return;
    }
    let (parent, name) = split_target(target);
    let prefix = format!(".{name}.old-");
    let Ok(entries) = std::fs::read_dir(&parent) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) && entry.path().join("meta.json").is_file() {
            tracing::warn!(from = %entry.path().display(), to = %target.display(), "restoring the index an interrupted build moved aside");
            if std::fs::rename(entry.path(), target).is_ok() {
                return;
            }
        }
    }
}
