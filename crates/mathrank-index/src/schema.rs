//! The index schema and the mapping from a joined answer to a document.

use mathrank_dump::{JoinedAnswer, html_to_text};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{DateTime, TantivyDocument};

use crate::analysis::{MATH_ANALYZER, PROSE_ANALYZER};

/// Bumped whenever the schema or the stored text changes (an index must then be rebuilt).
/// 2: titles and bodies hold the authors' text (BeautifulSoup `.text` after the math spans).
/// 3: each answer's document also holds its question's body (`question`, `question_math`).
pub const SCHEMA_VERSION: u32 = 3;

/// Handles of the schema's fields.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub answer_id: Field,
    pub question_id: Field,
    /// The question's title, prose analysis (stored).
    pub title: Field,
    pub title_math: Field,
    /// The answer as plain text with LaTeX kept: the reranker's input (stored).
    pub body: Field,
    pub body_math: Field,
    /// Raw tags for filtering (stored).
    pub tags: Field,
    /// Tags as words, so a query mentioning "eigenvalues" meets the tag `eigenvalues`.
    pub tags_text: Field,
    /// The question's body, prose analysis (not stored): a new question usually resembles an
    /// existing question more than any of its answers.
    pub question: Field,
    pub question_math: Field,
    pub votes: Field,
    pub accepted: Field,
    pub created: Field,
}

impl Fields {
    pub fn schema() -> (Schema, Fields) {
        let mut builder = Schema::builder();
        let analyzed = |analyzer: &str, stored: bool| {
            let indexing = TextFieldIndexing::default()
                .set_tokenizer(analyzer)
                .set_index_option(IndexRecordOption::WithFreqs)
                .set_fieldnorms(true);
            let options = TextOptions::default().set_indexing_options(indexing);
            if stored { options.set_stored() } else { options }
        };
        let fields = Fields {
            answer_id: builder.add_u64_field("answer_id", INDEXED | STORED | FAST),
            question_id: builder.add_u64_field("question_id", INDEXED | STORED | FAST),
            title: builder.add_text_field("title", analyzed(PROSE_ANALYZER, true)),
            title_math: builder.add_text_field("title_math", analyzed(MATH_ANALYZER, false)),
            body: builder.add_text_field("body", analyzed(PROSE_ANALYZER, true)),
            body_math: builder.add_text_field("body_math", analyzed(MATH_ANALYZER, false)),
            tags: builder.add_text_field("tags", STRING | STORED),
            tags_text: builder.add_text_field("tags_text", analyzed(PROSE_ANALYZER, false)),
            question: builder.add_text_field("question", analyzed(PROSE_ANALYZER, false)),
            question_math: builder.add_text_field("question_math", analyzed(MATH_ANALYZER, false)),
            votes: builder.add_i64_field("votes", INDEXED | STORED | FAST),
            accepted: builder.add_bool_field("accepted", INDEXED | STORED | FAST),
            created: builder.add_date_field("created", INDEXED | STORED | FAST),
        };
        (builder.build(), fields)
    }

    pub fn from_schema(schema: &Schema) -> crate::Result<Fields> {
        let field = |name: &str| {
            schema.get_field(name).map_err(|_| crate::Error::Incompatible {
                path: String::new(),
                reason: format!("the index has no field {name:?}"),
            })
        };
        Ok(Fields {
            answer_id: field("answer_id")?,
            question_id: field("question_id")?,
            title: field("title")?,
            title_math: field("title_math")?,
            body: field("body")?,
            body_math: field("body_math")?,
            tags: field("tags")?,
            tags_text: field("tags_text")?,
            question: field("question")?,
            question_math: field("question_math")?,
            votes: field("votes")?,
            accepted: field("accepted")?,
            created: field("created")?,
        })
    }

    /// The document of an answer; its HTML body, title and question body are converted to
    /// text here, once.
    pub fn document(&self, answer: &JoinedAnswer) -> TantivyDocument {
        let text = html_to_text(&answer.body_html);
        let title = html_to_text(&answer.question_title);
        let question = html_to_text(&answer.question_body_html);
        let mut doc = TantivyDocument::default();
        doc.add_u64(self.answer_id, answer.answer_id);
        doc.add_u64(self.question_id, answer.question_id);
        doc.add_text(self.title_math, &title);
        doc.add_text(self.title, title);
        doc.add_text(self.body_math, &text);
        doc.add_text(self.body, text);
        doc.add_text(self.question_math, &question);
        doc.add_text(self.question, question);
        for tag in &answer.tags {
            doc.add_text(self.tags, tag);
            doc.add_text(self.tags_text, tag.replace('-', " "));
        }
        doc.add_i64(self.votes, answer.votes);
        doc.add_bool(self.accepted, answer.accepted);
        doc.add_date(self.created, DateTime::from_timestamp_secs(answer.created));
        doc
    }
}
