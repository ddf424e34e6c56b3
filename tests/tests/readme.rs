//! The examples of the README and of `docs/` run. Every `grpcurl` command they show is sent
//! to an in-process server (the sample index, the tiny model) as the request it writes, parsed
//! from its JSON with the proto's serde names; and the example queries return a sensible first
//! hit over the embedded sample (BM25 alone: the reranker's order depends on the model, the
//! first stage's on this project). The curl examples run in `scripts/check-http.sh`.

use mathrank_engine::{Engine, Limits, SearchParams};
use mathrank_index::Filters;
use mathrank_proto::v1;
use mathrank_rerank::RerankerOptions;
use mathrank_tests::{TestServer, sample_index, workspace};

/// The README and every Markdown file under `docs/`, as (path from the workspace, text).
fn documents() -> Vec<(String, String)> {
    let mut paths = vec![workspace().join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(workspace().join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            (path.strip_prefix(workspace()).unwrap().display().to_string(), text)
        })
        .collect()
}

/// The text of every ```sh block.
fn shell_blocks(text: &str) -> Vec<&str> {
    text.split("```sh\n").skip(1).map(|rest| rest.split("```").next().unwrap_or_default()).collect()
}

/// The commands of a shell block that start with `program`, each with its continuation lines
/// (a trailing backslash, or a single-quoted argument spanning lines).
fn commands(block: &str, program: &str) -> Vec<String> {
    let (mut found, mut current, mut quoted) = (Vec::new(), None::<String>, false);
    for line in block.lines() {
        if current.is_none() && !line.trim_start().starts_with(program) {
            continue;
        }
        let command = current.get_or_insert_with(String::new);
        command.push_str(line);
        command.push('\n');
        quoted ^= line.matches('\'').count() % 2 == 1;
        if !quoted && !line.trim_end().ends_with('\\') {
            found.extend(current.take());
        }
    }
    assert!(current.is_none(), "an unterminated {program} command: {current:?}");
    found
}

