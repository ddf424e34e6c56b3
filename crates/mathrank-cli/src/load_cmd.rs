//! `mathrank bench load`: a closed-loop load generator over gRPC.

use std::time::{Duration, Instant};

use clap::Args;
use mathrank_proto::v1;

use crate::bench_cmd::{peak_rss_mib, percentile};

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Server address.
    #[arg(long, env = "MATHRANK_SERVER", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Concurrencies to measure, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
    /// Seconds per concurrency level.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Rerank (false: BM25 only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub rerank: bool,
    /// BM25 candidates reranked per query.
    #[arg(long, default_value_t = 30)]
    pub rerank_depth: u32,
    /// ARQMath topics XML for the queries (default: the embedded sample's questions).
    #[arg(long)]
    pub topics: Option<std::path::PathBuf>,
    /// Bearer token, if the server wants one.
    #[arg(long, env = "MATHRANK_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
}

fn sample_queries() -> Vec<String> {
    let mut queries = Vec::new();
    for event in mathrank_dump::PostsReader::new(mathrank_dump::SAMPLE_POSTS_XML.as_bytes()).flatten() {
        if let mathrank_dump::RowEvent::Post(post) = event
            && post.kind == mathrank_dump::PostKind::Question
        {
            queries.push(mathrank_dump::question_text(&post.title, &post.body_html));
        }
    }
    queries
}

pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let queries = match &args.topics {
        Some(path) => mathrank_eval::read_topics(path)?
            .into_iter()
            .map(|t| mathrank_dump::question_text(&t.title, &t.question))
            .collect(),
        None => sample_queries(),
    };
    anyhow::ensure!(!queries.is_empty(), "no queries");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(args.addr.clone())?.connect().await?;
        for &concurrency in &args.concurrency {
            let deadline = Instant::now() + Duration::from_secs(args.seconds);
            let mut tasks = Vec::new();
            for worker in 0..concurrency.max(1) {
                let mut client = v1::answer_search_client::AnswerSearchClient::new(channel.clone());
                let queries = queries.clone();
                let token = args.auth_token.clone();
                let (rerank, depth) = (args.rerank, args.rerank_depth);
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut errors = 0u64;
                    let mut server_infer = Duration::ZERO;
                    let mut server_total = Duration::ZERO;
                    let mut i = worker;
                    while Instant::now() < deadline {
                        let mut request = tonic::Request::new(v1::SearchRequest {
                            query: queries[i % queries.len()].clone(),
                            rerank: Some(rerank),
                            rerank_depth: depth,
                            ..Default::default()
                        });
                        if let Some(token) = &token
                            && let Ok(value) = format!("Bearer {token}").parse()
                        {
                            request.metadata_mut().insert("authorization", value);
                        }
                        let started = Instant::now();
                        match client.search(request).await {
                            Ok(response) => {
                                latencies.push(started.elapsed());
                                if let Some(t) = response.into_inner().timings {
                                    server_infer += Duration::from_secs_f64(t.rerank_ms / 1000.0);
                                    server_total += Duration::from_secs_f64(t.total_ms / 1000.0);
                                }
                            }
                            Err(_) => errors += 1,
                        }
                        i += concurrency;
                    }
                    (latencies, errors, server_infer, server_total)
                }));
            }
            let started = Instant::now();
            let mut latencies = Vec::new();
            let (mut errors, mut infer, mut total) = (0, Duration::ZERO, Duration::ZERO);
            for task in tasks {
                let (l, e, i, t) = task.await?;
                latencies.extend(l);
                errors += e;
                infer += i;
                total += t;
            }
            let elapsed = started.elapsed().as_secs_f64();
            latencies.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let outside = if total.is_zero() { 0.0 } else { 1.0 - infer.as_secs_f64() / total.as_secs_f64() };
            println!(
                "{}",
                serde_json::json!({
                    "concurrency": concurrency,
                    "rerank": args.rerank,
                    "requests": latencies.len(),
                    "errors": errors,
                    "qps": latencies.len() as f64 / elapsed,
                    "p50_ms": ms(percentile(&latencies, 50.0)),
                    "p95_ms": ms(percentile(&latencies, 95.0)),
                    "p99_ms": ms(percentile(&latencies, 99.0)),
                    "server_share_outside_inference": outside,
                    "client_peak_rss_mib": peak_rss_mib(),
                })
            );
        }
        Ok::<(), anyhow::Error>(())
    })
}
