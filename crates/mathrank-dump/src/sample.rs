//! The embedded sample dump: ~320 questions and ~650 answers written for this project by
//! `sample/generate_sample.py` (no Stack Exchange text), so that `mathrank index --sample` and
//! `mathrank serve` work with no download.

/// Name recorded as the source of an index built from the sample.
pub const SAMPLE_NAME: &str = "embedded-sample";

/// The sample `Posts.xml` (current dump format, with a few deliberately bad rows).
pub const SAMPLE_POSTS_XML: &str = include_str!("../sample/Posts.xml");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AnswerJoiner, PostKind, PostsReader, RowEvent};

    #[test]
    fn sample_is_large_realistic_and_has_bad_rows() {
        let mut joiner = AnswerJoiner::default();
        let (mut skipped, mut other, mut joined, mut math_container, mut bare_dollar) = (0, 0, 0, 0, 0);
        for event in PostsReader::new(SAMPLE_POSTS_XML.as_bytes()) {
            match event.unwrap() {
                RowEvent::Post(post) => {
                    if post.kind == PostKind::Answer {
                        if post.body_html.contains("math-container") {
                            math_container += 1;
                        } else if post.body_html.contains('$') {
                            bare_dollar += 1;
                        }
                    }
                    joined += joiner.push(post).unwrap().len();
                }
                RowEvent::Skipped(_) => skipped += 1,
                RowEvent::OtherType { .. } => other += 1,
            }
        }
        let summary = joiner.finish();
        assert!(summary.questions >= 300, "{summary:?}");
        assert!(summary.answers >= 600, "{summary:?}");
        assert_eq!(summary.answers, joined as u64);
        assert_eq!(summary.orphan_answers, 1);
        assert_eq!(skipped, 5);
        assert_eq!(other, 2);
        assert!(math_container > 100 && bare_dollar > 100, "{math_container} {bare_dollar}");
    }
}
