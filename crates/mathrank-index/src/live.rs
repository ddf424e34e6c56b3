//! The live index: one indexer owns the tantivy `IndexWriter` and applies the post store's
//! changes to it in batches, and searches see each commit as soon as it is made.
//!
//! - The indexer reads [`PostStore::changes`] after the last sequence number it applied,
//!   and commits at most every `commit_interval`, or once `commit_ops` changes are waiting,
//!   and only when something changed. Each commit's payload records the store and the last
//!   sequence number applied ([`CommitPayload`]); on start the indexer replays from there.
//! - Readers reload right after each commit; [`LiveIndex::searchable_seq`] then moves on.
//! - Effects follow the data: a question's change rewrites every answer document that embeds
//!   it, and its deletion removes them all, in the same commit as the change; an answer whose
//!   question has not arrived is indexed when the question comes.
//! - tantivy's merge policy keeps merging in the background, and its garbage collection
//!   removes the files of merged segments after each commit and merge.
//! - A rebuild builds a new tantivy directory from a snapshot of the store while the old one
//!   serves, replays what came after the snapshot, and switches `meta.json` to it in one
//!   atomic rename.
//!
//! A second process that opens the same directory while an indexer runs there follows it
//! instead: it reloads on the other's commits ([`Indexer::start`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use mathrank_dump::{JoinedAnswer, PostKind};
use mathrank_store::{PostStore, Row};
use serde::{Deserialize, Serialize};
use tantivy::{IndexWriter, Term};

use crate::build::BuildOptions;
use crate::schema::{FieldRepeats, Fields};
use crate::{AnswerIndex, Error, IndexMeta, Result, analysis, directory_size, io_error};

/// What each commit of a live index records: the store it follows and the last sequence
/// number of that store that the commit holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitPayload {
    pub store_id: String,
    pub seq: u64,
}

impl CommitPayload {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub(crate) fn read_payload(index: &tantivy::Index) -> Option<CommitPayload> {
    let metas = index.load_metas().ok()?;
    serde_json::from_str(metas.payload.as_deref()?).ok()
}

type Listener = Box<dyn Fn(u64) + Send + Sync>;

/// The index searches read: the current [`AnswerIndex`] (replaced whole by a rebuild) and
/// the store sequence number its last reload made searchable.
pub struct LiveIndex {
    current: RwLock<Arc<AnswerIndex>>,
    searchable: Mutex<u64>,
    advanced: Condvar,
    listeners: Mutex<Vec<Listener>>,
}

impl std::fmt::Debug for LiveIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveIndex").field("searchable_seq", &self.searchable_seq()).finish()
    }
}

impl LiveIndex {
    /// `index`, searchable up to `searchable_seq` of its store (0 without one).
    pub fn new(index: Arc<AnswerIndex>, searchable_seq: u64) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(index),
            searchable: Mutex::new(searchable_seq),
            advanced: Condvar::new(),
            listeners: Mutex::new(Vec::new()),
        })
    }

    /// A fixed index that never changes (no store).
    pub fn fixed(index: Arc<AnswerIndex>) -> Arc<Self> {
        let seq = index.payload().map_or(0, |payload| payload.seq);
        Self::new(index, seq)
    }

    /// The index to search now.
    pub fn current(&self) -> Arc<AnswerIndex> {
        Arc::clone(&self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Every store change up to this sequence number is searchable.
    pub fn searchable_seq(&self) -> u64 {
        *self.searchable.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Calls `listener` with the new searchable sequence number after each advance.
    pub fn on_searchable(&self, listener: impl Fn(u64) + Send + Sync + 'static) {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(listener));
    }

    /// Blocks until `seq` is searchable or `timeout` passes; whether it is.
    pub fn wait_searchable(&self, seq: u64, timeout: Duration) -> bool {
        let guard = self.searchable.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .advanced
            .wait_timeout_while(guard, timeout, |current| *current < seq)
            .unwrap_or_else(|p| p.into_inner());
        *guard >= seq
    }

    fn publish(&self, seq: u64) {
        {
            let mut searchable = self.searchable.lock().unwrap_or_else(|p| p.into_inner());
            if seq <= *searchable {
                return;
            }
            *searchable = seq;
        }
        self.advanced.notify_all();
        for listener in self.listeners.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            listener(seq);
        }
    }

    fn replace(&self, index: Arc<AnswerIndex>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = index;
    }
}

/// How the indexer batches.
#[derive(Debug, Clone)]
pub struct IndexerOptions {
    /// Commit at most this often (when something changed).
    pub commit_interval: Duration,
    /// Commit at once when this many store changes are waiting.
    pub commit_ops: usize,
    /// Store rows read per batch.
    pub read_batch: usize,
    /// Memory budget of the live writer in MiB.
    pub memory_mb: usize,
    /// How a rebuild builds (threads, memory).
    pub rebuild: BuildOptions,
}

impl Default for IndexerOptions {
    fn default() -> Self {
        Self {
            commit_interval: Duration::from_secs(1),
            commit_ops: 10_000,
            read_batch: 1_000,
            memory_mb: 128,
            rebuild: BuildOptions { memory_mb: 256, ..BuildOptions::default() },
        }
    }
}

/// What the indexer is doing, for `Info` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexerStatus {
    /// `leader` (owns the writer) or `follower` (another process indexes this directory).
    pub role: &'static str,
    /// Last store sequence number applied to the writer.
    pub applied_seq: u64,
    /// Last one committed.
    pub committed_seq: u64,
    pub commits: u64,
    pub rebuilding: bool,
    pub rebuilds: u64,
    /// Why the last rebuild failed (cleared by a successful one).
    pub rebuild_error: Option<String>,
    /// The last error, while the indexer retries.
    pub last_error: Option<String>,
}

