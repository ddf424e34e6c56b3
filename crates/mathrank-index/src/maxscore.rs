//! A disjunction of BM25 term clauses with MaxScore pruning: the first stage's query.
//!
//! [`TermUnion`] matches what a [`BooleanQuery`](tantivy::query::BooleanQuery) of `SHOULD`
//! clauses, each a [`TermQuery`](tantivy::query::TermQuery) in a
//! [`BoostQuery`](tantivy::query::BoostQuery), matches, and scores each clause exactly as that
//! term query does. [`top_k`] collects its best `k` documents without scoring most of the
//! others, as Lucene's `MaxScoreBulkScorer` does:
//!
//! - Documents are visited in windows. In each window every clause has an upper bound of the
//!   scores it can give there: the block maximum that tantivy stores per block of 128 postings
//!   when the clause's current block spans the window, else the bound of its term.
//! - Sorted by those bounds, the clauses whose bounds add up to no more than the current
//!   threshold (the k-th best score so far) are *non-essential*: a document matching only them
//!   cannot enter the top k. Only the *essential* clauses are iterated; their scores are
//!   summed into a window buffer, and the non-essential clauses are then looked up, from the
//!   highest bound down, only for the documents that can still beat the threshold.
//! - When the threshold rises past the point where the partition would change, the clauses
//!   are partitioned again. The threshold is carried from one segment to the next.
//!
//! The result is exact: the same documents, scores and order as scoring every match. Scores
//! are summed in 2^-32 fixed point, so the sum of a document's clause scores does not depend
//! on the order the clauses were visited in (pruning changes that order), and bounds compare
//! with sums without rounding. The sum is then rounded once to `f32`: tantivy's union adds
//! the same `f32` clause scores in `f32`, in an order that depends on its iteration, so the two
//! agree to within `f32` rounding. Ties are broken as [`TieBreak`] says: as tantivy's `TopDocs`
//! breaks them (by segment, then document id), or by a fast field such as the answer id, which
//! does not depend on how the index was written. Ordered by a field, a document whose score
//! equals the threshold may still enter (its key may be smaller), so pruning then drops only
//! the documents that cannot reach the threshold, rather than those that cannot beat it.
//!
//! Statistics: clauses are scored with the statistics the query is given (the searcher's, or
//! [`crate::statistics::LiveStatistics`] over live documents only).
//!
//! Block maxima: tantivy picks each block's best (field norm, term frequency) pair with the
//! average field length of the segment, while scores use the average of the statistics given,
//! so the stored pair is not always the best one. The bound corrects for the ratio of the two
//! averages (see [`Cursor::block_bound`]) so that it stays an upper bound, whatever the
//! scoring average is.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::BlockSegmentPostings;
use tantivy::query::{Bm25StatisticsProvider, Bm25Weight, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, DocId, DocSet, Score, Searcher, SegmentReader, TERMINATED, TantivyError, Term};

/// Documents per block of tantivy's postings.
const BLOCK: usize = 128;
/// Documents whose essential scores are summed in one pass (Lucene's inner window).
const INNER_WINDOW: u32 = 1 << 12;
/// Fixed-point scale of summed scores.
const SCALE: f64 = 4_294_967_296.0;
/// Relative slack added to every upper bound, far above the rounding of `f32` scores.
const BOUND_SLACK: f64 = 1e-5;
/// Largest sum of clause bounds accepted, in score units (the fixed-point sum must fit `i64`).
const MAX_BOUND_SUM: f64 = 1_073_741_824.0;
/// tantivy's BM25 `k1`.
const K1: f32 = 1.2;

fn to_fixed(score: Score) -> i64 {
    (f64::from(score) * SCALE) as i64
}

fn bound_to_fixed(bound: f64) -> i64 {
    (bound * SCALE).ceil() as i64
}

fn from_fixed(sum: i64) -> Score {
    (sum as f64 / SCALE) as Score
}

