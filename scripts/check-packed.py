#!/usr/bin/env python3
"""Runs a packed graph (`mathrank model convert --attention packed|packed-host`) without a GPU,
in ONNX's reference evaluator, with PackedMultiHeadAttention computed from its documented
semantics (com.microsoft contrib operators, docs/ContribOperators.md: Q, K, V `[tokens,
hidden]`, `cumulative_sequence_length` `[batch + 1]`, each pair attending to its own tokens),
and compares the logits with transformers' (the model directory's reference.json).

ONNX Runtime has no CPU kernel for that operator, so this is how the exact graph that the GPU
runs is checked before a GPU is at hand: the packing, the gathers and the shapes around the one
operator whose kernel only a GPU can run. `packed-host` inputs are built here as mathrank builds
them on the host. Needs `onnx` and `numpy`. Not part of CI (the tests check the CPU twin,
packed-check); scripts/gpu-run.sh's preparation runs it.

usage: check-packed.py MODEL_ONNX REFERENCE_JSON [TOLERANCE]
"""
import json
import sys

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun


class PackedMultiHeadAttention(OpRun):
    op_domain = "com.microsoft"

    def _run(self, query, key, value, bias=None, token_offset=None, cumulative=None, num_heads=None,
             scale=None, mask_filter_value=None):
        tokens, hidden = query.shape
        heads = int(num_heads)
        size = hidden // heads
        scale = scale or 1.0 / np.sqrt(size)
        out = np.zeros_like(query)
        for start, end in zip(cumulative[:-1], cumulative[1:]):
            q = query[start:end].astype(np.float32).reshape(-1, heads, size).transpose(1, 0, 2)
            k = key[start:end].astype(np.float32).reshape(-1, heads, size).transpose(1, 0, 2)
            v = value[start:end].astype(np.float32).reshape(-1, heads, size).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) * scale
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            probabilities = scores / scores.sum(-1, keepdims=True)
            context = (probabilities @ v).transpose(1, 0, 2).reshape(end - start, hidden)
            out[start:end] = context.astype(query.dtype)
        return (out,)


def host_inputs(mask):
    """The packing as mathrank feeds it to a packed-host graph (right padding)."""
    batch, sequence = mask.shape
    lengths = mask.sum(1)
    flat = np.arange(batch * sequence).reshape(batch, sequence)
    real = flat[mask == 1]
    pad = flat[mask == 0]
    cumulative = np.concatenate([[0], np.cumsum(lengths)])
    return {
        "packed_index": real.astype(np.int64),
        "row_start": cumulative[:-1].astype(np.int64),
        "token_offset": np.concatenate([real, pad]).reshape(batch, sequence).astype(np.int32),
        "cumulative_sequence_length": cumulative.astype(np.int32),
    }


def main():
    model = onnx.load(sys.argv[1])
    reference = json.load(open(sys.argv[2]))
    tolerance = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
    feed = {name: np.array(reference[name], dtype=np.int64) for name in ["input_ids", "attention_mask", "token_type_ids"]}
    names = {i.name for i in model.graph.input}
    if "packed_index" in names:
        feed.update(host_inputs(feed["attention_mask"]))
    evaluator = ReferenceEvaluator(model, new_ops=[PackedMultiHeadAttention])
    (logits,) = evaluator.run(None, feed)
    want = np.array(reference["logits"], dtype=np.float32)
    largest = float(np.abs(logits - want).max())
    lengths = feed["attention_mask"].sum(1).tolist()
    print(json.dumps({"model": sys.argv[1], "pairs": len(want), "lengths": lengths,
                      "largest_logit_change": largest, "bound": tolerance, "ok": largest <= tolerance}))
    sys.exit(0 if largest <= tolerance else 1)


if __name__ == "__main__":
    main()
