//! Model import: a random tiny checkpoint written here (safetensors and torch's zip of
//! pickles), converted, run through ONNX Runtime, and checked against an independent forward
//! pass written here too; int8; parity on the `../shared` models (conformance); and fetch
//! against a local server with the hub's URL layout and headers.

use std::path::Path;

use mathrank_rerank::{RerankerOptions, ScoreReport};
use mathrank_tests::{ort_library, shared_dir, tiny_model};

const QUESTION: &str =
    "Remainder of a power modulo a prime: how do I compute $3^{100} \\bmod 7$ with Fermat's little theorem?";

// ---- Model conversion: a random tiny checkpoint written here, converted, run, and checked
// ---- against an independent forward pass written here too.

mod convert {
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::path::Path;

    use mathrank_bench::synth::SplitMix64;
    use mathrank_rerank::{EncodedPair, Reranker, RerankerOptions};

    const V: usize = 30_000; // the fixture tokenizer's vocabulary
    const E: usize = 8;
    const H: usize = 16;
    const HEADS: usize = 2;
    const I: usize = 24;
    const LAYERS: usize = 3;
    const P: usize = 64;
    const LAYER: &str = "albert.encoder.albert_layer_groups.0.albert_layers.0.";

    type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

    fn random_weights(seed: u64) -> Weights {
        let mut rng = SplitMix64::new(seed);
        let mut weights = Weights::new();
        let mut add = |name: &str, shape: Vec<usize>, scale: f32, offset: f32| {
            let n = shape.iter().product();
            let data = (0..n).map(|_| offset + scale * (rng.unit() as f32 * 2.0 - 1.0)).collect();
            weights.insert(name.to_owned(), (shape, data));
        };
        add("albert.embeddings.word_embeddings.weight", vec![V, E], 0.5, 0.0);
        add("albert.embeddings.position_embeddings.weight", vec![P, E], 0.5, 0.0);
        add("albert.embeddings.token_type_embeddings.weight", vec![2, E], 0.5, 0.0);
        add("albert.embeddings.LayerNorm.weight", vec![E], 0.2, 1.0);
        add("albert.embeddings.LayerNorm.bias", vec![E], 0.2, 0.0);
        add("albert.encoder.embedding_hidden_mapping_in.weight", vec![H, E], 0.4, 0.0);
        add("albert.encoder.embedding_hidden_mapping_in.bias", vec![H], 0.1, 0.0);
        for (part, out, inp) in [
            ("attention.query", H, H),
            ("attention.key", H, H),
            ("attention.value", H, H),
            ("attention.dense", H, H),
            ("ffn", I, H),
            ("ffn_output", H, I),
        ] {
            add(&format!("{LAYER}{part}.weight"), vec![out, inp], 0.3, 0.0);
            add(&format!("{LAYER}{part}.bias"), vec![out], 0.1, 0.0);
        }
        for norm in ["attention.LayerNorm", "full_layer_layer_norm"] {
            add(&format!("{LAYER}{norm}.weight"), vec![H], 0.2, 1.0);
            add(&format!("{LAYER}{norm}.bias"), vec![H], 0.2, 0.0);
        }
        add("albert.pooler.weight", vec![H, H], 0.4, 0.0);
        add("albert.pooler.bias", vec![H], 0.1, 0.0);
        add("classifier.weight", vec![2, H], 0.5, 0.0);
        add("classifier.bias", vec![2], 0.1, 0.0);
        // Present in real checkpoints, unused by the classifier: must be ignored.
        add("predictions.bias", vec![V], 0.1, 0.0);
        weights
    }

    fn config() -> String {
        serde_json::json!({
            "architectures": ["AlbertForSequenceClassification"], "model_type": "albert", "vocab_size": V,
            "embedding_size": E, "hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "intermediate_size": I, "hidden_act": "gelu_new", "max_position_embeddings": P, "type_vocab_size": 2,
            "layer_norm_eps": 1e-12, "num_hidden_groups": 1, "inner_group_num": 1, "torch_dtype": "float32",
            "some_future_key": true
        })
        .to_string()
    }

