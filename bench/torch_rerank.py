#!/usr/bin/env python3
"""PyTorch's side of the GPU throughput comparison (scripts/gpu-run.sh): transformers'
AlbertForSequenceClassification from a model directory's model.safetensors, float16 on CUDA,
batches of `--batch` pairs of exactly `--tokens` tokens, timed after a warm-up. One JSON line.
"""
import argparse
import json
import time

import torch
from transformers import AlbertForSequenceClassification

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True, help="directory with config.json and model.safetensors")
parser.add_argument("--tokens", type=int, default=256)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--batches", type=int, default=20)
parser.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16")
args = parser.parse_args()

dtype = torch.float16 if args.dtype == "fp16" else torch.float32
model = AlbertForSequenceClassification.from_pretrained(args.model, torch_dtype=dtype).cuda().eval()
generator = torch.Generator(device="cuda").manual_seed(7)
ids = torch.randint(5, 30000, (args.batch, args.tokens), device="cuda", generator=generator)
ids[:, 0], ids[:, -1] = 2, 3
mask = torch.ones_like(ids)
types = torch.zeros_like(ids)
types[:, args.tokens // 4 :] = 1
with torch.inference_mode():
    for _ in range(3):
        model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.batches):
        model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
print(json.dumps({"impl": f"torch-{args.dtype}", "gpu": torch.cuda.get_device_name(0), "tokens": args.tokens,
                  "batch": args.batch, "pairs_per_s": args.batch * args.batches / elapsed, "torch": torch.__version__}))