/// The largest fixed-point sum whose score is not above `threshold` (so that a document with
/// a larger sum beats it); -1 for a negative threshold.
fn fixed_threshold(threshold: Score) -> i64 {
    if threshold.is_nan() || threshold < 0.0 {
        return -1;
    }
    let midpoint = (f64::from(threshold) + f64::from(threshold.next_up())) / 2.0;
    if midpoint * SCALE >= 4.0e18 {
        return i64::MAX / 2;
    }
    let mut sum = (midpoint * SCALE).floor() as i64;
    while sum >= 0 && from_fixed(sum) > threshold {
        sum -= 1;
    }
    while from_fixed(sum + 1) <= threshold {
        sum += 1;
    }
    sum
}

/// The largest fixed-point sum whose score is below `threshold` (so that a document with a
/// larger sum reaches it); -1 for a threshold of zero or less.
fn fixed_below(threshold: Score) -> i64 {
    if threshold.is_nan() || threshold <= 0.0 {
        return -1;
    }
    // Scores are `f32`: below `threshold` is at most the float just under it.
    fixed_threshold(threshold.next_down())
}

/// tantivy's BM25 weight of a term (`idf * (1 + k1) * boost`), computed as tantivy computes it.
fn term_weight(doc_freq: u64, total_docs: u64, boost: Score) -> f64 {
    let x = ((total_docs - doc_freq.min(total_docs)) as Score + 0.5) / (doc_freq as Score + 0.5);
    f64::from((1.0 + x).ln() * (1.0 + K1) * boost)
}

/// A disjunction of terms, each scored by BM25 times its boost, optionally restricted to the
/// documents of a filter query (which never changes scores). See the module documentation.
#[derive(Debug)]
pub struct TermUnion {
    clauses: Vec<(Term, Score)>,
    filter: Option<Box<dyn Query>>,
}

impl Clone for TermUnion {
    fn clone(&self) -> Self {
        Self { clauses: self.clauses.clone(), filter: self.filter.as_ref().map(|filter| filter.box_clone()) }
    }
}

impl TermUnion {
    /// Clauses with a boost that is not a positive finite number are left out.
    pub fn new(clauses: Vec<(Term, Score)>) -> Self {
        let clauses = clauses.into_iter().filter(|(_, boost)| boost.is_finite() && *boost > 0.0).collect();
        Self { clauses, filter: None }
    }

    /// Only documents that `filter` matches can match.
    pub fn with_filter(mut self, filter: Box<dyn Query>) -> Self {
        self.filter = Some(filter);
        self
    }

    pub fn clauses(&self) -> &[(Term, Score)] {
        &self.clauses
    }

    fn union_weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<UnionWeight> {
        let mut clauses = Vec::with_capacity(self.clauses.len());
        let mut bound_sum = 0.0;
        for (term, boost) in &self.clauses {
            let clause = ClauseWeight::new(term, *boost, &enable_scoring)?;
            bound_sum += clause.weight;
            clauses.push(clause);
        }
        if bound_sum > MAX_BOUND_SUM {
            return Err(TantivyError::InvalidArgument(format!(
                "the clauses' boosts are too large: their scores could add up to {bound_sum:e}"
            )));
        }
        // Filters decide membership only.
        let filter_scoring = match enable_scoring {
            EnableScoring::Enabled { searcher, .. } => EnableScoring::disabled_from_searcher(searcher),
            disabled => disabled,
        };
        let filter = self.filter.as_ref().map(|filter| filter.weight(filter_scoring)).transpose()?;
        Ok(UnionWeight { clauses, filter, scoring: enable_scoring.is_scoring_enabled() })
    }
}

impl Query for TermUnion {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.union_weight(enable_scoring)?))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        for (term, _) in &self.clauses {
            visitor(term, false);
        }
        if let Some(filter) = &self.filter {
            filter.query_terms(visitor);
        }
    }
}

/// What pruning did in one search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruningStats {
    /// Segments searched.
    pub segments: usize,
    /// Windows whose clauses were partitioned.
    pub windows: u64,
    /// Windows skipped whole: no document in them could beat the threshold.
    pub skipped_windows: u64,
    /// Postings of essential clauses scored into windows.
    pub essential_postings: u64,
    /// Documents matched by an essential clause.
    pub candidates: u64,
    /// Non-essential clauses looked up for a candidate.
    pub lookups: u64,
    /// Documents scored in full and offered to the top k.
    pub scored: u64,
}

