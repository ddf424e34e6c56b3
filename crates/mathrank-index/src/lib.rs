//! LaTeX-aware BM25 index of Stack Exchange answers (tantivy).
//!
//! Each document is one answer with its question's title, body and tags (the body spilled to a
//! temporary file during the build, so memory does not grow with it). Text is analysed twice:
//! as prose (stemmed words) and as math (LaTeX symbols and symbol bigrams, see [`analysis`]),
//! into one field each, where the question's parts count more than the answer by repetition
//! ([`FieldRepeats`]). Queries — usually a whole question — are built from the same
//! analyzers' tokens, one clause per distinct term, and run by a MaxScore union ([`maxscore`]), scored with BM25
//! statistics over live documents only and ties broken by answer id ([`statistics`]), so that
//! indexes holding the same answers rank them alike whatever their segments.
//!
//! An index on disk is a directory with `meta.json` (versions, source, counts),
//! `warnings.jsonl` (skipped rows) and `tantivy/` (the index itself). Builds happen next to the
//! target and are renamed into place only when complete.
//!
//! ```
//! use mathrank_dump::JoinedAnswer;
//! use mathrank_index::{AnswerIndex, SearchRequest};
//!
//! let answer = JoinedAnswer {
//!     answer_id: 2,
//!     question_id: 1,
//!     question_title: "Area under a parabola".into(),
//!     tags: vec!["calculus".into()],
//!     accepted: true,
//!     votes: 4,
//!     created: 1_600_000_000,
//!     body_html: r"<p>$\int_0^1 x^2\,dx = \frac{1}{3}$ by the power rule.</p>".into(),
//!     question_body_html: "<p>How do I find the area under $y = x^2$ from 0 to 1?</p>".into(),
//! };
//! let index = AnswerIndex::build_in_ram(vec![answer]).unwrap();
//! let hits = index.search(&SearchRequest::new(r"\int_0^1 x^2 dx", 10)).unwrap();
//! assert_eq!(hits[0].answer_id, 2);
//! assert!(hits[0].body.contains(r"$\int_0^1 x^2\,dx"));
//! ```

pub mod analysis;
mod build;
pub mod live;
pub mod maxscore;
mod schema;
mod search;
pub mod statistics;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::{IndexReader, ReloadPolicy, TantivyDocument, Term};

pub use build::{BuildOptions, BuildProgress, build_index, sibling_work_dirs};
pub use live::{CommitPayload, Indexer, IndexerOptions, IndexerStatus, LiveIndex, build_from_store};
pub use schema::{FieldRepeats, Fields, SCHEMA_VERSION};
pub use search::{
    DEFAULT_MAX_TERMS, FieldWeights, Filters, Hit, SearchRequest, SearchStats, delimit_bare_latex, snippet,
};

/// The on-disk format version: schema and analyzers together. Opening an index with another
/// version is an error that says to rebuild.
pub const FORMAT_VERSION: u32 = SCHEMA_VERSION * 1000 + analysis::ANALYZER_VERSION;

/// Errors of the index crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no mathrank index at {path}: {reason}; build one from a dump first")]
    NotAnIndex { path: String, reason: String },
    #[error("index at {path} cannot be used by this mathrank: {reason}; rebuild it from its dump")]
    Incompatible { path: String, reason: String },
    #[error("refusing to replace {path}: it exists and is not a mathrank index; choose another directory")]
    TargetNotIndex { path: String },
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    // Not `#[from]`: that would make the dump error a source too, and reports that print the
    // chain would say it twice.
    #[error("reading the dump: {0}")]
    Dump(mathrank_dump::Error),
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("build interrupted; the previous index (if any) is unchanged")]
    Interrupted,
    #[error("{path} is being built by another mathrank ({holder}); wait for it to finish, or build elsewhere")]
    Locked { path: String, holder: String },
    #[error("post store: {0}")]
    Store(#[from] mathrank_store::Error),
}

