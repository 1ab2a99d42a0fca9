#!/usr/bin/env bash
# One scripted run on the GPU machine (it has no network): install tritorch from this tree, print the versions, run
# the test suite on the real GPU, run the GPU benchmarks against PyTorch. Logs and results go to $OUT (the folder the
# device tool brings back; ./gpu_out without it), the results JSON to $OUT/results/ and bench/results/; the short
# benchmark table is printed last.
#
#   bash scripts/gpu_run.sh                                   # everything
#   SKIP_TESTS=1 bash scripts/gpu_run.sh                      # benchmarks only (SKIP_BENCH=1: tests only)
#   PYTEST_ARGS="tests/test_matmul.py" BENCH_ARGS="--cases matmul" bash scripts/gpu_run.sh
#   TUNE_ARGS="--ops matmul" bash scripts/gpu_run.sh          # also pre-tune (tritorch tune) before the benchmarks
#
# Time limits (seconds, the device tool allows 600 a command): TEST_TIMEOUT (default 360), BENCH_TIMEOUT (200; 540
# with SKIP_TESTS=1). In two device calls: SKIP_BENCH=1 first, then SKIP_TESTS=1. The benchmark results file is
# rewritten after every case, so a run cut short keeps what it measured.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT/results" bench/results
unset TRITORCH_INTERPRET TRITON_INTERPRET
export TRITORCH_CACHE_DIR="${TRITORCH_CACHE_DIR:-$OUT/autotune}"   # the autotune cache comes back with the results

echo "== install"
if ! "$PY" -m pip install --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1; then
    tail -n 30 "$OUT/install.log"
    echo "install failed (log: $OUT/install.log)"
    exit 1
fi

echo "== versions"
"$PY" - <<'EOF' 2>&1 | tee "$OUT/versions.txt"
import importlib.metadata as md
import platform
import subprocess

try:
    print(subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30).stdout.strip())
except Exception as e:
    print("nvidia-smi:", e)
print("python", platform.python_version())
for dist in ("tritorch", "triton", "numpy", "ml-dtypes", "cuda-core", "cuda-bindings", "torch", "pytest",
             "pytest-benchmark"):
    try:
        print(dist, md.version(dist))
    except md.PackageNotFoundError:
        print(dist, "-")
import tritorch
print("tritorch.cuda.is_available():", tritorch.cuda.is_available(), " device_count:", tritorch.cuda.device_count())
if tritorch.cuda.is_available():
    from tritorch import _cuda_runtime as rt
    print("device:", rt.device_name(0), " cc:", rt.compute_capability(0), " stream:", rt.stream_handle())
EOF
"$PY" -m tritorch.cli info 2>&1 | tee -a "$OUT/versions.txt"

status=0
tests="skipped"
if [ "${SKIP_TESTS:-0}" = "0" ]; then
    echo "== tests on the GPU (log: $OUT/tests.log)"
    # shellcheck disable=SC2086
    # each failure is written to failures.log as it happens (tests/conftest.py), so a run cut short still names them
    TRITORCH_FAIL_LOG="$OUT/failures.log" TRITORCH_TEST_GPU=1 timeout "${TEST_TIMEOUT:-360}" "$PY" -m pytest \
        ${PYTEST_FLAGS:--x -q} ${PYTEST_ARGS:-} >"$OUT/tests.log" 2>&1
    rc=$?
    tail -n 30 "$OUT/tests.log"
    [ -s "$OUT/failures.log" ] && { echo "-- failed tests:"; grep "^FAILED" "$OUT/failures.log"; }
    case $rc in 0) tests="passed" ;; 124) tests="TIMED OUT" ;; *) tests="FAILED (rc $rc)" ;; esac
    [ $rc -eq 0 ] || status=1
fi

if [ -n "${TUNE_ARGS:-}" ]; then
    echo "== tune (log: $OUT/tune.log)"
    # shellcheck disable=SC2086
    timeout "${TUNE_TIMEOUT:-200}" "$PY" -m tritorch.cli tune --quiet $TUNE_ARGS \
        >"$OUT/tune.log" 2>&1 || status=1
    tail -n 40 "$OUT/tune.log"
fi

bench="skipped"
if [ "${SKIP_BENCH:-0}" = "0" ]; then
    echo "== benchmarks (log: $OUT/bench.log)"
    # shellcheck disable=SC2086
    default_bench_timeout=200
    [ "${SKIP_TESTS:-0}" = "0" ] || default_bench_timeout=540
    timeout "${BENCH_TIMEOUT:-$default_bench_timeout}" "$PY" bench/gpu.py --out "$OUT/bench.json" --results-dir "$OUT/results" \
        --table "$OUT/bench_table.txt" ${BENCH_ARGS:-} >"$OUT/bench.log" 2>&1
    rc=$?
    cp "$OUT"/results/*.json bench/results/ 2>/dev/null
    case $rc in 0) bench="done" ;; 124) bench="TIMED OUT" ;; *) bench="FAILED (rc $rc)" ;; esac
    [ $rc -eq 0 ] || { status=1; tail -n 30 "$OUT/bench.log"; }
fi

echo "== summary"
head -n 1 "$OUT/versions.txt"
echo "tests: $tests    benchmarks: $bench    (logs and results: $OUT)"
grep -v "^results:" "$OUT/bench.log" 2>/dev/null | sed -n '1,/^case /p' | grep -v "^case " || true
[ -f "$OUT/bench_table.txt" ] && cat "$OUT/bench_table.txt"
exit $status
