//! The conformance suite every [`PostStore`] passes: one function per rule, each taking a
//! fresh, empty store. A store's crate runs them all with [`conformance_tests!`]:
//!
//! ```ignore
//! mathrank_store::conformance_tests!({
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = mathrank_store::SqliteStore::open(&dir.path().join("posts.sqlite")).unwrap();
//!     (dir, store) // (whatever must outlive the test, the store)
//! });
//! ```
//!
//! The functions panic on a violation, as tests do.

use std::time::Duration;

use crate::{Op, Origin, Outcome, Post, PostKind, PostStore};

/// Generates one `#[test]` per conformance rule. `$make` is evaluated once per test and
/// yields `(guard, store)`: the guard (a temporary directory, a database) lives as long as the
/// test. With `optional:`, `$make` yields an `Option`, and `None` skips the test (a store whose
/// server is not installed here, which `$make` says).
#[macro_export]
macro_rules! conformance_tests {
    (optional: $make:expr) => {
        $crate::conformance_tests!(@each $make;
            upserts_create_update_noop_and_conflict,
            deletes_leave_tombstones_that_stale_upserts_cannot_pass,
            a_delete_before_the_post_blocks_its_late_upsert,
            answers_wait_for_their_question,
            an_answer_to_a_deleted_question_is_rejected,
            a_post_cannot_change_its_type,
            every_change_takes_the_next_sequence_number,
            changes_list_each_post_once_in_its_current_state,
            one_rejected_operation_spoils_nothing_else,
            dump_posts_follow_their_content_and_leave_newer_api_writes_alone,
            vanished_dump_posts_are_deleted_unless_the_api_wrote_them_later,
            the_joined_scan_holds_live_pairs_and_its_sequence_number,
            digests_cover_every_row,
            waiting_wakes_on_a_write,
            numbers_beyond_the_store_are_rejected,
            counts_follow_the_rows,
            any_text_round_trips,
            concurrent_writers_leave_no_gap_for_a_follower,
            concurrent_writes_of_one_post_are_decided_by_version
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let Some((_guard, store)) = $make else { return };
                $crate::conformance::$name(&store);
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance_tests!(optional: Some($make));
    };
}

/// A question with a title and a body derived from it.
pub fn question(id: u64, title: &str) -> Post {
    Post {
        id,
        kind: PostKind::Question,
        parent_id: None,
        accepted_answer_id: None,
        title: title.into(),
        tags: vec!["algebra".into(), "proof-writing".into()],
        body_html: format!("<p>body of {title}</p>"),
        score: 1,
        created: 1_500_000_000,
    }
}

/// An answer to `parent`.
pub fn answer(id: u64, parent: u64, body: &str) -> Post {
    Post {
        id,
        kind: PostKind::Answer,
        parent_id: Some(parent),
        accepted_answer_id: None,
        title: String::new(),
        tags: Vec::new(),
        body_html: format!("<p>{body}</p>"),
        score: 0,
        created: 1_500_000_100,
    }
}

fn upsert(post: Post, version: u64) -> Op {
    Op::Upsert { post, version }
}

fn apply(store: &dyn PostStore, ops: &[Op]) -> Vec<Outcome> {
    store.apply(ops, 1_700_000_000).expect("apply").outcomes
}

pub fn upserts_create_update_noop_and_conflict(store: &dyn PostStore) {
    assert_eq!(apply(store, &[upsert(question(1, "v1"), 1)]), [Outcome::Created]);
    assert_eq!(apply(store, &[upsert(question(1, "v3"), 3)]), [Outcome::Updated]);
    assert_eq!(apply(store, &[upsert(question(1, "v3 again"), 3)]), [Outcome::Noop], "same version: a retry");
    assert_eq!(apply(store, &[upsert(question(1, "v2"), 2)]), [Outcome::Conflict { stored_version: 3 }]);
    let row = store.get(1).unwrap().expect("stored");
    assert_eq!((row.version, row.deleted, row.origin), (3, false, Origin::Api));
    assert_eq!(row.post.expect("live").title, "v3", "neither the retry nor the stale write changed it");
    assert!(store.get(2).unwrap().is_none());
}

pub fn deletes_leave_tombstones_that_stale_upserts_cannot_pass(store: &dyn PostStore) {
    apply(store, &[upsert(question(1, "q"), 2), upsert(answer(2, 1, "a"), 1)]);
    assert_eq!(apply(store, &[Op::Delete { id: 2, version: 1 }]), [Outcome::Deleted], "delete at the same version");
    assert_eq!(apply(store, &[Op::Delete { id: 1, version: 1 }]), [Outcome::Conflict { stored_version: 2 }]);
    assert_eq!(apply(store, &[Op::Delete { id: 1, version: 3 }]), [Outcome::Deleted]);
    assert_eq!(apply(store, &[Op::Delete { id: 1, version: 3 }]), [Outcome::Noop], "deleting twice");
    let row = store.get(1).unwrap().expect("tombstone");
    assert!(row.deleted && row.post.is_none());
    assert_eq!((row.version, row.kind), (3, Some(PostKind::Question)));
    for stale in [2, 3] {
        assert_eq!(
            apply(store, &[upsert(question(1, "late"), stale)]),
            [Outcome::Conflict { stored_version: 3 }],
            "a late upsert at version {stale} must not bring the question back"
        );
    }
    assert_eq!(apply(store, &[upsert(question(1, "undeleted"), 4)]), [Outcome::Created], "a newer version may");
    assert_eq!(store.get(1).unwrap().unwrap().post.unwrap().title, "undeleted");
}

pub fn a_delete_before_the_post_blocks_its_late_upsert(store: &dyn PostStore) {
    assert_eq!(apply(store, &[Op::Delete { id: 9, version: 5 }]), [Outcome::Deleted]);
    let row = store.get(9).unwrap().expect("tombstone");
    assert!(row.deleted && row.kind.is_none());
    assert_eq!(apply(store, &[upsert(question(9, "late"), 5)]), [Outcome::Conflict { stored_version: 5 }]);
    assert_eq!(apply(store, &[upsert(question(9, "new"), 6)]), [Outcome::Created]);
}

pub fn answers_wait_for_their_question(store: &dyn PostStore) {
    assert_eq!(apply(store, &[upsert(answer(11, 10, "early"), 1)]), [Outcome::Created]);
    assert_eq!(store.answers_of(10).unwrap().len(), 1, "the answer waits in the store");
    let mut pairs = Vec::new();
    store
        .scan_joined(&mut |q, a| {
            pairs.push((q.id, a.id));
            true
        })
        .unwrap();
    assert!(pairs.is_empty(), "no question yet: nothing to index");
    apply(store, &[upsert(question(10, "q"), 1), upsert(answer(12, 10, "later"), 1)]);
    let answers: Vec<u64> = store.answers_of(10).unwrap().iter().map(|a| a.id).collect();
    assert_eq!(answers, [11, 12]);
    apply(store, &[Op::Delete { id: 12, version: 1 }]);
    let answers: Vec<u64> = store.answers_of(10).unwrap().iter().map(|a| a.id).collect();
    assert_eq!(answers, [11], "deleted answers are not listed");
}

pub fn an_answer_to_a_deleted_question_is_rejected(store: &dyn PostStore) {
    apply(store, &[upsert(question(1, "q"), 1), Op::Delete { id: 1, version: 2 }]);
    let outcomes = apply(store, &[upsert(answer(2, 1, "a"), 1)]);
    let [Outcome::Rejected { field, message }] = outcomes.as_slice() else { panic!("{outcomes:?}") };
    assert_eq!(*field, "ParentId");
    assert!(message.contains("deleted"), "{message}");
    assert!(store.get(2).unwrap().is_none(), "nothing stored");
    apply(store, &[upsert(answer(3, 4, "a"), 1)]);
    let outcomes = apply(store, &[upsert(answer(5, 3, "answer to an answer"), 1)]);
    assert!(matches!(&outcomes[0], Outcome::Rejected { field: "ParentId", .. }), "{outcomes:?}");
}

pub fn a_post_cannot_change_its_type(store: &dyn PostStore) {
    apply(store, &[upsert(question(1, "q"), 1)]);
    let outcomes = apply(store, &[upsert(answer(1, 5, "a"), 2)]);
    assert!(matches!(&outcomes[0], Outcome::Rejected { field: "PostTypeId", .. }), "{outcomes:?}");
    assert_eq!(store.get(1).unwrap().unwrap().kind, Some(PostKind::Question));
}

pub fn every_change_takes_the_next_sequence_number(store: &dyn PostStore) {
    assert_eq!(store.last_seq().unwrap(), 0);
    let first = store.apply(&[upsert(question(1, "a"), 1), upsert(question(2, "b"), 1)], 1).unwrap();
    assert_eq!(first.seq, 2);
    let second = store.apply(&[upsert(question(1, "a"), 1), upsert(question(1, "old"), 0)], 2).unwrap();
    assert_eq!(second.outcomes, [Outcome::Noop, Outcome::Conflict { stored_version: 1 }]);
    assert_eq!(second.seq, 2, "no-ops and conflicts take no number");
    let third = store.apply(&[Op::Delete { id: 2, version: 1 }], 3).unwrap();
    assert_eq!(third.seq, 3);
    assert_eq!(store.last_seq().unwrap(), 3);
    assert_eq!(store.get(2).unwrap().unwrap().seq, 3);
    assert_eq!(store.get(1).unwrap().unwrap().written_at, 1);
}

pub fn changes_list_each_post_once_in_its_current_state(store: &dyn PostStore) {
    apply(store, &[upsert(question(1, "a"), 1), upsert(question(2, "b"), 1), upsert(question(3, "c"), 1)]);
    let mark = store.last_seq().unwrap();
    apply(store, &[upsert(question(1, "a2"), 2)]);
    apply(store, &[Op::Delete { id: 3, version: 1 }]);
    apply(store, &[upsert(question(1, "a3"), 3)]);
    let changes = store.changes(mark, 100).unwrap();
    let seen: Vec<(u64, bool)> = changes.iter().map(|row| (row.id, row.deleted)).collect();
    assert_eq!(seen, [(3, true), (1, false)], "by sequence number, each post once");
    assert_eq!(changes[1].post.as_ref().unwrap().title, "a3");
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    let limited = store.changes(0, 2).unwrap();
    assert_eq!(limited.len(), 2);
    let rest = store.changes(limited[1].seq, 100).unwrap();
    assert_eq!(limited.len() + rest.len(), 3, "paging by the last sequence number sees every post");
    assert!(store.changes(store.last_seq().unwrap(), 10).unwrap().is_empty());
}

pub fn one_rejected_operation_spoils_nothing_else(store: &dyn PostStore) {
    apply(store, &[upsert(question(1, "q"), 1), Op::Delete { id: 1, version: 2 }]);
    let outcomes = apply(
        store,
        &[upsert(question(5, "ok"), 1), upsert(answer(6, 1, "orphaned"), 1), upsert(answer(7, 5, "ok"), 1)],
    );
    assert_eq!(outcomes[0], Outcome::Created);
    assert!(matches!(outcomes[1], Outcome::Rejected { .. }));
    assert_eq!(outcomes[2], Outcome::Created);
    assert!(store.get(5).unwrap().is_some() && store.get(7).unwrap().is_some());
}

pub fn dump_posts_follow_their_content_and_leave_newer_api_writes_alone(store: &dyn PostStore) {
    let dump_date = 1_600_000_000;
    let from_dump = |post: Post| Op::FromDump { post, dump_date };
    assert_eq!(store.apply(&[from_dump(question(1, "dump"))], 10).unwrap().outcomes, [Outcome::Created]);
    let row = store.get(1).unwrap().unwrap();
    assert_eq!((row.version, row.origin), (0, Origin::Dump));
    assert_eq!(apply(store, &[from_dump(question(1, "dump"))]), [Outcome::Noop], "same content");
    assert_eq!(apply(store, &[from_dump(question(1, "newer dump"))]), [Outcome::Updated]);
    // The API writes post 1 before the dump's date and post 2 after it.
    store.apply(&[upsert(question(1, "api, before the dump"), 4)], dump_date - 10).unwrap();
    store.apply(&[upsert(question(2, "api, after the dump"), 1)], dump_date + 10).unwrap();
    let outcomes = apply(store, &[from_dump(question(1, "the dump's")), from_dump(question(2, "the dump's"))]);
    assert_eq!(outcomes, [Outcome::Updated, Outcome::Kept]);
    let one = store.get(1).unwrap().unwrap();
    assert_eq!((one.post.unwrap().title.as_str(), one.version, one.origin), ("the dump's", 4, Origin::Dump));
    assert_eq!(store.get(2).unwrap().unwrap().post.unwrap().title, "api, after the dump");
    assert_eq!(apply(store, &[upsert(question(1, "api again"), 5)]), [Outcome::Updated], "versions go on");
    // A dump resurrects a post deleted before its date (the site undeleted it).
    store.apply(&[Op::Delete { id: 1, version: 6 }], dump_date - 5).unwrap();
    assert_eq!(apply(store, &[from_dump(question(1, "back"))]), [Outcome::Created]);
    assert_eq!(store.get(1).unwrap().unwrap().version, 6);
}

pub fn vanished_dump_posts_are_deleted_unless_the_api_wrote_them_later(store: &dyn PostStore) {
    let dump_date = 1_600_000_000;
    store.apply(&[Op::FromDump { post: question(1, "dump"), dump_date }], 10).unwrap();
    store.apply(&[upsert(question(2, "api after"), 3)], dump_date + 1).unwrap();
    store.apply(&[upsert(question(3, "api before"), 3)], dump_date - 1).unwrap();
    let vanished = |id| Op::VanishedFromDump { id, dump_date };
    let outcomes = apply(store, &[vanished(1), vanished(2), vanished(3), vanished(4)]);
    assert_eq!(outcomes, [Outcome::Deleted, Outcome::Kept, Outcome::Deleted, Outcome::Noop]);
    assert!(store.get(1).unwrap().unwrap().deleted);
    assert!(!store.get(2).unwrap().unwrap().deleted);
    let three = store.get(3).unwrap().unwrap();
    assert!(three.deleted && three.version == 3, "the version stays, so that a newer API write can undelete");
    assert_eq!(apply(store, &[upsert(question(3, "again"), 3)]), [Outcome::Conflict { stored_version: 3 }]);
    assert_eq!(apply(store, &[upsert(question(3, "again"), 4)]), [Outcome::Created]);
}

pub fn the_joined_scan_holds_live_pairs_and_its_sequence_number(store: &dyn PostStore) {
    apply(
        store,
        &[
            upsert(question(20, "q20"), 1),
            upsert(question(10, "q10"), 1),
            upsert(answer(21, 20, "a21"), 1),
            upsert(answer(12, 10, "a12"), 1),
            upsert(answer(11, 10, "a11"), 1),
            upsert(answer(31, 30, "waiting"), 1),
            upsert(answer(13, 10, "deleted"), 1),
            upsert(question(40, "deleted question"), 1),
            upsert(answer(41, 40, "under a deleted question"), 1),
        ],
    );
    apply(store, &[Op::Delete { id: 13, version: 1 }, Op::Delete { id: 40, version: 1 }]);
    let mut pairs = Vec::new();
    let seq = store
        .scan_joined(&mut |q, a| {
            pairs.push((q.id, a.id, q.title.clone()));
            true
        })
        .unwrap();
    assert_eq!(seq, store.last_seq().unwrap());
    let expected = [(10, 11, "q10"), (10, 12, "q10"), (20, 21, "q20")];
    let pairs: Vec<(u64, u64, &str)> = pairs.iter().map(|(q, a, t)| (*q, *a, t.as_str())).collect();
    assert_eq!(pairs, expected);
    let mut visited = 0;
    store
        .scan_joined(&mut |_, _| {
            visited += 1;
            false
        })
        .unwrap();
    assert_eq!(visited, 1, "returning false stops the scan");
}

pub fn digests_cover_every_row(store: &dyn PostStore) {
    let post = question(1, "q");
    let hash = crate::content_hash(&post);
    apply(store, &[upsert(post, 1), upsert(question(2, "gone"), 1), Op::Delete { id: 2, version: 1 }]);
    store.apply(&[Op::FromDump { post: question(3, "dump"), dump_date: 0 }], 77).unwrap();
    let mut digests = Vec::new();
    store
        .scan_digests(&mut |digest| {
            digests.push(digest);
            true
        })
        .unwrap();
    digests.sort_by_key(|d| d.id);
    let summary: Vec<(u64, bool, Origin)> = digests.iter().map(|d| (d.id, d.deleted, d.origin)).collect();
    assert_eq!(summary, [(1, false, Origin::Api), (2, true, Origin::Api), (3, false, Origin::Dump)]);
    assert_eq!(digests[0].hash, hash);
    assert_eq!(digests[2].written_at, 77);
}

pub fn waiting_wakes_on_a_write(store: &dyn PostStore) {
    let before = store.last_seq().unwrap();
    assert_eq!(store.wait_for_change(before, Duration::from_millis(20)).unwrap(), before, "times out unchanged");
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| store.wait_for_change(before, Duration::from_secs(30)).unwrap());
        store.apply(&[upsert(question(1, "q"), 1)], 1).unwrap();
        assert_eq!(waiter.join().unwrap(), before + 1);
    });
}

