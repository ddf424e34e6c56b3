#!/usr/bin/env bash
# mathrank's reranking, whole process, against the usual Python loop (onnxruntime, batches of
# 16 in input order, each padded to its longest, on the torch-exported model.onnx), on the very
# same token ids, rotating the order of the runs each round. mathrank runs graphs converted from
# the same weights: `fp32-unfused` (attention as MatMul, Softmax, MatMul: the converter's graph
# before fused attention), `fp32` (fused attention, the default) and `int8` (MatMulIntegerToFloat,
# per-row activations, fused fp32 attention), all planned by cost; `greedy` is the previous
# planner on the torch-exported graph, `python-int8` the Python loop on ONNX Runtime's own
# quantize_dynamic of that graph. IMPLS chooses [python fp32-unfused fp32 int8].
# Mixes: the issue's (48 pairs, mean about 145 tokens, one of 487), a lognormal one, and
# ARQMath 2021 topics against real answers from ../shared. Not part of CI.
# Usage: bench/batching.sh [MODEL_DIR] (default ../shared/models/albert-base-random: model.onnx
# for Python, model.safetensors for mathrank's conversions). MIXES [outlier lognormal arqmath].
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model="${1:-../shared/models/albert-base-random}"
shared="${SHARED:-../shared}"
threads="${THREADS:-2}"
rounds="${ROUNDS:-3}"
ORT_DYLIB_PATH="$(./scripts/setup-ort.sh | tail -n1)"
export ORT_DYLIB_PATH
impls="${IMPLS:-python fp32-unfused fp32 int8}"
mixes="${MIXES:-outlier lognormal arqmath}"
if [[ ! -x .bench-venv/bin/python ]] || ! .bench-venv/bin/python -c 'import onnx, onnxruntime' 2>/dev/null; then
  python3 -m venv .bench-venv
  .bench-venv/bin/pip install --quiet "onnxruntime==1.31.*" numpy onnx
fi
cargo build --release --locked -p mathrank-cli -p mathrank-bench >&2
mathrank=target/release/mathrank
mathrank_bench=target/release/mathrank-bench
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for impl in $impls; do
  case "$impl" in
    fp32-unfused) "$mathrank" --log error model convert --from "$model" --out "$work/$impl" --attention unfused >/dev/null ;;
    fp32) "$mathrank" --log error model convert --from "$model" --out "$work/$impl" >/dev/null ;;
    int8) "$mathrank" --log error model convert --from "$model" --out "$work/$impl" --quantize int8 >/dev/null ;;
    python-int8) .bench-venv/bin/python -c "
from onnxruntime.quantization import QuantType, quantize_dynamic
quantize_dynamic('$model/model.onnx', '$work/python-int8.onnx', weight_type=QuantType.QInt8)" ;;
  esac
done

# Synthetic mixes: random ids from the ordinary vocabulary, [CLS] A [SEP] B [SEP].
python3 - "$work" <<'PY'
import json, math, random, sys
work = sys.argv[1]
def pair(rng, total):
    q = max(3, int(total * 0.3))
    ids = [2] + [rng.randrange(5, 30000) for _ in range(q - 2)] + [3]
    ids += [rng.randrange(5, 30000) for _ in range(total - q - 1)] + [3]
    return {"input_ids": ids, "token_type_ids": [0] * q + [1] * (total - q)}
def write(name, lengths, seed):
    rng = random.Random(seed)
    with open(f"{work}/{name}.jsonl", "w") as f:
        for n in lengths:
            f.write(json.dumps(pair(rng, n)) + "\n")
rng = random.Random(11)
# The issue's mix: 47 lognormal lengths (median 120) and one outlier of 487, in random order.
lengths = [min(400, max(24, int(120 * math.exp(0.55 * rng.gauss(0, 1))))) for _ in range(47)] + [487]
rng.shuffle(lengths)
write("outlier", lengths, 1)
rng = random.Random(12)
write("lognormal", [min(512, max(24, int(120 * math.exp(0.9 * rng.gauss(0, 1))))) for _ in range(64)], 2)
PY

# ARQMath 2021 topics (segment A as eval reads them) against real answers of the shared dump.
"$mathrank" --log error index --sample --index "$work/sample" >/dev/null
"$mathrank" --log error eval --index "$work/sample" --no-rerank --topics "$shared/data/arqmath/topics.arqmath-2021-task1-origin.xml" \
  --run-out "$work/run.txt" --inputs-out "$work/topics.jsonl" >/dev/null
"$mathrank" --log error texts --dump "$shared/data/stackexchange/math-threads_Posts.xml" > "$work/texts.jsonl"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
topics = [json.loads(l)["query"] for l in open(f"{work}/topics.jsonl")]
answers = [t["text"] for t in map(json.loads, open(f"{work}/texts.jsonl")) if t["kind"] == "answer"]
with open(f"{work}/arqmath-texts.jsonl", "w") as f:
    for k in range(64):
        f.write(json.dumps({"query": topics[k % len(topics)], "answer": answers[(k * 7) % len(answers)]}) + "\n")
PY
# Token ids with the same tokenizer (the tiny model shares the albert-base-v2 vocabulary).
"$mathrank" --log error score --model "$shared/models/albert-tiny" --pairs "$work/arqmath-texts.jsonl" --emit-ids \
  | python3 -c '
import json, sys
for line in sys.stdin:
    ids = json.loads(line)["input_ids"]
    sep = ids.index(3)
    print(json.dumps({"input_ids": ids, "token_type_ids": [0] * (sep + 1) + [1] * (len(ids) - sep - 1)}))
' > "$work/arqmath.jsonl"

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -oE 'avx2|avx512[a-z_]*|avx_vnni|amx[a-z_0-9]*' | sort -u | xargs); model $model; $threads threads; $rounds rounds, order rotating; commit $(git rev-parse --short HEAD)"
run() { # name, command...
  local name="$1"; shift
  local started ended
  started=$(date +%s.%N)
  "$@" > /dev/null
  ended=$(date +%s.%N)
  python3 -c "print('$name', round($ended - $started, 3))"
}
command_of() { # impl, mix
  local ids="$work/$2.jsonl"
  case "$1" in
    python) echo ".bench-venv/bin/python bench/score_loop.py --model $model/model.onnx --ids $ids --threads $threads --batch 16" ;;
    python-int8) echo ".bench-venv/bin/python bench/score_loop.py --model $work/python-int8.onnx --ids $ids --threads $threads --batch 16" ;;
    greedy) echo "$mathrank --log error score --ids --pairs $ids --model $model --threads $threads --planning greedy" ;;
    *) echo "$mathrank --log error score --ids --pairs $ids --model $work/$1 --threads $threads --planning cost" ;;
  esac
}
read -r -a list <<< "$impls"
for mix in $mixes; do
  python3 -c "
import json
l = [len(json.loads(x)['input_ids']) for x in open('$work/$mix.jsonl')]
print(json.dumps({'mix': '$mix', 'pairs': len(l), 'mean_tokens': round(sum(l) / len(l), 1), 'max_tokens': max(l)}))"
  for round in $(seq "$rounds"); do
    for k in $(seq 0 $(( ${#list[@]} - 1 ))); do
      impl="${list[$(( (k + round) % ${#list[@]} ))]}"
      # shellcheck disable=SC2046
      echo "{\"mix\": \"$mix\", \"round\": $round, $(run "$impl" $(command_of "$impl" "$mix") | awk '{printf "\"impl\": \"%s\", \"seconds\": %s", $1, $2}')}"
    done
  done
done
