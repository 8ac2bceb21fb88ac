"""The compiled kernels, from a straight port of the NumPy reference to the fastest version, each validated
against :mod:`lr_from_scratch.functional` in ``tests/test_kernels.py`` and timed by ``benchmarks/``:

- :mod:`.naive`: kernel 1, the reference's steps in Numba as they are (dense floats, plain loops);
- :mod:`.fused`: the fast CPU kernels (sparse uint8 pixels, normalisation folded into the weights, many
  fused SGD steps per call, threads without races), built from the 16-lane pieces in :mod:`.lanes`;
- :mod:`.llvm`: what they share (fast-math flags, the vectoriser setting, LLVM intrinsics: prefetch, ``2^n``,
  atomics); :mod:`.tasks`: how the threaded kernel's workers share out each step without a barrier;
- :mod:`.cuda_device`: the GPU kernels (Numba's CUDA target), dense, sparse and grid-wide, and :mod:`.cuda`,
  their host side, validated in Numba's simulator by ``tests/test_cuda.py`` (:mod:`.simulator` gives it the
  warp shuffles it lacks).

``docs/fast.md`` tells the story from the first to the last.
"""
