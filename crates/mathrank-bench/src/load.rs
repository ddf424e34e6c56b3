//! `mathrank-bench load`: a closed-loop load generator against a running server, over gRPC or
//! HTTP/JSON, for `Search` or for reranking given candidates (gRPC `Rerank`, HTTP
//! `/v1/rerank`), so that the two protocols can be compared on the same server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use mathrank_proto::v1;

use mathrank_bench::measure::{peak_rss_mib, percentile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Grpc,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// `Search` (gRPC) or `/v1/search` (HTTP).
    Search,
    /// `Rerank` of `--candidates` answers (gRPC) or Cohere `/v1/rerank` (HTTP).
    Rerank,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Server address.
    #[arg(long, env = "MATHRANK_SERVER", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Protocol of the calls.
    #[arg(long, value_enum, default_value = "grpc")]
    pub protocol: Protocol,
    /// What to call.
    #[arg(long, value_enum, default_value = "search")]
    pub method: Method,
    /// Concurrencies to measure, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
    /// Seconds per concurrency level.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Search: rerank (false: BM25 only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub rerank: bool,
    /// Search: BM25 candidates reranked per query.
    #[arg(long, default_value_t = 30)]
    pub rerank_depth: u32,
    /// Rerank: candidate answers per call (taken in turn from the embedded sample).
    #[arg(long, default_value_t = 30)]
    pub candidates: usize,
    /// ARQMath topics XML for the queries (default: the embedded sample's questions).
    #[arg(long)]
    pub topics: Option<std::path::PathBuf>,
    /// Bearer token, if the server wants one.
    #[arg(long, env = "MATHRANK_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
}

/// The embedded sample's questions (title and body HTML, for the server to convert once) and
/// answers (converted, as an engine would send them).
fn sample_texts() -> (Vec<String>, Vec<String>) {
    let (mut questions, mut answers) = (Vec::new(), Vec::new());
    for event in mathrank_dump::PostsReader::new(mathrank_dump::SAMPLE_POSTS_XML.as_bytes()).flatten() {
        if let mathrank_dump::RowEvent::Post(post) = event {
            match post.kind {
                mathrank_dump::PostKind::Question => questions.push(format!("{} {}", post.title, post.body_html)),
                mathrank_dump::PostKind::Answer => answers.push(mathrank_dump::html_to_text(&post.body_html)),
            }
        }
    }
    (questions, answers)
}

/// What the server said of one call: its own wall time, and how long of that it waited for
/// the reranker (first chunk submitted to last result back).
#[derive(Default)]
struct Done {
    server_total: Duration,
    rerank_wait: Duration,
    /// Search: the answer was partial, and how many candidates it reranked.
    partial: bool,
    reranked: u64,
}

/// Makes calls of one kind; cheap to clone per worker.
#[derive(Clone)]
struct Caller {
    args: Arc<LoadArgs>,
    grpc: Option<v1::answer_search_client::AnswerSearchClient<tonic::transport::Channel>>,
    http: reqwest::Client,
    answers: Arc<Vec<String>>,
}

/// A stage of `Server-Timing: rerank;dur=12.5, total;dur=20.1` (milliseconds).
fn server_timing(headers: &reqwest::header::HeaderMap, stage: &str) -> Duration {
    let prefix = format!("{stage};dur=");
    headers
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|part| part.trim().strip_prefix(prefix.as_str())?.parse::<f64>().ok()))
        .map_or(Duration::ZERO, |ms| Duration::from_secs_f64(ms / 1000.0))
}

fn done_of(timings: Option<v1::StageTimings>) -> Done {
    let ms = |value: f64| Duration::from_secs_f64(value / 1000.0);
    timings.map_or_else(Done::default, |t| Done {
        server_total: ms(t.total_ms),
        rerank_wait: ms(t.rerank_ms),
        ..Done::default()
    })
}

impl Caller {
    async fn call(&mut self, query: &str, turn: usize) -> anyhow::Result<Done> {
        let args = Arc::clone(&self.args);
        let documents: Vec<String> = (0..args.candidates)
            .map(|i| self.answers[(turn * args.candidates + i) % self.answers.len()].clone())
            .collect();
        match (args.protocol, &mut self.grpc) {
            (Protocol::Grpc, Some(client)) => {
                let timings = match args.method {
                    Method::Search => {
                        let mut request = tonic::Request::new(v1::SearchRequest {
                            query: query.to_owned(),
                            rerank: Some(args.rerank),
                            rerank_depth: args.rerank_depth,
                            ..Default::default()
                        });
                        authorize(&mut request, args.auth_token.as_deref());
                        let response = client.search(request).await?.into_inner();
                        let mut done = done_of(response.timings);
                        done.partial = response.partial;
                        done.reranked = u64::from(response.reranked);
                        return Ok(done);
                    }
                    Method::Rerank => {
                        let candidates = documents
                            .into_iter()
                            .enumerate()
                            .map(|(i, text)| v1::Candidate { id: i.to_string(), text })
                            .collect();
                        let mut request = tonic::Request::new(v1::RerankRequest {
                            query: query.to_owned(),
                            candidates,
                            ..Default::default()
                        });
                        authorize(&mut request, args.auth_token.as_deref());
                        client.rerank(request).await?.into_inner().timings
                    }
                };
                Ok(done_of(timings))
            }
            _ => {
                let base = args.addr.trim_end_matches('/');
                let request = match args.method {
                    Method::Search => self.http.post(format!("{base}/v1/search")).json(&serde_json::json!({
                        "query": query, "rerank": args.rerank, "rerank_depth": args.rerank_depth,
                    })),
                    Method::Rerank => self
                        .http
                        .post(format!("{base}/v1/rerank"))
                        .json(&serde_json::json!({ "query": query, "documents": documents })),
                };
                let request = match &args.auth_token {
                    Some(token) => request.bearer_auth(token),
                    None => request,
                };
                let response = request.send().await?;
                let status = response.status();
                let mut done = Done {
                    server_total: server_timing(response.headers(), "total"),
                    rerank_wait: server_timing(response.headers(), "rerank"),
                    partial: response.headers().contains_key("x-mathrank-partial"),
                    ..Done::default()
                };
                let body = response.bytes().await?;
                anyhow::ensure!(status.is_success(), "HTTP {status}: {}", String::from_utf8_lossy(&body));
                if args.method == Method::Search
                    && let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body)
                {
                    done.reranked = json["reranked"].as_u64().unwrap_or(0);
                }
                Ok(done)
            }
        }
    }
}

