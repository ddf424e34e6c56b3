//! Prometheus metrics (text exposition format), series prefixed `mathrank_`, served over a
//! minimal HTTP endpoint so the server needs no extra web stack.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::engine::Timings;
use crate::serve::ServerState;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(value.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{}}} {}",
            labels.trim_end_matches(','),
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{}}} {count}", labels.trim_end_matches(','));
    }
}

const STAGES: [&str; 6] = ["retrieve", "tokenize", "queue", "infer", "rerank", "total"];

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, String), u64>>,
    request_latency: Mutex<BTreeMap<&'static str, Arc<Histogram>>>,
    stages: [Histogram; STAGES.len()],
}

impl Metrics {
    pub fn record_request(&self, method: &'static str, code: tonic::Code, took: Duration) {
        let code = format!("{code:?}");
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((method, code)).or_default() += 1;
        }
        let histogram = self.request_latency.lock().ok().map(|mut map| Arc::clone(map.entry(method).or_default()));
        if let Some(histogram) = histogram {
            histogram.observe(took);
        }
    }

    pub fn record_stages(&self, timings: &Timings) {
        let values = [timings.retrieve, timings.tokenize, timings.queue, timings.infer, timings.rerank, timings.total];
        for (histogram, value) in self.stages.iter().zip(values) {
            histogram.observe(value);
        }
    }

    /// Requests counted for `method` with status `code` (`"Ok"`, `"ResourceExhausted"`, ...).
    pub fn request_count(&self, method: &str, code: &str) -> u64 {
        self.requests
            .lock()
            .map(|requests| requests.iter().filter(|((m, c), _)| *m == method && c == code).map(|(_, n)| *n).sum())
            .unwrap_or(0)
    }

    /// The Prometheus text exposition of everything, including the engine's live gauges.
    pub fn render(&self, state: &ServerState) -> String {
        let mut out = String::new();
        out.push_str("# HELP mathrank_requests_total gRPC requests by method and status code.\n# TYPE mathrank_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((method, code), count) in requests.iter() {
                let _ = writeln!(out, "mathrank_requests_total{{method=\"{method}\",code=\"{code}\"}} {count}");
            }
        }
        out.push_str("# HELP mathrank_request_duration_seconds gRPC request latency by method.\n# TYPE mathrank_request_duration_seconds histogram\n");
        if let Ok(latency) = self.request_latency.lock() {
            for (method, histogram) in latency.iter() {
                histogram.render(&mut out, "mathrank_request_duration_seconds", &format!("method=\"{method}\","));
            }
        }
        out.push_str("# HELP mathrank_stage_duration_seconds Time per search stage.\n# TYPE mathrank_stage_duration_seconds histogram\n");
        for (stage, histogram) in STAGES.iter().zip(&self.stages) {
            histogram.render(&mut out, "mathrank_stage_duration_seconds", &format!("stage=\"{stage}\","));
        }
        let ready = u8::from(state.engine().is_some());
        let _ = writeln!(
            out,
            "# HELP mathrank_ready 1 once index and model are loaded.\n# TYPE mathrank_ready gauge\nmathrank_ready {ready}"
        );
        if let Some(engine) = state.engine() {
            let _ = writeln!(
                out,
                "# HELP mathrank_request_queue_depth Requests waiting for an execution slot.\n# TYPE mathrank_request_queue_depth gauge\nmathrank_request_queue_depth {}",
                engine.queued_requests()
            );
            let _ = writeln!(
                out,
                "# TYPE mathrank_index_answers gauge\nmathrank_index_answers {}",
                engine.index().num_answers()
            );
            if let Some(reranker) = engine.reranker() {
                let stats = reranker.stats();
                let _ = writeln!(
                    out,
                    "# HELP mathrank_rerank_queue_depth Jobs waiting for an inference thread.\n# TYPE mathrank_rerank_queue_depth gauge\nmathrank_rerank_queue_depth {}",
                    stats.queue_depth
                );
                let _ = writeln!(
                    out,
                    "# TYPE mathrank_rerank_pairs_total counter\nmathrank_rerank_pairs_total {}",
                    stats.pairs
                );
                let _ = writeln!(
                    out,
                    "# TYPE mathrank_rerank_cancelled_jobs_total counter\nmathrank_rerank_cancelled_jobs_total {}",
                    stats.cancelled_jobs
                );
                let _ = writeln!(
                    out,
                    "# TYPE mathrank_rerank_real_tokens_total counter\nmathrank_rerank_real_tokens_total {}",
                    stats.real_tokens
                );
                let _ = writeln!(
                    out,
                    "# TYPE mathrank_rerank_padded_tokens_total counter\nmathrank_rerank_padded_tokens_total {}",
                    stats.padded_tokens
                );
                let _ = writeln!(
                    out,
                    "# HELP mathrank_rerank_padding_efficiency Real tokens / padded tokens since start.\n# TYPE mathrank_rerank_padding_efficiency gauge\nmathrank_rerank_padding_efficiency {:.6}",
                    mathrank_rerank::efficiency(stats.real_tokens, stats.padded_tokens)
                );
                let _ = writeln!(
                    out,
                    "# TYPE mathrank_rerank_infer_seconds_total counter\nmathrank_rerank_infer_seconds_total {:.6}",
                    stats.infer_seconds
                );
                out.push_str("# HELP mathrank_rerank_batch_size Pairs per micro-batch.\n# TYPE mathrank_rerank_batch_size histogram\n");
                for (bound, count) in mathrank_rerank::BATCH_BUCKETS.iter().zip(&stats.batch_size_cumulative) {
                    let le = if *bound == u64::MAX { "+Inf".to_owned() } else { bound.to_string() };
                    let _ = writeln!(out, "mathrank_rerank_batch_size_bucket{{le=\"{le}\"}} {count}");
                }
                let _ = writeln!(
                    out,
                    "mathrank_rerank_batch_size_sum {}\nmathrank_rerank_batch_size_count {}",
                    stats.pairs, stats.batches
                );
            }
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (mut stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut request = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read = async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                Ok::<_, std::io::Error>(())
            };
            if tokio::time::timeout(Duration::from_secs(5), read).await.is_err() {
                return;
            }
            let line = String::from_utf8_lossy(&request);
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
                ("200 OK", state.metrics().render(&state))
            } else {
                ("404 Not Found", "only /metrics is served here\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
