//! BM25 retrieval with queries built from analyzer tokens (never through the query parser,
//! since LaTeX is full of its syntax: `^ + \ :`).

use std::collections::HashMap;
use std::ops::Bound;

use serde::Serialize;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DateTime, Searcher, TantivyDocument, Term};

use crate::analysis::{MATH_ANALYZER, PROSE_ANALYZER, analyze, math_analyzer, prose_analyzer};
use crate::schema::Fields;
use crate::{Error, Result};

/// Field weights: the answer's own text counts most; its question's title and tags help a
/// short answer that only makes sense with its question.
const BODY_WEIGHT: f32 = 1.0;
const TITLE_WEIGHT: f32 = 0.6;
const TAGS_WEIGHT: f32 = 0.3;
const BODY_MATH_WEIGHT: f32 = 0.8;
const TITLE_MATH_WEIGHT: f32 = 0.4;

/// Restrictions on which answers may match. Empty means no restriction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Filters {
    /// The question has at least one of these tags.
    pub tags_any: Vec<String>,
    /// The question has all of these tags.
    pub tags_all: Vec<String>,
    /// Answer score (votes) at least this.
    pub min_votes: Option<i64>,
    /// Only accepted answers.
    pub accepted_only: bool,
    /// Created at or after (Unix seconds).
    pub created_from: Option<i64>,
    /// Created before (Unix seconds, exclusive).
    pub created_to: Option<i64>,
}

/// A first-stage query.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SearchRequest {
    /// The question: title and body, plain text with LaTeX (convert HTML before).
    pub text: String,
    pub top_k: usize,
    pub filters: Filters,
    /// Keep at most this many distinct terms per analyzer, the rarest first (long questions
    /// have hundreds; the rare ones carry the signal). `None` keeps all.
    pub max_terms: Option<usize>,
}

impl SearchRequest {
    pub fn new(text: impl Into<String>, top_k: usize) -> Self {
        Self { text: text.into(), top_k, filters: Filters::default(), max_terms: Some(DEFAULT_MAX_TERMS) }
    }
}

/// Default cap on distinct query terms per analyzer.
pub const DEFAULT_MAX_TERMS: usize = 64;

/// One retrieved answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub answer_id: u64,
    pub question_id: u64,
    pub title: String,
    pub tags: Vec<String>,
    pub votes: i64,
    pub accepted: bool,
    /// Unix seconds.
    pub created: i64,
    /// The answer text (LaTeX kept): what the reranker reads.
    pub body: String,
    pub bm25_score: f32,
    /// 1-based rank in the BM25 list.
    pub bm25_rank: usize,
}

/// Cuts `text` to about `max_chars` characters at a word boundary, whitespace folded.
pub fn snippet(text: &str, max_chars: usize) -> String {
    let folded: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.chars().count() <= max_chars {
        return folded;
    }
    let cut = folded.char_indices().nth(max_chars).map_or(folded.len(), |(i, _)| i);
    let cut = folded[..cut].rfind(' ').filter(|&space| space > cut / 2).unwrap_or(cut);
    format!("{}…", &folded[..cut])
}

pub(crate) fn run_search(searcher: &Searcher, fields: &Fields, request: &SearchRequest) -> Result<Vec<Hit>> {
    if request.top_k == 0 {
        return Ok(Vec::new());
    }
    let Some(text_query) = text_query(searcher, fields, &request.text, request.max_terms)? else {
        return Ok(Vec::new());
    };
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, text_query)];
    clauses.extend(filter_clauses(fields, &request.filters)?.into_iter().map(|filter| {
        // Filters decide membership only; they must not move BM25 scores.
        (Occur::Must, Box::new(ConstScoreQuery::new(filter, 0.0)) as Box<dyn Query>)
    }));
    let query = BooleanQuery::new(clauses);
    let top = searcher.search(&query, &TopDocs::with_limit(request.top_k).order_by_score())?;
    top.into_iter()
        .enumerate()
        .map(|(rank, (score, address))| {
            let doc: TantivyDocument = searcher.doc(address)?;
            Ok(hit_from_doc(fields, &doc, score, rank + 1))
        })
        .collect()
}

pub(crate) fn hit_from_doc(fields: &Fields, doc: &TantivyDocument, bm25_score: f32, bm25_rank: usize) -> Hit {
    let u64_of = |field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or_default();
    let str_of = |field| doc.get_first(field).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    Hit {
        answer_id: u64_of(fields.answer_id),
        question_id: u64_of(fields.question_id),
        title: str_of(fields.title),
        tags: doc.get_all(fields.tags).filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        votes: doc.get_first(fields.votes).and_then(|v| v.as_i64()).unwrap_or_default(),
        accepted: doc.get_first(fields.accepted).and_then(|v| v.as_bool()).unwrap_or_default(),
        created: doc
            .get_first(fields.created)
            .and_then(|v| v.as_datetime())
            .map(|d| d.into_timestamp_secs())
            .unwrap_or_default(),
        body: str_of(fields.body),
        bm25_score,
        bm25_rank,
    }
}

