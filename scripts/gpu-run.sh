#!/usr/bin/env bash
# The GPU measurements of the README (issue 14), on a machine with an NVIDIA GPU and the CUDA 13
# runtime libraries, repeatable by anyone:
#   1. parity of the CUDA provider on albert-base-random's reference pairs, fp32 and fp16;
#   2. throughput at 128, 256 and 512 tokens, batches of 32 to 256, mathrank fp32 and fp16
#      against transformers in float16 on the same GPU, same lengths, same batch;
#   3. with INDEX set, Search over gRPC at rerank depth 100, concurrency 1 and 16.
# Needs (environment):
#   MATHRANK_BIN  a mathrank built with `cargo build --release -p mathrank-cli --features mathrank-rerank/cuda`
#                 [target/release/mathrank]
#   ORT_GPU_DIR   libonnxruntime.so.1.31.1, libonnxruntime_providers_shared.so and
#                 libonnxruntime_providers_cuda.so from PyPI's onnxruntime-gpu==1.31.1 [.ort-gpu/,
#                 fetched from PyPI when it is reachable]
#   PYTHON        a python with torch, transformers and NVIDIA's CUDA 13 packages (nvidia-cublas,
#                 nvidia-cuda-runtime, nvidia-curand, nvidia-cudnn-cu13) [python3]
#   SHARED        the shared data and models [../shared]; INDEX, TOPICS for part 3; OUT [gpu-results/]
# Not run by CI: no GPU there. Prints JSON lines; also writes them to $OUT/results.jsonl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mathrank="${MATHRANK_BIN:-target/release/mathrank}"
ort_dir="${ORT_GPU_DIR:-.ort-gpu}"
python="${PYTHON:-python3}"
shared="${SHARED:-../shared}"
out="${OUT:-gpu-results}"
mkdir -p "$out"
exec > >(tee -a "$out/results.jsonl")

if [[ ! -f "$ort_dir/libonnxruntime_providers_cuda.so" ]]; then
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
ort_lib="$(ls "$ort_dir"/libonnxruntime.so.1.* | head -n1)"
# The CUDA provider library loads next to libonnxruntime; CUDA and cuDNN come from the nvidia-*
# packages of the Python environment.
cuda_libs="$("$python" - <<'PY'
import importlib, os
dirs = []
for package in ["nvidia.cublas", "nvidia.cuda_runtime", "nvidia.curand", "nvidia.cudnn", "nvidia.cufft", "nvidia.nvjitlink"]:
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
echo "{\"gpu\": \"$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n1)\", \"ort\": \"$ort_lib\"}"

models="$out/models"
base="$shared/models/albert-base-random"
for dtype in fp32 fp16; do
  [[ -f "$models/$dtype/model.onnx" ]] || "$mathrank" --log warn model convert --from "$base" --out "$models/$dtype" --dtype "$dtype" >&2
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
  "$mathrank" --log warn score --provider cuda --model "$models/$dtype" --pairs "$out/pairs.jsonl" > "$out/scores-$dtype.jsonl"
  "$python" - "$base/reference.json" "$out/scores-$dtype.jsonl" "$dtype" <<'PY'
import json, math, sys
ref = json.load(open(sys.argv[1]))
got = [json.loads(line) for line in open(sys.argv[2])]
rel = lambda l: 1 / (1 + math.exp(l[0] - l[1]))
logit = max(abs(g["logits"][c] - r[c]) for g, r in zip(got, ref["logits"]) for c in range(2))
relevance = max(abs(g["relevance"] - rel(r)) for g, r in zip(got, ref["logits"]))
bound = 1e-3 if sys.argv[3] == "fp32" else 1e-2
print(json.dumps({"parity": sys.argv[3], "provider": "cuda", "largest_logit_change": logit,
                  "largest_relevance_change": relevance, "bound": bound, "ok": logit <= bound}))
PY
done

# 2. Throughput: mathrank fp32 and fp16 against torch fp16, same lengths and batch sizes.
for tokens in 128 256 512; do
  for batch in 32 64 128 256; do
    for dtype in fp32 fp16; do
      "$mathrank" --log warn bench rerank --provider cuda --model "$models/$dtype" --pairs $((batch * 8)) \
        --tokens "$tokens" --max-batch "$batch" --batch-tokens $((batch * tokens)) --repeats 5 | tail -n1 \
        | "$python" -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(dtype='$dtype', tokens=$tokens, batch=$batch); print(json.dumps(r))"
    done
    "$python" bench/torch_rerank.py --model "$base" --tokens "$tokens" --batch "$batch"
  done
done

# 3. End to end: Search at rerank depth 100 over gRPC (needs INDEX and TOPICS).
if [[ -n "${INDEX:-}" && -n "${TOPICS:-}" ]]; then
  for dtype in fp32 fp16; do
    "$mathrank" --log warn serve --provider cuda --model "$models/$dtype" --index "$INDEX" --addr 127.0.0.1:50081 \
      --default-timeout 60s > "$out/serve-$dtype.log" 2>&1 &
    server=$!
    for _ in $(seq 600); do curl -sf http://127.0.0.1:50081/health >/dev/null && break; sleep 0.5; done
    "$mathrank" --log warn bench load --addr http://127.0.0.1:50081 --topics "$TOPICS" --rerank-depth 100 \
      --concurrency 1,16 --seconds 60 | grep '^{' \
      | "$python" -c "import json,sys; [print(json.dumps({**json.loads(l), 'dtype': '$dtype'})) for l in sys.stdin]"
    kill "$server"; wait "$server" 2>/dev/null || true
  done
fi
