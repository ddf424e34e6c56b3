//! End-to-end tests of index builds: crash safety (a build killed with SIGKILL, a crash
//! between the publish renames), foreign directories, and conformance on real dumps.

use std::time::{Duration, Instant};

use mathrank_tests::shared_dir;

const QUESTION: &str =
    "Remainder of a power modulo a prime: how do I compute $3^{100} \\bmod 7$ with Fermat's little theorem?";

/// An endless Posts.xml: one question and one answer per cycle, forever.
struct EndlessDump {
    cycle: u64,
    pending: Vec<u8>,
}

impl std::io::Read for EndlessDump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            if self.cycle == 0 {
                self.pending.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<posts>\n");
            }
            for _ in 0..64 {
                let (q, a) = (self.cycle * 2 + 1, self.cycle * 2 + 2);
                self.pending.extend_from_slice(format!(
                    "<row Id=\"{q}\" PostTypeId=\"1\" AcceptedAnswerId=\"{a}\" CreationDate=\"2015-01-01T00:00:00.000\" Score=\"1\" Title=\"Question {q} about $x^{q}$\" Tags=\"|algebra|\" Body=\"&lt;p&gt;Why $x^{{{q}}}$?&lt;/p&gt;\" />\n<row Id=\"{a}\" PostTypeId=\"2\" ParentId=\"{q}\" CreationDate=\"2015-01-02T00:00:00.000\" Score=\"2\" Body=\"&lt;p&gt;Because $x^{{{q}}} = x \\cdot x^{{{}}}$.&lt;/p&gt;\" />\n",
                    q - 1
                ).as_bytes());
                self.cycle += 1;
            }
        }
        let count = buf.len().min(self.pending.len());
        buf[..count].copy_from_slice(&self.pending[..count]);
        self.pending.drain(..count);
        Ok(count)
    }
}

const CHILD_BUILD: &str = "MATHRANK_E2E_CHILD_BUILD_TARGET";

/// Not a test: the child process of `a_killed_build_leaves_the_previous_index_usable`, which
/// builds an endless dump into the target until it is killed.
#[test]
#[ignore = "helper run as a child process by a_killed_build_leaves_the_previous_index_usable"]
fn child_build_helper() {
    // Run by hand without its variable, it must not pass as if it had built something.
    let target = std::env::var_os(CHILD_BUILD)
        .unwrap_or_else(|| panic!("{CHILD_BUILD} is unset: this helper only runs as the child of a test"));
    let source = mathrank_dump::DumpSource::from_reader("endless", None, EndlessDump { cycle: 0, pending: Vec::new() });
    let outcome = mathrank_index::build_index(
        source,
        std::path::Path::new(&target),
        &mathrank_index::BuildOptions::default(),
        &mut |_| {},
    );
    panic!("the endless build returned: {outcome:?}");
}

#[test]
fn a_killed_build_leaves_the_previous_index_usable() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("index");
    let xml = mathrank_dump::SAMPLE_POSTS_XML;
    let sample = || mathrank_dump::DumpSource::from_reader("embedded-sample", Some(xml.len() as u64), xml.as_bytes());
    let previous =
        mathrank_index::build_index(sample(), &target, &mathrank_index::BuildOptions::default(), &mut |_| {}).unwrap();

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "index::child_build_helper", "--ignored", "--nocapture"])
        .env(CHILD_BUILD, &target)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the child is writing its work directory, then let it index for a while.
    let started = Instant::now();
    while mathrank_index::sibling_work_dirs(&target).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the child never started building");
        assert!(child.try_wait().unwrap().is_none(), "the child build exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // While it builds, a second build of the same target fails at once, naming the holder,
    // and readers still open the previous index.
    let err = mathrank_index::build_index(sample(), &target, &mathrank_index::BuildOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("being built by another mathrank") && err.contains(&child.id().to_string()), "{err}");
    assert_eq!(mathrank_index::AnswerIndex::open(&target).unwrap().meta(), &previous);
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL: no cleanup runs in the child
    child.wait().unwrap();
    assert!(!mathrank_index::sibling_work_dirs(&target).is_empty(), "the killed build left its work directory");

    let index = mathrank_index::AnswerIndex::open(&target).expect("the previous index still opens");
    assert_eq!(index.meta(), &previous);
    assert_eq!(index.num_answers(), previous.answers);
    let hits = index.search(&mathrank_index::SearchRequest::new(QUESTION, 5)).unwrap();
    assert_eq!(hits.len(), 5);
    drop(index);

    // The next build cleans up after the killed one and replaces the index.
    let rebuilt =
        mathrank_index::build_index(sample(), &target, &mathrank_index::BuildOptions::default(), &mut |_| {}).unwrap();
    assert!(mathrank_index::sibling_work_dirs(&target).is_empty());
    assert_eq!(rebuilt.answers, previous.answers);
    assert!(mathrank_index::AnswerIndex::open(&target).is_ok());
}

