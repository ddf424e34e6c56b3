//! Running the gRPC server on a bound listener.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mathrank_proto::v1::answer_search_server::AnswerSearchServer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::ServeError;
use crate::engine::Engine;
use crate::grpc::AnswerSearchService;
use crate::metrics::Metrics;

/// PEM files of the server's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Transport settings.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Required `authorization: Bearer <token>` on AnswerSearch calls (health and reflection
    /// stay open so that load balancers and grpcurl can probe).
    pub auth_token: Option<String>,
    pub tls: Option<TlsFiles>,
    /// Largest gRPC message accepted or sent.
    pub max_message_bytes: usize,
    /// After a shutdown signal, how long in-flight calls may take to finish.
    pub grace_period: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { auth_token: None, tls: None, max_message_bytes: 16 * 1024 * 1024, grace_period: Duration::from_secs(10) }
    }
}

/// What the service shares: the engine once loaded, health and metrics.
pub struct ServerState {
    engine: OnceLock<Arc<Engine>>,
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
        let state =
            Arc::new(Self { engine: OnceLock::new(), health: HealthReporter::new(), metrics: Metrics::default() });
        // The reporter starts with "" SERVING; nothing is served before the engine is loaded.
        state.set_not_serving().await;
        state
    }

    /// Installs the loaded engine and reports SERVING.
    pub async fn set_engine(&self, engine: Engine) {
        if self.engine.set(Arc::new(engine)).is_err() {
            tracing::warn!("the engine was already set; keeping the first");
        }
        self.health.set_service_status("", ServingStatus::Serving).await;
        self.health.set_service_status(mathrank_proto::SERVICE_NAME, ServingStatus::Serving).await;
    }

    /// Reports NOT_SERVING (during shutdown).
    pub async fn set_not_serving(&self) {
        self.health.set_service_status("", ServingStatus::NotServing).await;
        self.health.set_service_status(mathrank_proto::SERVICE_NAME, ServingStatus::NotServing).await;
    }

    pub fn engine(&self) -> Option<Arc<Engine>> {
        self.engine.get().cloned()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

fn check_bearer(expected: &str, request: &Request<()>) -> Result<(), Status> {
    let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let given = header.strip_prefix("Bearer ").unwrap_or("");
    // Compare in constant time so the token cannot be guessed byte by byte from timings.
    let matches = given.len() == expected.len()
        && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if matches {
        Ok(())
    } else {
        Err(Status::unauthenticated("missing or wrong bearer token: send `authorization: Bearer <token>`"))
    }
}

/// Serves `mathrank.v1.AnswerSearch`, `grpc.health.v1.Health` and reflection (v1) on
/// `listener` until `shutdown` resolves; then stops accepting, lets in-flight calls finish for
/// up to the grace period, and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mathrank_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|err| ServeError::Io(std::io::Error::other(format!("reflection: {err}"))))?;
    let health_service = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(state.health.clone()),
    );
    let search = AnswerSearchServer::new(AnswerSearchService::new(Arc::clone(&state)))
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
    let token = options.auth_token.clone();
    let search = InterceptedService::new(search, move |request: Request<()>| match &token {
        Some(token) => check_bearer(token, &request).map(|()| request),
        None => Ok(request),
    });

    let mut builder = Server::builder();
    if let Some(tls) = &options.tls {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| ServeError::TlsFile { path: path.display().to_string(), source })
        };
        let identity = Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        builder = builder.tls_config(ServerTlsConfig::new().identity(identity))?;
    }
    let local = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let (signal_sender, mut signal) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = signal_sender.send(true);
    });
    let mut drain_signal = signal.clone();
    let draining_state = Arc::clone(&state);
    let server = builder
        .add_service(search)
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = drain_signal.wait_for(|stop| *stop).await;
            draining_state.set_not_serving().await;
            tracing::info!("shutting down: no new connections; finishing in-flight calls");
        });
    tracing::info!(addr = %local, tls = options.tls.is_some(), auth = options.auth_token.is_some(), "serving mathrank.v1.AnswerSearch");
    let grace = options.grace_period;
    tokio::select! {
        outcome = server => outcome?,
        () = async move {
            let _ = signal.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_seconds = grace.as_secs_f64(), "grace period over; closing the remaining calls");
        }
    }
    Ok(())
}
