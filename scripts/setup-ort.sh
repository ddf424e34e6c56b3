#!/usr/bin/env bash
# Installs the ONNX Runtime 1.31 shared library into .ort/ (from the PyPI `onnxruntime` wheel:
# ort's own binary download is not used, so this works wherever PyPI is reachable).
# Prints the library path. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.ort"
version="${MATHRANK_ORT_VERSION:-1.31.*}"
existing="$(ls "$dest"/libonnxruntime.so.1.* 2>/dev/null | head -n1 || true)"
if [[ -n "$existing" ]]; then
  echo "$existing"
  exit 0
fi
python="$(command -v python3 || command -v python)" || { echo "setup-ort: python3 with pip is needed to fetch onnxruntime from PyPI" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --quiet --no-deps --only-binary=:all: "onnxruntime==$version" -d "$tmp" >&2
wheel="$(ls "$tmp"/onnxruntime-*.whl | head -n1)"
mkdir -p "$dest"
"$python" - "$wheel" "$dest" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if os.path.basename(n).startswith("libonnxruntime.so.")]
    if not names:
        sys.exit(f"setup-ort: {wheel} holds no libonnxruntime.so")
    for name in names:
        target = os.path.join(dest, os.path.basename(name))
        with z.open(name) as src, open(target, "wb") as out:
            out.write(src.read())
        print(target)
PY
