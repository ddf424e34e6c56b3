//! The pruning union against tantivy's own union and against scoring every match.

use proptest::prelude::*;
use tantivy::collector::TopDocs;
use tantivy::query::{Bm25StatisticsProvider, EnableScoring};
use tantivy::query::{BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{FAST, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::{DocAddress, Index, IndexWriter, Score, Searcher, TantivyDocument, Term};

use super::{PruningStats, TermUnion, TieBreak, UnionWeight, fixed_below, fixed_threshold, from_fixed, top_k};
use crate::statistics::StatisticsCache;

/// Words of a document: indices into a small vocabulary shared by both fields.
#[derive(Debug, Clone)]
struct Doc {
    a: Vec<u8>,
    b: Vec<u8>,
    tag: u64,
    /// The tie-break key (not unique: equal keys fall back to the address).
    key: u64,
}

#[derive(Debug, Clone)]
struct Case {
    segments: Vec<Vec<Doc>>,
    /// Documents deleted after the build, by position in build order.
    deleted: Vec<usize>,
    /// (field b?, word, boost)
    clauses: Vec<(bool, u8, Score)>,
    k: usize,
    /// Only documents with this tag.
    filter: Option<u64>,
}

struct Built {
    index: Index,
    a: tantivy::schema::Field,
    b: tantivy::schema::Field,
    tag: tantivy::schema::Field,
}

fn build(segments: &[Vec<Doc>], deleted: &[usize]) -> Built {
    let mut schema = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer("default").set_index_option(IndexRecordOption::WithFreqs),
    );
    let a = schema.add_text_field("a", text.clone());
    let b = schema.add_text_field("b", text);
    let tag = schema.add_u64_field("tag", INDEXED);
    let position = schema.add_u64_field("position", INDEXED | FAST);
    let key = schema.add_u64_field("key", FAST);
    let index = Index::create_in_ram(schema.build());
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    let words = |ids: &[u8]| ids.iter().map(|w| format!("w{w}")).collect::<Vec<_>>().join(" ");
    let mut count = 0u64;
    for segment in segments {
        for doc in segment {
            let mut document = TantivyDocument::default();
            document.add_text(a, words(&doc.a));
            document.add_text(b, words(&doc.b));
            document.add_u64(tag, doc.tag);
            document.add_u64(position, count);
            document.add_u64(key, doc.key);
            writer.add_document(document).unwrap();
            count += 1;
        }
        writer.commit().unwrap();
    }
    for &doc in deleted {
        writer.delete_term(Term::from_field_u64(position, doc as u64));
    }
    writer.commit().unwrap();
    Built { index, a, b, tag }
}

impl Built {
    fn searcher(&self) -> Searcher {
        self.index.reader().unwrap().searcher()
    }

    fn terms(&self, case: &Case) -> Vec<(Term, Score)> {
        case.clauses
            .iter()
            .map(|&(in_b, word, boost)| {
                (Term::from_field_text(if in_b { self.b } else { self.a }, &format!("w{word}")), boost)
            })
            .collect()
    }

    fn filter(&self, case: &Case) -> Option<Box<dyn Query>> {
        case.filter.map(|tag| {
            Box::new(TermQuery::new(Term::from_field_u64(self.tag, tag), IndexRecordOption::Basic)) as Box<dyn Query>
        })
    }

    fn union(&self, case: &Case) -> TermUnion {
        let union = TermUnion::new(self.terms(case));
        match self.filter(case) {
            Some(filter) => union.with_filter(filter),
            None => union,
        }
    }

    /// tantivy's plain union, shaped as mathrank's search shaped it before the pruning union.
    fn boolean(&self, case: &Case) -> BooleanQuery {
        let should = self
            .terms(case)
            .into_iter()
            .map(|(term, boost)| {
                let query = TermQuery::new(term, IndexRecordOption::WithFreqs);
                (Occur::Should, Box::new(BoostQuery::new(Box::new(query), boost)) as Box<dyn Query>)
            })
            .collect();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(BooleanQuery::new(should)))];
        if let Some(filter) = self.filter(case) {
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(filter, 0.0))));
        }
        BooleanQuery::new(clauses)
    }
}

