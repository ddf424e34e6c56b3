//! Every connection is accepted, served and closed here, so that none can be held forever and
//! idle sockets cannot lock other clients out:
//!
//! - a connection with no call in flight (one that never sent a byte included) is closed after
//!   the idle timeout;
//! - a request's headers, and then its body, must arrive within the request timeout;
//! - HTTP/2 connections are pinged, and closed when a ping goes unanswered;
//! - at most `max_connections` are open: when a new one would pass the cap, the connection idle
//!   the longest is closed to make room (HTTP/2 with GOAWAY, which gRPC clients answer by
//!   reconnecting). A connection with calls in flight is never cut; when every connection is
//!   busy, the new one is refused.
//!
//! tonic's own server has no idle timeout, no cap and no way to pick which connection to close,
//! which is why this module drives hyper itself; the routes are the same axum router.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::metrics::{CloseReason, Metrics};

/// TLS handshakes in progress at once; the other new connections wait (idle, so evictable).
const MAX_HANDSHAKES: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long an idle connection asked to close may take to do so (an HTTP/2 peer gets this
/// long to read its GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What bounds connections; see the module's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// A connection with no call in flight for this long is closed.
    pub idle_timeout: Duration,
    /// A request's headers must arrive within this, and then its body within this.
    pub request_timeout: Duration,
    /// How often an HTTP/2 connection is pinged (`None`: never).
    pub http2_keepalive_interval: Option<Duration>,
    /// How long a ping may go unanswered before the connection is closed.
    pub http2_keepalive_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// nginx's defaults: 75 s for an idle keep-alive connection, 60 s for a request's headers and
    /// body; a cap derived from the file-descriptor limit.
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            idle_timeout: Duration::from_secs(75),
            request_timeout: Duration::from_secs(60),
            http2_keepalive_interval: Some(Duration::from_secs(30)),
            http2_keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// The connection cap that the file-descriptor limit allows: the soft limit less a reserve for
/// the index's files, the model and the listeners (a tenth, at least 64), capped at 100,000
/// (each idle connection costs some kernel and server memory).
pub fn default_max_connections() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    max_connections_for(soft)
}

fn max_connections_for(fd_limit: u64) -> usize {
    let reserve = (fd_limit / 10).max(64);
    fd_limit.saturating_sub(reserve).clamp(16, 100_000) as usize
}

/// One open connection, as the registry and its serving task share it.
#[derive(Debug)]
struct Conn {
    id: u64,
    /// Calls whose response has not been sent in full yet.
    in_flight: AtomicUsize,
    /// Milliseconds since the registry's epoch when the last call ended (or it was accepted).
    idle_since: AtomicU64,
    /// Set once it has been asked to close (eviction): its task then closes it.
    closing: AtomicBool,
    close: Notify,
    /// A request body ran out of time on it.
    timed_out: AtomicBool,
}

/// The open connections, for the cap and for eviction.
#[derive(Debug)]
struct Registry {
    epoch: Instant,
    limits: ConnectionLimits,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Of those open, how many were asked to close (kept here: counting them would cost a
    /// scan of every connection at each accept).
    closing: AtomicUsize,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Registry {
    fn millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Registers a new connection, first closing the one idle the longest when the cap is
    /// reached; `None` when every open connection is busy.
    fn admit(&self) -> Option<Arc<Conn>> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let closing = self.closing.load(Ordering::SeqCst);
        // Connections asked to close still hold their sockets for up to CLOSE_GRACE: the
        // ceiling keeps the file descriptors bounded while they go.
        let ceiling = self.limits.max_connections + self.limits.max_connections / 8 + 16;
        if open.len() - closing >= self.limits.max_connections || open.len() >= ceiling {
            let victim = open
                .values()
                .filter(|c| !c.closing.load(Ordering::Relaxed) && c.in_flight.load(Ordering::SeqCst) == 0)
                .min_by_key(|c| (c.idle_since.load(Ordering::Relaxed), c.id))
                .cloned();
            match victim {
                Some(victim) if open.len() < ceiling => {
                    victim.closing.store(true, Ordering::SeqCst);
                    self.closing.fetch_add(1, Ordering::SeqCst);
                    victim.close.notify_one();
                }
                _ => return None,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.millis()),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            timed_out: AtomicBool::new(false),
        });
        open.insert(id, Arc::clone(&conn));
        self.metrics.connection_opened();
        Some(conn)
    }

    fn remove(&self, conn: &Conn, reason: CloseReason) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.remove(&conn.id).is_some() && conn.closing.load(Ordering::SeqCst) {
            self.closing.fetch_sub(1, Ordering::SeqCst);
        }
        drop(open);
        self.metrics.connection_closed(reason);
    }
}

