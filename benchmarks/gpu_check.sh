#!/usr/bin/env bash
# The GPU check, prepared for when a CUDA GPU is lent: at most ~8.5 minutes on one H100 / H200 (the sum of
# the step limits below; less when the steps finish early).
#
#   OUT=/path/to/results bash benchmarks/gpu_check.sh
#
# Runs from the repository root, offline; every step has its own time limit and writes under $OUT (default
# ./gpu_check_out); status.txt lists each step's exit code and seconds. Steps (limits in seconds):
#   1. install (45):        pip install --no-deps --no-build-isolation -e .  (no network needed)
#   2. kernel tests (150):  tests/kernels compiled on the GPU, no interpreter (not the slow tests)
#   3. compile report (60): every launch compiled for this GPU's architecture: registers / spills table
#   4. hardening (45):      fused vs backend="torch" hardened rows near the threshold (hardening_check.py)
#   5. benchmarks (180):    fused vs eager vs torch.compile, ratios in one run (N = 1M, k = 2 and 8), and the
#                           linear head (N = 16k, k = 128k, bf16: time and peak memory)
#   6. launch budget (20):  the CPU-side launch / byte table, for the record
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
PY=${PYTHON:-python}
mkdir -p "$OUT"
: > "$OUT/status.txt"
export TRITON_INTERPRET=0 PYTHONUNBUFFERED=1

step() {  # step NAME LIMIT_S LOGFILE CMD...
    local name=$1 limit=$2 log=$3
    shift 3
    local t0=$SECONDS
    echo "== $name (limit ${limit}s) -> $log"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$log" 2>&1
    local rc=$?
    echo "$name rc=$rc ${SECONDS}s-total $((SECONDS - t0))s" | tee -a "$OUT/status.txt"
    tail -n 5 "$OUT/$log"
}

{
    nvidia-smi || true
    $PY -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__,
"device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))'
} > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"

step install 45 install.log $PY -m pip install --no-deps --no-build-isolation -e .

step kernel-tests 150 kernel-tests.log $PY -m pytest tests/kernels -q -m "not slow" -p no:cacheprovider \
    --maxfail=30 -rfs --junitxml="$OUT/kernel-tests.xml"

CC=$($PY -c 'import torch; a, b = torch.cuda.get_device_capability(0); print(a * 10 + b)' 2>/dev/null || echo 90)
step compile-report 60 compile-report.log $PY tests/kernels/_compile_kernels.py --arch "$CC" \
    --table "$OUT/registers_sm$CC.md"

step hardening 45 hardening.log $PY benchmarks/hardening_check.py --json "$OUT/hardening.json"

if $PY -c 'import pytest_benchmark' 2>/dev/null; then
    export W2S_BENCH_TABLE="$OUT/bench_table.md"
    step benchmarks 180 benchmarks.log \
        $PY -m pytest benchmarks/test_bench_kernels.py --benchmark-only -p no:cacheprovider -q \
        -k "N1048576 or N16384-k131072" --benchmark-json="$OUT/bench.json"
else
    echo "benchmarks rc=skipped (pytest-benchmark is not installed: pip install pytest-benchmark)" \
        | tee -a "$OUT/status.txt"
fi

step launch-budget 20 launch-budget.md $PY benchmarks/launch_budget.py --markdown

echo "== done in ${SECONDS}s; results in $OUT"
cat "$OUT/status.txt"
