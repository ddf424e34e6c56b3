#!/usr/bin/env python3
"""Top-k overlap of two TREC runs over the same topics (issue 20: the first stage's ranking
before and after a change of field layout).

    bench/overlap.py BEFORE.tsv[,MORE.tsv...] AFTER.tsv[,MORE.tsv...] [K]

Prints one JSON line: topics, k, the mean, median and minimum share of each topic's top k found in
the other run's top k, and how many topics keep the same top k (as a set, and in the same order).
"""
import json
import sys


def read(paths, k):
    runs = {}
    for path in paths.split(","):
        for line in open(path):
            topic, _, doc, rank, _score, _tag = line.split()
            runs.setdefault(topic, []).append((int(rank), doc))
    return {topic: [doc for _, doc in sorted(rows)[:k]] for topic, rows in runs.items()}


def main():
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    before, after = read(sys.argv[1], k), read(sys.argv[2], k)
    topics = sorted(set(before) & set(after))
    shares = sorted(len(set(before[t]) & set(after[t])) / max(len(before[t]), 1) for t in topics)
    print(json.dumps({
        "what": f"top-{k} overlap",
        "topics": len(topics),
        "only_before": len(set(before) - set(after)),
        "only_after": len(set(after) - set(before)),
        "mean": round(sum(shares) / len(shares), 4),
        "median": round(shares[len(shares) // 2], 4),
        "min": round(shares[0], 4),
        "same_set": sum(set(before[t]) == set(after[t]) for t in topics),
        "same_order": sum(before[t] == after[t] for t in topics),
        "first_same": sum(before[t][:1] == after[t][:1] for t in topics),
    }))


if __name__ == "__main__":
    main()
