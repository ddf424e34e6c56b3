#!/usr/bin/env python3
"""Python onnxruntime on the very token ids `mathrank bench rerank --ids-out` wrote.

Same graph, same thread count, same optimisation level, batches of `max_batch` pairs in input
order padded to their longest (the usual Python loop). Prints one JSON line.
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--ids", required=True)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()

data = json.load(open(args.ids))
ids, types, max_batch = data["input_ids"], data["token_type_ids"], data["max_batch"]
options = ort.SessionOptions()
options.intra_op_num_threads = args.threads
options.inter_op_num_threads = 1
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
names = {i.name for i in session.get_inputs()}

batches = []
for start in range(0, len(ids), max_batch):
    chunk, tchunk = ids[start:start + max_batch], types[start:start + max_batch]
    width = max(len(x) for x in chunk)
    input_ids = np.zeros((len(chunk), width), dtype=np.int64)
    mask = np.zeros_like(input_ids)
    token_types = np.zeros_like(input_ids)
    for row, (x, t) in enumerate(zip(chunk, tchunk)):
        input_ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
        token_types[row, : len(t)] = t
    feed = {"input_ids": input_ids, "attention_mask": mask}
    if "token_type_ids" in names:
        feed["token_type_ids"] = token_types
    batches.append(feed)


def run():
    for feed in batches:
        session.run(["logits"], feed)


run()
times = []
for _ in range(args.repeats):
    started = time.perf_counter()
    run()
    times.append(time.perf_counter() - started)
times.sort()
median = times[len(times) // 2]
print(json.dumps({"impl": "python", "pairs": len(ids), "threads": args.threads, "pairs_per_s": len(ids) / median,
                  "median_s": median, "onnxruntime": ort.__version__}))