/// Splits a command into words as the shell does for what these examples use: single quotes
/// (no escapes inside), backslash-newline, comments.
fn shell_words(command: &str) -> Vec<String> {
    let (mut words, mut word, mut in_word, mut quoted) = (Vec::new(), String::new(), false, false);
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if !quoted && chars.peek() == Some(&'\n') => {
                chars.next();
            }
            '#' if !quoted && !in_word => break,
            c if !quoted && c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn parse<T: serde::de::DeserializeOwned>(example: &str, data: &str) -> T {
    serde_json::from_str(data).unwrap_or_else(|err| panic!("{example}: -d is not the request: {err}"))
}

/// Sends one `grpcurl` command's request and checks its answer holds what the example shows.
async fn run_grpcurl(server: &TestServer, example: &str) {
    let words = shell_words(example);
    assert!(words.contains(&"-plaintext".to_owned()), "{example}: not -plaintext");
    assert!(words.contains(&"127.0.0.1:50051".to_owned()), "{example}: not the default address");
    let data = words.iter().position(|w| w == "-d").map(|i| words[i + 1].as_str()).unwrap_or("{}");
    let method = words.last().unwrap().as_str();
    let mut client = server.client().await;
    match method {
        "list" => {
            use tonic_reflection::pb::v1::ServerReflectionRequest;
            use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
            let mut reflection = ServerReflectionClient::new(server.channel().await);
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut stream =
                reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
            let response = stream.message().await.unwrap().unwrap();
            let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
                panic!("{example}: {response:?}")
            };
            assert!(list.service.iter().any(|s| s.name == mathrank_proto::SERVICE_NAME), "{example}: {list:?}");
        }
        "mathrank.v1.AnswerSearch/Search" => {
            let request: v1::SearchRequest = parse(example, data);
            let response = client.search(request).await.unwrap_or_else(|s| panic!("{example}: {s}")).into_inner();
            assert!(!response.hits.is_empty(), "{example}: no hits");
        }
        "mathrank.v1.AnswerSearch/Rerank" => {
            let request: v1::RerankRequest = parse(example, data);
            let candidates = request.candidates.len();
            let response = client.rerank(request).await.unwrap_or_else(|s| panic!("{example}: {s}")).into_inner();
            assert_eq!(response.results.len(), candidates, "{example}");
            assert!(response.results.iter().all(|r| r.relevance.is_some()), "{example}: unscored");
        }
        "mathrank.v1.AnswerSearch/GetAnswer" => {
            let request: v1::GetAnswerRequest = parse(example, data);
            let id = request.answer_id;
            let response = client.get_answer(request).await.unwrap_or_else(|s| panic!("{example}: {s}")).into_inner();
            assert_eq!(response.answer.map(|hit| hit.answer_id), Some(id), "{example}");
        }
        "mathrank.v1.AnswerSearch/Info" => {
            let request: v1::InfoRequest = parse(example, data);
            let response = client.info(request).await.unwrap_or_else(|s| panic!("{example}: {s}")).into_inner();
            assert!(response.index.as_ref().is_some_and(|index| index.answers > 0), "{example}: {response:?}");
        }
        "grpc.health.v1.Health/Check" => {
            use tonic_health::pb::health_check_response::ServingStatus;
            use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
            let request: serde_json::Value = parse(example, data);
            let service = request["service"].as_str().unwrap_or_default().to_owned();
            let mut health = HealthClient::new(server.channel().await);
            let status = health.check(HealthCheckRequest { service }).await.unwrap().into_inner().status;
            assert_eq!(status, ServingStatus::Serving as i32, "{example}");
        }
        other => panic!("{example}: no runner for {other}: teach tests/tests/readme.rs to send it"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_examples_of_the_docs_run() {
    let server = TestServer::with_model(Limits::default(), RerankerOptions::default()).await;
    let mut ran = Vec::new();
    for (path, text) in documents() {
        for block in shell_blocks(&text) {
            for example in commands(block, "grpcurl ") {
                run_grpcurl(&server, &example).await;
                ran.push(path.clone());
            }
        }
    }
    // The README's first search, and docs/grpc.md's tour of every method.
    for (path, at_least) in [("README.md", 1), ("docs/grpc.md", 7)] {
        let count = ran.iter().filter(|p| *p == path).count();
        assert!(count >= at_least, "{path} shows {count} grpcurl examples, expected {at_least} or more: {ran:?}");
    }
}

/// (where the docs show it, the query as written inside JSON or a shell argument, the query
/// text, its filters, words the first hit's title must hold).
type Case = (&'static str, &'static str, &'static str, Filters, &'static [&'static str]);

fn cases() -> Vec<Case> {
    let linear_algebra = Filters { tags_any: vec!["linear-algebra".into()], min_votes: Some(2), ..Filters::default() };
    let power = r"How do I compute $3^{100} \bmod 7$?";
    let remainder: &[&str] = &["Remainder", "divided by 7"];
    let eigen = "Eigenvalues of a triangular matrix";
    let eigen_words: &[&str] = &["Eigenvalues", "triangular"];
    vec![
        ("README.md", r#""How do I compute $3^{100} \\bmod 7$?""#, power, Filters::default(), remainder),
        ("README.md", r#"'How do I compute $3^{100} \bmod 7$?'"#, power, Filters::default(), remainder),
        ("docs/grpc.md", r#""How do I compute $3^{100} \\bmod 7$?""#, power, Filters::default(), remainder),
        ("docs/grpc.md", r#""Eigenvalues of a triangular matrix""#, eigen, linear_algebra.clone(), eigen_words),
        ("docs/http-api.md", r#""Eigenvalues of a triangular matrix""#, eigen, linear_algebra, eigen_words),
        ("README.md", r#"'Eigenvalues of a triangular matrix'"#, eigen, Filters::default(), eigen_words),
        (
            "docs/http-api.md",
            r#""Remainder of $4^{324}$ divided by 7""#,
            "Remainder of $4^{324}$ divided by 7",
            Filters::default(),
            &["Remainder of 4^324"],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_queries_of_the_docs_find_sensible_first_hits() {
    let documents = documents();
    let engine = Engine::new(sample_index(), None, Limits::default());
    for (path, as_written, query, filters, title_words) in cases() {
        let (_, text) = documents.iter().find(|(p, _)| p == path).unwrap_or_else(|| panic!("no {path}"));
        assert!(text.contains(as_written), "{path} no longer shows {as_written}: update this test with it");
        let params =
            SearchParams { query: query.into(), top_k: 1, rerank: Some(false), filters, ..SearchParams::default() };
        let outcome = engine.search(params).await.unwrap();
        let title = &outcome.hits.first().unwrap_or_else(|| panic!("{query}: no hit")).hit.title;
        for word in title_words {
            assert!(title.contains(word), "{query}: first hit {title:?} lacks {word:?}");
        }
    }
}

#[test]
fn shell_words_split_as_the_shell_does() {
    let command = "grpcurl -plaintext -d '{\"q\": \"a \\\\b\",\n  \"k\": 1}' \\\n  127.0.0.1:50051 S/M # note\n";
    assert_eq!(
        shell_words(command),
        ["grpcurl", "-plaintext", "-d", "{\"q\": \"a \\\\b\",\n  \"k\": 1}", "127.0.0.1:50051", "S/M"]
    );
    let block = "grpcurl a 'b\nc'\necho x\ngrpcurl d \\\n  e\n";
    assert_eq!(commands(block, "grpcurl "), ["grpcurl a 'b\nc'\n", "grpcurl d \\\n  e\n"]);
}
