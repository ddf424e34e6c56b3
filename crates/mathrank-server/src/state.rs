//! What both protocols share: the engine once loaded, health, and metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use mathrank_engine::{Engine, EngineError};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::metrics::{LiveCollector, Metrics};

/// What the service shares: the engine once loaded, health and metrics.
pub struct ServerState {
    engine: OnceLock<Arc<Engine>>,
    draining: AtomicBool,
    health: HealthReporter,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState").field("ready", &self.engine.get().is_some()).finish()
    }
}

impl ServerState {
    /// A state whose health is NOT_SERVING until [`set_engine`](Self::set_engine).
    pub async fn new() -> Arc<Self> {
        let state = Arc::new_cyclic(|weak: &std::sync::Weak<Self>| Self {
            engine: OnceLock::new(),
            draining: AtomicBool::new(false),
            health: HealthReporter::new(),
            metrics: Arc::new(Metrics::new(LiveCollector::new({
                let state = weak.clone();
                move || state.upgrade().and_then(|state| state.engine())
            }))),
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

    /// The metrics, for what outlives a borrow of the state (connection tasks).
    pub(crate) fn shared_metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    pub(crate) fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }
}
