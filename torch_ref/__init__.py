"""The canonical PyTorch version: what a PyTorch user would write, run on the same data, options and batches."""

from lr_from_scratch.cli import quiet_while_starting

quiet_while_starting()  # python -m torch_ref.<command>: a Ctrl-C while it starts is one line
