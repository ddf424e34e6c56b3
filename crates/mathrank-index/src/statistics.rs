//! BM25 statistics over live documents only, so that replicas agree.
//!
//! tantivy's [`Searcher`] counts what its segments hold: the document count is the sum of
//! `max_doc`, a field's token count and a term's document frequency include documents that are
//! deleted but not yet merged away. Two replicas holding the same answers then score them
//! differently, because each has its own commits, segments and merges. [`LiveStatistics`]
//! counts live documents only, so its statistics are a function of the set of live documents:
//!
//! - the document count is the sum of the segments' `num_docs`;
//! - a field's token count is the sum, over live documents, of their field norm (the length
//!   tantivy stores per document, quantised above 40 tokens, but the same wherever the
//!   document lives). Per segment it is the sum over all its documents (cached per segment,
//!   which never changes) minus the sum over its deleted ones;
//! - a term's document frequency is, per segment, the postings' count minus the deleted
//!   documents holding the term, found by seeking the postings to each deleted document, or by
//!   reading the postings against the alive bitset when they are shorter than the deleted list.
//!
//! What depends on a segment's deletes (its sorted deleted documents, its live token counts) is
//! cached per searcher generation in a [`StatisticsCache`], one generation at a time, with the
//! live document frequencies queries asked for (up to a bound); a segment whose deletes did not
//! change is carried over to the next generation.
//!
//! ```
//! use mathrank_index::statistics::StatisticsCache;
//! use tantivy::query::Bm25StatisticsProvider;
//! use tantivy::schema::{Schema, TEXT};
//! use tantivy::{Index, IndexWriter, TantivyDocument, Term};
//!
//! let mut schema = Schema::builder();
//! let text = schema.add_text_field("text", TEXT);
//! let index = Index::create_in_ram(schema.build());
//! let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
//! for words in ["prime ring", "prime field", "group"] {
//!     let mut doc = TantivyDocument::default();
//!     doc.add_text(text, words);
//!     writer.add_document(doc).unwrap();
//! }
//! writer.commit().unwrap();
//! writer.delete_term(Term::from_field_text(text, "ring"));
//! writer.commit().unwrap();
//! let searcher = index.reader().unwrap().searcher();
//! let cache = StatisticsCache::default();
//! let live = cache.statistics(&searcher).unwrap();
//! assert_eq!(live.total_num_docs().unwrap(), 2);
//! assert_eq!(live.total_num_tokens(text).unwrap(), 3);
//! assert_eq!(live.doc_freq(&Term::from_field_text(text, "prime")).unwrap(), 1);
//! // tantivy's own statistics still count the deleted document.
//! assert_eq!(searcher.doc_freq(&Term::from_field_text(text, "prime")).unwrap(), 2);
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tantivy::fieldnorm::FieldNormReader;
use tantivy::index::SegmentId;
use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, Opstamp, Searcher, SegmentReader, TERMINATED, Term};

/// Live document frequencies remembered per generation, at most (about 10 MB).
const MAX_REMEMBERED_TERMS: usize = 100_000;

/// Fields whose token counts are kept: the indexed ones with field norms.
fn normed_fields(searcher: &Searcher) -> Vec<Field> {
    searcher
        .schema()
        .fields()
        .filter(|(_, entry)| entry.is_indexed() && entry.has_fieldnorms())
        .map(|(field, _)| field)
        .collect()
}

/// The field norms of a field in a segment; a field without them counts 1 per document (as
/// tantivy scores it).
fn fieldnorms(reader: &SegmentReader, field: Field) -> tantivy::Result<FieldNormReader> {
    Ok(reader.fieldnorms_readers().get_field(field)?.unwrap_or_else(|| FieldNormReader::constant(reader.max_doc(), 1)))
}

