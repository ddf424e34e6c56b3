#!/usr/bin/env bash
# Packs what scripts/gpu-run.sh needs on a GPU machine that has no internet (and takes at most
# 64 MiB per upload) into two folders, each to be carried by one call:
#   gpu-bundle/a  mathrank and mathrank-bench (release, CUDA feature, stripped), libonnxruntime's
#                 core, the token-id mixes of bench/mixes.sh, the shape, tokenizer and reference
#                 pairs of albert-base-random (bench/random_albert.py remakes its weights there),
#                 and one ARQMath topics file for the end-to-end load
#   gpu-bundle/b  libonnxruntime_providers_cuda.so with only the sm_90 images (H100/H200) kept,
#                 the others zeroed so that it compresses (scripts/gpu-fatbin.py), and
#                 libonnxruntime_providers_shared.so
# Everything is xz-compressed; `scripts/gpu-bundle.sh unpack DIR` restores it under DIR (bin/,
# ort/, mixes/, like/, topics.xml) with Python's lzma, so the GPU machine needs no xz.
# Usage: scripts/gpu-bundle.sh pack ORT_GPU_DIR MIXES_DIR   (ORT_GPU_DIR: onnxruntime-gpu 1.31.1's
#        libraries; MIXES_DIR: bench/mixes.sh's output; binaries from target/release, built with
#        `cargo build --release -p mathrank-cli -p mathrank-bench --features mathrank-rerank/cuda`)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shared="${SHARED:-../shared}"

unpack() {
  python3 - "$@" <<'PY'
import lzma, os, shutil, sys
dest = sys.argv[1]
for part in ("a", "b"):
    root = os.path.join("gpu-bundle", part)
    for dirpath, _, files in os.walk(root):
        for name in files:
            src = os.path.join(dirpath, name)
            rel = os.path.relpath(src, root)
            out = os.path.join(dest, rel[:-3] if rel.endswith(".xz") else rel)
            if os.path.exists(out):
                continue
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with (lzma.open(src) if src.endswith(".xz") else open(src, "rb")) as f, open(out, "wb") as g:
                shutil.copyfileobj(f, g, 1 << 20)
            if rel.startswith("bin/"):
                os.chmod(out, 0o755)
print(dest)
PY
}

pack() {
  local ort_dir="$1" mixes="$2" a=gpu-bundle/a b=gpu-bundle/b
  rm -rf gpu-bundle && mkdir -p "$a/bin" "$a/ort" "$a/mixes" "$a/like" "$b/ort"
  for bin in mathrank mathrank-bench; do
    strip -o "$a/bin/$bin" "target/release/$bin"
  done
  cp "$ort_dir"/libonnxruntime.so.1.31.1 "$a/ort/"
  cp "$mixes"/lognormal.jsonl "$mixes"/arqmath.jsonl "$a/mixes/"
  cp "$shared/models/albert-base-random"/{config.json,tokenizer.json,reference.json} "$a/like/"
  cp "$shared"/data/arqmath/topics.arqmath-2022-*.xml "$a/topics.xml"
  python3 scripts/gpu-fatbin.py "$ort_dir/libonnxruntime_providers_cuda.so" --keep-arch 90 \
    --out "$b/ort/libonnxruntime_providers_cuda.so" >&2
  cp "$ort_dir/libonnxruntime_providers_shared.so" "$b/ort/"
  find gpu-bundle -type f -size +64k -print0 | xargs -0 -n1 -P2 xz -T1 -6
  du -sh "$a" "$b"
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  unpack) shift; unpack "$@" ;;
  *) echo "usage: $0 pack ORT_GPU_DIR MIXES_DIR | unpack DIR" >&2; exit 2 ;;
esac