/// How documents of equal score are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieBreak<'a> {
    /// By segment, then document id, ascending, as tantivy's `TopDocs` orders them: it depends
    /// on how the index was written (its commits, segments and merges).
    Address,
    /// By a `u64` fast field, ascending (documents without a value last), then by address:
    /// with a field that identifies documents, the same on every index holding the same
    /// documents, however it was written.
    FastField(&'a str),
}

/// The best `k` documents of `query`, best first, scored with `statistics` (the searcher
/// itself for tantivy's, or [`crate::statistics::LiveStatistics`]) and ties ordered by
/// `tie_break`, with the threshold carried from segment to segment (tantivy's `TopDocs`
/// starts each segment from nothing).
pub fn top_k(
    searcher: &Searcher,
    statistics: &dyn Bm25StatisticsProvider,
    query: &TermUnion,
    k: usize,
    tie_break: TieBreak<'_>,
    stats: &mut PruningStats,
) -> tantivy::Result<Vec<(Score, DocAddress)>> {
    if k == 0 {
        return Ok(Vec::new());
    }
    let weight = query.union_weight(EnableScoring::enabled_from_statistics_provider(statistics, searcher))?;
    // Ordered by key, a document whose score equals the threshold can still enter: it is
    // offered, and the top k compares keys.
    let admit_ties = tie_break != TieBreak::Address;
    let mut top = TopK::new(k);
    for (ordinal, reader) in searcher.segment_readers().iter().enumerate() {
        let keys = match tie_break {
            TieBreak::Address => None,
            TieBreak::FastField(name) => Some(reader.fast_fields().u64(name)?),
        };
        let threshold = top.threshold();
        weight.prune(reader, threshold, admit_ties, stats, &mut |doc, score| {
            let key = keys.as_ref().map_or(0, |keys| keys.first(doc).unwrap_or(u64::MAX));
            top.push(Ranked { score, key, address: DocAddress::new(ordinal as u32, doc) });
            top.threshold()
        })?;
        stats.segments += 1;
    }
    Ok(top.into_sorted())
}

/// The best `k` documents, kept in a min-heap.
struct TopK {
    k: usize,
    heap: BinaryHeap<Ranked>,
}

