//! Search replicas that share one post store in a real PostgreSQL (a private cluster of
//! Debian's `postgresql`; skipped when it is not installed, unless
//! `MATHRANK_REQUIRE_POSTGRES=1`): each replica builds its own index from the store, follows
//! it, accepts writes, reports readiness, and rides out the database's faults.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mathrank_engine::{Engine, Limits};
use mathrank_server::{BearerToken, ServeOptions};
use mathrank_store::{Op, PgStore, Post, PostKind, PostStore};
use mathrank_tests::{TestServer, replica_engine};
use serde_json::{Value, json};

const WRITE: &str = "write-s3cret";

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

fn options() -> ServeOptions {
    ServeOptions { write_token: Some(BearerToken::new(WRITE).unwrap()), ..ServeOptions::default() }
}

/// A new database on the shared cluster, or `None` (skip) without PostgreSQL.
fn database() -> Option<String> {
    Some(mathrank_pgtest::shared()?.create_database().expect("createdb"))
}

struct Replica {
    _dir: tempfile::TempDir,
    server: TestServer,
}

impl Replica {
    async fn start(url: &str) -> Self {
        let url = url.to_owned();
        let (dir, engine) = tokio::task::spawn_blocking(move || replica_engine(&url, Limits::default())).await.unwrap();
        Self { _dir: dir, server: TestServer::start(Some(engine), options()).await }
    }

    fn engine(&self) -> Arc<Engine> {
        self.server.state.engine().unwrap()
    }