pub fn numbers_beyond_the_store_are_rejected(store: &dyn PostStore) {
    let big = crate::MAX_NUMBER + 1;
    let outcomes = apply(
        store,
        &[
            upsert(question(big, "q"), 1),
            upsert(question(1, "q"), big),
            upsert(answer(2, big, "a"), 1),
            Op::Delete { id: big, version: 1 },
        ],
    );
    let fields: Vec<&str> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Rejected { field, .. } => *field,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(fields, ["Id", "version", "ParentId", "Id"]);
    assert_eq!(store.last_seq().unwrap(), 0);
}

pub fn counts_follow_the_rows(store: &dyn PostStore) {
    apply(
        store,
        &[
            upsert(question(1, "q"), 1),
            upsert(answer(2, 1, "a"), 1),
            upsert(answer(3, 1, "b"), 1),
            Op::Delete { id: 3, version: 1 },
        ],
    );
    let counts = store.counts().unwrap();
    assert_eq!((counts.questions, counts.answers, counts.tombstones, counts.last_seq), (1, 1, 1, 4));
}

pub fn any_text_round_trips(store: &dyn PostStore) {
    let mut post = question(1, "nul \0 inside, accents é, astral 𝔽, separator \u{2028}");
    post.body_html = "<p>\0</p>\r\n\t\u{feff}".into();
    post.tags = vec!["ünïcode".into(), "c++".into()];
    apply(store, &[upsert(post.clone(), 1)]);
    assert_eq!(store.get(1).unwrap().unwrap().post.unwrap(), post);
    assert_eq!(store.changes(0, 1).unwrap()[0].post.as_ref().unwrap(), &post);
}

