//! Prometheus metrics with `prometheus-client`: a registry per server (no process globals,
//! so several servers can run in one process), series prefixed `mathrank_`: what the adapters
//! count as calls end, and what the engine and reranker hold, read at each scrape.

use std::sync::Arc;
use std::time::Duration;

use mathrank_engine::{Engine, PartialReason, Timings};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

/// Why a connection closed, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The client closed it, or asked to (`Connection: close`).
    Client,
    /// No call for the idle timeout.
    Idle,
    /// Idle the longest when a new connection needed room.
    Evicted,
    /// The cap was reached and every open connection had calls in flight.
    Refused,
    /// Headers, a body or an HTTP/2 ping did not arrive in time, or the TLS handshake stalled.
    Timeout,
    /// A protocol or I/O error.
    Error,
    /// The server shut down.
    Shutdown,
}

impl CloseReason {
    pub const ALL: [CloseReason; 7] =
        [Self::Client, Self::Idle, Self::Evicted, Self::Refused, Self::Timeout, Self::Error, Self::Shutdown];

    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Idle => "idle",
            Self::Evicted => "evicted",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Error => "error",
            Self::Shutdown => "shutdown",
        }
    }
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
    partial: Family<ReasonLabel, Counter>,
    windows: Histogram,
    connections_open: Gauge,
    connections_closed: Family<ReasonLabel, Counter>,
    calls_in_flight: Gauge,
}

impl Metrics {
    /// Metrics with `live`, which reports at each scrape what lives elsewhere (queues,
    /// reranker totals).
    pub(crate) fn new(live: LiveCollector) -> Self {
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
        let partial = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "partial_responses",
            "Search and rerank answers with candidates left unscored, by reason (deadline, overload)",
            partial.clone(),
        );
        let windows = Histogram::new([1.0, 2.0, 5.0, 10.0, 30.0, 100.0, 300.0, 1000.0]);
        registry.register(
            "rerank_windows",
            "Pairs one call sent to the model (cache misses and their windows)",
            windows.clone(),
        );
        let connections_open = Gauge::default();
        registry.register("connections_open", "Open client connections", connections_open.clone());
        let connections_closed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connections_closed",
            "Client connections closed, by reason (client, idle, evicted, refused, timeout, error, shutdown)",
            connections_closed.clone(),
        );
        let calls_in_flight = Gauge::default();
        registry.register(
            "calls_in_flight",
            "HTTP requests and gRPC calls whose answer is not sent yet",
            calls_in_flight.clone(),
        );
        for reason in CloseReason::ALL {
            let _ = connections_closed.get_or_create(&ReasonLabel { reason: reason.name() });
        }
        registry.register_collector(Box::new(live));
        Self {
            registry,
            requests,
            request_latency,
            stages,
            http_requests,
            partial,
            windows,
            connections_open,
            connections_closed,
            calls_in_flight,
        }
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

    /// A search or rerank answer: its stage timings, its windows, and why it was partial.
    pub fn record_outcome(&self, timings: &Timings, partial: Option<PartialReason>) {
        self.record_stages(timings);
        if timings.windows > 0 {
            self.windows.observe(f64::from(timings.windows));
        }
        if let Some(reason) = partial {
            self.partial.get_or_create(&ReasonLabel { reason: reason.name() }).inc();
        }
    }

    /// A connection was accepted.
    pub(crate) fn connection_opened(&self) {
        self.connections_open.inc();
    }

    /// An accepted connection closed.
    pub(crate) fn connection_closed(&self, reason: CloseReason) {
        self.connections_open.dec();
        self.connections_closed.get_or_create(&ReasonLabel { reason: reason.name() }).inc();
    }

    /// A connection was closed as soon as accepted: the cap was reached with every connection busy.
    pub(crate) fn connection_refused(&self) {
        self.connections_closed.get_or_create(&ReasonLabel { reason: CloseReason::Refused.name() }).inc();
    }

    /// A call began on a connection (until its answer is sent, it keeps the connection busy).
    pub(crate) fn call_started(&self) {
        self.calls_in_flight.inc();
    }

    pub(crate) fn call_ended(&self) {
        self.calls_in_flight.dec();
    }

    /// Calls in flight now.
    pub fn calls_in_flight(&self) -> i64 {
        self.calls_in_flight.get()
    }

    /// Connections open now.
    pub fn connections_open(&self) -> i64 {
        self.connections_open.get()
    }

    /// Connections closed for `reason` so far.
    pub fn connections_closed(&self, reason: CloseReason) -> u64 {
        self.connections_closed.get_or_create(&ReasonLabel { reason: reason.name() }).get()
    }

    /// Partial answers counted for `reason`.
    pub fn partial_count(&self, reason: PartialReason) -> u64 {
        self.partial.get_or_create(&ReasonLabel { reason: reason.name() }).get()
    }

    fn record_stages(&self, timings: &Timings) {
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
pub(crate) struct LiveCollector {
    engine: Box<dyn Fn() -> Option<Arc<Engine>> + Send + Sync>,
}

impl std::fmt::Debug for LiveCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveCollector")
    }
}

