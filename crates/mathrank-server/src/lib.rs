//! The mathrank service: a transport-free [`Engine`] (validation, admission control, BM25
//! retrieval, anytime reranking under a deadline) and a thin tonic adapter with health,
//! reflection, TLS, bearer-token auth, Prometheus metrics and graceful shutdown.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mathrank_server::{Engine, Limits, ServeOptions, ServerState, serve};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let index = Arc::new(mathrank_index::AnswerIndex::open("index/default")?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let state = ServerState::new().await;
//! state.set_engine(Engine::new(index, None, Limits::default())).await;
//! serve(listener, state, ServeOptions::default(), std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod engine;
mod grpc;
mod metrics;
mod serve;

pub use engine::{
    Admission, Engine, Limits, RankedHit, RerankOutcome, RerankedCandidate, SearchOutcome, SearchParams, Timings,
};
pub use grpc::{AnswerSearchService, filters_to_proto, parse_grpc_timeout, status_of};
pub use metrics::{Metrics, serve_metrics};
pub use serve::{ServeOptions, ServerState, TlsFiles, serve};

/// Domain errors of the engine; [`status_of`] maps each to a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid {field}: {message}")]
    InvalidArgument { field: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("overloaded: {0}")]
    Overloaded(String),
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    #[error("this server runs without a reranking model (--no-rerank); set rerank=false or start it with --model")]
    NoModel,
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("the request was cancelled")]
    Cancelled,
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias of this crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Errors of starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: cannot read {path}: {source}")]
    TlsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}
