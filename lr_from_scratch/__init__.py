"""Multinomial logistic regression on MNIST, from scratch in NumPy (and Numba)."""

__version__ = "0.1.0"
