//! The live indexer against a real SQLite store in a temporary directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mathrank_store::conformance::{answer, question};
use mathrank_store::{Op, Post, PostStore, STORE_FILE, SqliteStore};

use super::*;
use crate::{Hit, SearchRequest};

struct Setup {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    store: Arc<SqliteStore>,
}

fn setup() -> Setup {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("index");
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join(STORE_FILE)).unwrap());
    Setup { _temp: temp, dir, store }
}

fn options() -> IndexerOptions {
    IndexerOptions {
        commit_interval: Duration::from_millis(5),
        rebuild: BuildOptions { threads: 1, memory_mb: 50, ..BuildOptions::default() },
        memory_mb: 50,
        ..IndexerOptions::default()
    }
}

fn start(setup: &Setup) -> (Arc<LiveIndex>, Indexer) {
    Indexer::start(&setup.dir, setup.store.clone(), options()).unwrap()
}

fn write(store: &SqliteStore, ops: &[Op]) -> u64 {
    let applied = store.apply(ops, 1_700_000_000).unwrap();
    assert!(applied.outcomes.iter().all(|o| o.changed()), "{:?}", applied.outcomes);
    applied.seq
}

fn upsert(post: Post, version: u64) -> Op {
    Op::Upsert { post, version }
}

fn visible(live: &LiveIndex, seq: u64) {
    assert!(live.wait_searchable(seq, Duration::from_secs(30)), "seq {seq} not searchable");
}

fn answer_hit(live: &LiveIndex, id: u64) -> Option<Hit> {
    live.current().get_answer(id).unwrap()
}

fn titled(id: u64, title: &str, accepted: Option<u64>) -> Post {
    Post { accepted_answer_id: accepted, ..question(id, title) }
}

#[test]
fn an_empty_store_grows_into_a_searchable_index_and_waiting_answers_join_their_question() {
    let setup = setup();
    let (live, indexer) = start(&setup);
    assert_eq!(live.current().num_answers(), 0);
    let seq =
        write(&setup.store, &[upsert(question(1, "integral of a parabola"), 1), upsert(answer(2, 1, "x^3/3"), 1)]);
    visible(&live, seq);
    assert_eq!(answer_hit(&live, 2).unwrap().title, "integral of a parabola");
    let hits = live.current().search(&SearchRequest::new("parabola integral", 5)).unwrap();
    assert_eq!(hits[0].answer_id, 2);

    let seq = write(&setup.store, &[upsert(answer(3, 9, "early"), 1)]);
    visible(&live, seq);
    assert!(answer_hit(&live, 3).is_none(), "its question has not arrived: it waits");
    let seq = write(&setup.store, &[upsert(question(9, "the late question"), 1)]);
    visible(&live, seq);
    assert_eq!(answer_hit(&live, 3).unwrap().title, "the late question");
    assert_eq!(indexer.status().committed_seq, seq);
}

#[test]
fn question_changes_reach_every_answer_and_votes_and_acceptance_follow() {
    let setup = setup();
    let (live, _indexer) = start(&setup);
    write(
        &setup.store,
        &[upsert(question(1, "old title"), 1), upsert(answer(2, 1, "a"), 1), upsert(answer(3, 1, "b"), 1)],
    );
    let seq = write(
        &setup.store,
        &[upsert(titled(1, "new title", Some(3)), 2), upsert(Post { score: 7, ..answer(2, 1, "a") }, 2)],
    );
    visible(&live, seq);
    let (two, three) = (answer_hit(&live, 2).unwrap(), answer_hit(&live, 3).unwrap());
    assert_eq!((two.title.as_str(), three.title.as_str()), ("new title", "new title"));
    assert_eq!((two.votes, two.accepted, three.accepted), (7, false, true));
    let accepted = SearchRequest {
        filters: crate::Filters { accepted_only: true, ..crate::Filters::default() },
        ..SearchRequest::new("new title", 10)
    };
    let ids: Vec<u64> = live.current().search(&accepted).unwrap().iter().map(|h| h.answer_id).collect();
    assert_eq!(ids, [3], "the filter reads the new acceptance");

    let seq = write(&setup.store, &[Op::Delete { id: 1, version: 3 }]);
    visible(&live, seq);
    assert!(
        answer_hit(&live, 2).is_none() && answer_hit(&live, 3).is_none(),
        "deleting the question removes its answers"
    );
    assert_eq!(live.current().num_answers(), 0);
    let seq = write(&setup.store, &[upsert(titled(1, "undeleted", None), 4), Op::Delete { id: 3, version: 1 }]);
    visible(&live, seq);
    assert_eq!(answer_hit(&live, 2).unwrap().title, "undeleted");
    assert!(answer_hit(&live, 3).is_none(), "a deleted answer stays deleted");
}

#[test]
fn a_restart_replays_the_store_from_the_last_commit() {
    let setup = setup();
    let (live, indexer) = start(&setup);
    let seq = write(&setup.store, &[upsert(question(1, "q"), 1), upsert(answer(2, 1, "a"), 1)]);
    visible(&live, seq);
    let opstamp = live.current().tantivy().load_metas().unwrap().opstamp;
    indexer.stop();
    drop(live);
    let stopped = AnswerIndex::open(&setup.dir).unwrap();
    assert_eq!(stopped.tantivy().load_metas().unwrap().opstamp, opstamp, "nothing new: stopping made no commit");
    drop(stopped);
    // Written while no indexer runs (as after a crash): the next start replays them.
    let seq = write(&setup.store, &[upsert(answer(3, 1, "b"), 1), upsert(titled(1, "edited", None), 2)]);
    let index = AnswerIndex::open(&setup.dir).unwrap();
    assert_eq!(index.payload().unwrap().seq, 2, "the payload holds the last applied sequence number");
    assert_eq!(index.payload().unwrap().store_id, setup.store.store_id());
    drop(index);
    let (live, _indexer) = start(&setup);
    visible(&live, seq);
    assert_eq!(answer_hit(&live, 3).unwrap().title, "edited");
    assert_eq!(answer_hit(&live, 2).unwrap().title, "edited");
}

