//! The PostgreSQL store against a private cluster (skipped when PostgreSQL is not installed,
//! unless `MATHRANK_REQUIRE_POSTGRES=1`).

use std::sync::mpsc;

use super::*;
use crate::conformance::{answer, question};

/// A new database on the shared cluster.
fn database() -> Option<String> {
    Some(mathrank_pgtest::shared()?.create_database().expect("createdb"))
}

fn store_at(url: &str, options: PgOptions) -> PgStore {
    PgStore::connect_with(url, options).expect("connect")
}

crate::conformance_tests!(optional: database().map(|url| ((), PgStore::connect(&url).expect("connect"))));

fn upsert(post: Post, version: u64) -> Op {
    Op::Upsert { post, version }
}

/// A plain connection, for what the tests do behind the store's back.
fn admin(url: &str) -> postgres::Client {
    postgres::Client::connect(url, NoTls).expect("admin connection")
}

/// Cuts every other connection to the database (the store's pooled ones and its listener).
fn cut_connections(url: &str) -> u64 {
    let rows = admin(url)
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .expect("pg_terminate_backend");
    rows.len() as u64
}

#[test]
fn urls_are_shown_without_their_password() {
    assert_eq!(redact("postgres://u:secret@h:5/db"), "postgres://u:***@h:5/db");
    assert_eq!(redact("postgresql://u@h/db?x=y"), "postgresql://u@h/db?x=y");
    assert_eq!(redact("postgres://h/db/with@at"), "postgres://h/db/with@at");
    let config: postgres::Config = "postgres://u:secret@h:5/db".parse().unwrap();
    assert_eq!(location_of(&config), "postgres://u@h:5/db");
    let err = PgStore::connect("postgres://u:secret@h:notaport/db").unwrap_err().to_string();
    assert!(!err.contains("secret") && err.contains("***"), "{err}");
    assert!(is_postgres_url("postgresql://x") && !is_postgres_url("/var/lib/posts.sqlite"));
}

#[test]
fn open_store_picks_the_store_by_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("posts.sqlite");
    let sqlite = crate::open_store(path.to_str().unwrap()).unwrap();
    assert!(format!("{sqlite:?}").starts_with("SqliteStore"));
    let Some(url) = database() else { return };
    let pg = crate::open_store(&url).unwrap();
    assert!(format!("{pg:?}").starts_with("PgStore"));
}

#[test]
fn stores_on_one_database_share_its_id_and_sequence() {
    let Some(url) = database() else { return };
    let (one, two) = (PgStore::connect(&url).unwrap(), PgStore::connect(&url).unwrap());
    assert_eq!(one.store_id(), two.store_id());
    assert_eq!(one.apply(&[upsert(question(1, "a"), 1)], 1).unwrap().seq, 1);
    assert_eq!(two.apply(&[upsert(question(2, "b"), 1)], 1).unwrap().seq, 2);
    assert_eq!(one.last_seq().unwrap(), 2);
    let other = database().unwrap();
    assert_ne!(PgStore::connect(&other).unwrap().store_id(), one.store_id(), "each database is its own store");
}

#[test]
fn a_store_of_another_format_is_refused() {
    let Some(url) = database() else { return };
    drop(PgStore::connect(&url).unwrap());
    admin(&url).execute("UPDATE mathrank_meta SET value = '99' WHERE key = 'format'", &[]).unwrap();
    let err = PgStore::connect(&url).unwrap_err();
    assert!(matches!(err, Error::Incompatible { found: 99, .. }), "{err}");
}

#[test]
fn a_notification_wakes_a_follower_of_another_store() {
    let Some(url) = database() else { return };
    // Polling every hour: only a notification (or the listener's first connection) wakes it.
    let follower = store_at(&url, PgOptions { poll: Duration::from_secs(3600), ..PgOptions::default() });
    let writer = PgStore::connect(&url).unwrap();
    std::thread::scope(|scope| {
        for version in 1..=2 {
            let before = follower.last_seq().unwrap();
            let follower = &follower;
            let waiter = scope.spawn(move || follower.wait_for_change(before, Duration::from_secs(60)).unwrap());
            writer.apply(&[upsert(question(1, "q"), version)], 1).unwrap();
            // The first round may be woken by the listener connecting; by the second it listens.
            assert_eq!(waiter.join().unwrap(), before + 1, "round {version}");
        }
    });
}

#[test]
fn polling_alone_finds_changes_of_another_store() {
    let Some(url) = database() else { return };
    let follower = store_at(&url, PgOptions { listen: false, poll: Duration::from_millis(20), ..PgOptions::default() });
    let writer = PgStore::connect(&url).unwrap();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| follower.wait_for_change(0, Duration::from_secs(60)).unwrap());
        writer.apply(&[upsert(question(1, "q"), 1)], 1).unwrap();
        assert_eq!(waiter.join().unwrap(), 1);
    });
}