/// Every match scored in full by the union with `statistics` (no pruning: the threshold never
/// rises), sorted best first by (score descending, key ascending, address ascending); with
/// ties by address every key is 0, which sorts as `TopDocs` sorts.
fn exhaustive(
    searcher: &Searcher,
    statistics: &dyn Bm25StatisticsProvider,
    union: &TermUnion,
    tie_break: TieBreak<'_>,
) -> Vec<(Score, DocAddress)> {
    let weight: UnionWeight =
        union.union_weight(EnableScoring::enabled_from_statistics_provider(statistics, searcher)).unwrap();
    let mut all = Vec::new();
    for (ordinal, reader) in searcher.segment_readers().iter().enumerate() {
        let keys = match tie_break {
            TieBreak::Address => None,
            TieBreak::FastField(name) => Some(reader.fast_fields().u64(name).unwrap()),
        };
        weight
            .prune(reader, Score::MIN, false, &mut PruningStats::default(), &mut |doc, score| {
                let key = keys.as_ref().map_or(0, |keys| keys.first(doc).unwrap());
                all.push((score, key, DocAddress::new(ordinal as u32, doc)));
                Score::MIN
            })
            .unwrap();
    }
    all.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    all.into_iter().map(|(score, _, address)| (score, address)).collect()
}

fn close(x: Score, y: Score) -> bool {
    (x - y).abs() <= 1e-5 * x.abs().max(y.abs()).max(1.0)
}

/// Checks one case; returns the pruning stats of the pruned search.
fn check(case: &Case) -> Result<PruningStats, TestCaseError> {
    let built = build(&case.segments, &case.deleted);
    let searcher = built.searcher();
    let union = built.union(case);
    let mut stats = PruningStats::default();
    let pruned = top_k(&searcher, &searcher, &union, case.k, TieBreak::Address, &mut stats).unwrap();

    // Pruning changes nothing: the same documents, scores (bit for bit) and order as scoring
    // every match with the same union.
    let every = exhaustive(&searcher, &searcher, &union, TieBreak::Address);
    let expected: Vec<_> = every.iter().copied().take(case.k).collect();
    prop_assert_eq!(&pruned, &expected);

    // Nor with statistics over live documents and ties broken by key, where documents tied
    // with the threshold must still be offered.
    let cache = StatisticsCache::default();
    let live = cache.statistics(&searcher).unwrap();
    let by_key = TieBreak::FastField("key");
    let pruned_live = top_k(&searcher, &live, &union, case.k, by_key, &mut PruningStats::default()).unwrap();
    let expected_live: Vec<_> = exhaustive(&searcher, &live, &union, by_key).into_iter().take(case.k).collect();
    prop_assert_eq!(&pruned_live, &expected_live);

    // And the union scores as tantivy's BooleanQuery of boosted term queries does, to within
    // f32 rounding (tantivy adds the clause scores in f32 in iteration order), with the same
    // order and ties up to that rounding.
    let everything = TopDocs::with_limit(searcher.num_docs() as usize + 1).order_by_score();
    let all_matches = searcher.search(&built.boolean(case), &everything).unwrap();
    prop_assert_eq!(all_matches.len(), every.len(), "the same documents match");
    let mut theirs: Vec<_> = all_matches.iter().map(|&(score, address)| (address, score)).collect();
    let mut ours: Vec<_> = every.iter().map(|&(score, address)| (address, score)).collect();
    theirs.sort_by_key(|x| x.0);
    ours.sort_by_key(|x| x.0);
    for (mine, tantivys) in ours.iter().zip(&theirs) {
        prop_assert_eq!(mine.0, tantivys.0);
        prop_assert!(close(mine.1, tantivys.1), "{:?} scores {} here, {} in tantivy", mine.0, mine.1, tantivys.1);
    }
    let top = searcher.search(&built.boolean(case), &TopDocs::with_limit(case.k).order_by_score()).unwrap();
    prop_assert_eq!(top.len(), pruned.len());
    for (mine, tantivys) in pruned.iter().zip(&top) {
        prop_assert!(
            mine.1 == tantivys.1 || close(mine.0, tantivys.0),
            "rank differs beyond rounding: {:?} against {:?}",
            mine,
            tantivys
        );
    }
    Ok(stats)
}

fn doc_strategy(max_len: usize) -> impl Strategy<Value = Doc> {
    // Skewed word frequencies: low word numbers are common, high ones rare.
    let word = (0u8..12, 0u8..12).prop_map(|(x, y)| x.min(y));
    (
        proptest::collection::vec(word.clone(), 0..=max_len),
        proptest::collection::vec(word, 0..=max_len / 2 + 1),
        0u64..3,
        0u64..64,
    )
        .prop_map(|(a, b, tag, key)| Doc { a, b, tag, key })
}

