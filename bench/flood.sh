#!/usr/bin/env bash
# Overload, side by side: the same flood of Search calls against an older mathrank (the policy
# before admission gated inference, OLD_BIN with its own OLD_INDEX) and against this one; then
# Search latency at concurrency 1, 4 and 16 with the score cache cold and warm, fp32 and int8.
# Each server starts fresh for each measurement (no cache carried over), on 127.0.0.1:50071.
#   bench/flood.sh NEW_INDEX MODEL_DIR TOPICS_XML [OLD_BIN OLD_INDEX] > bench/results-flood-DATE.jsonl
# MODEL_DIR is fp32; the int8 model is converted from its model.safetensors into a temporary
# directory. Flood: 48 calls, rerank depth 30, with a 60 s gRPC deadline, then with none (the
# caller gives up after 60 s, as grpcurl --max-time does). FLOOD=0 skips the flood;
# SECONDS_PER_LEVEL [60] sets the latency runs' length, CONCURRENCIES [1 4 16] their levels and
# LOAD_DEPTH their rerank depth [the server's default]. Not part of CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
new_index="$1" model="$2" topics="$3" old_bin="${4:-}" old_index="${5:-}"
seconds="${SECONDS_PER_LEVEL:-60}"
ORT_DYLIB_PATH="$(./scripts/setup-ort.sh | tail -n1)"
export ORT_DYLIB_PATH
cargo build --release --locked -p mathrank-cli -p mathrank-bench >&2
mathrank="$PWD/target/release/mathrank"
mathrank_bench="$PWD/target/release/mathrank-bench"
addr=127.0.0.1:50071
work="$(mktemp -d)"
server=""
cleanup() { [[ -n "$server" ]] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
start() { # binary index model
  "$1" --log warn serve --addr "$addr" --index "$2" --model "$3" --threads 2 >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 600); do
    curl -sf "http://$addr/health" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "server did not become healthy:" >&2; cat "$work/server.log" >&2; exit 1
}
stop() { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; server=""; }
label() { python3 -c "import json,sys; r=json.loads(sys.stdin.readline()); r.update($1); print(json.dumps(r))"; }
echo "{\"machine\": \"$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\", \"model\": \"$model\", \"index\": \"$new_index\"}"

policies=(new)
[[ -n "$old_bin" ]] && policies=(old new)
[[ ${FLOOD:-1} == 0 ]] && policies=()  # FLOOD=0: only the latency part
for policy in "${policies[@]}"; do
  for deadline in 60000 none; do
    if [[ $policy == old ]]; then start "$old_bin" "$old_index" "$model"; else start "$mathrank" "$new_index" "$model"; fi
    args=(--addr "http://$addr" --calls 48 --rerank-depth 30 --topics "$topics" --client-timeout-s 60)
    [[ $deadline != none ]] && args+=(--deadline-ms "$deadline")
    "$mathrank_bench" --log warn flood "${args[@]}" | tail -n1 | label "{'policy': '$policy', 'flood_deadline': '$deadline'}"
    stop
  done
done

"$mathrank" --log error model convert --from "$model" --out "$work/int8" --quantize int8 >&2
for variant in fp32 int8; do
  dir="$model"; [[ $variant == int8 ]] && dir="$work/int8"
  for concurrency in ${CONCURRENCIES:-1 4 16}; do
    # A fresh server: the first pass finds the cache empty and fills it; the second asks the
    # same topics in the same order.
    start "$mathrank" "$new_index" "$dir"
    for cache in cold warm; do
      "$mathrank_bench" --log warn load --addr "http://$addr" --topics "$topics" --concurrency "$concurrency" \
        --seconds "$seconds" ${LOAD_DEPTH:+--rerank-depth "$LOAD_DEPTH"} | grep '^{' | label "{'model': '$variant', 'cache': '$cache'}"
    done
    curl -s "http://$addr/metrics" | grep -E '^mathrank_score_cache_(hits|misses|evictions)_total' \
      | python3 -c "import json,sys; print(json.dumps({'model': '$variant', 'concurrency': $concurrency, 'metrics': dict(l.split() for l in sys.stdin)}))"
    stop
  done
done
