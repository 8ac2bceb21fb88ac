"""The canonical PyTorch version: what a PyTorch user would write, run on the same data, options and batches."""

import sys

# python -m torch_ref.train: checks made, and a Ctrl-C handled, before the libraries load. Not for the textbook
# script, which stands alone (it imports nothing of lr_from_scratch), nor for a plain import.
if sys.argv[:1] == ["-m"] and "torch_ref.textbook" not in sys.orig_argv:
    from lr_from_scratch.cli import starting_command

    starting_command()
