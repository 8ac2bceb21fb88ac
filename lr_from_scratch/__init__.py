"""Multinomial logistic regression on MNIST, from scratch in NumPy (and Numba)."""

__version__ = "0.1.0"

from .cli import quiet_while_starting

quiet_while_starting()  # python -m lr_from_scratch.<command>: a Ctrl-C while it starts is one line
