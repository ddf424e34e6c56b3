#!/usr/bin/env bash
# End-to-end load over gRPC (loopback): QPS and p50/p95/p99 at concurrency 1, 4, 16, BM25 only
# and with reranking (depth 30, pairs truncated to 256 tokens), plus the server's RSS every 15 s.
# Usage: bench/load.sh INDEX_DIR MODEL_DIR TOPICS_XML
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
index="$1"; model="$2"; topics="$3"
bm25_seconds="${BM25_SECONDS:-15}"; rerank_seconds="${RERANK_SECONDS:-60}"
ORT_DYLIB_PATH="$(./scripts/setup-ort.sh | tail -n1)"
export ORT_DYLIB_PATH
cargo build --release --locked -p mathrank-cli -p mathrank-bench >&2
mathrank=target/release/mathrank
mathrank_bench=target/release/mathrank-bench
addr=127.0.0.1:50093
"$mathrank" --log warn serve --index "$index" --model "$model" --max-length 256 --addr "$addr" --max-queued 256 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until "$mathrank" --log error search --addr "$addr" --no-rerank --top-k 1 "warm up" >/dev/null 2>&1; do sleep 1; done
( while kill -0 $server 2>/dev/null; do echo "{\"server_rss_mib\": $(( $(awk '/VmRSS/ {print $2}' /proc/$server/status) / 1024 )), \"t\": $SECONDS}"; sleep 15; done ) &
sampler=$!
echo "# machine: $(nproc) cores; index $index; model $model"
"$mathrank_bench" --log warn load --addr "http://$addr" --topics "$topics" --rerank false --seconds "$bm25_seconds" --concurrency 1,4,16
"$mathrank_bench" --log warn load --addr "http://$addr" --topics "$topics" --rerank true --rerank-depth 30 --seconds "$rerank_seconds" --concurrency 1,4,16
kill $sampler 2>/dev/null || true
