//! End-to-end tests of the gRPC service, in-process on port 0 with the sample index and the
//! tiny model. Helpers are in `src/lib.rs`.

use std::time::Duration;

use mathrank_engine::{Engine, Limits};
use mathrank_proto::v1;
use mathrank_rerank::RerankerOptions;
use mathrank_server::ServeOptions;
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
    // The authors' order: the raw logit of the relevant class.
    assert!(
        response.hits.windows(2).all(|w| w[0].relevant_logit >= w[1].relevant_logit),
        "sorted by the relevant logit"
    );
    for hit in &response.hits {
        let (margin, relevant) = (hit.rerank_logit.unwrap(), hit.relevant_logit.unwrap());
        assert!((hit.relevance.unwrap() - 1.0 / (1.0 + (-margin).exp())).abs() < 1e-5, "{margin} {relevant}");
    }
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
    let request = v1::RerankRequest {
        query: QUESTION.into(),
        candidates: candidates.clone(),
        top_n: 0,
        return_text: true,
        ..Default::default()
    };
    let response = client.rerank(request).await.unwrap().into_inner();
    assert_eq!(response.results.len(), 4);
    assert_eq!(response.reranked, 4);
    assert!(!response.partial);
    assert!(response.results.windows(2).all(|w| w[0].relevant_logit >= w[1].relevant_logit));
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
        .rerank(v1::RerankRequest { query: QUESTION.into(), candidates, top_n: 2, ..Default::default() })
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
async fn resource_exhausted_only_when_nothing_can_be_retrieved() {
    // One retrieval slot and no waiting room: while the slot is held, a call cannot even be
    // retrieved, and only then is it refused.
    let limits = Limits { max_concurrent: 1, max_queued: 0, ..Limits::default() };
    let server = TestServer::with_model(limits, RerankerOptions::default()).await;
    let mut client = server.client().await;
    let engine = server.state.engine().unwrap();
    let held = engine.admit(std::time::Instant::now() + Duration::from_secs(5)).await.unwrap();
    let status = client.search(search(QUESTION)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("retry"), "{}", status.message());
    assert_eq!(server.state.metrics().request_count("Search", "ResourceExhausted"), 1);
    drop(held);
    let response = client.search(search(QUESTION)).await.unwrap().into_inner();
    assert_eq!(response.reranked, 30);
}

/// A reranker that needs seconds for 300 candidates: the fake model, one pair per batch, 5 ms each.
async fn slow_server() -> TestServer {
    let model = mathrank_rerank::FakeModel::new().with_latency(Duration::from_millis(5));
    TestServer::with_fake(Limits::default(), &model, RerankerOptions { max_batch: 1, ..RerankerOptions::default() })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_deadline_returns_partial_results() {
    let server = slow_server().await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(v1::SearchRequest { rerank_depth: 300, top_k: 300, ..search(QUESTION) });
    request.set_timeout(Duration::from_millis(800));
    // The client enforces its deadline: an answer at all means one within it.
    let response = client.search(request).await.unwrap().into_inner();
    assert!(response.partial, "300 batches of 5 ms each cannot finish in 800 ms");
    assert_eq!(response.partial_reason, "deadline");
    assert!(response.reranked > 0 && response.reranked < 300, "reranked {}", response.reranked);
    let reranked = response.reranked as usize;
    assert!(response.hits[..reranked].iter().all(|h| h.relevance.is_some()));
    assert!(response.hits[reranked..].iter().all(|h| h.relevance.is_none()));
    // The rest keep BM25 order.
    let rest: Vec<u32> = response.hits[reranked..].iter().map(|h| h.bm25_rank).collect();
    assert!(rest.windows(2).all(|w| w[0] < w[1]));
    // Reranking went best-ranked first, in rounds: what was scored is the BM25 top, give or
    // take the last round.
    let deepest = response.hits[..reranked].iter().map(|h| h.bm25_rank as usize).max().unwrap();
    assert!(deepest < 300, "the worst candidates were never reached");
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
    let options = ServeOptions {
        auth_token: Some(mathrank_server::BearerToken::new("s3cret").unwrap()),
        ..ServeOptions::default()
    };
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
    // The load-time probe has scored a few pairs already.
    let reranker = server.state.engine().unwrap();
    let before = reranker.reranker().unwrap().stats().pairs;
    let call =
        tokio::spawn(async move { client.search(v1::SearchRequest { rerank_depth: 60, ..search(QUESTION) }).await });
    // Shut down once the call is really in flight: its first pairs have been scored.
    while reranker.reranker().unwrap().stats().pairs == before {
        tokio::task::yield_now().await;
    }
    server.shutdown().await.expect("serve returns cleanly");
    // Had the grace period cut it, the call would have failed.
    let response = call.await.unwrap().expect("the in-flight call completes").into_inner();
    assert_eq!(response.reranked, 60);
    assert!(!response.partial);
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
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fusion_reorders_the_reranked_hits_as_asked() {
    let server = TestServer::with_model(Limits::default(), RerankerOptions::default()).await;
    let mut client = server.client().await;
    let ask = |fusion: &str, weight: Option<f32>| v1::SearchRequest {
        fusion: fusion.into(),
        fusion_weight: weight,
        top_k: 30,
        ..search(QUESTION)
    };
    let rerank = client.search(ask("", None)).await.unwrap().into_inner();
    assert!(rerank.hits.iter().all(|h| h.fused_score == h.relevant_logit));
    // Linear at weight 0 is BM25 order; at weight 1 it is the reranker's order.
    let bm25 = client.search(ask("linear", Some(0.0))).await.unwrap().into_inner();
    let ranks: Vec<u32> = bm25.hits.iter().map(|h| h.bm25_rank).collect();
    assert_eq!(ranks, (1..=30).collect::<Vec<u32>>());
    let reranker = client.search(ask("linear", Some(1.0))).await.unwrap().into_inner();
    let ids = |r: &v1::SearchResponse| r.hits.iter().map(|h| h.answer_id).collect::<Vec<_>>();
    assert_eq!(ids(&reranker), ids(&rerank));
    let half = client.search(ask("linear", None)).await.unwrap().into_inner();
    assert!(half.hits.windows(2).all(|w| w[0].fused_score >= w[1].fused_score));
    assert!(half.hits.iter().all(|h| (0.0..=1.0).contains(&h.fused_score.unwrap())));
    let rrf = client.search(v1::SearchRequest { rrf_k: Some(10), ..ask("rrf", None) }).await.unwrap().into_inner();
    assert!(rrf.hits.windows(2).all(|w| w[0].fused_score >= w[1].fused_score));
    // RRF scores are sums of two reciprocal ranks: at most 2/(k+1).
    assert!(rrf.hits.iter().all(|h| h.fused_score.unwrap() <= 2.0 / 11.0 + 1e-6));
    for (fusion, weight, field) in [("borda", None, "fusion"), ("linear", Some(2.0), "fusion_weight")] {
        let status = client.search(ask(fusion, weight)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{}", status.message());
    }
}
