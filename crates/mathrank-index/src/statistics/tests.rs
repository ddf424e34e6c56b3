//! Live statistics against a clean index, and replicas with different histories.

use proptest::prelude::*;
use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::{DocAddress, Index, IndexWriter, Score, Searcher, TantivyDocument, Term};

use super::StatisticsCache;
use crate::maxscore::{PruningStats, TermUnion, TieBreak, top_k};

/// A live document: its words in two fields; its key is its position among the live ones.
#[derive(Debug, Clone)]
struct Doc {
    a: Vec<u8>,
    b: Vec<u8>,
}

/// How one index came to hold the live documents.
#[derive(Debug, Clone)]
struct History {
    /// Drives the order of writes, the commits and the deletes.
    seed: u64,
    /// Documents added and deleted again along the way.
    extras: Vec<Doc>,
    /// Live documents first written with other words, then rewritten (delete, add).
    stale: Vec<(usize, Doc)>,
    /// Merge everything into one segment at the end.
    merge: bool,
}

struct Fields {
    a: Field,
    b: Field,
    key: Field,
    serial: Field,
}

fn schema() -> (Schema, Fields) {
    let mut schema = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer("default").set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        a: schema.add_text_field("a", text.clone()),
        b: schema.add_text_field("b", text),
        key: schema.add_u64_field("key", FAST),
        serial: schema.add_u64_field("serial", INDEXED),
    };
    (schema.build(), fields)
}

fn document(fields: &Fields, doc: &Doc, key: u64, serial: u64) -> TantivyDocument {
    let words = |ids: &[u8]| ids.iter().map(|w| format!("w{w}")).collect::<Vec<_>>().join(" ");
    let mut document = TantivyDocument::default();
    document.add_text(fields.a, words(&doc.a));
    document.add_text(fields.b, words(&doc.b));
    document.add_u64(fields.key, key);
    document.add_u64(fields.serial, serial);
    document
}

/// SplitMix64: the history's choices from its seed.
struct Choices(u64);

impl Choices {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n.max(1) as u64) as usize
    }
}

/// An index holding `live` (keyed by position), written as `history` says, never merged but
/// by `history.merge`.
fn build(live: &[Doc], history: &History) -> (Index, Fields) {
    let (schema, fields) = schema();
    let index = Index::create_in_ram(schema);
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    let mut choices = Choices(history.seed);
    // Every write: (document, key, whether it is deleted later).
    let mut writes: Vec<(&Doc, u64, bool)> =
        live.iter().enumerate().map(|(key, doc)| (doc, key as u64, false)).collect();
    writes.extend(history.extras.iter().enumerate().map(|(i, doc)| (doc, 1_000_000 + i as u64, true)));
    for i in (1..writes.len()).rev() {
        writes.swap(i, choices.below(i + 1));
    }
    // A stale version goes in before its live one.
    for (live_index, doc) in &history.stale {
        let Some(key) = live.len().checked_sub(1).map(|last| (*live_index).min(last)) else { break };
        let at = writes.iter().position(|w| !w.2 && w.1 == key as u64).unwrap();
        writes.insert(choices.below(at + 1), (doc, key as u64, true));
    }
    let mut doomed = Vec::new();
    for (serial, (doc, key, deleted)) in writes.into_iter().enumerate() {
        writer.add_document(document(&fields, doc, key, serial as u64)).unwrap();
        if deleted {
            doomed.push(serial as u64);
        }
        if choices.below(24) == 0 {
            // Some of the doomed documents go now, some in a later commit.
            doomed.retain(|&serial| {
                let now = choices.below(2) == 0;
                if now {
                    writer.delete_term(Term::from_field_u64(fields.serial, serial));
                }
                !now
            });
            writer.commit().unwrap();
        }
    }
    for serial in doomed {
        writer.delete_term(Term::from_field_u64(fields.serial, serial));
    }
    writer.commit().unwrap();
    if history.merge {
        let segments = index.searchable_segment_ids().unwrap();
        if segments.len() > 1 {
            writer.merge(&segments).wait().unwrap();
        }
    }
    writer.wait_merging_threads().unwrap();
    (index, fields)
}

fn searcher(index: &Index) -> Searcher {
    index.reader().unwrap().searcher()
}

/// (score bits, key) of the top k of a query with live statistics and ties by key.
fn ranking(searcher: &Searcher, query: &TermUnion, k: usize) -> Vec<(u32, u64)> {
    let cache = StatisticsCache::default();
    let live = cache.statistics(searcher).unwrap();
    let top = top_k(searcher, &live, query, k, TieBreak::FastField("key"), &mut PruningStats::default()).unwrap();
    top.into_iter()
        .map(|(score, address): (Score, DocAddress)| {
            let keys = searcher.segment_reader(address.segment_ord).fast_fields().u64("key").unwrap();
            (score.to_bits(), keys.first(address.doc_id).unwrap())
        })
        .collect()
}

fn doc_strategy() -> impl Strategy<Value = Doc> {
    // Skewed word frequencies; lengths past 40 tokens, where field norms are quantised.
    let word = (0u8..12, 0u8..12).prop_map(|(x, y)| x.min(y));
    let length = prop_oneof![3 => 0usize..12, 1 => 30usize..90];
    (
        length.prop_flat_map(move |n| proptest::collection::vec(word.clone(), n)),
        proptest::collection::vec(0u8..12, 0..6),
    )
        .prop_map(|(a, b)| Doc { a, b })
}

