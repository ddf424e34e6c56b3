#!/usr/bin/env python3
"""The usual Python loop, whole process: load the model with onnxruntime, read encoded pairs
(`{"input_ids": [...], "token_type_ids": [...]}` per line, as `mathrank score --ids` reads
them), run them in batches of `--batch` in input order, each padded to its longest, and print
the logits. Same graph, threads and optimisation level as mathrank. bench/batching.sh times it.
"""
import argparse
import json
import sys

import numpy as np
import onnxruntime as ort

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True, help="model.onnx")
parser.add_argument("--ids", required=True, help="JSONL of encoded pairs")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--batch", type=int, default=16)
args = parser.parse_args()

options = ort.SessionOptions()
options.intra_op_num_threads = args.threads
options.inter_op_num_threads = 1
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
names = {i.name for i in session.get_inputs()}
pairs = [json.loads(line) for line in open(args.ids) if line.strip()]
out = sys.stdout
for start in range(0, len(pairs), args.batch):
    chunk = pairs[start:start + args.batch]
    width = max(len(p["input_ids"]) for p in chunk)
    ids = np.zeros((len(chunk), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, pair in enumerate(chunk):
        n = len(pair["input_ids"])
        ids[row, :n] = pair["input_ids"]
        mask[row, :n] = 1
        types[row, :n] = pair["token_type_ids"]
    feed = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in names:
        feed["token_type_ids"] = types
    for logits in session.run(["logits"], feed)[0]:
        out.write(json.dumps({"logits": [float(logits[0]), float(logits[1])]}) + "\n")
