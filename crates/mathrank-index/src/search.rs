//! BM25 retrieval with queries built from analyzer tokens (never through the query parser,
//! since LaTeX is full of its syntax: `^ + \ :`).

use std::collections::HashMap;
use std::ops::Bound;

use serde::Serialize;
use tantivy::query::Bm25StatisticsProvider;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::{DateTime, TantivyDocument, Term};

use crate::analysis::{MATH_ANALYZER, PROSE_ANALYZER, analyze, math_analyzer, prose_analyzer, strip_repeat_mark};
use crate::maxscore::{PruningStats, TermUnion, TieBreak, top_k};
use crate::schema::Fields;
use crate::statistics::LiveStatistics;
use crate::{Error, Result};

/// Query-time weights of the two searched fields: a prose term's BM25 score counts `prose`
/// times, a math term's `math` times. How much the answer, the question's title, body and tags
/// count within each field is fixed when the index is built ([`crate::FieldRepeats`]).
/// The defaults were tuned with those repeats on the tuning half of `bench/known-items.jsonl`
/// (`bench/results-known-items-schema4-2026-11-27.txt`): math terms are many per question and
/// common, so each counts little (0.1 to 0.15 tie for the best MRR@10; 0.25 and up do worse).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldWeights {
    pub prose: f32,
    pub math: f32,
}

impl Default for FieldWeights {
    fn default() -> Self {
        Self { prose: 1.0, math: 0.125 }
    }
}

/// Largest accepted weight: scores are summed in fixed point, which bounds them.
const MAX_WEIGHT: f32 = 1000.0;

impl std::str::FromStr for FieldWeights {
    type Err = String;

    /// `prose=1,math=0.5` (fields not named keep their default).
    fn from_str(text: &str) -> Result<Self, String> {
        let mut weights = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("{part:?} is not FIELD=WEIGHT"))?;
            let value: f32 = value.trim().parse().map_err(|_| format!("{value:?} is not a number"))?;
            if !value.is_finite() || !(0.0..=MAX_WEIGHT).contains(&value) {
                return Err(format!("the weight of {key} must be a number from 0 to {MAX_WEIGHT}"));
            }
            let slot = match key.trim() {
                "prose" => &mut weights.prose,
                "math" => &mut weights.math,
                part @ ("body" | "title" | "tags" | "question" | "body_math" | "title_math" | "question_math") => {
                    return Err(format!(
                        "{part} is weighed when the index is built (its field repeats); at query time only prose and math have weights"
                    ));
                }
                other => return Err(format!("unknown field {other:?}; use prose or math")),
            };
            *slot = value;
        }
        Ok(weights)
    }
}

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
    /// have hundreds; the rare ones carry the signal). Terms no document holds never take a
    /// place. `None` keeps all.
    pub max_terms: Option<usize>,
    pub weights: FieldWeights,
}

impl SearchRequest {
    pub fn new(text: impl Into<String>, top_k: usize) -> Self {
        Self {
            text: text.into(),
            top_k,
            filters: Filters::default(),
            max_terms: Some(DEFAULT_MAX_TERMS),
            weights: FieldWeights::default(),
        }
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

/// What one first-stage query cost: how many posting lists it read, how long they are, and
/// how much of them pruning skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SearchStats {
    /// Term clauses of the query (one posting list each).
    pub clauses: usize,
    /// Document frequencies of those posting lists, summed: the postings an exhaustive union
    /// would score.
    pub summed_doc_freq: u64,
    pub pruning: PruningStats,
}

/// Runs the first stage with statistics over live documents and ties broken by answer id, so
/// that two indexes holding the same answers return the same hits in the same order, with the
/// same scores, however their segments came about (replicas following one store).
pub(crate) fn run_search(
    statistics: &LiveStatistics<'_>,
    fields: &Fields,
    request: &SearchRequest,
    stats: &mut SearchStats,
) -> Result<Vec<Hit>> {
    if request.top_k == 0 {
        return Ok(Vec::new());
    }
    let searcher = statistics.searcher();
    let Some(mut query) = text_query(statistics, fields, &request.text, request.max_terms, &request.weights, stats)?
    else {
        return Ok(Vec::new());
    };
    let filters = filter_clauses(fields, &request.filters)?;
    if !filters.is_empty() {
        let all: Vec<(Occur, Box<dyn Query>)> = filters.into_iter().map(|filter| (Occur::Must, filter)).collect();
        query = query.with_filter(Box::new(BooleanQuery::new(all)));
    }
    let answer_id = searcher.schema().get_field_name(fields.answer_id);
    let top = top_k(searcher, statistics, &query, request.top_k, TieBreak::FastField(answer_id), &mut stats.pruning)?;
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

/// Distinct terms with their query frequency weight and document frequency, capped to the
/// `max_terms` rarest. A term no document holds could only take a place from one that matters.
fn weighted_terms(
    statistics: &LiveStatistics<'_>,
    terms: Vec<String>,
    field: Field,
    max_terms: Option<usize>,
) -> Result<Vec<(Term, f32, u64)>> {
    let mut counts: HashMap<String, u32> = HashMap::new();
    for term in terms {
        *counts.entry(term).or_default() += 1;
    }
    let mut weighted: Vec<(Term, u32, u64)> = Vec::with_capacity(counts.len());
    for (text, count) in counts {
        let term = Term::from_field_text(field, &text);
        let doc_freq = statistics.doc_freq(&term)?;
        if doc_freq > 0 {
            weighted.push((term, count, doc_freq));
        }
    }
    // Rarest first; ties by text so that the same query always gives the same terms.
    weighted.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.serialized_value_bytes().cmp(b.0.serialized_value_bytes())));
    if let Some(max) = max_terms {
        weighted.truncate(max);
    }
    Ok(weighted.into_iter().map(|(term, count, doc_freq)| (term, 1.0 + (count as f32).ln(), doc_freq)).collect())
}

