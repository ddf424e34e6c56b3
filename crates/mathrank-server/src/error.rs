//! The server's errors, and what it tells callers refused for overload.

/// How long a caller refused for overload (or by an unavailable store) should wait before retrying: HTTP's `Retry-After`
/// and gRPC's `grpc-retry-pushback-ms` both say this.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Errors of starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: cannot read {path}")]
    TlsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}; the identity is a PEM certificate chain and its PEM private key")]
    Tls(String),
    #[error(
        "the auth token is empty or blank: every call would be accepted; use a secret, or no token to run without auth"
    )]
    EmptyToken,
    #[error(
        "the write token equals the search token: anyone who may search could write; give writes a token of their own"
    )]
    SameTokens,
    #[error("site URL {url:?}: {reason}; give the site the index came from, e.g. https://math.stackexchange.com")]
    SiteUrl { url: String, reason: &'static str },
    #[error("the gRPC reflection service")]
    Reflection(#[source] tonic_reflection::server::Error),
    #[error("listener")]
    Io(#[from] std::io::Error),
}

/// Result alias of this crate.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;
