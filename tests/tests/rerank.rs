//! Reranker tests on the project's own tiny random-weight model (tests/fixtures/albert-tiny)
//! on ONNX Runtime: parity, batching, inputs, errors. They need the ONNX Runtime library:
//! `scripts/setup-ort.sh` puts it in `.ort/`, or set ORT_DYLIB_PATH. The scheduler's own tests
//! (deadlines, cancellation, overload) run on the fake model, in the crate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mathrank_rerank::{Error, Reranker, RerankerOptions};
use mathrank_tests::{ort_library, tiny_model as fixture};

fn options() -> RerankerOptions {
    RerankerOptions { ort_library: Some(ort_library()), intra_threads: 1, ..RerankerOptions::default() }
}

struct Reference {
    pairs: Vec<(String, String)>,
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    logits: Vec<[f32; 2]>,
}

fn reference(dir: &Path) -> Reference {
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let matrix = |key: &str| -> Vec<Vec<i64>> { serde_json::from_value(value[key].clone()).unwrap() };
    let pairs: Vec<(String, String)> = serde_json::from_value(value["pairs"].clone()).unwrap();
    let logits: Vec<Vec<f32>> = serde_json::from_value(value["logits"].clone()).unwrap();
    Reference {
        pairs,
        input_ids: matrix("input_ids"),
        attention_mask: matrix("attention_mask"),
        logits: logits.into_iter().map(|l| [l[0], l[1]]).collect(),
    }
}

/// Token ids and logits equal the transformers reference of a model directory.
pub fn assert_parity(dir: &Path, tolerance: f32) {
    let reranker = Reranker::load(dir, &options()).unwrap();
    let reference = reference(dir);
    for (i, (question, answer)) in reference.pairs.iter().enumerate() {
        let encoded = reranker.encoder().encode_one(question, answer).unwrap();
        let real = reference.attention_mask[i].iter().filter(|&&m| m == 1).count();
        assert_eq!(encoded.input_ids, reference.input_ids[i][..real], "token ids of pair {i}");
        let scores = reranker.score_blocking(question, &[answer.as_str()]).unwrap();
        let logits = scores.scores[0].logits;
        for k in 0..2 {
            assert!(
                (logits[k] - reference.logits[i][k]).abs() <= tolerance,
                "pair {i}: logits {logits:?} vs reference {:?}",
                reference.logits[i]
            );
        }
    }
}

#[test]
fn parity_with_transformers_on_the_tiny_fixture() {
    assert_parity(&fixture(), 1e-4);
}

