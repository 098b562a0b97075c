#!/usr/bin/env bash
# GPU validation of the supernet paths (see benchmarks/gpu_check.py): correctness against the CPU,
# CUDA-event timings at the paper's size, extrapolated search hours, a 2-process search step, and the
# exactness checks (pixels, deterministic kernels, identical alpha, resume with fewer visible GPUs).
# Under 8 minutes on one GPU; `--dry` runs the same checks on the CPU at a tiny size.
#
#   bash benchmarks/gpu_check.sh [--dry] [--json report.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if command -v timeout >/dev/null; then
  exec timeout 480 "$PYTHON" benchmarks/gpu_check.py "$@"
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