/// What a connection's task needs besides its socket.
#[derive(Clone)]
pub(crate) struct Server {
    registry: Arc<Registry>,
    router: axum::Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
    handshakes: Arc<Semaphore>,
}

impl Server {
    pub(crate) fn new(
        router: axum::Router,
        limits: ConnectionLimits,
        tls: Option<TlsAcceptor>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.request_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.http2_keepalive_interval)
            .keep_alive_timeout(limits.http2_keepalive_timeout);
        let registry = Arc::new(Registry {
            epoch: Instant::now(),
            limits,
            open: Mutex::new(HashMap::new()),
            closing: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            metrics,
        });
        Self { registry, router, builder: Arc::new(builder), tls, handshakes: Arc::new(Semaphore::new(MAX_HANDSHAKES)) }
    }

    /// Accepts and serves connections until `stop` turns true; then stops accepting (the port
    /// closes), asks every connection to close once its calls are done, and waits for them.
    pub(crate) async fn run(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let accepted = tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // EMFILE and the like: back off instead of spinning or stopping.
                    tracing::warn!(error = %err, "accept failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Some(conn) = self.registry.admit() else {
                self.registry.metrics.connection_refused();
                tracing::debug!("connection refused: the cap is reached and every connection is busy");
                continue;
            };
            let _ = stream.set_nodelay(true);
            tasks.spawn(self.clone().connection(stream, conn, stop.clone()));
        }
        drop(listener);
        while tasks.join_next().await.is_some() {}
    }

    /// Serves one connection (after its TLS handshake) until it closes, and records why.
    async fn connection(self, stream: TcpStream, conn: Arc<Conn>, stop: watch::Receiver<bool>) {
        let reason = match &self.tls {
            None => self.serve(stream, &conn, stop).await,
            Some(acceptor) => {
                let handshake = async {
                    let _permit = self.handshakes.acquire().await;
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                };
                let handshake = tokio::select! {
                    handshake = handshake => handshake,
                    () = conn.close.notified() => {
                        self.registry.remove(&conn, CloseReason::Evicted);
                        return;
                    }
                };
                match handshake {
                    Ok(Ok(tls)) => self.serve(tls, &conn, stop).await,
                    Ok(Err(err)) => {
                        tracing::debug!(error = %err, "TLS handshake failed");
                        CloseReason::Error
                    }
                    Err(_) => CloseReason::Timeout,
                }
            }
        };
        self.registry.remove(&conn, reason);
    }

    async fn serve<IO>(&self, io: IO, conn: &Arc<Conn>, mut stop: watch::Receiver<bool>) -> CloseReason
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = self.registry.limits;
        let service = ConnService {
            router: self.router.clone(),
            conn: Arc::clone(conn),
            registry: Arc::clone(&self.registry),
            body_timeout: limits.request_timeout,
        };
        let mut connection = pin!(self.builder.serve_connection(TokioIo::new(io), service));
        // Why it is closing, once it was asked to; then when to drop it if still idle.
        let mut closing: Option<(CloseReason, tokio::time::Instant)> = None;
        let mut check_idle = tokio::time::Instant::now() + limits.idle_timeout;
        loop {
            let drop_at = closing.map_or(check_idle, |(_, at)| at);
            tokio::select! {
                served = connection.as_mut() => {
                    return match (closing, served) {
                        (Some((reason, _)), _) => reason,
                        (None, Ok(())) if conn.timed_out.load(Ordering::Relaxed) => CloseReason::Timeout,
                        (None, Ok(())) => CloseReason::Client,
                        (None, Err(err)) => classify(&*err, conn),
                    };
                }
                () = conn.close.notified(), if closing.is_none() => {
                    connection.as_mut().graceful_shutdown();
                    closing = Some((CloseReason::Evicted, tokio::time::Instant::now() + CLOSE_GRACE));
                }
                _ = stop.wait_for(|stop| *stop), if closing.is_none() => {
                    connection.as_mut().graceful_shutdown();
                    // At shutdown, calls in flight finish within the server's grace period.
                    closing = Some((CloseReason::Shutdown, far_future()));
                }
                () = tokio::time::sleep_until(drop_at) => match closing {
                    None => match self.idle_for(conn) {
                        Some(idle) if idle >= limits.idle_timeout => {
                            connection.as_mut().graceful_shutdown();
                            closing = Some((CloseReason::Idle, tokio::time::Instant::now() + CLOSE_GRACE));
                        }
                        Some(idle) => check_idle = tokio::time::Instant::now() + (limits.idle_timeout - idle),
                        None => check_idle = tokio::time::Instant::now() + limits.idle_timeout,
                    },
                    // Still open after its grace: drop it if nothing is in flight, or look again.
                    Some((reason, _)) if conn.in_flight.load(Ordering::SeqCst) == 0 => return reason,
                    Some((reason, _)) => closing = Some((reason, tokio::time::Instant::now() + CLOSE_GRACE)),
                },
            }
        }
    }

    /// How long `conn` has had no call in flight (`None` while it has one).
    fn idle_for(&self, conn: &Conn) -> Option<Duration> {
        if conn.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = conn.idle_since.load(Ordering::Relaxed);
        Some(Duration::from_millis(self.registry.millis().saturating_sub(since)))
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Why a connection that ended with an error closed.
fn classify(err: &(dyn std::error::Error + 'static), conn: &Conn) -> CloseReason {
    if conn.timed_out.load(Ordering::Relaxed) {
        return CloseReason::Timeout;
    }
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(hyper) = err.downcast_ref::<hyper::Error>() {
            if hyper.is_timeout() || hyper.to_string().contains("timed out") {
                return CloseReason::Timeout;
            }
            if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
                return CloseReason::Client;
            }
        }
        if err.to_string().contains("timed out") {
            return CloseReason::Timeout;
        }
        source = err.source();
    }
    CloseReason::Error
}

