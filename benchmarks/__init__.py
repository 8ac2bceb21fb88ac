import os

from lr_from_scratch.cli import starting_command

starting_command()  # python -m benchmarks.<command>: checks made, and a Ctrl-C handled, before libraries load
# JAX would otherwise take three quarters of the GPU's memory the first time it is used, in a process that also
# runs PyTorch and Numba on that GPU: let it allocate what it needs, as they do. Set before anything imports JAX.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