/// A segment's statistics at one delete opstamp.
#[derive(Debug)]
struct SegmentStatistics {
    id: SegmentId,
    delete_opstamp: Option<Opstamp>,
    /// Per normed field, the field norms of all its documents, summed (deletes never change it).
    all_tokens: Arc<Vec<(Field, u64)>>,
    /// Deleted documents, ascending.
    deleted: Vec<DocId>,
    /// Per normed field, the field norms of its live documents, summed.
    live_tokens: Vec<(Field, u64)>,
}

impl SegmentStatistics {
    fn new(reader: &SegmentReader, fields: &[Field], previous: Option<&Self>) -> tantivy::Result<Self> {
        let all_tokens = match previous.filter(|previous| previous.id == reader.segment_id()) {
            Some(previous) => Arc::clone(&previous.all_tokens),
            None => {
                let mut sums = Vec::with_capacity(fields.len());
                for &field in fields {
                    let norms = fieldnorms(reader, field)?;
                    sums.push((field, (0..reader.max_doc()).map(|doc| u64::from(norms.fieldnorm(doc))).sum()));
                }
                Arc::new(sums)
            }
        };
        let deleted: Vec<DocId> = match reader.alive_bitset() {
            Some(alive) if reader.num_deleted_docs() > 0 => {
                (0..reader.max_doc()).filter(|&doc| alive.is_deleted(doc)).collect()
            }
            _ => Vec::new(),
        };
        let mut live_tokens = Vec::with_capacity(fields.len());
        for &(field, all) in all_tokens.iter() {
            let norms = fieldnorms(reader, field)?;
            let gone: u64 = deleted.iter().map(|&doc| u64::from(norms.fieldnorm(doc))).sum();
            live_tokens.push((field, all - gone));
        }
        Ok(Self { id: reader.segment_id(), delete_opstamp: reader.delete_opstamp(), all_tokens, deleted, live_tokens })
    }

    fn is_for(&self, reader: &SegmentReader) -> bool {
        self.id == reader.segment_id() && self.delete_opstamp == reader.delete_opstamp()
    }

    /// Documents of the segment holding `term` that are alive.
    fn doc_freq(&self, reader: &SegmentReader, term: &Term) -> tantivy::Result<u64> {
        let inverted_index = reader.inverted_index(term.field())?;
        let Some(term_info) = inverted_index.get_term_info(term)? else { return Ok(0) };
        let doc_freq = term_info.doc_freq;
        if self.deleted.is_empty() {
            return Ok(u64::from(doc_freq));
        }
        let mut postings = inverted_index.read_block_postings_from_terminfo(&term_info, IndexRecordOption::Basic)?;
        let mut deleted_holders = 0u32;
        if self.deleted.len() as u64 <= u64::from(doc_freq) {
            // Few deletes: seek to each (a block is decoded only when a deleted document may
            // be in it).
            for &doc in &self.deleted {
                let pos = postings.seek(doc);
                let found = postings.doc(pos);
                if found == TERMINATED {
                    break;
                }
                deleted_holders += u32::from(found == doc);
            }
        } else if let Some(alive) = reader.alive_bitset() {
            // Short postings: read them all against the alive bitset.
            loop {
                let docs = postings.docs();
                if docs.is_empty() {
                    break;
                }
                deleted_holders += docs.iter().filter(|&&doc| alive.is_deleted(doc)).count() as u32;
                postings.advance();
            }
        }
        Ok(u64::from(doc_freq - deleted_holders.min(doc_freq)))
    }
}

/// The statistics of one searcher's segments.
#[derive(Debug)]
struct Snapshot {
    /// The searcher generation it was computed for.
    generation: u64,
    segments: Vec<Arc<SegmentStatistics>>,
    total_docs: u64,
    tokens: Vec<(Field, u64)>,
    /// Live document frequencies asked for, shared by the queries of this generation (a
    /// query asks for each term more than once, and common terms come back in most queries).
    doc_freqs: Mutex<HashMap<Term, u64>>,
}

