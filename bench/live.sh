#!/usr/bin/env bash
# The live index's goals, measured on one machine in one run (issue 23): the full build's time
# and peak RSS; BM25 latency idle against under ingest; freshness at a sustained rate; the
# ingest ceiling; a delta of 1% changed posts against a full rebuild; segments and size after
# many updates against a fresh build of the same content. Appends JSON lines to RESULTS.
#
#   bench/live.sh build|serve|delta|updates   (stages; default: all, in this order)
#
# Environment: DUMP (the dump for build/serve, default the full-size synthetic one), SMALL (the
# dump for delta/updates), WORK (indexes, default /work/data/live), BIN (release binaries),
# RESULTS (default bench/results-live-DATE.jsonl), RATE (posts/s, 1000), DURATION (seconds of the freshness run, 60;
# not SECONDS, which bash keeps as its own clock),
# UPDATES (1000000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DUMP="${DUMP:-/work/data/synth/synth-1500000a-1700000q-seed42.xml}"
SMALL="${SMALL:-/work/data/synth/synth-300000a-340000q-seed42.xml}"
WORK="${WORK:-/work/data/live}"
BIN="${BIN:-target/release}"
RESULTS="${RESULTS:-bench/results-live-$(date -u +%F).jsonl}"
RATE="${RATE:-1000}"
SECONDS_EACH="${DURATION:-60}"
UPDATES="${UPDATES:-1000000}"
COMMIT="$(git rev-parse --short HEAD)"
CPU="$(lscpu | sed -n 's/^Model name: *//p')"
TOKEN="live-bench-write-token"
mkdir -p "$WORK"
stages=("${@:-build serve delta updates}")
stages=(${stages[*]})

emit() { # emit JSON-OBJECT: one result line with the commit and the CPU
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(commit=sys.argv[2], cpu=sys.argv[3]); print(json.dumps(r))' \
    "$1" "$COMMIT" "$CPU" | tee -a "$RESULTS"
}

timed_index() { # timed_index LABEL ARGS...: runs `mathrank index ARGS` under /usr/bin/time
  local label="$1"; shift
  /usr/bin/time -f '%e %M' -o "$WORK/time.txt" "$BIN/mathrank" --log warn index "$@" >/dev/null
  read -r secs kb <"$WORK/time.txt"
  emit "{\"bench\": \"$label\", \"seconds\": $secs, \"peak_rss_mb\": $((kb / 1024)), \"args\": \"$*\"}"
}

index_stats() { # index_stats DIR: tantivy segments, live documents and bytes (the store left out)
  python3 - "$1" <<'EOF'
import json, os, sys
d = sys.argv[1]
t = os.path.join(d, json.load(open(os.path.join(d, "meta.json"))).get("tantivy_dir") or "tantivy")
segments = json.load(open(os.path.join(t, "meta.json")))["segments"]
size = sum(os.path.getsize(os.path.join(t, f)) for f in os.listdir(t) if os.path.isfile(os.path.join(t, f)))
docs = sum(s["max_doc"] - ((s.get("deletes") or {}).get("num_deleted_docs") or 0) for s in segments)
print(json.dumps({"segments": len(segments), "index_mb": round(size / 2**20, 1), "live_docs": docs,
                  "deleted_docs": sum(s["max_doc"] for s in segments) - docs}))
EOF
}

SERVER_PID=""
start_server() { # start_server INDEX PORT
  "$BIN/mathrank" --log warn serve --index "$1" --no-rerank --write-token "$TOKEN" --addr "127.0.0.1:$2" \
    --max-queued 1024 >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$2/health" >/dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; return 1; }
    sleep 0.2
  done
  return 1
}
stop_server() {
  [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
trap stop_server EXIT

for stage in "${stages[@]}"; do
  case "$stage" in
  build)
    rm -rf "$WORK/index"
    timed_index "build with post store, $(basename "$DUMP")" --dump "$DUMP" --index "$WORK/index"
    emit "{\"bench\": \"built index\", $(index_stats "$WORK/index" | tr -d '{}'), \"store_mb\": $(($(stat -c %s "$WORK/index/posts.sqlite") / 1048576))}"
    ;;
  serve)
    port=50931
    start_server "$WORK/index" "$port"
    python3 bench/freshness.py --port "$port" --write-token "$TOKEN" --dump "$DUMP" --rate "$RATE" \
      --search-seconds 30 --label "$(basename "$DUMP")" | while read -r result; do emit "$result"; done
    python3 bench/freshness.py --port "$port" --write-token "$TOKEN" --dump "$DUMP" --rate "$RATE" \
      --seconds "$SECONDS_EACH" --first-id 910000000 --label "freshness at $RATE posts/s, $(basename "$DUMP")" | while read -r result; do emit "$result"; done
    python3 bench/freshness.py --port "$port" --write-token "$TOKEN" --dump "$DUMP" --rate 0 \
      --writers 4 --batch 200 --seconds 30 --first-id 920000000 --label "ingest ceiling, $(basename "$DUMP")" | while read -r result; do emit "$result"; done
    stop_server
    ;;
  delta)
    # Three rounds, each a delta on a fresh copy of the same index and a full build of the
    # same changed dump, side by side: this machine's speed drifts by 10-20% over minutes.
    rm -rf "$WORK/small" "$WORK/small-base" "$WORK/small-rebuild"
    python3 bench/change_dump.py --dump "$SMALL" --out "$WORK/changed.xml" --fraction 0.01
    timed_index "full build, small dump" --dump "$SMALL" --index "$WORK/small-base"
    for round in 1 2 3; do
      rm -rf "$WORK/small" "$WORK/small-rebuild"
      cp -a "$WORK/small-base" "$WORK/small" && sync
      timed_index "delta of 1% changed posts, small dump, round $round" --dump "$WORK/changed.xml" --update --index "$WORK/small"
      timed_index "full build of the changed dump, small dump, round $round" --dump "$WORK/changed.xml" --index "$WORK/small-rebuild"
    done
    rm -rf "$WORK/small-base" "$WORK/small-rebuild" "$WORK/changed.xml"
    ;;
  updates)
    port=50932
    start_server "$WORK/small" "$port"
    python3 bench/freshness.py --port "$port" --write-token "$TOKEN" --dump "$SMALL" --rate 0 \
      --writers 4 --batch 200 --updates --pool 25000 --total "$UPDATES" --seconds 3600 \
      --label "$UPDATES updates, small index" | while read -r result; do emit "$result"; done
    stop_server
    emit "{\"bench\": \"after $UPDATES updates\", $(index_stats "$WORK/small" | tr -d '{}')}"
    timed_index "rebuild from the store after the updates" --rebuild --index "$WORK/small"
    emit "{\"bench\": \"fresh build of the same content\", $(index_stats "$WORK/small" | tr -d '{}')}"
    ;;
  *) echo "unknown stage $stage (build, serve, delta, updates)" >&2; exit 2 ;;
  esac
done