/// Writers on several threads commit batches of new posts while a follower pages through
/// [`PostStore::changes`]: each post is written once, so its sequence number never changes, and
/// the follower must see every number in order, none skipped, even while transactions overlap.
pub fn concurrent_writers_leave_no_gap_for_a_follower(store: &dyn PostStore) {
    const WRITERS: u64 = 4;
    const BATCHES: u64 = 30;
    let total: u64 = WRITERS * (1..=BATCHES).map(|b| b % 4 + 1).sum::<u64>();
    // Counts writers that finished or failed, so that the follower stops waiting for them.
    struct Finished<'a>(&'a std::sync::atomic::AtomicU64);
    impl Drop for Finished<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let finished = std::sync::atomic::AtomicU64::new(0);
    let finished = &finished;
    let seen = std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            scope.spawn(move || {
                let _finished = Finished(finished);
                let mut next = (writer + 1) * 1_000_000;
                for batch in 1..=BATCHES {
                    let ops: Vec<Op> = (0..batch % 4 + 1)
                        .map(|_| {
                            next += 1;
                            upsert(question(next, "q"), 1)
                        })
                        .collect();
                    let applied = store.apply(&ops, 1).expect("a concurrent write");
                    assert!(applied.outcomes.iter().all(|o| *o == Outcome::Created), "{:?}", applied.outcomes);
                }
            });
        }
        let follower = scope.spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            let (mut after, mut seen) = (0, Vec::new());
            while (seen.len() as u64) < total {
                assert!(std::time::Instant::now() < deadline, "the follower saw {} of {total} posts", seen.len());
                let all_written = finished.load(std::sync::atomic::Ordering::SeqCst) == WRITERS;
                let rows = store.changes(after, 7).expect("changes");
                if rows.is_empty() {
                    assert!(!all_written, "the writers are done and the follower saw {} of {total}", seen.len());
                    store.wait_for_change(after, Duration::from_secs(5)).expect("wait");
                }
                for row in rows {
                    assert_eq!(row.seq, after + 1, "a follower at {after} must not skip a number (post {})", row.id);
                    after = row.seq;
                    seen.push(row.id);
                }
            }
            seen
        });
        follower.join().unwrap()
    });
    let mut ids = seen;
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, total, "every acknowledged post seen once");
    assert_eq!(store.last_seq().unwrap(), total);
}

