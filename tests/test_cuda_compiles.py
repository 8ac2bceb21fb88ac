"""The CUDA kernels compile for the GPU this project measures on (an H100, compute capability 9.0), and each
launch's block fits one of its multiprocessors.

Numba's simulator checks the kernels' logic (``tests/test_cuda.py``) but never compiles them. Here NVVM turns
each kernel, with the argument types of its real launch (:meth:`CudaLinear.launch` and
:meth:`CudaLinear.evaluation`, on NumPy stand-ins for the device arrays), into PTX, and ``ptxas`` assembles it
and says how many registers a thread needs. A block whose threads need more than the multiprocessor's 65,536
registers does not launch ("too many resources requested for launch"), whatever the simulator said. And no
kernel keeps anything in local memory (a stack frame, or spills): its accumulators stay in registers.

Needs NVVM and ``ptxas``, which ``make test`` installs (the ``cuda-compile`` extra: NVIDIA's compiler wheels, no
GPU needed); skipped without them, and under the simulator.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numba
import numpy as np
import pytest
from numba import config, cuda

from lr_from_scratch.kernels import cuda as gpu

H100 = (9, 0)
REGISTERS_PER_MULTIPROCESSOR = 65_536
#: A warp's registers are handed out 256 at a time: a thread's count, rounded up to a multiple of 8, is what it takes.
REGISTERS_PER_THREAD_STEP = 8

pytestmark = pytest.mark.skipif(config.ENABLE_CUDASIM, reason="the simulator compiles nothing")


def find_ptxas() -> str | None:
    """``ptxas`` on the PATH, or the one NVIDIA's nvcc wheel installs (``site-packages/nvidia/*/bin``)."""
    spec = importlib.util.find_spec("nvidia")
    wheels = [p for root in (spec.submodule_search_locations if spec else []) for p in Path(root).glob("*/bin/ptxas")]
    return shutil.which("ptxas") or (str(wheels[0]) if wheels else None)


@pytest.fixture(scope="module")
def ptxas():
    path = find_ptxas()
    try:
        cuda.compile_ptx(lambda a: None, (numba.float32[::1],), cc=H100)
    except Exception as exc:  # no NVVM (or NVRTC) here
        pytest.skip(f"Numba cannot compile CUDA here ({type(exc).__name__}): pip install '.[cuda-compile]'")
    if path is None:
        pytest.skip("no ptxas here: pip install '.[cuda-compile]'")
    return path


@pytest.fixture
def host_arrays(monkeypatch):
    """The layer's device arrays as NumPy arrays of the same types: its launches can be typed without a GPU. And
    an H100 as the current device, which Numba asks for when it compiles the grid-wide barrier's functions."""
    stand_in = SimpleNamespace(to_device=np.array, device_array=lambda shape, dtype: np.empty(shape, dtype=dtype))
    monkeypatch.setattr(gpu, "cuda", stand_in)
    monkeypatch.setattr(numba.cuda.dispatcher, "get_current_device", lambda: SimpleNamespace(compute_capability=H100))


