#!/usr/bin/env bash
# Real length mixes as token ids, for throughput runs that compare mathrank with another runtime
# on the very same inputs (`mathrank-bench rerank --ids`, `bench/torch_rerank.py --ids`,
# `bench/score_loop.py --ids`): JSONL lines `{"input_ids": [...], "token_type_ids": [...]}`.
#   lognormal.jsonl  synthetic pairs, lognormal lengths (median about 120 tokens, 24 to 512)
#   arqmath.jsonl    the ARQMath 2020-2022 topics (segment A as `mathrank eval` reads them)
#                    against the real answers of ../shared's threads, tokenized as the model is
# Usage: bench/mixes.sh OUT_DIR [PAIRS]   (PAIRS per mix, default 4096; needs ../shared and a
# built mathrank: MATHRANK_BIN, default target/release/mathrank). The files hold Stack Exchange
# text as token ids: keep them out of the repository (gpu-results/ is ignored).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:?usage: bench/mixes.sh OUT_DIR [PAIRS]}"
pairs="${2:-4096}"
shared="${SHARED:-../shared}"
mathrank="${MATHRANK_BIN:-target/release/mathrank}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - "$out/lognormal.jsonl" "$pairs" <<'PY'
import json, math, random, sys
rng = random.Random(12)
with open(sys.argv[1], "w") as f:
    for _ in range(int(sys.argv[2])):
        total = min(512, max(24, int(120 * math.exp(0.9 * rng.gauss(0, 1)))))
        q = max(3, int(total * 0.3))
        ids = [2] + [rng.randrange(5, 30000) for _ in range(q - 2)] + [3]
        ids += [rng.randrange(5, 30000) for _ in range(total - q - 1)] + [3]
        f.write(json.dumps({"input_ids": ids, "token_type_ids": [0] * q + [1] * (total - q)}) + "\n")
PY

"$mathrank" --log error index --sample --index "$work/sample" >/dev/null
for topics in "$shared"/data/arqmath/topics.arqmath-*.xml; do
  name="$(basename "$topics" .xml)"
  "$mathrank" --log error eval --index "$work/sample" --no-rerank --topics "$topics" \
    --run-out "$work/run-$name.txt" --inputs-out "$work/topics-$name.jsonl" >/dev/null
done
"$mathrank" --log error texts --dump "$shared/data/stackexchange/math-threads_Posts.xml" > "$work/texts.jsonl"
python3 - "$work" "$pairs" <<'PY'
import glob, json, sys
work, pairs = sys.argv[1], int(sys.argv[2])
topics = [json.loads(l)["query"] for path in sorted(glob.glob(f"{work}/topics-*.jsonl")) for l in open(path)]
answers = [t["text"] for t in map(json.loads, open(f"{work}/texts.jsonl")) if t["kind"] == "answer"]
with open(f"{work}/texts-pairs.jsonl", "w") as f:
    for k in range(pairs):
        f.write(json.dumps({"query": topics[k % len(topics)], "answer": answers[(k * 7) % len(answers)]}) + "\n")
PY
# The tiny model shares the real model's tokenizer (the albert-base-v2 vocabulary).
"$mathrank" --log error score --model "$shared/models/albert-tiny" --pairs "$work/texts-pairs.jsonl" --emit-ids \
  | python3 -c '
import json, sys
for line in sys.stdin:
    ids = json.loads(line)["input_ids"]
    sep = ids.index(3)
    print(json.dumps({"input_ids": ids, "token_type_ids": [0] * (sep + 1) + [1] * (len(ids) - sep - 1)}))
' > "$out/arqmath.jsonl"
for mix in lognormal arqmath; do
  python3 -c "
import json
l = [len(json.loads(x)['input_ids']) for x in open('$out/$mix.jsonl')]
print(json.dumps({'mix': '$mix', 'pairs': len(l), 'mean_tokens': round(sum(l) / len(l), 1), 'max_tokens': max(l),
                  'at_512': sum(1 for n in l if n >= 512)}))"
done