enum Command {
    Rebuild,
    Stop,
}

/// The indexer of one index directory, on a thread of its own; stopped (after a last commit)
/// when dropped.
pub struct Indexer {
    commands: Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
    status: Arc<Mutex<IndexerStatus>>,
}

impl std::fmt::Debug for Indexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexer").field("status", &self.status()).finish()
    }
}

/// How long the indexer waits for the store before it looks at its commands again.
const IDLE_WAIT: Duration = Duration::from_millis(100);

impl Indexer {
    /// Opens the index at `dir` for `store` and starts following the store. A missing index,
    /// one of another format, or one built from another store is first rebuilt from the store.
    /// When another process already indexes `dir`, this one follows that process's commits.
    pub fn start(dir: &Path, store: Arc<dyn PostStore>, mut options: IndexerOptions) -> Result<(Arc<LiveIndex>, Self)> {
        let index = open_for(dir, store.as_ref(), &options)?;
        // Live documents and later rebuilds keep the repeats the index was built with, so that
        // every document of one index weighs a thread's parts the same.
        options.rebuild.field_repeats = index.meta().field_repeats;
        let applied = index.payload().map_or(0, |payload| payload.seq);
        let live = LiveIndex::new(Arc::new(index), applied);
        let status = Arc::new(Mutex::new(IndexerStatus {
            role: "leader",
            applied_seq: applied,
            committed_seq: applied,
            ..IndexerStatus::default()
        }));
        let (commands, receiver) = channel();
        let writer = match new_writer(&live.current(), options.memory_mb) {
            Ok(writer) => writer,
            Err(Error::Tantivy(tantivy::TantivyError::LockFailure(..))) => {
                tracing::info!(index = %dir.display(), "another process indexes this directory: following its commits");
                status.lock().unwrap_or_else(|p| p.into_inner()).role = "follower";
                let follower =
                    Follower { dir: dir.to_path_buf(), live: Arc::clone(&live), status: Arc::clone(&status) };
                let thread = spawn("index-follower", move || follower.run(&receiver))?;
                return Ok((live, Self { commands, thread: Some(thread), status }));
            }
            Err(err) => return Err(err),
        };
        remove_stale_tantivy_dirs(dir, live.current().meta().tantivy_dir_name());
        let worker = Worker {
            dir: dir.to_path_buf(),
            fields: Fields::from_schema(&live.current().tantivy().schema())?,
            live: Arc::clone(&live),
            store,
            writer,
            applied,
            committed: applied,
            pending_ops: 0,
            index_ops: 0,
            last_commit: Instant::now() - options.commit_interval,
            options,
            rebuild: None,
            status: Arc::clone(&status),
        };
        let thread = spawn("indexer", move || worker.run(&receiver))?;
        Ok((live, Self { commands, thread: Some(thread), status }))
    }

    /// Starts a rebuild from the store in the background (the current index serves and keeps
    /// following the store meanwhile); a no-op while one runs.
    pub fn request_rebuild(&self) {
        let _ = self.commands.send(Command::Rebuild);
    }

