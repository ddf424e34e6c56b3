//! End-to-end tests: the gRPC service in-process on port 0 with the sample index and the tiny
//! model, plus the crash-safety of index builds. Helpers are in `src/lib.rs`.

use std::time::{Duration, Instant};

use mathrank_proto::v1;
use mathrank_rerank::RerankerOptions;
use mathrank_server::{Engine, Limits, ServeOptions};
use mathrank_tests::{TestServer, sample_index, tiny_reranker};
use tonic::Code;

const QUESTION: &str =
    "Remainder of a power modulo a prime: how do I compute $3^{100} \\bmod 7$ with Fermat's little theorem?";

fn search(query: &str) -> v1::SearchRequest {
    v1::SearchRequest { query: query.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_reranks_with_both_scores() {
    let server = TestServer::with_model(Limits::default(), RerankerOptions::default()).await;
    let mut client = server.client().await;
    let response = client.search(search(QUESTION)).await.unwrap().into_inner();
    assert_eq!(response.hits.len(), 10);
    assert_eq!(response.reranked, 30);
    assert!(!response.partial);
    for (i, hit) in response.hits.iter().enumerate() {
        assert_eq!(hit.rank as usize, i + 1);
        assert!(hit.bm25_score > 0.0 && hit.bm25_rank >= 1 && hit.bm25_rank <= 30);
        let relevance = hit.relevance.expect("reranked hits carry relevance");
        assert!((0.0..=1.0).contains(&relevance));
        assert!(hit.rerank_logit.is_some());
        assert!(!hit.title.is_empty() && !hit.body.is_empty());
    }
    assert!(response.hits.windows(2).all(|w| w[0].relevance >= w[1].relevance), "sorted by relevance");
    let timings = response.timings.unwrap();
    assert!(timings.total_ms >= timings.retrieve_ms && timings.infer_ms > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerank_false_keeps_bm25_order() {
    let server = TestServer::with_model(Limits::default(), RerankerOptions::default()).await;
    let mut client = server.client().await;
    let request = v1::SearchRequest { rerank: Some(false), top_k: 20, include_body: true, ..search(QUESTION) };
    let response = client.search(request).await.unwrap().into_inner();
    assert_eq!(response.reranked, 0);
    let ranks: Vec<u32> = response.hits.iter().map(|h| h.bm25_rank).collect();
    assert_eq!(ranks, (1..=20).collect::<Vec<u32>>());
    assert!(response.hits.iter().all(|h| h.relevance.is_none()));
    assert!(response.hits.windows(2).all(|w| w[0].bm25_score >= w[1].bm25_score));
    assert!(response.hits[0].body.contains('$'), "include_body returns the full LaTeX text");
    let filtered = client
        .search(v1::SearchRequest {
            rerank: Some(false),
            filters: Some(v1::Filters {
                tags_any: vec!["modular-arithmetic".into()],
                min_votes: Some(5),
                ..Default::default()
            }),
            ..search(QUESTION)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!filtered.hits.is_empty());
    assert!(filtered.hits.iter().all(|h| h.tags.contains(&"modular-arithmetic".to_owned()) && h.votes >= 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerank_rpc_scores_and_sorts() {
    let server = TestServer::with_model(Limits::default(), RerankerOptions::default()).await;
    let mut client = server.client().await;
    let candidates: Vec<v1::Candidate> = [
        "By Fermat, $3^6 \\equiv 1 \\pmod 7$, so $3^{100} = 3^{96} 3^4 \\equiv 81 \\equiv 4$.",
        "<p>Use <b>induction</b> on $n$.</p>",
        "The determinant of a triangular matrix is the product of its diagonal.",
        "",
    ]
    .iter()
    .enumerate()
    .map(|(i, text)| v1::Candidate { id: format!("doc-{i}"), text: (*text).into() })
    .collect();
    let request =
        v1::RerankRequest { query: QUESTION.into(), candidates: candidates.clone(), top_n: 0, return_text: true };
    let response = client.rerank(request).await.unwrap().into_inner();
    assert_eq!(response.results.len(), 4);
    assert_eq!(response.reranked, 4);
    assert!(!response.partial);
    assert!(response.results.windows(2).all(|w| w[0].relevance >= w[1].relevance));
    let mut indices: Vec<u32> = response.results.iter().map(|r| r.index).collect();
    indices.sort();
    assert_eq!(indices, [0, 1, 2, 3]);
    for result in &response.results {
        assert_eq!(result.id, format!("doc-{}", result.index));
        assert_eq!(result.text, candidates[result.index as usize].text);
        let relevance = result.relevance.unwrap();
        let logit = result.logit.unwrap();
        assert!((relevance - 1.0 / (1.0 + (-logit).exp())).abs() < 1e-5, "relevance = sigmoid(logit)");
    }
    let top = client
        .rerank(v1::RerankRequest { query: QUESTION.into(), candidates, top_n: 2, return_text: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(top.results.len(), 2);
    assert!(top.results.iter().all(|r| r.text.is_empty()));
    assert_eq!(top.results[0].id, response.results[0].id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_answer_and_info() {
    let server = TestServer::with_model(Limits::default(), RerankerOptions::default()).await;
    let mut client = server.client().await;
    let hit = client.search(search(QUESTION)).await.unwrap().into_inner().hits.remove(0);
    let answer = client
        .get_answer(v1::GetAnswerRequest { answer_id: hit.answer_id })
        .await
        .unwrap()
        .into_inner()
        .answer
        .unwrap();
    assert_eq!(answer.answer_id, hit.answer_id);
    assert_eq!(answer.question_id, hit.question_id);
    assert_eq!(answer.title, hit.title);
    let full = sample_index().get_answer(hit.answer_id).unwrap().unwrap();
    assert_eq!(answer.body, full.body);
    let missing = client.get_answer(v1::GetAnswerRequest { answer_id: 424_242_424 }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let info = client.info(v1::InfoRequest {}).await.unwrap().into_inner();
    let model = info.model.unwrap();
    assert!(model.loaded && model.name == "albert-tiny" && model.max_length == 512 && model.provider == "cpu");
    let index = info.index.unwrap();
    assert_eq!(index.answers, sample_index().num_answers());
    assert!(index.questions >= 300 && index.skipped_rows == 5);
    assert_eq!(index.source, "embedded-sample");
    assert_eq!(info.limits.unwrap().max_top_k, 1000);
    assert_eq!(info.server_version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_name_the_field() {
    let server = TestServer::with_model(Limits::default(), RerankerOptions::default()).await;
    let mut client = server.client().await;
    let cases = [
        (search("   "), "query"),
        (search(&"x".repeat(33 * 1024)), "query"),
        (v1::SearchRequest { top_k: 1001, ..search(QUESTION) }, "top_k"),
        (v1::SearchRequest { rerank_depth: 5000, ..search(QUESTION) }, "rerank_depth"),
        (
            v1::SearchRequest {
                filters: Some(v1::Filters {
                    created_from: Some(2_000_000_000),
                    created_to: Some(1_000_000_000),
                    ..Default::default()
                }),
                ..search(QUESTION)
            },
            "created_to",
        ),
        (
            v1::SearchRequest {
                filters: Some(v1::Filters { tags_all: vec![" ".into()], ..Default::default() }),
                ..search(QUESTION)
            },
            "tags_all",
        ),
    ];
    for (request, field) in cases {
        let status = client.search(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().contains(field), "{field} not named in {:?}", status.message());
    }
    let too_many: Vec<v1::Candidate> =
        (0..1001).map(|i| v1::Candidate { id: i.to_string(), text: "a".into() }).collect();
    let rerank_cases = [
        (v1::RerankRequest { query: QUESTION.into(), candidates: too_many, ..Default::default() }, "candidates"),
        (v1::RerankRequest { query: QUESTION.into(), candidates: Vec::new(), ..Default::default() }, "candidates"),
        (
            v1::RerankRequest {
                query: String::new(),
                candidates: vec![v1::Candidate { id: "a".into(), text: "b".into() }],
                ..Default::default()
            },
            "query",
        ),
    ];
    for (request, field) in rerank_cases {
        let status = client.rerank(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().contains(field), "{field} not named in {:?}", status.message());
    }
    let status = client.get_answer(v1::GetAnswerRequest { answer_id: 0 }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("answer_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bm25_only_server_refuses_explicit_rerank() {
    let engine = Engine::new(sample_index(), None, Limits::default());
    let server = TestServer::start(Some(engine), ServeOptions::default()).await;
    let mut client = server.client().await;
    let response = client.search(search(QUESTION)).await.unwrap().into_inner();
    assert_eq!(response.reranked, 0);
    assert!(!response.hits.is_empty());
    let status = client.search(v1::SearchRequest { rerank: Some(true), ..search(QUESTION) }).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let info = client.info(v1::InfoRequest {}).await.unwrap().into_inner();
    assert!(!info.model.unwrap().loaded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_resource_exhausted_for_the_excess_and_answers_for_the_rest() {
    let limits = Limits { max_concurrent: 1, max_queued: 1, rerank_chunk: 4, ..Limits::default() };
    // A slow-to-batch reranker makes every call hold its slot for a while.
    let rerank = RerankerOptions { max_wait: Duration::from_millis(20), ..RerankerOptions::default() };
    let server = TestServer::with_model(limits, rerank).await;
    let client = server.client().await;
    let calls = (0..24).map(|_| {
        let mut client = client.clone();
        async move { client.search(v1::SearchRequest { rerank_depth: 40, ..search(QUESTION) }).await }
    });
    let outcomes = futures_join_all(calls).await;
    let mut ok = 0;
    let mut exhausted = 0;
    for outcome in outcomes {
        match outcome {
            Ok(response) => {
                let response = response.into_inner();
                assert_eq!(response.hits.len(), 10);
                assert_eq!(response.reranked, 40);
                assert!(response.hits.windows(2).all(|w| w[0].relevance >= w[1].relevance));
                ok += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                exhausted += 1;
            }
        }
    }
    assert!(ok >= 1 && exhausted >= 1, "ok {ok}, exhausted {exhausted}");
    assert_eq!(server.state.metrics().request_count("Search", "ResourceExhausted"), exhausted);
}

/// Runs futures concurrently as tasks and collects their outputs in order.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("task"));
    }
    outputs
}

/// A reranker that needs seconds for 300 candidates: one pair per chunk, 5 ms batch wait each.
async fn slow_server() -> TestServer {
    let limits = Limits { rerank_chunk: 1, ..Limits::default() };
    let rerank = RerankerOptions { max_wait: Duration::from_millis(5), ..RerankerOptions::default() };
    TestServer::with_model(limits, rerank).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_deadline_returns_partial_results() {
    let server = slow_server().await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(v1::SearchRequest { rerank_depth: 300, top_k: 300, ..search(QUESTION) });
    request.set_timeout(Duration::from_millis(800));
    let started = Instant::now();
    let response = client.search(request).await.unwrap().into_inner();
    let elapsed = started.elapsed();
    eprintln!("elapsed {elapsed:?} timings {:?} reranked {}", response.timings, response.reranked);
    assert!(elapsed < Duration::from_millis(800));
    assert!(response.partial, "300 sequential chunks cannot finish in 800 ms");
    assert!(response.reranked > 0 && response.reranked < 300, "reranked {}", response.reranked);
    let reranked = response.reranked as usize;
    assert!(response.hits[..reranked].iter().all(|h| h.relevance.is_some()));
    assert!(response.hits[reranked..].iter().all(|h| h.relevance.is_none()));
    // Reranked hits are the best BM25 candidates; the rest keep BM25 order.
    let rest: Vec<u32> = response.hits[reranked..].iter().map(|h| h.bm25_rank).collect();
    assert!(rest.windows(2).all(|w| w[0] < w[1]));
    assert!(response.hits[..reranked].iter().all(|h| (h.bm25_rank as usize) <= reranked));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_goes_serving_and_reflection_lists_the_service() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let server = TestServer::start(None, ServeOptions::default()).await;
    let mut health = HealthClient::new(server.channel().await);
    let check = |service: &str| HealthCheckRequest { service: service.into() };
    for service in ["", mathrank_proto::SERVICE_NAME] {
        let status = health.check(check(service)).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::NotServing as i32, "{service:?} before loading");
    }
    let mut client = server.client().await;
    assert_eq!(client.info(v1::InfoRequest {}).await.unwrap_err().code(), Code::Unavailable);
    server
        .state
        .set_engine(Engine::new(sample_index(), Some(tiny_reranker(RerankerOptions::default())), Limits::default()))
        .await;
    for service in ["", mathrank_proto::SERVICE_NAME] {
        let status = health.check(check(service)).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?} after loading");
    }

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else { panic!("{response:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&mathrank_proto::SERVICE_NAME.to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_required_when_configured() {
    let engine = Engine::new(sample_index(), None, Limits::default());
    let options = ServeOptions { auth_token: Some("s3cret".into()), ..ServeOptions::default() };
    let server = TestServer::start(Some(engine), options).await;
    let mut client = server.client().await;
    let status = client.info(v1::InfoRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut wrong = tonic::Request::new(v1::InfoRequest {});
    wrong.metadata_mut().insert("authorization", "Bearer s3cre7".parse().unwrap());
    assert_eq!(client.info(wrong).await.unwrap_err().code(), Code::Unauthenticated);
    let mut right = tonic::Request::new(v1::InfoRequest {});
    right.metadata_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
    assert!(client.info(right).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_an_in_flight_call() {
    let server = slow_server().await;
    let mut client = server.client().await;
    let call =
        tokio::spawn(async move { client.search(v1::SearchRequest { rerank_depth: 60, ..search(QUESTION) }).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    server.shutdown().await.expect("serve returns cleanly");
    let response = call.await.unwrap().expect("the in-flight call completes").into_inner();
    assert_eq!(response.reranked, 60);
    assert!(!response.partial);
    assert!(started.elapsed() < Duration::from_secs(10), "drained within the grace period");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_exposes_mathrank_series() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::with_model(Limits::default(), RerankerOptions::default()).await;
    let mut client = server.client().await;
    client.search(search(QUESTION)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = std::sync::Arc::clone(&server.state);
    tokio::spawn(mathrank_server::serve_metrics(listener, state, std::future::pending()));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"));
    for series in [
        "mathrank_requests_total{method=\"Search\",code=\"Ok\"} 1",
        "mathrank_stage_duration_seconds_bucket{stage=\"infer\"",
        "mathrank_rerank_padding_efficiency",
        "mathrank_rerank_batch_size_bucket",
        "mathrank_request_queue_depth 0",
        "mathrank_rerank_queue_depth 0",
    ] {
        assert!(body.contains(series), "missing {series} in\n{body}");
    }
}

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
    let Some(target) = std::env::var_os(CHILD_BUILD) else { return };
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
        .args(["--exact", "child_build_helper", "--ignored", "--nocapture"])
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
    std::thread::sleep(Duration::from_millis(700));
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

/// `../shared` (or MATHRANK_SHARED_DIR): conformance data that only CI and developers have.
fn shared_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("MATHRANK_SHARED_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| mathrank_tests::workspace().join("../shared"));
    assert!(dir.join("data").is_dir(), "conformance data not found at {}; set MATHRANK_SHARED_DIR", dir.display());
    dir
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
    assert!(err.contains("no mathrank index") && err.contains("mathrank index --dump"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_and_plaintext_clients_are_refused() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let cert_pem = certified.cert.pem();
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let engine = Engine::new(sample_index(), None, Limits::default());
    let options = ServeOptions { tls: Some(mathrank_server::TlsFiles { cert, key }), ..ServeOptions::default() };
    let server = TestServer::start(Some(engine), options).await;

    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(cert_pem))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", server.addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS handshake with the server's certificate");
    let mut client = v1::answer_search_client::AnswerSearchClient::new(channel);
    let response = client.search(search(QUESTION)).await.unwrap().into_inner();
    assert!(!response.hits.is_empty());

    let mut plaintext = server.client().await;
    assert!(plaintext.info(v1::InfoRequest {}).await.is_err(), "a plaintext client must not get through");
}

// ---- Model conversion: a random tiny checkpoint written here, converted, run, and checked
// ---- against an independent forward pass written here too.

mod convert {
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::path::Path;

    use mathrank_dump::synth::SplitMix64;
    use mathrank_rerank::{EncodedPair, Reranker, RerankerOptions};

    const V: usize = 30_000; // the fixture tokenizer's vocabulary
    const E: usize = 8;
    const H: usize = 16;
    const HEADS: usize = 2;
    const I: usize = 24;
    const LAYERS: usize = 3;
    const P: usize = 64;
    const LAYER: &str = "albert.encoder.albert_layer_groups.0.albert_layers.0.";

    type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

    fn random_weights(seed: u64) -> Weights {
        let mut rng = SplitMix64::new(seed);
        let mut weights = Weights::new();
        let mut add = |name: &str, shape: Vec<usize>, scale: f32, offset: f32| {
            let n = shape.iter().product();
            let data = (0..n).map(|_| offset + scale * (rng.unit() as f32 * 2.0 - 1.0)).collect();
            weights.insert(name.to_owned(), (shape, data));
        };
        add("albert.embeddings.word_embeddings.weight", vec![V, E], 0.5, 0.0);
        add("albert.embeddings.position_embeddings.weight", vec![P, E], 0.5, 0.0);
        add("albert.embeddings.token_type_embeddings.weight", vec![2, E], 0.5, 0.0);
        add("albert.embeddings.LayerNorm.weight", vec![E], 0.2, 1.0);
        add("albert.embeddings.LayerNorm.bias", vec![E], 0.2, 0.0);
        add("albert.encoder.embedding_hidden_mapping_in.weight", vec![H, E], 0.4, 0.0);
        add("albert.encoder.embedding_hidden_mapping_in.bias", vec![H], 0.1, 0.0);
        for (part, out, inp) in [
            ("attention.query", H, H),
            ("attention.key", H, H),
            ("attention.value", H, H),
            ("attention.dense", H, H),
            ("ffn", I, H),
            ("ffn_output", H, I),
        ] {
            add(&format!("{LAYER}{part}.weight"), vec![out, inp], 0.3, 0.0);
            add(&format!("{LAYER}{part}.bias"), vec![out], 0.1, 0.0);
        }
        for norm in ["attention.LayerNorm", "full_layer_layer_norm"] {
            add(&format!("{LAYER}{norm}.weight"), vec![H], 0.2, 1.0);
            add(&format!("{LAYER}{norm}.bias"), vec![H], 0.2, 0.0);
        }
        add("albert.pooler.weight", vec![H, H], 0.4, 0.0);
        add("albert.pooler.bias", vec![H], 0.1, 0.0);
        add("classifier.weight", vec![2, H], 0.5, 0.0);
        add("classifier.bias", vec![2], 0.1, 0.0);
        // Present in real checkpoints, unused by the classifier: must be ignored.
        add("predictions.bias", vec![V], 0.1, 0.0);
        weights
    }

    fn config() -> String {
        serde_json::json!({
            "architectures": ["AlbertForSequenceClassification"], "model_type": "albert", "vocab_size": V,
            "embedding_size": E, "hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "intermediate_size": I, "hidden_act": "gelu_new", "max_position_embeddings": P, "type_vocab_size": 2,
            "layer_norm_eps": 1e-12, "num_hidden_groups": 1, "inner_group_num": 1, "torch_dtype": "float32",
            "some_future_key": true
        })
        .to_string()
    }

    fn write_safetensors(weights: &Weights, path: &Path) {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = weights
            .iter()
            .map(|(name, (shape, data))| {
                (name.clone(), data.iter().flat_map(|v| v.to_le_bytes()).collect(), shape.clone())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(name, raw, shape)| {
                (
                    name.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), raw).unwrap(),
                )
            })
            .collect();
        std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    }

    /// A torch zip checkpoint: the pickle protocol-2 opcodes that torch.save writes.
    fn write_pytorch_bin(weights: &Weights, path: &Path) {
        fn unicode(out: &mut Vec<u8>, text: &str) {
            out.push(b'X');
            out.extend((text.len() as u32).to_le_bytes());
            out.extend(text.as_bytes());
        }
        fn int(out: &mut Vec<u8>, value: usize) {
            out.push(b'J');
            out.extend((value as i32).to_le_bytes());
        }
        let mut pickle = vec![0x80, 2];
        pickle.extend(b"ccollections\nOrderedDict\n)R(");
        for (key, (name, (shape, _))) in weights.iter().enumerate() {
            unicode(&mut pickle, name);
            pickle.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
            unicode(&mut pickle, "storage");
            pickle.extend(b"ctorch\nFloatStorage\n");
            unicode(&mut pickle, &key.to_string());
            unicode(&mut pickle, "cpu");
            int(&mut pickle, shape.iter().product());
            pickle.extend(b"tQ");
            int(&mut pickle, 0);
            pickle.push(b'(');
            for &dim in shape {
                int(&mut pickle, dim);
            }
            pickle.extend(b"t(");
            let mut stride = 1;
            let mut strides = vec![0; shape.len()];
            for axis in (0..shape.len()).rev() {
                strides[axis] = stride;
                stride *= shape[axis];
            }
            for s in strides {
                int(&mut pickle, s);
            }
            pickle.extend(b"t\x89ccollections\nOrderedDict\n)RtR");
        }
        pickle.extend(b"u.");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("archive/data.pkl", stored).unwrap();
        zip.write_all(&pickle).unwrap();
        for (key, (_, data)) in weights.values().enumerate() {
            zip.start_file(format!("archive/data/{key}"), stored).unwrap();
            zip.write_all(&data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        }
        zip.finish().unwrap();
    }

    fn linear(w: &Weights, prefix: &str, x: &[f32]) -> Vec<f32> {
        let (shape, weight) = &w[&format!("{prefix}.weight")];
        let bias = &w[&format!("{prefix}.bias")].1;
        let (out, inp) = (shape[0], shape[1]);
        (0..out).map(|o| bias[o] + (0..inp).map(|i| weight[o * inp + i] * x[i]).sum::<f32>()).collect()
    }

    fn layer_norm(w: &Weights, prefix: &str, x: &[f32]) -> Vec<f32> {
        let n = x.len() as f32;
        let mean = x.iter().sum::<f32>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
        let (gamma, beta) = (&w[&format!("{prefix}.weight")].1, &w[&format!("{prefix}.bias")].1);
        x.iter().enumerate().map(|(i, v)| (v - mean) / (var + 1e-12).sqrt() * gamma[i] + beta[i]).collect()
    }

    /// AlbertForSequenceClassification, one unpadded sequence, straight from the definitions.
    fn forward(w: &Weights, pair: &EncodedPair) -> [f32; 2] {
        let table = |name: &str, row: usize| -> Vec<f32> { w[name].1[row * E..(row + 1) * E].to_vec() };
        let mut hidden: Vec<Vec<f32>> = pair
            .input_ids
            .iter()
            .zip(&pair.token_type_ids)
            .enumerate()
            .map(|(s, (&id, &t))| {
                let word = table("albert.embeddings.word_embeddings.weight", id as usize);
                let pos = table("albert.embeddings.position_embeddings.weight", s);
                let ty = table("albert.embeddings.token_type_embeddings.weight", t as usize);
                let sum: Vec<f32> = (0..E).map(|e| word[e] + pos[e] + ty[e]).collect();
                linear(
                    w,
                    "albert.encoder.embedding_hidden_mapping_in",
                    &layer_norm(w, "albert.embeddings.LayerNorm", &sum),
                )
            })
            .collect();
        let d = H / HEADS;
        for _ in 0..LAYERS {
            let q: Vec<Vec<f32>> = hidden.iter().map(|x| linear(w, &format!("{LAYER}attention.query"), x)).collect();
            let k: Vec<Vec<f32>> = hidden.iter().map(|x| linear(w, &format!("{LAYER}attention.key"), x)).collect();
            let v: Vec<Vec<f32>> = hidden.iter().map(|x| linear(w, &format!("{LAYER}attention.value"), x)).collect();
            let n = hidden.len();
            let mut context = vec![vec![0f32; H]; n];
            for head in 0..HEADS {
                for i in 0..n {
                    let scores: Vec<f32> = (0..n)
                        .map(|j| {
                            (0..d).map(|c| q[i][head * d + c] * k[j][head * d + c]).sum::<f32>() / (d as f32).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f32::MIN, f32::max);
                    let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f32 = exps.iter().sum();
                    for j in 0..n {
                        for c in 0..d {
                            context[i][head * d + c] += exps[j] / total * v[j][head * d + c];
                        }
                    }
                }
            }
            hidden = hidden
                .iter()
                .zip(&context)
                .map(|(x, ctx)| {
                    let projected = linear(w, &format!("{LAYER}attention.dense"), ctx);
                    let residual: Vec<f32> = x.iter().zip(&projected).map(|(a, b)| a + b).collect();
                    let attended = layer_norm(w, &format!("{LAYER}attention.LayerNorm"), &residual);
                    let ffn: Vec<f32> = linear(w, &format!("{LAYER}ffn"), &attended)
                        .into_iter()
                        .map(|x| {
                            0.5 * x * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
                        })
                        .collect();
                    let out = linear(w, &format!("{LAYER}ffn_output"), &ffn);
                    let residual: Vec<f32> = out.iter().zip(&attended).map(|(a, b)| a + b).collect();
                    layer_norm(w, &format!("{LAYER}full_layer_layer_norm"), &residual)
                })
                .collect();
        }
        let pooled: Vec<f32> = linear(w, "albert.pooler", &hidden[0]).into_iter().map(f32::tanh).collect();
        let logits = linear(w, "classifier", &pooled);
        [logits[0], logits[1]]
    }

    /// A random tiny checkpoint (config.json, model.safetensors, tokenizer.json) in `dir`.
    pub(super) fn write_checkpoint(dir: &Path) {
        std::fs::write(dir.join("config.json"), config()).unwrap();
        std::fs::copy(mathrank_tests::tiny_model().join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
        write_safetensors(&random_weights(21), &dir.join("model.safetensors"));
    }

    #[test]
    fn converted_checkpoints_match_an_independent_forward_pass() {
        let weights = random_weights(11);
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("checkpoint");
        std::fs::create_dir(&checkpoint).unwrap();
        std::fs::write(checkpoint.join("config.json"), config()).unwrap();
        std::fs::copy(mathrank_tests::tiny_model().join("tokenizer.json"), checkpoint.join("tokenizer.json")).unwrap();
        write_safetensors(&weights, &checkpoint.join("model.safetensors"));
        write_pytorch_bin(&weights, &checkpoint.join("pytorch_model.bin"));

        let mut rng = SplitMix64::new(5);
        let pairs: Vec<EncodedPair> = [5usize, 17, 40, 9]
            .iter()
            .map(|&len| {
                let split = len / 3;
                let mut ids: Vec<i64> = (0..len).map(|_| 5 + rng.below(29_000) as i64).collect();
                ids[0] = 2;
                ids[split] = 3;
                ids[len - 1] = 3;
                EncodedPair { input_ids: ids, token_type_ids: (0..len).map(|i| i64::from(i > split)).collect() }
            })
            .collect();
        let expected: Vec<[f32; 2]> = pairs.iter().map(|pair| forward(&weights, pair)).collect();
        for file in ["model.safetensors", "pytorch_model.bin"] {
            let out = dir.path().join(format!("converted-{file}"));
            let manifest = mathrank_model::convert_with(&checkpoint, &out, Some(file)).unwrap();
            assert_eq!(manifest.weights_file, file);
            assert!(manifest.sources.iter().all(|s| s.sha256.len() == 64));
            let options = RerankerOptions {
                ort_library: Some(mathrank_tests::ort_library()),
                intra_threads: 1,
                max_length: P,
                ..RerankerOptions::default()
            };
            let reranker = Reranker::load(&out, &options).unwrap();
            // One job: the pairs are padded into shared micro-batches, so the mask is exercised.
            let scores = reranker.submit(pairs.clone()).unwrap().wait().unwrap().scores;
            for (i, (score, want)) in scores.iter().zip(&expected).enumerate() {
                for c in 0..2 {
                    assert!(
                        (score.logits[c] - want[c]).abs() < 1e-4,
                        "{file} pair {i}: {:?} vs {want:?}",
                        score.logits
                    );
                }
            }
        }
        // The shared layer is stored once, not once per layer.
        let onnx_bytes = std::fs::metadata(dir.path().join("converted-model.safetensors/model.onnx")).unwrap().len();
        let weight_bytes: usize =
            weights.iter().filter(|(n, _)| !n.starts_with("predictions")).map(|(_, (_, d))| d.len() * 4).sum();
        assert!(onnx_bytes < weight_bytes as u64 + 64 * 1024, "{onnx_bytes} bytes for {weight_bytes} bytes of weights");
    }

    #[test]
    fn clear_conversion_errors() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path();
        std::fs::write(
            from.join("config.json"),
            config().replace("\"num_hidden_groups\":1", "\"num_hidden_groups\":2"),
        )
        .unwrap();
        let err = mathrank_model::convert(from, &from.join("out")).unwrap_err().to_string();
        assert!(err.contains("num_hidden_groups"), "{err}");
        std::fs::write(
            from.join("config.json"),
            config().replace("AlbertForSequenceClassification", "BertForMaskedLM"),
        )
        .unwrap();
        assert!(
            mathrank_model::convert(from, &from.join("out"))
                .unwrap_err()
                .to_string()
                .contains("AlbertForSequenceClassification")
        );
        std::fs::write(from.join("config.json"), config()).unwrap();
        let err = mathrank_model::convert(from, &from.join("out")).unwrap_err().to_string();
        assert!(err.contains("no tokenizer.json") && err.contains("albert-base-v2"), "{err}");
        std::fs::copy(mathrank_tests::tiny_model().join("tokenizer.json"), from.join("tokenizer.json")).unwrap();
        let mut weights = random_weights(3);
        weights.remove("classifier.bias");
        write_safetensors(&weights, &from.join("model.safetensors"));
        let err = mathrank_model::convert(from, &from.join("out")).unwrap_err().to_string();
        assert!(err.contains("classifier.bias"), "{err}");
    }
}

/// Converts a `../shared` model directory's checkpoint and checks its logits on the five
/// reference pairs.
fn assert_converted_parity(name: &str, weights: &str, tolerance: f32) {
    let source = shared_dir().join("models").join(name);
    let out = tempfile::tempdir().unwrap();
    mathrank_model::convert_with(&source, out.path(), Some(weights)).unwrap();
    let options = RerankerOptions {
        ort_library: Some(mathrank_tests::ort_library()),
        intra_threads: 1,
        ..RerankerOptions::default()
    };
    let reranker = mathrank_rerank::Reranker::load(out.path(), &options).unwrap();
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("reference.json")).unwrap()).unwrap();
    let pairs: Vec<(String, String)> = serde_json::from_value(reference["pairs"].clone()).unwrap();
    for (i, (question, answer)) in pairs.iter().enumerate() {
        let logits = reranker.score_blocking(question, &[answer.as_str()]).unwrap().scores[0].logits;
        for c in 0..2 {
            let expected = reference["logits"][i][c].as_f64().unwrap() as f32;
            assert!(
                (logits[c] - expected).abs() <= tolerance,
                "{name} from {weights}, pair {i}: {logits:?} vs {expected}"
            );
        }
    }
}

#[test]
#[ignore = "conformance against ../shared; run by .ci/run with --ignored"]
fn conformance_convert_albert_tiny_from_safetensors_and_bin() {
    assert_converted_parity("albert-tiny", "model.safetensors", 1e-4);
    assert_converted_parity("albert-tiny", "pytorch_model.bin", 1e-4);
}

#[test]
#[ignore = "conformance against ../shared; run by .ci/run with --ignored"]
fn conformance_convert_albert_base_random() {
    assert_converted_parity("albert-base-random", "model.safetensors", 1e-3);
}

// ---- Model fetch against a local server with the hub's URL layout and headers.

mod fetch {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use sha2::Digest;

    /// Serves `/{repo}/resolve/{revision}/{file}` like the hub: small files directly, large
    /// (LFS) files through a 302 to `/cdn/{file}` whose HEAD carries `X-Linked-Etag` (sha256)
    /// and `X-Linked-Size`. Optionally drops the first full download of the weights halfway,
    /// or publishes a wrong sha256.
    struct FakeHub {
        endpoint: String,
        log: Arc<Mutex<Vec<String>>>,
    }

    fn start(files: HashMap<String, Vec<u8>>, drop_first: bool, wrong_sha: bool) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let server_log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut dropped = !drop_first;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut range_start = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range_start = value.trim().trim_end_matches('-').parse::<usize>().ok();
                    }
                }
                let parts: Vec<&str> = request_line.split_whitespace().collect();
                let (method, path) = (parts[0], parts[1]);
                server_log.lock().unwrap().push(format!("{method} {path} range={range_start:?}"));
                let name = path.rsplit('/').next().unwrap_or("").to_owned();
                let Some(body) = files.get(&name) else {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                };
                let large = name.ends_with(".safetensors") || name.ends_with(".bin");
                if large && path.contains("/resolve/") {
                    let mut sha = hex(&sha2::Sha256::digest(body));
                    if wrong_sha {
                        sha = "0".repeat(64);
                    }
                    let head = format!(
                        "HTTP/1.1 302 Found\r\nLocation: /cdn/{name}\r\nX-Linked-Etag: \"{sha}\"\r\nX-Linked-Size: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    continue;
                }
                let start = range_start.unwrap_or(0).min(body.len());
                let status = if range_start.is_some() { "206 Partial Content" } else { "200 OK" };
                let rest = &body[start..];
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: \"abc\"\r\nConnection: close\r\n\r\n",
                    rest.len()
                );
                let _ = stream.write_all(head.as_bytes());
                if method == "GET" {
                    if large && !dropped {
                        dropped = true;
                        let _ = stream.write_all(&rest[..rest.len() / 2]);
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        continue;
                    }
                    let _ = stream.write_all(rest);
                }
            }
        });
        FakeHub { endpoint, log }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn hub_files() -> HashMap<String, Vec<u8>> {
        let fixture = mathrank_tests::tiny_model();
        let mut files = HashMap::new();
        for name in ["config.json", "tokenizer.json"] {
            files.insert(name.to_owned(), std::fs::read(fixture.join(name)).unwrap());
        }
        // The shared tiny fixture holds no checkpoint: write a random one with its config.
        let dir = tempfile::tempdir().unwrap();
        super::convert::write_checkpoint(dir.path());
        for name in ["config.json", "model.safetensors"] {
            files.insert(name.to_owned(), std::fs::read(dir.path().join(name)).unwrap());
        }
        files
    }

    fn options(hub: &FakeHub, cache: &std::path::Path) -> mathrank_model::FetchOptions {
        mathrank_model::FetchOptions {
            endpoint: hub.endpoint.clone(),
            repo: "AnReu/albert-for-math-ar-base-ft".into(),
            revision: "main".into(),
            out: None,
            token: None,
            cache: cache.to_path_buf(),
        }
    }

    #[test]
    fn fetch_resumes_a_dropped_download_verifies_and_converts() {
        let hub = start(hub_files(), true, false);
        let cache = tempfile::tempdir().unwrap();
        let mut seen = 0u64;
        let (dir, manifest) =
            mathrank_model::fetch(&options(&hub, cache.path()), &mut |p| seen = seen.max(p.downloaded)).unwrap();
        assert!(dir.starts_with(cache.path()) && dir.ends_with("AnReu--albert-for-math-ar-base-ft/main"));
        for file in ["model.onnx", "tokenizer.json", "config.json", "manifest.json"] {
            assert!(dir.join(file).is_file(), "{file}");
        }
        assert_eq!(manifest.source_repo, "AnReu/albert-for-math-ar-base-ft");
        assert_eq!(manifest.weights_file, "model.safetensors");
        assert!(seen > 0);
        let log = hub.log.lock().unwrap().clone();
        assert!(
            log.iter().any(|l| l.starts_with("GET /cdn/model.safetensors range=Some(")),
            "resumed with Range: {log:?}"
        );
        // The cached model loads and scores.
        let options = mathrank_rerank::RerankerOptions {
            ort_library: Some(mathrank_tests::ort_library()),
            intra_threads: 1,
            max_length: 64,
            ..Default::default()
        };
        let reranker = mathrank_rerank::Reranker::load(&dir, &options).unwrap();
        assert!(reranker.score_blocking("q", &["a"]).unwrap().scores[0].relevance.is_finite());
    }

    #[test]
    fn a_wrong_checksum_is_rejected_and_nothing_is_cached() {
        let hub = start(hub_files(), false, true);
        let cache = tempfile::tempdir().unwrap();
        let err = mathrank_model::fetch(&options(&hub, cache.path()), &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch") && err.contains("model.safetensors"), "{err}");
        assert!(!cache.path().join("models/AnReu--albert-for-math-ar-base-ft/main").exists());
        let downloads = cache.path().join("downloads/AnReu--albert-for-math-ar-base-ft/main");
        assert!(!downloads.join("model.safetensors").exists() && !downloads.join("model.safetensors.part").exists());
    }

    #[test]
    fn a_missing_repository_or_an_offline_hub_says_what_to_do() {
        let hub = start(HashMap::new(), false, false);
        let cache = tempfile::tempdir().unwrap();
        let err = mathrank_model::fetch(&options(&hub, cache.path()), &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("no config.json") && err.contains("model convert --from"), "{err}");
        let mut offline = options(&hub, cache.path());
        offline.endpoint = "http://127.0.0.1:9".into();
        let err = mathrank_model::fetch(&offline, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("cannot reach") && err.contains("model convert --from"), "{err}");
    }
}

#[test]
fn int8_conversion_keeps_scores_close_and_the_shared_layer_once() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint");
    std::fs::create_dir(&checkpoint).unwrap();
    convert::write_checkpoint(&checkpoint);
    let (fp32, int8) = (dir.path().join("fp32"), dir.path().join("int8"));
    mathrank_model::convert_full(&checkpoint, &fp32, None, false).unwrap();
    let manifest = mathrank_model::convert_full(&checkpoint, &int8, None, true).unwrap();
    assert!(manifest.dtype.starts_with("int8"));
    let options = RerankerOptions {
        ort_library: Some(mathrank_tests::ort_library()),
        intra_threads: 1,
        max_length: 64,
        ..RerankerOptions::default()
    };
    let answers =
        ["Use Fermat's little theorem.", "The determinant is the product of the pivots.", "By induction on $n$."];
    let full = mathrank_rerank::Reranker::load(&fp32, &options).unwrap().score_blocking(QUESTION, &answers).unwrap();
    let quantized =
        mathrank_rerank::Reranker::load(&int8, &options).unwrap().score_blocking(QUESTION, &answers).unwrap();
    for (a, b) in full.scores.iter().zip(&quantized.scores) {
        assert!((a.relevance - b.relevance).abs() < 0.05, "{a:?} vs {b:?}");
        assert_ne!(a.logits, b.logits, "the int8 graph must really differ");
    }
    // The shared layer's six matrices are stored once in int8, however many layers use them.
    let bytes = std::fs::read(int8.join("model.onnx")).unwrap();
    let model = <mathrank_model::onnx::ModelProto as prost::Message>::decode(bytes.as_slice()).unwrap();
    let graph = model.graph.unwrap();
    let int8_matrices = graph.initializer.iter().filter(|t| t.data_type == Some(3) && !t.dims.is_empty()).count();
    assert_eq!(int8_matrices, 6);
    let quantized_products = graph.node.iter().filter(|n| n.op_type.as_deref() == Some("MatMulInteger")).count();
    assert_eq!(quantized_products, 6 * 3, "six products per layer, three layers");
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