/// A scored document, ordered best first (a higher score, then of equal scores the lower key,
/// then the lower address, is smaller), so that the top of the max-heap is the entry to evict.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    score: Score,
    /// The tie-break key (0 for all when ties go by address).
    key: u64,
    address: DocAddress,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.key.cmp(&other.key))
            .then_with(|| self.address.cmp(&other.address))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl TopK {
    fn new(k: usize) -> Self {
        Self { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    fn threshold(&self) -> Score {
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.k => worst.score,
            _ => Score::MIN,
        }
    }

    fn push(&mut self, entry: Ranked) {
        if self.heap.len() < self.k {
            self.heap.push(entry);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && entry < *worst
        {
            *worst = entry;
        }
    }

    fn into_sorted(self) -> Vec<(Score, DocAddress)> {
        // Ascending by "worse first" is best first.
        self.heap.into_sorted_vec().into_iter().map(|ranked| (ranked.score, ranked.address)).collect()
    }
}

/// One clause with the statistics of its term (the index's, or those given for scoring).
struct ClauseWeight {
    term: Term,
    /// Scores with the scoring statistics' average field length, boosted: the clause's score.
    bm25: Bm25Weight,
    doc_freq: u64,
    total_docs: u64,
    boost: Score,
    /// `idf * (1 + k1) * boost`: no score of the clause reaches it.
    weight: f64,
    /// The average field length of the scoring statistics (what the block bounds correct to).
    average: Score,
    /// Whether tantivy stored usable block maxima for the field (field norms and frequencies).
    block_maxima: bool,
    record: IndexRecordOption,
}

impl ClauseWeight {
    fn new(term: &Term, boost: Score, enable_scoring: &EnableScoring<'_>) -> tantivy::Result<Self> {
        let field = term.field();
        let entry = enable_scoring.schema().get_field_entry(field);
        let Some(record) = entry.field_type().get_index_record_option() else {
            return Err(TantivyError::SchemaError(format!("field {:?} is not indexed", entry.name())));
        };
        let (bm25, doc_freq, total_docs, average) = match enable_scoring {
            EnableScoring::Enabled { statistics_provider, .. } => {
                let total_docs = statistics_provider.total_num_docs()?;
                let tokens = statistics_provider.total_num_tokens(field)?;
                (
                    Bm25Weight::for_terms(*statistics_provider, std::slice::from_ref(term))?,
                    statistics_provider.doc_freq(term)?,
                    total_docs,
                    // As `Bm25Weight::for_terms` computes it.
                    tokens as Score / total_docs as Score,
                )
            }
            // Scores are not asked for (counting, say): any weight will do.
            EnableScoring::Disabled { .. } => (Bm25Weight::for_one_term(1, 2, 1.0), 1, 2, 1.0),
        };
        let scored = enable_scoring.is_scoring_enabled();
        Ok(Self {
            term: term.clone(),
            bm25: bm25.boost_by(boost),
            doc_freq,
            total_docs,
            boost,
            weight: term_weight(doc_freq, total_docs, boost),
            average,
            block_maxima: scored && entry.has_fieldnorms() && record.has_freq(),
            record: if scored && record.has_freq() { IndexRecordOption::WithFreqs } else { IndexRecordOption::Basic },
        })
    }
}

struct UnionWeight {
    clauses: Vec<ClauseWeight>,
    filter: Option<Box<dyn Weight>>,
    /// Whether scores were asked for (pruning needs them).
    scoring: bool,
}

impl UnionWeight {
    /// Cursors of the clauses whose term the segment holds.
    fn cursors(&self, reader: &SegmentReader) -> tantivy::Result<Vec<Cursor>> {
        let mut cursors = Vec::with_capacity(self.clauses.len());
        for clause in &self.clauses {
            let field: Field = clause.term.field();
            let inverted_index = reader.inverted_index(field)?;
            let Some(term_info) = inverted_index.get_term_info(&clause.term)? else { continue };
            let postings = inverted_index.read_block_postings_from_terminfo(&term_info, clause.record)?;
            let fieldnorms = match reader.fieldnorms_readers().get_field(field)? {
                Some(fieldnorms) => fieldnorms,
                None => FieldNormReader::constant(reader.max_doc(), 1),
            };
            let segment_average = inverted_index.total_num_tokens() as Score / reader.max_doc().max(1) as Score;
            // tantivy stored each block's best pair as scored with the segment's average.
            let block_bm25 = clause.block_maxima.then(|| {
                Bm25Weight::for_one_term(clause.doc_freq, clause.total_docs, segment_average).boost_by(clause.boost)
            });
            let term_max = bound_to_fixed(clause.weight * (1.0 + BOUND_SLACK));
            let mut cursor = Cursor {
                postings,
                pos: 0,
                doc: 0,
                fieldnorms,
                bm25: clause.bm25.clone(),
                block_bm25,
                average_ratio: f64::from(segment_average) / f64::from(clause.average.max(Score::MIN_POSITIVE)),
                weight: clause.weight,
                term_max,
                window_max: term_max,
                cost: term_info.doc_freq,
            };
            cursor.doc = cursor.postings.doc(0);
            if cursor.doc != TERMINATED {
                cursors.push(cursor);
            }
        }
        Ok(cursors)
    }

    fn filter_scorer(&self, reader: &SegmentReader) -> tantivy::Result<Option<Box<dyn Scorer>>> {
        self.filter.as_ref().map(|filter| filter.scorer(reader, 1.0)).transpose()
    }

    /// MaxScore over one segment: offers `callback` every document that beats the threshold
    /// (or, with `admit_ties`, reaches it), in doc id order; `callback` returns the new
    /// threshold.
    fn prune(
        &self,
        reader: &SegmentReader,
        threshold: Score,
        admit_ties: bool,
        stats: &mut PruningStats,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        if !self.scoring {
            return Err(TantivyError::InvalidArgument("a TermUnion prunes by score: enable scoring".into()));
        }
        let cursors = self.cursors(reader)?;
        if cursors.is_empty() {
            return Ok(());
        }
        let mut pruner = Pruner::new(cursors, self.filter_scorer(reader)?, reader, threshold, admit_ties, *stats);
        pruner.run(callback);
        *stats = pruner.stats;
        Ok(())
    }
}

impl Weight for UnionWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let mut scorer =
            UnionScorer { cursors: self.cursors(reader)?, filter: self.filter_scorer(reader)?, doc: 0, sum: 0, boost };
        scorer.find_match();
        Ok(Box::new(scorer))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.doc() > doc || scorer.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!("document #({doc}) does not match")));
        }
        Ok(Explanation::new("sum of the clauses' BM25 scores", scorer.score()))
    }

    fn for_each_pruning(
        &self,
        threshold: Score,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        // tantivy's collectors break ties by address, and documents come in address order.
        self.prune(reader, threshold, false, &mut PruningStats::default(), callback)
    }
}