/// Writers on several threads write and delete one post with versions of their own while a
/// reader watches it: versions decide, whatever the order of the transactions.
pub fn concurrent_writes_of_one_post_are_decided_by_version(store: &dyn PostStore) {
    const WRITERS: u64 = 4;
    const ROUNDS: u64 = 25;
    let op_at = |version: u64| -> Op {
        if version.is_multiple_of(5) {
            Op::Delete { id: 1, version }
        } else {
            upsert(question(1, &format!("v{version}")), version)
        }
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut last = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(row) = store.get(1).unwrap() {
                    assert!(row.version >= last, "the stored version went back from {last} to {}", row.version);
                    last = row.version;
                }
            }
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                scope.spawn(move || {
                    for round in 0..ROUNDS {
                        let version = round * WRITERS + writer + 1;
                        for outcome in store.apply(&[op_at(version)], 1).expect("a concurrent write").outcomes {
                            match outcome {
                                Outcome::Created | Outcome::Updated | Outcome::Deleted | Outcome::Noop => {}
                                Outcome::Conflict { stored_version } => assert!(stored_version >= version),
                                other => panic!("version {version}: {other:?}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
    });
    let last = WRITERS * ROUNDS;
    let row = store.get(1).unwrap().unwrap();
    assert_eq!(row.version, last, "the highest version wins");
    match op_at(last) {
        Op::Delete { .. } => assert!(row.deleted),
        _ => assert_eq!(row.post.unwrap().title, format!("v{last}")),
    }
}
