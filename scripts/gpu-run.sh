#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md (issue 14), on a machine with an NVIDIA GPU and the CUDA 13
# runtime libraries, repeatable by anyone:
#   1. parity of the CUDA provider on albert-base-random's reference pairs, fp32 and fp16;
#   2. throughput at 128, 256 and 512 tokens, batches of 32 to 256, mathrank fp32 and fp16
#      against transformers in float16 on the same GPU, same lengths, same batch (one process
#      per side, so that start-up is paid once); fp16 also with ONNX Runtime's graph
#      optimisation at level 1, which leaves out its transformer fusions, to see what they add;
#   3. with INDEX and TOPICS set, Search over gRPC at rerank depth 100, concurrency 1, 16 and 64,
#      with the mean micro-batch size from the server's metrics (are batches filled across calls).
# Needs (environment):
#   MATHRANK_BIN  a mathrank built with `cargo build --release -p mathrank-cli -p mathrank-bench --features mathrank-rerank/cuda`
#                 [target/release/mathrank]
#   MATHRANK_BENCH_BIN  mathrank-bench from the same build [target/release/mathrank-bench]
#   ORT_GPU_DIR   libonnxruntime.so.1.31.1, libonnxruntime_providers_shared.so and
#                 libonnxruntime_providers_cuda.so from PyPI's onnxruntime-gpu==1.31.1 [.ort-gpu/,
#                 fetched from PyPI when it is reachable]
#   PYTHON        a python with torch, transformers and NVIDIA's CUDA 13 packages (nvidia-cublas,
#                 nvidia-cuda-runtime, nvidia-curand, nvidia-cudnn-cu13) [python3]
#   MODEL_DIR     albert-base-random (config.json, model.safetensors, tokenizer.json, reference.json)
#                 [$SHARED/models/albert-base-random, SHARED defaulting to ../shared]
#   INDEX, TOPICS for part 3; OUT [gpu-results/]; SECONDS_PER_LEVEL [20]
#   PROVIDER      [cuda]; `cpu` runs the same steps on the CPU, to try the script without a GPU
#   TOKENS, BATCHES  the sweep [128,256,512 and 32,64,128,256]; PARTS  which parts to run [1 2 3];
#   E2E_DTYPES  the models part 3 serves [fp16 fp32]
# Not run by CI: no GPU there. Prints JSON lines; also writes them to $OUT/results.jsonl.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mathrank="${MATHRANK_BIN:-target/release/mathrank}"
mathrank_bench="${MATHRANK_BENCH_BIN:-target/release/mathrank-bench}"
ort_dir="${ORT_GPU_DIR:-.ort-gpu}"
python="${PYTHON:-python3}"
shared="${SHARED:-../shared}"
base="${MODEL_DIR:-$shared/models/albert-base-random}"
out="${OUT:-gpu-results}"
provider="${PROVIDER:-cuda}"
tokens="${TOKENS:-128,256,512}"
batches="${BATCHES:-32,64,128,256}"
seconds="${SECONDS_PER_LEVEL:-20}"
parts=" ${PARTS:-1 2 3} "
mkdir -p "$out"
exec > >(tee -a "$out/results.jsonl")

if [[ $provider == cuda && ! -f "$ort_dir/libonnxruntime_providers_cuda.so" ]]; then
  mkdir -p "$ort_dir"
  "$python" -m pip download --quiet --no-deps --only-binary=:all: "onnxruntime-gpu==1.31.1" -d "$ort_dir/wheel" >&2
  "$python" - "$ort_dir" <<'PY'
