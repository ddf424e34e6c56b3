#!/usr/bin/env bash
# The first stage's weights tuned on the known items: for each field-repeats setting (index
# time) and math weight (query time) of the grid below, index the 100 real threads of ../shared
# and print MRR@10 and Recall@10 of one split of bench/known-items.jsonl (BM25 only).
#
#   bench/tune-known-items.sh [SPLIT] > grid.tsv     (SPLIT: tune, the default, or test)
#
# Columns: repeats, math weight, MRR@10, Recall@10. Pick on the tune split; report test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
split="${1:-tune}"
shared="${SHARED:-../shared}"
mathrank="${MATHRANK:-target/release/mathrank}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
threads="$shared/data/stackexchange/math-threads_Posts.xml"
for question in ${QUESTION:-1 2 3}; do
  for title in ${TITLE:-1 2 3}; do
    for body in ${BODY:-1 2}; do
      for tags in ${TAGS:-0 1}; do
        for question_math in ${QUESTION_MATH:-1 2}; do
          for title_math in ${TITLE_MATH:-1 2}; do
            repeats="body=$body,title=$title,tags=$tags,question=$question,body_math=1,title_math=$title_math,question_math=$question_math"
            "$mathrank" --log error index --dump "$threads" --index "$work/index" --field-repeats "$repeats" > /dev/null
            for math in ${MATH:-0.25 0.5 1}; do
              "$mathrank" --log error eval --known-items bench/known-items.jsonl --index "$work/index" --no-rerank \
                --split "$split" --field-weights "prose=1,math=$math" --json |
                python3 -c "
import json, sys
s = json.load(sys.stdin)['summary']['all']
print('$repeats\tmath=$math\t%.4f\t%.4f' % (s['mrr_at_10'], s['recall_at_10']))"
            done
          done
        done
      done
    done
  done
done
