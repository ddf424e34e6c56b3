//! The one set of helpers of mathrank's integration tests (the binary `tests/main.rs`, a module
//! per domain): a shared sample index, the tiny model fixture, the ONNX Runtime library,
//! `../shared`, and an in-process server on port 0 that speaks gRPC and HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use mathrank_engine::{Engine, Limits};
use mathrank_index::AnswerIndex;
use mathrank_proto::v1::answer_search_client::AnswerSearchClient;
use mathrank_rerank::{FakeModel, Reranker, RerankerOptions};
use mathrank_server::{ServeOptions, ServerState};
use tonic::transport::Channel;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project's tiny random-weight ALBERT (see crates/mathrank-rerank/tests/fixtures).
pub fn tiny_model() -> PathBuf {
    workspace().join("crates/mathrank-rerank/tests/fixtures/albert-tiny")
}

/// ONNX Runtime: ORT_DYLIB_PATH, else `.ort/` as filled by `scripts/setup-ort.sh`.
pub fn ort_library() -> PathBuf {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(path);
    }
    let dir = workspace().join(".ort");
    std::fs::read_dir(&dir)
        .ok()
        .and_then(|entries| {
            entries.flatten().map(|entry| entry.path()).find(|path| {
                path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("libonnxruntime.so"))
            })
        })
        .unwrap_or_else(|| {
            panic!("ONNX Runtime not found: run scripts/setup-ort.sh (fills {}) or set ORT_DYLIB_PATH", dir.display())
        })
}

/// `../shared` (or MATHRANK_SHARED_DIR): conformance data that only CI and developers have.
pub fn shared_dir() -> PathBuf {
    let dir =
        std::env::var_os("MATHRANK_SHARED_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("../shared"));
    assert!(dir.join("data").is_dir(), "conformance data not found at {}; set MATHRANK_SHARED_DIR", dir.display());
    dir
}

/// The embedded sample, indexed once per test binary into a temporary directory.
pub fn sample_index() -> Arc<AnswerIndex> {
    static INDEX: OnceLock<(tempfile::TempDir, Arc<AnswerIndex>)> = OnceLock::new();
    let (_, index) = INDEX.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("sample");
        let xml = mathrank_dump::SAMPLE_POSTS_XML;
        let source =
            mathrank_dump::DumpSource::from_reader(mathrank_dump::SAMPLE_NAME, Some(xml.len() as u64), xml.as_bytes());
        mathrank_index::build_index(source, &target, &mathrank_index::BuildOptions::default(), &mut |_| {})
            .expect("sample builds");
        let index = Arc::new(AnswerIndex::open(&target).expect("sample opens"));
        (dir, index)
    });
    Arc::clone(index)
}

/// An engine over a new, empty live index: a post store and its indexer (committing at once)
/// in a temporary directory that lives as long as the returned guard.
pub fn live_engine(limits: Limits) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn mathrank_store::PostStore> =
        Arc::new(mathrank_store::SqliteStore::open(&dir.path().join(mathrank_store::STORE_FILE)).expect("store opens"));
    let options = mathrank_index::IndexerOptions {
        commit_interval: std::time::Duration::from_millis(5),
        memory_mb: 50,
        ..mathrank_index::IndexerOptions::default()
    };
    let (live, indexer) =
        mathrank_index::Indexer::start(dir.path(), Arc::clone(&store), options).expect("indexer starts");
    let engine = Engine::with_live(live, None, limits).with_store(store, Some(indexer)).expect("writes on");
    (dir, engine)
}

/// A replica of the shared store at `url` (a PostgreSQL database): its own index in a new
/// temporary directory, built from the store, then following it (committing at once). Blocks
/// (PostgreSQL calls): run it with `spawn_blocking`.
pub fn replica_engine(url: &str, limits: Limits) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn mathrank_store::PostStore> =
        Arc::new(mathrank_store::PgStore::connect(url).expect("the shared store opens"));
    let options = mathrank_index::IndexerOptions {
        commit_interval: std::time::Duration::from_millis(20),
        memory_mb: 50,
        ..mathrank_index::IndexerOptions::default()
    };
    let index = dir.path().join("index");
    let (live, indexer) = mathrank_index::Indexer::start(&index, Arc::clone(&store), options).expect("indexer starts");
    let engine = Engine::with_live(live, None, limits).with_store(store, Some(indexer)).expect("writes on");
    (dir, engine)
}

/// The tiny model with test-friendly options (one intra-op thread).
pub fn tiny_reranker(options: RerankerOptions) -> Arc<Reranker> {
    let options = RerankerOptions { ort_library: Some(ort_library()), intra_threads: 1, ..options };
    Arc::new(Reranker::load(&tiny_model(), &options).expect("tiny model loads"))
}

/// The deterministic fake model (no ONNX Runtime) behind the tiny model's tokenizer.
pub fn fake_reranker(model: &FakeModel, options: RerankerOptions) -> Arc<Reranker> {
    let tokenizer = tiny_model().join("tokenizer.json");
    Arc::new(Reranker::fake(&tokenizer, model, &options).expect("the fake model starts"))
}

/// A server running in this process on 127.0.0.1:0.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), mathrank_server::ServeError>>>,
}

impl TestServer {
    /// Starts a server; with `engine = None` it stays NOT_SERVING until `state.set_engine`.
    pub async fn start(engine: Option<Engine>, options: ServeOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let state = ServerState::new().await;
        if let Some(engine) = engine {
            state.set_engine(engine).await;
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(mathrank_server::serve(listener, Arc::clone(&state), options, async move {
            let _ = stopped.await;
        }));
        Self { addr, state, stop: Some(stop), task: Some(task) }
    }

    /// The sample index with the tiny model.
    pub async fn with_model(limits: Limits, rerank: RerankerOptions) -> Self {
        let engine = Engine::new(sample_index(), Some(tiny_reranker(rerank)), limits);
        Self::start(Some(engine), ServeOptions::default()).await
    }

    /// The sample index with the fake model.
    pub async fn with_fake(limits: Limits, model: &FakeModel, rerank: RerankerOptions) -> Self {
        let engine = Engine::new(sample_index(), Some(fake_reranker(model, rerank)), limits);
        Self::start(Some(engine), ServeOptions::default()).await
    }

    pub async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn client(&self) -> AnswerSearchClient<Channel> {
        AnswerSearchClient::new(self.channel().await)
    }

    /// `http://ADDR{path}`: the HTTP API on the same port as gRPC.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends the shutdown signal and waits for `serve` to return.
    pub async fn shutdown(mut self) -> Result<(), mathrank_server::ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("serve task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Runs futures concurrently as tasks and collects their outputs in order.
pub async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("task"));
    }
    outputs
}
