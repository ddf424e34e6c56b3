//! The post store: the source of truth of a live mathrank index, and its write-ahead log.
//!
//! Every question and answer lives here by its Stack Exchange `Id`, with the version its
//! writer gave it, the global sequence number of its last change, where the change came from
//! (a dump or the write API) and a hash of its content. Deleting a post leaves a tombstone, so
//! that a late, stale upsert cannot bring it back. The question → answers relation is kept by
//! `ParentId`: an answer whose question has not arrived waits here, and is indexed when it comes.
//!
//! The index is derived from the store: an indexer reads [`PostStore::changes`] after the
//! sequence number recorded in its last commit, and a new index is built from
//! [`PostStore::scan_joined`]. [`PostStore`] is what every store implements: the embedded
//! [`SqliteStore`] (one machine), and [`PgStore`] on PostgreSQL (replicas sharing one store;
//! how it keeps followers from skipping a write is in its module). [`open_store`] picks one by
//! location; [`conformance`] is the test suite they all pass.
//!
//! ```
//! use mathrank_store::{Op, Outcome, Post, PostKind, PostStore, SqliteStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(&dir.path().join("posts.sqlite"))?;
//! let question = Post {
//!     id: 1,
//!     kind: PostKind::Question,
//!     parent_id: None,
//!     accepted_answer_id: None,
//!     title: "Why is a square non-negative?".into(),
//!     tags: vec!["algebra".into()],
//!     body_html: "<p>Why?</p>".into(),
//!     score: 0,
//!     created: 1_600_000_000,
//! };
//! let applied = store.apply(&[Op::Upsert { post: question.clone(), version: 1 }], 1_700_000_000)?;
//! assert_eq!(applied.outcomes, [Outcome::Created]);
//! // The same version again is a no-op (retries are idempotent); an older one a conflict.
//! let again = store.apply(&[Op::Upsert { post: question.clone(), version: 1 }], 1_700_000_001)?;
//! assert_eq!(again.outcomes, [Outcome::Noop]);
//! assert_eq!(again.seq, applied.seq);
//! let deleted = store.apply(&[Op::Delete { id: 1, version: 2 }], 1_700_000_002)?;
//! assert_eq!(deleted.outcomes, [Outcome::Deleted]);
//! let stale = store.apply(&[Op::Upsert { post: question, version: 1 }], 1_700_000_003)?;
//! assert_eq!(stale.outcomes, [Outcome::Conflict { stored_version: 2 }]);
//! assert!(store.get(1)?.unwrap().deleted);
//! # Ok(()) }
//! ```

pub mod conformance;
mod delta;
mod postgres;
mod rules;
mod sqlite;

use std::time::Duration;

pub use delta::{DeltaOptions, DeltaProgress, DeltaSummary, apply_dump_delta};
pub use mathrank_dump::{Post, PostKind, content_hash, join_tags};
pub use postgres::{CHANNEL, PgOptions, PgStore, SCAN_BATCH, WRITE_LOCK, is_postgres_url};
pub use sqlite::{BulkLoader, STORE_FILE, SqliteStore};

/// Opens the store at `location`: a PostgreSQL database named by a `postgres://` or
/// `postgresql://` URL ([`PgStore`]), else the SQLite file at that path ([`SqliteStore`]).
pub fn open_store(location: &str) -> Result<Box<dyn PostStore>> {
    if is_postgres_url(location) {
        Ok(Box::new(PgStore::connect(location)?))
    } else {
        Ok(Box::new(SqliteStore::open(std::path::Path::new(location))?))
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("post store {path}: {source}; check that the file is readable and writable and the disk has room")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("post store {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a mathrank post store: {reason}")]
    NotAStore { path: String, reason: String },
    #[error(
        "post store {path} has format version {found}; this mathrank reads version {expected}: rebuild it with `mathrank index`"
    )]
    Incompatible { path: String, found: i64, expected: i64 },
    #[error("{what} {value} does not fit the store (at most {max})")]
    OutOfRange { what: &'static str, value: u64, max: u64 },
    #[error("the post store is closed")]
    Closed,
    // Not `#[from]`: the dump error would then be a source too, and be said twice.
    #[error("reading the dump: {0}")]
    Dump(mathrank_dump::Error),
    #[error("post store {store}: {message}")]
    Postgres {
        store: String,
        /// The error with the server's message.
        message: String,
        #[source]
        source: ::postgres::Error,
    },
    /// The database is unreachable, restarting or overloaded: the operation did not complete
    /// (a write may or may not have committed), and retrying it is safe.
    #[error(
        "post store {store} is unavailable ({reason}); the operation may not have completed: retry it (writing the same versions again is idempotent)"
    )]
    Unavailable {
        store: String,
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// Whether retrying may succeed: the store is unavailable for now (a server would answer
    /// 503 with a retry hint), not wrong.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Who made a post's last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Loaded from a dump, by a full build or a delta (`mathrank index --update`).
    Dump,
    /// Written through the write API.
    Api,
}

