//! Every call gets an answer within its deadline, and repeated work costs nothing: a flood far
//! above inference capacity, the default deadline, the score cache, and long answers scored by
//! their best window. The model is the deterministic fake (no ONNX Runtime): a slow one takes a
//! fixed time per micro-batch, so nothing here depends on how fast the machine is, and a held
//! one stops at a gate the test opens; the only clocks are the calls' own short deadlines.

use std::time::{Duration, Instant};

use mathrank_engine::{Engine, Limits, LongAnswers, PartialReason, RerankParams};
use mathrank_proto::v1;
use mathrank_rerank::{FakeModel, RerankerOptions};
use mathrank_tests::{TestServer, fake_reranker, join_all, sample_index};
use proptest::prelude::*;

const QUESTION: &str =
    "Remainder of a power modulo a prime: how do I compute $3^{100} \\bmod 7$ with Fermat's little theorem?";

fn search(query: &str) -> v1::SearchRequest {
    v1::SearchRequest { query: query.into(), ..Default::default() }
}

/// 20 ms per micro-batch of at most two pairs: 48 calls of depth 30 need 14 s of inference.
fn slow_model() -> FakeModel {
    FakeModel::new().with_latency(Duration::from_millis(20))
}

fn two_at_a_time() -> RerankerOptions {
    RerankerOptions { max_batch: 2, ..RerankerOptions::default() }
}