    fn write_safetensors(weights: &Weights, path: &Path) {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = weights
            .iter()
            .map(|(name, (shape, data))| {
                (name.clone(), data.iter().flat_map(|v| v.to_le_bytes()).collect(), shape.clone())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(name, raw, shape)| {
                (
                    name.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), raw).unwrap(),
                )
            })
            .collect();
        std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    }

    /// A torch zip checkpoint: the pickle protocol-2 opcodes that torch.save writes.
    fn write_pytorch_bin(weights: &Weights, path: &Path) {
        fn unicode(out: &mut Vec<u8>, text: &str) {
            out.push(b'X');
            out.extend((text.len() as u32).to_le_bytes());
            out.extend(text.as_bytes());
        }
        fn int(out: &mut Vec<u8>, value: usize) {
            out.push(b'J');
            out.extend((value as i32).to_le_bytes());
        }
        let mut pickle = vec![0x80, 2];
        pickle.extend(b"ccollections\nOrderedDict\n)R(");
        for (key, (name, (shape, _))) in weights.iter().enumerate() {
            unicode(&mut pickle, name);
            pickle.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
            unicode(&mut pickle, "storage");
            pickle.extend(b"ctorch\nFloatStorage\n");
            unicode(&mut pickle, &key.to_string());
            unicode(&mut pickle, "cpu");
            int(&mut pickle, shape.iter().product());
            pickle.extend(b"tQ");
            int(&mut pickle, 0);
            pickle.push(b'(');
            for &dim in shape {
                int(&mut pickle, dim);
            }
            pickle.extend(b"t(");
            let mut stride = 1;
            let mut strides = vec![0; shape.len()];
            for axis in (0..shape.len()).rev() {
                strides[axis] = stride;
                stride *= shape[axis];
            }
            for s in strides {
                int(&mut pickle, s);
            }
            pickle.extend(b"t\x89ccollections\nOrderedDict\n)RtR");
        }
        pickle.extend(b"u.");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("archive/data.pkl", stored).unwrap();
        zip.write_all(&pickle).unwrap();
        for (key, (_, data)) in weights.values().enumerate() {
            zip.start_file(format!("archive/data/{key}"), stored).unwrap();
            zip.write_all(&data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        }
        zip.finish().unwrap();
    }

    fn linear(w: &Weights, prefix: &str, x: &[f32]) -> Vec<f32> {
        let (shape, weight) = &w[&format!("{prefix}.weight")];
        let bias = &w[&format!("{prefix}.bias")].1;
        let (out, inp) = (shape[0], shape[1]);
        (0..out).map(|o| bias[o] + (0..inp).map(|i| weight[o * inp + i] * x[i]).sum::<f32>()).collect()
    }

    fn layer_norm(w: &Weights, prefix: &str, x: &[f32]) -> Vec<f32> {
        let n = x.len() as f32;
        let mean = x.iter().sum::<f32>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
        let (gamma, beta) = (&w[&format!("{prefix}.weight")].1, &w[&format!("{prefix}.bias")].1);
        x.iter().enumerate().map(|(i, v)| (v - mean) / (var + 1e-12).sqrt() * gamma[i] + beta[i]).collect()
    }

    /// AlbertForSequenceClassification, one unpadded sequence, straight from the definitions.
    fn forward(w: &Weights, pair: &EncodedPair) -> [f32; 2] {
        let table = |name: &str, row: usize| -> Vec<f32> { w[name].1[row * E..(row + 1) * E].to_vec() };
        let mut hidden: Vec<Vec<f32>> = pair
            .input_ids
            .iter()
            .zip(&pair.token_type_ids)
            .enumerate()
            .map(|(s, (&id, &t))| {
                let word = table("albert.embeddings.word_embeddings.weight", id as usize);
                let pos = table("albert.embeddings.position_embeddings.weight", s);
                let ty = table("albert.embeddings.token_type_embeddings.weight", t as usize);
                let sum: Vec<f32> = (0..E).map(|e| word[e] + pos[e] + ty[e]).collect();
                linear(
                    w,
                    "albert.encoder.embedding_hidden_mapping_in",
                    &layer_norm(w, "albert.embeddings.LayerNorm", &sum),
                )
            })
            .collect();
        let d = H / HEADS;
        for _ in 0..LAYERS {
            let q: Vec<Vec<f32>> = hidden.iter().map(|x| linear(w, &format!("{LAYER}attention.query"), x)).collect();
            let k: Vec<Vec<f32>> = hidden.iter().map(|x| linear(w, &format!("{LAYER}attention.key"), x)).collect();
            let v: Vec<Vec<f32>> = hidden.iter().map(|x| linear(w, &format!("{LAYER}attention.value"), x)).collect();
            let n = hidden.len();
            let mut context = vec![vec![0f32; H]; n];
            for head in 0..HEADS {
                for i in 0..n {
                    let scores: Vec<f32> = (0..n)
                        .map(|j| {
                            (0..d).map(|c| q[i][head * d + c] * k[j][head * d + c]).sum::<f32>() / (d as f32).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f32::MIN, f32::max);
                    let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f32 = exps.iter().sum();
                    for j in 0..n {
                        for c in 0..d {
                            context[i][head * d + c] += exps[j] / total * v[j][head * d + c];
                        }
                    }
                }
            }
            hidden = hidden
                .iter()
                .zip(&context)
                .map(|(x, ctx)| {
                    let projected = linear(w, &format!("{LAYER}attention.dense"), ctx);
                    let residual: Vec<f32> = x.iter().zip(&projected).map(|(a, b)| a + b).collect();
                    let attended = layer_norm(w, &format!("{LAYER}attention.LayerNorm"), &residual);
                    let ffn: Vec<f32> = linear(w, &format!("{LAYER}ffn"), &attended)
                        .into_iter()
                        .map(|x| {
                            0.5 * x * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
                        })
                        .collect();
                    let out = linear(w, &format!("{LAYER}ffn_output"), &ffn);
                    let residual: Vec<f32> = out.iter().zip(&attended).map(|(a, b)| a + b).collect();
                    layer_norm(w, &format!("{LAYER}full_layer_layer_norm"), &residual)
                })
                .collect();
        }
        let pooled: Vec<f32> = linear(w, "albert.pooler", &hidden[0]).into_iter().map(f32::tanh).collect();
        let logits = linear(w, "classifier", &pooled);
        [logits[0], logits[1]]
    }

    /// A random tiny checkpoint (config.json, model.safetensors, tokenizer.json) in `dir`.
    pub(super) fn write_checkpoint(dir: &Path) {
        std::fs::write(dir.join("config.json"), config()).unwrap();
        std::fs::copy(super::tiny_model().join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
        write_safetensors(&random_weights(21), &dir.join("model.safetensors"));
    }

    #[test]
    fn converted_checkpoints_match_an_independent_forward_pass() {
        let weights = random_weights(11);
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("checkpoint");
        std::fs::create_dir(&checkpoint).unwrap();
        std::fs::write(checkpoint.join("config.json"), config()).unwrap();
        std::fs::copy(super::tiny_model().join("tokenizer.json"), checkpoint.join("tokenizer.json")).unwrap();
        write_safetensors(&weights, &checkpoint.join("model.safetensors"));
        write_pytorch_bin(&weights, &checkpoint.join("pytorch_model.bin"));

        let mut rng = SplitMix64::new(5);
        let pairs: Vec<EncodedPair> = [5usize, 17, 40, 9]
            .iter()
            .map(|&len| {
                let split = len / 3;
                let mut ids: Vec<i64> = (0..len).map(|_| 5 + rng.below(29_000) as i64).collect();
                ids[0] = 2;
                ids[split] = 3;
                ids[len - 1] = 3;
                EncodedPair { input_ids: ids, token_type_ids: (0..len).map(|i| i64::from(i > split)).collect() }
            })
            .collect();
        let expected: Vec<[f32; 2]> = pairs.iter().map(|pair| forward(&weights, pair)).collect();
        // Both weight formats with the default (fused) attention, and every other form of
        // attention from safetensors.
        let mut runs: Vec<(&str, mathrank_model::Attention)> =
            vec![("pytorch_model.bin", mathrank_model::Attention::default())];
        // (The packed forms run on CUDA only; their CPU twin, packed-check, runs the same packing.)
        for name in mathrank_model::Attention::NAMES {
            let attention: mathrank_model::Attention = name.parse().unwrap();
            if !attention.cuda_only() {
                runs.push(("model.safetensors", attention));
            }
        }
        for (file, attention) in runs {
            let out = dir.path().join(format!("converted-{file}-{attention}"));
            let options = mathrank_model::GraphOptions { attention, ..Default::default() };
            let manifest = mathrank_model::convert_to(&checkpoint, &out, Some(file), &options).unwrap();
            assert_eq!(manifest.attention, attention.describe());
            assert_eq!(manifest.weights_file, file);
            assert!(manifest.sources.iter().all(|s| s.sha256.len() == 64));
            let options = RerankerOptions {
                ort_library: Some(super::ort_library()),
                intra_threads: 1,
                max_length: P,
                ..RerankerOptions::default()
            };
            let reranker = Reranker::load(&out, &options).unwrap();
            // One job: the pairs are padded into shared micro-batches, so the mask is exercised.
            let scores = reranker.submit(pairs.clone()).unwrap().wait().unwrap().scores;
            for (i, (score, want)) in scores.iter().zip(&expected).enumerate() {
                for c in 0..2 {
                    assert!(
                        (score.logits[c] - want[c]).abs() < 1e-4,
                        "{file}, {attention} attention, pair {i}: {:?} vs {want:?}",
                        score.logits
                    );
                }
            }
        }
        // The shared layer is stored once, not once per layer.
        let onnx_bytes =
            std::fs::metadata(dir.path().join("converted-model.safetensors-onnx/model.onnx")).unwrap().len();
        let weight_bytes: usize =
            weights.iter().filter(|(n, _)| !n.starts_with("predictions")).map(|(_, (_, d))| d.len() * 4).sum();
        assert!(onnx_bytes < weight_bytes as u64 + 64 * 1024, "{onnx_bytes} bytes for {weight_bytes} bytes of weights");
    }

    #[test]
    fn a_tensor_shape_larger_than_its_storage_is_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path());
        // 2^40 values declared over a 4-value storage: the old reader reserved them first.
        let mut weights = random_weights(5);
        weights.insert("classifier.bias".into(), (vec![1 << 20, 1 << 20], vec![0.0; 4]));
        write_pytorch_bin(&weights, &dir.path().join("pytorch_model.bin"));
        let err = mathrank_model::convert_with(dir.path(), &dir.path().join("out"), Some("pytorch_model.bin"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs more values than its storage holds"), "{err}");
    }

    #[test]
    fn clear_conversion_errors() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path();
        std::fs::write(
            from.join("config.json"),
            config().replace("\"num_hidden_groups\":1", "\"num_hidden_groups\":2"),
        )
        .unwrap();
        let err = mathrank_model::convert(from, &from.join("out")).unwrap_err().to_string();
        assert!(err.contains("num_hidden_groups"), "{err}");
        std::fs::write(
            from.join("config.json"),
            config().replace("AlbertForSequenceClassification", "BertForMaskedLM"),
        )
        .unwrap();
        assert!(
            mathrank_model::convert(from, &from.join("out"))
                .unwrap_err()
                .to_string()
                .contains("AlbertForSequenceClassification")
        );
        std::fs::write(from.join("config.json"), config()).unwrap();
        let err = mathrank_model::convert(from, &from.join("out")).unwrap_err().to_string();
        assert!(err.contains("no tokenizer.json") && err.contains("albert-base-v2"), "{err}");
        std::fs::copy(super::tiny_model().join("tokenizer.json"), from.join("tokenizer.json")).unwrap();
        let mut weights = random_weights(3);
        weights.remove("classifier.bias");
        write_safetensors(&weights, &from.join("model.safetensors"));
        let err = mathrank_model::convert(from, &from.join("out")).unwrap_err().to_string();
        assert!(err.contains("classifier.bias"), "{err}");
    }
}

/// Converts a `../shared` model directory's checkpoint and checks its logits on the five
/// reference pairs.
fn assert_converted_parity(name: &str, weights: &str, tolerance: f32) {
    let source = shared_dir().join("models").join(name);
    let out = tempfile::tempdir().unwrap();
    mathrank_model::convert_with(&source, out.path(), Some(weights)).unwrap();
    let options = RerankerOptions { ort_library: Some(ort_library()), intra_threads: 1, ..RerankerOptions::default() };
    let reranker = mathrank_rerank::Reranker::load(out.path(), &options).unwrap();
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("reference.json")).unwrap()).unwrap();
    let pairs: Vec<(String, String)> = serde_json::from_value(reference["pairs"].clone()).unwrap();
    for (i, (question, answer)) in pairs.iter().enumerate() {
        let logits = reranker.score_blocking(question, &[answer.as_str()]).unwrap().scores[0].logits;
        for c in 0..2 {
            let expected = reference["logits"][i][c].as_f64().unwrap() as f32;
            assert!(
                (logits[c] - expected).abs() <= tolerance,
                "{name} from {weights}, pair {i}: {logits:?} vs {expected}"
            );
        }
    }
}

