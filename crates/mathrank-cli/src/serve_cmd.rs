//! `mathrank serve`: gRPC and HTTP/JSON on one port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use mathrank_engine::{Engine, Limits, LongAnswers};
use mathrank_index::{AnswerIndex, Indexer, IndexerOptions};
use mathrank_server::{BearerToken, ServeOptions, ServerState, TlsFiles};

use crate::model_args::ModelArgs;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML file with any of: addr, metrics_addr, index, store, model, no_rerank, auth_token,
    /// write_token, tls_cert, tls_key, max_concurrent, max_queued, max_message_bytes,
    /// grace_seconds, default_timeout, max_timeout, long_answers, max_windows_per_answer,
    /// max_windows_per_call, score_cache_mb. Flags and environment variables override it.
    #[arg(long, env = "MATHRANK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, for gRPC and HTTP/JSON alike [default: 127.0.0.1:50051].
    #[arg(long, env = "MATHRANK_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Also serve Prometheus metrics on a separate listener, http://ADDR/metrics (they are
    /// always on the main port's /metrics) [default: off].
    #[arg(long, env = "MATHRANK_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Index directory; built from the embedded sample when it does not exist [default: index/default].
    #[arg(long, env = "MATHRANK_INDEX")]
    pub index: Option<PathBuf>,
    /// BM25 only: do not load a model.
    #[arg(long, env = "MATHRANK_NO_RERANK", conflicts_with = "model")]
    pub no_rerank: bool,
    /// Require `authorization: Bearer TOKEN` on the API, gRPC and HTTP (health, readiness,
    /// reflection and metrics stay open); an empty token is refused [default: no auth].
    #[arg(long, env = "MATHRANK_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Turn the write API on (gRPC mathrank.v1.Posts; HTTP POST /v1/posts:bulk, PUT and
    /// DELETE /v1/posts/ID, POST /v1/index:rebuild): its calls need `authorization: Bearer
    /// TOKEN`, and the search token cannot write [default: writes off].
    #[arg(long, env = "MATHRANK_WRITE_TOKEN", hide_env_values = true)]
    pub write_token: Option<String>,
    /// The post store the live index follows and writes go to: a SQLite file, or a
    /// PostgreSQL database shared by replicas (`postgres://USER:PASSWORD@HOST:PORT/DB`), each
    /// keeping its own index of it; a missing --index is then built from the store
    /// [default: INDEX/posts.sqlite, which `mathrank index` writes]. Whenever there is a store,
    /// the server indexes its changes (those of `mathrank index --update` and of other
    /// replicas too), with or without --write-token, and /health is 503 until the index has
    /// caught up with it.
    #[arg(long, env = "MATHRANK_STORE")]
    pub store: Option<String>,
    /// TLS certificate chain (PEM); with --tls-key, serves TLS [default: plaintext].
    #[arg(long, env = "MATHRANK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "MATHRANK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Retrievals (with their HTML conversion and tokenizing) run at once; reranking waits
    /// for the inference queue, not for these [default: 2 x cores, at least 4].
    #[arg(long, env = "MATHRANK_MAX_CONCURRENT")]
    pub max_concurrent: Option<u32>,
    /// Calls waiting for a retrieval slot; beyond them RESOURCE_EXHAUSTED (HTTP 429) [default: 64].
    #[arg(long, env = "MATHRANK_MAX_QUEUED")]
    pub max_queued: Option<u32>,
    /// The deadline of a call that sets none (no gRPC deadline, no X-Timeout-Ms): `10s`,
    /// `500ms`, `2m` [default: 10s].
    #[arg(long, env = "MATHRANK_DEFAULT_TIMEOUT", value_parser = parse_duration_ms)]
    pub default_timeout: Option<u64>,
    /// No call holds inference longer than this, whatever deadline it asks for [default: 60s].
    #[arg(long, env = "MATHRANK_MAX_TIMEOUT", value_parser = parse_duration_ms)]
    pub max_timeout: Option<u64>,
    /// How answers longer than the model's 512 tokens are scored when a call does not say:
    /// `truncate` (as the model's authors) or `max_window` (the best of overlapping windows)
    /// [default: truncate].
    #[arg(long, env = "MATHRANK_LONG_ANSWERS")]
    pub long_answers: Option<LongAnswers>,
    /// With max_window: windows per answer at most, the truncated pair included [default: 4].
    #[arg(long, env = "MATHRANK_MAX_WINDOWS_PER_ANSWER")]
    pub max_windows_per_answer: Option<u32>,
    /// With max_window: pairs one call sends to the model at most; extra windows go to the
    /// best-ranked candidates first [default: 256].
    #[arg(long, env = "MATHRANK_MAX_WINDOWS_PER_CALL")]
    pub max_windows_per_call: Option<u32>,
    /// Memory of the score cache in MiB (about 9,400 pairs per MiB); 0 turns it off [default: 64].
    #[arg(long, env = "MATHRANK_SCORE_CACHE_MB")]
    pub score_cache_mb: Option<u64>,
    /// Largest gRPC message or HTTP request body in bytes [default: 16777216].
    #[arg(long, env = "MATHRANK_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<u32>,
    /// Seconds in-flight calls may take to finish after SIGINT/SIGTERM [default: 10].
    #[arg(long, env = "MATHRANK_GRACE_SECONDS")]
    pub grace_seconds: Option<u64>,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// The optional TOML configuration file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    index: Option<PathBuf>,
    store: Option<String>,
    model: Option<PathBuf>,
    no_rerank: Option<bool>,
    auth_token: Option<String>,
    write_token: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_concurrent: Option<u32>,
    max_queued: Option<u32>,
    max_message_bytes: Option<u32>,
    grace_seconds: Option<u64>,
    default_timeout: Option<String>,
    max_timeout: Option<String>,
    long_answers: Option<String>,
    max_windows_per_answer: Option<u32>,
    max_windows_per_call: Option<u32>,
    score_cache_mb: Option<u64>,
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
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(mut args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
            toml::from_str::<ConfigFile>(&text).with_context(|| format!("parsing config {}", path.display()))?
        }
        None => ConfigFile::default(),
    };
    if args.model.model.is_none() {
        args.model.model = file.model.clone();
    }
    let no_rerank = args.no_rerank || file.no_rerank.unwrap_or(false);
    let addr = args.addr.or(file.addr).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051)));
    let index_dir = args.index.clone().or(file.index.clone()).unwrap_or_else(|| PathBuf::from("index/default"));
    let defaults = Limits::default();
    let limits = Limits {
        max_concurrent: args.max_concurrent.or(file.max_concurrent).unwrap_or(defaults.max_concurrent),
        max_queued: args.max_queued.or(file.max_queued).unwrap_or(defaults.max_queued),
        max_message_bytes: args.max_message_bytes.or(file.max_message_bytes).unwrap_or(defaults.max_message_bytes),
        default_timeout_ms: match (args.default_timeout, &file.default_timeout) {
            (Some(ms), _) => ms,
            (None, Some(text)) => {
                parse_duration_ms(text).map_err(|err| anyhow::anyhow!("config default_timeout: {err}"))?
            }
            (None, None) => defaults.default_timeout_ms,
        },
        max_timeout_ms: match (args.max_timeout, &file.max_timeout) {
            (Some(ms), _) => ms,
            (None, Some(text)) => {
                parse_duration_ms(text).map_err(|err| anyhow::anyhow!("config max_timeout: {err}"))?
            }
            (None, None) => defaults.max_timeout_ms,
        },
        long_answers: match (args.long_answers, &file.long_answers) {
            (Some(mode), _) => mode,
            (None, Some(text)) => text.parse().map_err(|err: String| anyhow::anyhow!("config long_answers: {err}"))?,
            (None, None) => defaults.long_answers,
        },
        max_windows_per_answer: args
            .max_windows_per_answer
            .or(file.max_windows_per_answer)
            .unwrap_or(defaults.max_windows_per_answer),
        max_windows_per_call: args
            .max_windows_per_call
            .or(file.max_windows_per_call)
            .unwrap_or(defaults.max_windows_per_call),
        score_cache_mb: args.score_cache_mb.or(file.score_cache_mb).unwrap_or(defaults.score_cache_mb),
        ..defaults
    };
    anyhow::ensure!(
        limits.default_timeout_ms <= limits.max_timeout_ms,
        "--default-timeout ({} ms) must not exceed --max-timeout ({} ms)",
        limits.default_timeout_ms,
        limits.max_timeout_ms
    );
    anyhow::ensure!(limits.max_windows_per_answer >= 1, "--max-windows-per-answer must be at least 1");
    let tls = match (args.tls_cert.clone().or(file.tls_cert.clone()), args.tls_key.clone().or(file.tls_key.clone())) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both tls_cert and tls_key"),
    };
    let write_token = args.write_token.clone().or(file.write_token.clone());
    let store_path = args.store.clone().or(file.store.clone());
    let options = ServeOptions {
        auth_token: args.auth_token.clone().or(file.auth_token.clone()).map(BearerToken::new).transpose()?,
        write_token: write_token.clone().map(BearerToken::new).transpose()?,
        tls,
        max_message_bytes: limits.max_message_bytes as usize,
        grace_period: Duration::from_secs(args.grace_seconds.or(file.grace_seconds).unwrap_or(10)),
    };
    if options.auth_token.is_some() && options.tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            addr = %addr,
            "auth is on without TLS on a non-loopback address: the bearer token crosses the network in clear text; add --tls-cert and --tls-key"
        );
    }
    // Fail before binding when no model can be found, with the message that says what to do.
    let model_dir = if no_rerank { None } else { Some(args.model.resolve_model_dir()?) };

    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let state = ServerState::new().await;
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_sender.send(true);
    });
    let wait_stop = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Some(metrics_addr) = args.metrics_addr.or(file.metrics_addr) {
        let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("binding metrics {metrics_addr}"))?;
        tracing::info!(addr = %metrics_addr, "Prometheus metrics at /metrics");
        let state = Arc::clone(&state);
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(err) = mathrank_server::serve_metrics(metrics_listener, state, wait_stop(stop)).await {
                tracing::error!(error = %err, "metrics endpoint failed");
            }
        });
    }
    let server = tokio::spawn(mathrank_server::serve(listener, Arc::clone(&state), options, wait_stop(stop.clone())));

    // Load while the listener already answers health checks with NOT_SERVING.
    let model_args = args.model.clone();
    let writes = write_token.is_some();
    let custom_store = store_path.is_some();
    let loaded = tokio::task::spawn_blocking(move || -> anyhow::Result<Engine> {
        if let Some(location) = store_path.as_deref().filter(|location| mathrank_store::is_postgres_url(location)) {
            return replica_engine(&index_dir, location, reranker_of(model_dir, &model_args)?, limits, writes);
        }
        let store_path = crate::index_cmd::store_path(&index_dir, store_path.as_deref().map(std::path::Path::new));
        if !index_dir.join("meta.json").is_file() && !index_dir.exists() && !custom_store {
            tracing::info!(index = %index_dir.display(), "no index there: building one from the embedded sample");
            crate::index_cmd::build_sample(&index_dir)?;
        }
        let reranker = reranker_of(model_dir, &model_args)?;
        if !store_path.is_file() && !custom_store {
            anyhow::ensure!(
                !writes,
                "--write-token needs a post store, and {} has none (built with --no-store or by an older mathrank): rebuild it with `mathrank index --dump FILE --index {}`",
                index_dir.display(),
                index_dir.display()
            );
            let index = AnswerIndex::open(&index_dir)?;
            tracing::info!(index = %index_dir.display(), answers = index.num_answers(), "index loaded (no post store: read-only)");
            return Ok(Engine::new(Arc::new(index), reranker, limits));
        }
        // A live index: this process indexes the store (or follows the process that does).
        let store: Arc<dyn mathrank_store::PostStore> = Arc::new(
            mathrank_store::SqliteStore::open(&store_path)
                .with_context(|| format!("opening the post store {}", store_path.display()))?,
        );
        let (live, indexer) = Indexer::start(&index_dir, Arc::clone(&store), IndexerOptions::default())
            .with_context(|| format!("opening the live index {}", index_dir.display()))?;
        tracing::info!(
            index = %index_dir.display(),
            store = %store_path.display(),
            answers = live.current().num_answers(),
            searchable_seq = live.searchable_seq(),
            role = indexer.status().role,
            writes,
            "live index loaded: following the post store"
        );
        Ok(Engine::with_live(live, reranker, limits).with_store(store, Some(indexer))?)
    })
    .await?;
    match loaded {
        Ok(engine) => state.set_engine(engine).await,
        Err(err) => {
            server.abort();
            return Err(err);
        }
    }
    tracing::info!(addr = %addr, "ready: health is SERVING");
    server.await??;
    tracing::info!("stopped");
    Ok(())
}

fn reranker_of(
    model_dir: Option<PathBuf>,
    model_args: &ModelArgs,
) -> anyhow::Result<Option<Arc<mathrank_rerank::Reranker>>> {
    match model_dir {
        Some(dir) => Ok(Some(Arc::new(
            mathrank_rerank::Reranker::load(&dir, &model_args.options())
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
    index_dir: &std::path::Path,
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
    use super::parse_duration_ms;

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
}
