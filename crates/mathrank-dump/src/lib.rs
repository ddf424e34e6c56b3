//! Streaming reader for Stack Exchange data dumps (`Posts.xml`).
//!
//! It reads a `Posts.xml` file, a directory that holds one, or a site's `.7z` archive (the
//! `Posts.xml` entry is decompressed as a stream, never extracted to disk), understands both dump
//! generations (tags as `<a><b>` and as `|a|b|`), turns the HTML bodies into plain text that
//! keeps LaTeX exactly as written, and joins each answer with its question.
//!
//! ```
//! use mathrank_dump::{AnswerJoiner, PostsReader, RowEvent};
//!
//! let xml = r#"<?xml version="1.0" encoding="utf-8"?>
//! <posts>
//!   <row Id="2" PostTypeId="2" ParentId="1" Score="3" CreationDate="2020-01-01T00:00:00.000"
//!        Body="&lt;p&gt;Use $x^2 \ge 0$.&lt;/p&gt;" />
//!   <row Id="1" PostTypeId="1" AcceptedAnswerId="2" Score="5" CreationDate="2019-12-31T00:00:00.000"
//!        Title="Why is a square non-negative?" Tags="|algebra|" Body="&lt;p&gt;Why?&lt;/p&gt;" />
//! </posts>"#;
//! let mut joiner = AnswerJoiner::default();
//! let mut answers = Vec::new();
//! for event in PostsReader::new(xml.as_bytes()) {
//!     if let RowEvent::Post(post) = event.unwrap() {
//!         answers.extend(joiner.push(post).unwrap());
//!     }
//! }
//! assert_eq!(answers.len(), 1);
//! assert!(answers[0].accepted);
//! assert_eq!(answers[0].question_title, "Why is a square non-negative?");
//! assert_eq!(answers[0].question_body_html, "<p>Why?</p>");
//! assert_eq!(mathrank_dump::html_to_text(&answers[0].body_html), "Use $x^2 \\ge 0$.");
//! ```

mod bodies;
mod hash;
mod html;
mod join;
mod limit;
mod reader;
mod row_hash;
mod sample;
mod source;

pub use bodies::{QuestionBodies, RECENT_BODY_BYTES};
pub use hash::{content_hash, join_tags};
pub use html::{html_to_text, looks_like_html, question_text};
pub use join::{AnswerJoiner, JoinSummary, JoinedAnswer, MAX_WAITING_BYTES};
pub use reader::{MAX_ROW_BYTES, Post, PostKind, PostsReader, RowEvent, SkippedRow, parse_creation_date, parse_tags};
pub use row_hash::{RowDigest, RowHasher};
pub use sample::{SAMPLE_NAME, SAMPLE_POSTS_XML};
pub use source::{CountingReader, DumpSource};

/// Errors of the dump reader. Row-level problems are not errors: they come back as
/// [`RowEvent::Skipped`] so that one bad row never stops a dump.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read dump {path} (check that the path exists and is readable)")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a Stack Exchange Posts.xml: {reason}")]
    NotPostsXml { path: String, reason: String },
    #[error("directory {path} holds no Posts.xml; pass the file itself or the site's .7z archive")]
    NoPostsInDirectory { path: String },
    #[error("cannot read 7z archive {path}: {reason}")]
    SevenZip { path: String, reason: String },
    #[error("7z archive {path} has no Posts.xml entry (entries: {entries})")]
    NoPostsInArchive { path: String, entries: String },
    #[error("malformed XML at byte {position}: {reason}; the dump is probably truncated or corrupt")]
    Xml { position: u64, reason: String },
    #[error("question-body spill file {path} (check the free disk space next to the index)")]
    Spill {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
