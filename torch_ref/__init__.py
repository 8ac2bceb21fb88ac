"""The canonical PyTorch version: what a PyTorch user would write, run on the same data, options and batches."""

import sys

# python -m torch_ref.train: a Ctrl-C while it starts is one line. Not for the textbook script, which stands
# alone (it imports nothing of lr_from_scratch), nor for a plain import.
if sys.argv[:1] == ["-m"] and "torch_ref.textbook" not in sys.orig_argv:
    from lr_from_scratch.cli import quiet_while_starting

    quiet_while_starting()