#[test]
#[ignore = "conformance against ../shared; run by .ci/run with --ignored"]
fn conformance_convert_albert_tiny_from_safetensors_and_bin() {
    assert_converted_parity("albert-tiny", "model.safetensors", 1e-4);
    assert_converted_parity("albert-tiny", "pytorch_model.bin", 1e-4);
}

#[test]
#[ignore = "conformance against ../shared; run by .ci/run with --ignored"]
fn conformance_int8_albert_base_random_stays_close() {
    let source = shared_dir().join("models/albert-base-random");
    let out = tempfile::tempdir().unwrap();
    mathrank_model::convert_full(&source, out.path(), Some("model.safetensors"), true).unwrap();
    let options = RerankerOptions { ort_library: Some(ort_library()), intra_threads: 1, ..RerankerOptions::default() };
    let reranker = mathrank_rerank::Reranker::load(out.path(), &options).unwrap();
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("reference.json")).unwrap()).unwrap();
    let pairs: Vec<(String, String)> = serde_json::from_value(reference["pairs"].clone()).unwrap();
    let mut largest = 0f32;
    for (i, (question, answer)) in pairs.iter().enumerate() {
        let got = reranker.score_blocking(question, &[answer.as_str()]).unwrap().scores[0].relevance;
        let logits = [0, 1].map(|c| reference["logits"][i][c].as_f64().unwrap() as f32);
        largest = largest.max((got - mathrank_rerank::relevance(logits)).abs());
    }
    println!("int8 (per-row activations): largest relevance change on the reference pairs {largest}");
    assert!(largest < 0.01, "{largest}");
}

