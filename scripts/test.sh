#!/usr/bin/env bash
# The test command: installs what the tests need (ONNX Runtime 1.31 from PyPI into .ort/),
# then runs every test of the workspace. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ORT_DYLIB_PATH="$(./scripts/setup-ort.sh | tail -n1)"
export ORT_DYLIB_PATH
cargo test --workspace --locked "$@"