impl From<mathrank_dump::Error> for Error {
    fn from(err: mathrank_dump::Error) -> Self {
        Self::Dump(err)
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.display().to_string();
    move |source| Error::Io { action, path, source }
}

/// What `meta.json` records about an index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexMeta {
    pub format_version: u32,
    pub schema_version: u32,
    pub analyzer_version: u32,
    /// Version of mathrank that built it.
    pub mathrank_version: String,
    /// The dump it was built from (path as given, or `embedded-sample`).
    pub source: String,
    pub source_bytes: u64,
    pub questions: u64,
    pub answers: u64,
    /// Skipped rows by reason (`bad_date`, `invalid_char`, ...).
    pub skipped: std::collections::BTreeMap<String, u64>,
    pub orphan_answers: u64,
    /// Answers dropped because too many bytes of answers waited for their questions at once
    /// (`mathrank_dump::MAX_WAITING_BYTES`).
    #[serde(default)]
    pub dropped_waiting_answers: u64,
    pub duplicate_ids: u64,
    /// How many times each part of a thread counts in the searched fields.
    #[serde(default)]
    pub field_repeats: FieldRepeats,
    /// Rows of other post types (wiki, tag excerpts, ...) by `PostTypeId`.
    pub other_post_types: std::collections::BTreeMap<u32, u64>,
    /// Unix seconds.
    pub built_at: i64,
    pub build_seconds: f64,
    /// Size of the index directory in bytes.
    pub index_bytes: u64,
    /// The tantivy directory inside the index directory (`tantivy` unless the index was
    /// rebuilt from its post store, which writes a new one beside the old and switches here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tantivy_dir: Option<String>,
}

impl IndexMeta {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// The name of the tantivy directory inside the index directory.
    pub fn tantivy_dir_name(&self) -> &str {
        self.tantivy_dir.as_deref().unwrap_or("tantivy")
    }
}

/// A searchable index (on disk or in RAM).
pub struct AnswerIndex {
    index: tantivy::Index,
    reader: IndexReader,
    fields: Fields,
    meta: IndexMeta,
    path: Option<PathBuf>,
    /// BM25 statistics over live documents, of the current searcher.
    statistics: statistics::StatisticsCache,
}

impl std::fmt::Debug for AnswerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerIndex").field("path", &self.path).field("answers", &self.meta.answers).finish()
    }
}