#[test]
fn a_writer_that_waits_too_long_for_the_lock_fails_retryably() {
    let Some(url) = database() else { return };
    let store = store_at(&url, PgOptions { lock_timeout: Duration::from_millis(100), ..PgOptions::default() });
    let mut holder = admin(&url);
    let mut tx = holder.transaction().unwrap();
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]).unwrap();
    let err = store.apply(&[upsert(question(1, "q"), 1)], 1).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("retry"), "{err}");
    tx.rollback().unwrap();
    assert_eq!(store.apply(&[upsert(question(1, "q"), 1)], 1).unwrap().outcomes, [Outcome::Created]);
}

/// Two stores on one database (two replicas) write the same posts concurrently while a third
/// follows: versions decide, and the follower sees every number.
#[test]
fn two_replicas_writing_the_same_posts_lose_nothing() {
    let Some(url) = database() else { return };
    let replicas = [PgStore::connect(&url).unwrap(), PgStore::connect(&url).unwrap()];
    let follower = PgStore::connect(&url).unwrap();
    const ROUNDS: u64 = 40;
    std::thread::scope(|scope| {
        for (r, replica) in replicas.iter().enumerate() {
            scope.spawn(move || {
                for round in 0..ROUNDS {
                    // Both write posts 1..=3, replica 0 the odd versions, replica 1 the even.
                    let version = round * 2 + r as u64 + 1;
                    let ops: Vec<Op> =
                        (1..=3).map(|id| upsert(question(id, &format!("v{version}")), version)).collect();
                    for outcome in replica.apply(&ops, 1).unwrap().outcomes {
                        match outcome {
                            Outcome::Created | Outcome::Updated => {}
                            Outcome::Conflict { stored_version } => assert!(stored_version > version),
                            other => panic!("{other:?}"),
                        }
                    }
                }
            });
        }
        let mut after = 0;
        let last = ROUNDS * 2;
        while (1..=3).any(|id| follower.get(id).unwrap().is_none_or(|row| row.version < last)) {
            let rows = follower.changes(after, 5).unwrap();
            if rows.is_empty() {
                follower.wait_for_change(after, Duration::from_secs(5)).unwrap();
            }
            for row in rows {
                assert!(row.seq > after);
                after = row.seq;
            }
        }
    });
    for id in 1..=3 {
        let row = follower.get(id).unwrap().unwrap();
        assert_eq!((row.version, row.post.unwrap().title), (ROUNDS * 2, format!("v{}", ROUNDS * 2)));
    }
}

/// A cluster of its own, since these tests stop it.
fn private_store(options: PgOptions) -> Option<(mathrank_pgtest::Cluster, String, PgStore)> {
    let cluster = mathrank_pgtest::private()?;
    let url = cluster.create_database().unwrap();
    let store = store_at(&url, options);
    Some((cluster, url, store))
}

#[test]
fn while_the_server_is_down_everything_fails_retryably_and_then_works_again() {
    let options = PgOptions { connect_timeout: Duration::from_millis(500), ..PgOptions::default() };
    let Some((cluster, _url, store)) = private_store(options) else { return };
    store.apply(&[upsert(question(1, "before"), 1)], 1).unwrap();
    cluster.stop().unwrap();
    let errors = [
        store.apply(&[upsert(question(2, "during"), 1)], 1).unwrap_err(),
        store.changes(0, 10).unwrap_err(),
        store.wait_for_change(0, Duration::from_secs(1)).unwrap_err(),
        store.scan_joined(&mut |_, _| true).unwrap_err(),
    ];
    for err in errors {
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("unavailable"), "{err}");
    }
    cluster.resume().unwrap();
    assert_eq!(store.apply(&[upsert(question(2, "after"), 1)], 1).unwrap().outcomes, [Outcome::Created]);
    assert_eq!(store.last_seq().unwrap(), 2);
    assert_eq!(store.get(1).unwrap().unwrap().post.unwrap().title, "before");
}

