"""The CUDA kernels under NVIDIA's compute-sanitizer, on a GPU: what neither the simulator nor the compiler sees.

The simulator runs each CUDA thread as a Python thread (``tests/test_cuda.py``): it checks the arithmetic, but a
negative index wraps around to the array's end (NumPy's rule), two threads writing one shared-memory word in the
same phase take turns, and scratch memory starts as NumPy made it. On the GPU these are an out-of-bounds access,
a race and a read of uninitialised memory, and the results are wrong only sometimes. Each of compute-sanitizer's
tools watches a small run of every training kernel (float32 and float64, several steps, a short last batch,
the grid kernel on several blocks) and of inference, and must report no error:

- ``memcheck``: every global and shared memory access in bounds and aligned;
- ``racecheck``: no two threads of a block touch one shared-memory word between two barriers, one of them
  writing;
- ``synccheck``: every barrier reached by all the threads it waits for;
- ``initcheck``: no global memory read before it was written (the scratch arrays are not zeroed).

Skipped without a GPU, or where compute-sanitizer cannot be found (it comes with CUDA's toolkit). Each tool slows
the kernels many times over, so ``scripts/gpu.sh`` leaves this file out, to keep its time for the benchmark page.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys

import pytest
from numba import config, cuda

from .conftest import REPO


def find_sanitizer() -> str | None:
    """``compute-sanitizer`` on the PATH, or in a CUDA toolkit's usual folders."""
    found = glob.glob("/usr/local/cuda*/bin/compute-sanitizer") + glob.glob(
        "/usr/local/cuda*/compute-sanitizer/compute-sanitizer"
    )
    return shutil.which("compute-sanitizer") or (sorted(found)[-1] if found else None)


SANITIZER = find_sanitizer()
pytestmark = pytest.mark.skipif(
    config.ENABLE_CUDASIM or not cuda.is_available() or SANITIZER is None,
    reason="needs a GPU and NVIDIA's compute-sanitizer (the simulator cannot show these faults)",
)

#: Trains each kernel on 1,300 random sparse "images" of MNIST's shape: batches of 64 for the dense and sparse
#: kernels (20 full, one of 20), of 600 for the grid kernel (3 chunks of 256 a step, over several blocks; the
#: last batch 100), each twice so that the second call starts from the buffers the first one filled.
RUN_EVERY_KERNEL = """
import numpy as np
from numba import cuda
from lr_from_scratch.data import batch_slices
from lr_from_scratch.kernels.cuda import CudaLinear, DeviceImages

rng = np.random.default_rng(0)
n = 1300
images = DeviceImages.from_host(((rng.random((n, 784)) < 0.2) * rng.integers(1, 256, (n, 784))).astype(np.uint8))
labels, order = cuda.to_device(rng.integers(0, 10, n)), cuda.to_device(rng.permutation(n))
for dtype in ("float32", "float64"):
    for kernel, batch_size in (("dense", 64), ("sparse", 64), ("grid", 600)):
        layer = CudaLinear(rng.uniform(-0.03, 0.03, (10, 784)).astype(dtype), np.zeros(10, dtype), 1 / 77.5, -0.42,
                           momentum=0.9, weight_decay=1e-4, nesterov=True)
        layer.kernel = kernel
        for _ in range(2):
            loss, correct = layer.train_steps(images, labels, order, batch_slices(n, batch_size), 0.01)
        assert np.isfinite(loss) and 0 <= correct <= n, (kernel, dtype, loss, correct)
        layer.evaluate(images, labels)
print("every kernel ran")
"""


@pytest.mark.parametrize("tool", ["memcheck", "racecheck", "synccheck", "initcheck"])
def test_compute_sanitizer_finds_nothing_in_the_kernels(tool):
    ran = subprocess.run(
        [SANITIZER, "--tool", tool, "--error-exitcode", "86", "--print-limit", "10", sys.executable, "-c",
         RUN_EVERY_KERNEL],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    report = ran.stdout + ran.stderr
    assert "every kernel ran" in ran.stdout, report[-4000:]
    assert ran.returncode == 0 and "ERROR SUMMARY: 0 errors" in report, report[-4000:]
