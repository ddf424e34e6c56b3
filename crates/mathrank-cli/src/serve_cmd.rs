//! `mathrank serve`: gRPC and HTTP/JSON on one port. Its configuration comes in layers, each
//! overriding the one below: the embedded defaults (`serve-defaults.toml`), a `--config` TOML
//! file, `MATHRANK_*` environment variables, flags. The layers are merged as TOML tables and
//! read once into [`ServeConfig`], so that no field is merged by hand.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use mathrank_engine::{Engine, Limits, LongAnswers};
use mathrank_index::{AnswerIndex, Indexer, IndexerOptions};
use mathrank_server::{BearerToken, ConnectionLimits, ServeOptions, ServerState, TlsFiles};
use serde::{Deserialize, Serialize};

use crate::model_args::ModelArgs;

/// The bottom layer: every default of `mathrank serve` that is not computed at start.
pub const DEFAULTS: &str = include_str!("serve-defaults.toml");

/// Flags (and their environment variables), the top layers. Each one left unset leaves the
/// layers below it in force; the defaults in brackets are those of `serve-defaults.toml`.
#[derive(Args, Debug, Serialize)]
pub struct ServeArgs {
    /// TOML file with any of the keys of `--print-config` (addr, index, model, max_queued,
    /// idle_timeout, ...): it overrides the defaults; environment variables and flags override it.
    #[arg(long, env = "MATHRANK_CONFIG", help_heading = "Configuration")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the configuration that all the layers make, as TOML, and exit (the auth token is
    /// not shown).
    #[arg(long, help_heading = "Configuration")]
    #[serde(skip)]
    pub print_config: bool,
    /// Address to listen on, for gRPC and HTTP/JSON alike [default: 127.0.0.1:50051].
    #[arg(long, env = "MATHRANK_ADDR", help_heading = "Listening")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// Also serve Prometheus metrics on a separate listener, http://ADDR/metrics (they are
    /// always on the main port's /metrics) [default: off].
    #[arg(long, env = "MATHRANK_METRICS_ADDR", help_heading = "Listening")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<SocketAddr>,
    /// Index directory; built from the embedded sample when it does not exist [default: index/default].
    #[arg(long, env = "MATHRANK_INDEX", help_heading = "Index")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<PathBuf>,
    /// BM25 only: do not load a model.
    #[arg(long, env = "MATHRANK_NO_RERANK", conflicts_with = "model", help_heading = "Model and inference")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_rerank: bool,
    /// Require `authorization: Bearer TOKEN` on the API, gRPC and HTTP (health, readiness,
    /// reflection and metrics stay open); an empty token is refused [default: no auth].
    #[arg(long, env = "MATHRANK_AUTH_TOKEN", hide_env_values = true, help_heading = "Security")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// Turn the write API on (gRPC mathrank.v1.Posts; HTTP POST /v1/posts:bulk, PUT and
    /// DELETE /v1/posts/ID, POST /v1/index:rebuild): its calls need `authorization: Bearer
    /// TOKEN`, and the search token cannot write [default: writes off].
    #[arg(long, env = "MATHRANK_WRITE_TOKEN", hide_env_values = true, help_heading = "Security")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_token: Option<String>,
    /// The post store the live index follows and writes go to: a SQLite file, or a
    /// PostgreSQL database shared by replicas (`postgres://USER:PASSWORD@HOST:PORT/DB`), each
    /// keeping its own index of it; a missing --index is then built from the store
    /// [default: INDEX/posts.sqlite, which `mathrank index` writes]. Whenever there is a store,
    /// the server indexes its changes (those of `mathrank index --update` and of other
    /// replicas too), with or without --write-token, and /health is 503 until the index has
    /// caught up with it.
    #[arg(long, env = "MATHRANK_STORE", help_heading = "Index")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// TLS certificate chain (PEM); with --tls-key, serves TLS [default: plaintext].
    #[arg(long, env = "MATHRANK_TLS_CERT", requires = "tls_key", help_heading = "Security")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "MATHRANK_TLS_KEY", requires = "tls_cert", help_heading = "Security")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Retrievals (with their HTML conversion and tokenizing) run at once; reranking waits
    /// for the inference queue, not for these [default: 2 x cores, at least 4].
    #[arg(long, env = "MATHRANK_MAX_CONCURRENT", help_heading = "Admission and deadlines")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// Calls waiting for a retrieval slot; beyond them RESOURCE_EXHAUSTED (HTTP 429) [default: 64].
    #[arg(long, env = "MATHRANK_MAX_QUEUED", help_heading = "Admission and deadlines")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<u32>,
    /// The deadline of a call that sets none (no gRPC deadline, no X-Timeout-Ms): `10s`,
    /// `500ms`, `2m` [default: 10s].
    #[arg(long, env = "MATHRANK_DEFAULT_TIMEOUT", help_heading = "Admission and deadlines")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_timeout: Option<Millis>,
    /// No call holds inference longer than this, whatever deadline it asks for [default: 60s].
    #[arg(long, env = "MATHRANK_MAX_TIMEOUT", help_heading = "Admission and deadlines")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_timeout: Option<Millis>,
    /// How answers longer than the model's 512 tokens are scored when a call does not say:
    /// `truncate` (as the model's authors) or `max_window` (the best of overlapping windows)
    /// [default: truncate].
    #[arg(long, env = "MATHRANK_LONG_ANSWERS", help_heading = "Reranking")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_answers: Option<LongAnswers>,
    /// With max_window: windows per answer at most, the truncated pair included [default: 4].
    #[arg(long, env = "MATHRANK_MAX_WINDOWS_PER_ANSWER", help_heading = "Reranking")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_windows_per_answer: Option<u32>,
    /// With max_window: pairs one call sends to the model at most; extra windows go to the
    /// best-ranked candidates first [default: 256].
    #[arg(long, env = "MATHRANK_MAX_WINDOWS_PER_CALL", help_heading = "Reranking")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_windows_per_call: Option<u32>,
    /// Memory of the score cache in MiB (about 9,400 pairs per MiB); 0 turns it off [default: 64].
    #[arg(long, env = "MATHRANK_SCORE_CACHE_MB", help_heading = "Reranking")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_cache_mb: Option<u64>,
    /// Largest gRPC message or HTTP request body in bytes [default: 16777216].
    #[arg(long, env = "MATHRANK_MAX_MESSAGE_BYTES", help_heading = "Admission and deadlines")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<u32>,
    /// Seconds in-flight calls may take to finish after SIGINT/SIGTERM [default: 10].
    #[arg(long, env = "MATHRANK_GRACE_SECONDS", help_heading = "Admission and deadlines")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
    /// The site the index came from: the search page at / links each answer to
    /// SITE_URL/a/ANSWER_ID [default: https://math.stackexchange.com].
    #[arg(long, env = "MATHRANK_SITE_URL", help_heading = "Listening")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_url: Option<String>,
    /// Open client connections at most. When a new one would pass it, the connection idle the
    /// longest is closed (HTTP/2 with GOAWAY); one with calls in flight never is. The soft
    /// file-descriptor limit is raised to the hard one at start [default: that limit less a
    /// tenth (at least 64) for the server's own files, at most 100000].
    #[arg(long, env = "MATHRANK_MAX_CONNECTIONS", help_heading = "Connections")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// A connection with no call in flight for this long is closed; one that never sends a byte
    /// counts as idle [default: 75s].
    #[arg(long, env = "MATHRANK_IDLE_TIMEOUT", help_heading = "Connections")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Millis>,
    /// A request's headers must arrive within this, and then its body within this; a stalled
    /// body gets 408 (HTTP) and the connection closes [default: 60s].
    #[arg(long, env = "MATHRANK_REQUEST_TIMEOUT", help_heading = "Connections")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Millis>,
    /// How often an HTTP/2 connection is pinged [default: 30s].
    #[arg(long, env = "MATHRANK_HTTP2_KEEPALIVE_INTERVAL", help_heading = "Connections")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_keepalive_interval: Option<Millis>,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed [default: 20s].
    #[arg(long, env = "MATHRANK_HTTP2_KEEPALIVE_TIMEOUT", help_heading = "Connections")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_keepalive_timeout: Option<Millis>,
    #[command(flatten)]
    #[serde(skip)]
    pub model: ModelArgs,
}

