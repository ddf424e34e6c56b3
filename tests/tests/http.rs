//! End-to-end tests of the HTTP/JSON API on the same port as gRPC: the request bodies that
//! Elasticsearch (inference services `cohere`, `hugging_face`, `custom`), OpenSearch (Cohere
//! rerank connector) and Weaviate (reranker-transformers) send, parsed the way they parse the
//! answers; the contract's own methods as JSON; errors, auth, limits, TLS and HTTP/2.

use std::time::Duration;

use mathrank_engine::{Engine, Limits};
use mathrank_proto::v1;
use mathrank_rerank::RerankerOptions;
use mathrank_server::ServeOptions;
use mathrank_tests::{TestServer, sample_index, tiny_reranker, workspace};
use serde_json::{Value, json};

const QUERY: &str = "How do I compute $3^{100} \\bmod 7$ with Fermat's little theorem?";
const DOCS: [&str; 4] = [
    "By Fermat, $3^6 \\equiv 1 \\pmod 7$, so $3^{100} = 3^{96} \\cdot 3^4 \\equiv 81 \\equiv 4$.",
    "<p>Use the quadratic formula: <span class=\"math-container\">$x = \\frac{-b \\pm \\sqrt{b^2-4ac}}{2a}$</span>.</p>",
    "A triangular matrix has its eigenvalues on the diagonal.",
    "Induction on $n$.",
];

async fn server() -> TestServer {
    TestServer::with_model(Limits::default(), RerankerOptions::default()).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = client().post(server.url(path)).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text:?}")))
}

/// The scores gRPC's Rerank gives the same documents, by request index.
async fn grpc_relevance(server: &TestServer) -> Vec<f32> {
    let candidates =
        DOCS.iter().enumerate().map(|(i, t)| v1::Candidate { id: i.to_string(), text: (*t).into() }).collect();
    let mut client = server.client().await;
    let request = v1::RerankRequest { query: QUERY.into(), candidates, ..Default::default() };
    let response = client.rerank(request).await.unwrap().into_inner();
    let mut scores = vec![f32::NAN; DOCS.len()];
    for result in response.results {
        scores[result.index as usize] = result.relevance.unwrap();
    }
    scores
}

