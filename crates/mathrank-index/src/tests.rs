//! Index tests in RAM on the embedded sample.

use std::collections::HashMap;

use mathrank_dump::{AnswerJoiner, JoinedAnswer, PostKind, PostsReader, RowEvent, SAMPLE_POSTS_XML, question_text};

use crate::{AnswerIndex, FieldRepeats, FieldWeights, Filters, SearchRequest, delimit_bare_latex};

struct Sample {
    index: AnswerIndex,
    answers: Vec<JoinedAnswer>,
    /// question id -> (title + body text)
    questions: Vec<(u64, String)>,
}

fn sample() -> &'static Sample {
    static SAMPLE: std::sync::OnceLock<Sample> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(|| {
        let mut joiner = AnswerJoiner::default();
        let mut answers = Vec::new();
        let mut questions = Vec::new();
        for event in PostsReader::new(SAMPLE_POSTS_XML.as_bytes()) {
            if let RowEvent::Post(post) = event.unwrap() {
                if post.kind == PostKind::Question {
                    questions.push((post.id, question_text(&post.title, &post.body_html)));
                }
                answers.extend(joiner.push(post).unwrap());
            }
        }
        let index = AnswerIndex::build_in_ram(answers.clone()).unwrap();
        Sample { index, answers, questions }
    })
}

#[test]
fn own_answer_in_top_10_for_90_percent_of_questions() {
    let sample = sample();
    let answered: std::collections::HashSet<u64> = sample.answers.iter().map(|a| a.question_id).collect();
    let mut found = 0;
    let mut asked = 0;
    for (question_id, text) in &sample.questions {
        if !answered.contains(question_id) {
            continue;
        }
        asked += 1;
        let hits = sample.index.search(&SearchRequest::new(text.clone(), 10)).unwrap();
        if hits.iter().any(|hit| hit.question_id == *question_id) {
            found += 1;
        }
    }
    let share = found as f64 / asked as f64;
    println!("own answer in BM25 top 10: {found}/{asked} = {:.1}%", share * 100.0);
    assert!(asked >= 300);
    assert!(share >= 0.9, "only {found}/{asked}");
}

#[test]
fn latex_only_query_finds_the_integral() {
    let sample = sample();
    let hits = sample.index.search(&SearchRequest::new(r"$\int_0^{3} x^{4}\,dx$", 5)).unwrap();
    assert!(!hits.is_empty());
    let top = &hits[0];
    assert!(top.body.contains(r"\int_0^{3} x^{4}") || top.title.contains("x^4 from 0 to 3"), "{top:?}");
    // A query in the same words without math delimiters still works through prose + title.
    let plain = sample.index.search(&SearchRequest::new(r"\int_0^1 x^2 dx", 5)).unwrap();
    assert!(!plain.is_empty() && plain.iter().all(|hit| hit.bm25_score > 0.0));
}

#[test]
fn filters_restrict_without_changing_scores() {
    let sample = sample();
    let query = "probability of dice sum";
    let unfiltered = sample.index.search(&SearchRequest::new(query, 50)).unwrap();
    let mut request = SearchRequest::new(query, 50);
    request.filters = Filters { tags_any: vec!["dice".into()], ..Filters::default() };
    let dice = sample.index.search(&request).unwrap();
    assert!(!dice.is_empty());
    assert!(dice.iter().all(|hit| hit.tags.iter().any(|t| t == "dice")));
    let scores: HashMap<u64, f32> = unfiltered.iter().map(|h| (h.answer_id, h.bm25_score)).collect();
    let mut compared = 0;
    for hit in &dice {
        if let Some(score) = scores.get(&hit.answer_id) {
            assert!((score - hit.bm25_score).abs() < 1e-4, "filter changed a score");
            compared += 1;
        }
    }
    assert!(compared > 0, "no filtered hit was among the unfiltered ones: nothing was compared");

    request.filters = Filters { tags_all: vec!["probability".into(), "dice".into()], ..Filters::default() };
    assert!(sample.index.search(&request).unwrap().iter().all(|h| h.tags.contains(&"dice".into())));
    request.filters = Filters { tags_all: vec!["probability".into(), "group-theory".into()], ..Filters::default() };
    assert!(sample.index.search(&request).unwrap().is_empty());

    request.filters = Filters { min_votes: Some(30), ..Filters::default() };
    let voted = sample.index.search(&request).unwrap();
    assert!(!voted.is_empty() && voted.iter().all(|h| h.votes >= 30));

    request.filters = Filters { accepted_only: true, ..Filters::default() };
    let accepted = sample.index.search(&request).unwrap();
    assert!(!accepted.is_empty() && accepted.iter().all(|h| h.accepted));

    let mut created: Vec<i64> = sample.answers.iter().map(|a| a.created).collect();
    created.sort();
    let (from, to) = (created[created.len() / 4], created[created.len() / 2]);
    request.filters = Filters { created_from: Some(from), created_to: Some(to), ..Filters::default() };
    let dated = sample.index.search(&request).unwrap();
    assert!(!dated.is_empty() && dated.iter().all(|h| h.created >= from && h.created < to));

    request.filters = Filters { created_from: Some(to), created_to: Some(from), ..Filters::default() };
    assert!(sample.index.search(&request).is_err());
}

