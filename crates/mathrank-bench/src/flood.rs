//! `mathrank-bench flood`: a burst of concurrent `Search` calls, all sent at once, against a
//! running server; what each caller got: a complete answer, a partial one, or nothing.

use std::time::{Duration, Instant};

use clap::Args;
use mathrank_proto::v1;

use mathrank_bench::measure::percentile;

#[derive(Args, Debug)]
pub struct FloodArgs {
    /// Server address.
    #[arg(long, env = "MATHRANK_SERVER", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Calls sent at once.
    #[arg(long, default_value_t = 48)]
    pub calls: usize,
    /// BM25 candidates reranked per call.
    #[arg(long, default_value_t = 30)]
    pub rerank_depth: u32,
    /// The gRPC deadline each call sends (`grpc-timeout`), in milliseconds; without it the
    /// calls send none, as grpcurl's --max-time does.
    #[arg(long)]
    pub deadline_ms: Option<u64>,
    /// Seconds after which a caller gives up, whatever the deadline.
    #[arg(long, default_value_t = 60)]
    pub client_timeout_s: u64,
    /// ARQMath topics XML: call i asks topic i (title and body HTML, as a site would send).
    #[arg(long)]
    pub topics: std::path::PathBuf,
    /// Bearer token, if the server wants one.
    #[arg(long, env = "MATHRANK_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
}

/// How one call ended.
enum Ending {
    Complete { reranked: u32 },
    Partial { reranked: u32 },
    Failed(String),
}

pub fn run(args: FloodArgs) -> anyhow::Result<()> {
    let topics = mathrank_eval::read_topics(&args.topics)?;
    anyhow::ensure!(!topics.is_empty(), "no topics in {}", args.topics.display());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(args.addr.clone())?.connect().await?;
        let client = v1::answer_search_client::AnswerSearchClient::new(channel).max_decoding_message_size(64 << 20);
        let started = Instant::now();
        let calls: Vec<_> = (0..args.calls)
            .map(|i| {
                let mut client = client.clone();
                let topic = &topics[i % topics.len()];
                let mut request = tonic::Request::new(v1::SearchRequest {
                    query: format!("{} {}", topic.title, topic.question),
                    rerank_depth: args.rerank_depth,
                    ..Default::default()
                });
                if let Some(ms) = args.deadline_ms {
                    request.set_timeout(Duration::from_millis(ms));
                }
                if let Some(token) = &args.auth_token
                    && let Ok(value) = format!("Bearer {token}").parse()
                {
                    request.metadata_mut().insert("authorization", value);
                }
                let give_up = Duration::from_secs(args.client_timeout_s);
                tokio::spawn(async move {
                    let call_started = Instant::now();
                    let ending = match tokio::time::timeout(give_up, client.search(request)).await {
                        Err(_) => Ending::Failed("client gave up".into()),
                        Ok(Err(status)) => Ending::Failed(format!("{:?}", status.code())),
                        Ok(Ok(response)) => {
                            let response = response.into_inner();
                            if response.partial {
                                Ending::Partial { reranked: response.reranked }
                            } else {
                                Ending::Complete { reranked: response.reranked }
                            }
                        }
                    };
                    (ending, call_started.elapsed())
                })
            })
            .collect();
        let mut latencies = Vec::new();
        let (mut complete, mut partial, mut reranked) = (0usize, 0usize, 0u64);
        let mut failed: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for call in calls {
            let (ending, took) = call.await?;
            latencies.push(took);
            match ending {
                Ending::Complete { reranked: r } => {
                    complete += 1;
                    reranked += u64::from(r);
                }
                Ending::Partial { reranked: r } => {
                    partial += 1;
                    reranked += u64::from(r);
                }
                Ending::Failed(code) => *failed.entry(code).or_default() += 1,
            }
        }
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{}",
            serde_json::json!({
                "calls": args.calls,
                "deadline_ms": args.deadline_ms,
                "rerank_depth": args.rerank_depth,
                "complete": complete,
                "partial": partial,
                "failed": failed,
                "answered_with_hits": complete + partial,
                "p50_ms": ms(percentile(&latencies, 50.0)),
                "p99_ms": ms(percentile(&latencies, 99.0)),
                "mean_reranked_depth": reranked as f64 / args.calls as f64,
                "wall_s": started.elapsed().as_secs_f64(),
            })
        );
        Ok(())
    })
}