#[test]
#[ignore = "conformance against ../shared; run by .ci/run with --ignored"]
fn conformance_real_dumps_index_with_their_own_counts() {
    let cases = [
        ("datascience-meta_Posts_2024format.xml", 257, 341),
        ("cstheory-meta_Posts_oldformat.xml", 589, 1322),
        ("math-threads_Posts.xml", 100, 125),
    ];
    for (file, questions, answers) in cases {
        let path = shared_dir().join("data/stackexchange").join(file);
        let dir = tempfile::tempdir().unwrap();
        let source = mathrank_dump::DumpSource::open(&path).unwrap();
        let meta = mathrank_index::build_index(
            source,
            &dir.path().join("index"),
            &mathrank_index::BuildOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        println!(
            "{file}: {} questions, {} answers, {} skipped, {} orphans",
            meta.questions,
            meta.answers,
            meta.skipped_total(),
            meta.orphan_answers
        );
        assert_eq!((meta.questions, meta.answers), (questions, answers), "{file}");
        assert_eq!(meta.skipped_total(), 0, "{file}: {:?}", meta.skipped);
        assert_eq!(meta.orphan_answers, 0, "{file}");
        let index = mathrank_index::AnswerIndex::open(dir.path().join("index")).unwrap();
        assert_eq!(index.num_answers(), answers);
    }
}

#[test]
fn incompatible_or_foreign_directories_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("index");
    let xml = mathrank_dump::SAMPLE_POSTS_XML;
    let source = mathrank_dump::DumpSource::from_reader("embedded-sample", Some(xml.len() as u64), xml.as_bytes());
    mathrank_index::build_index(source, &target, &mathrank_index::BuildOptions::default(), &mut |_| {}).unwrap();
    let meta_path = target.join("meta.json");
    let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["format_version"] = serde_json::json!(999);
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let err = mathrank_index::AnswerIndex::open(&target).unwrap_err().to_string();
    assert!(err.contains("format version 999") && err.contains("rebuild"), "{err}");

    // A directory that is not an index is never replaced by a build.
    let precious = dir.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("thesis.tex"), "\\documentclass{article}").unwrap();
    let source = mathrank_dump::DumpSource::from_reader("embedded-sample", None, xml.as_bytes());
    let err = mathrank_index::build_index(source, &precious, &mathrank_index::BuildOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing to replace"), "{err}");
    assert!(precious.join("thesis.tex").is_file());
    let err = mathrank_index::AnswerIndex::open(&precious).unwrap_err().to_string();
    assert!(err.contains("no mathrank index") && err.contains("build one from a dump"), "{err}");
}

#[test]
fn a_build_after_a_crash_between_the_publish_renames_keeps_the_previous_index() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("index");
    let xml = mathrank_dump::SAMPLE_POSTS_XML;
    let sample = || mathrank_dump::DumpSource::from_reader("embedded-sample", Some(xml.len() as u64), xml.as_bytes());
    let previous =
        mathrank_index::build_index(sample(), &target, &mathrank_index::BuildOptions::default(), &mut |_| {}).unwrap();
    // What a process killed between publish's two renames leaves behind.
    std::fs::rename(&target, dir.path().join(".index.old-999")).unwrap();
    let broken = mathrank_dump::DumpSource::from_reader("broken", None, &b"not xml"[..]);
    assert!(
        mathrank_index::build_index(broken, &target, &mathrank_index::BuildOptions::default(), &mut |_| {}).is_err()
    );
    let index = mathrank_index::AnswerIndex::open(&target).expect("the previous index was put back, not deleted");
    assert_eq!(index.meta(), &previous);
}

#[test]
fn a_reader_never_recovers_a_half_published_build_while_a_builder_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("index");
    let xml = mathrank_dump::SAMPLE_POSTS_XML;
    let sample = mathrank_dump::DumpSource::from_reader("embedded-sample", Some(xml.len() as u64), xml.as_bytes());
    let previous =
        mathrank_index::build_index(sample, &target, &mathrank_index::BuildOptions::default(), &mut |_| {}).unwrap();
    // A build between its two renames: the previous index sits in `.index.old-N`.
    let old = dir.path().join(".index.old-999");
    std::fs::rename(&target, &old).unwrap();
    // While a builder holds the lock, a reader must leave the directories alone.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.path().join(".index.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    assert!(mathrank_index::AnswerIndex::open(&target).is_err());
    assert!(old.is_dir() && !target.exists(), "the reader renamed under a builder's feet");
    // Once the lock is free, opening recovers the previous index.
    drop(lock);
    let index = mathrank_index::AnswerIndex::open(&target).expect("recovered");
    assert_eq!(index.meta(), &previous);
    assert!(!old.exists());
}
