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
                RowEvent::Unchanged { .. } => panic!("nothing was asked to be skipped"),
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

    #[test]
    fn a_second_reading_skips_every_post_whose_hash_it_knows() {
        let mut hashes = std::collections::HashMap::new();
        let mut kept = Vec::new();
        for event in PostsReader::new(SAMPLE_POSTS_XML.as_bytes()) {
            match event.unwrap() {
                RowEvent::Post(post) => {
                    hashes.entry(post.id).or_insert(crate::content_hash(&post));
                }
                other => kept.push(other),
            }
        }
        // One post is "changed": its hash is not the one known.
        let changed = *hashes.keys().min().unwrap();
        hashes.insert(changed, 0);
        // One tag at a time, batches of a few rows, the whole sample in one batch.
        for batch_bytes in [1, 3000, crate::limit::BATCH_BYTES] {
            let known = hashes.clone();
            let reader = PostsReader::new(SAMPLE_POSTS_XML.as_bytes())
                .skip_known_in_batches(move |id, hash| known.get(&id) == Some(&hash), batch_bytes);
            let (mut unchanged, mut parsed, mut others) = (0, Vec::new(), Vec::new());
            for event in reader {
                match event.unwrap() {
                    RowEvent::Unchanged { id, .. } => {
                        assert_ne!(id, changed);
                        unchanged += 1;
                    }
                    RowEvent::Post(post) => parsed.push(post.id),
                    other => others.push(other),
                }
            }
            assert_eq!(parsed, [changed], "only the changed post is parsed ({batch_bytes})");
            assert_eq!(unchanged + 1, hashes.len(), "{batch_bytes}");
            // Skipped rows carry their byte offsets: they stay exact past the placeholders.
            assert_eq!(others, kept, "bad rows and other types are reported as before ({batch_bytes})");
        }
    }
}
