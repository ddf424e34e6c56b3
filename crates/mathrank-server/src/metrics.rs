//! Prometheus metrics with `prometheus-client`: a registry per server (no process globals,
//! so several servers can run in one process), series prefixed `mathrank_`.

use std::time::Duration;

use mathrank_engine::{PartialReason, Timings};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
}

impl Metrics {
    /// Metrics with `live`, which reports at each scrape what lives elsewhere (queues,
    /// reranker totals).
    pub(crate) fn new(live: Box<dyn Collector>) -> Self {
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
        registry.register_collector(live);
        Self { registry, requests, request_latency, stages, http_requests, partial, windows }
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
