//! mathrank's protocol adapters over the transport-free [`Engine`](mathrank_engine::Engine):
//! gRPC (`mathrank.v1.AnswerSearch`, `mathrank.v1.Posts`, health, reflection) and HTTP/JSON
//! (the rerank dialects of Cohere, TEI and Weaviate, plus `/v1/search`, `/v1/answers/{id}`,
//! `/v1/info`, the write API `/v1/posts...`, `/health`, `/metrics`) on one listener, with TLS,
//! bearer-token auth (a write scope of its own), Prometheus metrics and graceful shutdown.
//! Each protocol maps the engine's errors in one function.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mathrank_engine::{Engine, Limits};
//! use mathrank_server::{ServeOptions, ServerState, serve};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let index = Arc::new(mathrank_index::AnswerIndex::open("index/default")?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let state = ServerState::new().await;
//! state.set_engine(Engine::new(index, None, Limits::default())).await;
//! serve(listener, state, ServeOptions::default(), std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod auth;
mod grpc;
mod grpc_posts;
mod http;
mod listen;
mod metrics;
mod posts;
mod serve;
mod state;

/// How long a caller refused for overload (or by an unavailable store) should wait before retrying: HTTP's `Retry-After`
/// and gRPC's `grpc-retry-pushback-ms` both say this.
const RETRY_AFTER_SECS: u64 = 1;

pub use auth::BearerToken;
pub use grpc::{AnswerSearchService, parse_grpc_timeout, status_of};
pub use grpc_posts::PostsService;
pub use http::{PARTIAL_HEADER, TIMEOUT_HEADER, http_status_of};
pub use listen::TlsFiles;
pub use metrics::Metrics;
pub use posts::{MAX_LINE_BYTES, WRITES_OFF};
pub use serve::{ServeOptions, serve, serve_metrics};
pub use state::ServerState;

/// Errors of starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: cannot read {path}: {source}")]
    TlsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}; pass a PEM certificate chain with --tls-cert and its PEM private key with --tls-key")]
    Tls(String),
    #[error(
        "the auth token is empty or blank: every call would be accepted; set --auth-token (MATHRANK_AUTH_TOKEN) to a secret, or leave it unset to run without auth"
    )]
    EmptyToken,
    #[error(
        "the write token equals the search token: anyone who may search could write; give writes a token of their own"
    )]
    SameTokens,
    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias of this crate.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;
