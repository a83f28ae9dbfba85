#!/usr/bin/env bash
# The one command for a GPU machine: the CUDA tests, then the trainer sweep, in one log.
#
#   benchmarks/gpu_check.sh
#
# From the repository root (wherever it is called from): creates .venv if missing
# (`make .venv/.installed`), then writes everything to
# reports/measured/gpu_check/gpu_check-YYYYmmdd-HHMMSS.log (and to the terminal):
#   1. nvidia-smi and the machine banner (CPU, torch, GPU);
#   2. python -m pytest -m gpu tests/gpu -q -rs      (limit GPU_CHECK_TEST_S, default 180 s)
#   3. python benchmarks/gpu_sweep.py                 (limit GPU_CHECK_SWEEP_S, default 270 s)
# About 7.5 minutes at most once .venv exists. Exit status: 0 if both passed, 1 if the tests
# failed (or ran out of time), 2 if only the sweep failed; without a CUDA device it stops at
# once ("no CUDA device") with status 1 and writes no log.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
TEST_S=${GPU_CHECK_TEST_S:-180}
SWEEP_S=${GPU_CHECK_SWEEP_S:-270}
FASHION_DIR=/usr/share/datasets/fashion-mnist
export PYTHONUNBUFFERED=1  # the log keeps the order of what was printed

no_cuda() {
    echo "gpu_check: no CUDA device: $1" >&2
    echo "gpu_check: run this on a machine with an NVIDIA GPU; nothing was run, no log written" >&2
    exit 1
}

# cheap first: no driver at all means no GPU (and no need to build .venv to find out)
if ! command -v nvidia-smi >/dev/null 2>&1 && ! ls /dev/nvidia0 >/dev/null 2>&1; then
    no_cuda "no nvidia-smi and no /dev/nvidia0"
fi
if [ ! -x "$PY" ]; then
    echo "gpu_check: .venv is missing: make .venv/.installed"
    make .venv/.installed
fi
cuda=$("$PY" -c 'import torch; print(torch.cuda.is_available())' 2>&1 | tail -n 1) || true
if [ "$cuda" != "True" ]; then
    no_cuda "torch.cuda.is_available() is ${cuda:-not known} ($("$PY" -c \
        'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' \
        2>/dev/null || echo 'torch does not import'))"
fi
if [ ! -d "$FASHION_DIR" ]; then  # the tests' real data (Debian's dataset-fashion-mnist)
    echo "gpu_check: $FASHION_DIR is missing: make data-deps"
    make data-deps || {
        echo "gpu_check: could not install Debian's dataset-fashion-mnist; the tests and the" \
             "sweep need Fashion-MNIST (see the Makefile's data-deps)" >&2
        exit 1
    }
fi

LOG_DIR=reports/measured/gpu_check
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/gpu_check-$(date +%Y%m%d-%H%M%S).log"

# part NAME SECONDS COMMAND...: run COMMAND under a time limit, say so if it ran out
part() {
    local name=$1 limit=$2 rc=0
    shift 2
    echo
    echo "=== $name (limit ${limit} s): $* ==="
    local start=$SECONDS
    timeout -k 20 "$limit" "$@" || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "!!! gpu_check: $name ran out of its ${limit} s limit and was stopped (status $rc)"
    fi
    echo "=== $name: status $rc after $((SECONDS - start)) s ==="
    return "$rc"
}

main() {
    local tests_rc=0 sweep_rc=0 dirty=""
    git diff --quiet HEAD 2>/dev/null || dirty=" + uncommitted changes"
    echo "gpu_check $(date -Is) on $(hostname); git $(git rev-parse --short HEAD 2>/dev/null \
        || echo '?')$dirty; log $LOG"
    echo
    echo "=== nvidia-smi ==="
    nvidia-smi || echo "(nvidia-smi failed: status $?)"
    echo
    "$PY" -c 'import sys; sys.path.insert(0, "benchmarks"); from harness import machine_banner
print(machine_banner())'
    part "CUDA tests" "$TEST_S" "$PY" -m pytest -m gpu tests/gpu -q -rs || tests_rc=$?
    part "trainer sweep" "$SWEEP_S" "$PY" benchmarks/gpu_sweep.py || sweep_rc=$?
    echo
    echo "gpu_check: tests status $tests_rc, sweep status $sweep_rc; log $LOG"
    if [ "$tests_rc" -ne 0 ]; then
        echo "gpu_check: FAILED: the CUDA tests did not pass"
        return 1
    fi
    if [ "$sweep_rc" -ne 0 ]; then
        echo "gpu_check: the tests passed; the sweep FAILED or ran out of time"
        return 2
    fi
    echo "gpu_check: passed"
}

main 2>&1 | tee "$LOG"