#[test]
#[ignore = "conformance against ../shared; run by .ci/run with --ignored"]
fn conformance_convert_albert_base_random() {
    assert_converted_parity("albert-base-random", "model.safetensors", 1e-4);
}

/// Op types of the graph ONNX Runtime runs for `model.onnx` (after its fusions, CPU provider),
/// with how many nodes of each.
fn optimized_ops(onnx: &Path) -> std::collections::BTreeMap<String, usize> {
    let out = tempfile::tempdir().unwrap();
    let optimized = out.path().join("optimized.onnx");
    let options = mathrank_rerank::SessionOptions {
        provider: mathrank_rerank::Provider::Cpu,
        device_id: 0,
        intra_threads: 1,
        optimization_level: 3,
        attention_kernels: mathrank_rerank::AttentionKernels::DEFAULT,
        ort_library: Some(ort_library()),
    };
    mathrank_rerank::write_optimized_model(onnx, &optimized, &options).unwrap();
    let bytes = std::fs::read(&optimized).unwrap();
    let model = <mathrank_model::onnx::ModelProto as prost::Message>::decode(bytes.as_slice()).unwrap();
    let mut ops = std::collections::BTreeMap::new();
    for node in model.graph.unwrap().node {
        *ops.entry(node.op_type.unwrap_or_default()).or_insert(0) += 1;
    }
    ops
}

/// In what ONNX Runtime runs: one attention node per layer, no Softmax left, and every
/// residual Add but the first of each layer fused into SkipLayerNormalization.
fn assert_fused(ops: &std::collections::BTreeMap<String, usize>, layers: usize, what: &str) {
    let count = |op: &str| ops.get(op).copied().unwrap_or(0);
    assert_eq!(count("Attention") + count("MultiHeadAttention"), layers, "{what}: {ops:?}");
    assert_eq!(count("Softmax"), 0, "{what}: {ops:?}");
    assert!(count("SkipLayerNormalization") >= 2 * layers - 1, "{what}: {ops:?}");
}

#[test]
fn onnx_runtime_runs_one_attention_kernel_per_layer_and_fuses_the_layer_norms() {
    use mathrank_model::{Attention, GraphOptions, Precision};
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint");
    std::fs::create_dir(&checkpoint).unwrap();
    convert::write_checkpoint(&checkpoint);
    let mut graphs: Vec<GraphOptions> =
        [Precision::F32, Precision::Int8, Precision::F16].into_iter().map(GraphOptions::new).collect();
    graphs.push(GraphOptions { precision: Precision::F32, attention: Attention::MultiHead });
    for graph in graphs {
        let out = dir.path().join(format!("{:?}-{}", graph.precision, graph.attention));
        mathrank_model::convert_to(&checkpoint, &out, None, &graph).unwrap();
        assert_fused(&optimized_ops(&out.join("model.onnx")), 3, &format!("{graph:?}"));
    }
    // The unfused graph, kept to measure against, really is unfused.
    let out = dir.path().join("unfused");
    let unfused = GraphOptions { precision: Precision::F32, attention: Attention::Unfused };
    mathrank_model::convert_to(&checkpoint, &out, None, &unfused).unwrap();
    assert_eq!(optimized_ops(&out.join("model.onnx")).get("Softmax"), Some(&3));
}

