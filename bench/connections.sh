#!/usr/bin/env bash
# The "Connections under attack" table of docs/benchmarks.md: a release `mathrank serve --no-rerank` over the embedded
# sample on loopback, with a file-descriptor limit of 20,000, against bench/connections.py: first
# the idle, stalled, preface-only, dribbling, oversized and rapid-reset connections (watched
# WATCH seconds, 150 by default), then 20,000 idle connections from two processes while a new
# client probes /health and /v1/search. Prints JSON lines.
# Usage: bench/connections.sh > bench/results-connections-DATE.jsonl
#   MATHRANK_BIN=target/debug/mathrank to measure another build (the default builds release).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
watch="${WATCH:-150}"
if [[ -z "${MATHRANK_BIN:-}" ]]; then
  cargo build --release --locked -p mathrank-cli >&2
fi
mathrank="${MATHRANK_BIN:-target/release/mathrank}"
work="$(mktemp -d)"
addr=127.0.0.1:50091
ulimit -n 20000
"$mathrank" --log warn index --sample --index "$work/sample" >&2
"$mathrank" --log warn serve --no-rerank --index "$work/sample" --addr "$addr" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
until curl -sf "http://$addr/health" >/dev/null; do sleep 0.2; done
echo "{\"server\": $("$mathrank" serve --no-rerank --print-config | python3 -c 'import sys, tomllib, json; c = tomllib.load(sys.stdin.buffer); print(json.dumps({k: c[k] for k in ("max_connections", "idle_timeout", "request_timeout", "http2_keepalive_interval", "http2_keepalive_timeout")}))')}"
[[ -n "${SKIP_KINDS:-}" ]] || python3 bench/connections.py "$addr" --watch "$watch"
python3 bench/connections.py "$addr" --watch 90 --only none --flood 10000 &
flood=$!
python3 bench/connections.py "$addr" --watch 90 --only probe --flood 10000
wait $flood
curl -s "http://$addr/metrics" | grep '^mathrank_connections' | python3 -c 'import sys, json; print(json.dumps({"metrics": dict(l.rsplit(" ", 1) for l in sys.stdin.read().splitlines())}))'