fn text_query(
    statistics: &LiveStatistics<'_>,
    fields: &Fields,
    text: &str,
    max_terms: Option<usize>,
    weights: &FieldWeights,
    stats: &mut SearchStats,
) -> Result<Option<TermUnion>> {
    // The analyzers registered on the index: building them (stop-word set, stemmer) per query
    // would be work on the hot path.
    let tokenizers = statistics.searcher().index().tokenizers();
    let mut prose_analyzer = tokenizers.get(PROSE_ANALYZER).unwrap_or_else(prose_analyzer);
    let mut math_analyzer = tokenizers.get(MATH_ANALYZER).unwrap_or_else(math_analyzer);
    let text = delimit_bare_latex(strip_repeat_mark(text));
    let mut clauses = Vec::new();
    for (analyzer, field, weight) in
        [(&mut prose_analyzer, fields.prose, weights.prose), (&mut math_analyzer, fields.math, weights.math)]
    {
        if weight <= 0.0 {
            continue;
        }
        for (term, query_weight, doc_freq) in weighted_terms(statistics, analyze(analyzer, &text), field, max_terms)? {
            stats.clauses += 1;
            stats.summed_doc_freq += doc_freq;
            clauses.push((term, weight * query_weight));
        }
    }
    if clauses.is_empty() {
        return Ok(None);
    }
    Ok(Some(TermUnion::new(clauses)))
}

/// English words of one or two letters that are never math in a query ("a", "of", "is"):
/// a run of LaTeX does not reach across them.
const SHORT_WORDS: &[&str] = &[
    "a", "an", "as", "at", "be", "by", "do", "go", "he", "i", "if", "in", "is", "it", "me", "my", "no", "of", "on",
    "or", "so", "to", "up", "us", "we",
];

/// A query that writes LaTeX without delimiters (`integrate \int_0^1 x^2 dx please`) gets
/// `$..$` around each run of LaTeX, so that its math is read as math and its prose stays prose.
/// A word is LaTeX when it holds a command or `^ _ = + * / < > { } |`, or mixes digits and
/// letters (`2x`); short words (one letter, `dx`, numbers, brackets) join a run next to such a
/// word. Text that already delimits its math is taken as written.
pub fn delimit_bare_latex(text: &str) -> std::borrow::Cow<'_, str> {
    let has_math = crate::analysis::segments(text).iter().any(|s| matches!(s, crate::analysis::Segment::Math(..)));
    if has_math || text.contains('$') {
        return std::borrow::Cow::Borrowed(text);
    }
    let is_latex = |word: &str| {
        let bytes = word.as_bytes();
        let command = bytes.windows(2).any(|w| w[0] == b'\\' && w[1].is_ascii_alphabetic());
        let operator = word.contains(['^', '_', '=', '+', '*', '/', '<', '>', '{', '}', '|']);
        let mixed = word.chars().any(|c| c.is_ascii_digit()) && word.chars().any(|c| c.is_ascii_alphabetic());
        command || operator || mixed
    };
    let is_glue = |word: &str| {
        let letters = word.trim_matches(|c: char| !c.is_alphanumeric());
        let short = letters.len() <= 2 && letters.chars().all(|c| c.is_ascii_alphanumeric());
        let number = !letters.is_empty() && letters.chars().all(|c| c.is_ascii_digit() || c == '.');
        (short && !SHORT_WORDS.contains(&letters.to_ascii_lowercase().as_str())) || number
    };
    // Words with their byte ranges.
    let mut words: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    let kinds: Vec<(bool, bool)> = words.iter().map(|&(s, e)| (is_latex(&text[s..e]), is_glue(&text[s..e]))).collect();
    if !kinds.iter().any(|k| k.0) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut copied = 0;
    let mut i = 0;
    while i < words.len() {
        if !(kinds[i].0 || kinds[i].1) {
            i += 1;
            continue;
        }
        // A maximal run of LaTeX and glue words; it becomes math only if it holds LaTeX.
        let mut j = i;
        while j < words.len() && (kinds[j].0 || kinds[j].1) {
            j += 1;
        }
        if kinds[i..j].iter().any(|k| k.0) {
            let (from, to) = (words[i].0, words[j - 1].1);
            out.push_str(&text[copied..from]);
            out.push('$');
            out.push_str(&text[from..to].replace('$', ""));
            out.push('$');
            copied = to;
        }
        i = j;
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
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
