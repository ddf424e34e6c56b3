#!/usr/bin/env python3
"""PyTorch's side of the GPU throughput comparison (scripts/gpu-run.sh): transformers'
AlbertForSequenceClassification from a model directory's model.safetensors, float16 on CUDA,
batches of `--batch` pairs of exactly `--tokens` tokens, timed after a warm-up. Several values
(`--tokens 128,256,512 --batch 32,64`) sweep them in one process. One JSON line per setting.

With `--ids FILE` (JSONL of `{"input_ids": [...], "token_type_ids": [...]}`, as `mathrank score
--ids` and `mathrank-bench rerank --ids` read them), the pairs of a real length mix instead:
sorted by length and cut into batches of `--batch`, each padded to its own longest pair (the
best a torch user would do), every pair scored once per timed run.
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
parser.add_argument("--ids", help="JSONL of encoded pairs: a length mix instead of fixed lengths")
parser.add_argument("--repeats", type=int, default=3, help="timed runs over the --ids pairs (the median counts)")
args = parser.parse_args()

# Loaded in fp32 and cast, so that the same call works across transformers' dtype-argument renames.
model = AlbertForSequenceClassification.from_pretrained(args.model).cuda().eval()
if args.dtype == "fp16":
    model = model.half()
attention = getattr(model.config, "_attn_implementation", "unknown")


def mix(path, batch):
    """Times the pairs of `path` in length-sorted batches of `batch`, each padded to its longest."""
    import json as _json
    pairs = [_json.loads(line) for line in open(path) if line.strip()]
    pairs.sort(key=lambda p: len(p["input_ids"]))
    batches = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start:start + batch]
        width = max(len(p["input_ids"]) for p in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        types = torch.zeros_like(ids)
        for row, pair in enumerate(chunk):
            n = len(pair["input_ids"])
            ids[row, :n] = torch.tensor(pair["input_ids"])
            mask[row, :n] = 1
            types[row, :n] = torch.tensor(pair["token_type_ids"])
        batches.append((ids.cuda(), mask.cuda(), types.cuda()))
    times = []
    with torch.inference_mode():
        for ids, mask, types in batches:
            model(input_ids=ids, attention_mask=mask, token_type_ids=types)
        for _ in range(args.repeats):
            torch.cuda.synchronize()
            started = time.perf_counter()
            for ids, mask, types in batches:
                model(input_ids=ids, attention_mask=mask, token_type_ids=types)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    median = sorted(times)[len(times) // 2]
    real = sum(len(p["input_ids"]) for p in pairs)
    padded = sum(b[0].numel() for b in batches)
    print(json.dumps({"impl": f"torch-{args.dtype}", "gpu": torch.cuda.get_device_name(0), "ids": path,
                      "pairs": len(pairs), "batch": batch, "pairs_per_s": len(pairs) / median,
                      "median_s": median, "padding_efficiency": real / padded, "attention": attention,
                      "torch": torch.__version__}), flush=True)


if args.ids:
    for batch in args.batch:
        mix(args.ids, batch)
    raise SystemExit(0)
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
