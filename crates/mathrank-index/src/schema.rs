//! The index schema and the mapping from a joined answer to a document.
//!
//! Two fields are searched, one per analyzer: `prose` (words) and `math` (LaTeX symbols and
//! bigrams). Each holds the answer, its question's title and body (and, for prose, its tags),
//! every part repeated a number of times ([`FieldRepeats`]): BM25F's field weights as term
//! frequency multiples fixed at index time. A query term then reads one posting list, where a
//! field per part made it read up to four.

use mathrank_dump::{JoinedAnswer, html_to_text};
use serde::{Deserialize, Serialize};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{DateTime, TantivyDocument};

use crate::analysis::{MATH_ANALYZER, PROSE_ANALYZER, repeated};

/// Bumped whenever the schema or the stored text changes (an index must then be rebuilt).
/// 2: titles and bodies hold the authors' text (BeautifulSoup `.text` after the math spans).
/// 3: each answer's document also holds its question's body (`question`, `question_math`).
/// 4: one `prose` and one `math` field, each part of the thread repeated ([`FieldRepeats`]),
///    instead of a field per part.
pub const SCHEMA_VERSION: u32 = 4;

/// How many times each part of a thread counts in the searched fields (0 leaves it out): the
/// weights of BM25F, as term frequency multiples. They are fixed when the index is built and
/// recorded in its `meta.json`.
///
/// The defaults were chosen on the tuning half of `bench/known-items.jsonl` over the real
/// threads of `../shared`, with [`crate::FieldWeights`], from a grid of 480 settings
/// (`bench/tune-known-items.sh`, `bench/results-known-items-schema4-2026-11-27.txt`): every part
/// once, the title twice, is in the middle of the plateau of the best MRR@10. Counting the
/// question's body or the answer twice did worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldRepeats {
    pub body: u8,
    pub title: u8,
    pub tags: u8,
    pub question: u8,
    pub body_math: u8,
    pub title_math: u8,
    pub question_math: u8,
}

impl Default for FieldRepeats {
    fn default() -> Self {
        Self { body: 1, title: 2, tags: 1, question: 1, body_math: 1, title_math: 1, question_math: 1 }
    }
}

impl std::str::FromStr for FieldRepeats {
    type Err = String;

    /// `question=3,title=2` (parts not named keep their default).
    fn from_str(text: &str) -> Result<Self, String> {
        let mut repeats = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("{part:?} is not PART=TIMES"))?;
            let value: u8 = value
                .trim()
                .parse()
                .map_err(|_| format!("the repeats of {key} must be a whole number from 0 to 255, not {value:?}"))?;
            let slot = match key.trim() {
                "body" => &mut repeats.body,
                "title" => &mut repeats.title,
                "tags" => &mut repeats.tags,
                "question" => &mut repeats.question,
                "body_math" => &mut repeats.body_math,
                "title_math" => &mut repeats.title_math,
                "question_math" => &mut repeats.question_math,
                other => {
                    return Err(format!(
                        "unknown part {other:?}; use body, title, tags, question, body_math, title_math, question_math"
                    ));
                }
            };
            *slot = value;
        }
        Ok(repeats)
    }
}

impl std::fmt::Display for FieldRepeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "body={},title={},tags={},question={},body_math={},title_math={},question_math={}",
            self.body, self.title, self.tags, self.question, self.body_math, self.title_math, self.question_math
        )
    }
}

/// Handles of the schema's fields.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub answer_id: Field,
    pub question_id: Field,
    /// The question's title (stored for display, searched through `prose` and `math`).
    pub title: Field,
    /// The answer as plain text with LaTeX kept: the reranker's input (stored).
    pub body: Field,
    /// Raw tags for filtering (stored).
    pub tags: Field,
    /// Words of the answer, title, question body and tags (prose analysis, not stored).
    pub prose: Field,
    /// LaTeX of the answer, title and question body (math analysis, not stored).
    pub math: Field,
    pub votes: Field,
    pub accepted: Field,
    pub created: Field,
}

impl Fields {
    pub fn schema() -> (Schema, Fields) {
        let mut builder = Schema::builder();
        let analyzed = |analyzer: &str| {
            let indexing = TextFieldIndexing::default()
                .set_tokenizer(analyzer)
                .set_index_option(IndexRecordOption::WithFreqs)
                .set_fieldnorms(true);
            TextOptions::default().set_indexing_options(indexing)
        };
        let fields = Fields {
            answer_id: builder.add_u64_field("answer_id", INDEXED | STORED | FAST),
            question_id: builder.add_u64_field("question_id", INDEXED | STORED | FAST),
            title: builder.add_text_field("title", STORED),
            body: builder.add_text_field("body", STORED),
            tags: builder.add_text_field("tags", STRING | STORED),
            prose: builder.add_text_field("prose", analyzed(PROSE_ANALYZER)),
            math: builder.add_text_field("math", analyzed(MATH_ANALYZER)),
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
            body: field("body")?,
            tags: field("tags")?,
            prose: field("prose")?,
            math: field("math")?,
            votes: field("votes")?,
            accepted: field("accepted")?,
            created: field("created")?,
        })
    }

    /// The document of an answer; its HTML body, title and question body are converted to
    /// text here, once. Every index build (and any later writer of this schema) makes its
    /// documents here, so that the same repeats give the same terms.
    pub fn document(&self, answer: &JoinedAnswer, repeats: &FieldRepeats) -> TantivyDocument {
        let text = html_to_text(&answer.body_html);
        let title = html_to_text(&answer.question_title);
        let question = html_to_text(&answer.question_body_html);
        let mut doc = TantivyDocument::default();
        doc.add_u64(self.answer_id, answer.answer_id);
        doc.add_u64(self.question_id, answer.question_id);
        let mut add = |field, text: &str, times: u8| {
            if times > 0 && !text.is_empty() {
                doc.add_text(field, repeated(text, times));
            }
        };
        add(self.prose, &title, repeats.title);
        add(self.prose, &question, repeats.question);
        add(self.prose, &text, repeats.body);
        add(self.math, &title, repeats.title_math);
        add(self.math, &question, repeats.question_math);
        add(self.math, &text, repeats.body_math);
        if repeats.tags > 0 && !answer.tags.is_empty() {
            let words: Vec<String> = answer.tags.iter().map(|tag| tag.replace('-', " ")).collect();
            add(self.prose, &words.join(" "), repeats.tags);
        }
        for tag in &answer.tags {
            doc.add_text(self.tags, tag);
        }
        doc.add_text(self.title, title);
        doc.add_text(self.body, text);
        doc.add_i64(self.votes, answer.votes);
        doc.add_bool(self.accepted, answer.accepted);
        doc.add_date(self.created, DateTime::from_timestamp_secs(answer.created));
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::FieldRepeats;

    #[test]
    fn repeats_parse_and_print() {
        let repeats: FieldRepeats = "question=3, title=0".parse().unwrap();
        assert_eq!(repeats, FieldRepeats { question: 3, title: 0, ..FieldRepeats::default() });
        assert_eq!(repeats.to_string().parse::<FieldRepeats>().unwrap(), repeats);
        assert!("question=1.5".parse::<FieldRepeats>().unwrap_err().contains("whole number"));
        assert!("answer=1".parse::<FieldRepeats>().unwrap_err().contains("unknown part"));
        assert!("question".parse::<FieldRepeats>().unwrap_err().contains("PART=TIMES"));
    }
}