/// The configuration all the layers make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<SocketAddr>,
    pub index: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    pub no_rerank: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    pub max_queued: u32,
    pub default_timeout: Millis,
    pub max_timeout: Millis,
    pub max_message_bytes: u32,
    pub grace_seconds: u64,
    pub long_answers: LongAnswers,
    pub max_windows_per_answer: u32,
    pub max_windows_per_call: u32,
    pub score_cache_mb: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    pub request_timeout: Millis,
    pub idle_timeout: Millis,
    pub http2_keepalive_interval: Millis,
    pub http2_keepalive_timeout: Millis,
    pub site_url: String,
}

/// A duration in milliseconds, written `250ms`, `10s`, `2m` or bare seconds, in flags and TOML
/// alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub u64);

impl Millis {
    pub fn duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl std::str::FromStr for Millis {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_duration_ms(text).map(Millis)
    }
}

impl Serialize for Millis {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = match self.0 {
            ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
            ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
            ms => format!("{ms}ms"),
        };
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Each table's keys override `base`'s (tables merge key by key).
fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => merge(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl ServeConfig {
    /// The layers merged: the embedded defaults, then `file` (TOML text), then `args`.
    pub fn layered(file: Option<&str>, args: &ServeArgs) -> anyhow::Result<Self> {
        let mut table: toml::Table = toml::from_str(DEFAULTS).context("the embedded defaults")?;
        if let Some(text) = file {
            merge(&mut table, toml::from_str(text)?);
        }
        let mut flags = toml::Table::try_from(args).context("the flags")?;
        if let Some(model) = &args.model.model {
            flags.insert("model".into(), toml::Value::try_from(model)?);
        }
        merge(&mut table, flags);
        Ok(toml::Value::Table(table).try_into()?)
    }

    /// The layers that `args` names: its `--config` file (if any) under the flags.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                Some(std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?)
            }
            None => None,
        };
        let config = Self::layered(file.as_deref(), args).with_context(|| match &args.config {
            Some(path) => format!("configuration (defaults, {}, environment, flags)", path.display()),
            None => "configuration (defaults, environment, flags)".into(),
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.default_timeout.0 <= self.max_timeout.0,
            "--default-timeout ({} ms) must not exceed --max-timeout ({} ms)",
            self.default_timeout.0,
            self.max_timeout.0
        );
        anyhow::ensure!(self.max_windows_per_answer >= 1, "--max-windows-per-answer must be at least 1");
        anyhow::ensure!(self.max_connections != Some(0), "--max-connections must be at least 1");
        anyhow::ensure!(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "TLS needs both tls_cert and tls_key (--tls-cert and --tls-key)"
        );
        Ok(())
    }