/// A writer keeps writing through a crash of the server, retrying what failed: every write it
/// saw acknowledged is there after recovery.
#[test]
fn acknowledged_writes_survive_a_crash_mid_stream() {
    let options = PgOptions { connect_timeout: Duration::from_millis(500), ..PgOptions::default() };
    let Some((cluster, _url, store)) = private_store(options) else { return };
    const POSTS: u64 = 200;
    let (events, received) = mpsc::channel::<Result<u64, ()>>();
    let acknowledged = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut acknowledged = Vec::new();
            for id in 1..=POSTS {
                let op = upsert(question(id, &format!("post {id}")), 1);
                loop {
                    match store.apply(std::slice::from_ref(&op), 1) {
                        Ok(applied) => {
                            // Created, or Noop when an earlier try committed before the cut.
                            assert!(matches!(applied.outcomes[0], Outcome::Created | Outcome::Noop));
                            acknowledged.push(id);
                            let _ = events.send(Ok(id));
                            break;
                        }
                        Err(err) if err.is_retryable() => {
                            let _ = events.send(Err(()));
                        }
                        Err(err) => panic!("post {id}: {err}"),
                    }
                }
            }
            acknowledged
        });
        // Crash once 20 writes are acknowledged; resume once the writer saw a failure.
        assert!(received.iter().any(|event| event == Ok(20)), "20 acknowledgements");
        cluster.crash().unwrap();
        assert!(received.iter().any(|event| event.is_err()), "a failed write while the server is down");
        cluster.resume().unwrap();
        writer.join().unwrap()
    });
    assert_eq!(acknowledged.len() as u64, POSTS);
    for id in acknowledged {
        let row = store.get(id).unwrap().unwrap_or_else(|| panic!("acknowledged post {id} lost"));
        assert_eq!(row.post.unwrap().title, format!("post {id}"));
    }
    let mut seqs: Vec<u64> = store.changes(0, 1000).unwrap().iter().map(|row| row.seq).collect();
    seqs.dedup();
    assert_eq!(seqs, (1..=POSTS).collect::<Vec<_>>(), "no gap and no duplicate in the sequence");
}

fn fill(store: &PgStore, questions: u64) {
    let ops: Vec<Op> = (1..=questions)
        .flat_map(|q| [upsert(question(q * 10, "q"), 1), upsert(answer(q * 10 + 1, q * 10, "a"), 1)])
        .collect();
    for chunk in ops.chunks(500) {
        store.apply(chunk, 1).unwrap();
    }
}

#[test]
fn a_connection_cut_mid_scan_fails_the_scan_retryably_and_the_next_scan_is_whole() {
    let Some(url) = database() else { return };
    let store = PgStore::connect(&url).unwrap();
    // More answers than one portal batch, so the scan goes back to the server after the cut.
    let questions = SCAN_BATCH as u64 * 2 + 7;
    fill(&store, questions);
    let mut visited = 0;
    let err = store
        .scan_joined(&mut |_, _| {
            if visited == 0 {
                assert!(cut_connections(&url) > 0);
            }
            visited += 1;
            true
        })
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(visited < questions, "the scan stopped at the cut");
    let mut pairs = 0;
    assert_eq!(
        store
            .scan_joined(&mut |q, a| {
                assert_eq!(a.parent_id, Some(q.id));
                pairs += 1;
                true
            })
            .unwrap(),
        questions * 2
    );
    assert_eq!(pairs, questions);
    let mut digests = 0;
    store
        .scan_digests(&mut |_| {
            digests += 1;
            true
        })
        .unwrap();
    assert_eq!(digests, questions * 2);
}

#[test]
fn a_follower_whose_connections_are_cut_between_pages_still_sees_every_change() {
    let Some(url) = database() else { return };
    let store = PgStore::connect(&url).unwrap();
    fill(&store, 50);
    let (mut after, mut seen, mut retried) = (0, 0, 0);
    loop {
        let rows = match store.changes(after, 7) {
            Ok(rows) => rows,
            Err(err) if err.is_retryable() && retried < 100 => {
                retried += 1;
                continue;
            }
            Err(err) => panic!("{err}"),
        };
        let Some(last) = rows.last() else { break };
        assert_eq!(rows[0].seq, after + 1);
        after = last.seq;
        seen += rows.len();
        cut_connections(&url);
    }
    assert_eq!(seen, 100);
}

#[test]
fn a_role_that_cannot_create_tables_uses_an_existing_store() {
    let Some(url) = database() else { return };
    let owner = PgStore::connect(&url).unwrap();
    admin(&url)
        .batch_execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mathrank_writer') THEN \
             CREATE ROLE mathrank_writer LOGIN; END IF; END $$; \
             REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
             GRANT SELECT, INSERT, UPDATE ON mathrank_posts, mathrank_meta TO mathrank_writer",
        )
        .unwrap();
    let writer_url = url.replacen(&format!("{}@", mathrank_pgtest::USER), "mathrank_writer@", 1);
    let writer = PgStore::connect(&writer_url).unwrap();
    assert_eq!(writer.store_id(), owner.store_id());
    assert_eq!(writer.apply(&[upsert(question(1, "q"), 1)], 1).unwrap().outcomes, [Outcome::Created]);
    let other = database().unwrap().replacen(&format!("{}@", mathrank_pgtest::USER), "mathrank_writer@", 1);
    let err = PgStore::connect(&other).unwrap_err();
    assert!(!err.is_retryable() && err.to_string().contains("permission denied"), "{err}");
}