#[test]
fn batching_is_invisible() {
    let reranker = Arc::new(
        Reranker::load(&fixture(), &RerankerOptions { batch_tokens: 256, max_batch: 3, ..options() }).unwrap(),
    );
    let question = "Why does $\\sum 1/n^2$ converge?";
    let answers: Vec<String> = (0..12)
        .map(|i| format!("Compare with the integral of $x^{{-2}}$. {}", "Detail number {i}. ".repeat(i * 5)))
        .collect();
    let refs: Vec<&str> = answers.iter().map(String::as_str).collect();
    let batch = reranker.score_blocking(question, &refs).unwrap();
    assert!(batch.padding_efficiency > 0.0 && batch.padding_efficiency <= 1.0);
    let one_by_one: Vec<f32> =
        refs.iter().map(|a| reranker.score_blocking(question, &[a]).unwrap().scores[0].relevance).collect();
    let mut shuffled_order: Vec<usize> = (0..refs.len()).collect();
    shuffled_order.reverse();
    shuffled_order.swap(0, 5);
    let shuffled: Vec<&str> = shuffled_order.iter().map(|&i| refs[i]).collect();
    let shuffled_scores = reranker.score_blocking(question, &shuffled).unwrap();
    let concurrent: Vec<f32> = std::thread::scope(|scope| {
        let handles: Vec<_> = refs
            .iter()
            .map(|answer| {
                let reranker = Arc::clone(&reranker);
                scope.spawn(move || reranker.score_blocking(question, &[answer]).unwrap().scores[0].relevance)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for i in 0..refs.len() {
        let expected = batch.scores[i].relevance;
        assert!((one_by_one[i] - expected).abs() < 1e-5, "one by one, pair {i}");
        assert!((concurrent[i] - expected).abs() < 1e-5, "concurrent, pair {i}");
        let position = shuffled_order.iter().position(|&j| j == i).unwrap();
        assert!((shuffled_scores.scores[position].relevance - expected).abs() < 1e-5, "shuffled, pair {i}");
    }
    let distinct: std::collections::HashSet<u32> = batch.scores.iter().map(|s| s.relevance.to_bits()).collect();
    assert!(distinct.len() > 1, "different answers must get different scores");
}

#[test]
fn awkward_inputs_give_finite_scores() {
    let reranker = Reranker::load(&fixture(), &options()).unwrap();
    let huge = "$x^2$ is a square. ".repeat(60_000);
    assert!(huge.len() > 1_000_000);
    let inputs = ["", "ünïcödé ∫∑√ 数学 \u{1F600}", "control\u{0}\u{7}\u{1b}chars", huge.as_str()];
    for question in ["", "What is $\\int_0^1 x\\,dx$?"] {
        let report = reranker.score_blocking(question, &inputs).unwrap();
        assert_eq!(report.scores.len(), inputs.len());
        for score in &report.scores {
            assert!(score.relevance.is_finite() && (0.0..=1.0).contains(&score.relevance));
        }
    }
    let long = reranker.encoder().encode_one("question", &huge).unwrap();
    assert_eq!(long.len(), 512, "a 1 MB answer is truncated to max_length");
}

#[test]
fn broken_model_directories_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Reranker::load(dir.path(), &options()).unwrap_err();
    assert!(matches!(err, Error::MissingFile { file: "model.onnx", .. }), "{err}");
    for file in ["tokenizer.json", "config.json"] {
        std::fs::copy(fixture().join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("model.onnx"), b"this is not an onnx file").unwrap();
    let err = Reranker::load(dir.path(), &options()).unwrap_err();
    assert!(err.to_string().contains("invalid model") && err.to_string().contains("model.onnx"), "{err}");
    let err = Reranker::load(&fixture(), &RerankerOptions { max_length: 1024, ..options() }).unwrap_err();
    assert!(matches!(err, Error::TooLong { limit: 512, .. }), "{err}");
    std::fs::copy(fixture().join("model.onnx"), dir.path().join("model.onnx")).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), b"{}").unwrap();
    let err = Reranker::load(dir.path(), &options()).unwrap_err();
    assert!(err.to_string().contains("invalid tokenizer"), "{err}");
}

#[test]
fn the_cuda_provider_fails_clearly_and_never_falls_back_to_the_cpu() {
    let options = RerankerOptions { provider: mathrank_rerank::Provider::Cuda, device_id: 3, ..options() };
    let err = Reranker::load(&fixture(), &options).unwrap_err().to_string();
    // Without the `cuda` feature the build says so; with it, on a machine without that GPU or
    // the provider library, the start fails naming the device.
    assert!(err.contains("--features cuda") || err.contains("could not start on device 3"), "{err}");
}

#[test]
fn the_cpu_fallback_runs_only_when_asked_and_reports_the_cpu() {
    let options =
        RerankerOptions { provider: mathrank_rerank::Provider::Cuda, device_id: 3, cpu_fallback: true, ..options() };
    let reranker = Reranker::load(&fixture(), &options).unwrap();
    assert_eq!(reranker.info().provider, mathrank_rerank::Provider::Cpu);
    let report = reranker.score_blocking("a question", &["an answer"]).unwrap();
    assert_eq!(report.scores.len(), 1);
}

/// `../shared` (or MATHRANK_SHARED_DIR): conformance data that only the CI machine has.
fn shared_models() -> PathBuf {
    mathrank_tests::shared_dir().join("models")
}

#[test]
#[ignore = "conformance against ../shared; run by .ci/run with --ignored"]
fn conformance_shared_albert_tiny() {
    assert_parity(&shared_models().join("albert-tiny"), 1e-4);
}

#[test]
#[ignore = "conformance against ../shared; run by .ci/run with --ignored"]
fn conformance_shared_albert_base_random() {
    assert_parity(&shared_models().join("albert-base-random"), 1e-4);
}

#[test]
fn scores_are_bit_identical_alone_and_in_any_batch() {
    // The score cache relies on it: a pair's score must not depend on its batch-mates or on
    // their padding (fp32 on ONNX Runtime's CPU kernels; int8 is checked in the model crate).
    let reranker = Reranker::load(&fixture(), &options()).unwrap();
    assert!(reranker.info().batch_invariant, "the load-time probe agrees");
    let question = "Why does $\\sum 1/n^2$ converge?";
    let answers: Vec<String> =
        (0..12).map(|i| format!("Compare with $x^{{-2}}$. {}", "More. ".repeat(i * 9))).collect();
    let refs: Vec<&str> = answers.iter().map(String::as_str).collect();
    let together = reranker.score_blocking(question, &refs).unwrap();
    for (i, answer) in refs.iter().enumerate() {
        let alone = reranker.score_blocking(question, &[answer]).unwrap().scores[0];
        assert_eq!(alone.logits.map(f32::to_bits), together.scores[i].logits.map(f32::to_bits), "pair {i}");
    }
}

#[test]
fn windows_cover_a_long_answer_and_start_with_the_truncated_pair() {
    let reranker = Reranker::load(&fixture(), &RerankerOptions { max_length: 64, ..options() }).unwrap();
    let encoder = reranker.encoder();
    let question = "Why is the sum finite?";
    let answer: String = (0..120).map(|i| format!("step{i} ")).collect();
    let windows = encoder.encode_windows(question, &answer, 50).unwrap();
    // The first window is the pair the authors scored, so the best window scores at least that.
    assert_eq!(windows[0], encoder.encode_one(question, &answer).unwrap());
    assert!(windows.len() > 2);
    assert!(windows.iter().all(|w| w.len() <= 64 && w.input_ids.len() == w.token_type_ids.len()));
    // Every window is [CLS] question [SEP] part-of-answer [SEP] ...
    let prefix = windows[0].token_type_ids.iter().position(|&t| t == 1).unwrap();
    for w in &windows {
        assert_eq!(w.input_ids[..prefix], windows[0].input_ids[..prefix]);
        assert_eq!(w.input_ids.last(), windows[0].input_ids.last());
        assert!(w.token_type_ids[prefix..].iter().all(|&t| t == 1));
    }
    // ... the parts overlap and, joined, are the answer's own tokens, to its end.
    let parts: Vec<&[i64]> = windows.iter().map(|w| &w.input_ids[prefix..w.len() - 1]).collect();
    let stride = parts[0].len() * 3 / 4;
    let mut joined: Vec<i64> = Vec::new();
    for (k, part) in parts.iter().enumerate() {
        assert!(joined.len() >= k * stride);
        joined.truncate(k * stride);
        joined.extend_from_slice(part);
    }
    let alone = encoder.encode_one("", &answer).unwrap();
    let alone_part = &alone.input_ids[alone.token_type_ids.iter().position(|&t| t == 1).unwrap()..alone.len() - 1];
    assert_eq!(&joined[..alone_part.len()], alone_part, "the windows read the answer's own tokens");
    assert!(joined.len() > alone_part.len(), "windows see beyond the truncated pair");
    assert_eq!(encoder.encode_windows(question, &answer, 3).unwrap().len(), 3, "the cap holds");
    assert_eq!(encoder.encode_windows(question, "A short answer.", 4).unwrap().len(), 1);
}

#[test]
fn sha256_of_a_file_is_sha256_of_its_bytes() {
    let path = fixture().join("tokenizer.json");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(mathrank_rerank::sha256_file(&path).unwrap(), mathrank_rerank::sha256_hex(&bytes));
}