/// A clause's postings in one segment, read a block at a time.
struct Cursor {
    postings: BlockSegmentPostings,
    /// Position of the current document in the loaded block.
    pos: usize,
    /// The current document; `TERMINATED` at the end.
    doc: DocId,
    fieldnorms: FieldNormReader,
    bm25: Bm25Weight,
    /// The clause's BM25 with the segment's average field length, for tantivy's block maxima;
    /// `None` when the field has none.
    block_bm25: Option<Bm25Weight>,
    /// The segment's average field length over the scoring one.
    average_ratio: f64,
    weight: f64,
    /// Bound of every score of the clause, fixed point.
    term_max: i64,
    /// Bound of the clause's scores in the current window, fixed point.
    window_max: i64,
    /// Postings in the segment.
    cost: u32,
}

impl Cursor {
    fn advance(&mut self) {
        if self.pos == BLOCK - 1 {
            self.pos = 0;
            self.postings.advance();
        } else {
            self.pos += 1;
        }
        self.doc = self.postings.doc(self.pos);
    }

    fn seek(&mut self, target: DocId) {
        if self.doc >= target {
            return;
        }
        // The next posting is often the one; it needs no search.
        self.pos = (self.pos + 1).min(BLOCK - 1);
        self.doc = self.postings.doc(self.pos);
        if self.doc < target {
            self.pos = self.postings.seek(target);
            self.doc = self.postings.doc(self.pos);
        }
    }

    fn score(&self) -> Score {
        self.bm25.score(self.fieldnorms.fieldnorm_id(self.doc), self.postings.freq(self.pos))
    }

    fn last_doc_in_block(&self) -> DocId {
        self.postings.docs().last().copied().unwrap_or(TERMINATED)
    }

    /// Bound of the clause's scores over its documents below `max` that a window reaching to
    /// `max` can still ask for.
    fn bound(&mut self, max: DocId) -> i64 {
        if self.doc >= max {
            return 0;
        }
        // Its documents in the window are all in the loaded block when the block reaches
        // past the window (those before `self.doc` were passed, those before `min` are not
        // asked for).
        if self.block_bm25.is_some() && self.last_doc_in_block() >= max - 1 {
            return self.block_bound().min(self.term_max);
        }
        self.term_max
    }