def assemble(ptxas: str, ptx: str, tmp_path: Path, max_registers: int | None = None) -> tuple[int, int]:
    """``(registers per thread, bytes in local memory)`` of the kernel in ``ptx``, from ``ptxas -v`` for sm_90:
    its stack frame (arrays it could not keep in registers) and its spills. Assembled as relocatable code (``-c``):
    the grid kernel's barrier calls into CUDA's device runtime, which only the launch links. ``max_registers``:
    the kernel's own bound (``cuda.jit(max_registers=...)``), which Numba passes on at its launch."""
    source = tmp_path / "kernel.ptx"
    source.write_text(ptx)
    bound = ["--maxrregcount", str(max_registers)] if max_registers else []
    report = subprocess.run(
        [ptxas, "-arch=sm_90", *bound, "-c", "-v", str(source), "-o", str(tmp_path / "kernel.cubin")],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    registers = int(re.search(r"Used (\d+) registers", report).group(1))
    local = sum(int(n) for n in re.findall(r"(\d+) bytes (?:stack frame|spill stores|spill loads)", report))
    return registers, local


def compile_launch(kernel: str, dtype: str, values: str) -> tuple[object, int, str]:
    """``(kernel function, threads a block, PTX for an H100)`` of ``kernel`` ("dense", "sparse", "grid" or
    "evaluate") at MNIST's shapes (10 classes, 784 pixels, batches of 64), as its real launch types it."""
    layer = gpu.CudaLinear(np.zeros((10, 784), dtype), np.zeros(10, dtype), 1 / 255, -0.4, 0.9, 0.1, 1e-4, True)
    images = gpu.DeviceImages.from_host(np.eye(128, 784, dtype=values) * 3)
    labels, order = np.arange(128) % 10, np.arange(128)
    if kernel == "evaluate":
        function, blocks, args = layer.evaluation(images, labels)
    else:
        layer.kernel = kernel
        function, blocks, args = layer.launch(images, labels, order, np.array([0, 64, 128]), 64, 0.01)
        assert layer.kernel_for(images, 64) == kernel
    ptx, _ = cuda.compile_ptx(function.py_func, tuple(numba.typeof(a) for a in args), cc=H100)
    return function, blocks[1], ptx


KERNELS = [*gpu.KERNELS[1:], "evaluate"]  # every training kernel ("auto" is a choice, not a kernel), inference


@pytest.mark.parametrize(
    ("dtype", "values"),
    [("float32", "uint8"), ("float64", "uint8"), ("float32", "float32"), ("float64", "float64")],
)
@pytest.mark.parametrize("kernel", KERNELS)
def test_each_kernel_compiles_for_an_h100_and_its_block_fits(ptxas, host_arrays, tmp_path, kernel, dtype, values):
    """With uint8 pixels, and the estimator's floats."""
    function, threads, ptx = compile_launch(kernel, dtype, values)
    registers, local = assemble(ptxas, ptx, tmp_path, function.targetoptions.get("max_registers"))
    print(f"{function.__name__} ({dtype} weights, {values} images): {registers} registers x {threads} threads, "
          f"{local} bytes in local memory")  # fmt: skip
    taken = -(-registers // REGISTERS_PER_THREAD_STEP) * REGISTERS_PER_THREAD_STEP
    assert taken * threads <= REGISTERS_PER_MULTIPROCESSOR, f"{registers} (so {taken}) registers x {threads} threads"
    assert local == 0, f"{local} bytes in local memory: an accumulator left the registers"


@pytest.mark.parametrize("kernel", KERNELS)
def test_float32_kernels_compute_in_float32(ptxas, host_arrays, kernel):
    """A float32 kernel does its arithmetic in float32: a Python literal such as ``x + 1`` makes Numba compute in
    float64, which an H100 does at half the rate and a consumer GPU at a sixty-fourth. The only float64
    arithmetic allowed is the adding up of the losses (each step's loss sum is float64 on every backend), and no
    float64 value turns back into a float32 or an integer: ``x + 1.0`` would convert ``x``, add in float64 and
    convert back (``cvt.rn.f32.f64``), while a loss only goes from float32 to float64 (``cvt.f64.f32``)."""
    _, _, ptx = compile_launch(kernel, "float32", "uint8")
    float64_arithmetic = set(re.findall(r"\b((?:add|sub|mul|fma|div|rcp|sqrt|neg|ex2|lg2|min|max)[.\w]*\.f64)\b", ptx))
    assert float64_arithmetic <= {"add.f64"}, f"float64 arithmetic in the float32 {kernel} kernel: {float64_arithmetic}"
    from_float64 = set(re.findall(r"\bcvt(?:\.\w+)+\.f64\b", ptx))  # the source type comes last
    assert not from_float64, f"a float64 value converted back in the float32 {kernel} kernel: {from_float64}"
    if kernel == "evaluate":  # its loss is a float64 only when stored
        assert not float64_arithmetic, f"float64 arithmetic in float32 inference: {float64_arithmetic}"