    pub fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            max_concurrent: self.max_concurrent.unwrap_or(defaults.max_concurrent),
            max_queued: self.max_queued,
            max_message_bytes: self.max_message_bytes,
            default_timeout_ms: self.default_timeout.0,
            max_timeout_ms: self.max_timeout.0,
            long_answers: self.long_answers,
            max_windows_per_answer: self.max_windows_per_answer,
            max_windows_per_call: self.max_windows_per_call,
            score_cache_mb: self.score_cache_mb,
            ..defaults
        }
    }

    pub fn connections(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections.unwrap_or_else(mathrank_server::default_max_connections),
            idle_timeout: self.idle_timeout.duration(),
            request_timeout: self.request_timeout.duration(),
            http2_keepalive_interval: Some(self.http2_keepalive_interval.duration()),
            http2_keepalive_timeout: self.http2_keepalive_timeout.duration(),
        }
    }

    pub fn options(&self) -> anyhow::Result<ServeOptions> {
        Ok(ServeOptions {
            auth_token: self.auth_token.clone().map(BearerToken::new).transpose()?,
            write_token: self.write_token.clone().map(BearerToken::new).transpose()?,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
                _ => None,
            },
            max_message_bytes: self.max_message_bytes as usize,
            grace_period: Duration::from_secs(self.grace_seconds),
            site_url: mathrank_server::site_url(&self.site_url)?,
            connections: self.connections(),
        })
    }

    /// As `--print-config` shows it: computed defaults filled in, the token hidden.
    fn printable(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        shown.max_concurrent = Some(self.limits().max_concurrent);
        shown.max_connections = Some(self.connections().max_connections);
        if shown.auth_token.is_some() {
            shown.auth_token = Some("(set)".into());
        }
        if shown.write_token.is_some() {
            shown.write_token = Some("(set)".into());
        }
        Ok(toml::to_string(&shown)?)
    }
}