#[test]
#[ignore = "conformance against ../shared; run by .ci/run with --ignored"]
fn conformance_base_sized_graphs_run_12_attention_kernels_and_23_skip_layer_norms() {
    let source = shared_dir().join("models/albert-base-random");
    for precision in [mathrank_model::Precision::F32, mathrank_model::Precision::Int8, mathrank_model::Precision::F16] {
        let out = tempfile::tempdir().unwrap();
        mathrank_model::convert_as(&source, out.path(), Some("model.safetensors"), precision).unwrap();
        let ops = optimized_ops(&out.path().join("model.onnx"));
        println!("{precision:?}: {ops:?}");
        assert_fused(&ops, 12, &format!("{precision:?}"));
    }
}

/// Converts the test checkpoint to float32 and at `precision`, scores the same three answers
/// with both, and returns the two reports, the manifest and the graph at `precision`.
fn convert_beside_fp32(
    precision: mathrank_model::Precision,
) -> (ScoreReport, ScoreReport, mathrank_model::Manifest, mathrank_model::onnx::GraphProto) {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint");
    std::fs::create_dir(&checkpoint).unwrap();
    convert::write_checkpoint(&checkpoint);
    let (fp32, other) = (dir.path().join("fp32"), dir.path().join("other"));
    mathrank_model::convert_as(&checkpoint, &fp32, None, mathrank_model::Precision::F32).unwrap();
    let manifest = mathrank_model::convert_as(&checkpoint, &other, None, precision).unwrap();
    let options = RerankerOptions {
        ort_library: Some(ort_library()),
        intra_threads: 1,
        max_length: 64,
        ..RerankerOptions::default()
    };
    let answers =
        ["Use Fermat's little theorem.", "The determinant is the product of the pivots.", "By induction on $n$."];
    let score = |dir: &Path| {
        mathrank_rerank::Reranker::load(dir, &options).unwrap().score_blocking(QUESTION, &answers).unwrap()
    };
    let bytes = std::fs::read(other.join("model.onnx")).unwrap();
    let model = <mathrank_model::onnx::ModelProto as prost::Message>::decode(bytes.as_slice()).unwrap();
    (score(&fp32), score(&other), manifest, model.graph.unwrap())
}

#[test]
fn int8_conversion_keeps_scores_close_and_the_shared_layer_once() {
    let (full, quantized, manifest, graph) = convert_beside_fp32(mathrank_model::Precision::Int8);
    assert!(manifest.dtype.starts_with("int8"));
    // Hidden size 16 amplifies quantisation error; on the base-sized model the change is
    // about 0.003 (conformance_int8_albert_base_random_stays_close).
    for (a, b) in full.scores.iter().zip(&quantized.scores) {
        assert!((a.relevance - b.relevance).abs() < 0.1, "{a:?} vs {b:?}");
        assert_ne!(a.logits, b.logits, "the int8 graph must really differ");
    }
    // The shared layer's six matrices are stored once in int8, however many layers use them.
    let int8_matrices = graph.initializer.iter().filter(|t| t.data_type == Some(3) && !t.dims.is_empty()).count();
    assert_eq!(int8_matrices, 6);
    let count = |op: &str| graph.node.iter().filter(|n| n.op_type.as_deref() == Some(op)).count();
    assert_eq!(count("MatMulIntegerToFloat"), 6 * 3, "six products per layer, three layers");
    // Each layer quantises four activations (the one input of Q, K and V, the attention's
    // context, the FFN's input and its activation), per row, and keeps attention fused in float32.
    assert_eq!(count("QuantizeLinear"), 4 * 3);
    assert_eq!(count("Attention"), 3);
    assert_eq!(count("Softmax"), 0);
}

#[test]
fn fp16_conversion_keeps_scores_close_casts_once_and_stores_the_shared_layer_once() {
    // ONNX Runtime's CPU provider runs the float16 graph too, so its parity is checked here;
    // its speed is a GPU matter.
    let (full, half, manifest, graph) = convert_beside_fp32(mathrank_model::Precision::F16);
    assert!(manifest.dtype.starts_with("float16"), "{}", manifest.dtype);
    for (a, b) in full.scores.iter().zip(&half.scores) {
        for c in 0..2 {
            assert!((a.logits[c] - b.logits[c]).abs() < 1e-2, "{a:?} vs {b:?}");
        }
        assert_ne!(a.logits, b.logits, "the float16 graph must really differ");
    }
    // The shared layer's six weight matrices and six biases, once, in float16 (type 10)...
    let shared_halves = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == Some(10) && t.name.as_deref().is_some_and(|n| n.contains("albert_layer_groups")))
        .collect::<Vec<_>>();
    assert_eq!(shared_halves.iter().filter(|t| t.dims.len() == 2).count(), 6);
    assert_eq!(shared_halves.iter().filter(|t| t.dims.len() == 1).count(), 6 + 4, "six biases, two LayerNorms");
    // ... the embeddings too, while only the pooler and the classifier stay float32 (type 1).
    for tensor in &graph.initializer {
        let name = tensor.name.as_deref().unwrap_or_default();
        if tensor.data_type == Some(1) {
            assert!(name.starts_with("albert.pooler") || name.starts_with("classifier"), "{name} is float32");
        }
    }
    let words =
        graph.initializer.iter().find(|t| t.name.as_deref() == Some("albert.embeddings.word_embeddings.weight.f16"));
    assert_eq!(words.and_then(|t| t.data_type), Some(10));
    // One cast in all (the first token out): none around each product, which made the graph
    // slower than float32 on a GPU. Attention is the same fused operator as in float32.
    let count = |op: &str| graph.node.iter().filter(|n| n.op_type.as_deref() == Some(op)).count();
    assert_eq!(count("Cast"), 1);
    assert_eq!((count("Attention"), count("Softmax")), (3, 0));
    // Every LayerNorm's input and output has a declared [batch, sequence, width] shape, which
    // is what lets ONNX Runtime fuse the residual Adds into SkipLayerNormalization.
    for node in graph.node.iter().filter(|n| n.op_type.as_deref() == Some("LayerNormalization")) {
        for name in [&node.input[0], &node.output[0]] {
            let info = graph.value_info.iter().find(|v| v.name.as_ref() == Some(name));
            let Some(mathrank_model::onnx::type_proto::Value::TensorType(tensor)) =
                info.and_then(|v| v.r#type.as_ref()).and_then(|t| t.value.as_ref())
            else {
                panic!("{name} has no declared shape");
            };
            assert_eq!(tensor.elem_type, Some(10), "{name}");
            assert_eq!(tensor.shape.as_ref().map(|s| s.dim.len()), Some(3), "{name}");
        }
    }
}