    /// Waits (30 s at most) until `seq` is searchable here.
    async fn wait_searchable(&self, seq: u64) {
        let engine = self.engine();
        assert!(
            engine.wait_visible(seq, Instant::now() + Duration::from_secs(30)).await,
            "sequence number {seq} searchable within 30 s (at {})",
            engine.searchable_seq()
        );
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = client().get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `POST /v1/posts:bulk`: the status, the Retry-After header, the answer.
    async fn bulk(&self, lines: &[Value]) -> (u16, Option<String>, Value) {
        let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
        let response = client()
            .post(self.url("/v1/posts:bulk"))
            .bearer_auth(WRITE)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        (status, retry, response.json().await.unwrap())
    }

    /// `PUT /v1/posts/{id}`: the status, the Retry-After header, the answer.
    async fn put(&self, post: &Value) -> (u16, Option<String>, Value) {
        let id = post["Id"].as_u64().unwrap();
        let response =
            client().put(self.url(&format!("/v1/posts/{id}"))).bearer_auth(WRITE).json(post).send().await.unwrap();
        let status = response.status().as_u16();
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        (status, retry, response.json().await.unwrap())
    }

    async fn search(&self, query: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = self.ranked(query).await.into_iter().map(|(id, _)| id).collect();
        ids.sort_unstable();
        ids
    }

    /// The BM25 top 30 in rank order: (answer id, score).
    async fn ranked(&self, query: &str) -> Vec<(u64, f64)> {
        let body = json!({"query": query, "topK": 30, "rerank": false});
        let response = client().post(self.url("/v1/search")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let reply: Value = response.json().await.unwrap();
        let hits = reply["hits"].as_array().unwrap();
        hits.iter().map(|h| (h["answerId"].as_u64().unwrap(), h["bm25Score"].as_f64().unwrap())).collect()
    }
}

fn question(id: u64, title: &str, version: u64) -> Value {
    json!({"Id": id, "PostTypeId": 1, "Title": title, "Tags": "|calculus|",
        "Body": format!("<p>{title}, version {version}?</p>"), "version": version})
}

fn answer(id: u64, parent: u64, body: &str, version: u64) -> Value {
    json!({"Id": id, "PostTypeId": 2, "ParentId": parent, "Body": format!("<p>{body} (version {version})</p>"),
        "version": version})
}

fn upsert(post: Value) -> Value {
    json!({ "upsert": post })
}

fn seq_of(reply: &Value) -> u64 {
    reply["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {reply}"))
}

fn store_post(id: u64, kind: PostKind, parent: Option<u64>, text: &str) -> Post {
    Post {
        id,
        kind,
        parent_id: parent,
        accepted_answer_id: None,
        title: if kind == PostKind::Question { text.to_owned() } else { String::new() },
        tags: vec!["algebra".into()],
        body_html: format!("<p>{text}</p>"),
        score: 1,
        created: 1_700_000_000,
    }
}

/// `questions` questions with two answers each, written straight to the store.
fn fill(url: &str, first: u64, questions: u64) -> u64 {
    let store = PgStore::connect(url).unwrap();
    let mut ops = Vec::new();
    for n in first..first + questions {
        let id = n * 10;
        ops.push(Op::Upsert {
            post: store_post(id, PostKind::Question, None, &format!("stored question {n} about groups")),
            version: 1,
        });
        for a in 1..=2 {
            ops.push(Op::Upsert {
                post: store_post(id + a, PostKind::Answer, Some(id), &format!("stored answer {a} of {n}")),
                version: 1,
            });
        }
    }
    store.apply(&ops, 1_700_000_000).unwrap().seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_one_store_accept_writes_and_agree() {
    let Some(url) = database() else { return };
    let (a, b) = (Replica::start(&url).await, Replica::start(&url).await);
    for replica in [&a, &b] {
        assert_eq!(replica.get("/health").await.0, 200, "an empty store: caught up at once");
    }
    let (status, _, reply) = a
        .bulk(&[upsert(question(10, "the area under a parabola", 1)), upsert(answer(11, 10, "integrate x squared", 1))])
        .await;
    assert_eq!(status, 200, "{reply}");
    let (status, _, reply_b) = b
        .bulk(&[
            upsert(question(20, "the volume of a cone", 1)),
            upsert(answer(21, 20, "a third of base times height", 1)),
            upsert(question(10, "the area under a cubic", 2)),
        ])
        .await;
    assert_eq!(status, 200, "{reply_b}");
    let last = seq_of(&reply).max(seq_of(&reply_b));
    assert_eq!(last, 5, "one global sequence across the replicas");
    for replica in [&a, &b] {
        replica.wait_searchable(last).await;
        let (status, hit) = replica.get("/v1/answers/11").await;
        assert_eq!((status, hit["answer"]["title"].as_str()), (200, Some("the area under a cubic")), "{hit}");
        assert_eq!(replica.get("/v1/answers/21").await.0, 200);
        assert_eq!(replica.search("cone").await, [21]);
        assert!(replica.search("parabola").await.is_empty(), "the edit reached every replica");
        let (_, info) = replica.get("/v1/info").await;
        assert!(info["searchable_seq"].as_u64().unwrap() >= last, "{info}");
        assert_eq!(info["live"]["indexer"], "leader", "{info}");
        let metrics = client().get(replica.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let searchable = metrics
            .lines()
            .find(|line| line.contains("searchable_seq") && !line.starts_with('#'))
            .unwrap_or_else(|| panic!("searchable_seq in the metrics:\n{metrics}"));
        let value: f64 = searchable.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(value, last as f64, "{searchable}");
    }
    assert_eq!(a.get("/v1/answers/11").await, b.get("/v1/answers/11").await);

    // Both replicas write the same post at once: the versions decide, nothing acknowledged is
    // lost, and both end at the highest version.
    let writer = |replica: &Replica, versions: Vec<u64>| {
        let (url, client) = (replica.url("/v1/posts/30"), client());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for version in versions {
                let post = answer(30, 20, &format!("concurrent answer {version}"), version);
                let response = client.put(&url).bearer_auth(WRITE).json(&post).send().await.unwrap();
                let status = response.status().as_u16();
                let reply: Value = response.json().await.unwrap();
                let result = reply["items"][0]["result"].as_str().unwrap().to_owned();
                match (status, result.as_str()) {
                    (200, "created" | "updated" | "noop") => acknowledged.push((version, seq_of(&reply))),
                    (409, "conflict") => {}
                    other => panic!("version {version}: {other:?} {reply}"),
                }
            }
            acknowledged
        })
    };
    let odd = writer(&a, (1..=40).step_by(2).collect());
    let even = writer(&b, (2..=40).step_by(2).collect());
    let mut acknowledged = odd.await.unwrap();
    acknowledged.extend(even.await.unwrap());
    assert!(acknowledged.iter().any(|&(version, _)| version == 40), "the highest version cannot conflict");
    let last = acknowledged.iter().map(|&(_, seq)| seq).max().unwrap();
    for replica in [&a, &b] {
        replica.wait_searchable(last).await;
        let (_, hit) = replica.get("/v1/answers/30").await;
        assert!(hit.to_string().contains("concurrent answer 40 (version 40)"), "{hit}");
    }

    // Forty answers that score alike, written from the highest id down, half through each
    // replica: both rank them by answer id, and alike (statistics count live documents only,
    // ties go by answer id, whatever each replica's segments).
    let mut last = 0;
    for (n, replica) in [(0u64, &a), (1, &b)] {
        let posts: Vec<Value> = (0..20).map(|i| upsert(answer(139 - n * 20 - i, 20, "an equal answer", 1))).collect();
        let (status, _, reply) = replica.bulk(&posts).await;
        assert_eq!(status, 200, "{reply}");
        last = last.max(seq_of(&reply));
    }
    a.wait_searchable(last).await;
    b.wait_searchable(last).await;
    let ranked = a.ranked("equal").await;
    assert_eq!(ranked, b.ranked("equal").await, "replicas agree on order and scores");
    assert_eq!(ranked.iter().map(|&(id, _)| id).collect::<Vec<_>>(), (100..130).collect::<Vec<_>>());
    assert!(ranked.iter().all(|&(_, score)| score == ranked[0].1), "{ranked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_builds_its_index_from_the_store_then_follows() {
    let Some(url) = database() else { return };
    let seq = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || fill(&url, 1, 150)).await.unwrap()
    };
    let replica = Replica::start(&url).await;
    let engine = replica.engine();
    assert_eq!(engine.searchable_seq(), seq, "built from one snapshot of the store");
    assert_eq!(engine.index().num_answers(), 300, "the store's answers, not the embedded sample's");
    assert_eq!(replica.get("/health").await.0, 200);
    assert_eq!(replica.search("stored answer of 77").await.len(), 30);
    let more = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || fill(&url, 1000, 5)).await.unwrap()
    };
    replica.wait_searchable(more).await;
    assert_eq!(replica.engine().index().num_answers(), 310);
    assert_eq!(replica.get("/v1/answers/10002").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_store_is_not_ready_yet_serves_searches() {
    let Some(url) = database() else { return };
    let first = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || fill(&url, 1, 20)).await.unwrap()
    };
    // An index of the store up to `first`, then an engine whose indexer is stopped while the
    // store moves on: it can only be behind.
    let (dir, engine) = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let store: Arc<dyn PostStore> = Arc::new(PgStore::connect(&url).unwrap());
            let dir = tempfile::tempdir().unwrap();
            let index = dir.path().join("index");
            let (live, indexer) =
                mathrank_index::Indexer::start(&index, Arc::clone(&store), mathrank_index::IndexerOptions::default())
                    .unwrap();
            indexer.stop();
            fill(&url, 100, 3);
            (dir, Engine::with_live(live, None, Limits::default()).with_store(store, None).unwrap())
        })
        .await
        .unwrap()
    };
    assert_eq!(engine.searchable_seq(), first);
    let replica = Replica { _dir: dir, server: TestServer::start(Some(engine), options()).await };
    let (status, body) = replica.get("/health").await;
    assert_eq!((status, body["status"].as_str()), (503, Some("NOT_SERVING")));
    let mut health = tonic_health::pb::health_client::HealthClient::new(replica.server.channel().await);
    let check = health
        .check(tonic_health::pb::HealthCheckRequest { service: "mathrank.v1.AnswerSearch".into() })
        .await
        .unwrap();
    assert_eq!(check.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);
    let (_, info) = replica.get("/v1/info").await;
    assert_eq!(info["live"]["caughtUp"], false, "{info}");
    assert!(info["live"]["storeSeq"].as_u64().unwrap() > first, "{info}");
    assert_eq!(replica.search("stored question 7").await.len(), 30, "searches are served meanwhile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_restarts_writes_answer_503_with_a_retry_hint_and_search_serves() {
    let Some(cluster) = mathrank_pgtest::private() else { return };
    let url = cluster.create_database().unwrap();
    let replica = Replica::start(&url).await;
    let (status, _, reply) =
        replica.bulk(&[upsert(question(10, "a ring without unity", 1)), upsert(answer(11, 10, "take 2Z", 1))]).await;
    assert_eq!(status, 200, "{reply}");
    replica.wait_searchable(seq_of(&reply)).await;

    cluster.stop().unwrap();
    let (status, retry, reply) = replica.put(&answer(12, 10, "even integers", 1)).await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{reply}");
    let (status, retry, reply) = replica.bulk(&[upsert(answer(13, 10, "multiples of 3", 1))]).await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{reply}");
    assert_eq!(reply["error"]["code"], "UNAVAILABLE", "{reply}");
    assert_eq!(replica.search("ring unity").await, [11], "search serves the last index");
    assert_eq!(replica.get("/health").await.0, 200, "an outage of the store keeps a caught-up replica ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, info) = replica.get("/v1/info").await;
        if info["live"]["storeError"].as_str().is_some_and(|error| !error.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the store's outage shows in /v1/info: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cluster.resume().unwrap();
    // The client's retry, as the hint says: the pool reconnects.
    let deadline = Instant::now() + Duration::from_secs(60);
    let reply = loop {
        let (status, _, reply) = replica.put(&answer(12, 10, "even integers", 1)).await;
        if status == 200 {
            break reply;
        }
        assert_eq!(status, 503, "{reply}");
        assert!(Instant::now() < deadline, "writes work again after the restart: {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(reply["items"][0]["result"], "created", "the refused write never committed");
    replica.wait_searchable(seq_of(&reply)).await;
    assert_eq!(replica.search("even integers").await, [12]);
}

/// Cuts every connection to the database but this one: the replicas' pooled connections and
/// their listeners, mid-stream.
fn cut_connections(url: &str) {
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_stream_lose_no_acknowledged_write() {
    let Some(url) = database() else { return };
    let (a, b) = (Replica::start(&url).await, Replica::start(&url).await);
    let (status, _, reply) = a.bulk(&[upsert(question(1, "a question for many answers", 1))]).await;
    assert_eq!(status, 200, "{reply}");
    let mut acknowledged = Vec::new();
    let mut last = 0;
    for round in 0..6u64 {
        let cutter = {
            let url = url.clone();
            tokio::task::spawn_blocking(move || cut_connections(&url))
        };
        for (n, replica) in [&a, &b].into_iter().enumerate() {
            let lines: Vec<Value> =
                (0..20).map(|i| upsert(answer(1000 + round * 100 + n as u64 * 50 + i, 1, "an answer", 1))).collect();
            let (status, _, reply) = replica.bulk(&lines).await;
            if status != 200 {
                assert_eq!(status, 503, "{reply}");
                continue;
            }
            last = last.max(seq_of(&reply));
            for item in reply["items"].as_array().unwrap() {
                if matches!(item["result"].as_str(), Some("created" | "noop")) {
                    acknowledged.push(item["Id"].as_u64().unwrap());
                } else {
                    assert_eq!(item["error"]["code"], "UNAVAILABLE", "{item}");
                }
            }
        }
        cutter.await.unwrap();
    }
    assert!(!acknowledged.is_empty(), "some writes went through between the cuts");
    for replica in [&a, &b] {
        replica.wait_searchable(last).await;
        for &id in &acknowledged {
            assert_eq!(replica.get(&format!("/v1/answers/{id}")).await.0, 200, "acknowledged answer {id}");
        }
    }
    assert_eq!(a.engine().index().num_answers(), b.engine().index().num_answers());
}
