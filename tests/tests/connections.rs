//! Connections an attacker holds open, on loopback: sockets that never send a byte, requests
//! whose headers or body stall, HTTP/2 connections that send the preface and nothing else, and
//! more of them than the cap. Each is closed, by its timeout or to make room, while a new
//! client's health check and search are answered; a gRPC client whose idle connection is closed
//! with GOAWAY carries on. Counts are small and the timeouts short, so the module runs in
//! seconds; the only clocks are those timeouts.

use std::time::Duration;

use mathrank_engine::{Engine, Limits};
use mathrank_proto::v1;
use mathrank_server::{CloseReason, ConnectionLimits, ServeOptions};
use mathrank_tests::{TestServer, sample_index};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for what must happen well before (a guard against hanging, not a
/// measurement).
const PATIENCE: Duration = Duration::from_secs(30);

async fn server(connections: ConnectionLimits) -> TestServer {
    let engine = Engine::new(sample_index(), None, Limits::default());
    TestServer::start(Some(engine), ServeOptions { connections, ..ServeOptions::default() }).await
}

/// Opens a connection and sends `bytes` (possibly none), then leaves it.
async fn open(server: &TestServer, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Reads until the server closes the connection; what it sent before.
async fn until_closed(mut stream: TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the server closes the connection");
    received
}

/// Reads the start of an answer.
async fn until_closed_or_answered(mut stream: TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await.expect("an answer").unwrap_or(0);
    buf.truncate(n);
    buf
}

/// Waits until `condition` holds (the server's own bookkeeping catches up with what a client
/// already saw).
async fn eventually(condition: impl Fn() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the condition comes true");
}

/// A new client's health check and BM25 search, on a connection of its own.
async fn new_client_is_served(server: &TestServer) {
    let client = reqwest::Client::builder().timeout(PATIENCE).build().unwrap();
    let health = client.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let search = client
        .post(server.url("/v1/search"))
        .json(&json!({ "query": "Eigenvalues of a triangular matrix", "rerank": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 200);
    let body: Value = search.json().await.unwrap();
    assert!(!body["hits"].as_array().unwrap().is_empty());
}

const STALLED_BODY: &[u8] =
    b"POST /v1/search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{";
const STALLED_HEADERS: &[u8] = b"GET /health HTTP/1.1\r\nhost: x\r\n";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_stalled_and_preface_only_connections_are_closed_while_a_new_client_is_served() {
    let limits = ConnectionLimits {
        max_connections: 200,
        idle_timeout: Duration::from_millis(600),
        request_timeout: Duration::from_millis(400),
        http2_keepalive_interval: Some(Duration::from_millis(200)),
        http2_keepalive_timeout: Duration::from_millis(200),
    };
    let server = server(limits).await;
    let mut idle = Vec::new();
    let mut stalled_bodies = Vec::new();
    let mut stalled_headers = Vec::new();
    let mut prefaces = Vec::new();
    for _ in 0..20 {
        idle.push(open(&server, b"").await);
        stalled_bodies.push(open(&server, STALLED_BODY).await);
        stalled_headers.push(open(&server, STALLED_HEADERS).await);
        prefaces.push(open(&server, H2_PREFACE).await);
    }
    new_client_is_served(&server).await;

    let closed = |streams: Vec<TcpStream>| mathrank_tests::join_all(streams.into_iter().map(until_closed));
    for answer in closed(stalled_bodies).await {
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "a stalled body is answered 408: {answer}");
        assert!(answer.contains("DEADLINE_EXCEEDED"), "{answer}");
    }
    for answer in closed(idle).await.into_iter().chain(closed(stalled_headers).await) {
        // Nothing, or hyper's own 408 for headers that never finished.
        assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
    }
    closed(prefaces).await;

    let metrics = server.state.metrics();
    eventually(|| metrics.connections_open() <= 1).await;
    let count = |reason| metrics.connections_closed(reason);
    assert!(count(CloseReason::Idle) >= 20, "never sent a byte: idle");
    assert!(count(CloseReason::Timeout) >= 40, "stalled headers and bodies: timeout");
    assert!(count(CloseReason::Idle) + count(CloseReason::Timeout) >= 80, "the prefaces too");
    assert_eq!(count(CloseReason::Evicted) + count(CloseReason::Refused), 0, "the cap was not reached");
    let text = metrics.render();
    assert!(text.contains("mathrank_connections_open "), "{text}");
    assert!(text.contains("mathrank_connections_closed_total{reason=\"idle\"}"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_longest_idle_connection_makes_room_and_a_busy_one_is_kept() {
    let limits = ConnectionLimits {
        max_connections: 24,
        // Long enough that only the cap closes anything here.
        idle_timeout: Duration::from_secs(600),
        request_timeout: Duration::from_secs(600),
        ..ConnectionLimits::default()
    };
    let server = server(limits).await;
    // A call in flight the whole time: its body never comes.
    let busy = open(&server, STALLED_BODY).await;
    let metrics = server.state.metrics();
    eventually(|| metrics.calls_in_flight() == 1).await;
    let mut idle = Vec::new();
    for _ in 0..30 {
        idle.push(open(&server, b"").await);
    }
    new_client_is_served(&server).await;
    // 1 busy + 30 idle + the new client against a cap of 24: at least 7 idle ones made room.
    eventually(|| metrics.connections_closed(CloseReason::Evicted) >= 7).await;
    assert_eq!(metrics.connections_closed(CloseReason::Refused), 0);
    // The first idle connections, the longest idle, were closed; the busy one was not.
    let first = until_closed(idle.remove(0)).await;
    assert!(first.is_empty());
    // The busy connection was kept: the rest of its body still gets an answer.
    let mut busy = busy;
    let rest = format!("{}}}", " ".repeat(998));
    busy.write_all(rest.as_bytes()).await.unwrap();
    let answer = until_closed_or_answered(busy).await;
    assert!(answer.starts_with(b"HTTP/1.1 "), "{}", String::from_utf8_lossy(&answer));
    drop(idle);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_whose_idle_connection_is_closed_with_goaway_carries_on() {
    let limits =
        ConnectionLimits { max_connections: 4, idle_timeout: Duration::from_secs(600), ..ConnectionLimits::default() };
    let server = server(limits).await;
    let mut client = server.client().await;
    let search = || v1::SearchRequest { query: "Eigenvalues of a triangular matrix".into(), ..Default::default() };
    assert!(!client.search(search()).await.unwrap().into_inner().hits.is_empty());
    // The gRPC connection is now the longest idle; filling the cap closes it with GOAWAY.
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(open(&server, b"").await);
    }
    let metrics = server.state.metrics();
    eventually(|| metrics.connections_closed(CloseReason::Evicted) >= 1).await;
    // The same client, with no new channel, goes on. A call sent in the instant the old
    // connection closes is never processed, and says UNAVAILABLE: gRPC clients retry those
    // (tonic leaves it to the caller), so one such retry is allowed, no more.
    let mut retries = 0;
    for _ in 0..3 {
        let response = match client.search(search()).await {
            Err(status) if status.code() == tonic::Code::Unavailable && retries == 0 => {
                retries += 1;
                client.search(search()).await
            }
            response => response,
        };
        assert!(!response.expect("the client reconnects").into_inner().hits.is_empty());
    }
    assert!(metrics.connections_open() >= 1, "a new connection serves it");
    drop(others);
}