/// A duration for the timeout flags, in milliseconds: `250ms`, `10s`, `2m`, or bare seconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (text, 1000.0)
    };
    let value: f64 =
        number.trim().parse().map_err(|_| format!("{text:?} is not a duration such as 250ms, 10s or 2m"))?;
    let ms = value * unit_ms;
    if !(1.0..=86_400_000.0).contains(&ms) {
        return Err(format!("{text:?} must be between 1ms and 24 hours"));
    }
    Ok(ms.round() as u64)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    raise_fd_limit();
    let config = ServeConfig::load(&args)?;
    if args.print_config {
        print!("{}", config.printable()?);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(config, args.model))
}

/// Raises the soft file-descriptor limit to the hard one, so that the connection cap derived
/// from it is as high as the system allows.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "file-descriptor limit"),
        Err(err) => tracing::warn!(error = %err, "could not raise the file-descriptor limit"),
    }
}

async fn serve(config: ServeConfig, mut model: ModelArgs) -> anyhow::Result<()> {
    model.model = config.model.clone();
    let options = config.options()?;
    let addr = config.addr;
    // The search page's address, as a browser on this machine reaches it.
    let page = {
        let scheme = if options.tls.is_some() { "https" } else { "http" };
        let host = if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr };
        format!("{scheme}://{host}/")
    };
    if options.auth_token.is_some() && options.tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            addr = %addr,
            "auth is on without TLS on a non-loopback address: the bearer token crosses the network in clear text; add --tls-cert and --tls-key"
        );
    }
    // Fail before binding when no model can be found, with the message that says what to do.
    let model_dir = if config.no_rerank { None } else { Some(model.resolve_model_dir()?) };

    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let state = ServerState::new().await;
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_sender.send(true);
    });
    if let Some(metrics_addr) = config.metrics_addr {
        serve_metrics(metrics_addr, Arc::clone(&state), stop.clone()).await?;
    }
    let server = tokio::spawn(mathrank_server::serve(listener, Arc::clone(&state), options, wait_stop(stop.clone())));

    // Load while the listener already answers health checks with NOT_SERVING.
    let (index_dir, limits) = (config.index.clone(), config.limits());
    let live = LiveOptions { store: config.store.clone(), writes: config.write_token.is_some() };
    let loaded = tokio::task::spawn_blocking(move || load_engine(&index_dir, &live, model_dir, &model, limits)).await?;
    match loaded {
        Ok(engine) => state.set_engine(engine).await,
        Err(err) => {
            server.abort();
            return Err(err);
        }
    }
    tracing::info!(addr = %addr, "ready: health is SERVING; the search page is at {page}");
    server.await??;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_stop(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// `--metrics-addr`: Prometheus metrics on a listener of their own.
async fn serve_metrics(
    addr: SocketAddr,
    state: Arc<ServerState>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding metrics {addr}"))?;
    tracing::info!(addr = %addr, "Prometheus metrics at /metrics");
    tokio::spawn(async move {
        if let Err(err) = mathrank_server::serve_metrics(listener, state, wait_stop(stop)).await {
            tracing::error!(error = %err, "metrics endpoint failed");
        }
    });
    Ok(())
}

/// What makes the index live: a post store, and writes taken into it.
struct LiveOptions {
    /// `--store` (a file or a PostgreSQL URL); `None` is the default place next to the index.
    store: Option<String>,
    /// `--write-token` is set.
    writes: bool,
}

/// The index (built from the embedded sample when there is none) and the model. With a post
/// store the index is live: this process indexes the store's changes (or follows the process
/// that does).
fn load_engine(
    index_dir: &Path,
    live: &LiveOptions,
    model_dir: Option<PathBuf>,
    model: &ModelArgs,
    limits: Limits,
) -> anyhow::Result<Engine> {
    if let Some(location) = live.store.as_deref().filter(|location| mathrank_store::is_postgres_url(location)) {
        return replica_engine(index_dir, location, reranker_of(model_dir, model)?, limits, live.writes);
    }
    let custom_store = live.store.is_some();
    let store_path = crate::index_cmd::store_path(index_dir, live.store.as_deref().map(Path::new));
    if !index_dir.join("meta.json").is_file() && !index_dir.exists() && !custom_store {
        tracing::info!(index = %index_dir.display(), "no index there: building one from the embedded sample");
        crate::index_cmd::build_sample(index_dir)?;
    }
    let reranker = reranker_of(model_dir, model)?;
    if !store_path.is_file() && !custom_store {
        anyhow::ensure!(
            !live.writes,
            "--write-token needs a post store, and {} has none (built with --no-store or by an older mathrank): rebuild it with `mathrank index --dump FILE --index {}`",
            index_dir.display(),
            index_dir.display()
        );
        let index = AnswerIndex::open(index_dir)?;
        tracing::info!(index = %index_dir.display(), answers = index.num_answers(), "index loaded (no post store: read-only)");
        return Ok(Engine::new(Arc::new(index), reranker, limits));
    }
    let store: Arc<dyn mathrank_store::PostStore> = Arc::new(
        mathrank_store::SqliteStore::open(&store_path)
            .with_context(|| format!("opening the post store {}", store_path.display()))?,
    );
    let (index, indexer) = Indexer::start(index_dir, Arc::clone(&store), IndexerOptions::default())
        .with_context(|| format!("opening the live index {}", index_dir.display()))?;
    tracing::info!(
        index = %index_dir.display(),
        store = %store_path.display(),
        answers = index.current().num_answers(),
        searchable_seq = index.searchable_seq(),
        role = indexer.status().role,
        writes = live.writes,
        "live index loaded: following the post store"
    );
    Ok(Engine::with_live(index, reranker, limits).with_store(store, Some(indexer))?)
}

fn reranker_of(
    model_dir: Option<PathBuf>,
    model: &ModelArgs,
) -> anyhow::Result<Option<Arc<mathrank_rerank::Reranker>>> {
    match model_dir {
        Some(dir) => Ok(Some(Arc::new(
            mathrank_rerank::Reranker::load(&dir, &model.options())
                .with_context(|| format!("loading model {}", dir.display()))?,
        ))),
        None => {
            tracing::warn!("running BM25 only (--no-rerank): Search returns BM25 order, Rerank is FAILED_PRECONDITION");
            Ok(None)
        }
    }
}

/// A replica of a shared PostgreSQL store: its own index at `index_dir`, built from the
/// store when missing (or when it follows another store), then following the store.
fn replica_engine(
    index_dir: &Path,
    location: &str,
    reranker: Option<Arc<mathrank_rerank::Reranker>>,
    limits: Limits,
    writes: bool,
) -> anyhow::Result<Engine> {
    let opened = crate::index_cmd::open_store_at(location)?;
    let started = std::time::Instant::now();
    // The store may be restarting, or drop the connection of a long build: such failures are
    // retried (health says NOT_SERVING meanwhile); anything else ends the server.
    let mut backoff = Duration::from_secs(1);
    let (live, indexer) = loop {
        match Indexer::start(index_dir, Arc::clone(&opened.store), IndexerOptions::default()) {
            Ok(started) => break started,
            Err(mathrank_index::Error::Store(err)) if err.is_retryable() => {
                tracing::warn!(error = %err, retry_in_s = backoff.as_secs(), "the post store is unavailable; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(err) => {
                return Err(anyhow::Error::new(err).context(format!(
                    "opening the index {} of the post store {}",
                    index_dir.display(),
                    opened.name
                )));
            }
        }
    };
    tracing::info!(
        index = %index_dir.display(),
        store = %opened.name,
        answers = live.current().num_answers(),
        searchable_seq = live.searchable_seq(),
        seconds = started.elapsed().as_secs_f64(),
        writes,
        "replica loaded: following the shared post store (ready once caught up)"
    );
    Ok(Engine::with_live(live, reranker, limits).with_store(opened.store, Some(indexer))?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(flags: &[&str]) -> ServeArgs {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).unwrap().serve
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("10s"), Ok(10_000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1500));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("7"), Ok(7000));
        assert!(parse_duration_ms("0s").is_err());
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("-3s").is_err());
        assert!(parse_duration_ms("2d").is_err());
    }

    #[test]
    fn the_embedded_defaults_parse_and_agree_with_the_engine_and_server() {
        let config: ServeConfig = toml::from_str(DEFAULTS).unwrap();
        let (limits, engine) = (config.limits(), Limits::default());
        assert_eq!(limits.max_queued, engine.max_queued);
        assert_eq!(limits.max_message_bytes, engine.max_message_bytes);
        assert_eq!(limits.default_timeout_ms, engine.default_timeout_ms);
        assert_eq!(limits.max_timeout_ms, engine.max_timeout_ms);
        assert_eq!(limits.long_answers, engine.long_answers);
        assert_eq!(limits.max_windows_per_answer, engine.max_windows_per_answer);
        assert_eq!(limits.max_windows_per_call, engine.max_windows_per_call);
        assert_eq!(limits.score_cache_mb, engine.score_cache_mb);
        assert_eq!(config.connections(), ConnectionLimits::default());
        assert_eq!(config.options().unwrap().max_message_bytes, ServeOptions::default().max_message_bytes);
        assert_eq!(config.options().unwrap().grace_period, ServeOptions::default().grace_period);
        assert_eq!(config.addr, SocketAddr::from(([127, 0, 0, 1], 50051)));
        // With no file and no flags, the layers are the defaults.
        assert_eq!(ServeConfig::layered(None, &args(&[])).unwrap(), config);
    }

    #[test]
    fn each_layer_overrides_the_one_below() {
        let file = "max_queued = 5\ngrace_seconds = 3\nidle_timeout = \"2m\"\nmodel = \"from-file\"\n";
        let from_file = ServeConfig::layered(Some(file), &args(&[])).unwrap();
        assert_eq!((from_file.max_queued, from_file.grace_seconds), (5, 3));
        assert_eq!(from_file.idle_timeout, Millis(120_000));
        assert_eq!(from_file.model, Some(PathBuf::from("from-file")));
        assert_eq!(from_file.max_timeout, Millis(60_000), "what the file leaves out stays the default");
        let flags = args(&["--max-queued", "7", "--idle-timeout", "500ms", "--model", "from-flag"]);
        let from_flags = ServeConfig::layered(Some(file), &flags).unwrap();
        assert_eq!((from_flags.max_queued, from_flags.grace_seconds), (7, 3));
        assert_eq!(from_flags.idle_timeout, Millis(500));
        assert_eq!(from_flags.model, Some(PathBuf::from("from-flag")));
        // A flag that is off leaves the file's setting alone.
        let no_rerank = ServeConfig::layered(Some("no_rerank = true"), &args(&[])).unwrap();
        assert!(no_rerank.no_rerank);
    }

    #[test]
    fn a_bad_layer_is_refused_with_its_key() {
        let err = ServeConfig::layered(Some("max_queue = 5"), &args(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("max_queue"), "{err:#}");
        let err = ServeConfig::layered(Some("idle_timeout = \"soon\""), &args(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("soon"), "{err:#}");
        let config = ServeConfig::layered(None, &args(&["--default-timeout", "2m"])).unwrap();
        assert!(config.check().unwrap_err().to_string().contains("--max-timeout"));
    }
}
