//! The write API of a live index, over HTTP and gRPC, against a real post store and indexer:
//! writes, their visibility, every bad input, the write scope, and effects that follow the data.

use std::sync::Arc;
use std::time::Duration;

use mathrank_engine::Limits;
use mathrank_index::{BuildOptions, Indexer, IndexerOptions};
use mathrank_proto::v1;
use mathrank_proto::v1::posts_client::PostsClient;
use mathrank_server::{BearerToken, ServeOptions};
use mathrank_store::{PostStore, STORE_FILE, SqliteStore};
use mathrank_tests::{TestServer, live_engine};
use serde_json::{Value, json};
use tonic::Code;

const WRITE: &str = "write-s3cret";
const SEARCH: &str = "search-s3cret";

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

fn options() -> ServeOptions {
    ServeOptions {
        auth_token: Some(BearerToken::new(SEARCH).unwrap()),
        write_token: Some(BearerToken::new(WRITE).unwrap()),
        ..ServeOptions::default()
    }
}

async fn live_server() -> (tempfile::TempDir, TestServer) {
    let (dir, engine) = live_engine(Limits::default());
    (dir, TestServer::start(Some(engine), options()).await)
}

fn question(id: u64, title: &str, version: u64) -> Value {
    json!({"upsert": {"Id": id, "PostTypeId": 1, "Title": title, "Tags": "|calculus|integrals|",
        "Body": format!("<p>How do I integrate {title}?</p>"), "CreationDate": "2024-01-31T12:00:00.000", "version": version}})
}

