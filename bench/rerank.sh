#!/usr/bin/env bash
# Rerank throughput: mathrank (Rust, ort) against Python onnxruntime on the very same token ids,
# same graph, same thread count, runs alternating; then length-aware batching against naive
# padding on a realistic length mix. Usage: bench/rerank.sh [MODEL_DIR] (default
# ../shared/models/albert-base-random). Needs python3 with pip (installs onnxruntime + numpy
# into .bench-venv/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model="${1:-../shared/models/albert-base-random}"
threads="${THREADS:-2}"
rounds="${ROUNDS:-3}"
ORT_DYLIB_PATH="$(./scripts/setup-ort.sh | tail -n1)"
export ORT_DYLIB_PATH
if [[ ! -x .bench-venv/bin/python ]]; then
  python3 -m venv .bench-venv
  .bench-venv/bin/pip install --quiet "onnxruntime==1.31.*" numpy
fi
cargo build --release --locked -p mathrank-cli -p mathrank-bench >&2
mathrank=target/release/mathrank
mathrank_bench=target/release/mathrank-bench
ids="$(mktemp)"
trap 'rm -f "$ids"' EXIT
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for tokens in 256 512; do
  echo "# $tokens tokens x 16 pairs, $threads threads, $rounds rounds alternating"
  for round in $(seq "$rounds"); do
    "$mathrank_bench" --log warn rerank --model "$model" --pairs 16 --tokens "$tokens" --threads "$threads" --max-batch 16 --ids-out "$ids"
    .bench-venv/bin/python bench/rerank_ort.py --model "$model/model.onnx" --ids "$ids" --threads "$threads"
  done
done
echo "# realistic length mix, 64 pairs: length-aware vs naive padding (batches of 16)"
for round in $(seq "$rounds"); do
  "$mathrank_bench" --log warn rerank --model "$model" --pairs 64 --mix --threads "$threads" --max-batch 16 --batch-tokens 4096
  "$mathrank_bench" --log warn rerank --model "$model" --pairs 64 --mix --threads "$threads" --max-batch 16 --batch-tokens 1000000 --naive
done