impl LiveCollector {
    /// A collector of the engine that `engine` returns once it is loaded.
    pub(crate) fn new(engine: impl Fn() -> Option<Arc<Engine>> + Send + Sync + 'static) -> Self {
        Self { engine: Box::new(engine) }
    }
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
        let engine = (self.engine)();
        gauge(&mut encoder, "ready", "1 once index and model are loaded", f64::from(u8::from(engine.is_some())))?;
        let Some(engine) = engine else { return Ok(()) };
        gauge(
            &mut encoder,
            "request_queue_depth",
            "Requests waiting for an execution slot",
            engine.queued_requests() as f64,
        )?;
        gauge(&mut encoder, "index_answers", "Answers in the index", engine.index().num_answers() as f64)?;
        if let Some(replica) = engine.replica_status() {
            gauge(
                &mut encoder,
                "searchable_seq",
                "Every post-store change up to this sequence number is searchable here",
                replica.searchable_seq as f64,
            )?;
            gauge(
                &mut encoder,
                "store_seq",
                "The post store's last sequence number, as last read",
                replica.store_seq as f64,
            )?;
            gauge(
                &mut encoder,
                "replica_lag_seconds",
                "How long the oldest change not yet searchable here has been in the post store",
                replica.lag_seconds,
            )?;
            gauge(
                &mut encoder,
                "replica_caught_up",
                "1 when every change the post store held 5 s ago is searchable (readiness)",
                f64::from(u8::from(replica.ready)),
            )?;
            gauge(
                &mut encoder,
                "store_reachable",
                "0 while the post store's sequence number cannot be read",
                f64::from(u8::from(replica.store_error.is_none())),
            )?;
        }
        if let Some(cache) = engine.cache_stats() {
            encode_cache(&mut encoder, &cache)?;
        }
        match engine.reranker() {
            Some(reranker) => encode_reranker(&mut encoder, reranker),
            None => Ok(()),
        }
    }
}

fn encode_cache(encoder: &mut DescriptorEncoder<'_>, cache: &mathrank_engine::CacheStats) -> std::fmt::Result {
    counter(encoder, "score_cache_hits", "Candidates scored from the score cache", cache.hits as f64)?;
    counter(encoder, "score_cache_misses", "Candidates the score cache did not hold", cache.misses as f64)?;
    counter(
        encoder,
        "score_cache_evictions",
        "Scores evicted to stay within the score cache's memory",
        cache.evictions as f64,
    )?;
    gauge(encoder, "score_cache_entries", "Scores held by the score cache", cache.entries as f64)?;
    gauge(encoder, "score_cache_capacity", "Scores the score cache can hold", cache.capacity as f64)
}

fn encode_reranker(encoder: &mut DescriptorEncoder<'_>, reranker: &mathrank_rerank::Reranker) -> std::fmt::Result {
    // Which execution provider scores, as a labelled info gauge (`provider="cuda"`).
    let provider = [("provider", reranker.info().provider.name())];
    let info = ConstGauge::new(1i64);
    let mut family = encoder.encode_descriptor(
        "model_provider",
        "The ONNX Runtime execution provider in use (always 1)",
        None,
        info.metric_type(),
    )?;
    info.encode(family.encode_family(&provider)?)?;
    let stats = reranker.stats();
    gauge(encoder, "rerank_queue_depth", "Jobs waiting for an inference thread", stats.queue_depth as f64)?;
    counter(encoder, "rerank_pairs", "Pairs scored", stats.pairs as f64)?;
    counter(encoder, "rerank_batches", "Micro-batches run", stats.batches as f64)?;
    counter(encoder, "rerank_cancelled_jobs", "Jobs dropped because their caller left", stats.cancelled_jobs as f64)?;
    counter(
        encoder,
        "rerank_expired_jobs",
        "Jobs whose deadline came, or could not be met, before all their pairs ran",
        stats.expired_jobs as f64,
    )?;
    counter(
        encoder,
        "rerank_skipped_pairs",
        "Pairs never run because their call was cancelled or out of time",
        stats.skipped_pairs as f64,
    )?;
    gauge(
        encoder,
        "rerank_seconds_per_cost_unit",
        "The inference speed the scheduler learned (seconds per padded-token unit of the cost model)",
        stats.seconds_per_cost_unit,
    )?;
    counter(encoder, "rerank_real_tokens", "Tokens of the pairs scored", stats.real_tokens as f64)?;
    counter(encoder, "rerank_padded_tokens", "Tokens run, padding included", stats.padded_tokens as f64)?;
    gauge(
        encoder,
        "rerank_padding_efficiency",
        "Real tokens / padded tokens since start",
        mathrank_rerank::efficiency(stats.real_tokens, stats.padded_tokens),
    )?;
    counter(encoder, "rerank_infer_seconds", "Time spent in inference", stats.infer_seconds)?;
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
    sizes.encode(encoder.encode_descriptor("rerank_batch_size", "Pairs per micro-batch", None, sizes.metric_type())?)
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
