#!/usr/bin/env bash
# The search page in a real browser. Builds the embedded sample's index and an index of hostile
# posts (a Posts.xml that scripts/check-page.py writes), starts three `mathrank serve` on free
# loopback ports, and runs scripts/check-page.py (Selenium driving Debian's headless chromium
# and chromedriver) against them:
#   main:    the sample with the tiny model fixture;
#   slow:    the same with --auth-token, no score cache, and an inference thread that holds a
#            batch of fewer than 32 pairs for 5 s waiting for company (--max-wait-ms 5000), so
#            that a search of 30 candidates with a 1 s deadline is partial, always (the model's
#            start-up probe waits those 5 s twice);
#   hostile: the hostile posts, BM25 only, with another --site-url.
# Usage: scripts/check-page.sh MATHRANK_BINARY PYTHON [SCREENSHOT_PNG]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mathrank="$1"; python="$2"; screenshot="${3:-target/search-page.png}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # A server still loading its model may not stop at once: give it 5 s, then end it.
  for _ in $(seq 20); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.25
  done
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null; done; true
  rm -rf "$work"
}
trap cleanup EXIT

"$mathrank" --log error index --sample --index "$work/sample"
"$python" scripts/check-page.py write-dump "$work/hostile.xml"
"$mathrank" --log error index --dump "$work/hostile.xml" --index "$work/hostile"

# serve NAME ARGS...: starts `mathrank serve ARGS` on a free port; sets url_NAME once healthy.
serve() {
  local name="$1"; shift
  local port pid
  port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$mathrank" --log warn serve --addr "127.0.0.1:$port" --grace-seconds 1 "$@" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 240); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "check-page: the $name server exited" >&2; exit 1; }
    sleep 0.5
  done
  printf -v "url_$name" 'http://127.0.0.1:%s' "$port"
}
model=crates/mathrank-rerank/tests/fixtures/albert-tiny
token="page-test-$RANDOM$RANDOM"
serve main --index "$work/sample" --model "$model" --max-length 128
serve slow --index "$work/sample" --model "$model" --max-length 128 --max-wait-ms 5000 --score-cache-mb 0 \
  --auth-token "$token"
serve hostile --index "$work/hostile" --no-rerank --site-url https://mirror.example/math/
mkdir -p "$(dirname "$screenshot")"
MATHRANK_PAGE_TOKEN="$token" "$python" scripts/check-page.py run \
  --main "$url_main" --slow "$url_slow" --hostile "$url_hostile" \
  --hostile-site https://mirror.example/math --screenshot "$screenshot"
