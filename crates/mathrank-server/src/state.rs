//! What both protocols share: the engine once loaded, health, and metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use mathrank_engine::{Engine, EngineError};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::metrics::Metrics;

/// What the service shares: the engine once loaded, health and metrics.
pub struct ServerState {
    engine: OnceLock<Arc<Engine>>,
    draining: AtomicBool,
    health: HealthReporter,
    metrics: Metrics,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState").field("ready", &self.engine.get().is_some()).finish()
    }
}

impl ServerState {
    /// A state whose health is NOT_SERVING until [`set_engine`](Self::set_engine).
    pub async fn new() -> Arc<Self> {
        let state = Arc::new_cyclic(|weak| Self {
            engine: OnceLock::new(),
            draining: AtomicBool::new(false),
            health: HealthReporter::new(),
            metrics: Metrics::new(Box::new(LiveCollector { state: weak.clone() })),
        });
        // The reporter starts with "" SERVING; nothing is served before the engine is loaded.
        state.report(ServingStatus::NotServing).await;
        state
    }

    async fn report(&self, status: ServingStatus) {
        self.health.set_service_status("", status).await;
        self.health.set_service_status(mathrank_proto::SERVICE_NAME, status).await;
    }

    /// Installs the loaded engine and reports SERVING once it is ready: at once for a fixed
    /// index; for a replica of a post store, once it has caught up with the store (see
    /// [`Engine::is_ready`]), and NOT_SERVING again whenever it falls behind.
    pub async fn set_engine(self: &Arc<Self>, engine: Engine) {
        if self.engine.set(Arc::new(engine)).is_err() {
            tracing::warn!("the engine was already set; keeping the first");
        }
        let serving = self.is_serving();
        self.report(if serving { ServingStatus::Serving } else { ServingStatus::NotServing }).await;
        if self.engine().is_some_and(|engine| engine.replica_status().is_some()) {
            // gRPC health is pushed to watchers, so readiness changes are reported as they come.
            let state = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut reported = serving;
                loop {
                    tokio::time::sleep(mathrank_engine::SAMPLE_EVERY).await;
                    let Some(state) = state.upgrade() else { return };
                    if state.draining.load(Ordering::SeqCst) {
                        return;
                    }
                    let serving = state.is_serving();
                    if serving != reported {
                        tracing::info!(
                            ready = serving,
                            "readiness changed (caught up with the post store or fell behind)"
                        );
                        state.report(if serving { ServingStatus::Serving } else { ServingStatus::NotServing }).await;
                        reported = serving;
                    }
                }
            });
        }
    }

    /// Reports NOT_SERVING from now on (shutdown).
    pub async fn set_not_serving(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.report(ServingStatus::NotServing).await;
    }

    /// Loaded, caught up with its post store (if any), and not shutting down: what readiness
    /// (HTTP `/health`, gRPC health) says.
    pub fn is_serving(&self) -> bool {
        self.engine.get().is_some_and(|engine| engine.is_ready()) && !self.draining.load(Ordering::SeqCst)
    }

    pub fn engine(&self) -> Option<Arc<Engine>> {
        self.engine.get().cloned()
    }

    /// The engine, or `Unavailable` while it is still loading.
    pub fn ready_engine(&self) -> Result<Arc<Engine>, EngineError> {
        self.engine().ok_or_else(|| {
            EngineError::Unavailable(
                "the index and model are still loading; retry shortly (health says SERVING when ready)".into(),
            )
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
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
            counter(&mut encoder, "score_cache_hits", "Candidates scored from the score cache", cache.hits as f64)?;
            counter(
                &mut encoder,
                "score_cache_misses",
                "Candidates the score cache did not hold",
                cache.misses as f64,
            )?;
            counter(
                &mut encoder,
                "score_cache_evictions",
                "Scores evicted to stay within --score-cache-mb",
                cache.evictions as f64,
            )?;
            gauge(&mut encoder, "score_cache_entries", "Scores held by the score cache", cache.entries as f64)?;
            gauge(&mut encoder, "score_cache_capacity", "Scores the score cache can hold", cache.capacity as f64)?;
        }
        let Some(reranker) = engine.reranker() else { return Ok(()) };
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
        gauge(&mut encoder, "rerank_queue_depth", "Jobs waiting for an inference thread", stats.queue_depth as f64)?;
        counter(&mut encoder, "rerank_pairs", "Pairs scored", stats.pairs as f64)?;
        counter(&mut encoder, "rerank_batches", "Micro-batches run", stats.batches as f64)?;
        counter(
            &mut encoder,
            "rerank_cancelled_jobs",
            "Jobs dropped because their caller left",
            stats.cancelled_jobs as f64,
        )?;
        counter(
            &mut encoder,
            "rerank_expired_jobs",
            "Jobs whose deadline came, or could not be met, before all their pairs ran",
            stats.expired_jobs as f64,
        )?;
        counter(
            &mut encoder,
            "rerank_skipped_pairs",
            "Pairs never run because their call was cancelled or out of time",
            stats.skipped_pairs as f64,
        )?;
        gauge(
            &mut encoder,
            "rerank_seconds_per_cost_unit",
            "The inference speed the scheduler learned (seconds per padded-token unit of the cost model)",
            stats.seconds_per_cost_unit,
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
