"""``python -m lr_from_scratch.train``: train softmax regression on MNIST and write a run folder.

Run ``python -m lr_from_scratch.train --help`` for the options; the defaults reach about 92.6% test accuracy.
"""

from __future__ import annotations

import sys

from .backends import make_backend
from .cli import run_cli
from .command import Recipe, run_training
from .config import SCRATCH_BACKENDS


def build_backend(config, splits, args):
    """:func:`make_backend`, saying how long the Numba kernels took to compile or load (they do it there, so no
    epoch's timing includes it)."""
    backend = make_backend(config, splits)
    if "compile_seconds" in backend.info:
        print(compile_line(config.backend, backend.compiled, backend.info["compile_seconds"]))
    if "cuda_grid_unavailable" in backend.info:
        print(f"the CUDA grid kernel cannot run here ({backend.info['cuda_grid_unavailable']}): batches above 64 take "
              "the dense kernel")  # fmt: skip
    return backend


def compile_line(backend: str, compiled: bool, seconds: float) -> str:
    """What became of the kernels of ``backend`` before training: compiled, loaded from Numba's on-disk cache, or
    (the CUDA kernels in Numba's simulator) nothing to compile. Numba keeps no CUDA kernel on disk."""
    from numba import config as numba_config

    from .kernels.llvm import CACHE

    if backend == "cuda":
        if numba_config.ENABLE_CUDASIM:
            return f"CUDA kernels in Numba's simulator (NUMBA_ENABLE_CUDASIM=1): nothing to compile ({seconds:.1f} s)"
        return f"CUDA kernels compiled in {seconds:.1f} s (Numba keeps no CUDA kernel between runs)"
    how = "compiled (cached for later runs)" if compiled else "loaded from the cache"
    if not CACHE:
        how = "compiled (no writable cache folder: set NUMBA_CACHE_DIR to one to keep them)"
    return f"numba kernels {how} in {seconds:.1f} s"


RECIPE = Recipe(prog="python -m lr_from_scratch.train", backends=SCRATCH_BACKENDS, make_backend=build_backend)


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda argv: run_training(RECIPE, __doc__.splitlines()[0], argv), argv)


if __name__ == "__main__":
    sys.exit(main())
