#!/usr/bin/env bash
# Fused attention against the unfused graph on the CPU, at 512 tokens: the same weights converted
# three times (`mathrank model convert`, fp32): `fp32` the default (ONNX Attention, opset 24),
# `fp32-mha` (ONNX Runtime's MultiHeadAttention), `fp32-unfused` (Q·Kᵀ, the mask bias, Softmax
# and ·V as separate operators); the same synthetic token ids (seed 7), measured by
# `mathrank-bench rerank` (median of REPEATS runs after a warm-up, one process per run), the order
# rotating each of ROUNDS rounds. Then, with PROFILE=1, ONNX Runtime's own profile of one batch of
# the int8 graph (which operators ran, on which provider), for the report. Not part of CI.
# Usage: bench/attention.sh [MODEL_DIR] (default ../shared/models/albert-base-random).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model="${1:-../shared/models/albert-base-random}"
threads="${THREADS:-2}"
rounds="${ROUNDS:-2}"
repeats="${REPEATS:-3}"
tokens="${TOKENS:-512}"
ORT_DYLIB_PATH="$(./scripts/setup-ort.sh | tail -n1)"
export ORT_DYLIB_PATH
cargo build --release --locked -p mathrank-cli -p mathrank-bench >&2
mathrank=target/release/mathrank
mathrank_bench=target/release/mathrank-bench
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$mathrank" --log error model convert --from "$model" --out "$work/fp32" >/dev/null
"$mathrank" --log error model convert --from "$model" --out "$work/fp32-unfused" --attention unfused >/dev/null
"$mathrank" --log error model convert --from "$model" --out "$work/fp32-mha" --attention mha >/dev/null
graphs=(fp32-unfused fp32 fp32-mha)
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -oE 'avx2|avx512[a-z_]*|avx_vnni|amx[a-z_0-9]*' | sort -u | xargs); model $model; $threads threads; $tokens tokens; commit $(git rev-parse --short HEAD)"
for round in $(seq "$rounds"); do
  for k in 0 1 2; do
    graph="${graphs[$(( (k + round) % 3 ))]}"
    "$mathrank_bench" --log error rerank --model "$work/$graph" --tokens "$tokens" --max-batch 4 --batches 1 \
      --threads "$threads" --repeats "$repeats" \
      | grep -v '^#' | python3 -c "import json, sys; r = json.loads(sys.stdin.read()); r.update(graph='$graph', round=$round); print(json.dumps(r))"
  done
done
if [[ "${PROFILE:-0}" == 1 ]]; then
  "$mathrank" --log error model convert --from "$model" --out "$work/int8" --quantize int8 >/dev/null
  .bench-venv/bin/python - "$work/int8/model.onnx" "$threads" <<'PY'
import collections, json, sys
import numpy as np, onnxruntime as ort
options = ort.SessionOptions()
options.enable_profiling = True
options.profile_file_prefix = sys.argv[1].rsplit("/", 1)[0] + "/profile"  # in the scratch dir, not the checkout
options.intra_op_num_threads = int(sys.argv[2])
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(7)
ids = rng.integers(5, 29995, size=(4, 256), dtype=np.int64)
feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
feed = {k: v for k, v in feed.items() if k in {i.name for i in session.get_inputs()}}
session.run(None, feed)
events = json.load(open(session.end_profiling()))
ops = collections.defaultdict(lambda: [0, 0.0])
for e in events:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        key = (e["args"]["op_name"], e["args"].get("provider", ""))
        ops[key][0] += 1
        ops[key][1] += e["dur"] / 1000
total = sum(v[1] for v in ops.values())
for (op, provider), (count, ms) in sorted(ops.items(), key=lambda kv: -kv[1][1])[:12]:
    print(json.dumps({"profile": "int8, 4 x 256 tokens", "op": op, "provider": provider, "nodes": count,
                      "ms": round(ms, 1), "share": round(ms / total, 3)}))
PY
fi
