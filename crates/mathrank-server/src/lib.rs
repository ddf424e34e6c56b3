//! mathrank's protocol adapters over the transport-free [`Engine`](mathrank_engine::Engine):
//! gRPC (`mathrank.v1.AnswerSearch`, `mathrank.v1.Posts`, health, reflection) and HTTP/JSON
//! (the rerank dialects of Cohere, TEI and Weaviate, plus `/v1/search`, `/v1/answers/{id}`,
//! `/v1/info`, the write API `/v1/posts...`, `/health`, `/metrics`) and the search page for
//! people (`/`) on one listener, with TLS, bearer-token auth (writes have a token of their
//! own), bounded connections (timeouts, a cap, the longest-idle connection closed to make
//! room), Prometheus metrics and graceful shutdown. Each protocol maps the engine's errors in
//! one function.
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
mod connections;
pub mod convert;
mod error;
mod grpc;
mod grpc_posts;
mod http;
mod listen;
mod metrics;
mod page;
mod serve;
mod state;

pub use auth::{BearerToken, WRITES_OFF};
pub use connections::{BodyTimeout, ConnectionLimits, default_max_connections};
pub use error::{Result, ServeError};
pub use grpc::{AnswerSearchService, parse_grpc_timeout, status_of};
pub use grpc_posts::PostsService;
pub use http::posts::MAX_LINE_BYTES;
pub use http::{PARTIAL_HEADER, TIMEOUT_HEADER, http_status_of};
pub use listen::TlsFiles;
pub use metrics::{CloseReason, Metrics};
pub use page::{CONTENT_SECURITY_POLICY, DEFAULT_SITE_URL, site_url};
pub use serve::{ServeOptions, serve, serve_metrics};
pub use state::ServerState;