import glob, os, sys, zipfile
dest = sys.argv[1]
wheel = glob.glob(os.path.join(dest, "wheel", "onnxruntime_gpu-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if base.startswith("libonnxruntime"):
            with z.open(name) as src, open(os.path.join(dest, base), "wb") as dst:
                dst.write(src.read())
PY
fi
if [[ $provider == cuda ]]; then
  ort_lib="$(ls "$ort_dir"/libonnxruntime.so.1.* | head -n1)"
  # The CUDA provider library loads next to libonnxruntime; CUDA and cuDNN come from the nvidia-*
  # packages of the Python environment.
  cuda_libs="$("$python" - <<'PY'
import importlib, os
dirs = []
for package in ["nvidia.cublas", "nvidia.cuda_runtime", "nvidia.curand", "nvidia.cudnn", "nvidia.cufft", "nvidia.nvjitlink", "nvidia.cu13"]:
    try:
        module = importlib.import_module(package)
    except ImportError:
        continue
    for base in list(getattr(module, "__path__", [])):
        lib = os.path.join(base, "lib")
        if os.path.isdir(lib):
            dirs.append(lib)
print(":".join(dirs))
PY
)"
  export LD_LIBRARY_PATH="$ort_dir:${cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export ORT_DYLIB_PATH="$ort_lib"
  echo "{\"gpu\": \"$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n1)\", \"ort\": \"$ort_lib\", \"cuda_libs\": \"$cuda_libs\"}"
fi

models="$out/models"
for dtype in fp32 fp16; do
  [[ -f "$models/$dtype/model.onnx" ]] || "$mathrank" --log warn model convert --from "$base" --out "$models/$dtype" --dtype "$dtype" >&2 \
    || { echo "converting to $dtype failed" >&2; exit 1; }
done

# 1. Parity on the reference pairs: fp32 within 1e-3 of transformers, fp16 within 1e-2.
"$python" -c "
import json
ref = json.load(open('$base/reference.json'))
with open('$out/pairs.jsonl', 'w') as f:
    for q, a in ref['pairs']:
        f.write(json.dumps({'query': q, 'answer': a}) + '\n')
"
for dtype in fp32 fp16; do
  [[ $parts == *" 1 "* ]] || break
  if ! "$mathrank" --log warn score --provider "$provider" --model "$models/$dtype" --pairs "$out/pairs.jsonl" > "$out/scores-$dtype.jsonl"; then
    echo "{\"parity\": \"$dtype\", \"provider\": \"$provider\", \"error\": \"mathrank score failed, see above\"}"
    exit 3
  fi
  "$python" - "$base/reference.json" "$out/scores-$dtype.jsonl" "$dtype" "$provider" <<'PY'
import json, math, sys
ref = json.load(open(sys.argv[1]))
got = [json.loads(line) for line in open(sys.argv[2])]
rel = lambda l: 1 / (1 + math.exp(l[0] - l[1]))
logit = max(abs(g["logits"][c] - r[c]) for g, r in zip(got, ref["logits"]) for c in range(2))
relevance = max(abs(g["relevance"] - rel(r)) for g, r in zip(got, ref["logits"]))
bound = 1e-3 if sys.argv[3] == "fp32" else 1e-2
print(json.dumps({"parity": sys.argv[3], "provider": sys.argv[4], "pairs": len(got), "largest_logit_change": logit,
                  "largest_relevance_change": relevance, "bound": bound, "ok": logit <= bound}))
PY
done

# 2. Throughput: mathrank fp32 and fp16 against torch fp16, same lengths and batch sizes; each
# setting runs 4 full micro-batches per timed run, the median of 3 runs after a warm-up.
tag() { "$python" -c "import json,sys
for l in sys.stdin:
    if l.startswith('{'): r=json.loads(l); r.update($1); print(json.dumps(r), flush=True)"; }
if [[ $parts == *" 2 "* ]]; then
for dtype in fp32 fp16; do
  "$mathrank_bench" --log warn rerank --provider "$provider" --model "$models/$dtype" --tokens "$tokens" \
    --max-batch "$batches" --batches 4 --repeats 3 | tag "dtype='$dtype'"
done
"$mathrank_bench" --log warn rerank --provider "$provider" --model "$models/fp16" --tokens 256 --max-batch 64,256 \
  --batches 4 --repeats 3 --optimization-level 1 | tag "dtype='fp16', optimization_level=1"
if [[ $provider == cuda ]]; then
  "$python" bench/torch_rerank.py --model "$base" --tokens "$tokens" --batch "$batches" --batches 12
fi
fi

# 3. End to end: Search at rerank depth 100 over gRPC (needs INDEX and TOPICS). The score cache
# is off, so that repeated topics cost inference like new ones.
if [[ $parts == *" 3 "* && -n "${INDEX:-}" && -n "${TOPICS:-}" ]]; then
  metric() { curl -s http://127.0.0.1:50081/metrics | awk -v m="$1" '$1 == m {print $2}'; }
  for dtype in ${E2E_DTYPES:-fp16 fp32}; do
    "$mathrank" --log warn serve --provider "$provider" --model "$models/$dtype" --index "$INDEX" --addr 127.0.0.1:50081 \
      --default-timeout 60s --score-cache-mb 0 > "$out/serve-$dtype.log" 2>&1 &
    server=$!
    for _ in $(seq 600); do curl -sf http://127.0.0.1:50081/health >/dev/null && break; sleep 0.5; done
    for concurrency in 1 16 64; do
      pairs0="$(metric mathrank_rerank_pairs_total)" batches0="$(metric mathrank_rerank_batches_total)"
      "$mathrank_bench" --log warn load --addr http://127.0.0.1:50081 --topics "$TOPICS" --rerank-depth 100 \
        --concurrency "$concurrency" --seconds "$seconds" | tag "dtype='$dtype'"
      pairs1="$(metric mathrank_rerank_pairs_total)" batches1="$(metric mathrank_rerank_batches_total)"
      "$python" -c "print('{\"dtype\": \"$dtype\", \"concurrency\": $concurrency, \"mean_pairs_per_micro_batch\": %.1f}' % ((${pairs1:-0} - ${pairs0:-0}) / max(1, ${batches1:-0} - ${batches0:-0})))"
    done
    curl -s http://127.0.0.1:50081/metrics | grep -E '^mathrank_model_provider' | sed 's/^/# /' >&2
    kill "$server"; wait "$server" 2>/dev/null || true
  done
fi
