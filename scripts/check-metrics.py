#!/usr/bin/env python3
"""Conformance: `mathrank eval-run` against trec_eval (through pytrec_eval) on the ARQMath qrels.

For each qrels file, synthetic runs are made from it: judged and unjudged answers, scores with
deliberate ties, a topic without judgments. mathrank's nDCG', MAP' and P'@10 must equal
trec_eval's `-J -m ndcg`, `-J -l2 -m map` and `-J -l2 -m P.10` to 1e-4, per topic and on average.
Usage: check-metrics.py MATHRANK_BINARY QRELS_FILE...
"""
import json
import random
import subprocess
import sys
import tempfile

import pytrec_eval

TOLERANCE = 1e-4


def read_qrels(path):
    qrels = {}
    with open(path, newline="") as f:
        for line in f:
            fields = line.split()
            if len(fields) == 4:
                qrels.setdefault(fields[0], {})[fields[2]] = int(fields[3])
    return qrels


def synthetic_run(qrels, seed):
    rng = random.Random(seed)
    run = {}
    for topic, judged in qrels.items():
        docs = [d for d in judged if rng.random() < 0.7]
        docs += [str(10_000_000 + rng.randrange(1_000_000)) for _ in range(rng.randrange(0, 40))]
        docs = list(dict.fromkeys(docs))
        # One decimal place: many ties, which trec_eval breaks by document id, descending.
        run[topic] = {doc: round(rng.uniform(0, 5), 1) for doc in docs}
    run["A.999"] = {"123": 1.0}
    return run


def main():
    binary, qrels_files = sys.argv[1], sys.argv[2:]
    checked = 0
    for qrels_path in qrels_files:
        qrels = read_qrels(qrels_path)
        for seed in (1, 2):
            run = synthetic_run(qrels, seed)
            with tempfile.NamedTemporaryFile("w", suffix=".run", delete=False) as f:
                for topic, docs in run.items():
                    ranked = sorted(docs.items(), key=lambda kv: -kv[1])
                    for rank, (doc, score) in enumerate(ranked, 1):
                        f.write(f"{topic} Q0 {doc} {rank} {score} synthetic\n")
                run_path = f.name
            ours = json.loads(subprocess.check_output([binary, "eval-run", "--run", run_path, "--qrels", qrels_path, "--json"]))
            judged_run = {t: {d: s for d, s in docs.items() if d in qrels.get(t, {})} for t, docs in run.items() if t in qrels}
            ndcg = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg"}).evaluate(judged_run)
            binary_measures = pytrec_eval.RelevanceEvaluator(qrels, {"map", "P_10"}, relevance_level=2).evaluate(judged_run)
            assert set(ours["topics"]) == set(judged_run), f"{qrels_path}: topic sets differ"
            assert ours["unjudged_topics"] == ["A.999"], ours["unjudged_topics"]
            for topic in judged_run:
                mine = ours["topics"][topic]
                for name, theirs in (("ndcg_prime", ndcg[topic]["ndcg"]), ("map_prime", binary_measures[topic]["map"]),
                                     ("p10_prime", binary_measures[topic]["P_10"])):
                    assert abs(mine[name] - theirs) <= TOLERANCE, f"{qrels_path} seed {seed} topic {topic} {name}: {mine[name]} vs trec_eval {theirs}"
            for name, key, table in (("ndcg_prime", "ndcg", ndcg), ("map_prime", "map", binary_measures), ("p10_prime", "P_10", binary_measures)):
                mean = sum(v[key] for v in table.values()) / len(table)
                assert abs(ours[name] - mean) <= TOLERANCE, f"{qrels_path} mean {name}: {ours[name]} vs {mean}"
            checked += len(judged_run)
            print(f"{qrels_path} seed {seed}: {len(judged_run)} topics agree (nDCG' {ours['ndcg_prime']:.4f}, MAP' {ours['map_prime']:.4f}, P'@10 {ours['p10_prime']:.4f})")
    print(f"metrics agree with trec_eval on {checked} topic runs")


if __name__ == "__main__":
    main()