/// One change to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A versioned upsert from the write API. A post stored with a lower version is replaced;
    /// the same version is a no-op; a lower one is a conflict. An answer whose question is
    /// deleted is rejected; one whose question has not arrived is stored and waits.
    Upsert { post: Post, version: u64 },
    /// A versioned delete from the write API: leaves a tombstone at `version`, which a later
    /// upsert must exceed. Deleting a question keeps its answers in the store (not indexed).
    Delete { id: u64, version: u64 },
    /// A post of a dump (a full build or a delta). It replaces the stored post when its content
    /// differs, keeping the stored version (0 for a new post), unless the write API changed
    /// the post after `dump_date` (Unix seconds): then it is left alone ([`Outcome::Kept`]).
    FromDump { post: Post, dump_date: i64 },
    /// A post that a newer dump no longer has: deleted (keeping its version), unless the write
    /// API changed it after `dump_date`.
    VanishedFromDump { id: u64, dump_date: i64 },
}

impl Op {
    /// The post the operation is about.
    pub fn id(&self) -> u64 {
        match self {
            Self::Upsert { post, .. } | Self::FromDump { post, .. } => post.id,
            Self::Delete { id, .. } | Self::VanishedFromDump { id, .. } => *id,
        }
    }
}

/// What one operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Deleted,
    /// Nothing changed: the same version again, a dump post with the same content, or a
    /// delete of a post already deleted.
    Noop,
    /// The operation's version is older than the stored one.
    Conflict {
        stored_version: u64,
    },
    /// A dump's change to a post the write API changed after the dump's date.
    Kept,
    /// The operation cannot apply to what is stored; `field` names the post attribute at fault.
    Rejected {
        field: &'static str,
        message: String,
    },
}

impl Outcome {
    /// Whether the operation changed the store (and took a sequence number).
    pub fn changed(&self) -> bool {
        matches!(self, Self::Created | Self::Updated | Self::Deleted)
    }
}

/// The result of [`PostStore::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The store's last sequence number once the transaction committed: every change of this
    /// batch has a sequence number at most this.
    pub seq: u64,
    /// One per operation, in order.
    pub outcomes: Vec<Outcome>,
}

/// A stored post or tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: u64,
    /// `None` for the tombstone of a post that was never stored (a delete that came first).
    pub kind: Option<PostKind>,
    pub deleted: bool,
    pub version: u64,
    /// Sequence number of the post's last change.
    pub seq: u64,
    pub origin: Origin,
    /// When the last change was written (Unix seconds).
    pub written_at: i64,
    /// [`content_hash`] of the post (0 for a tombstone).
    pub hash: u64,
    /// The post; `None` for a tombstone.
    pub post: Option<Post>,
}

/// What a delta needs to know about a stored post, without its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub id: u64,
    pub deleted: bool,
    pub origin: Origin,
    pub written_at: i64,
    pub hash: u64,
}

/// Counts of what a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub questions: u64,
    pub answers: u64,
    pub tombstones: u64,
    pub last_seq: u64,
}

/// A post store. Writes are serialised, each [`apply`](Self::apply) is one transaction, and
/// it returns only once that transaction is durable. Every change takes the next number of one
/// global sequence, and a post's row carries the number of its last change, so
/// [`changes`](Self::changes) after `s` is exactly what changed since `s`, each post once in
/// its current state.
pub trait PostStore: Send + Sync + std::fmt::Debug {
    /// A name for this store that stays with it for its life (an index records which store
    /// it follows, so that it never replays another store's sequence).
    fn store_id(&self) -> &str;

    /// Applies `ops` in order in one durable transaction; `written_at` (Unix seconds) is
    /// recorded on every post it changes.
    fn apply(&self, ops: &[Op], written_at: i64) -> Result<Applied>;

    /// A post or tombstone by id.
    fn get(&self, id: u64) -> Result<Option<Row>>;

    /// The sequence number of the last change (0 for an empty store).
    fn last_seq(&self) -> Result<u64>;

    /// The posts and tombstones whose last change came after `after`, by sequence number, at
    /// most `limit` of them.
    fn changes(&self, after: u64, limit: usize) -> Result<Vec<Row>>;

    /// The live answers of a question, by id.
    fn answers_of(&self, question_id: u64) -> Result<Vec<Post>>;

    /// Waits until the last sequence number exceeds `after`, or `timeout` passes (also for
    /// changes written by other processes); returns the last sequence number.
    fn wait_for_change(&self, after: u64, timeout: Duration) -> Result<u64>;

    /// Every live answer whose question is live, with that question, from one consistent
    /// snapshot, by question id then answer id; `visit` returns false to stop. Returns the
    /// snapshot's sequence number: the changes after it are what the snapshot misses.
    fn scan_joined(&self, visit: &mut dyn FnMut(&Post, Post) -> bool) -> Result<u64>;

    /// The digest of every post and tombstone, by id; `visit` returns false to stop.
    fn scan_digests(&self, visit: &mut dyn FnMut(Digest) -> bool) -> Result<()>;

    /// What the store holds.
    fn counts(&self) -> Result<Counts>;
}

/// The largest id, version or sequence number a store keeps (SQLite's and PostgreSQL's
/// integers are signed 64-bit).
pub const MAX_NUMBER: u64 = i64::MAX as u64;