/// The router, seen from one connection: counts its calls in flight, and bounds how long a
/// request body may take to arrive.
#[derive(Clone)]
struct ConnService {
    router: axum::Router,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.conn.in_flight.fetch_add(1, Ordering::SeqCst);
        self.registry.metrics.call_started();
        let guard = InFlight { conn: Arc::clone(&self.conn), registry: Arc::clone(&self.registry) };
        let conn = Arc::clone(&self.conn);
        let deadline = tokio::time::Instant::now() + self.body_timeout;
        let request = request.map(|body| {
            Body::new(DeadlineBody { inner: body, deadline: Box::pin(tokio::time::sleep_until(deadline)), conn })
        });
        let router = self.router.clone();
        Box::pin(async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(response.map(|body| TrackedBody { inner: body, _guard: guard }))
        })
    }
}

/// One call in flight on a connection, until its response has been sent (or dropped).
struct InFlight {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.idle_since.store(self.registry.millis(), Ordering::Relaxed);
        self.conn.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.registry.metrics.call_ended();
    }
}

/// A response body that holds its call's [`InFlight`] until it is sent.
struct TrackedBody {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body ran out of time: `request_timeout` passed before it all arrived.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the request timeout")]
pub struct BodyTimeout;

/// A request body that fails with [`BodyTimeout`] when it has not all arrived by its deadline.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    conn: Arc<Conn>,
}

impl http_body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.conn.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyTimeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_the_servers_own_files() {
        assert_eq!(max_connections_for(1024), 1024 - 102);
        assert_eq!(max_connections_for(20_000), 18_000);
        assert_eq!(max_connections_for(256), 256 - 64);
        assert_eq!(max_connections_for(10), 16);
        assert_eq!(max_connections_for(1 << 20), 100_000);
    }

    fn registry(max_connections: usize) -> Registry {
        Registry {
            epoch: Instant::now(),
            limits: ConnectionLimits { max_connections, ..ConnectionLimits::default() },
            open: Mutex::new(HashMap::new()),
            closing: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            metrics: Arc::new(Metrics::new(crate::metrics::LiveCollector::new(|| None))),
        }
    }

    #[test]
    fn a_full_registry_evicts_the_connection_idle_the_longest_and_never_a_busy_one() {
        let registry = registry(3);
        let conns: Vec<Arc<Conn>> = (0..3).map(|_| registry.admit().unwrap()).collect();
        conns[0].in_flight.store(1, Ordering::SeqCst);
        conns[0].idle_since.store(0, Ordering::Relaxed);
        conns[1].idle_since.store(5, Ordering::Relaxed);
        conns[2].idle_since.store(9, Ordering::Relaxed);
        let fourth = registry.admit().expect("room made");
        assert!(!conns[0].closing.load(Ordering::SeqCst), "busy: never evicted");
        assert!(conns[1].closing.load(Ordering::SeqCst), "idle the longest");
        assert!(!conns[2].closing.load(Ordering::SeqCst));
        // Everything left open is busy: the next one is refused.
        conns[2].in_flight.store(1, Ordering::SeqCst);
        fourth.in_flight.store(1, Ordering::SeqCst);
        assert!(registry.admit().is_none());
        assert_eq!(registry.closing.load(Ordering::SeqCst), 1);
        registry.remove(&conns[1], CloseReason::Evicted);
        assert_eq!(registry.open.lock().unwrap().len(), 3);
        assert_eq!(registry.closing.load(Ordering::SeqCst), 0);
    }
}
