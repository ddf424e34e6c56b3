//! A newer dump applied to a store as a delta (`mathrank index --dump NEWER --update`).
//!
//! Each post of the dump is compared with the store by `Id` and [`content_hash`]: a new or
//! changed one becomes [`Op::FromDump`], an unchanged one costs nothing (its hash is computed
//! from the row's bytes and the row is never parsed: see
//! [`mathrank_dump::DumpSource::posts_skipping_known`]), and every stored post
//! the dump no longer has becomes [`Op::VanishedFromDump`]. What the write API changed after
//! the dump's date is left alone: the store decides that inside each transaction, so a write
//! racing the delta is never overwritten. A post the API wrote that differs from the dump is
//! held back until the whole dump is read, because only then is the dump's date known (the
//! newest `CreationDate` in it, unless given).
//!
//! Memory: the digests of the store (about 60 bytes a post) and the ids seen, plus the
//! API-written posts held back, which are bounded.

use std::collections::{HashMap, HashSet};

use foldhash::fast::RandomState;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mathrank_dump::{DumpSource, RowEvent};

use crate::{Digest, Error, Op, Origin, Outcome, Post, PostStore, Result, content_hash};

/// How to apply a delta.
#[derive(Debug, Clone, Default)]
pub struct DeltaOptions {
    /// The dump's date (Unix seconds): API writes after it are left alone. Unset: the newest
    /// `CreationDate` in the dump.
    pub dump_date: Option<i64>,
}

/// What a delta did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DeltaSummary {
    /// Questions and answers read from the dump.
    pub posts: u64,
    pub unchanged: u64,
    pub created: u64,
    pub updated: u64,
    /// Stored posts the dump no longer has.
    pub deleted: u64,
    /// Changes left alone because the write API wrote the post after the dump's date.
    pub kept: u64,
    /// Operations the store refused (listed in the log).
    pub rejected: u64,
    /// Rows of the dump that are not usable posts (bad rows, other post types).
    pub skipped_rows: u64,
    /// The dump date used.
    pub dump_date: i64,
    /// The store's last sequence number afterwards.
    pub seq: u64,
    pub seconds: f64,
}

/// A progress report, about every 250 ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeltaProgress {
    pub bytes_read: u64,
    pub total_bytes: Option<u64>,
    pub posts: u64,
    pub changed: u64,
}

/// Operations per store transaction.
const BATCH: usize = 2_000;

/// Bytes of API-written posts held back until the dump's date is known; beyond it they are
/// applied with the newest date seen so far (which can only leave more API writes alone).
const MAX_HELD_BYTES: usize = 256 << 20;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Applies the dump `source` to `store` as a delta.
pub fn apply_dump_delta(
    source: DumpSource,
    store: &dyn PostStore,
    options: &DeltaOptions,
    progress: &mut dyn FnMut(&DeltaProgress),
) -> Result<DeltaSummary> {
    let started = Instant::now();
    // Ids are looked up once per row of the dump: a fast hash, not SipHash (ids are not
    // chosen by an attacker who could gain from collisions: a dump is trusted input).
    let mut digests: HashMap<u64, Digest, RandomState> = HashMap::default();
    store.scan_digests(&mut |digest| {
        digests.insert(digest.id, digest);
        true
    })?;
    let digests = Arc::new(digests);
    let known = Arc::clone(&digests);
    let is_unchanged =
        move |id, hash| known.get(&id).is_some_and(|stored: &Digest| !stored.deleted && stored.hash == hash);
    let mut delta = Delta {
        store,
        dump_date: options.dump_date,
        summary: DeltaSummary::default(),
        ops: Vec::with_capacity(BATCH),
        seen: HashSet::with_capacity_and_hasher(digests.len(), RandomState::default()),
        held: Vec::new(),
        held_bytes: 0,
        newest: i64::MIN,
    };
    let total_bytes = source.total_bytes;
    let bytes_read = source.bytes_read_counter();
    let mut last_report = Instant::now();
    // Unchanged rows, most of a delta, are recognised from their bytes without being parsed.
    for event in source.posts_skipping_known(is_unchanged) {
        match event.map_err(Error::Dump)? {
            RowEvent::Post(post) => {
                let stored = digests.get(&post.id);
                delta.post(post, stored)?;
            }
            RowEvent::Unchanged { id, created } => delta.unchanged(id, created),
            RowEvent::OtherType { .. } | RowEvent::Skipped(_) => delta.summary.skipped_rows += 1,
        }
        if last_report.elapsed() >= Duration::from_millis(250) {
            last_report = Instant::now();
            let s = &delta.summary;
            progress(&DeltaProgress {
                bytes_read: bytes_read.load(std::sync::atomic::Ordering::Relaxed),
                total_bytes,
                posts: s.posts,
                changed: s.created + s.updated + s.deleted,
            });
        }
    }
    let newest = delta.newest;
    let dump_date = options.dump_date.unwrap_or(if newest == i64::MIN { now() } else { newest });
    for post in std::mem::take(&mut delta.held) {
        delta.push(Op::FromDump { post, dump_date })?;
    }
    let mut vanished: Vec<u64> = digests
        .values()
        .filter(|digest| !digest.deleted && !delta.seen.contains(&digest.id))
        .map(|digest| digest.id)
        .collect();
    vanished.sort_unstable();
    for id in vanished {
        delta.push(Op::VanishedFromDump { id, dump_date })?;
    }
    delta.flush()?;
    let mut summary = delta.summary;
    summary.dump_date = dump_date;
    summary.seq = store.last_seq()?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

struct Delta<'a> {
    store: &'a dyn PostStore,
    /// The dump date given, if any.
    dump_date: Option<i64>,
    summary: DeltaSummary,
    ops: Vec<Op>,
    /// Ids read from the dump: the first of duplicate ids counts, as in a build.
    seen: HashSet<u64, RandomState>,
    /// API-written posts that differ from the dump, waiting for the dump's date.
    held: Vec<Post>,
    held_bytes: usize,
    /// The newest `CreationDate` so far.
    newest: i64,
}