fn history_strategy() -> impl Strategy<Value = History> {
    (
        any::<u64>(),
        proptest::collection::vec(doc_strategy(), 0..60),
        proptest::collection::vec((0usize..200, doc_strategy()), 0..20),
        prop_oneof![3 => Just(false), 1 => Just(true)],
    )
        .prop_map(|(seed, extras, stale, merge)| History { seed, extras, stale, merge })
}

type Query = Vec<(bool, u8, Score)>;

fn query_strategy() -> impl Strategy<Value = Query> {
    let boost = prop_oneof![Just(1.0f32), Just(0.125), (0.05f32..4.0)];
    proptest::collection::vec((any::<bool>(), 0u8..14, boost), 1..8)
}

fn union(fields: &Fields, query: &Query) -> TermUnion {
    TermUnion::new(
        query
            .iter()
            .map(|&(in_b, word, boost)| {
                (Term::from_field_text(if in_b { fields.b } else { fields.a }, &format!("w{word}")), boost)
            })
            .collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Two indexes with the same live documents and different histories (extra documents
    /// added and deleted, documents rewritten, other commits, a merge or not) have the
    /// statistics of a clean index of the live documents, and rank every query the same:
    /// the same keys, in the same order, with scores equal bit for bit.
    #[test]
    fn replicas_with_different_histories_agree(
        live in proptest::collection::vec(doc_strategy(), 1..160),
        first in history_strategy(),
        second in history_strategy(),
        queries in proptest::collection::vec(query_strategy(), 1..6),
        k in prop_oneof![1usize..5, 5usize..40],
    ) {
        let clean_history = History { seed: 0, extras: vec![], stale: vec![], merge: false };
        let (clean, fields) = build(&live, &clean_history);
        let (one, _) = build(&live, &first);
        let (two, _) = build(&live, &second);
        let (clean, one, two) = (searcher(&clean), searcher(&one), searcher(&two));
        prop_assert_eq!(clean.num_docs(), live.len() as u64);
        let cache = StatisticsCache::default();
        let truth = cache.statistics(&clean).unwrap();
        for replica in [&one, &two] {
            let cache = StatisticsCache::default();
            let stats = cache.statistics(replica).unwrap();
            prop_assert_eq!(stats.total_num_docs().unwrap(), live.len() as u64);
            for field in [fields.a, fields.b] {
                // The clean index has no deletes: its live tokens are its field norms, summed.
                let norms: u64 = clean.segment_readers().iter().map(|reader| {
                    let norms = reader.get_fieldnorms_reader(field).unwrap();
                    (0..reader.max_doc()).map(|doc| u64::from(norms.fieldnorm(doc))).sum::<u64>()
                }).sum();
                prop_assert_eq!(truth.total_num_tokens(field).unwrap(), norms);
                prop_assert_eq!(stats.total_num_tokens(field).unwrap(), norms);
            }
            for word in 0..14 {
                for field in [fields.a, fields.b] {
                    let term = Term::from_field_text(field, &format!("w{word}"));
                    prop_assert_eq!(stats.doc_freq(&term).unwrap(), clean.doc_freq(&term).unwrap(), "w{}", word);
                }
            }
        }
        for query in &queries {
            let query = union(&fields, query);
            let expected = ranking(&clean, &query, k);
            prop_assert_eq!(&ranking(&one, &query, k), &expected);
            prop_assert_eq!(&ranking(&two, &query, k), &expected);
        }
    }
}

/// The cache follows deletes: a searcher after a commit that deleted documents gets new
/// statistics, and the segments untouched by the deletes are reused.
#[test]
fn the_cache_follows_commits() {
    let (schema, fields) = schema();
    let index = Index::create_in_ram(schema);
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    let doc = |a: &[u8]| Doc { a: a.to_vec(), b: vec![] };
    for (serial, words) in [&[0u8, 1][..], &[0], &[1, 1, 1]].into_iter().enumerate() {
        writer.add_document(document(&fields, &doc(words), serial as u64, serial as u64)).unwrap();
        writer.commit().unwrap();
    }
    let reader = index.reader_builder().reload_policy(tantivy::ReloadPolicy::Manual).try_into().unwrap();
    let cache = StatisticsCache::default();
    let w0 = Term::from_field_text(fields.a, "w0");
    {
        let searcher = reader.searcher();
        let stats = cache.statistics(&searcher).unwrap();
        assert_eq!((stats.total_num_docs().unwrap(), stats.total_num_tokens(fields.a).unwrap()), (3, 6));
        assert_eq!(stats.doc_freq(&w0).unwrap(), 2);
    }
    let before = cache.last.lock().unwrap().clone().unwrap();
    writer.delete_term(Term::from_field_u64(fields.serial, 0));
    writer.commit().unwrap();
    reader.reload().unwrap();
    let searcher = reader.searcher();
    let stats = cache.statistics(&searcher).unwrap();
    assert_eq!((stats.total_num_docs().unwrap(), stats.total_num_tokens(fields.a).unwrap()), (2, 4));
    assert_eq!(stats.doc_freq(&w0).unwrap(), 1);
    let after = cache.last.lock().unwrap().clone().unwrap();
    assert!(after.generation > before.generation);
    let reused = after.segments.iter().filter(|s| before.segments.iter().any(|b| std::sync::Arc::ptr_eq(s, b))).count();
    assert_eq!(reused, 2, "the two segments without new deletes are reused");
    // The same searcher again: the same snapshot.
    drop(stats);
    let again = cache.statistics(&searcher).unwrap();
    assert!(std::sync::Arc::ptr_eq(&again.snapshot, &after));
}