fn case_strategy() -> impl Strategy<Value = Case> {
    // Each segment gets its own length range, so that segment and index averages differ.
    let segment = (1usize..40).prop_flat_map(|max_len| proptest::collection::vec(doc_strategy(max_len), 0..420));
    let boost = prop_oneof![Just(1.0f32), Just(0.3), Just(0.6), Just(2.5), (0.05f32..4.0)];
    (
        proptest::collection::vec(segment, 1..4),
        proptest::collection::vec(0usize..1200, 0..30),
        proptest::collection::vec((any::<bool>(), 0u8..12, boost), 1..14),
        prop_oneof![1usize..5, 5usize..40, Just(1000)],
        prop_oneof![3 => Just(None), 1 => (0u64..3).prop_map(Some)],
    )
        .prop_map(|(segments, deleted, clauses, k, filter)| Case { segments, deleted, clauses, k, filter })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn pruned_top_k_is_exhaustive_scoring(case in case_strategy()) {
        check(&case)?;
    }

    #[test]
    fn fixed_threshold_is_the_last_sum_not_above(threshold in prop_oneof![0.0f32..1e-6, 0.0f32..30.0, 0.0f32..1e5]) {
        let fixed = fixed_threshold(threshold);
        prop_assert!(from_fixed(fixed) <= threshold);
        prop_assert!(from_fixed(fixed + 1) > threshold);
    }
}

/// SplitMix64, as mathrank-bench's generator has it: a fixed stream of numbers for the bigger
/// index below, without a dependency on the benchmark crate or a random crate.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A bigger index, where pruning must skip most of the work (or it does nothing useful).
#[test]
fn pruning_skips_most_documents_and_stays_exact() {
    let mut rng = SplitMix64(7);
    let mut segments = Vec::new();
    for length in [30, 8, 60] {
        let docs = (0..6000)
            .map(|_| {
                let a_len = 1 + rng.below(length) as usize;
                let mut words =
                    (0..a_len + 1 + a_len / 4).map(|_| (rng.unit().powi(3) * 40.0) as u8).collect::<Vec<_>>();
                let b = words.split_off(a_len);
                Doc { a: words, b, tag: rng.below(4), key: rng.below(1 << 20) }
            })
            .collect();
        segments.push(docs);
    }
    let clauses = (0..24u8).map(|w| (w % 3 == 0, w, 0.5 + f32::from(w % 5) * 0.4)).collect();
    let case = Case { segments, deleted: vec![5, 6000, 17_999], clauses, k: 10, filter: None };
    let stats = check(&case).unwrap();
    let built = build(&case.segments, &case.deleted);
    let searcher = built.searcher();
    let matches = exhaustive(&searcher, &searcher, &built.union(&case), TieBreak::Address).len() as u64;
    assert!(matches > 15_000, "{matches} matches");
    assert!(stats.scored * 20 < matches, "scored {} of {matches} matches in full: {stats:?}", stats.scored);
    assert!(stats.candidates < matches, "every match was a candidate: {stats:?}");
    assert_eq!(stats.segments, 3);
    let filtered = Case { filter: Some(2), k: 50, ..case };
    check(&filtered).unwrap();
}

#[test]
fn a_union_works_under_tantivys_collectors_too() {
    let docs =
        |words: &[&[u8]]| words.iter().map(|a| Doc { a: a.to_vec(), b: vec![], tag: 0, key: 0 }).collect::<Vec<_>>();
    let case = Case {
        segments: vec![docs(&[&[0, 1], &[1], &[2, 2, 1]]), docs(&[&[0], &[3]])],
        deleted: vec![],
        clauses: vec![(false, 0, 1.0), (false, 1, 2.0)],
        k: 10,
        filter: None,
    };
    let built = build(&case.segments, &case.deleted);
    let searcher = built.searcher();
    let union = built.union(&case);
    assert_eq!(searcher.search(&union, &tantivy::collector::Count).unwrap(), 4);
    let top = searcher.search(&union, &TopDocs::with_limit(2).order_by_score()).unwrap();
    let mut stats = PruningStats::default();
    assert_eq!(top, top_k(&searcher, &searcher, &union, 2, TieBreak::Address, &mut stats).unwrap());
    let weight = union.weight(tantivy::query::EnableScoring::enabled_from_searcher(&searcher)).unwrap();
    assert!(weight.explain(searcher.segment_reader(0), 0).unwrap().value() > 0.0);
    assert!(weight.explain(searcher.segment_reader(1), 1).is_err(), "w3 is not in the query");
}

/// Equal scores everywhere: the pruned top k keeps the first documents in index order, as
/// exhaustive scoring does, even once the threshold equals every remaining score.
#[test]
fn ties_keep_the_first_documents() {
    let same = |count: usize| (0..count).map(|_| Doc { a: vec![0, 1], b: vec![2], tag: 0, key: 0 }).collect::<Vec<_>>();
    let case = Case {
        segments: vec![same(700), same(300)],
        deleted: vec![1],
        clauses: vec![(false, 0, 1.0), (false, 1, 0.5), (true, 2, 2.0)],
        k: 5,
        filter: None,
    };
    check(&case).unwrap();
    let built = build(&case.segments, &case.deleted);
    let mut stats = PruningStats::default();
    let searcher = built.searcher();
    let top = top_k(&searcher, &searcher, &built.union(&case), case.k, TieBreak::Address, &mut stats).unwrap();
    let docs: Vec<_> = top.iter().map(|&(_, address)| address).collect();
    let expected: Vec<_> = [0, 2, 3, 4, 5].into_iter().map(|doc| DocAddress::new(0, doc)).collect();
    assert_eq!(docs, expected);
    assert!(top.windows(2).all(|pair| pair[0].0 == pair[1].0), "every score is equal: {top:?}");
}