/// Hits after the reranked ones keep their BM25 order.
fn assert_fallback_order(response: &v1::SearchResponse) {
    let reranked = response.reranked as usize;
    assert!(response.hits[..reranked.min(response.hits.len())].iter().all(|h| h.relevance.is_some()));
    let rest: Vec<u32> = response.hits.iter().skip(reranked).map(|h| h.bm25_rank).collect();
    assert!(rest.windows(2).all(|w| w[0] < w[1]), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_far_above_capacity_gets_hits_within_every_deadline() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let limits = Limits { default_timeout_ms: 1500, ..Limits::default() };
    let server = TestServer::with_fake(limits, &slow_model(), two_at_a_time()).await;
    let client = server.client().await;
    let mut health = HealthClient::new(server.channel().await);
    for client_deadline in [Some(Duration::from_secs(2)), None] {
        let calls: Vec<_> = (0..48)
            .map(|i| {
                let mut client = client.clone();
                // Each asker words it a little differently: no call is a cache hit of another.
                let query = format!("{QUESTION} (asked by user {i} {client_deadline:?})");
                async move {
                    let mut request = tonic::Request::new(search(&query));
                    if let Some(deadline) = client_deadline {
                        // The client enforces it: an answer at all is an answer within it.
                        request.set_timeout(deadline);
                    }
                    client.search(request).await
                }
            })
            .collect();
        let flood = tokio::spawn(join_all(calls));
        // Health is not behind the flood.
        let mut check = tonic::Request::new(HealthCheckRequest { service: mathrank_proto::SERVICE_NAME.into() });
        check.set_timeout(Duration::from_secs(1));
        assert_eq!(health.check(check).await.unwrap().into_inner().status, ServingStatus::Serving as i32);
        let outcomes = flood.await.unwrap();
        let mut partial = 0;
        for outcome in outcomes {
            let response = outcome.unwrap_or_else(|status| panic!("{client_deadline:?}: {status:?}")).into_inner();
            assert_eq!(response.hits.len(), 10, "every call gets hits");
            assert_fallback_order(&response);
            if response.partial {
                partial += 1;
                assert_eq!(response.partial_reason, "deadline");
                assert!(response.reranked < 30);
            } else {
                assert_eq!((response.reranked, response.partial_reason.as_str()), (30, ""));
            }
        }
        assert!(partial > 0, "{client_deadline:?}: 14 s of inference cannot fit in 2 s");
    }
    assert!(server.state.metrics().partial_count(PartialReason::Deadline) > 0);
    assert_eq!(server.state.metrics().request_count("Search", "DeadlineExceeded"), 0);
    // The work of calls whose time ran out was dropped, not run for no one.
    let stats = server.state.engine().unwrap().reranker().unwrap().stats();
    assert!(stats.skipped_pairs > 0 && stats.pairs < 2 * 48 * 30, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inference_queue_answers_in_bm25_order() {
    // Room for one job in the inference queue: while a long call holds it, the next call
    // cannot wait for inference and gets its BM25 hits at once.
    let model = FakeModel::new();
    let rerank = RerankerOptions { queue_capacity: 1, max_batch: 1, ..RerankerOptions::default() };
    let server = TestServer::with_fake(Limits::default(), &model, rerank).await;
    model.hold();
    let mut first = server.client().await;
    let long =
        tokio::spawn(async move { first.search(v1::SearchRequest { rerank_depth: 300, ..search(QUESTION) }).await });
    // Its first micro-batch stands at the gate, the rest of its pairs fill the queue.
    let gate = model.clone();
    tokio::task::spawn_blocking(move || gate.wait_until_waiting(1)).await.unwrap();
    let mut second = server.client().await;
    let response = second.search(search(QUESTION)).await.unwrap().into_inner();
    assert_eq!((response.partial, response.partial_reason.as_str(), response.reranked), (true, "overload", 0));
    let ranks: Vec<u32> = response.hits.iter().map(|h| h.bm25_rank).collect();
    assert_eq!(ranks, (1..=10).collect::<Vec<u32>>());
    assert_eq!(server.state.metrics().partial_count(PartialReason::Overload), 1);
    model.release_all();
    drop(long);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_search_is_served_from_the_cache() {
    let server = TestServer::with_fake(Limits::default(), &FakeModel::new(), RerankerOptions::default()).await;
    let mut client = server.client().await;
    let request = v1::SearchRequest { include_body: true, ..search(QUESTION) };
    let first = client.search(request.clone()).await.unwrap().into_inner();
    let timings = first.timings.unwrap();
    assert_eq!((timings.cache_hits, timings.cache_misses, timings.windows), (0, 30, 30));
    let reranker = server.state.engine().unwrap().reranker().unwrap().stats().pairs;
    let second = client.search(request).await.unwrap().into_inner();
    let timings = second.timings.unwrap();
    assert_eq!((timings.cache_hits, timings.cache_misses, timings.windows), (30, 0, 0));
    assert_eq!(timings.infer_ms, 0.0);
    assert_eq!(server.state.engine().unwrap().reranker().unwrap().stats().pairs, reranker, "no inference");
    // Bit for bit the same scores, so the same order.
    let bits = |r: &v1::SearchResponse| -> Vec<(u64, Option<u32>, Option<u32>)> {
        r.hits
            .iter()
            .map(|h| (h.answer_id, h.relevant_logit.map(f32::to_bits), h.relevance.map(f32::to_bits)))
            .collect()
    };
    assert_eq!(bits(&first), bits(&second));
    // A repeated candidate costs nothing in another method either: Rerank of the same texts.
    let candidates: Vec<v1::Candidate> =
        first.hits.iter().map(|h| v1::Candidate { id: h.answer_id.to_string(), text: h.body.clone() }).collect();
    let rerank = client
        .rerank(v1::RerankRequest { query: QUESTION.into(), candidates, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rerank.timings.unwrap().cache_hits, 10);
    let metrics = server.state.metrics().render();
    assert!(metrics.contains("mathrank_score_cache_hits_total 40"), "{metrics}");
    assert!(metrics.contains("mathrank_score_cache_misses_total 30"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_can_be_turned_off() {
    let limits = Limits { score_cache_mb: 0, ..Limits::default() };
    let server = TestServer::with_fake(limits, &FakeModel::new(), RerankerOptions::default()).await;
    let mut client = server.client().await;
    for _ in 0..2 {
        let timings = client.search(search(QUESTION)).await.unwrap().into_inner().timings.unwrap();
        assert_eq!((timings.cache_hits, timings.cache_misses), (0, 30));
    }
    let info = client.info(v1::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.limits.unwrap().score_cache_mb, 0);
}

/// Long answers: prose with some math, `words` words.
fn long_answer(seed: usize, words: usize) -> String {
    const WORDS: &[&str] = &[
        "prime",
        "modulo",
        "power",
        "Fermat",
        "little",
        "theorem",
        "residue",
        "group",
        "order",
        "divides",
        "cycle",
        "exponent",
        "remainder",
        "$3^6 \\equiv 1$",
        "so",
        "the",
        "we",
        "reduce",
        "by",
        "induction",
        "$a^{p-1}$",
    ];
    (0..words).map(|i| WORDS[(i * 7 + seed * 13 + i / 5) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

fn windowed_engine(max_windows_per_call: u32) -> Engine {
    let limits = Limits { max_windows_per_answer: 4, max_windows_per_call, ..Limits::default() };
    Engine::new(sample_index(), Some(fake_reranker(&FakeModel::new(), RerankerOptions::default())), limits)
}

async fn rerank(engine: &Engine, candidates: &[String], mode: LongAnswers) -> mathrank_engine::RerankOutcome {
    let params = RerankParams {
        query: QUESTION.into(),
        candidates: candidates.to_vec(),
        long_answers: Some(mode),
        ..Default::default()
    };
    engine.rerank(params).await.unwrap()
}

fn by_index(outcome: &mathrank_engine::RerankOutcome) -> Vec<f32> {
    let mut scores = vec![f32::NAN; outcome.results.len()];
    for result in &outcome.results {
        scores[result.index] = result.score.unwrap().logits[1];
    }
    scores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_window_reports_windows_and_keeps_its_caps() {
    let mut candidates: Vec<String> = (0..6).map(|i| long_answer(i, 1500)).collect();
    candidates.push("Short: by Fermat, the answer is 4.".into());
    candidates.push("Another short one.".into());
    let engine = windowed_engine(256);
    let truncated = rerank(&engine, &candidates, LongAnswers::Truncate).await;
    let windowed = rerank(&engine, &candidates, LongAnswers::MaxWindow).await;
    assert_eq!(truncated.timings.windows, 8);
    assert_eq!(windowed.timings.windows, 6 * 4 + 2, "four windows per long answer, one per short one");
    let (t, w) = (by_index(&truncated), by_index(&windowed));
    assert!(t.iter().zip(&w).all(|(t, w)| w >= t), "{t:?} {w:?}");
    assert!(t.iter().zip(&w).any(|(t, w)| w > t), "a later window scores higher somewhere: {t:?} {w:?}");
    assert_eq!(t[6..], w[6..], "short answers have one window, the same pair");
    // The call's window budget: every first window, then extras to the best-ranked.
    let capped = rerank(&windowed_engine(10), &candidates, LongAnswers::MaxWindow).await;
    assert_eq!(capped.timings.windows, 10);
    assert!(by_index(&capped).iter().zip(&t).all(|(c, t)| c >= t));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn max_window_never_scores_below_truncate(seed in 0usize..1000, words in 50usize..1600, extra in 0usize..3) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let engine = windowed_engine(256);
        let candidates: Vec<String> = (0..=extra).map(|k| long_answer(seed + k, words / (k + 1))).collect();
        let (t, w) = runtime.block_on(async {
            (by_index(&rerank(&engine, &candidates, LongAnswers::Truncate).await),
             by_index(&rerank(&engine, &candidates, LongAnswers::MaxWindow).await))
        });
        for (t, w) in t.iter().zip(&w) {
            prop_assert!(w >= t, "max_window {w} below truncate {t}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_deadline_the_default_applies_and_the_ceiling_holds() {
    let limits = Limits { default_timeout_ms: 300, max_timeout_ms: 600, ..Limits::default() };
    let slow = FakeModel::new().with_latency(Duration::from_millis(10));
    let one_at_a_time = RerankerOptions { max_batch: 1, ..RerankerOptions::default() };
    let engine = Engine::new(sample_index(), Some(fake_reranker(&slow, one_at_a_time)), limits);
    let received = Instant::now();
    assert_eq!(engine.deadline_of(None, received), received + Duration::from_millis(300));
    let asked = received + Duration::from_secs(3600);
    assert_eq!(engine.deadline_of(Some(asked), received), received + Duration::from_millis(600));
    let sooner = received + Duration::from_millis(50);
    assert_eq!(engine.deadline_of(Some(sooner), received), sooner);
    // 300 candidates at 10 ms a pair cannot finish in the default 300 ms: partial, not an error.
    let candidates: Vec<String> = (0..300).map(|i| format!("Answer {i}: $x^{i}$.")).collect();
    let outcome =
        engine.rerank(RerankParams { query: QUESTION.into(), candidates, ..Default::default() }).await.unwrap();
    assert_eq!(outcome.partial_reason, Some(PartialReason::Deadline));
    assert!(outcome.reranked < 300);
    let unscored: Vec<usize> = outcome.results.iter().filter(|r| r.score.is_none()).map(|r| r.index).collect();
    assert!(unscored.windows(2).all(|w| w[0] < w[1]), "unscored candidates keep the caller's order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_whose_scores_move_with_the_batch_gets_no_score_cache() {
    // A cached score must equal a fresh one bit for bit; the load-time probe finds that this
    // model's do not, and the engine then scores every call afresh.
    let reranker = fake_reranker(&FakeModel::new().batch_dependent(), RerankerOptions::default());
    assert!(!reranker.info().batch_invariant);
    let engine = Engine::new(sample_index(), Some(reranker), Limits::default());
    let candidates = vec!["By Fermat, the remainder is 4.".to_owned(), "Use induction.".to_owned()];
    for _ in 0..2 {
        let params = RerankParams { query: QUESTION.into(), candidates: candidates.clone(), ..Default::default() };
        let outcome = engine.rerank(params).await.unwrap();
        assert_eq!((outcome.timings.cache_hits, outcome.timings.cache_misses), (0, 2), "scored afresh");
        assert_eq!(outcome.reranked, 2);
    }
    assert_eq!(engine.reranker().unwrap().stats().pairs, 4, "both calls ran the model");
}