    /// Bound of the scores in the loaded block, from tantivy's block maximum.
    ///
    /// tantivy stored the pair `(norm, tf)` that maximises `tf / (tf + K_s(norm))`, with
    /// `K_x(n) = k1 (1 - b + b n / x)` and `s` the segment's average length; call that maximum
    /// `M`. Scores use the index's average `a`. With `r = s / a`:
    /// `K_a(n) = k1 (1 - b) + r (K_s(n) - k1 (1 - b))`. If `r >= 1`, `K_a >= K_s`, so every
    /// `tf / (tf + K_a)` is at most `M`. If `r < 1`, `K_a >= r K_s`, so
    /// `tf / (tf + K_a) <= tf / (tf + r K_s) <= M / (M + r (1 - M))`, since `tf / (tf + K_s) <= M`
    /// means `K_s >= tf (1 - M) / M`.
    fn block_bound(&mut self) -> i64 {
        let Some(block_bm25) = &self.block_bm25 else { return self.term_max };
        let block_max = f64::from(self.postings.block_max_score(&self.fieldnorms, block_bm25));
        let best = (block_max / self.weight).clamp(0.0, 1.0);
        let ratio = self.average_ratio;
        let factor = if ratio >= 1.0 || best <= 0.0 { best } else { best / (best + ratio * (1.0 - best)) };
        bound_to_fixed(self.weight * factor * (1.0 + BOUND_SLACK))
    }

    /// Adds the clause's scores of its documents below `max` (all at or above `min`) to the
    /// window, and leaves the cursor on its first document at or above `max`. Returns how many
    /// postings it scored.
    fn accumulate(&mut self, min: DocId, max: DocId, window: &mut Window) -> u64 {
        let mut scored = 0;
        while self.doc < max {
            let docs = self.postings.docs();
            let mut pos = self.pos;
            while pos < docs.len() {
                let doc = docs[pos];
                if doc >= max {
                    break;
                }
                let score = self.bm25.score(self.fieldnorms.fieldnorm_id(doc), self.postings.freq(pos));
                window.add((doc - min) as usize, to_fixed(score));
                pos += 1;
            }
            scored += (pos - self.pos) as u64;
            if pos == BLOCK {
                self.pos = 0;
                self.postings.advance();
            } else {
                self.pos = pos;
            }
            self.doc = self.postings.doc(self.pos);
        }
        scored
    }
}

/// Fixed-point score sums of the documents of an inner window, and which of them matched.
struct Window {
    sums: Vec<i64>,
    matched: Vec<u64>,
}

impl Window {
    fn new() -> Self {
        Self { sums: vec![0; INNER_WINDOW as usize], matched: vec![0; INNER_WINDOW as usize / 64] }
    }

    #[inline]
    fn add(&mut self, slot: usize, score: i64) {
        self.sums[slot] += score;
        self.matched[slot / 64] |= 1 << (slot % 64);
    }

    /// Moves the matches whose sum is above `floor`, as (document, sum), into `out`, clears
    /// the window, and returns how many documents matched.
    fn drain(&mut self, min: DocId, floor: i64, out: &mut Vec<(DocId, i64)>) -> u64 {
        let mut matched = 0;
        for (word_index, word) in self.matched.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            matched += u64::from(bits.count_ones());
            while bits != 0 {
                let slot = word_index * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let sum = std::mem::take(&mut self.sums[slot]);
                if sum > floor {
                    out.push((min + slot as DocId, sum));
                }
            }
        }
        matched
    }
}

/// The state of MaxScore over one segment.
struct Pruner<'r> {
    cursors: Vec<Cursor>,
    filter: Option<Box<dyn Scorer>>,
    reader: &'r SegmentReader,
    threshold: Score,
    /// Whether a document whose score equals the threshold is still offered.
    admit_ties: bool,
    /// Largest fixed-point sum that cannot enter the top k: its score does not beat the
    /// threshold (or, admitting ties, is below it).
    threshold_fixed: i64,
    /// Cursor indices: the non-essential clauses first (by bound over cost, ascending), then
    /// the essential ones.
    order: Vec<usize>,
    first_essential: usize,
    /// `bound_sums[i]`: the bounds of `order[..=i]` added up, for the non-essential clauses.
    bound_sums: Vec<i64>,
    /// The threshold from which the partition would change.
    next_partition: i64,
    window: Window,
    candidates_buffer: Vec<(DocId, i64)>,
    min_window: u32,
    stats: PruningStats,
}

