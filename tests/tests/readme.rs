//! The README's example queries return a sensible first hit over the embedded sample (BM25
//! alone: the reranker's order depends on the model, the first stage's on this project).

use mathrank_engine::{Engine, Limits, SearchParams};
use mathrank_index::Filters;
use mathrank_tests::{sample_index, workspace};

/// (the query as the README writes it inside JSON or a shell argument, the query text, its
/// filters, words the first hit's title must hold).
fn cases() -> Vec<(&'static str, &'static str, Filters, &'static [&'static str])> {
    let linear_algebra = Filters { tags_any: vec!["linear-algebra".into()], min_votes: Some(2), ..Filters::default() };
    vec![
        (
            r#""How do I compute $3^{100} \\bmod 7$?""#,
            r"How do I compute $3^{100} \bmod 7$?",
            Filters::default(),
            &["Remainder", "divided by 7"],
        ),
        (
            r#"'How do I compute $3^{100} \bmod 7$?'"#,
            r"How do I compute $3^{100} \bmod 7$?",
            Filters::default(),
            &["Remainder", "divided by 7"],
        ),
        (
            r#""Eigenvalues of a triangular matrix""#,
            "Eigenvalues of a triangular matrix",
            linear_algebra,
            &["Eigenvalues", "triangular"],
        ),
        (
            r#"'Eigenvalues of a triangular matrix'"#,
            "Eigenvalues of a triangular matrix",
            Filters::default(),
            &["Eigenvalues", "triangular"],
        ),
        (
            r#""Remainder of $4^{324}$ divided by 7""#,
            "Remainder of $4^{324}$ divided by 7",
            Filters::default(),
            &["Remainder of 4^324"],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_examples_find_sensible_first_hits() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let engine = Engine::new(sample_index(), None, Limits::default());
    for (as_written, query, filters, title_words) in cases() {
        assert!(readme.contains(as_written), "the README no longer shows {as_written}: update this test with it");
        let params =
            SearchParams { query: query.into(), top_k: 1, rerank: Some(false), filters, ..SearchParams::default() };
        let outcome = engine.search(params).await.unwrap();
        let title = &outcome.hits.first().unwrap_or_else(|| panic!("{query}: no hit")).hit.title;
        for word in title_words {
            assert!(title.contains(word), "{query}: first hit {title:?} lacks {word:?}");
        }
    }
}
