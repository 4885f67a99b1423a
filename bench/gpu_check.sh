#!/usr/bin/env bash
# GPU training check (vit_b_ori, batch 2, bf16) on SYNTHETIC phantoms: prints samples/s and peak GPU memory.
# Needs only `make setup` (or `pip install -e .` with torch). Without a CUDA GPU it exits with a message;
# `bench/gpu_check.sh --device cpu --steps 1 --model vit_tiny` is a CPU dry run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
    PYTHON="$(command -v python3)"
fi
exec "$PYTHON" bench/gpu_train_check.py "$@"