    pub fn status(&self) -> IndexerStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Commits what was applied and stops.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(work).map_err(|source| Error::Io {
        action: "starting the thread",
        path: name.into(),
        source,
    })
}

fn new_writer(index: &AnswerIndex, memory_mb: usize) -> Result<IndexWriter> {
    let writer: IndexWriter = index.tantivy().writer_with_num_threads(1, memory_mb.max(15) * 1024 * 1024)?;
    // Segments where most documents were replaced are merged even when their level is not
    // full, so that a long run of updates does not leave large, mostly deleted segments.
    let mut policy = tantivy::merge_policy::LogMergePolicy::default();
    policy.set_del_docs_ratio_before_merge(0.3);
    writer.set_merge_policy(Box::new(policy));
    Ok(writer)
}

/// The index at `dir`, rebuilt from `store` first when it is missing, of another format, or
/// does not follow `store` (or is ahead of it: the store was replaced).
fn open_for(dir: &Path, store: &dyn PostStore, options: &IndexerOptions) -> Result<AnswerIndex> {
    let reason = match AnswerIndex::open(dir) {
        Ok(index) => match index.payload() {
            Some(payload) if payload.store_id == store.store_id() && payload.seq <= store.last_seq()? => {
                return Ok(index);
            }
            Some(payload) if payload.store_id == store.store_id() => {
                format!("it holds sequence number {} but the store ends at {}", payload.seq, store.last_seq()?)
            }
            Some(payload) => format!("it follows store {}, not {}", payload.store_id, store.store_id()),
            None => "it was built without a post store".to_owned(),
        },
        Err(Error::NotAnIndex { .. }) if !dir.join("meta.json").exists() => "there is none yet".to_owned(),
        Err(err @ (Error::Incompatible { .. } | Error::NotAnIndex { .. })) => err.to_string(),
        Err(err) => return Err(err),
    };
    tracing::warn!(index = %dir.display(), reason, "building the index from the post store");
    let (name, built) = rebuild_in_place(dir, store, &options.rebuild)?;
    switch_to(dir, &name, built.answers, options.rebuild.field_repeats)?;
    AnswerIndex::open(dir)
}

/// A new tantivy directory name, unique within `dir`.
fn new_tantivy_name(dir: &Path) -> String {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut name = format!("tantivy-{stamp}");
    let mut n = 0;
    while dir.join(&name).exists() {
        n += 1;
        name = format!("tantivy-{stamp}-{n}");
    }
    name
}

/// Builds a new tantivy directory inside `dir` from a snapshot of `store` (committed with the
/// snapshot's sequence number) and returns its name; `dir`'s `meta.json` still names the old.
fn rebuild_in_place(dir: &Path, store: &dyn PostStore, options: &BuildOptions) -> Result<(String, BuiltFromStore)> {
    std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    let name = new_tantivy_name(dir);
    let target = dir.join(&name);
    match build_from_store(store, &target, options) {
        Ok(built) => Ok((name, built)),
        Err(err) => {
            let _ = std::fs::remove_dir_all(&target);
            Err(err)
        }
    }
}

/// What [`build_from_store`] built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltFromStore {
    /// The snapshot's sequence number (the commit's payload).
    pub seq: u64,
    pub answers: u64,
}

/// Builds a tantivy index at `tantivy_dir` (created) from one snapshot of `store`: every live
/// answer with its live question, through the same document function as a dump build.
/// Memory stays bounded: answers stream from the store to the writer's threads.
pub fn build_from_store(store: &dyn PostStore, tantivy_dir: &Path, options: &BuildOptions) -> Result<BuiltFromStore> {
    std::fs::create_dir_all(tantivy_dir).map_err(io_error("creating", tantivy_dir))?;
    let (schema, fields) = Fields::schema();
    let index = tantivy::Index::create_in_dir(tantivy_dir, schema)?;
    analysis::register(&index);
    let threads = options.threads.max(1);
    let mut writer: IndexWriter =
        index.writer_with_num_threads(threads, options.memory_mb.max(15 * threads) * 1024 * 1024)?;
    const BATCH: usize = 256;
    let (sender, receiver) = crossbeam_channel::bounded::<Vec<JoinedAnswer>>(threads * 4);
    let mut answers = 0u64;
    let scanned: Result<u64> = std::thread::scope(|scope| {
        let writer = &writer;
        let workers =
            crate::build::spawn_document_workers(scope, writer, &fields, &options.field_repeats, receiver, threads);
        let mut batch = Vec::with_capacity(BATCH);
        let cancel = &options.cancel;
        let scanned = store.scan_joined(&mut |question, answer| {
            answers += 1;
            batch.push(JoinedAnswer::from_posts(question, answer));
            if batch.len() >= BATCH && sender.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).is_err() {
                return false;
            }
            !cancel.load(std::sync::atomic::Ordering::Relaxed)
        });
        if !batch.is_empty() {
            let _ = sender.send(batch);
        }
        drop(sender);
        let joined = crate::build::join_document_workers(workers);
        scanned.map_err(Error::from).and_then(|seq| joined.map(|()| seq))
    });
    let seq = scanned?;
    if options.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    let mut prepared = writer.prepare_commit()?;
    prepared.set_payload(&CommitPayload { store_id: store.store_id().to_owned(), seq }.encode());
    prepared.commit()?;
    writer.wait_merging_threads()?;
    Ok(BuiltFromStore { seq, answers })
}

