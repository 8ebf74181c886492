#!/usr/bin/env bash
# The GPU check, prepared for when a CUDA GPU is lent. `--quick` fits one 5-minute call on one H100 / H200
# (the sum of its step budgets is under 300 s); the full run adds the compile report, the hardening check and
# the benchmark suite.
#
#   OUT=/path/to/results bash benchmarks/gpu_check.sh [--quick] [--help]
#
# Runs from the repository root, offline. Every measuring step writes into one JSON file as it goes
# ($OUT/gpu_check.json: a step cut off by its budget, or a run cut off by the machine, still leaves the numbers
# taken so far) and the run ends with a printed ratio table (`python benchmarks/gpu_check.py --table
# $OUT/gpu_check.json` prints it again); status.txt lists each step's exit code and seconds.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
QUICK=""
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=--quick ;;
        -h|--help)
            sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
            echo
            $PY benchmarks/gpu_check.py --help | sed -n '/^steps, in order/,$p'
            echo "full run only, after those: compile-report 60, hardening 45, benchmark suite 180"
            exit 0 ;;
        *) echo "unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
: > "$OUT/status.txt"
export TRITON_INTERPRET=0 PYTHONUNBUFFERED=1

step() {  # step NAME LIMIT_S LOGFILE CMD...
    local name=$1 limit=$2 log=$3
    shift 3
    local t0=$SECONDS
    echo "== $name (limit ${limit}s) -> $log"
    timeout --kill-after=5 "$limit" "$@" > "$OUT/$log" 2>&1
    local rc=$?
    echo "$name rc=$rc ${SECONDS}s-total $((SECONDS - t0))s" | tee -a "$OUT/status.txt"
    tail -n 5 "$OUT/$log"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    $PY -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__,
"device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))'
} > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"

step install 30 install.log $PY -m pip install --no-deps --no-build-isolation -e .

# The measuring steps, in order of priority, each under its own budget (gpu_check.py --help lists them).
t0=$SECONDS
$PY benchmarks/gpu_check.py --out "$OUT" $QUICK
echo "gpu_check.py rc=$? ${SECONDS}s-total $((SECONDS - t0))s" | tee -a "$OUT/status.txt"

if [ -z "$QUICK" ]; then
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
fi

echo "== done in ${SECONDS}s; results in $OUT"
cat "$OUT/status.txt"
