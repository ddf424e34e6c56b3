//! The content hash of a post: what a store keeps to find, in a newer dump, the posts that
//! changed. It lives beside the reader so that [`crate::RowHasher`] can compute it straight
//! from a row's bytes, equal to [`content_hash`] of the parsed post by construction.

use sha2::Digest as _;

use crate::{Post, PostKind};

/// A stable hash of a post's content (all its attributes but the id), to find what a newer
/// dump changed.
pub fn content_hash(post: &Post) -> u64 {
    let tags = join_tags(&post.tags);
    let fields = Fields {
        kind: post.kind,
        parent_id: post.parent_id,
        accepted_answer_id: post.accepted_answer_id,
        score: post.score,
        created: post.created,
        title: &post.title,
        joined_tags: &tags,
        body_html: &post.body_html,
    };
    fields.hash()
}

/// A post's hashed attributes, borrowed from wherever they were decoded.
pub(crate) struct Fields<'a> {
    pub kind: PostKind,
    pub parent_id: Option<u64>,
    pub accepted_answer_id: Option<u64>,
    pub score: i64,
    pub created: i64,
    pub title: &'a str,
    /// Tags as [`join_tags`] writes them.
    pub joined_tags: &'a str,
    pub body_html: &'a str,
}

impl Fields<'_> {
    /// The first 8 bytes of a SHA-256 over the attributes, texts with their lengths (so that
    /// moving text between fields changes the hash). The layout is stored in every post
    /// store: changing it makes the next delta rewrite every post once.
    pub fn hash(&self) -> u64 {
        let mut hasher = sha2::Sha256::new();
        let kind: u8 = match self.kind {
            PostKind::Question => 1,
            PostKind::Answer => 2,
        };
        hasher.update([kind]);
        for number in [self.parent_id, self.accepted_answer_id] {
            match number {
                Some(value) => {
                    hasher.update([1]);
                    hasher.update(value.to_le_bytes());
                }
                None => hasher.update([0]),
            }
        }
        hasher.update(self.score.to_le_bytes());
        hasher.update(self.created.to_le_bytes());
        for text in [self.title, self.joined_tags, self.body_html] {
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
        let digest = hasher.finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
}

/// Tags as the current dumps write them: `|a|b|` (empty for none).
pub fn join_tags(tags: &[String]) -> String {
    let mut joined = String::new();
    join_tags_into(tags.iter().map(String::as_str), &mut joined);
    joined
}

/// [`join_tags`] appending to `out`.
pub(crate) fn join_tags_into<'a>(tags: impl Iterator<Item = &'a str>, out: &mut String) {
    for tag in tags {
        if out.is_empty() {
            out.push('|');
        }
        out.push_str(tag);
        out.push('|');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post() -> Post {
        Post {
            id: 1,
            kind: PostKind::Question,
            parent_id: None,
            accepted_answer_id: Some(3),
            title: "t".into(),
            tags: vec!["a".into(), "b".into()],
            body_html: "b".into(),
            score: 2,
            created: 5,
        }
    }

    #[test]
    fn the_hash_sees_every_attribute_but_the_id() {
        let base = content_hash(&post());
        assert_eq!(content_hash(&Post { id: 9, ..post() }), base);
        let changed = [
            Post { kind: PostKind::Answer, ..post() },
            Post { parent_id: Some(1), ..post() },
            Post { accepted_answer_id: None, ..post() },
            Post { title: "u".into(), ..post() },
            Post { tags: vec!["a".into()], ..post() },
            Post { body_html: "c".into(), ..post() },
            Post { score: 3, ..post() },
            Post { created: 6, ..post() },
            // Lengths are hashed: moving text between fields changes the hash.
            Post { title: "tb".into(), body_html: String::new(), ..post() },
        ];
        for other in changed {
            assert_ne!(content_hash(&other), base, "{other:?}");
        }
    }

    #[test]
    fn the_layout_is_stable_because_stores_keep_it() {
        // Stores written by earlier versions hold these values.
        assert_eq!(content_hash(&post()), STABLE);
    }

    const STABLE: u64 = 0xf2d2_6ea2_2416_acfd;

    #[test]
    fn tags_join_as_current_dumps_write_them() {
        assert_eq!(join_tags(&[]), "");
        assert_eq!(join_tags(&["a".into(), "b-c".into()]), "|a|b-c|");
        assert_eq!(crate::parse_tags(&join_tags(&["a".into(), "b-c".into()])), ["a", "b-c"]);
    }
}
