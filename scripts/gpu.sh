#!/usr/bin/env bash
# One command for a GPU machine: the CUDA tests, then the GPU benchmark page (docs/benchmarks-gpu.md, .png and
# .json, in the schema of docs/benchmarks.json), from the checkout, in well under ten minutes.
#
# The machines this project can use (an H100 or H200) have no network and no pip, but torch (CUDA), numba,
# numba-cuda, JAX, pytest and pytest-benchmark are installed there, so the project runs from the checkout
# (PYTHONPATH=.) on MNIST's four files carried along: scripts/gpu.sh [DATA_DIR] [REPORT_OPTIONS] (DATA_DIR:
# default .data, a git-excluded folder holding the .gz files of ~/.cache/lr-from-scratch/mnist). The options go
# to the report (`scripts/gpu.sh .data --rounds 2 --no-accuracy`, or `make gpu ARGS="--rounds 2"`, for a
# shorter run). When $OUT is set (the device tool's folder of files to bring back), the page is copied there
# too. `make gpu` runs it.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=.data
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then DATA=${1:-.data}; shift; fi
export PYTHONPATH=. LR_FROM_SCRATCH_DATA="$DATA" LR_FROM_SCRATCH_MNIST_MIRRORS=""
# Not only "is there a GPU": compile and run one kernel, so that a missing CUDA compiler (NVVM) is this one line
# rather than every CUDA test failing in turn.
check='
import sys
try:
    from numba import config, cuda
    if config.ENABLE_CUDASIM:
        sys.exit("NUMBA_ENABLE_CUDASIM=1 runs the CUDA kernels in the Numba simulator, not on a GPU (unset it)")
    if not cuda.is_available():
        sys.exit("Numba sees no CUDA GPU here")

    @cuda.jit
    def write_one(cell):
        cell[0] = 1.0

    cell = cuda.device_array(1)
    write_one[1, 1](cell)
    if cell.copy_to_host()[0] != 1.0:
        sys.exit("a CUDA kernel ran but did not write its result")
except Exception as exc:
    first = (str(exc) or "no message").splitlines()[0]
    sys.exit(f"Numba cannot run a CUDA kernel here ({type(exc).__name__}: {first})")
'
if ! why=$(python3 -c "$check" 2>&1); then
    echo "error: ${why##*$'\n'}: run scripts/gpu.sh on a GPU machine with numba-cuda" >&2
    exit 2
fi
# The grid kernel's grid-wide barrier needs CUDA's device runtime (libcudadevrt), which an installation may lack:
# then the tests that ask for that kernel fail and the report skips cuda-grid, while training ("auto") takes the
# dense kernel. Said first, so that those failures read as this machine's, not as a bug.
# (stdout only: Numba warns on stderr of the check's one-block grid)
if ! grid=$(python3 -c 'from lr_from_scratch.kernels.cuda import grid_unavailable; print(grid_unavailable() or "")' \
    2>/dev/null); then
    grid="the check itself failed"
fi
if [ -n "$grid" ]; then
    echo "warning: the CUDA grid kernel cannot run here (${grid##*$'\n'}): its tests will fail and the report" \
        "will skip cuda-grid" >&2
fi
# Nothing stops half-way: a failing test or implementation is reported, the rest still runs, the page of what
# worked is written (failures listed as skipped), and the exit status says whether all of it passed. The whole
# stays inside the ten minutes a device call may take: the tests get at most TESTS_S, the report what is left of
# TOTAL_S. At its limit the report gets a SIGTERM, stops once the epoch or build under way ends, and writes what
# it measured as docs/benchmarks-gpu-interrupted.*; KILL_S later it is killed if a kernel still holds it. Each
# limit can be set in the environment.
TESTS_S=${TESTS_S:-240} TOTAL_S=${TOTAL_S:-540} KILL_S=${KILL_S:-40}
NAME=benchmarks-gpu
PAGE=docs/$NAME
status=0
echo "== the CUDA kernels, PyTorch on CUDA and the peers, tested on this GPU"
# Only the tests that use the GPU or JAX (CI runs the others, which would take most of TESTS_S here), in four
# processes where pytest-xdist is installed: compiling the kernels takes most of what is left.
workers=""
if python3 -c "import xdist" 2>/dev/null; then workers="-n 4"; fi
# shellcheck disable=SC2086  # $workers: no option, or two words
timeout "$TESTS_S" python3 -m pytest -q -p no:cacheprovider $workers tests/test_cuda.py tests/test_equivalence.py \
    tests/test_peers.py tests/test_torch_ref.py -k "(cuda or jax or graphs) and not textbook_script_runs_by_itself" \
    || status=$?
# A kernel that never returns (a barrier some thread never reaches) would hang the report too: stop here.
if [ "$status" -eq 124 ]; then
    echo "error: the tests did not finish in $TESTS_S s: run tests/test_cuda.py alone, -x -v, to find what hangs" >&2
    exit 124
fi
report_s=$((TOTAL_S - SECONDS))
if [ "$report_s" -lt 20 ]; then
    echo "error: the tests left ${report_s} s of TOTAL_S=$TOTAL_S for the report: raise TOTAL_S" >&2
    exit 124
fi
echo "== the benchmark page of this GPU (at most ${report_s} s)"
rm -f "$PAGE".* "$PAGE"-interrupted.*  # what reaches $OUT is this run's
report=0
timeout --foreground -k "$KILL_S" "$report_s" python3 -m benchmarks.report --out docs --name "$NAME" \
    --no-progress \
    --impls cuda,cuda-dense,cuda-grid,torch-cuda,torch-cuda-compile,torch-cuda-graphs,jax-cuda,numba,torch-cpu,jax-cpu \
    "$@" || report=$?
if [ -n "${OUT:-}" ]; then
    for f in "$PAGE".* "$PAGE"-interrupted.*; do
        if [ -f "$f" ]; then cp "$f" "$OUT"/; fi
    done
fi
if [ "$status" -ne 0 ]; then
    echo "error: a CUDA test failed (above): fix it before committing the page" >&2
fi
if [ "$report" -eq 124 ] || [ "$report" -eq 137 ]; then
    kept="$PAGE-interrupted.md holds what it measured by then"
    [ -f "$PAGE-interrupted.md" ] || kept="it had timed no epoch, so it wrote nothing"
    echo "error: the report ran past ${report_s} s: $kept (pass --rounds 2 for a shorter run)" >&2
elif [ "$report" -ne 0 ]; then
    echo "error: the report ended with exit status $report: its line above says why" >&2
fi
[ "$status" -ne 0 ] && exit "$status"
exit "$report"