impl<'r> Pruner<'r> {
    fn new(
        cursors: Vec<Cursor>,
        filter: Option<Box<dyn Scorer>>,
        reader: &'r SegmentReader,
        threshold: Score,
        admit_ties: bool,
        stats: PruningStats,
    ) -> Self {
        let count = cursors.len();
        Self {
            admit_ties,
            order: (0..count).collect(),
            first_essential: 0,
            bound_sums: vec![0; count],
            next_partition: i64::MIN,
            cursors,
            filter,
            reader,
            threshold,
            threshold_fixed: if admit_ties { fixed_below(threshold) } else { fixed_threshold(threshold) },
            window: Window::new(),
            candidates_buffer: Vec::new(),
            min_window: 1,
            stats,
        }
    }

    fn run(&mut self, callback: &mut dyn FnMut(DocId, Score) -> Score) {
        let max_doc = self.reader.max_doc();
        let mut min = 0;
        'outer: while min < max_doc {
            if let Some(filter) = &mut self.filter {
                if filter.doc() < min {
                    filter.seek(min);
                }
                min = min.max(filter.doc());
                if min >= max_doc {
                    break;
                }
            }
            let mut max = self.outer_window_max(min).min(max_doc);
            loop {
                self.stats.windows += 1;
                for cursor in &mut self.cursors {
                    cursor.window_max = cursor.bound(max);
                }
                if !self.partition() {
                    self.stats.skipped_windows += 1;
                    min = max;
                    continue 'outer;
                }
                // Windows come from the essential clauses' blocks and the partition from the
                // windows' bounds: shrink until they agree (usually at once).
                let shrunk = self.outer_window_max(min).min(max_doc);
                if shrunk >= max {
                    break;
                }
                max = shrunk;
            }
            let mut next = self.first_essential_doc();
            while next < max {
                self.score_inner_window(next, max.min(next.saturating_add(INNER_WINDOW)), callback);
                next = self.first_essential_doc();
                if self.threshold_fixed >= self.next_partition {
                    break;
                }
            }
            min = next.min(max);
        }
    }

    fn first_essential_doc(&self) -> DocId {
        self.order[self.first_essential..].iter().map(|&i| self.cursors[i].doc).min().unwrap_or(TERMINATED)
    }

    /// Where the window starting at `min` ends: at the end of the first block, among the
    /// essential clauses' blocks, that holds a document at or after `min`; and not before
    /// `min_window` documents, a size that grows while windows hold few candidates, so that
    /// partitioning does not cost more than scoring (as Lucene does).
    fn outer_window_max(&mut self, min: DocId) -> DocId {
        let mut max = TERMINATED;
        let first = self.first_essential.min(self.order.len() - 1);
        for &i in &self.order[first..] {
            let cursor = &mut self.cursors[i];
            cursor.seek(min);
            if cursor.doc != TERMINATED {
                max = max.min(cursor.last_doc_in_block().saturating_add(1));
            }
        }
        if self.order.len() - first > 1 {
            let expected = self.stats.windows.saturating_mul(32 * self.order.len() as u64);
            self.min_window =
                if self.stats.candidates < expected { (self.min_window * 2).min(INNER_WINDOW) } else { 1 };
            max = max.max(min.saturating_add(self.min_window));
        }
        max
    }

    /// Splits the clauses into non-essential and essential ones by their window bounds;
    /// false when no document of the window can beat the threshold.
    fn partition(&mut self) -> bool {
        let cursors = &self.cursors;
        self.order.sort_by(|&a, &b| {
            let ratio = |c: &Cursor| c.window_max as f64 / f64::from(c.cost.max(1));
            ratio(&cursors[a]).total_cmp(&ratio(&cursors[b]))
        });
        let mut sum = 0i64;
        let mut non_essential = 0;
        let mut essential = Vec::new();
        self.next_partition = i64::MAX;
        for index in 0..self.order.len() {
            let clause = self.order[index];
            let with = sum + self.cursors[clause].window_max;
            if with <= self.threshold_fixed {
                sum = with;
                self.order[non_essential] = clause;
                self.bound_sums[non_essential] = sum;
                non_essential += 1;
            } else {
                essential.push(clause);
                self.next_partition = self.next_partition.min(with);
            }
        }
        self.first_essential = non_essential;
        self.order.truncate(non_essential);
        self.order.extend(essential);
        self.first_essential < self.order.len()
    }

    fn score_inner_window(&mut self, min: DocId, max: DocId, callback: &mut dyn FnMut(DocId, Score) -> Score) {
        for &i in &self.order[self.first_essential..] {
            self.stats.essential_postings += self.cursors[i].accumulate(min, max, &mut self.window);
        }
        let mut candidates = std::mem::take(&mut self.candidates_buffer);
        candidates.clear();
        // A document whose essential sum cannot beat the threshold even with every
        // non-essential clause is dropped at once.
        let non_essential = self.first_essential.checked_sub(1).map_or(0, |last| self.bound_sums[last]);
        self.stats.candidates += self.window.drain(min, self.threshold_fixed - non_essential, &mut candidates);
        let alive = self.reader.alive_bitset();
        if alive.is_some() || self.filter.is_some() {
            let filter = &mut self.filter;
            candidates.retain(|&(doc, _)| {
                alive.is_none_or(|alive| alive.is_alive(doc))
                    && filter.as_mut().is_none_or(|filter| filter.doc() <= doc && filter.seek(doc) == doc)
            });
        }
        // The non-essential clauses from the highest bound down, each looked up only for the
        // documents that its bound and those below it could still lift over the threshold.
        for j in (0..self.first_essential).rev() {
            let bound = self.bound_sums[j];
            let threshold = self.threshold_fixed;
            let cursor = &mut self.cursors[self.order[j]];
            let mut kept = 0;
            for index in 0..candidates.len() {
                let (doc, mut sum) = candidates[index];
                if sum + bound <= threshold {
                    continue;
                }
                self.stats.lookups += 1;
                cursor.seek(doc);
                if cursor.doc == doc {
                    sum += to_fixed(cursor.score());
                }
                candidates[kept] = (doc, sum);
                kept += 1;
            }
            candidates.truncate(kept);
            if candidates.is_empty() {
                break;
            }
        }
        for &(doc, sum) in &candidates {
            if sum > self.threshold_fixed {
                self.stats.scored += 1;
                let new_threshold = callback(doc, from_fixed(sum));
                if new_threshold != self.threshold {
                    self.threshold = new_threshold;
                    self.threshold_fixed =
                        if self.admit_ties { fixed_below(new_threshold) } else { fixed_threshold(new_threshold) };
                }
            }
        }
        self.candidates_buffer = candidates;
    }
}