#[test]
fn long_queries_are_capped_and_ranks_are_consistent() {
    let sample = sample();
    let long: String = sample.questions.iter().take(20).map(|(_, text)| text.as_str()).collect::<Vec<_>>().join(" ");
    let mut request = SearchRequest::new(long, 10);
    let capped = sample.index.search(&request).unwrap();
    request.max_terms = None;
    let full = sample.index.search(&request).unwrap();
    assert_eq!(capped.len(), 10);
    assert_eq!(full.len(), 10);
    for (rank, hit) in capped.iter().enumerate() {
        assert_eq!(hit.bm25_rank, rank + 1);
    }
    assert!(capped.windows(2).all(|w| w[0].bm25_score >= w[1].bm25_score));
    // Capping must have changed something, or the test tests nothing.
    let scores = |hits: &[crate::Hit]| hits.iter().map(|h| (h.answer_id, h.bm25_score.to_bits())).collect::<Vec<_>>();
    assert_ne!(scores(&capped), scores(&full), "the cap left the query unchanged");
}

#[test]
fn get_answer_and_empty_queries() {
    let sample = sample();
    let first = &sample.answers[0];
    let hit = sample.index.get_answer(first.answer_id).unwrap().unwrap();
    assert_eq!(hit.question_id, first.question_id);
    assert_eq!(hit.body, mathrank_dump::html_to_text(&first.body_html));
    assert!(sample.index.get_answer(u64::MAX).unwrap().is_none());
    assert!(sample.index.search(&SearchRequest::new("the of and", 10)).unwrap().is_empty());
    assert!(sample.index.search(&SearchRequest::new("", 10)).unwrap().is_empty());
}

#[test]
fn a_question_body_finds_the_thread_of_a_short_answer() {
    let answer = |id: u64, question: u64, body: &str, question_body: &str| JoinedAnswer {
        answer_id: id,
        question_id: question,
        question_title: "A question".into(),
        tags: vec![],
        accepted: false,
        votes: 0,
        created: 0,
        body_html: body.into(),
        question_body_html: question_body.into(),
    };
    let threads = vec![
        answer(
            2,
            1,
            "<p>Use induction on $n$.</p>",
            "<p>Show that the Fibonacci numbers satisfy Cassini's identity.</p>",
        ),
        answer(4, 3, "<p>Compare with a geometric series.</p>", "<p>Does the harmonic series converge?</p>"),
    ];
    let index = AnswerIndex::build_in_ram(threads.clone()).unwrap();
    let hits = index.search(&SearchRequest::new("Cassini identity for Fibonacci numbers", 10)).unwrap();
    assert_eq!(hits.first().map(|h| h.answer_id), Some(2), "found through its question's body");
    assert!(!hits[0].body.contains("Cassini"), "the stored body, the model's segment B, is the answer alone");
    let answers_only =
        FieldRepeats { question: 0, title: 0, tags: 0, question_math: 0, title_math: 0, ..FieldRepeats::default() };
    let without = AnswerIndex::build_in_ram_with(threads, answers_only).unwrap();
    let query = SearchRequest::new("Cassini identity for Fibonacci numbers", 10);
    assert!(without.search(&query).unwrap().is_empty(), "without the question's words nothing matches");
}

/// Query time weighs only the two searched fields; the parts of a thread are weighed by the
/// index's repeats, and naming one says so.
#[test]
fn field_weights_are_prose_and_math_and_name_the_repeats_for_parts() {
    assert_eq!("math=0.5".parse::<FieldWeights>().unwrap(), FieldWeights { prose: 1.0, math: 0.5 });
    assert_eq!(" prose = 2 , math=0 ".parse::<FieldWeights>().unwrap(), FieldWeights { prose: 2.0, math: 0.0 });
    let part = "title=2".parse::<FieldWeights>().unwrap_err();
    assert!(part.contains("title") && part.contains("field repeats"), "{part}");
    assert!("mass=1".parse::<FieldWeights>().unwrap_err().contains("prose or math"));
    assert!("math=-1".parse::<FieldWeights>().is_err());
    assert!("math=NaN".parse::<FieldWeights>().is_err());
    assert!("math".parse::<FieldWeights>().is_err());
}

