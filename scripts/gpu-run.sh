#!/usr/bin/env bash
# The GPU measurements (docs/benchmarks.md, GPU section), on a machine with an NVIDIA GPU and the
# CUDA 13 runtime libraries, repeatable by anyone. PARTS chooses among:
#   convert  the graphs: fp32 and fp16, with the converter's default fused attention and every
#            form of EXTRA_ATTENTIONS (`mathrank model convert --attention`);
#   parity   each graph on the reference pairs against transformers' logits (fp32 within 1e-3,
#            fp16 within 1e-2), with the attention kernel ONNX Runtime ran per node
#            (ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO=1);
#   sweep    throughput at fixed lengths (TOKENS x BATCHES), mathrank's graphs against torch fp16
#            with SDPA (bench/torch_rerank.py) on the same GPU, one process per side; fp16 also
#            with every kernel choice of KERNELS;
#   mixes    real length mixes (MIXES_DIR/*.jsonl token ids from bench/mixes.sh): the same pairs
#            through mathrank's fp16 graphs and through torch, which gets length-sorted batches;
#   cost     the batch planner's cost model fitted on this GPU for the padding-free graph;
#   e2e      with INDEX and TOPICS, Search over gRPC at rerank depth 100, concurrency 1, 16 and
#            64, with the mean micro-batch size from the server's metrics.
# SIDES (mathrank torch) splits a run: torch needs only Python, mathrank needs ONNX Runtime's
# CUDA libraries (scripts/gpu-bundle.sh carries both sides to a machine without internet).
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
#   PARTS [convert parity sweep mixes cost e2e]; SIDES [mathrank torch]; OUT [gpu-results/]
#   TOKENS, BATCHES  the fixed sweep [128,256,512 and 64,128,256]; MIX_BATCHES [64,256]
#   EXTRA_ATTENTIONS  forms beside the default `onnx` [unfused packed packed-host]
#   KERNELS       --attention-kernels choices for the fp16 sweep [flash,efficient,math]
#   MIXES_DIR     token-id mixes [gpu-results/mixes]; MIX_GRAPHS [fp16 fp16-packed fp16-packed-host]
#   INDEX, TOPICS for e2e; E2E_GRAPHS [fp16 fp16-packed-host]; SECONDS_PER_LEVEL [10]
#   PROVIDER      [cuda]; `cpu` runs what the CPU can (no packed graphs) to try the script
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
batches="${BATCHES:-64,128,256}"
mix_batches="${MIX_BATCHES:-64,256}"
seconds="${SECONDS_PER_LEVEL:-10}"
parts=" ${PARTS:-convert parity sweep mixes cost e2e} "
sides=" ${SIDES:-mathrank torch} "
mixes="${MIXES_DIR:-$out/mixes}"
extra_attentions="${EXTRA_ATTENTIONS-unfused packed packed-host}"
kernels="${KERNELS:-flash,efficient,math}"
models="$out/models"
mkdir -p "$out"
exec > >(tee -a "$out/results.jsonl")
part() { [[ $parts == *" $1 "* ]]; }
side() { [[ $sides == *" $1 "* ]]; }
# Adds keys to every JSON line: tag "dtype='fp16', graph='fp16'".
tag() { "$python" -c "import json,sys
for l in sys.stdin:
    if l.startswith('{'): r=json.loads(l); r.update($1); print(json.dumps(r), flush=True)"; }
# Padding-free graphs have no CPU kernel.
runs_here() { [[ $provider == cuda || $1 != *packed* ]]; }

if side mathrank && [[ $provider == cuda && $parts != " convert " ]]; then
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
if true; then
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
fi

graphs=()
for dtype in fp32 fp16; do
  for attention in default $extra_attentions; do
    graph="$dtype" && [[ $attention == default ]] || graph="$dtype-$attention"
    graphs+=("$graph")
    part convert || continue
    flags=(--dtype "$dtype") && [[ $attention == default ]] || flags+=(--attention "$attention")
    [[ -f "$models/$graph/model.onnx" ]] || "$mathrank" --log warn model convert --from "$base" --out "$models/$graph" "${flags[@]}" >&2 \
      || echo "{\"convert\": \"$graph\", \"error\": \"mathrank model convert failed, see the log\"}"
  done
done

# Parity on the reference pairs, and which attention kernel ran (ONNX Runtime's debug print goes
# to the log).
if part parity && side mathrank; then
  "$python" -c "
import json
ref = json.load(open('$base/reference.json'))
with open('$out/pairs.jsonl', 'w') as f:
    for q, a in ref['pairs']:
        f.write(json.dumps({'query': q, 'answer': a}) + '\n')
"
  for graph in "${graphs[@]}"; do
    runs_here "$graph" || continue
    if ! ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO=1 "$mathrank" --log info score --provider "$provider" --model "$models/$graph" \
      --pairs "$out/pairs.jsonl" > "$out/scores-$graph.jsonl" 2> "$out/kernels-$graph.log"; then
      echo "{\"parity\": \"$graph\", \"provider\": \"$provider\", \"error\": \"mathrank score failed: $(tail -c 300 "$out/kernels-$graph.log" | tr -d '"\\\n')\"}"
      continue
    fi
    # ONNX Runtime may print its kernel choice to either stream.
    "$python" - "$graph" "$out/kernels-$graph.log" "$out/scores-$graph.jsonl" <<'PY'
import json, re, sys
lines = [l.strip() for path in sys.argv[2:] for l in open(path, errors="replace")
         if re.search(r"Attention|attention=|kernel", l) and not l.startswith("{")]
print(json.dumps({"kernels": sys.argv[1], "lines": sorted(set(lines))[:12]}))
PY
    "$python" - "$base/reference.json" "$out/scores-$graph.jsonl" "$graph" "$provider" <<'PY'
import json, math, sys
ref = json.load(open(sys.argv[1]))
got = [json.loads(line) for line in open(sys.argv[2]) if line.startswith("{")]
rel = lambda l: 1 / (1 + math.exp(l[0] - l[1]))
logit = max(abs(g["logits"][c] - r[c]) for g, r in zip(got, ref["logits"]) for c in range(2))
relevance = max(abs(g["relevance"] - rel(r)) for g, r in zip(got, ref["logits"]))
bound = 1e-3 if sys.argv[3].startswith("fp32") else 1e-2
print(json.dumps({"parity": sys.argv[3], "provider": sys.argv[4], "pairs": len(got), "largest_logit_change": logit,
                  "largest_relevance_change": relevance, "bound": bound, "ok": relevance <= bound}))
PY
  done
fi

# Fixed lengths: 4 full micro-batches per timed run, the median of 3 runs after a warm-up.
if part sweep; then
  if side torch && [[ $provider == cuda ]]; then
    "$python" bench/torch_rerank.py --model "$base" --tokens "$tokens" --batch "$batches" --batches 12
  fi
  if side mathrank; then
    for graph in fp32 fp16 $(for a in $extra_attentions; do echo "fp16-$a"; done); do
      runs_here "$graph" || continue
      "$mathrank_bench" --log warn rerank --provider "$provider" --model "$models/$graph" --tokens "$tokens" \
        --max-batch "$batches" --batches 4 --repeats 3 --batch-tokens 1048576 | tag "graph='$graph', kernels='flash,efficient,math'"
    done
    for choice in $kernels; do
      [[ $choice == flash,efficient,math ]] && continue
      "$mathrank_bench" --log warn rerank --provider "$provider" --model "$models/fp16" --tokens "$tokens" \
        --max-batch "$batches" --batches 4 --repeats 3 --batch-tokens 1048576 --attention-kernels "$choice" \
        | tag "graph='fp16', kernels='$choice'"
    done
  fi
fi

# Real length mixes: the very same token ids on both sides.
if part mixes; then
  for mix in "$mixes"/*.jsonl; do
    [[ -f $mix ]] || { echo "{\"mixes\": \"$mixes\", \"error\": \"no *.jsonl there: run bench/mixes.sh\"}"; break; }
    name="$(basename "$mix" .jsonl)"
    if side torch && [[ $provider == cuda ]]; then
      "$python" bench/torch_rerank.py --model "$base" --ids "$mix" --batch "$mix_batches" --repeats 3 | tag "mix='$name'"
    fi
    if side mathrank; then
      for graph in ${MIX_GRAPHS:-fp16 fp16-packed fp16-packed-host}; do
        runs_here "$graph" || continue
        "$mathrank_bench" --log warn rerank --provider "$provider" --model "$models/$graph" --ids "$mix" \
          --max-batch "$mix_batches" --repeats 3 --batch-tokens 131072 | tag "mix='$name', graph='$graph'"
      done
    fi
  done
fi

# The planner's cost model for the padding-free graph, on this GPU (fixed lengths: a packed batch
# of equal pairs costs what a padded one would).
if part cost && side mathrank && [[ $provider == cuda ]]; then
  "$mathrank_bench" --log warn cost-model --provider cuda --model "$models/fp16-packed-host" --widths 32,64,128,256,512 \
    --sizes 4,16,64,256 --max-tokens 131072 --repeats 3 | tag "graph='fp16-packed-host'"
fi

# End to end: Search at rerank depth 100 over gRPC (needs INDEX and TOPICS). The score cache is
# off, so that repeated topics cost inference like new ones.
if part e2e && side mathrank && [[ -n "${INDEX:-}" && -n "${TOPICS:-}" ]]; then
  metric() { curl -s http://127.0.0.1:50081/metrics | awk -v m="$1" '$1 == m {print $2}'; }
  for graph in ${E2E_GRAPHS:-fp16 fp16-packed-host}; do
    runs_here "$graph" || continue
    "$mathrank" --log warn serve --provider "$provider" --model "$models/$graph" --index "$INDEX" --addr 127.0.0.1:50081 \
      --default-timeout 60s --score-cache-mb 0 > "$out/serve-$graph.log" 2>&1 &
    server=$!
    for _ in $(seq 600); do curl -sf http://127.0.0.1:50081/health >/dev/null && break; sleep 0.5; done
    for concurrency in 1 16 64; do
      pairs0="$(metric mathrank_rerank_pairs_total)" batches0="$(metric mathrank_rerank_batches_total)"
      "$mathrank_bench" --log warn load --addr http://127.0.0.1:50081 --topics "$TOPICS" --rerank-depth 100 \
        --concurrency "$concurrency" --seconds "$seconds" | tag "graph='$graph'"
      pairs1="$(metric mathrank_rerank_pairs_total)" batches1="$(metric mathrank_rerank_batches_total)"
      "$python" -c "print('{\"graph\": \"$graph\", \"concurrency\": $concurrency, \"mean_pairs_per_micro_batch\": %.1f}' % ((${pairs1:-0} - ${pairs0:-0}) / max(1, ${batches1:-0} - ${batches0:-0})))"
    done
    kill "$server"; wait "$server" 2>/dev/null || true
  done
fi