#[test]
#[ignore = "conformance against ../shared; run by .ci/run with --ignored"]
fn conformance_fp16_albert_base_random_stays_close() {
    let source = shared_dir().join("models/albert-base-random");
    let out = tempfile::tempdir().unwrap();
    mathrank_model::convert_as(&source, out.path(), Some("model.safetensors"), mathrank_model::Precision::F16).unwrap();
    let options = RerankerOptions { ort_library: Some(ort_library()), intra_threads: 1, ..RerankerOptions::default() };
    let reranker = mathrank_rerank::Reranker::load(out.path(), &options).unwrap();
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("reference.json")).unwrap()).unwrap();
    let pairs: Vec<(String, String)> = serde_json::from_value(reference["pairs"].clone()).unwrap();
    let (mut largest_logit, mut largest_relevance) = (0f32, 0f32);
    for (i, (question, answer)) in pairs.iter().enumerate() {
        let got = reranker.score_blocking(question, &[answer.as_str()]).unwrap().scores[0];
        let logits = [0, 1].map(|c| reference["logits"][i][c].as_f64().unwrap() as f32);
        for (got, expected) in got.logits.iter().zip(logits) {
            largest_logit = largest_logit.max((got - expected).abs());
        }
        largest_relevance = largest_relevance.max((got.relevance - mathrank_rerank::relevance(logits)).abs());
    }
    println!(
        "fp16 on the CPU provider: largest logit change {largest_logit}, largest relevance change {largest_relevance}"
    );
    assert!(largest_logit < 1e-2, "{largest_logit}");
}

// ---- Model fetch against a local server with the hub's URL layout and headers.

mod fetch {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use sha2::Digest;

    /// Serves `/{repo}/resolve/{revision}/{file}` like the hub: small files directly, large
    /// (LFS) files through a 302 to `/cdn/{file}` whose HEAD carries `X-Linked-Etag` (sha256)
    /// and `X-Linked-Size`. Optionally drops the first full download of the weights halfway,
    /// or publishes a wrong sha256.
    struct FakeHub {
        endpoint: String,
        log: Arc<Mutex<Vec<String>>>,
    }