impl Snapshot {
    fn new(searcher: &Searcher, previous: Option<&Snapshot>) -> tantivy::Result<Self> {
        let fields = normed_fields(searcher);
        let mut segments = Vec::with_capacity(searcher.segment_readers().len());
        let mut tokens: Vec<(Field, u64)> = fields.iter().map(|&field| (field, 0)).collect();
        let mut total_docs = 0;
        for reader in searcher.segment_readers() {
            let same_segment =
                previous.and_then(|previous| previous.segments.iter().find(|s| s.id == reader.segment_id()));
            let segment = match same_segment {
                Some(segment) if segment.is_for(reader) => Arc::clone(segment),
                other => Arc::new(SegmentStatistics::new(reader, &fields, other.map(|s| &**s))?),
            };
            for (sum, &(_, live)) in tokens.iter_mut().zip(&segment.live_tokens) {
                sum.1 += live;
            }
            total_docs += u64::from(reader.num_docs());
            segments.push(segment);
        }
        let generation = searcher.generation().generation_id();
        Ok(Self { generation, segments, total_docs, tokens, doc_freqs: Mutex::new(HashMap::new()) })
    }

    /// Whether it describes the searcher's segments, in its order, at their current deletes.
    fn is_for(&self, searcher: &Searcher) -> bool {
        let readers = searcher.segment_readers();
        self.segments.len() == readers.len() && self.segments.iter().zip(readers).all(|(s, reader)| s.is_for(reader))
    }
}

/// Live statistics of the last searcher asked for; see the module documentation.
#[derive(Debug, Default)]
pub struct StatisticsCache {
    last: Mutex<Option<Arc<Snapshot>>>,
}

impl StatisticsCache {
    /// The live statistics of `searcher`. The first call after a commit reads the deleted
    /// documents of the segments whose deletes changed (and sums the field norms of new
    /// segments); later calls for the same segments reuse them.
    pub fn statistics<'s>(&self, searcher: &'s Searcher) -> tantivy::Result<LiveStatistics<'s>> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let snapshot = match last {
            Some(last) if last.is_for(searcher) => last,
            last => {
                let snapshot = Arc::new(Snapshot::new(searcher, last.as_deref())?);
                let mut slot = self.last.lock().unwrap_or_else(PoisonError::into_inner);
                // A query on an older searcher does not push out a newer generation.
                let newer = slot.as_ref().is_none_or(|kept| kept.generation <= snapshot.generation);
                if newer {
                    *slot = Some(Arc::clone(&snapshot));
                }
                snapshot
            }
        };
        Ok(LiveStatistics { searcher, snapshot })
    }
}

/// BM25 statistics of one searcher over its live documents.
pub struct LiveStatistics<'s> {
    searcher: &'s Searcher,
    snapshot: Arc<Snapshot>,
}

impl std::fmt::Debug for LiveStatistics<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStatistics").field("total_docs", &self.snapshot.total_docs).finish()
    }
}

impl LiveStatistics<'_> {
    /// The searcher whose statistics these are.
    pub fn searcher(&self) -> &Searcher {
        self.searcher
    }
}

impl Bm25StatisticsProvider for LiveStatistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        match self.snapshot.tokens.iter().find(|(normed, _)| *normed == field) {
            Some(&(_, tokens)) => Ok(tokens),
            // Without field norms every document counts one token, as tantivy scores it.
            None => Ok(self.snapshot.total_docs),
        }
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.snapshot.total_docs)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let remembered = || self.snapshot.doc_freqs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&doc_freq) = remembered().get(term) {
            return Ok(doc_freq);
        }
        let mut doc_freq = 0;
        for (segment, reader) in self.snapshot.segments.iter().zip(self.searcher.segment_readers()) {
            doc_freq += segment.doc_freq(reader, term)?;
        }
        let mut doc_freqs = remembered();
        if doc_freqs.len() >= MAX_REMEMBERED_TERMS {
            doc_freqs.clear();
        }
        doc_freqs.insert(term.clone(), doc_freq);
        Ok(doc_freq)
    }
}

#[cfg(test)]
mod tests;