fn path_values(json: &Value, path: &str) -> Vec<Value> {
    let path = serde_json_path::JsonPath::parse(path).unwrap();
    path.query(json).all().into_iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_http_share_one_port() {
    let server = server().await;
    let grpc = server.client().await.info(v1::InfoRequest {}).await.unwrap().into_inner();
    let http: Value = client().get(server.url("/v1/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!(http["index"]["answers"], json!(grpc.index.unwrap().answers));
    assert_eq!(http["model"]["loaded"], json!(true));
    assert_eq!(http["serverVersion"], json!(env!("CARGO_PKG_VERSION")));
    // HTTP/2 without TLS (prior knowledge), as gRPC uses it.
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2.get(server.url("/health")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohere_v1_and_v2_as_elasticsearch_and_opensearch_send_them() {
    let server = server().await;
    let expected = grpc_relevance(&server).await;
    // Elasticsearch's `cohere` service (rerank): model, query, documents, top_n, return_documents.
    let (status, v1) = post(
        &server,
        "/v1/rerank",
        json!({"model": "rerank-english-v3.0", "query": QUERY, "documents": DOCS, "top_n": 3, "return_documents": true}),
    )
    .await;
    assert_eq!(status, 200, "{v1}");
    assert_eq!(v1["meta"]["api_version"]["version"], "1");
    assert!(v1["id"].as_str().is_some_and(|id| !id.is_empty()));
    let results = v1["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let scores: Vec<f64> = results.iter().map(|r| r["relevance_score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted by relevance_score: {scores:?}");
    for result in results {
        let index = result["index"].as_u64().unwrap() as usize;
        assert!((result["relevance_score"].as_f64().unwrap() - f64::from(expected[index])).abs() < 1e-6);
        assert_eq!(result["document"]["text"], DOCS[index], "documents come back as sent");
    }
    // v2 (Cohere's ClientV2, Jina): documents as objects; no documents unless asked.
    let docs: Vec<Value> = DOCS.iter().map(|t| json!({"text": t})).collect();
    let (status, v2) = post(&server, "/v2/rerank", json!({"model": "m", "query": QUERY, "documents": docs})).await;
    assert_eq!(status, 200, "{v2}");
    assert_eq!(v2["meta"]["api_version"]["version"], "2");
    assert_eq!(v2["results"].as_array().unwrap().len(), DOCS.len());
    assert!(v2["results"][0].get("document").is_none());
    // OpenSearch's Cohere rerank connector body, read by its post-process function.
    let (status, os) = post(&server, "/v1/rerank", json!({"documents": DOCS, "query": QUERY, "top_n": 4})).await;
    assert_eq!(status, 200);
    let mut by_index = vec![f64::NAN; DOCS.len()];
    for result in os["results"].as_array().unwrap() {
        by_index[result["index"].as_u64().unwrap() as usize] = result["relevance_score"].as_f64().unwrap();
    }
    assert!(by_index.iter().zip(&expected).all(|(a, b)| (a - f64::from(*b)).abs() < 1e-6));
}

/// The JSON that docs/http-api.md shows right after `request_line` (an engine's API call).
fn documented_json(request_line: &str) -> Value {
    let text = std::fs::read_to_string(workspace().join("docs/http-api.md")).expect("docs/http-api.md");
    let start = text.find(request_line).unwrap_or_else(|| panic!("docs/http-api.md no longer shows {request_line}"));
    let body = text[start + request_line.len()..].split("```").next().unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|err| panic!("docs/http-api.md, {request_line}: {err}"))
}

/// The path of a documented URL on the `mathrank-http` Service.
fn documented_path(url: &str) -> &str {
    url.strip_prefix("http://mathrank-http").unwrap_or_else(|| panic!("{url} is not on http://mathrank-http"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_custom_service_parses_with_its_jsonpaths() {
    let server = server().await;
    // docs/http-api.md's `PUT _inference/rerank/mathrank`: its request template filled in as
    // ES fills it, its answer read with its JSONPaths.
    let config = documented_json("PUT _inference/rerank/mathrank\n");
    let settings = &config["service_settings"];
    let request = settings["request"].as_str().unwrap();
    let request = request.replace("${query}", &json!(QUERY).to_string()).replace("${input}", &json!(DOCS).to_string());
    let request: Value = serde_json::from_str(&request.replace("${top_n}", "4")).unwrap();
    let (status, body) = post(&server, documented_path(settings["url"].as_str().unwrap()), request).await;
    assert_eq!(status, 200, "{body}");
    let parser = &settings["response"]["json_parser"];
    let indices = path_values(&body, parser["reranked_index"].as_str().unwrap());
    let scores = path_values(&body, parser["relevance_score"].as_str().unwrap());
    assert_eq!(indices.len(), DOCS.len());
    assert_eq!(scores.len(), indices.len());
    let expected = grpc_relevance(&server).await;
    for (index, score) in indices.iter().zip(&scores) {
        let index = index.as_u64().unwrap() as usize;
        assert!((score.as_f64().unwrap() - f64::from(expected[index])).abs() < 1e-6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensearch_connector_of_the_docs_is_answered() {
    let server = server().await;
    // docs/http-api.md's connector: its URL and request body filled in as ML Commons fills
    // them (the Cohere pre-process function escapes the query into its quotes).
    let connector = documented_json("POST /_plugins/_ml/connectors/_create\n");
    let action = &connector["actions"][0];
    let endpoint = connector["parameters"]["endpoint"].as_str().unwrap();
    let url = action["url"].as_str().unwrap().replace("${parameters.endpoint}", endpoint);
    let escaped_query = json!(QUERY).to_string();
    let request = action["request_body"]
        .as_str()
        .unwrap()
        .replace("${parameters.documents}", &json!(DOCS).to_string())
        .replace("${parameters.query}", &escaped_query[1..escaped_query.len() - 1])
        .replace("${parameters.top_n}", "4");
    let request: Value = serde_json::from_str(&request).unwrap_or_else(|err| panic!("{request}: {err}"));
    let (status, body) = post(&server, documented_path(&url), request).await;
    assert_eq!(status, 200, "{body}");
    let expected = grpc_relevance(&server).await;
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), DOCS.len());
    for result in results {
        let index = result["index"].as_u64().unwrap() as usize;
        assert!((result["relevance_score"].as_f64().unwrap() - f64::from(expected[index])).abs() < 1e-6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tei_as_elasticsearch_hugging_face_sends_it() {
    let server = server().await;
    let expected = grpc_relevance(&server).await;
    let (status, body) =
        post(&server, "/rerank", json!({"query": QUERY, "texts": DOCS, "return_text": true, "top_n": 2})).await;
    assert_eq!(status, 200, "{body}");
    let results = body.as_array().expect("TEI answers a bare array");
    assert_eq!(results.len(), 2);
    for result in results {
        let index = result["index"].as_u64().unwrap() as usize;
        assert!((result["score"].as_f64().unwrap() - f64::from(expected[index])).abs() < 1e-6);
        assert_eq!(result["text"], DOCS[index]);
    }
    let timed =
        client().post(server.url("/rerank")).json(&json!({"query": QUERY, "texts": DOCS})).send().await.unwrap();
    let timing = timed.headers()["server-timing"].to_str().unwrap().to_owned();
    assert!(timing.contains("infer;dur=") && timing.contains("total;dur="), "{timing}");
    // raw_scores: the logit whose sigmoid is the relevance probability.
    let (_, raw) = post(&server, "/rerank", json!({"query": QUERY, "texts": DOCS, "raw_scores": true})).await;
    for result in raw.as_array().unwrap() {
        let index = result["index"].as_u64().unwrap() as usize;
        let logit = result["score"].as_f64().unwrap();
        assert!((1.0 / (1.0 + (-logit).exp()) - f64::from(expected[index])).abs() < 1e-5);
        assert!(result.get("text").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weaviate_reranker_transformers() {
    let server = server().await;
    let ready = client().get(server.url("/.well-known/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 204);
    let expected = grpc_relevance(&server).await;
    let (status, body) = post(&server, "/rerank", json!({"query": QUERY, "documents": DOCS})).await;
    assert_eq!(status, 200, "{body}");
    let scores = body["scores"].as_array().unwrap();
    assert_eq!(scores.len(), DOCS.len());
    for (i, score) in scores.iter().enumerate() {
        assert_eq!(score["document"], DOCS[i], "request order");
        assert!((score["score"].as_f64().unwrap() - f64::from(expected[i])).abs() < 1e-6);
    }
    let (status, both) = post(&server, "/rerank", json!({"query": QUERY, "documents": DOCS, "texts": DOCS})).await;
    assert_eq!((status, both["error"]["field"].as_str()), (400, Some("texts")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_answers_and_info_mirror_grpc() {
    let server = server().await;
    let grpc = server
        .client()
        .await
        .search(v1::SearchRequest { query: QUERY.into(), top_k: 5, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let (status, http) = post(&server, "/v1/search", json!({"query": QUERY, "top_k": 5})).await;
    assert_eq!(status, 200, "{http}");
    let ids: Vec<u64> = http["hits"].as_array().unwrap().iter().map(|h| h["answerId"].as_u64().unwrap()).collect();
    assert_eq!(ids, grpc.hits.iter().map(|h| h.answer_id).collect::<Vec<_>>());
    assert_eq!(http["reranked"], json!(grpc.reranked));
    assert!(http["timings"]["totalMs"].as_f64().is_some());
    // proto3 JSON names work as well as the proto's, with filters.
    let (status, filtered) =
        post(&server, "/v1/search", json!({"query": QUERY, "rerank": false, "filters": {"minVotes": 1000}})).await;
    assert_eq!((status, filtered["hits"].as_array().map(Vec::len)), (200, Some(0)));

    let answer: Value =
        client().get(server.url(&format!("/v1/answers/{}", ids[0]))).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["answer"]["answerId"], json!(ids[0]));
    let missing = client().get(server.url("/v1/answers/999999999")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let bad = client().get(server.url("/v1/answers/abc")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"]["field"], "answer_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_with_status_code_and_field() {
    let engine = Engine::new(sample_index(), Some(tiny_reranker(RerankerOptions::default())), Limits::default());
    let options = ServeOptions { max_message_bytes: 64 * 1024, ..ServeOptions::default() };
    let server = TestServer::start(Some(engine), options).await;
    let cases = [
        ("/v1/rerank", json!({"documents": DOCS}), 400, "query"),
        ("/v1/rerank", json!({"query": QUERY, "documents": []}), 400, "documents"),
        ("/v1/rerank", json!({"query": QUERY, "documents": DOCS, "top_n": 0}), 400, "top_n"),
        ("/v1/rerank", json!({"query": QUERY, "documents": ["a", 5]}), 400, "documents[1]"),
        ("/v1/rerank", json!({"query": "", "documents": DOCS}), 400, "query"),
        ("/rerank", json!({"query": QUERY, "texts": [], "top_n": -3}), 400, "top_n"),
        ("/rerank", json!({"query": QUERY}), 400, "texts"),
        ("/v1/search", json!({"query": QUERY, "top_k": 100000}), 400, "top_k"),
        ("/v1/search", json!({"query": QUERY, "topk": 3}), 400, "topk"),
        (
            "/v1/search",
            json!({"query": QUERY, "filters": {"createdFrom": 5, "createdTo": 1}}),
            400,
            "filters.created_to",
        ),
    ];
    for (path, body, status, field) in cases {
        let (got, error) = post(&server, path, body.clone()).await;
        assert_eq!(got, status, "{path} {body}: {error}");
        assert_eq!(error["error"]["field"], field, "{path} {body}: {error}");
        assert_eq!(error["error"]["code"], "INVALID_ARGUMENT");
        assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains(field)), "{error}");
    }
    let (status, error) = post(&server, "/v1/rerank", json!({"query": "x".repeat(100_000), "documents": DOCS})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (413, Some("PAYLOAD_TOO_LARGE")));
    let response = client().post(server.url("/v1/rerank")).body("{not json").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let unknown = client().get(server.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"]["code"], "NOT_FOUND");
    let bad_timeout = client()
        .post(server.url("/v1/search"))
        .header(mathrank_server::TIMEOUT_HEADER, "soon")
        .json(&json!({"query": QUERY}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_timeout.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_is_503_and_bm25_only_refuses_rerank() {
    let server = TestServer::start(None, ServeOptions::default()).await;
    assert_eq!(client().get(server.url("/health")).send().await.unwrap().status(), 503);
    assert_eq!(client().get(server.url("/.well-known/ready")).send().await.unwrap().status(), 503);
    assert_eq!(client().get(server.url("/.well-known/live")).send().await.unwrap().status(), 204);
    let (status, error) = post(&server, "/v1/rerank", json!({"query": QUERY, "documents": DOCS})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (503, Some("UNAVAILABLE")));
    server.state.set_engine(Engine::new(sample_index(), None, Limits::default())).await;
    assert_eq!(client().get(server.url("/health")).send().await.unwrap().status(), 200);
    let (status, error) = post(&server, "/v2/rerank", json!({"query": QUERY, "documents": DOCS})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (400, Some("FAILED_PRECONDITION")));
    let (status, search) = post(&server, "/v1/search", json!({"query": QUERY})).await;
    assert_eq!(status, 200, "BM25 search still works: {search}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_the_dialects_cannot_meet_still_lists_every_document() {
    // The fake model, one pair per batch of 5 ms: 300 documents take far longer than 300 ms.
    let model = mathrank_rerank::FakeModel::new().with_latency(Duration::from_millis(5));
    let rerank = RerankerOptions { max_batch: 1, ..RerankerOptions::default() };
    let server = TestServer::with_fake(Limits::default(), &model, rerank).await;
    let documents: Vec<String> = (0..300).map(|i| format!("Answer number {i} about $x^{i}$.")).collect();
    let response = client()
        .post(server.url("/v1/rerank"))
        .header(mathrank_server::TIMEOUT_HEADER, "300")
        .json(&json!({"query": QUERY, "documents": documents}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[mathrank_server::PARTIAL_HEADER], "deadline");
    let reranked: usize = response.headers()["x-mathrank-reranked"].to_str().unwrap().parse().unwrap();
    assert!(reranked > 0 && reranked < 300, "{reranked}");
    let body: Value = response.json().await.unwrap();
    let warning = body["meta"]["warnings"][0].as_str().unwrap();
    assert!(warning.contains(&format!("scored {reranked} of 300 documents")), "{warning}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 300, "every document comes back");
    let scores: Vec<f64> = results.iter().map(|r| r["relevance_score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first, as Cohere promises");
    assert!(scores[reranked..].windows(2).all(|w| w[0] > w[1]), "the unscored strictly below each other");
    // The unscored follow in request order: the engine's first-stage order is kept.
    let tail: Vec<u64> = results[reranked..].iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert!(tail.windows(2).all(|w| w[0] < w[1]), "{tail:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_guards_the_api_not_the_probes() {
    let engine = Engine::new(sample_index(), Some(tiny_reranker(RerankerOptions::default())), Limits::default());
    let options = ServeOptions {
        auth_token: Some(mathrank_server::BearerToken::new("s3cret").unwrap()),
        ..ServeOptions::default()
    };
    let server = TestServer::start(Some(engine), options).await;
    let body = json!({"query": QUERY, "documents": DOCS});
    let denied = client().post(server.url("/v1/rerank")).json(&body).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(denied.json::<Value>().await.unwrap()["error"]["code"], "UNAUTHENTICATED");
    let wrong = client().post(server.url("/v1/rerank")).bearer_auth("nope").json(&body).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let allowed = client()
        .post(server.url("/v1/rerank"))
        .header("authorization", "bearer s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(client().get(server.url("/health")).send().await.unwrap().status(), 200);
    assert_eq!(client().get(server.url("/metrics")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_the_main_port_count_http_routes() {
    let server = server().await;
    let (status, _) = post(&server, "/v1/rerank", json!({"query": QUERY, "documents": DOCS})).await;
    assert_eq!(status, 200);
    let (status, _) = post(&server, "/v1/rerank", json!({"query": QUERY})).await;
    assert_eq!(status, 400);
    let response = client().get(server.url("/metrics")).send().await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for series in [
        "mathrank_http_requests_total{route=\"/v1/rerank\",status=\"200\"} 1",
        "mathrank_http_requests_total{route=\"/v1/rerank\",status=\"400\"} 1",
        "mathrank_stage_duration_seconds_bucket{stage=\"infer\",le=",
        "mathrank_rerank_pairs_total 4",
        "mathrank_model_provider{provider=\"cpu\"} 1",
        "mathrank_ready 1",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_http1_and_http2_beside_grpc() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let engine = Engine::new(sample_index(), None, Limits::default());
    let options = ServeOptions { tls: Some(mathrank_server::TlsFiles { cert, key }), ..ServeOptions::default() };
    let server = TestServer::start(Some(engine), options).await;
    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
    let url = format!("https://localhost:{}/v1/search", server.addr.port());
    for http1 in [true, false] {
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(root.clone())
            .resolve("localhost", server.addr);
        let client = if http1 { builder.http1_only() } else { builder }.build().unwrap();
        let response = client.post(&url).json(&json!({"query": QUERY, "top_k": 3})).send().await.unwrap();
        let expected = if http1 { reqwest::Version::HTTP_11 } else { reqwest::Version::HTTP_2 };
        assert_eq!(response.version(), expected);
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap()["hits"].as_array().unwrap().len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_429_with_a_retry_hint() {
    // One retrieval slot, no waiting room, and the slot held: nothing more can be admitted.
    let limits = Limits { max_concurrent: 1, max_queued: 0, ..Limits::default() };
    let server = TestServer::with_model(limits, RerankerOptions::default()).await;
    let engine = server.state.engine().unwrap();
    let held = engine.admit(std::time::Instant::now() + Duration::from_secs(5)).await.unwrap();
    let response =
        client().post(server.url("/v1/rerank")).json(&json!({"query": QUERY, "documents": DOCS})).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "RESOURCE_EXHAUSTED");
    drop(held);
    let (status, _) = post(&server, "/v1/rerank", json!({"query": QUERY, "documents": DOCS})).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_takes_fusion_and_long_answers_over_http() {
    let server = TestServer::with_model(Limits::default(), RerankerOptions::default()).await;
    let body =
        json!({"query": QUERY, "top_k": 30, "fusion": "linear", "fusion_weight": 0.0, "long_answers": "max_window"});
    let (status, response) = post(&server, "/v1/search", body).await;
    assert_eq!(status, 200, "{response}");
    let ranks: Vec<u64> =
        response["hits"].as_array().unwrap().iter().map(|h| h["bm25Rank"].as_u64().unwrap()).collect();
    assert_eq!(ranks, (1..=ranks.len() as u64).collect::<Vec<_>>(), "weight 0 is BM25 order");
    assert!(response["hits"][0]["fusedScore"].as_f64().is_some());
    let (status, error) = post(&server, "/v1/search", json!({"query": QUERY, "fusion": "rrf", "rrfK": 0})).await;
    assert_eq!((status, error["error"]["field"].as_str()), (400, Some("rrf_k")));
    let (status, error) = post(&server, "/v1/search", json!({"query": QUERY, "long_answers": "everything"})).await;
    assert_eq!((status, error["error"]["field"].as_str()), (400, Some("long_answers")));
}
