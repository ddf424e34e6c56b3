//! Hostile or broken input, in one place: each case gets a clear error (or a clean skip) and
//! loses nothing. Cases that need a crate's internals live beside it and are listed here:
//! memo bombs, deep nesting and random pickles (`mathrank-model` `pickle::tests`), directories
//! that are not model directories, bad revisions, held locks and edited models (`model.rs`),
//! a second build of the same index (`index.rs`), empty auth tokens (`mathrank-server`
//! `auth::tests`), the HTTP errors of `http.rs`, and idle, stalled and preface-only
//! connections (`connections.rs`).

use mathrank_engine::{Engine, Limits};
use mathrank_proto::v1;
use mathrank_rerank::RerankerOptions;
use mathrank_server::ServeOptions;
use mathrank_tests::{TestServer, sample_index, tiny_reranker};
use serde_json::{Value, json};
use tonic::Code;

async fn server() -> TestServer {
    let engine = Engine::new(sample_index(), Some(tiny_reranker(RerankerOptions::default())), Limits::default());
    TestServer::start(Some(engine), ServeOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_megabyte_query_is_refused_by_both_protocols() {
    let server = server().await;
    let query = "x ".repeat(512 * 1024);
    let status = server
        .client()
        .await
        .search(v1::SearchRequest { query: query.clone(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("query"), "{status:?}");
    let response =
        reqwest::Client::new().post(server.url("/v1/search")).json(&json!({ "query": query })).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["field"], "query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_empty_candidates_are_scored_not_a_crash() {
    let server = server().await;
    let candidates = (0..1000).map(|i| v1::Candidate { id: i.to_string(), text: String::new() }).collect();
    let request = v1::RerankRequest { query: "Why is $x^2 \\ge 0$?".into(), candidates, ..Default::default() };
    let response = server.client().await.rerank(request).await.unwrap().into_inner();
    assert_eq!((response.results.len(), response.reranked), (1000, 1000));
    // 1001 is one too many, over HTTP too.
    let documents = vec![""; 1001];
    let response = reqwest::Client::new()
        .post(server.url("/v1/rerank"))
        .json(&json!({"query": "q", "documents": documents}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["field"], "documents");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_negative_and_malformed_json_are_400_naming_the_field() {
    let server = server().await;
    let client = reqwest::Client::new();
    for (body, field) in [
        (r#"{"query": "q", "documents": ["a"], "top_n": -1}"#, Some("top_n")),
        (r#"{"query": "q", "documents": ["a"], "top_n": NaN}"#, None),
        (r#"{"query": "q", "documents": ["a"], "top_n": 1e400}"#, Some("top_n")),
        (r#"{"query": "q", "documents": [{"txt": "a"}]}"#, Some("documents[0]")),
        (r#"{"query": "q", "documents": "a"}"#, Some("documents")),
        ("\u{0}\u{1}garbage", None),
        (r#"{"query": "q", "documents": ["a"]"#, None),
    ] {
        let response = client.post(server.url("/v1/rerank")).body(body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "INVALID_ARGUMENT", "{body}");
        if let Some(field) = field {
            assert_eq!(error["error"]["field"], field, "{body}: {error}");
        }
    }
    let response = client.post(server.url("/v1/search")).body(r#"{"query": "q", "filters": {"minVotes": -1e999}}"#);
    assert_eq!(response.send().await.unwrap().status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_grpc_message_is_an_error_and_the_server_goes_on() {
    let server = server().await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    // A gRPC frame that claims 5 bytes of protobuf and holds garbage.
    let frame = vec![0u8, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff];
    let response = h2
        .post(server.url("/mathrank.v1.AnswerSearch/Search"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(frame)
        .send()
        .await
        .unwrap();
    let status = response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
    let status = match status {
        Some(status) => status,
        None => {
            // Trailers-only or trailers after the body: read them through the body.
            let _ = response.bytes().await;
            "non-zero".into()
        }
    };
    assert_ne!(status, "0", "garbage must not decode as a request");
    let info = server.client().await.info(v1::InfoRequest {}).await;
    assert!(info.is_ok(), "the server still serves: {info:?}");
}

#[test]
fn dumps_with_invalid_utf8_or_an_enormous_row_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("index");
    let xml = mathrank_dump::SAMPLE_POSTS_XML;
    let sample = || mathrank_dump::DumpSource::from_reader("embedded-sample", Some(xml.len() as u64), xml.as_bytes());
    let options = mathrank_index::BuildOptions::default();
    let previous = mathrank_index::build_index(sample(), &target, &options, &mut |_| {}).unwrap();

    // Invalid UTF-8 inside a Body: a clear error, and the previous index stays.
    let mut broken = b"<?xml version=\"1.0\"?>\n<posts>\n<row Id=\"1\" PostTypeId=\"1\" CreationDate=\"2010-08-16T20:20:28.943\" Title=\"t\" Body=\"".to_vec();
    broken.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    broken.extend_from_slice(b"\" />\n</posts>\n");
    let source = mathrank_dump::DumpSource::from_reader("broken", None, std::io::Cursor::new(broken));
    let err = mathrank_index::build_index(source, &target, &options, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("UTF-8") && err.contains("at byte"), "{err}");
    assert_eq!(mathrank_index::AnswerIndex::open(&target).unwrap().meta(), &previous, "the previous index stays");

    // A 20 MiB row (over the 8 MiB cap) between two good ones: skipped as too_large, unread.
    let mut big = String::from("<?xml version=\"1.0\"?>\n<posts>\n");
    big.push_str(
        "<row Id=\"1\" PostTypeId=\"1\" CreationDate=\"2010-08-16T20:20:28.943\" Title=\"Why?\" Body=\"fine\" />\n",
    );
    big.push_str("<row Id=\"2\" PostTypeId=\"2\" ParentId=\"1\" CreationDate=\"2010-08-16T20:20:28.943\" Body=\"");
    big.push_str(&"a".repeat(20 << 20));
    big.push_str("\" />\n<row Id=\"3\" PostTypeId=\"2\" ParentId=\"1\" CreationDate=\"2010-08-16T20:20:28.943\" Body=\"Because.\" />\n</posts>\n");
    let source = mathrank_dump::DumpSource::from_reader("big", None, std::io::Cursor::new(big.into_bytes()));
    let other = dir.path().join("big");
    let meta = mathrank_index::build_index(source, &other, &options, &mut |_| {}).unwrap();
    assert_eq!((meta.questions, meta.answers), (1, 1));
    assert_eq!(meta.skipped.get("too_large"), Some(&1), "{:?}", meta.skipped);
    let warnings = std::fs::read_to_string(other.join("warnings.jsonl")).unwrap();
    assert!(warnings.contains("too_large") && warnings.contains("\"post_id\":\"2\""), "{warnings}");
}
