#!/usr/bin/env python3
"""A random-weight ALBERT cross-encoder made where it runs, for GPU machines that the shared
models cannot be copied to (a device call carries 64 MiB; the base-sized checkpoint alone is 47).

  random_albert.py --like DIR --out OUT [--seed 0]

DIR holds config.json, tokenizer.json and reference.json (the shared albert-base-random). OUT
gets a new AlbertForSequenceClassification of the same shape with weights from `--seed`
(model.safetensors, config.json), DIR's tokenizer, and a reference.json of DIR's pairs and token
ids with logits recomputed by transformers in float32 on the CPU: the reference that
scripts/gpu-run.sh checks ONNX Runtime against.
"""
import argparse
import json
import os
import shutil

import torch
from transformers import AlbertConfig, AlbertForSequenceClassification

parser = argparse.ArgumentParser()
parser.add_argument("--like", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

config = AlbertConfig.from_pretrained(args.like)
torch.manual_seed(args.seed)
model = AlbertForSequenceClassification(config).eval()
os.makedirs(args.out, exist_ok=True)
model.save_pretrained(args.out)
shutil.copy(os.path.join(args.like, "tokenizer.json"), args.out)

reference = json.load(open(os.path.join(args.like, "reference.json")))
logits = []
with torch.inference_mode():
    for ids, mask, types in zip(reference["input_ids"], reference["attention_mask"], reference["token_type_ids"]):
        out = model(
            input_ids=torch.tensor([ids]), attention_mask=torch.tensor([mask]), token_type_ids=torch.tensor([types])
        )
        logits.append([float(x) for x in out.logits[0]])
reference["logits"] = logits
reference["made_with"] = {"torch": torch.__version__, "seed": args.seed, "by": "bench/random_albert.py"}
json.dump(reference, open(os.path.join(args.out, "reference.json"), "w"))
print(json.dumps({"random_albert": args.out, "seed": args.seed, "pairs": len(logits)}))
