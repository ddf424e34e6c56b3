//! Running both protocols on one bound listener.

use std::sync::Arc;
use std::time::Duration;

use mathrank_proto::v1::answer_search_server::AnswerSearchServer;
use mathrank_proto::v1::posts_server::PostsServer;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Status};

use crate::auth::{BearerToken, UNAUTHENTICATED};
use crate::connections::{ConnectionLimits, Server};
use crate::error::ServeError;
use crate::grpc::AnswerSearchService;
use crate::grpc_posts::PostsService;
use crate::listen::{self, TlsFiles};
use crate::state::ServerState;

/// Transport settings, the same for gRPC and HTTP.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Required `authorization: Bearer <token>` on the API (gRPC AnswerSearch and the HTTP
    /// API routes). Health, readiness, reflection and metrics stay open so that load
    /// balancers, probes and grpcurl can reach them.
    pub auth_token: Option<BearerToken>,
    /// Turns the write API on (gRPC `mathrank.v1.Posts`, HTTP `/v1/posts...`): its calls need
    /// `authorization: Bearer <write token>`; the search token is refused there.
    pub write_token: Option<BearerToken>,
    pub tls: Option<TlsFiles>,
    /// Largest gRPC message or HTTP request body accepted (and gRPC message sent).
    pub max_message_bytes: usize,
    /// After a shutdown signal, how long in-flight calls may take to finish.
    pub grace_period: Duration,
    /// Timeouts and the cap on open connections.
    pub connections: ConnectionLimits,
    /// Where the search page links each answer (`{site_url}/a/{answer_id}`).
    pub site_url: String,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            auth_token: None,
            write_token: None,
            tls: None,
            max_message_bytes: 16 * 1024 * 1024,
            grace_period: Duration::from_secs(10),
            connections: ConnectionLimits::default(),
            site_url: crate::page::DEFAULT_SITE_URL.to_owned(),
        }
    }
}

/// gRPC (`mathrank.v1.AnswerSearch`, `mathrank.v1.Posts`, health, reflection) and the HTTP/JSON
/// API as one router.
fn routes(state: &Arc<ServerState>, options: &ServeOptions) -> Result<axum::Router, ServeError> {
    if let (Some(write), Some(search)) = (&options.write_token, &options.auth_token)
        && write.same_secret(search)
    {
        return Err(ServeError::SameTokens);
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mathrank_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(ServeError::Reflection)?;
    let health_service = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(state.health_reporter()),
    );
    let search = AnswerSearchServer::new(AnswerSearchService::new(Arc::clone(state)))
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
    let token = options.auth_token.clone();
    let search = InterceptedService::new(search, move |request: Request<()>| match &token {
        Some(token) => {
            let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
            if token.accepts(header) { Ok(request) } else { Err(Status::unauthenticated(UNAUTHENTICATED)) }
        }
        None => Ok(request),
    });
    let posts = PostsServer::new(PostsService::new(Arc::clone(state)))
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
    let (write_token, search_token) = (options.write_token.clone(), options.auth_token.clone());
    let posts = InterceptedService::new(posts, move |request: Request<()>| {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        crate::grpc_posts::check_write_token(write_token.as_ref(), search_token.as_ref(), header).map(|()| request)
    });
    let http = crate::http::router(
        Arc::clone(state),
        options.auth_token.clone(),
        options.write_token.clone(),
        options.max_message_bytes,
    );
    let page = crate::page::router(&crate::page::site_url(&options.site_url)?, options.auth_token.is_some());
    tracing::debug!(
        services = ?[AnswerSearchServer::<AnswerSearchService>::NAME, PostsServer::<PostsService>::NAME],
        "gRPC services registered"
    );
    Ok(Routes::new(search)
        .add_service(posts)
        .add_service(health_service)
        .add_service(reflection)
        .into_axum_router()
        .merge(http)
        .merge(page)
        .fallback(crate::http::fallback))
}

/// Serves gRPC (`mathrank.v1.AnswerSearch`, `grpc.health.v1.Health`, reflection v1) and the
/// HTTP/JSON API on `listener`, HTTP/1.1 and HTTP/2 (h2c or TLS with ALPN), until `shutdown`
/// resolves; then reports NOT_SERVING, stops accepting, lets in-flight calls finish for up to
/// the grace period, and returns. Connections are bounded as `options.connections` says.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let router = routes(&state, &options)?;
    let tls = options.tls.as_ref().map(listen::tls_acceptor).transpose()?;
    let local = listener.local_addr()?;
    let (signal_sender, mut signal) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = signal_sender.send(true);
    });
    // Health says NOT_SERVING before the connections are asked to close.
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let mut drain_signal = signal.clone();
    let draining_state = Arc::clone(&state);
    tokio::spawn(async move {
        let _ = drain_signal.wait_for(|stop| *stop).await;
        draining_state.set_not_serving().await;
        tracing::info!("shutting down: no new connections; finishing in-flight calls");
        let _ = stop_sender.send(true);
    });
    tracing::info!(
        addr = %local,
        tls = options.tls.is_some(),
        auth = options.auth_token.is_some(),
        writes = options.write_token.is_some(),
        max_connections = options.connections.max_connections,
        "serving mathrank.v1.AnswerSearch (gRPC) and the HTTP/JSON API on one port"
    );
    let served = Server::new(router, options.connections, tls, state.shared_metrics()).run(listener, stop);
    let grace = options.grace_period;
    tokio::select! {
        () = served => {}
        () = async move {
            let _ = signal.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_seconds = grace.as_secs_f64(), "grace period over; closing the remaining calls");
        }
    }
    Ok(())
}

/// Serves `GET /metrics` (and nothing else) on `listener` until `shutdown` resolves: the
/// optional separate listener of `--metrics-addr`. axum's accept loop survives accept errors
/// (EMFILE under a connection flood) by backing off instead of stopping.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = axum::Router::new().route("/metrics", axum::routing::get(crate::http::metrics_text)).with_state(state);
    let listener = BoundedListener { inner: listener, permits: Arc::new(tokio::sync::Semaphore::new(64)) };
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

/// At most as many open connections as it has permits: the next accept waits for one to
/// close. axum's own loop retries accept errors.
struct BoundedListener {
    inner: tokio::net::TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
}

/// A connection that gives its permit back when it closes.
struct BoundedStream {
    stream: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = loop {
            // The semaphore is never closed; should it be, keep accepting unbounded.
            if let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await {
                break permit;
            }
        };
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (BoundedStream { stream, _permit: permit }, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl tokio::io::AsyncRead for BoundedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for BoundedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
