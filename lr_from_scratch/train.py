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
        from .kernels.llvm import CACHE

        how = "compiled (cached for later runs)" if backend.compiled else "loaded from the cache"
        if not CACHE:
            how = "compiled (no writable cache folder: set NUMBA_CACHE_DIR to one to keep them)"
        print(f"numba kernels {how} in {backend.info['compile_seconds']:.1f} s")
    if "cuda_grid_unavailable" in backend.info:
        print(f"the CUDA grid kernel cannot run here ({backend.info['cuda_grid_unavailable']}): batches above 64 take "
              "the dense kernel")  # fmt: skip
    return backend


RECIPE = Recipe(prog="python -m lr_from_scratch.train", backends=SCRATCH_BACKENDS, make_backend=build_backend)


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda argv: run_training(RECIPE, __doc__.splitlines()[0], argv), argv)


if __name__ == "__main__":
    sys.exit(main())