#[test]
fn a_rebuild_serves_the_old_index_meanwhile_then_switches_and_removes_it() {
    let setup = setup();
    let (live, indexer) = start(&setup);
    let mut ops = Vec::new();
    for q in 0..20u64 {
        ops.push(upsert(question(1000 + q, &format!("question {q}")), 1));
        ops.push(upsert(answer(2000 + q, 1000 + q, "an answer"), 1));
    }
    let seq = write(&setup.store, &ops);
    visible(&live, seq);
    let before = live.current().meta().tantivy_dir_name().to_owned();
    indexer.request_rebuild();
    let seq = write(&setup.store, &[upsert(answer(3000, 1000, "written during the rebuild"), 1)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while indexer.status().rebuilds == 0 {
        assert!(Instant::now() < deadline, "the rebuild did not finish: {:?}", indexer.status());
        setup.store.wait_for_change(u64::MAX, Duration::from_millis(20)).unwrap();
    }
    visible(&live, seq);
    let after = live.current().meta().tantivy_dir_name().to_owned();
    assert_ne!(before, after);
    assert!(after.starts_with("tantivy-"));
    assert_eq!(live.current().num_answers(), 21);
    assert_eq!(answer_hit(&live, 3000).unwrap().title, "question 0");
    let tantivy_dirs: Vec<String> = std::fs::read_dir(&setup.dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("tantivy"))
        .collect();
    assert_eq!(tantivy_dirs, std::slice::from_ref(&after), "the old directory is gone");
    let meta: IndexMeta = serde_json::from_str(&std::fs::read_to_string(setup.dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta.tantivy_dir.as_deref(), Some(after.as_str()));
    // The switched index goes on following the store.
    let seq = write(&setup.store, &[upsert(answer(3001, 1001, "after"), 1)]);
    visible(&live, seq);
    assert!(answer_hit(&live, 3001).is_some());
    drop(indexer);
    let reopened = AnswerIndex::open(&setup.dir).unwrap();
    assert_eq!(reopened.payload().unwrap().seq, seq);
}

#[test]
fn an_index_of_another_store_is_rebuilt_from_this_one() {
    let setup = setup();
    let (live, indexer) = start(&setup);
    let seq = write(&setup.store, &[upsert(question(1, "from the first store"), 1), upsert(answer(2, 1, "a"), 1)]);
    visible(&live, seq);
    drop((live, indexer));
    let other = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&other.path().join(STORE_FILE)).unwrap());
    write(&store, &[upsert(question(5, "from the second store"), 1), upsert(answer(6, 5, "b"), 1)]);
    let (live, _indexer) = Indexer::start(&setup.dir, store.clone(), options()).unwrap();
    assert!(answer_hit(&live, 2).is_none());
    assert_eq!(answer_hit(&live, 6).unwrap().title, "from the second store");
    assert_eq!(live.current().payload().unwrap().store_id, store.store_id());
}

#[test]
fn a_second_process_on_the_same_directory_follows_the_first() {
    let setup = setup();
    let (leader, _indexer) = start(&setup);
    let (follower, following) = start(&setup);
    assert_eq!(following.status().role, "follower");
    let seq = write(&setup.store, &[upsert(question(1, "shared"), 1), upsert(answer(2, 1, "a"), 1)]);
    visible(&leader, seq);
    visible(&follower, seq);
    assert_eq!(answer_hit(&follower, 2).unwrap().title, "shared");
}

#[test]
fn a_dump_build_holds_its_store_and_the_indexer_goes_on_from_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("index");
    let xml = mathrank_dump::SAMPLE_POSTS_XML;
    let source = mathrank_dump::DumpSource::from_reader("sample", Some(xml.len() as u64), xml.as_bytes());
    let options = BuildOptions { threads: 1, memory_mb: 50, ..BuildOptions::default() };
    let meta = crate::build_index(source, &dir, &options, &mut |_| {}).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join(STORE_FILE)).unwrap());
    let counts = store.counts().unwrap();
    assert_eq!(counts.questions, meta.questions);
    assert!(counts.answers >= meta.answers, "orphans are stored too");
    let (live, _indexer) = Indexer::start(&dir, store.clone(), self::options()).unwrap();
    assert_eq!(live.current().meta().tantivy_dir_name(), "tantivy", "no rebuild: the payload matches");
    assert_eq!(live.searchable_seq(), counts.last_seq);
    assert_eq!(live.current().num_answers(), meta.answers);
    let some_answer = store
        .changes(0, 10_000)
        .unwrap()
        .into_iter()
        .find_map(|row| row.post.filter(|p| p.kind == PostKind::Answer && answer_hit(&live, p.id).is_some()));
    let some_answer = some_answer.unwrap();
    let seq = write(&store, &[Op::Delete { id: some_answer.id, version: 1 }]);
    visible(&live, seq);
    assert!(answer_hit(&live, some_answer.id).is_none());
}