fn authorize<T>(request: &mut tonic::Request<T>, token: Option<&str>) {
    if let Some(token) = token
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
}

pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let (sample_questions, answers) = sample_texts();
    let queries = match &args.topics {
        Some(path) => mathrank_eval::read_topics(path)?
            .into_iter()
            // Raw HTML: the server converts it, once, as it converts any caller's question.
            .map(|t| format!("{} {}", t.title, t.question))
            .collect(),
        None => sample_questions,
    };
    anyhow::ensure!(!queries.is_empty() && !answers.is_empty(), "no queries");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let args = Arc::new(args);
    runtime.block_on(async {
        let grpc = match args.protocol {
            Protocol::Grpc => {
                let channel = tonic::transport::Endpoint::from_shared(args.addr.clone())?.connect().await?;
                Some(v1::answer_search_client::AnswerSearchClient::new(channel).max_decoding_message_size(64 << 20))
            }
            Protocol::Http => None,
        };
        // As engines do: a pool of HTTP/1.1 keep-alive connections.
        let http = reqwest::Client::builder().http1_only().pool_max_idle_per_host(256).build()?;
        let caller = Caller { args: Arc::clone(&args), grpc, http, answers: Arc::new(answers) };
        for &concurrency in &args.concurrency {
            let tally = level(&caller, &queries, concurrency, Duration::from_secs(args.seconds)).await?;
            println!("{}", tally.report(&args, concurrency));
        }
        Ok::<(), anyhow::Error>(())
    })
}

/// What the workers of one concurrency level saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: u64,
    server: Done,
    partial: u64,
    reranked: u64,
    elapsed: f64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.server.server_total += other.server.server_total;
        self.server.rerank_wait += other.server.rerank_wait;
        self.partial += other.partial;
        self.reranked += other.reranked;
    }

    fn report(mut self, args: &LoadArgs, concurrency: usize) -> serde_json::Value {
        let client_total: Duration = self.latencies.iter().sum();
        self.latencies.sort();
        let latencies = &self.latencies;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // Shares of the client's latency: outside the server (protocol, transport, client),
        // and outside the wait for the reranker (all of that, plus parsing, conversion,
        // tokenizing and retrieval). The rerank wait includes queueing behind other calls.
        let share = |part: Duration| {
            if client_total.is_zero() { 0.0 } else { 1.0 - part.as_secs_f64() / client_total.as_secs_f64() }
        };
        serde_json::json!({
            "protocol": format!("{:?}", args.protocol).to_lowercase(),
            "method": format!("{:?}", args.method).to_lowercase(),
            "candidates": (args.method == Method::Rerank).then_some(args.candidates),
            "concurrency": concurrency,
            "rerank": args.method == Method::Rerank || args.rerank,
            "requests": latencies.len(),
            "errors": self.errors,
            "qps": latencies.len() as f64 / self.elapsed,
            "p50_ms": ms(percentile(latencies, 50.0)),
            "p95_ms": ms(percentile(latencies, 95.0)),
            "p99_ms": ms(percentile(latencies, 99.0)),
            "partial": (args.method == Method::Search).then_some(self.partial),
            "mean_reranked": (args.method == Method::Search && !latencies.is_empty())
                .then(|| self.reranked as f64 / latencies.len() as f64),
            "share_outside_server": share(self.server.server_total),
            "share_outside_rerank_wait": share(self.server.rerank_wait),
            "client_peak_rss_mib": peak_rss_mib(),
        })
    }
}

/// `concurrency` closed-loop workers calling for `seconds`.
async fn level(caller: &Caller, queries: &[String], concurrency: usize, seconds: Duration) -> anyhow::Result<Tally> {
    let deadline = Instant::now() + seconds;
    let mut tasks = Vec::new();
    for worker in 0..concurrency.max(1) {
        let mut caller = caller.clone();
        let queries = queries.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut turn = worker;
            while Instant::now() < deadline {
                let started = Instant::now();
                match caller.call(&queries[turn % queries.len()], turn).await {
                    Ok(done) => {
                        tally.latencies.push(started.elapsed());
                        tally.server.server_total += done.server_total;
                        tally.server.rerank_wait += done.rerank_wait;
                        tally.partial += u64::from(done.partial);
                        tally.reranked += done.reranked;
                    }
                    Err(err) => {
                        if tally.errors == 0 {
                            eprintln!("load: {err:#}");
                        }
                        tally.errors += 1;
                    }
                }
                turn += concurrency;
            }
            tally
        }));
    }
    let started = Instant::now();
    let mut tally = Tally::default();
    for task in tasks {
        tally.add(task.await?);
    }
    tally.elapsed = started.elapsed().as_secs_f64();
    Ok(tally)
}