    fn start(files: HashMap<String, Vec<u8>>, drop_first: bool, wrong_sha: bool) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let server_log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut dropped = !drop_first;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut range_start = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range_start = value.trim().trim_end_matches('-').parse::<usize>().ok();
                    }
                }
                let parts: Vec<&str> = request_line.split_whitespace().collect();
                let (method, path) = (parts[0], parts[1]);
                server_log.lock().unwrap().push(format!("{method} {path} range={range_start:?}"));
                let name = path.rsplit('/').next().unwrap_or("").to_owned();
                let Some(body) = files.get(&name) else {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                };
                let large = name.ends_with(".safetensors") || name.ends_with(".bin");
                if large && path.contains("/resolve/") {
                    let mut sha = hex(&sha2::Sha256::digest(body));
                    if wrong_sha {
                        sha = "0".repeat(64);
                    }
                    let head = format!(
                        "HTTP/1.1 302 Found\r\nLocation: /cdn/{name}\r\nX-Linked-Etag: \"{sha}\"\r\nX-Linked-Size: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    continue;
                }
                let start = range_start.unwrap_or(0).min(body.len());
                let status = if range_start.is_some() { "206 Partial Content" } else { "200 OK" };
                let rest = &body[start..];
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: \"abc\"\r\nConnection: close\r\n\r\n",
                    rest.len()
                );
                let _ = stream.write_all(head.as_bytes());
                if method == "GET" {
                    if large && !dropped {
                        dropped = true;
                        let _ = stream.write_all(&rest[..rest.len() / 2]);
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        continue;
                    }
                    let _ = stream.write_all(rest);
                }
            }
        });
        FakeHub { endpoint, log }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn hub_files() -> HashMap<String, Vec<u8>> {
        let fixture = super::tiny_model();
        let mut files = HashMap::new();
        for name in ["config.json", "tokenizer.json"] {
            files.insert(name.to_owned(), std::fs::read(fixture.join(name)).unwrap());
        }
        // The shared tiny fixture holds no checkpoint: write a random one with its config.
        let dir = tempfile::tempdir().unwrap();
        super::convert::write_checkpoint(dir.path());
        for name in ["config.json", "model.safetensors"] {
            files.insert(name.to_owned(), std::fs::read(dir.path().join(name)).unwrap());
        }
        files
    }

    fn options(hub: &FakeHub, cache: &std::path::Path) -> mathrank_model::FetchOptions {
        mathrank_model::FetchOptions {
            endpoint: hub.endpoint.clone(),
            repo: "AnReu/albert-for-math-ar-base-ft".into(),
            revision: "main".into(),
            out: None,
            token: None,
            cache: cache.to_path_buf(),
        }
    }

    #[test]
    fn fetch_resumes_a_dropped_download_verifies_and_converts() {
        let hub = start(hub_files(), true, false);
        let cache = tempfile::tempdir().unwrap();
        let mut seen = 0u64;
        let (dir, manifest) =
            mathrank_model::fetch(&options(&hub, cache.path()), &mut |p| seen = seen.max(p.downloaded)).unwrap();
        assert!(dir.starts_with(cache.path()) && dir.ends_with("AnReu--albert-for-math-ar-base-ft/main"));
        for file in ["model.onnx", "tokenizer.json", "config.json", "manifest.json"] {
            assert!(dir.join(file).is_file(), "{file}");
        }
        assert_eq!(manifest.source_repo, "AnReu/albert-for-math-ar-base-ft");
        assert_eq!(manifest.weights_file, "model.safetensors");
        assert!(seen > 0);
        let log = hub.log.lock().unwrap().clone();
        assert!(
            log.iter().any(|l| l.starts_with("GET /cdn/model.safetensors range=Some(")),
            "resumed with Range: {log:?}"
        );
        // The cached model loads and scores.
        let options = mathrank_rerank::RerankerOptions {
            ort_library: Some(super::ort_library()),
            intra_threads: 1,
            max_length: 64,
            ..Default::default()
        };
        let reranker = mathrank_rerank::Reranker::load(&dir, &options).unwrap();
        assert!(reranker.score_blocking("q", &["a"]).unwrap().scores[0].relevance.is_finite());
    }

    #[test]
    fn a_wrong_checksum_is_rejected_and_nothing_is_cached() {
        let hub = start(hub_files(), false, true);
        let cache = tempfile::tempdir().unwrap();
        let err = mathrank_model::fetch(&options(&hub, cache.path()), &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch") && err.contains("model.safetensors"), "{err}");
        assert!(!cache.path().join("models/AnReu--albert-for-math-ar-base-ft/main").exists());
        let downloads = cache.path().join("downloads/AnReu--albert-for-math-ar-base-ft/main");
        assert!(!downloads.join("model.safetensors").exists() && !downloads.join("model.safetensors.part").exists());
    }

    #[test]
    fn a_missing_repository_or_an_offline_hub_says_what_to_do() {
        let hub = start(HashMap::new(), false, false);
        let cache = tempfile::tempdir().unwrap();
        let err = mathrank_model::fetch(&options(&hub, cache.path()), &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("no config.json") && err.contains("convert the model from there"), "{err}");
        let mut offline = options(&hub, cache.path());
        offline.endpoint = "http://127.0.0.1:9".into();
        let err = mathrank_model::fetch(&offline, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("cannot reach") && err.contains("convert the model from there"), "{err}");
    }
}

#[test]
fn a_pairs_score_does_not_depend_on_its_batch_mates_bit_for_bit() {
    // The score cache relies on it: on ONNX Runtime's CPU kernels a pair's logits are the same
    // bits alone and padded among 15 others, in every precision with fused attention, and in
    // float32 with every form of attention.
    use mathrank_model::{Attention, GraphOptions, Precision};
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint");
    std::fs::create_dir(&checkpoint).unwrap();
    convert::write_checkpoint(&checkpoint);
    let mut graphs: Vec<GraphOptions> =
        [Precision::F32, Precision::Int8, Precision::F16].into_iter().map(GraphOptions::new).collect();
    for attention in [Attention::Unfused, Attention::MultiHead, Attention::MultiHeadOffsets] {
        graphs.push(GraphOptions { precision: Precision::F32, attention });
    }
    for graph in graphs {
        let out = dir.path().join(format!("{:?}-{}", graph.precision, graph.attention));
        mathrank_model::convert_to(&checkpoint, &out, None, &graph).unwrap();
        // One micro-batch for all 16 pairs, padded to the longest.
        let options = RerankerOptions {
            ort_library: Some(ort_library()),
            intra_threads: 1,
            max_length: 64,
            max_batch: 16,
            batch_tokens: 1 << 20,
            ..RerankerOptions::default()
        };
        let reranker = mathrank_rerank::Reranker::load(&out, &options).unwrap();
        assert!(reranker.info().batch_invariant, "{graph:?}: the load-time probe agrees");
        let answer = "By Fermat, $3^6 \\equiv 1$, so the remainder is $4$.";
        let alone = reranker.score_blocking(QUESTION, &[answer]).unwrap().scores[0].logits;
        let mates: Vec<String> = (0..15).map(|i| "long answer words ".repeat(i + 1)).collect();
        let mut batch: Vec<&str> = mates.iter().map(String::as_str).collect();
        batch.insert(7, answer);
        let report = reranker.score_blocking(QUESTION, &batch).unwrap();
        assert!(report.padding_efficiency < 1.0, "the batch must really be padded");
        let among = report.scores[7].logits;
        assert_eq!(alone.map(f32::to_bits), among.map(f32::to_bits), "{graph:?}: alone {alone:?}, among {among:?}");
    }
}

