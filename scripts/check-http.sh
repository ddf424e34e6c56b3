#!/usr/bin/env bash
# Starts `mathrank serve` on a free loopback port with the tiny model fixture over the embedded
# sample, then runs scripts/check-http.py (Cohere SDK + the curl examples of README.md and docs/) against it.
# Usage: scripts/check-http.sh MATHRANK_BINARY PYTHON
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mathrank="$1"; python="$2"
work="$(mktemp -d)"
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$mathrank" --log warn serve --addr "127.0.0.1:$port" --index "$work/index" \
  --model crates/mathrank-rerank/tests/fixtures/albert-tiny --max-length 128 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 $server 2>/dev/null || { echo "check-http: the server exited" >&2; exit 1; }
  sleep 0.5
done
"$python" scripts/check-http.py "http://127.0.0.1:$port" README.md docs/*.md