fn keys_of(searcher: &Searcher, top: &[(Score, DocAddress)]) -> Vec<u64> {
    top.iter()
        .map(|&(_, address)| {
            let keys = searcher.segment_reader(address.segment_ord).fast_fields().u64("key").unwrap();
            keys.first(address.doc_id).unwrap()
        })
        .collect()
}

/// Equal scores everywhere, ties broken by key: the top k holds the smallest keys, though they
/// come last in index order (so every one of them ties with a full top k's threshold), and in
/// a later segment than the documents they push out.
#[test]
fn ties_by_key_keep_the_smallest_keys_wherever_they_are() {
    // Keys descend with the position: 1000 down to 1.
    let same = |keys: std::ops::Range<u64>| {
        keys.rev().map(|key| Doc { a: vec![0, 1], b: vec![2], tag: 0, key: key + 1 }).collect::<Vec<_>>()
    };
    let case = Case {
        segments: vec![same(300..1000), same(0..300)],
        deleted: vec![999],
        clauses: vec![(false, 0, 1.0), (false, 1, 0.5), (true, 2, 2.0)],
        k: 5,
        filter: None,
    };
    check(&case).unwrap();
    let built = build(&case.segments, &case.deleted);
    let searcher = built.searcher();
    let cache = StatisticsCache::default();
    let live = cache.statistics(&searcher).unwrap();
    let mut stats = PruningStats::default();
    let top = top_k(&searcher, &live, &built.union(&case), case.k, TieBreak::FastField("key"), &mut stats).unwrap();
    assert!(top.windows(2).all(|pair| pair[0].0 == pair[1].0), "every score is equal: {top:?}");
    // Position 999 (key 1) is deleted; keys 2..=6 are the last documents of the segment
    // written second.
    assert_eq!(keys_of(&searcher, &top), [2, 3, 4, 5, 6]);
    // Ties by address keep the first documents instead.
    let first = top_k(&searcher, &live, &built.union(&case), case.k, TieBreak::Address, &mut stats).unwrap();
    assert_eq!(
        first.iter().map(|&(_, address)| address).collect::<Vec<_>>(),
        (0..5).map(|doc| DocAddress::new(0, doc)).collect::<Vec<_>>()
    );
}

/// A document tied with the k-th score and a smaller key enters; one tied with a larger key
/// does not; a score just below the k-th does not, whatever its key.
#[test]
fn a_tie_at_the_kth_place_goes_to_the_smaller_key() {
    let doc = |a: &[u8], key: u64| Doc { a: a.to_vec(), b: vec![], tag: 0, key };
    // Word 0 in every document (its idf is that of all of them); word 1 in the first two;
    // the rest are tied on word 0 alone, but for the last, which is longer (a lower score).
    let case = Case {
        segments: vec![
            vec![doc(&[0, 1], 50), doc(&[0, 1], 40), doc(&[0, 2], 30)],
            vec![doc(&[0, 3], 35), doc(&[0, 4], 20), doc(&[0, 5], 60), doc(&[0, 6, 6, 6], 1)],
        ],
        deleted: vec![],
        clauses: vec![(false, 0, 1.0), (false, 1, 1.0)],
        k: 3,
        filter: None,
    };
    check(&case).unwrap();
    let built = build(&case.segments, &case.deleted);
    let searcher = built.searcher();
    let top =
        top_k(&searcher, &searcher, &built.union(&case), 3, TieBreak::FastField("key"), &mut PruningStats::default())
            .unwrap();
    // The two with word 1, then of the four tied on word 0 the smallest key: 20, in the
    // segment written second.
    assert_eq!(keys_of(&searcher, &top), [40, 50, 20]);
    assert!(top[0].0 == top[1].0 && top[1].0 > top[2].0);
}

proptest! {
    #[test]
    fn fixed_below_is_the_last_sum_below(threshold in prop_oneof![1e-9f32..1e-6, 1e-6f32..30.0, 30.0f32..1e5]) {
        let fixed = fixed_below(threshold);
        prop_assert!(from_fixed(fixed) < threshold);
        prop_assert!(from_fixed(fixed + 1) >= threshold);
    }
}
