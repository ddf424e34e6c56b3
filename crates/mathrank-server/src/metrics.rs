//! Prometheus metrics with `prometheus-client`: a registry per server (no process globals,
//! so several servers can run in one process), series prefixed `mathrank_`, served at
//! `/metrics` on the main port and optionally on a separate listener.

use std::sync::Arc;
use std::time::Duration;

use mathrank_engine::Timings;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::serve::ServerState;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodCode {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<MethodCode, Counter>,
    request_latency: Family<MethodLabel, Histogram, fn() -> Histogram>,
    stages: Family<StageLabel, Histogram, fn() -> Histogram>,
    http_requests: Family<RouteStatus, Counter>,
}

impl Metrics {
    /// Metrics whose live gauges (queues, reranker totals) read `state` at each scrape.
    pub(crate) fn new(state: std::sync::Weak<ServerState>) -> Self {
        let mut registry = Registry::with_prefix("mathrank");
        let requests = Family::<MethodCode, Counter>::default();
        registry.register(
            "requests",
            "Requests by method (gRPC method, or HTTP route) and status code",
            requests.clone(),
        );
        let request_latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("request_duration_seconds", "Request latency by method", request_latency.clone());
        let stages = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("stage_duration_seconds", "Time per search stage", stages.clone());
        let http_requests = Family::<RouteStatus, Counter>::default();
        registry.register("http_requests", "HTTP requests by route and status", http_requests.clone());
        registry.register_collector(Box::new(LiveCollector { state }));
        Self { registry, requests, request_latency, stages, http_requests }
    }

    /// A call of `method` ended with `code` (gRPC code name, e.g. `Ok`, `ResourceExhausted`).
    pub fn record_request(&self, method: &str, code: &str, took: Duration) {
        self.requests.get_or_create(&MethodCode { method: method.into(), code: code.into() }).inc();
        self.request_latency.get_or_create(&MethodLabel { method: method.into() }).observe(took.as_secs_f64());
    }

    /// An HTTP request to `route` (the route pattern, not the raw path) ended with `status`.
    pub fn record_http(&self, route: &str, status: u16) {
        self.http_requests.get_or_create(&RouteStatus { route: route.into(), status }).inc();
    }

    pub fn record_stages(&self, timings: &Timings) {
        let values = [
            ("retrieve", timings.retrieve),
            ("tokenize", timings.tokenize),
            ("queue", timings.queue),
            ("infer", timings.infer),
            ("rerank", timings.rerank),
            ("total", timings.total),
        ];
        for (stage, value) in values {
            self.stages.get_or_create(&StageLabel { stage }).observe(value.as_secs_f64());
        }
    }

    /// Requests counted for `method` with status `code` (`"Ok"`, `"ResourceExhausted"`, ...).
    pub fn request_count(&self, method: &str, code: &str) -> u64 {
        self.requests.get_or_create(&MethodCode { method: method.into(), code: code.into() }).get()
    }

    /// The Prometheus text exposition (format 0.0.4) of everything.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "encoding metrics failed");
        }
        out
    }
}

/// Values that live elsewhere (the engine's queues, the reranker's totals), read per scrape.
#[derive(Debug)]
struct LiveCollector {
    state: std::sync::Weak<ServerState>,
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: f64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: f64) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let Some(state) = self.state.upgrade() else { return Ok(()) };
        let engine = state.engine();
        gauge(&mut encoder, "ready", "1 once index and model are loaded", f64::from(u8::from(engine.is_some())))?;
        let Some(engine) = engine else { return Ok(()) };
        gauge(
            &mut encoder,
            "request_queue_depth",
            "Requests waiting for an execution slot",
            engine.queued_requests() as f64,
        )?;
        gauge(&mut encoder, "index_answers", "Answers in the index", engine.index().num_answers() as f64)?;
        let Some(reranker) = engine.reranker() else { return Ok(()) };
        let stats = reranker.stats();
        gauge(&mut encoder, "rerank_queue_depth", "Jobs waiting for an inference thread", stats.queue_depth as f64)?;
        counter(&mut encoder, "rerank_pairs", "Pairs scored", stats.pairs as f64)?;
        counter(&mut encoder, "rerank_batches", "Micro-batches run", stats.batches as f64)?;
        counter(
            &mut encoder,
            "rerank_cancelled_jobs",
            "Jobs dropped because their caller left",
            stats.cancelled_jobs as f64,
        )?;
        counter(&mut encoder, "rerank_real_tokens", "Tokens of the pairs scored", stats.real_tokens as f64)?;
        counter(&mut encoder, "rerank_padded_tokens", "Tokens run, padding included", stats.padded_tokens as f64)?;
        gauge(
            &mut encoder,
            "rerank_padding_efficiency",
            "Real tokens / padded tokens since start",
            mathrank_rerank::efficiency(stats.real_tokens, stats.padded_tokens),
        )?;
        counter(&mut encoder, "rerank_infer_seconds", "Time spent in inference", stats.infer_seconds)?;
        // The reranker keeps cumulative bucket counts; the encoder wants them per bucket.
        let mut previous = 0;
        let buckets = mathrank_rerank::BATCH_BUCKETS
            .iter()
            .zip(&stats.batch_size_cumulative)
            .map(|(&bound, &cumulative)| {
                let bound = if bound == u64::MAX { f64::INFINITY } else { bound as f64 };
                let count = cumulative.saturating_sub(previous);
                previous = cumulative;
                (bound, count)
            })
            .collect();
        let sizes = BatchSizes { buckets, sum: stats.pairs as f64, count: stats.batches };
        sizes.encode(encoder.encode_descriptor(
            "rerank_batch_size",
            "Pairs per micro-batch",
            None,
            sizes.metric_type(),
        )?)
    }
}

/// The reranker's batch-size histogram, as it stands at a scrape.
#[derive(Debug)]
struct BatchSizes {
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

impl EncodeMetric for BatchSizes {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> std::fmt::Result {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Serves `GET /metrics` (and nothing else) on `listener` until `shutdown` resolves: the
/// optional separate listener of `--metrics-addr`. axum's accept loop survives accept errors
/// (EMFILE under a connection flood) by backing off instead of stopping.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(crate::http::metrics_text))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(64))
        .with_state(state);
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