/// Distinct terms with their query frequency, capped to the `max_terms` rarest in `idf_field`.
fn weighted_terms(
    searcher: &Searcher,
    terms: Vec<String>,
    idf_field: tantivy::schema::Field,
    max_terms: Option<usize>,
) -> Result<Vec<(String, f32)>> {
    let mut counts: HashMap<String, u32> = HashMap::new();
    for term in terms {
        *counts.entry(term).or_default() += 1;
    }
    let mut weighted: Vec<(String, u32, u64)> = Vec::with_capacity(counts.len());
    for (term, count) in counts {
        let doc_freq = searcher.doc_freq(&Term::from_field_text(idf_field, &term))?;
        weighted.push((term, count, doc_freq));
    }
    // Rarest first; ties by text so that the same query always gives the same terms.
    weighted.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
    if let Some(max) = max_terms {
        weighted.truncate(max);
    }
    Ok(weighted.into_iter().map(|(term, count, _)| (term, 1.0 + (count as f32).ln())).collect())
}

fn text_query(
    searcher: &Searcher,
    fields: &Fields,
    text: &str,
    max_terms: Option<usize>,
) -> Result<Option<Box<dyn Query>>> {
    // The analyzers registered on the index: building them (stop-word set, stemmer) per query
    // would be work on the hot path.
    let tokenizers = searcher.index().tokenizers();
    let mut prose_analyzer = tokenizers.get(PROSE_ANALYZER).unwrap_or_else(prose_analyzer);
    let mut math_analyzer = tokenizers.get(MATH_ANALYZER).unwrap_or_else(math_analyzer);
    let prose = weighted_terms(searcher, analyze(&mut prose_analyzer, text), fields.body, max_terms)?;
    let math_text = math_view_of_query(text);
    let math = weighted_terms(searcher, analyze(&mut math_analyzer, &math_text), fields.body_math, max_terms)?;
    let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    let mut add = |field, term: &str, weight: f32| {
        let query = TermQuery::new(Term::from_field_text(field, term), IndexRecordOption::WithFreqs);
        let boxed: Box<dyn Query> = if (weight - 1.0).abs() < f32::EPSILON {
            Box::new(query)
        } else {
            Box::new(BoostQuery::new(Box::new(query), weight))
        };
        should.push((Occur::Should, boxed));
    };
    for (term, weight) in &prose {
        add(fields.body, term, BODY_WEIGHT * weight);
        add(fields.title, term, TITLE_WEIGHT * weight);
        add(fields.tags_text, term, TAGS_WEIGHT * weight);
    }
    for (term, weight) in &math {
        add(fields.body_math, term, BODY_MATH_WEIGHT * weight);
        add(fields.title_math, term, TITLE_MATH_WEIGHT * weight);
    }
    if should.is_empty() {
        return Ok(None);
    }
    Ok(Some(Box::new(BooleanQuery::new(should))))
}

/// A query typed as bare LaTeX (`\int_0^1 x^2 dx`, no dollars) is read as math too; text
/// that already delimits its math is analysed as written.
fn math_view_of_query(text: &str) -> std::borrow::Cow<'_, str> {
    let has_math = crate::analysis::segments(text).iter().any(|s| matches!(s, crate::analysis::Segment::Math(..)));
    let bytes = text.as_bytes();
    let has_command = bytes.windows(2).any(|w| w[0] == b'\\' && w[1].is_ascii_alphabetic());
    let looks_like_latex = has_command || text.contains(['^', '_']);
    if !has_math && looks_like_latex {
        std::borrow::Cow::Owned(format!("${}$", text.replace('$', "")))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn filter_clauses(fields: &Fields, filters: &Filters) -> Result<Vec<Box<dyn Query>>> {
    let tag_query = |tag: &String| -> Box<dyn Query> {
        Box::new(TermQuery::new(Term::from_field_text(fields.tags, tag.trim()), IndexRecordOption::Basic))
    };
    let mut clauses: Vec<Box<dyn Query>> = Vec::new();
    if !filters.tags_any.is_empty() {
        let any = filters.tags_any.iter().map(|tag| (Occur::Should, tag_query(tag))).collect();
        clauses.push(Box::new(BooleanQuery::new(any)));
    }
    clauses.extend(filters.tags_all.iter().map(tag_query));
    if let Some(min_votes) = filters.min_votes {
        clauses.push(Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_i64(fields.votes, min_votes)),
            Bound::Unbounded,
        )));
    }
    if filters.accepted_only {
        clauses.push(Box::new(TermQuery::new(Term::from_field_bool(fields.accepted, true), IndexRecordOption::Basic)));
    }
    if let (Some(from), Some(to)) = (filters.created_from, filters.created_to)
        && from >= to
    {
        return Err(Error::InvalidFilter(format!("created_from ({from}) must be before created_to ({to})")));
    }
    if filters.created_from.is_some() || filters.created_to.is_some() {
        let bound = |secs: Option<i64>, inclusive: bool| match secs {
            None => Bound::Unbounded,
            Some(secs) => {
                let term = Term::from_field_date(fields.created, DateTime::from_timestamp_secs(secs));
                if inclusive { Bound::Included(term) } else { Bound::Excluded(term) }
            }
        };
        clauses.push(Box::new(RangeQuery::new(bound(filters.created_from, true), bound(filters.created_to, false))));
    }
    Ok(clauses)
}