impl Delta<'_> {
    fn unchanged(&mut self, id: u64, created: i64) {
        self.summary.posts += 1;
        self.newest = self.newest.max(created);
        if self.seen.insert(id) {
            self.summary.unchanged += 1;
        }
    }

    fn post(&mut self, post: Post, stored: Option<&Digest>) -> Result<()> {
        self.summary.posts += 1;
        self.newest = self.newest.max(post.created);
        if !self.seen.insert(post.id) {
            return Ok(());
        }
        let dump_date = self.dump_date.unwrap_or(self.newest);
        match stored {
            Some(stored) if !stored.deleted && stored.hash == content_hash(&post) => self.summary.unchanged += 1,
            Some(stored) if stored.origin == Origin::Api && self.dump_date.is_none() => {
                self.held_bytes += post.body_html.len() + post.title.len();
                self.held.push(post);
                if self.held_bytes > MAX_HELD_BYTES {
                    for post in std::mem::take(&mut self.held) {
                        self.push(Op::FromDump { post, dump_date })?;
                    }
                    self.held_bytes = 0;
                }
            }
            _ => self.push(Op::FromDump { post, dump_date })?,
        }
        Ok(())
    }

    fn push(&mut self, op: Op) -> Result<()> {
        self.ops.push(op);
        if self.ops.len() >= BATCH { self.flush() } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<()> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let applied = self.store.apply(&self.ops, now())?;
        for (op, outcome) in self.ops.iter().zip(applied.outcomes) {
            let summary = &mut self.summary;
            match outcome {
                Outcome::Created => summary.created += 1,
                Outcome::Updated => summary.updated += 1,
                Outcome::Deleted => summary.deleted += 1,
                Outcome::Noop => summary.unchanged += 1,
                Outcome::Kept => summary.kept += 1,
                Outcome::Conflict { .. } => summary.kept += 1,
                Outcome::Rejected { field, message } => {
                    summary.rejected += 1;
                    tracing::warn!(id = op.id(), field, message, "the store refused a post of the dump");
                }
            }
        }
        self.ops.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{answer, question};
    use crate::{STORE_FILE, SqliteStore};

    fn row(post: &Post) -> String {
        let kind = match post.kind {
            crate::PostKind::Question => 1,
            crate::PostKind::Answer => 2,
        };
        let parent = post.parent_id.map(|p| format!(r#" ParentId="{p}""#)).unwrap_or_default();
        let escape =
            |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
        format!(
            r#"<row Id="{}" PostTypeId="{kind}"{parent} Score="{}" CreationDate="2020-01-0{}T00:00:00.000" Title="{}" Tags="{}" Body="{}" />"#,
            post.id,
            post.score,
            1 + post.id % 9,
            escape(&post.title),
            escape(&crate::join_tags(&post.tags)),
            escape(&post.body_html)
        )
    }

    fn dump(posts: &[Post]) -> DumpSource {
        let xml = format!("<posts>{}</posts>", posts.iter().map(row).collect::<String>());
        DumpSource::from_reader("dump.xml", Some(xml.len() as u64), std::io::Cursor::new(xml.into_bytes()))
    }

    fn dated(post: Post) -> Post {
        let created = mathrank_dump::parse_creation_date(&format!("2020-01-0{}T00:00:00", 1 + post.id % 9)).unwrap();
        Post { created, ..post }
    }

    #[test]
    fn a_newer_dump_changes_what_changed_deletes_what_vanished_and_keeps_newer_api_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join(STORE_FILE)).unwrap();
        let first = [
            dated(question(1, "one")),
            dated(answer(2, 1, "two")),
            dated(question(3, "three")),
            dated(answer(4, 3, "four")),
        ];
        let summary = apply_dump_delta(dump(&first), &store, &DeltaOptions::default(), &mut |_| {}).unwrap();
        assert_eq!((summary.created, summary.unchanged, summary.deleted), (4, 0, 0));
        assert_eq!(summary.dump_date, first.iter().map(|p| p.created).max().unwrap(), "the newest CreationDate");
        let again = apply_dump_delta(dump(&first), &store, &DeltaOptions::default(), &mut |_| {}).unwrap();
        assert_eq!((again.created, again.updated, again.unchanged, again.seq), (0, 0, 4, summary.seq), "nothing to do");

        // The newer dump is taken at `taken`. The API edited post 2 and wrote post 9 after
        // that, and edited post 4 before it.
        let taken = 1_700_000_000;
        store.apply(&[Op::Upsert { post: dated(answer(2, 1, "api edit")), version: 2 }], taken + 100).unwrap();
        store.apply(&[Op::Upsert { post: dated(question(9, "api only")), version: 1 }], taken + 100).unwrap();
        store.apply(&[Op::Upsert { post: dated(answer(4, 3, "old api edit")), version: 2 }], taken - 100).unwrap();
        let newer = [
            dated(question(1, "one, edited")),
            dated(answer(2, 1, "two")),
            dated(answer(4, 3, "four")),
            dated(question(5, "five")),
        ];
        let options = DeltaOptions { dump_date: Some(taken) };
        let delta = apply_dump_delta(dump(&newer), &store, &options, &mut |_| {}).unwrap();
        assert_eq!(delta.created, 1, "post 5: {delta:?}");
        assert_eq!(delta.updated, 2, "post 1, and post 4 whose API edit predates the dump: {delta:?}");
        assert_eq!(delta.kept, 2, "post 2's API edit and post 9 came after the dump: {delta:?}");
        assert_eq!(delta.deleted, 1, "post 3 vanished: {delta:?}");
        let body = |id| store.get(id).unwrap().and_then(|row| row.post).map(|post| post.body_html);
        assert_eq!(body(2).as_deref(), Some("<p>api edit</p>"));
        assert_eq!(body(4).as_deref(), Some("<p>four</p>"));
        assert_eq!(store.get(4).unwrap().unwrap().version, 2, "the dump keeps the version the API gave");
        assert!(store.get(3).unwrap().unwrap().deleted);
        assert!(!store.get(9).unwrap().unwrap().deleted, "an API post the dump never had stays");
    }

    #[test]
    fn api_writes_that_differ_wait_for_the_dump_date_found_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join(STORE_FILE)).unwrap();
        // Post 1 is the oldest of the dump; the API edited it after post 1 was created but
        // before the dump's newest post: only the whole dump's date says the dump wins.
        let posts = [dated(question(1, "dump")), dated(question(8, "newest"))];
        let edited_at = (posts[0].created + posts[1].created) / 2;
        store.apply(&[Op::Upsert { post: dated(question(1, "api")), version: 1 }], edited_at).unwrap();
        let delta = apply_dump_delta(dump(&posts), &store, &DeltaOptions::default(), &mut |_| {}).unwrap();
        assert_eq!((delta.updated, delta.kept), (1, 0), "{delta:?}");
        assert_eq!(store.get(1).unwrap().unwrap().post.unwrap().title, "dump");
    }
}