#[test]
fn terms_no_document_holds_do_not_take_the_places_of_rare_ones() {
    let sample = sample();
    // Sixty words found nowhere, then a real one: with max_terms 8, only the real one counts.
    let mut query: String = (0..60).map(|i| format!("zzqx{i}nonword ")).collect();
    query.push_str("eigenvalues");
    let mut request = SearchRequest::new(query, 10);
    request.max_terms = Some(8);
    let hits = sample.index.search(&request).unwrap();
    assert!(!hits.is_empty(), "the one real word still finds answers");
    let alone = sample.index.search(&SearchRequest::new("eigenvalues", 10)).unwrap();
    let ids = |hits: &[crate::Hit]| hits.iter().map(|h| h.answer_id).collect::<Vec<_>>();
    assert_eq!(ids(&hits), ids(&alone));
}

#[test]
fn bare_latex_is_delimited_and_prose_stays_prose() {
    assert_eq!(delimit_bare_latex(r"integrate \int_0^1 x^2 dx please"), r"integrate $\int_0^1 x^2 dx$ please");
    assert_eq!(delimit_bare_latex(r"\int_0^1 x^2 dx"), r"$\int_0^1 x^2 dx$");
    assert_eq!(delimit_bare_latex("why is x^2 + 1 > 0 for all real x"), "why is $x^2 + 1 > 0$ for all real x");
    assert_eq!(delimit_bare_latex("eigenvalues of a triangular matrix"), "eigenvalues of a triangular matrix");
    assert_eq!(delimit_bare_latex(r"already $x^2$ delimited \alpha"), r"already $x^2$ delimited \alpha");
    // The prose of a bare-LaTeX query is analysed as prose, not as letters of math.
    let mut prose = crate::analysis::prose_analyzer();
    let mut math = crate::analysis::math_analyzer();
    let text = delimit_bare_latex(r"compute \sum_{n=1}^\infty 1/n^2 using Fourier series");
    let prose_terms = crate::analysis::analyze(&mut prose, &text);
    assert_eq!(prose_terms, ["comput", "use", "fourier", "seri"]);
    let math_terms = crate::analysis::analyze(&mut math, &text);
    assert!(math_terms.iter().any(|t| t == r"\sum") && !math_terms.iter().any(|t| t == "F"), "{math_terms:?}");
}

proptest::proptest! {
    #[test]
    fn delimiting_keeps_every_word_and_never_panics(text in "[a-z0-9 \\^_{}+=()$.,-]{0,80}") {
        let delimited = delimit_bare_latex(&text);
        proptest::prop_assert_eq!(delimited.replace('$', ""), text.replace('$', ""));
    }
}

/// Two indexes of the same answers, one written at once, the other in several commits with
/// answers written first with other text and then rewritten (deleted documents that no merge
/// removed): the same hits, in the same order, with the same scores, as replicas must give.
#[test]
fn indexes_of_the_same_answers_rank_alike_whatever_their_history() {
    let sample = sample();
    let (first_half, second_half) = sample.answers.split_at(sample.answers.len() / 2);
    let replica = AnswerIndex::build_in_ram(second_half.iter().rev().cloned()).unwrap();
    let fields = crate::Fields::from_schema(&replica.tantivy().schema()).unwrap();
    let repeats = FieldRepeats::default();
    let mut writer: tantivy::IndexWriter = replica.tantivy().writer_with_num_threads(1, 50_000_000).unwrap();
    writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    for (i, answer) in first_half.iter().enumerate() {
        if i % 3 == 0 {
            // An earlier version, replaced as an edit replaces it.
            let mut stale = answer.clone();
            stale.body_html = format!("<p>draft: prime group integral {}</p>", "series ".repeat(i % 7));
            writer.add_document(fields.document(&stale, &repeats)).unwrap();
            writer.delete_term(tantivy::Term::from_field_u64(fields.answer_id, answer.answer_id));
        }
        writer.add_document(fields.document(answer, &repeats)).unwrap();
        if i % 97 == 0 {
            writer.commit().unwrap();
        }
    }
    writer.commit().unwrap();
    replica.reload().unwrap();
    let searcher = replica.tantivy().reader().unwrap().searcher();
    assert!(searcher.segment_readers().len() > 2, "several segments");
    assert!(searcher.segment_readers().iter().any(|reader| reader.has_deletes()), "deleted documents remain");
    assert_eq!(replica.num_answers(), sample.index.num_answers());

    let mut compared = 0;
    for (_, text) in sample.questions.iter().step_by(4) {
        let request = SearchRequest::new(text.clone(), 30);
        let ours = sample.index.search(&request).unwrap();
        let theirs = replica.search(&request).unwrap();
        let ranked =
            |hits: &[crate::Hit]| hits.iter().map(|hit| (hit.answer_id, hit.bm25_score.to_bits())).collect::<Vec<_>>();
        assert_eq!(ranked(&ours), ranked(&theirs), "{text}");
        compared += usize::from(!ours.is_empty());
    }
    assert!(compared >= 80, "{compared} queries compared");
}
