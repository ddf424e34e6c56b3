#!/usr/bin/env bash
# The main job: installs ONNX Runtime (.ort/), builds mathrank in release mode, and serves the
# gRPC and HTTP/JSON API and the search page (http://127.0.0.1:50051/, printed once ready) on
# 127.0.0.1:50051 over the embedded sample index (built on first start into index/default). Reranking uses MATHRANK_MODEL if set, else the model cache that
# `mathrank model fetch` fills; with neither, the service runs BM25 only and says so.
# Extra arguments go to `mathrank serve` (see `mathrank serve --help`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ORT_DYLIB_PATH="$(./scripts/setup-ort.sh | tail -n1)"
export ORT_DYLIB_PATH
cargo build --release --locked -p mathrank-cli
mathrank=target/release/mathrank
model_args=()
if [[ -z "${MATHRANK_MODEL:-}" ]] && ! "$mathrank" model path >/dev/null 2>&1; then
  echo "run.sh: no reranking model found; trying \`mathrank model fetch\` ..." >&2
  if ! "$mathrank" model fetch; then
    echo "run.sh: could not get the model (see above); serving BM25 only. Set MATHRANK_MODEL=DIR to rerank." >&2
    model_args=(--no-rerank)
  fi
fi
exec "$mathrank" serve "${model_args[@]}" "$@"
