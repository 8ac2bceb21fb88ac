"""Multinomial logistic regression on MNIST, from scratch in NumPy (and Numba)."""

__version__ = "0.1.0"

from .cli import starting_command

starting_command()  # python -m lr_from_scratch.<command>: checks made, and a Ctrl-C handled, before libraries load
