#!/usr/bin/env bash
# gRPC `Rerank` against HTTP `/v1/rerank` (Cohere shape) on the same server, 30 candidates per
# call, run side by side: the tiny model at concurrency 1 and 16 (so that protocol cost shows),
# then the base-sized model at concurrency 4. Prints one JSON line per run.
# Usage: bench/protocols.sh [BASE_MODEL_DIR] (default ../shared/models/albert-base-random)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
base_model="${1:-../shared/models/albert-base-random}"
tiny_seconds="${TINY_SECONDS:-10}"; base_seconds="${BASE_SECONDS:-60}"; rounds="${ROUNDS:-2}"
ORT_DYLIB_PATH="$(./scripts/setup-ort.sh | tail -n1)"
export ORT_DYLIB_PATH
[[ -n "${SKIP_BUILD:-}" ]] || cargo build --release --locked -p mathrank-cli -p mathrank-bench >&2
mathrank=target/release/mathrank
mathrank_bench=target/release/mathrank-bench
addr=127.0.0.1:50094
index="$(mktemp -d)/index"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
run_server() {
  "$mathrank" --log warn serve --addr "$addr" --index "$index" --model "$1" --max-length 256 --max-queued 256 &
  server=$!
  until curl -sf "http://$addr/health" >/dev/null; do sleep 0.5; done
}
trap 'kill $server 2>/dev/null || true' EXIT
run_server crates/mathrank-rerank/tests/fixtures/albert-tiny
for round in $(seq "$rounds"); do
  for protocol in grpc http; do
    "$mathrank_bench" --log warn load --addr "http://$addr" --method rerank --candidates 30 \
      --protocol "$protocol" --concurrency 1,16 --seconds "$tiny_seconds" | grep -v '^# reproduce' | sed "s/^{/{\"model\":\"tiny\",\"round\":$round,/"
  done
done
kill $server; wait $server 2>/dev/null || true
run_server "$base_model"
for protocol in grpc http; do
  "$mathrank_bench" --log warn load --addr "http://$addr" --method rerank --candidates 30 \
    --protocol "$protocol" --concurrency 4 --seconds "$base_seconds" | grep -v '^# reproduce' | sed 's/^{/{"model":"base",/'
done