/// Every match of a [`TermUnion`] in doc id order, scored in full (for collectors other than
/// [`top_k`], counts and explanations).
struct UnionScorer {
    cursors: Vec<Cursor>,
    filter: Option<Box<dyn Scorer>>,
    doc: DocId,
    sum: i64,
    boost: Score,
}

impl UnionScorer {
    /// Moves to the first match at or after the cursors' smallest document.
    fn find_match(&mut self) {
        loop {
            let doc = self.cursors.iter().map(|c| c.doc).min().unwrap_or(TERMINATED);
            self.doc = doc;
            self.sum = 0;
            if doc == TERMINATED {
                return;
            }
            for cursor in &mut self.cursors {
                if cursor.doc == doc {
                    self.sum += to_fixed(cursor.score());
                    cursor.advance();
                }
            }
            let Some(filter) = &mut self.filter else { return };
            if filter.doc() <= doc && filter.seek(doc) == doc {
                return;
            }
        }
    }
}

impl DocSet for UnionScorer {
    fn advance(&mut self) -> DocId {
        if self.doc != TERMINATED {
            self.find_match();
        }
        self.doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.cursors.iter().map(|c| c.cost).max().unwrap_or(0)
    }
}

impl Scorer for UnionScorer {
    fn score(&mut self) -> Score {
        from_fixed(self.sum) * self.boost
    }
}

#[cfg(test)]
mod tests;