#[test]
fn convert_and_fetch_never_replace_a_directory_they_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint");
    std::fs::create_dir(&checkpoint).unwrap();
    convert::write_checkpoint(&checkpoint);
    let precious = dir.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("thesis.tex"), "\\documentclass{article}").unwrap();
    let err = mathrank_model::convert(&checkpoint, &precious).unwrap_err().to_string();
    assert!(err.contains("refusing to replace") && err.contains("thesis.tex"), "{err}");
    assert!(precious.join("thesis.tex").is_file());
    assert!(!precious.join("model.onnx").exists(), "nothing was written into it");
    // A model directory from an earlier conversion may be replaced.
    let out = dir.path().join("out");
    mathrank_model::convert(&checkpoint, &out).unwrap();
    mathrank_model::convert(&checkpoint, &out).unwrap();

    let mut options = mathrank_model::FetchOptions::new("AnReu/albert-for-math-ar-base-ft", "main");
    options.endpoint = "http://127.0.0.1:9".into();
    options.cache = dir.path().join("cache");
    options.out = Some(precious.clone());
    let err = mathrank_model::fetch(&options, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("refusing to replace"), "{err}");
    assert!(precious.join("thesis.tex").is_file());
    for revision in ["../../etc", "main/../x", "a b", "", "x?y=1", "/abs"] {
        let options = mathrank_model::FetchOptions { revision: revision.into(), ..options.clone() };
        let err = mathrank_model::fetch(&options, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("invalid revision"), "{revision:?}: {err}");
    }
    let options = mathrank_model::FetchOptions { repo: "../x".into(), ..options };
    assert!(mathrank_model::fetch(&options, &mut |_| {}).unwrap_err().to_string().contains("invalid repository"));

    // A second fetch into the same directory fails at once while the first holds its lock.
    let target = dir.path().join("fetched");
    let held = std::fs::File::create(target.with_extension("lock")).unwrap();
    held.try_lock().unwrap();
    let options =
        mathrank_model::FetchOptions { repo: "AnReu/albert-for-math-ar-base-ft".into(), out: Some(target), ..options };
    let err = mathrank_model::fetch(&options, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("being fetched by another mathrank"), "{err}");
}

#[test]
fn an_edited_model_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint");
    std::fs::create_dir(&checkpoint).unwrap();
    convert::write_checkpoint(&checkpoint);
    let out = dir.path().join("out");
    mathrank_model::convert(&checkpoint, &out).unwrap();
    let options = RerankerOptions {
        ort_library: Some(ort_library()),
        intra_threads: 1,
        max_length: 64,
        ..RerankerOptions::default()
    };
    mathrank_rerank::Reranker::load(&out, &options).expect("the model as converted loads");
    // One flipped byte near the end of the graph's weights.
    let onnx = out.join("model.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x55;
    std::fs::write(&onnx, bytes).unwrap();
    let err = mathrank_rerank::Reranker::load(&out, &options).unwrap_err().to_string();
    assert!(err.contains("model.onnx does not match manifest.json"), "{err}");
}

#[test]
fn packed_graphs_run_packed_attention_per_layer_and_name_their_form() {
    // The packed forms run on CUDA only; what can be checked without a GPU is their structure
    // (their CPU twin, packed-check, is scored against the independent forward pass above).
    use mathrank_model::{ATTENTION_METADATA, Attention, GraphOptions, Precision, packed::HOST_INPUTS};
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint");
    std::fs::create_dir(&checkpoint).unwrap();
    convert::write_checkpoint(&checkpoint);
    for (attention, precision) in [
        (Attention::Packed, Precision::F16),
        (Attention::PackedHost, Precision::F16),
        (Attention::PackedHost, Precision::F32),
    ] {
        let out = dir.path().join(format!("{attention}-{precision:?}"));
        let options = GraphOptions { precision, attention };
        mathrank_model::convert_to(&checkpoint, &out, None, &options).unwrap();
        // On the CPU provider, a clear refusal rather than ONNX Runtime's missing-kernel error.
        let cpu = mathrank_rerank::RerankerOptions {
            ort_library: Some(ort_library()),
            intra_threads: 1,
            max_length: 64,
            ..mathrank_rerank::RerankerOptions::default()
        };
        let err = mathrank_rerank::Reranker::load(&out, &cpu).unwrap_err().to_string();
        assert!(err.contains("runs on CUDA only"), "{err}");
        let bytes = std::fs::read(out.join("model.onnx")).unwrap();
        let model = <mathrank_model::onnx::ModelProto as prost::Message>::decode(bytes.as_slice()).unwrap();
        let metadata: Vec<_> = model.metadata_props.iter().map(|p| (p.key.as_deref(), p.value.as_deref())).collect();
        assert_eq!(metadata, [(Some(ATTENTION_METADATA), Some(attention.name()))]);
        let graph = model.graph.unwrap();
        let count = |op: &str| graph.node.iter().filter(|n| n.op_type.as_deref() == Some(op)).count();
        assert_eq!(count("PackedMultiHeadAttention"), 3, "{attention}: one per layer, three layers");
        assert_eq!(count("MultiHeadAttention") + count("Attention") + count("Softmax"), 0);
        // Packing in the graph waits on NonZero twice; packing on the host needs no NonZero.
        let inputs: Vec<_> = graph.input.iter().map(|i| i.name.clone().unwrap()).collect();
        if attention == Attention::PackedHost {
            assert_eq!(count("NonZero"), 0);
            assert_eq!(inputs[3..], HOST_INPUTS.map(String::from));
        } else {
            assert_eq!(count("NonZero"), 2);
            assert_eq!(inputs.len(), 3);
        }
        // Every per-token activation is declared `[1, tokens, width]`.
        let per_token = graph.value_info.iter().filter(|v| {
            let Some(mathrank_model::onnx::type_proto::Value::TensorType(t)) =
                v.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                return false;
            };
            let dims = &t.shape.as_ref().unwrap().dim;
            dims.len() == 3
                && matches!(
                    dims[0].value,
                    Some(mathrank_model::onnx::tensor_shape_proto::dimension::Value::DimValue(1))
                )
        });
        assert!(per_token.count() > 20, "{attention}: packed activations declared");
    }
}
