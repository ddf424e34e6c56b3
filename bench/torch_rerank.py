#!/usr/bin/env python3
"""PyTorch's side of the GPU throughput comparison (scripts/gpu-run.sh): transformers'
AlbertForSequenceClassification from a model directory's model.safetensors, float16 on CUDA,
batches of `--batch` pairs of exactly `--tokens` tokens, timed after a warm-up. Several values
(`--tokens 128,256,512 --batch 32,64`) sweep them in one process. One JSON line per setting.
"""
import argparse
import json
import time

import torch
from transformers import AlbertForSequenceClassification


def numbers(text):
    return [int(x) for x in text.split(",")]


parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True, help="directory with config.json and model.safetensors")
parser.add_argument("--tokens", type=numbers, default=[256])
parser.add_argument("--batch", type=numbers, default=[64])
parser.add_argument("--batches", type=int, default=20, help="timed batches per setting")
parser.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16")
args = parser.parse_args()

# Loaded in fp32 and cast, so that the same call works across transformers' dtype-argument renames.
model = AlbertForSequenceClassification.from_pretrained(args.model).cuda().eval()
if args.dtype == "fp16":
    model = model.half()
attention = getattr(model.config, "_attn_implementation", "unknown")
for tokens in args.tokens:
    for batch in args.batch:
        generator = torch.Generator(device="cuda").manual_seed(7)
        ids = torch.randint(5, 30000, (batch, tokens), device="cuda", generator=generator)
        ids[:, 0], ids[:, -1] = 2, 3
        mask = torch.ones_like(ids)
        types = torch.zeros_like(ids)
        types[:, tokens // 4 :] = 1
        with torch.inference_mode():
            for _ in range(3):
                model(input_ids=ids, attention_mask=mask, token_type_ids=types)
            torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(args.batches):
                model(input_ids=ids, attention_mask=mask, token_type_ids=types)
            torch.cuda.synchronize()
            elapsed = time.perf_counter() - started
        print(json.dumps({"impl": f"torch-{args.dtype}", "gpu": torch.cuda.get_device_name(0), "tokens": tokens,
                          "batch": batch, "pairs_per_s": batch * args.batches / elapsed, "attention": attention,
                          "torch": torch.__version__}), flush=True)