impl AnswerIndex {
    /// Opens an index directory written by [`build_index`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // Recovering a half-published build renames directories: only under the build lock,
        // so that a reader never races a writer (or another reader) doing it. If a build holds
        // the lock, it recovers before it publishes.
        if let Ok(Ok(_lock)) = build::lock_target(path) {
            build::recover_interrupted_publish(path);
        }
        let not_index = |reason: String| Error::NotAnIndex { path: path.display().to_string(), reason };
        let meta_path = path.join("meta.json");
        let meta_text = match std::fs::read_to_string(&meta_path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_index(format!("{} not found", meta_path.display())));
            }
            Err(err) => return Err(io_error("reading", &meta_path)(err)),
        };
        let meta: IndexMeta = serde_json::from_str(&meta_text)
            .map_err(|err| not_index(format!("{} is not mathrank metadata ({err})", meta_path.display())))?;
        if meta.format_version != FORMAT_VERSION {
            return Err(Error::Incompatible {
                path: path.display().to_string(),
                reason: format!(
                    "it has format version {} (schema {}, analyzers {}), this mathrank {} reads version {FORMAT_VERSION}",
                    meta.format_version,
                    meta.schema_version,
                    meta.analyzer_version,
                    env!("CARGO_PKG_VERSION")
                ),
            });
        }
        let index =
            tantivy::Index::open_in_dir(path.join(meta.tantivy_dir_name())).map_err(|err| Error::Incompatible {
                path: path.display().to_string(),
                reason: format!("its tantivy directory cannot be opened ({err})"),
            })?;
        let mut opened = Self::from_tantivy(index, meta)?;
        opened.path = Some(path.to_path_buf());
        Ok(opened)
    }

    pub(crate) fn from_tantivy(index: tantivy::Index, meta: IndexMeta) -> Result<Self> {
        analysis::register(&index);
        let fields = Fields::from_schema(&index.schema())?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Self { index, reader, fields, meta, path: None, statistics: statistics::StatisticsCache::default() })
    }

    /// Builds an index in RAM from joined answers (tests, small collections).
    pub fn build_in_ram(answers: impl IntoIterator<Item = mathrank_dump::JoinedAnswer>) -> Result<Self> {
        Self::build_in_ram_with(answers, FieldRepeats::default())
    }

    /// [`AnswerIndex::build_in_ram`] with other field repeats.
    pub fn build_in_ram_with(
        answers: impl IntoIterator<Item = mathrank_dump::JoinedAnswer>,
        repeats: FieldRepeats,
    ) -> Result<Self> {
        let (schema, fields) = Fields::schema();
        let index = tantivy::Index::create_in_ram(schema);
        analysis::register(&index);
        let mut writer: tantivy::IndexWriter = index.writer_with_num_threads(1, 50_000_000)?;
        let mut count = 0;
        for answer in answers {
            writer.add_document(fields.document(&answer, &repeats))?;
            count += 1;
        }
        writer.commit()?;
        let meta = IndexMeta {
            format_version: FORMAT_VERSION,
            schema_version: SCHEMA_VERSION,
            analyzer_version: analysis::ANALYZER_VERSION,
            mathrank_version: env!("CARGO_PKG_VERSION").into(),
            source: "memory".into(),
            answers: count,
            field_repeats: repeats,
            ..IndexMeta::default()
        };
        let opened = Self::from_tantivy(index, meta)?;
        opened.reader.reload()?;
        Ok(opened)
    }

    pub fn meta(&self) -> &IndexMeta {
        &self.meta
    }

    /// The directory, for an index on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Makes the last commit searchable (the live indexer calls it right after committing).
    pub fn reload(&self) -> Result<()> {
        Ok(self.reader.reload()?)
    }

    /// What the last commit recorded about the post store it follows; `None` for an index
    /// built without a store.
    pub fn payload(&self) -> Option<CommitPayload> {
        live::read_payload(&self.index)
    }

    /// Number of answer documents.
    pub fn num_answers(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Tantivy's own view of the index (segments, schema), for diagnostics.
    pub fn tantivy(&self) -> &tantivy::Index {
        &self.index
    }

    /// BM25 top-k for a question.
    pub fn search(&self, request: &SearchRequest) -> Result<Vec<Hit>> {
        self.search_with_stats(request).map(|(hits, _)| hits)
    }

    /// [`AnswerIndex::search`], also saying how many posting lists the query read and how
    /// long they were (logged at debug level too).
    pub fn search_with_stats(&self, request: &SearchRequest) -> Result<(Vec<Hit>, SearchStats)> {
        let mut stats = SearchStats::default();
        let searcher = self.reader.searcher();
        let statistics = self.statistics.statistics(&searcher)?;
        let hits = search::run_search(&statistics, &self.fields, request, &mut stats)?;
        tracing::debug!(
            clauses = stats.clauses,
            summed_doc_freq = stats.summed_doc_freq,
            hits = hits.len(),
            "first stage"
        );
        Ok((hits, stats))
    }

    /// One answer by id, with its full text.
    pub fn get_answer(&self, answer_id: u64) -> Result<Option<Hit>> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(Term::from_field_u64(self.fields.answer_id, answer_id), IndexRecordOption::Basic);
        let top = searcher.search(&query, &TopDocs::with_limit(1).order_by_score())?;
        let Some((_, address)) = top.into_iter().next() else { return Ok(None) };
        let doc: TantivyDocument = searcher.doc(address)?;
        Ok(Some(search::hit_from_doc(&self.fields, &doc, 0.0, 0)))
    }
}

/// Size in bytes of all files below `path`.
pub fn directory_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests;