/// Points `dir/meta.json` at the tantivy directory `name` (written beside and renamed over,
/// so a crash leaves either the old or the new meta), keeping what the old meta recorded.
fn switch_to(dir: &Path, name: &str, answers: u64, field_repeats: FieldRepeats) -> Result<()> {
    let meta_path = dir.join("meta.json");
    let mut meta: IndexMeta = std::fs::read_to_string(&meta_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| IndexMeta { source: "post store".into(), ..IndexMeta::default() });
    meta.format_version = crate::FORMAT_VERSION;
    meta.schema_version = crate::SCHEMA_VERSION;
    meta.analyzer_version = analysis::ANALYZER_VERSION;
    meta.mathrank_version = env!("CARGO_PKG_VERSION").into();
    meta.tantivy_dir = Some(name.to_owned());
    meta.built_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    meta.index_bytes = directory_size(&dir.join(name));
    meta.answers = answers;
    meta.field_repeats = field_repeats;
    let text = serde_json::to_string_pretty(&meta)
        .map_err(|err| io_error("encoding", &meta_path)(std::io::Error::other(err)))?;
    let temporary = dir.join("meta.json.next");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &meta_path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(io_error("writing", &meta_path))
}

/// Removes tantivy directories that `meta.json` no longer names (a rebuild that was cut short,
/// or the directory a finished one replaced).
fn remove_stale_tantivy_dirs(dir: &Path, active: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("tantivy") && name != active && entry.path().is_dir() {
            tracing::info!(path = %entry.path().display(), "removing a tantivy directory no longer in use");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Applies store rows to `writer`: first every delete, then every add, so that a batch's
/// adds are never undone by its own deletes. A live question brings all its live answers
/// (with its new title, tags and body); an answer is added only when its question is live.
/// Returns the number of index operations.
fn apply_rows(
    writer: &IndexWriter,
    (fields, repeats): (&Fields, &FieldRepeats),
    store: &dyn PostStore,
    rows: &[Row],
) -> Result<usize> {
    let mut operations = 0;
    for row in rows {
        // Both: a dump may turn an id that was an answer into a question, or back.
        tracing::trace!(id = row.id, deleted = row.deleted, "removing the documents of a changed post");
        writer.delete_term(Term::from_field_u64(fields.answer_id, row.id));
        writer.delete_term(Term::from_field_u64(fields.question_id, row.id));
        operations += 2;
    }
    let questions: HashSet<u64> = rows
        .iter()
        .filter(|row| row.kind == Some(PostKind::Question) && row.post.is_some())
        .map(|row| row.id)
        .collect();
    for row in rows {
        let Some(post) = &row.post else { continue };
        match post.kind {
            PostKind::Question => {
                for answer in store.answers_of(post.id)? {
                    writer.add_document(fields.document(&JoinedAnswer::from_posts(post, answer), repeats))?;
                    operations += 1;
                }
            }
            PostKind::Answer => {
                let parent = post.parent_id.unwrap_or_default();
                if questions.contains(&parent) {
                    continue;
                }
                let question = store.get(parent)?.and_then(|row| row.post).filter(|q| q.kind == PostKind::Question);
                if let Some(question) = question {
                    writer
                        .add_document(fields.document(&JoinedAnswer::from_posts(&question, post.clone()), repeats))?;
                    operations += 1;
                }
            }
        }
    }
    Ok(operations)
}

/// The leader's loop state.
struct Worker {
    dir: PathBuf,
    fields: Fields,
    live: Arc<LiveIndex>,
    store: Arc<dyn PostStore>,
    writer: IndexWriter,
    applied: u64,
    committed: u64,
    /// Store changes applied since the last commit.
    pending_ops: usize,
    /// Index operations since the last commit.
    index_ops: usize,
    last_commit: Instant,
    options: IndexerOptions,
    rebuild: Option<std::thread::JoinHandle<Result<(String, BuiltFromStore)>>>,
    status: Arc<Mutex<IndexerStatus>>,
}

impl Worker {
    fn run(mut self, commands: &Receiver<Command>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match commands.try_recv() {
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => {
                    if let Some(rebuild) = self.rebuild.take() {
                        self.options.rebuild.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                        let _ = rebuild.join();
                    }
                    if let Err(err) = self.commit() {
                        tracing::error!(error = %err, "last commit failed; the store replays it on the next start");
                    }
                    return;
                }
                Ok(Command::Rebuild) => self.start_rebuild(),
                Err(TryRecvError::Empty) => {}
            }
            match self.step() {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    self.report(None);
                }
                Err(err) => {
                    tracing::error!(error = %err, retry_in_ms = backoff.as_millis() as u64, "indexing failed; retrying from the last commit");
                    self.report(Some(err.to_string()));
                    self.recover();
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// One round: a finished rebuild is switched in; then the next changes are applied, or
    /// the store is waited for; a commit is made when due.
    fn step(&mut self) -> Result<()> {
        if self.rebuild.as_ref().is_some_and(std::thread::JoinHandle::is_finished)
            && let Some(handle) = self.rebuild.take()
        {
            match handle.join().unwrap_or(Err(Error::Interrupted)) {
                Ok((name, _)) => self.switch(&name)?,
                Err(err) => {
                    tracing::error!(error = %err, "the rebuild failed; the current index stays");
                    self.status.lock().unwrap_or_else(|p| p.into_inner()).rebuild_error = Some(err.to_string());
                }
            }
        }
        let rows = self.store.changes(self.applied, self.options.read_batch)?;
        if let Some(last) = rows.last() {
            self.index_ops += apply_rows(
                &self.writer,
                (&self.fields, &self.options.rebuild.field_repeats),
                self.store.as_ref(),
                &rows,
            )?;
            self.applied = last.seq;
            self.pending_ops += rows.len();
        }
        let due = self.last_commit.elapsed() >= self.options.commit_interval;
        if self.applied > self.committed && (due || self.pending_ops >= self.options.commit_ops) {
            self.commit()?;
        } else if rows.is_empty() {
            let wait = if self.applied > self.committed {
                self.options.commit_interval.saturating_sub(self.last_commit.elapsed()).min(IDLE_WAIT)
            } else {
                IDLE_WAIT
            };
            self.store.wait_for_change(self.applied, wait)?;
        }
        Ok(())
    }

    /// Commits with the applied sequence number and reloads the readers. Changes that touched
    /// no document (an answer still waiting for its question) need no commit to be visible.
    fn commit(&mut self) -> Result<()> {
        if self.applied == self.committed {
            return Ok(());
        }
        if self.index_ops > 0 {
            let payload = CommitPayload { store_id: self.store.store_id().to_owned(), seq: self.applied };
            let mut prepared = self.writer.prepare_commit()?;
            prepared.set_payload(&payload.encode());
            prepared.commit()?;
            self.live.current().reload()?;
            self.status.lock().unwrap_or_else(|p| p.into_inner()).commits += 1;
        }
        tracing::debug!(seq = self.applied, changes = self.pending_ops, documents = self.index_ops, "committed");
        self.committed = self.applied;
        self.pending_ops = 0;
        self.index_ops = 0;
        self.last_commit = Instant::now();
        // The status first: whoever sees the sequence number searchable sees it committed.
        self.status.lock().unwrap_or_else(|p| p.into_inner()).committed_seq = self.committed;
        self.live.publish(self.committed);
        Ok(())
    }

    /// After an error: drop what was not committed and start again from the last commit.
    fn recover(&mut self) {
        if let Err(err) = self.writer.rollback() {
            tracing::warn!(error = %err, "rollback failed; opening a new writer");
            match new_writer(&self.live.current(), self.options.memory_mb) {
                Ok(writer) => self.writer = writer,
                Err(err) => tracing::error!(error = %err, "no new writer either"),
            }
        }
        self.applied = self.committed;
        self.pending_ops = 0;
        self.index_ops = 0;
    }

    fn report(&self, error: Option<String>) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.applied_seq = self.applied;
        status.committed_seq = self.committed;
        status.rebuilding = self.rebuild.is_some();
        if error.is_some() || status.last_error.is_some() {
            status.last_error = error;
        }
    }

    fn start_rebuild(&mut self) {
        if self.rebuild.is_some() {
            return;
        }
        let (dir, store, options) = (self.dir.clone(), Arc::clone(&self.store), self.options.rebuild.clone());
        tracing::info!(index = %dir.display(), "rebuilding the index from a snapshot of the post store");
        match spawn_result("index-rebuild", move || rebuild_in_place(&dir, store.as_ref(), &options)) {
            Ok(handle) => self.rebuild = Some(handle),
            Err(err) => tracing::error!(error = %err, "cannot start the rebuild"),
        }
    }

    /// Replays what came after the rebuilt snapshot into it, then makes it the index: the
    /// readers switch to it, `meta.json` names it, and the old directory goes.
    fn switch(&mut self, name: &str) -> Result<()> {
        self.commit()?;
        let path = self.dir.join(name);
        let index = tantivy::Index::open_in_dir(&path)?;
        analysis::register(&index);
        let mut writer: IndexWriter = index.writer_with_num_threads(1, self.options.memory_mb.max(15) * 1024 * 1024)?;
        let mut applied = read_payload(&index).map_or(0, |payload| payload.seq);
        loop {
            let rows = self.store.changes(applied, self.options.read_batch)?;
            let Some(last) = rows.last() else { break };
            apply_rows(&writer, (&self.fields, &self.options.rebuild.field_repeats), self.store.as_ref(), &rows)?;
            applied = last.seq;
        }
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&CommitPayload { store_id: self.store.store_id().to_owned(), seq: applied }.encode());
        prepared.commit()?;
        drop(writer);
        let answers = index.reader()?.searcher().num_docs();
        let old = self.live.current().meta().tantivy_dir_name().to_owned();
        switch_to(&self.dir, name, answers, self.options.rebuild.field_repeats)?;
        let reopened = AnswerIndex::open(&self.dir)?;
        let writer = new_writer(&reopened, self.options.memory_mb)?;
        self.writer = writer;
        self.live.replace(Arc::new(reopened));
        self.applied = applied;
        self.committed = applied;
        self.pending_ops = 0;
        self.index_ops = 0;
        self.live.publish(applied);
        let _ = std::fs::remove_dir_all(self.dir.join(&old));
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.rebuilds += 1;
        status.rebuild_error = None;
        tracing::info!(index = %self.dir.display(), tantivy = name, seq = applied, "switched to the rebuilt index");
        Ok(())
    }
}

fn spawn_result<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<T>>> {
    std::thread::Builder::new().name(name.into()).spawn(work).map_err(|source| Error::Io {
        action: "starting the thread",
        path: name.into(),
        source,
    })
}

/// Another process owns the writer: reload on its commits, and reopen when it switches to a
/// rebuilt directory.
struct Follower {
    dir: PathBuf,
    live: Arc<LiveIndex>,
    status: Arc<Mutex<IndexerStatus>>,
}

impl Follower {
    fn run(self, commands: &Receiver<Command>) {
        loop {
            match commands.recv_timeout(Duration::from_millis(250)) {
                Ok(Command::Stop) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                Ok(Command::Rebuild) => tracing::warn!("this process follows another one's index: it cannot rebuild"),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Err(err) = self.follow() {
                tracing::warn!(error = %err, "following the index failed; retrying");
            }
        }
    }

    fn follow(&self) -> Result<()> {
        let current = self.live.current();
        let meta: Option<IndexMeta> =
            std::fs::read_to_string(self.dir.join("meta.json")).ok().and_then(|text| serde_json::from_str(&text).ok());
        if meta.is_some_and(|meta| meta.tantivy_dir_name() != current.meta().tantivy_dir_name()) {
            self.live.replace(Arc::new(AnswerIndex::open(&self.dir)?));
        } else {
            current.reload()?;
        }
        let seq = self.live.current().payload().map_or(0, |payload| payload.seq);
        self.live.publish(seq);
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.applied_seq = seq;
        status.committed_seq = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
