#!/usr/bin/env bash
# Issue 15's whole device check in one command: the GPU bench table, then `pytest -m gpu`.
#
# Made for one call of a lent GPU machine (a bare image with torch, but without PyAV): it takes at
# most about 9.5 minutes, under the 10-minute command limit, and leaves everything under $OUT:
#   gpu.json / gpu.txt      bench/gpu.py's numbers (rewritten after every section) and its table
#   pytest.txt / pytest.xml the GPU tests' output and JUnit report
#   env.txt                 nvidia-smi, python and package versions
#
# PyAV travels as a wheel in .whl/ (ignored by git). Fetch it on the development machine first:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0
# and name .whl in the call's carry (the device tool: command `bash bench/gpu_device.sh`, carry
# [".whl"], timeout_s 600; the wheel is ~36 MB of the 64 MiB a call may carry).
# Time limits (seconds) can be changed through the environment:
#   BENCH_BUDGET (no new bench section after it, default 280), BENCH_LIMIT (hard stop, 360),
#   TESTS_LIMIT (hard stop of the tests, 200).
#
#   bash bench/gpu_device.sh          # on the GPU machine, as the device call's command
#   bash bench/gpu_device.sh --tiny   # on CPU: the same steps with bench/gpu.py --tiny (the GPU tests skip)
set -u -o pipefail
tiny=()
[ "${1:-}" = "--tiny" ] && tiny=(--tiny)
OUT=${OUT:-/tmp/cavkit-gpu}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."

if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "could not install the carried wheels in .whl/"; exit 3; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CAVKIT_DISABLE_PLUGIN_AUTOLOAD=1

{ nvidia-smi; python3 --version; python3 -m pip list 2>/dev/null | grep -iE '^(torch|triton|timm|av|numpy) '; } >"$OUT/env.txt" 2>&1
python3 -c "import sys, av, torch, cavkit.data.video; assert '--tiny' in sys.argv or torch.cuda.is_available(), \
    'torch sees no CUDA device'" "${tiny[@]}" \
    || { cat "$OUT/env.txt"; echo "the environment is not ready (see above): nothing was measured"; exit 3; }

timeout "${BENCH_LIMIT:-360}" python3 bench/gpu.py "${tiny[@]}" --budget-s "${BENCH_BUDGET:-280}" --json "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.txt"
bench_rc=$?
timeout "${TESTS_LIMIT:-200}" python3 -m pytest -m gpu -q -p no:cacheprovider --junitxml="$OUT/pytest.xml" tests/gpu 2>&1 \
    | tee "$OUT/pytest.txt"
tests_rc=$?
echo "bench exit status $bench_rc, tests exit status $tests_rc (124: stopped at the time limit)"
exit $(( bench_rc || tests_rc ))