fn answer(id: u64, parent: u64, body: &str, version: u64) -> Value {
    json!({"upsert": {"Id": id, "PostTypeId": 2, "ParentId": parent, "Score": 3,
        "Body": format!("<p>{body}</p>"), "version": version}})
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// `POST /v1/posts:bulk?wait=visible` with the write token.
async fn bulk(server: &TestServer, body: String) -> (u16, Value) {
    let response = client()
        .post(server.url("/v1/posts:bulk?wait=visible"))
        .bearer_auth(WRITE)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn results(reply: &Value) -> Vec<(Value, String)> {
    reply["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["Id"].clone(), item["result"].as_str().unwrap().to_owned()))
        .collect()
}

async fn get_answer(server: &TestServer, id: u64) -> (u16, Value) {
    let response = client().get(server.url(&format!("/v1/answers/{id}"))).bearer_auth(SEARCH).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn search(server: &TestServer, query: &str) -> Vec<u64> {
    let body = json!({"query": query, "topK": 10, "rerank": false});
    let response = client().post(server.url("/v1/search")).bearer_auth(SEARCH).json(&body).send().await.unwrap();
    let reply: Value = response.json().await.unwrap();
    reply["hits"].as_array().unwrap().iter().map(|hit| hit["answerId"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_are_searchable_and_a_question_edit_reaches_every_answer() {
    let (_dir, server) = live_server().await;
    let (status, reply) = bulk(
        &server,
        ndjson(&[
            question(10, "the area under a parabola", 1),
            answer(11, 10, "Use x^3/3.", 1),
            answer(12, 10, "Riemann sums.", 1),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        results(&reply),
        [(json!(10), "created".into()), (json!(11), "created".into()), (json!(12), "created".into())]
    );
    assert_eq!(reply["visible"], true);
    let seq = reply["seq"].as_u64().unwrap();
    assert_eq!(seq, 3);
    let info: Value =
        client().get(server.url("/v1/info")).bearer_auth(SEARCH).send().await.unwrap().json().await.unwrap();
    assert!(info["searchable_seq"].as_u64().unwrap() >= seq, "{info}");
    assert_eq!(info["live"]["indexer"], "leader");
    assert_eq!(search(&server, "area under a parabola").await.len(), 2);
    let (status, hit) = get_answer(&server, 11).await;
    assert_eq!((status, hit["answer"]["title"].as_str()), (200, Some("the area under a parabola")));

    // The question's edit rewrites both answers' documents in one commit.
    let (_, reply) = bulk(&server, ndjson(&[question(10, "the volume of a cone", 2)])).await;
    assert_eq!(results(&reply), [(json!(10), "updated".into())]);
    for id in [11, 12] {
        assert_eq!(get_answer(&server, id).await.1["answer"]["title"], "the volume of a cone");
    }
    let mut found = search(&server, "volume of a cone").await;
    found.sort_unstable();
    assert_eq!(found, [11, 12]);
    assert!(search(&server, "parabola").await.is_empty(), "no document keeps the old title");

    // Votes and acceptance reach what the filters read.
    let accepted = json!({"upsert": {"Id": 10, "PostTypeId": 1, "Title": "the volume of a cone", "AcceptedAnswerId": 12,
        "Body": "<p>How?</p>", "version": 3}});
    let (_, reply) = bulk(&server, ndjson(&[accepted, answer(11, 10, "Use x^3/3.", 2)])).await;
    assert_eq!(reply["visible"], true);
    let filtered = json!({"query": "volume of a cone", "rerank": false, "filters": {"acceptedOnly": true}});
    let response: Value = client()
        .post(server.url("/v1/search"))
        .bearer_auth(SEARCH)
        .json(&filtered)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["hits"][0]["answerId"], 12);
    assert_eq!(response["hits"].as_array().unwrap().len(), 1);

    // Deleting the question removes its answers; a deleted reply is 404.
    let response =
        client().delete(server.url("/v1/posts/12?version=2&wait=visible")).bearer_auth(WRITE).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let deleted: Value = response.json().await.unwrap();
    assert_eq!(results(&deleted), [(json!(12), "deleted".into())]);
    assert_eq!(get_answer(&server, 12).await.0, 404);
    let (_, reply) = bulk(&server, ndjson(&[json!({"delete": {"Id": 10, "version": 4}})])).await;
    assert_eq!(results(&reply), [(json!(10), "deleted".into())]);
    assert_eq!(get_answer(&server, 11).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_own_error_naming_the_field_and_spoils_nothing_else() {
    let (_dir, server) = live_server().await;
    bulk(&server, ndjson(&[question(1, "a deleted question", 1), json!({"delete": {"Id": 1, "version": 2}})])).await;
    let huge = "x".repeat(8 * 1024 * 1024 + 10);
    let lines = [
        question(20, "a good question", 1).to_string(),
        json!({"upsert": {"PostTypeId": 1, "Title": "no id", "Body": "<p>b</p>", "version": 1}}).to_string(),
        json!({"upsert": {"Id": 21, "PostTypeId": 5, "Body": "<p>wiki</p>", "version": 1}}).to_string(),
        json!({"upsert": {"Id": 22, "PostTypeId": 2, "ParentId": 20, "Body": huge, "version": 1}}).to_string(),
        r#"{"upsert": {"Id": 23, "PostTypeId": 2, "Body": "unterminated"#.to_owned(),
        json!({"upsert": {"Id": 24, "PostTypeId": 2, "ParentId": 20, "Body": "<p>b</p>", "version": -1}}).to_string(),
        question(20, "an older version", 0).to_string(),
        answer(25, 1, "to a deleted question", 1).to_string(),
        answer(26, 20, "a good answer", 1).to_string(),
    ];
    let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let (status, reply) = bulk(&server, body).await;
    assert_eq!(status, 200);
    let items = reply["items"].as_array().unwrap();
    assert_eq!(items.len(), lines.len(), "{reply}");
    let expected = [
        (json!(20), "created", None),
        (Value::Null, "error", Some(("INVALID_ARGUMENT", "Id"))),
        (json!(21), "error", Some(("INVALID_ARGUMENT", "PostTypeId"))),
        (json!(22), "error", Some(("INVALID_ARGUMENT", "Body"))),
        (json!(23), "error", Some(("INVALID_ARGUMENT", "Body"))),
        (json!(24), "error", Some(("INVALID_ARGUMENT", "version"))),
        (json!(20), "conflict", Some(("ABORTED", "version"))),
        (json!(25), "error", Some(("FAILED_PRECONDITION", "ParentId"))),
        (json!(26), "created", None),
    ];
    for (item, (id, result, error)) in items.iter().zip(expected) {
        assert_eq!((&item["Id"], item["result"].as_str().unwrap()), (&id, result), "{item}");
        match error {
            None => assert!(item.get("error").is_none(), "{item}"),
            Some((code, field)) => {
                assert_eq!(
                    (item["error"]["code"].as_str(), item["error"]["field"].as_str()),
                    (Some(code), Some(field)),
                    "{item}"
                );
                assert!(item["error"]["message"].as_str().unwrap().len() > 10, "{item}");
            }
        }
    }
    assert!(items[3]["error"]["message"].as_str().unwrap().contains("8388608"), "names the limit: {}", items[3]);
    assert_eq!(reply["visible"], true);
    assert_eq!(get_answer(&server, 26).await.1["answer"]["title"], "a good question", "the good ones were written");

    // A line far over the limit is answered without being held, and the next line still counts.
    let long =
        format!("{{\"upsert\": {{\"Id\": 27, \"Body\": \"{}\"}}}}", "y".repeat(3 * mathrank_server::MAX_LINE_BYTES));
    let (_, reply) = bulk(&server, format!("{long}\n{}\n", answer(28, 20, "after the long line", 1))).await;
    assert_eq!(results(&reply), [(json!(27), "error".into()), (json!(28), "created".into())]);
    assert_eq!(reply["items"][0]["error"]["field"], "Body");

    // PUT names the field the same way.
    let response = client()
        .put(server.url("/v1/posts/29"))
        .bearer_auth(WRITE)
        .json(&json!({"PostTypeId": 2, "ParentId": 20, "Body": "<p>x</p>", "version": "seven"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(
        (reply["items"][0]["Id"].as_u64(), reply["items"][0]["error"]["field"].as_str()),
        (Some(29), Some("version"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_no_ops_and_stale_writes_conflict_over_put_and_delete() {
    let (_dir, server) = live_server().await;
    let put = |version: u64, title: &'static str| {
        let url = server.url("/v1/posts/40?wait=visible");
        async move {
            let body = json!({"Id": 40, "PostTypeId": 1, "Title": title, "Body": "<p>b</p>", "version": version});
            let response = client().put(url).bearer_auth(WRITE).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            let reply: Value = response.json().await.unwrap();
            (status, reply["items"][0]["result"].as_str().unwrap().to_owned(), reply["seq"].as_u64().unwrap())
        }
    };
    let (status, result, seq) = put(2, "first").await;
    assert_eq!((status, result.as_str()), (200, "created"));
    let (status, result, again) = put(2, "first").await;
    assert_eq!((status, result.as_str(), again), (200, "noop", seq), "a retry changes nothing");
    let (status, result, _) = put(1, "stale").await;
    assert_eq!((status, result.as_str()), (409, "conflict"));
    let response = client().delete(server.url("/v1/posts/40?version=1")).bearer_auth(WRITE).send().await.unwrap();
    assert_eq!(response.status(), 409);
    let response = client().delete(server.url("/v1/posts/40")).bearer_auth(WRITE).send().await.unwrap();
    assert_eq!(response.status(), 400, "a delete needs its version");
    let response = client().delete(server.url("/v1/posts/40?version=3")).bearer_auth(WRITE).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (status, result, _) = put(3, "late").await;
    assert_eq!((status, result.as_str()), (409, "conflict"), "the tombstone holds version 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_write_token_and_are_off_without_one() {
    let (_dir, server) = live_server().await;
    let line = ndjson(&[question(50, "q", 1)]);
    let send = |token: Option<&'static str>| {
        let request = client().post(server.url("/v1/posts:bulk")).body(line.clone());
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, reply) = send(Some(SEARCH)).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (403, Some("PERMISSION_DENIED")), "{reply}");
    assert_eq!(send(None).await.0, 401);
    assert_eq!(send(Some("wrong")).await.0, 401);
    assert_eq!(send(Some(WRITE)).await.0, 200);
    let response = client().get(server.url("/v1/info")).bearer_auth(WRITE).send().await.unwrap();
    assert_eq!(response.status(), 401, "the write token is not a search token");

    let mut posts = PostsClient::new(server.channel().await);
    let batch = v1::WriteRequest { operations: vec![], wait_visible: false };
    let call = |token: &str| {
        let mut request = tonic::Request::new(tokio_stream::iter(vec![batch.clone()]));
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    assert_eq!(posts.write(call(SEARCH)).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(posts.write(call("wrong")).await.unwrap_err().code(), Code::Unauthenticated);
    assert!(posts.write(call(WRITE)).await.is_ok());

    // Without --write-token: 404 and UNIMPLEMENTED, saying how to turn writes on.
    let (_dir, engine) = live_engine(Limits::default());
    let off = TestServer::start(Some(engine), ServeOptions::default()).await;
    let response = client().post(off.url("/v1/posts:bulk")).body(line.clone()).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let reply: Value = response.json().await.unwrap();
    assert!(reply["error"]["message"].as_str().unwrap().contains("--write-token"), "{reply}");
    let response = client().put(off.url("/v1/posts/1")).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let status = PostsClient::new(off.channel().await)
        .write(tonic::Request::new(tokio_stream::iter(vec![batch.clone()])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("MATHRANK_WRITE_TOKEN"), "{}", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_stream_answers_each_batch_in_order() {
    let (_dir, server) = live_server().await;
    let post = |id: i64, kind: i64, parent: Option<i64>, title: &str, version: i64| v1::PostOperation {
        operation: Some(v1::post_operation::Operation::Upsert(v1::Post {
            id: Some(id),
            post_type_id: Some(kind),
            parent_id: parent,
            title: Some(title.into()),
            body: Some(format!("<p>{title} body</p>")),
            version: Some(version),
            ..v1::Post::default()
        })),
    };
    let batches = vec![
        v1::WriteRequest {
            operations: vec![post(60, 1, None, "eigenvalues of a rotation", 1), post(61, 2, Some(60), "", 1)],
            wait_visible: true,
        },
        v1::WriteRequest {
            operations: vec![
                post(60, 1, None, "stale", 0),
                v1::PostOperation {
                    operation: Some(v1::post_operation::Operation::Delete(v1::PostDelete {
                        id: Some(61),
                        version: None,
                    })),
                },
                v1::PostOperation { operation: None },
            ],
            wait_visible: false,
        },
    ];
    let mut request = tonic::Request::new(tokio_stream::iter(batches));
    request.metadata_mut().insert("authorization", format!("Bearer {WRITE}").parse().unwrap());
    let mut stream = PostsClient::new(server.channel().await).write(request).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let results: Vec<(u64, &str)> = first.items.iter().map(|item| (item.id, item.result.as_str())).collect();
    assert_eq!(results, [(60, "created"), (61, "created")]);
    assert!(first.visible);
    let second = stream.message().await.unwrap().unwrap();
    let results: Vec<(&str, &str)> =
        second.items.iter().map(|item| (item.result.as_str(), item.error.as_ref().unwrap().field.as_str())).collect();
    assert_eq!(results, [("conflict", "version"), ("error", "version"), ("error", "operation")]);
    assert!(stream.message().await.unwrap().is_none());
    let hit = get_answer(&server, 61).await.1;
    assert_eq!(hit["answer"]["title"], "eigenvalues of a rotation");
    let mut search = server.client().await;
    let mut request = tonic::Request::new(v1::SearchRequest {
        query: "rotation eigenvalues".into(),
        rerank: Some(false),
        ..Default::default()
    });
    request.metadata_mut().insert("authorization", format!("Bearer {SEARCH}").parse().unwrap());
    let hits = search.search(request).await.unwrap().into_inner().hits;
    assert_eq!(hits[0].answer_id, 61);
    let mut request = tonic::Request::new(v1::InfoRequest {});
    request.metadata_mut().insert("authorization", format!("Bearer {SEARCH}").parse().unwrap());
    let info = search.info(request).await.unwrap().into_inner();
    assert!(info.searchable_seq >= first.seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_bulk_streams_its_answer_and_everything_in_it_is_written() {
    let (_dir, server) = live_server().await;
    let count = 6_000u64;
    let mut lines = vec![question(100_000, "a question with many answers", 1)];
    lines.extend((0..count).map(|i| answer(200_000 + i, 100_000, &format!("answer number {i}"), 1)));
    let (status, reply) = bulk(&server, ndjson(&lines)).await;
    assert_eq!(status, 200);
    let items = reply["items"].as_array().unwrap();
    assert_eq!(items.len() as u64, count + 1);
    assert!(items.iter().all(|item| item["result"] == "created"));
    assert_eq!(reply["seq"].as_u64(), Some(count + 1));
    assert_eq!(reply["visible"], true);
    assert_eq!(get_answer(&server, 200_000 + count - 1).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_keeps_serving_and_switches() {
    let (_dir, server) = live_server().await;
    bulk(&server, ndjson(&[question(70, "a rebuilt question", 1), answer(71, 70, "kept", 1)])).await;
    let response = client().post(server.url("/v1/index:rebuild")).bearer_auth(WRITE).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let (_, reply) = bulk(&server, ndjson(&[answer(72, 70, "written during the rebuild", 1)])).await;
    assert_eq!(reply["visible"], true);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let info: Value =
            client().get(server.url("/v1/info")).bearer_auth(SEARCH).send().await.unwrap().json().await.unwrap();
        if info["live"]["rebuilds"].as_u64() == Some(1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rebuild: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in [71, 72] {
        assert_eq!(get_answer(&server, id).await.1["answer"]["title"], "a rebuilt question");
    }
}

/// A delta can turn an answer into a question and move answers between questions.
#[test]
fn a_delta_that_moves_answers_and_changes_post_types_leaves_one_document_per_answer() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("index");
    let synth = |seed: u64| {
        let options = mathrank_bench::synth::SynthOptions {
            questions: 300,
            answers: 500,
            seed,
            bad_row_every: 0,
            ..Default::default()
        };
        let mut xml = Vec::new();
        mathrank_bench::synth::generate(&options, &mut xml).unwrap();
        mathrank_dump::DumpSource::from_reader("synth", Some(xml.len() as u64), std::io::Cursor::new(xml))
    };
    let build = BuildOptions { threads: 1, memory_mb: 50, ..BuildOptions::default() };
    mathrank_index::build_index(synth(1), &dir, &build, &mut |_| {}).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join(STORE_FILE)).unwrap());
    let delta = mathrank_store::apply_dump_delta(synth(2), store.as_ref(), &Default::default(), &mut |_| {}).unwrap();
    assert!(delta.updated > 0);
    let small_batches = IndexerOptions {
        read_batch: 7,
        memory_mb: 50,
        rebuild: BuildOptions { threads: 1, memory_mb: 50, ..BuildOptions::default() },
        ..IndexerOptions::default()
    };
    let (live, _indexer) = Indexer::start(&dir, store.clone(), small_batches).unwrap();
    assert!(live.wait_searchable(store.last_seq().unwrap(), Duration::from_secs(60)));
    let mut joined = 0;
    store
        .scan_joined(&mut |_, _| {
            joined += 1;
            true
        })
        .unwrap();
    assert_eq!(live.current().num_answers(), joined, "one document per live answer with a live question");
}
